//! The AMQP fan-out of PATCH (issue 7), from outside: each PATCH is one event and one Update message
//! carrying the resource as of that event; for groups, the members as of each event in full mode
//! and exactly the PATCH's delta with `AMQP_GROUP_MEMBERS=changes`, also for a group of thousands
//! whose older versions the publisher rebuilds from the log.
//!
//! A real `scimd serve` publishes to a real RabbitMQ; every message is read back from the queue with
//! lapin and checked against the log (`scimd log tail`). The broker and its sharing:
//! [`common::amqp`].

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use common::amqp::*;
use common::*;
use futures::{StreamExt, stream};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// PATCH (issue 7): one event, one Update message, the resource as of that event
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_patches_each_publish_one_update_with_the_user_as_get_returned_it_after_the_patch() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let exchange = unique("patch-exchange");
    let queue = unique("user-patch");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut updates = Queue::bound(
        &broker.url,
        &unique("user-updates"),
        &exchange,
        "User.Update",
    )
    .await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_EXCHANGE", &exchange)).await;
    let api = s.client();
    let id = id_of(
        &api.create_user(json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.patched",
            "password": PASSWORD,
            "displayName": "Alice",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@example.org", "type": "work", "primary": true}],
            "active": true,
        }))
        .await,
    );
    let path = format!("/Users/{id}");
    let mut gets = vec![api.user(&id).await];
    let patches = [
        json!([{"op": "replace", "path": "name.givenName", "value": "Alicia"}]),
        json!([{"op": "add", "path": "emails", "value": [{"value": "alice@home.example.org", "type": "home"}]}]),
        // Okta deactivates with a path-less replace.
        json!([{"op": "replace", "value": {"active": false}}]),
        // A new password (stored hashed, never published) beside a visible change.
        json!([
            {"op": "replace", "path": "password", "value": format!("{PASSWORD}-patched")},
            {"op": "add", "path": "title", "value": "Queen"},
        ]),
    ];
    for ops in &patches {
        let answered = api
            .patch(&path, &patch_ops(ops.clone()))
            .await
            .expect(200)
            .json();
        let got = api.user(&id).await;
        assert_eq!(
            answered, got,
            "the PATCH answers the user as GET returns it"
        );
        gets.push(got);
    }
    assert_eq!(
        gets[1]["name"],
        json!({"givenName": "Alicia", "familyName": "Liddell"})
    );
    assert_eq!(
        gets[2]["emails"].as_array().map(Vec::len),
        Some(2),
        "{}",
        gets[2]
    );
    assert_eq!(gets[3]["active"], json!(false));
    assert_eq!(gets[4]["title"], json!("Queen"));

    let msgs = q.take(5, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["create", "patch", "patch", "patch", "patch"],
        "each PATCH is one event: {events:#?}"
    );
    for (i, m) in msgs.iter().enumerate() {
        // Headers, properties, operation, version, no password, and the user as GET returned it.
        assert_message(m, &events[i], &relative(&s, &gets[i]));
        assert_body_keys(m, &["operation", "resource"]);
        assert_eq!(m.routing_key, format!("User.{}", m.operation()), "{m:?}");
    }
    assert_eq!(
        msgs.iter().map(Msg::operation).collect::<Vec<_>>(),
        ["Create", "Update", "Update", "Update", "Update"]
    );
    assert_eq!(
        msgs.iter().map(Msg::version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(msgs[1].resource()["name"]["givenName"], json!("Alicia"));
    assert!(
        msgs[2].resource()["emails"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["value"] == "alice@home.example.org"),
        "{:?}",
        msgs[2]
    );
    assert_eq!(msgs[3].resource()["active"], json!(false));
    assert_eq!(msgs[4].resource()["title"], json!("Queen"));
    // A consumer bound to `User.Update` gets the four PATCHes, the same messages.
    let got = updates.take(4, DELIVERY).await;
    updates.assert_quiet(Duration::from_millis(500)).await;
    assert_eq!(
        got.iter().map(|m| (m.id(), &m.body)).collect::<Vec<_>>(),
        msgs[1..]
            .iter()
            .map(|m| (m.id(), &m.body))
            .collect::<Vec<_>>()
    );
    wait_published(&api, DELIVERY).await;
    for q in [q, updates] {
        q.delete().await;
    }
    delete_exchange(&broker.url, &exchange).await;
}

/// The member letters of each version of the group [`group_patch_history`] writes.
const PATCHED_MEMBERS: [&[&str]; 8] = [
    &["a"],
    &["a", "b", "c"],
    &["b", "c"],
    &["c"],
    &["c", "d"],
    &["a", "d"],
    &["a", "c", "d"],
    &[],
];

/// A group written through PATCHes of its members.
struct PatchedGroup {
    id: String,
    /// User id → its letter.
    letters: HashMap<String, &'static str>,
    /// What GET returned after each version (made [`relative`]).
    gets: BTreeMap<u64, Value>,
}

impl PatchedGroup {
    /// The letters of member references (sorted), asserting each is `{"value", "type": "User"}`
    /// plus whatever else the caller allowed in `keys`.
    #[track_caller]
    fn letters_of(&self, refs: &Value, keys: &[&str]) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = refs
            .as_array()
            .unwrap_or_else(|| panic!("not a list of members: {refs}"))
            .iter()
            .map(|m| {
                let got: BTreeSet<&str> =
                    m.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(got, keys.iter().copied().collect::<BTreeSet<_>>(), "{m}");
                assert_eq!(m["type"], json!("User"), "{m}");
                self.letters[m["value"].as_str().unwrap()]
            })
            .collect();
        out.sort();
        out
    }

    /// (added, removed) letters between two versions.
    fn delta(
        &self,
        before: &[&'static str],
        after: &[&'static str],
    ) -> (Vec<&'static str>, Vec<&'static str>) {
        let added = after
            .iter()
            .filter(|x| !before.contains(x))
            .copied()
            .collect();
        let removed = before
            .iter()
            .filter(|x| !after.contains(x))
            .copied()
            .collect();
        (added, removed)
    }
}

/// Users a–d, a group created with a, then seven PATCHes of its members (one also renames it):
/// by value filter, Entra's remove by value, a replace of the whole list, an add of a member already
/// there, a remove by a filter on `type`. Asserts the members after each ([`PATCHED_MEMBERS`]).
async fn group_patch_history(s: &Scimd) -> PatchedGroup {
    let api = s.client();
    let mut ids: BTreeMap<&'static str, String> = BTreeMap::new();
    for n in ["a", "b", "c", "d"] {
        let u = api
            .create_user(user_body(
                &format!("amqp.patch.{n}"),
                &format!("Member {n}"),
            ))
            .await;
        ids.insert(n, id_of(&u));
    }
    let id = |n: &str| ids[n].clone();
    let gid = id_of(&api.create_group_with("patched", &[&id("a")]).await);
    let path = format!("/Groups/{gid}");
    let mut gets = BTreeMap::new();
    gets.insert(1, relative(s, &api.group(&gid).await));
    let patches = [
        json!([{"op": "add", "path": "members", "value": [{"value": id("b")}, {"value": id("c")}]}]),
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", id("a"))}]),
        // Entra removes members by value.
        json!([{"op": "Remove", "path": "members", "value": [{"value": id("b")}]}]),
        // A rename and a new member in one PATCH: one event.
        json!([
            {"op": "replace", "path": "displayName", "value": "patched and renamed"},
            {"op": "add", "path": "members", "value": [{"value": id("d")}]},
        ]),
        json!([{"op": "replace", "path": "members", "value": [{"value": id("a")}, {"value": id("d")}]}]),
        // d is a member already: only c is added.
        json!([{"op": "add", "path": "members", "value": [{"value": id("c")}, {"value": id("d")}]}]),
        json!([{"op": "remove", "path": "members[type eq \"User\"]"}]),
    ];
    for ops in patches {
        let r = api.patch(&path, &patch_ops(ops)).await.expect(204);
        let g = api.group(&gid).await;
        assert_eq!(
            r.header("ETag").as_ref(),
            g["meta"]["version"].as_str().map(str::to_string).as_ref()
        );
        gets.insert(version_number(&g["meta"]["version"]), relative(s, &g));
    }
    let group = PatchedGroup {
        id: gid,
        letters: ids.iter().map(|(k, v)| (v.clone(), *k)).collect(),
        gets,
    };
    let shown: Vec<Vec<&str>> = group
        .gets
        .values()
        .map(|g| {
            group.letters_of(
                &g.get("members").cloned().unwrap_or(json!([])),
                &["value", "type", "display", "$ref"],
            )
        })
        .collect();
    assert_eq!(shown, PATCHED_MEMBERS, "members after each version");
    assert_eq!(
        group.gets.keys().copied().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u64>>()
    );
    assert_eq!(group.gets[&5]["displayName"], json!("patched and renamed"));
    group
}

/// The log records each member PATCH as one `patch` event carrying only its delta.
#[track_caller]
fn assert_patch_events_carry_deltas(events: &[LogEvent], g: &PatchedGroup) {
    let group: Vec<&LogEvent> = events.iter().filter(|e| e.resource_id == g.id).collect();
    assert_eq!(
        group
            .iter()
            .map(|e| (e.kind.as_str(), e.version))
            .collect::<Vec<_>>(),
        [
            ("create", 1),
            ("patch", 2),
            ("patch", 3),
            ("patch", 4),
            ("patch", 5),
            ("patch", 6),
            ("patch", 7),
            ("patch", 8)
        ],
        "{group:#?}"
    );
    for (i, e) in group.iter().enumerate().skip(1) {
        let letters = |refs: &[MemberRef]| -> Vec<&'static str> {
            let mut v: Vec<&'static str> = refs.iter().map(|m| g.letters[&m.value]).collect();
            v.sort();
            v
        };
        assert_eq!(
            (letters(&e.members_added), letters(&e.members_removed)),
            g.delta(PATCHED_MEMBERS[i - 1], PATCHED_MEMBERS[i]),
            "the delta of {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn group_member_patches_publish_updates_with_the_members_as_of_each_event() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("group-patch");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let g = group_patch_history(&s).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4 + 8, "{events:#?}");
    assert_patch_events_carry_deltas(&events, &g);
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let mut shown = Vec::new();
    for (m, e) in msgs.iter().zip(&events) {
        if e.resource_type != "Group" {
            assert_eq!(m.id(), e.event_id, "{m:?}");
            continue;
        }
        assert_message(m, e, &g.gets[&e.version]);
        assert_body_keys(m, &["operation", "resource"]);
        shown.push(g.letters_of(
            &m.resource().get("members").cloned().unwrap_or(json!([])),
            &["value", "type", "display", "$ref"],
        ));
    }
    assert_eq!(shown, PATCHED_MEMBERS, "members in each group message");
    wait_published(&s.client(), DELIVERY).await;
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn group_member_patches_publish_exactly_their_delta_with_amqp_group_members_changes() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("group-patch-changes");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_GROUP_MEMBERS", "changes")).await;
    let g = group_patch_history(&s).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4 + 8, "{events:#?}");
    assert_patch_events_carry_deltas(&events, &g);
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let mut deltas = Vec::new();
    for (m, e) in msgs.iter().zip(&events) {
        if e.resource_type != "Group" {
            assert_eq!(m.id(), e.event_id, "{m:?}");
            assert_body_keys(m, &["operation", "resource"]);
            continue;
        }
        assert_body_keys(m, &["operation", "resource", "members"]);
        assert!(
            m.resource().get("members").is_none(),
            "no member list with `changes`: {m:?}"
        );
        let mut get = g.gets[&e.version].clone();
        get.as_object_mut().unwrap().remove("members");
        assert_message(m, e, &get);
        let body_members: BTreeSet<&str> = m.body["members"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(body_members, BTreeSet::from(["added", "removed"]), "{m:?}");
        deltas.push((
            g.letters_of(&m.body["members"]["added"], &["value", "type"]),
            g.letters_of(&m.body["members"]["removed"], &["value", "type"]),
        ));
    }
    let mut expected = vec![(vec!["a"], vec![])];
    for w in PATCHED_MEMBERS.windows(2) {
        expected.push(g.delta(w[0], w[1]));
    }
    assert_eq!(
        deltas, expected,
        "members.added / members.removed of each group message"
    );
    // Spelled out, so that a wrong expectation above cannot hide a wrong delta.
    assert_eq!(
        expected,
        [
            (vec!["a"], vec![]),
            (vec!["b", "c"], vec![]),
            (vec![], vec!["a"]),
            (vec![], vec!["b"]),
            (vec!["d"], vec![]),
            (vec!["a"], vec!["c"]),
            (vec!["c"], vec![]),
            (vec![], vec!["a", "c", "d"]),
        ]
    );
    wait_published(&s.client(), DELIVERY).await;
    q.delete().await;
}

/// Members of the large group, added in PATCHes of [`CHUNK`].
const LARGE: usize = 2000;
const CHUNK: usize = 500;

/// Creates `n` users named `{prefix}.{i}` (16 at a time); returns their ids in that order.
async fn create_many_users(api: &Api, prefix: &str, n: usize) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}.{i}");
            async move {
                id_of(
                    &api.create_user(user_body(&name, &format!("Large {i}")))
                        .await,
                )
            }
        })
        .buffered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn single_member_patches_of_a_group_of_thousands_publish_its_membership_and_its_delta() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // The group is built with AMQP off; then a copy of the store goes to a second server. One
    // server publishes in full mode, the other with AMQP_GROUP_MEMBERS=changes, both from position
    // 1 (the group as of each 500-member PATCH is rebuilt by undoing every later delta), and the
    // same single-member PATCHes go to both while they publish live.
    let mut full = Scimd::start_default().await;
    let api = full.client();
    let users = create_many_users(&api, "amqp.large", LARGE + 3).await;
    let (members, extra) = users.split_at(LARGE);
    let gid = id_of(&api.create_group_with("large", &[]).await);
    let path = format!("/Groups/{gid}");
    let mut setup = BTreeMap::new();
    setup.insert(1, relative(&full, &api.group(&gid).await));
    for chunk in members.chunks(CHUNK) {
        let value: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        api.patch(
            &path,
            &patch_ops(json!([{"op": "add", "path": "members", "value": value}])),
        )
        .await
        .expect(204);
        let g = api.group(&gid).await;
        setup.insert(version_number(&g["meta"]["version"]), relative(&full, &g));
    }
    assert_eq!(member_ids(&setup[&5]), sorted(members));
    full.stop().await;
    let copy = tempfile::Builder::new()
        .prefix("scimd-amqp-copy-")
        .tempdir()
        .expect("temp dir");
    for entry in std::fs::read_dir(full.data_path()).expect("read DATA_PATH") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "scimd.lock" {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy store");
        }
    }
    let (full_queue, changes_queue) = (unique("large-full"), unique("large-changes"));
    let mut full_q = Queue::open(&broker.url, &full_queue).await;
    let mut changes_q = Queue::open(&broker.url, &changes_queue).await;
    full.opts = broker.opts(&full_queue);
    full.start_again().await;
    let changes = Scimd::start(
        broker
            .opts(&changes_queue)
            .env("AMQP_GROUP_MEMBERS", "changes")
            .env("DATA_PATH", copy.path().to_str().unwrap()),
    )
    .await;

    let add = |id: &String| json!([{"op": "add", "path": "members", "value": [{"value": id}]}]);
    let singles: [(Value, Vec<&String>, Vec<&String>); 7] = [
        (add(&extra[0]), vec![&extra[0]], vec![]),
        (
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", members[17])}]),
            vec![],
            vec![&members[17]],
        ),
        (add(&extra[1]), vec![&extra[1]], vec![]),
        // Entra's removal by value.
        (
            json!([{"op": "remove", "path": "members", "value": [{"value": members[1500]}]}]),
            vec![],
            vec![&members[1500]],
        ),
        (
            json!([{"op": "remove", "path": "members", "value": [{"value": extra[0]}]}]),
            vec![],
            vec![&extra[0]],
        ),
        (add(&members[17]), vec![&members[17]], vec![]),
        (add(&extra[2]), vec![&extra[2]], vec![]),
    ];
    let servers = [&full, &changes];
    let mut gets = [setup.clone(), setup];
    for (ops, _, _) in &singles {
        for (k, s) in servers.iter().enumerate() {
            let api = s.client();
            api.patch(&path, &patch_ops(ops.clone())).await.expect(204);
            let g = api.group(&gid).await;
            gets[k].insert(version_number(&g["meta"]["version"]), relative(s, &g));
        }
    }
    let mut end: Vec<&String> = members.iter().filter(|id| **id != members[1500]).collect();
    end.extend([&extra[1], &extra[2]]);
    for got in &gets {
        assert_eq!(got.len(), 1 + 4 + 7);
        assert_eq!(member_ids(&got[&12]), sorted(&end));
        let sizes: Vec<usize> = got.range(6..).map(|(_, g)| member_ids(g).len()).collect();
        assert_eq!(sizes, [2001, 2000, 2001, 2000, 1999, 2000, 2001]);
    }

    // Full mode: each group message lists the members as of its event, exactly as GET showed them.
    let events = log_events(&full).await;
    assert_eq!(events.len(), LARGE + 3 + 1 + 4 + 7);
    let mut msgs = full_q.take_all_of(&event_ids(&events), RECOVERY).await;
    msgs.extend(full_q.drain(Duration::from_secs(1)).await);
    assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    let mut seen = HashSet::new();
    for m in msgs.iter().filter(|m| m.scim_id() == gid) {
        if !seen.insert(m.id().to_string()) {
            continue;
        }
        let e = by_message(&events, m);
        assert_message(m, e, &gets[0][&e.version]);
        assert_body_keys(m, &["operation", "resource"]);
    }
    assert_eq!(seen.len(), 12, "one message per group event");

    // Changes mode: each group message carries exactly its delta and no member list.
    let events = log_events(&changes).await;
    assert_eq!(events.len(), LARGE + 3 + 1 + 4 + 7);
    let mut msgs = changes_q.take_all_of(&event_ids(&events), RECOVERY).await;
    msgs.extend(changes_q.drain(Duration::from_secs(1)).await);
    assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    let ids_of = |refs: &Value| -> Vec<String> {
        let list = refs
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {refs}"));
        for r in list {
            assert_eq!(r["type"], json!("User"), "{r}");
        }
        let ids: Vec<&str> = list.iter().map(|r| r["value"].as_str().unwrap()).collect();
        sorted(&ids)
    };
    let mut seen = HashSet::new();
    for m in msgs.iter().filter(|m| m.scim_id() == gid) {
        if !seen.insert(m.id().to_string()) {
            continue;
        }
        let e = by_message(&events, m);
        assert_body_keys(m, &["operation", "resource", "members"]);
        let mut get = gets[1][&e.version].clone();
        get.as_object_mut().unwrap().remove("members");
        assert_message(m, e, &get);
        let (added, removed) = (
            ids_of(&m.body["members"]["added"]),
            ids_of(&m.body["members"]["removed"]),
        );
        let expected: (Vec<String>, Vec<String>) = match e.version {
            1 => (vec![], vec![]),
            v @ 2..=5 => (
                sorted(&members[(v as usize - 2) * CHUNK..(v as usize - 1) * CHUNK]),
                vec![],
            ),
            v => {
                let (_, a, r) = &singles[v as usize - 6];
                (sorted(a), sorted(r))
            }
        };
        assert_eq!(
            (added.len(), removed.len()),
            (expected.0.len(), expected.1.len()),
            "delta sizes of group v{}",
            e.version
        );
        assert_eq!(
            (added, removed),
            expected,
            "the delta of group v{}",
            e.version
        );
    }
    assert_eq!(seen.len(), 12, "one message per group event");
    for q in [full_q, changes_q] {
        q.delete().await;
    }
}
