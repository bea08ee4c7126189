//! The AMQP fan-out (issue 3), from outside, the content of the messages: every kind of write
//! (create, replace, delete, the cascade of a user's delete into its groups, a Bulk request) publishes
//! one message per event with the resource as `GET` returned it at the time, also when the publisher
//! runs long after the write; and the options that shape messages (`AMQP_EXCHANGE` and its routing
//! keys, `AMQP_GROUP_MEMBERS=changes`, `PUBLIC_URL`).
//!
//! A real `scimd serve` publishes to a real RabbitMQ; every message is read back from the queue with
//! lapin and checked against the log (`scimd log tail`). The broker and its sharing:
//! [`common::amqp`].

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::amqp::*;
use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Every operation type
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_create_replace_and_delete_each_publish_one_message_with_the_resource_as_get_returns_it()
 {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("users");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let t0 = unix_now();

    let created = api
        .create_user(json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.alice",
            "password": PASSWORD,
            "displayName": "Alice",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@example.org", "type": "work", "primary": true}],
            "active": true,
        }))
        .await;
    let id = id_of(&created);
    let path = format!("/Users/{id}");
    let v1 = api.user(&id).await;
    api.put(
        &path,
        &json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.alice",
            "password": format!("{PASSWORD}-2"),
            "displayName": "Alice L.",
            "title": "Queen",
        }),
    )
    .await
    .expect(200);
    let v2 = api.user(&id).await;
    // A replace without a password keeps the stored one; still none in the message.
    api.put(
        &path,
        &json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.alice",
            "displayName": "Alice Liddell",
            "title": "Queen",
        }),
    )
    .await
    .expect(200);
    let v3 = api.user(&id).await;
    api.delete(&path).await.expect(204);
    let t1 = unix_now();

    let msgs = q.take(4, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4, "{events:#?}");

    let expected = [&v1, &v2, &v3, &v3];
    for (i, m) in msgs.iter().enumerate() {
        let e = &events[i];
        assert_eq!(e.position, i as u64 + 1);
        assert_message(m, e, &relative(&s, expected[i]));
        assert_body_keys(m, &["operation", "resource"]);
        // The default exchange, routed by queue name.
        assert_eq!(
            (m.exchange.as_str(), m.routing_key.as_str()),
            ("", queue.as_str()),
            "{m:?}"
        );
        assert!(!m.redelivered, "{m:?}");
        let ts = m.timestamp.unwrap();
        assert!(
            t0 <= ts && ts <= t1,
            "timestamp {ts} outside [{t0}, {t1}]: {m:?}"
        );
        // Without PUBLIC_URL the location is relative.
        assert_eq!(
            m.resource()["meta"]["location"],
            json!(format!("/Users/{id}")),
            "{m:?}"
        );
    }
    let ops: Vec<&str> = msgs.iter().map(Msg::operation).collect();
    assert_eq!(ops, ["Create", "Update", "Update", "Delete"]);
    assert_eq!(
        msgs[0].resource()["emails"][0]["value"],
        json!("alice@example.org")
    );
    assert_eq!(msgs[1].resource()["title"], json!("Queen"));
    assert_eq!(msgs[3].resource()["displayName"], json!("Alice Liddell"));
    assert_eq!(
        msgs.iter().map(Msg::version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    let st = wait_published(&api, DELIVERY).await;
    assert_eq!(st["checkpoint"], json!(4), "{st}");
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn group_create_replace_and_delete_each_publish_the_group_as_of_that_version() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("groups");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let gets = group_history(&s).await;

    let events = log_events(&s).await;
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    check_group_history(&events, &msgs, &gets, true);
    wait_published(&api, DELIVERY).await;
    q.delete().await;
}

/// Users a, b, c (with display names), then a group through create (a, b), replace (renamed; b, c:
/// adds c, removes a), replace (adds a), the delete of user b (a server-made membership-only change
/// of the group), and the group's delete. Returns what GET returned after each write (made
/// [`relative`]), by (id, version).
async fn group_history(s: &Scimd) -> HashMap<(String, u64), Value> {
    let api = s.client();
    let mut gets = HashMap::new();
    let mut ids = Vec::new();
    for n in ["a", "b", "c"] {
        let u = api
            .create_user(user_body(&format!("amqp.group.{n}"), &format!("User {n}")))
            .await;
        gets.insert((id_of(&u), 1), relative(s, &api.user(&id_of(&u)).await));
        ids.push(id_of(&u));
    }
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let gid = id_of(&api.create_group_with("Readers", &[a, b]).await);
    let path = format!("/Groups/{gid}");
    let record = |gets: &mut HashMap<_, _>, v: Value| {
        gets.insert(
            (gid.clone(), version_number(&v["meta"]["version"])),
            relative(s, &v),
        );
    };
    record(&mut gets, api.group(&gid).await);
    for members in [vec![b, c], vec![a, b, c]] {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        api.put(
            &path,
            &json!({
                "schemas": [GROUP_SCHEMA],
                "displayName": "Readers and writers",
                "externalId": "rw-1",
                "members": members,
            }),
        )
        .await
        .expect(200);
        record(&mut gets, api.group(&gid).await);
    }
    api.delete(&format!("/Users/{b}")).await.expect(204);
    record(&mut gets, api.group(&gid).await);
    api.delete(&path).await.expect(204);
    gets
}

/// The messages of [`group_history`], in log order, each equal to what GET returned at the time
/// (members' `display` left out of the comparison when `with_display` is false).
#[track_caller]
fn check_group_history(
    events: &[LogEvent],
    msgs: &[Msg],
    gets: &HashMap<(String, u64), Value>,
    with_display: bool,
) {
    assert_eq!(
        events.len(),
        9,
        "3 user creates, 5 group writes, 1 user delete: {events:#?}"
    );
    assert_eq!(msgs.len(), events.len());
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if !with_display {
            for m in v
                .get_mut("members")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                m.as_object_mut().unwrap().remove("display");
            }
        }
        v
    };
    for (m, e) in msgs.iter().zip(events) {
        let shown = if e.kind == "delete" {
            e.version - 1
        } else {
            e.version
        };
        let get = gets
            .get(&(e.resource_id.clone(), shown))
            .unwrap_or_else(|| panic!("no GET recorded for {e:?}"));
        let mut m = m.clone();
        m.body["resource"] = strip(m.resource());
        assert_message(&m, e, &strip(get));
        assert_body_keys(&m, &["operation", "resource"]);
    }
    let groups: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.resource_type() == "Group")
        .collect();
    let ops: Vec<&str> = groups.iter().map(|m| m.operation()).collect();
    assert_eq!(ops, ["Create", "Update", "Update", "Update", "Delete"]);
    let sizes: Vec<usize> = groups
        .iter()
        .map(|m| member_ids(m.resource()).len())
        .collect();
    assert_eq!(
        sizes,
        [2, 2, 3, 2, 2],
        "members per group message: {groups:#?}"
    );
    for m in &groups {
        for member in m.resource()["members"].as_array().unwrap() {
            let value = member["value"].as_str().unwrap();
            assert_eq!(member["type"], json!("User"), "{m:?}");
            assert_eq!(member["$ref"], json!(format!("/Users/{value}")), "{m:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_published_long_after_the_writes_still_show_each_group_as_of_its_own_version() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // Write everything with AMQP off, then turn it on: the publisher starts at position 1 and must
    // rebuild each group version from the current (deleted) state by undoing later deltas.
    let queue = unique("late");
    let mut s = Scimd::start_default().await;
    let gets = group_history(&s).await;
    s.stop().await;
    let mut q = Queue::open(&broker.url, &queue).await;
    s.opts = broker.opts(&queue);
    s.start_again().await;

    let events = log_events(&s).await;
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    // Member display names are checked by the next test.
    check_group_history(&events, &msgs, &gets, false);
    wait_published(&s.client(), DELIVERY).await;
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_group_message_shows_member_display_names_as_of_the_event() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // `resource` is the group as of its event: its members' `display` too, not the member's
    // current name (the publisher may run long after the write: outage, restart, AMQP turned on).
    let queue = unique("late-display");
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user(user_body("amqp.display.a", "Ann")).await);
    let g = id_of(&api.create_group_with("display", &[&a]).await);
    let g_then = relative(&s, &api.group(&g).await);
    assert_eq!(g_then["members"][0]["display"], json!("Ann"), "{g_then}");
    api.put(
        &format!("/Users/{a}"),
        &user_body("amqp.display.a", "Annie"),
    )
    .await
    .expect(200);
    s.stop().await;
    let mut q = Queue::open(&broker.url, &queue).await;
    s.opts = broker.opts(&queue);
    s.start_again().await;

    let msgs = q.take(3, DELIVERY).await;
    let events = log_events(&s).await;
    q.delete().await;
    assert_eq!(
        msgs[1].resource()["members"][0]["display"],
        json!("Ann"),
        "the group's Create: {:?}",
        msgs[1]
    );
    assert_message(&msgs[1], &events[1], &g_then);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_member_shows_its_new_name_in_the_next_group_message() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // The publisher keeps each group's members and their display names from one message to the
    // next: a member renamed between two messages of its group must show its new name in the
    // second, whether both go in one window (written before the publisher ran) or one at a time.
    let queue = unique("rename-display");
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user(user_body("amqp.rename.a", "Ann")).await);
    let b = id_of(&api.create_user(user_body("amqp.rename.b", "Bob")).await);
    let g = id_of(&api.create_group_with("rename-inner", &[&a]).await);
    let h = id_of(&api.create_group_with("rename-outer", &[&g]).await);
    let rename =
        |name: &str| patch_ops(json!([{"op": "replace", "path": "displayName", "value": name}]));
    let add =
        |id: &str| patch_ops(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
    api.patch(&format!("/Users/{a}"), &rename("Annie"))
        .await
        .expect(200);
    api.patch(&format!("/Groups/{g}"), &rename("renamed-inner"))
        .await
        .expect(204);
    api.patch(&format!("/Groups/{g}"), &add(&b))
        .await
        .expect(204);
    api.patch(&format!("/Groups/{h}"), &add(&b))
        .await
        .expect(204);
    s.stop().await;
    let mut q = Queue::open(&broker.url, &queue).await;
    s.opts = broker.opts(&queue);
    s.start_again().await;

    let display = |m: &Msg, id: &str| -> Value {
        let members = m.resource()["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        members
            .into_iter()
            .find(|x| x["value"] == json!(id))
            .map_or(Value::Null, |x| x["display"].clone())
    };
    let msgs = q.take(8, DELIVERY).await;
    assert_eq!(display(&msgs[2], &a), json!("Ann"), "{:?}", msgs[2]);
    assert_eq!(
        display(&msgs[3], &g),
        json!("rename-inner"),
        "{:?}",
        msgs[3]
    );
    assert_eq!(display(&msgs[6], &a), json!("Annie"), "{:?}", msgs[6]);
    assert_eq!(
        display(&msgs[7], &g),
        json!("renamed-inner"),
        "{:?}",
        msgs[7]
    );
    // Now one message at a time: the rename is published before the group's next message.
    let api = s.client();
    for (i, name) in ["Anna", "Anne"].into_iter().enumerate() {
        api.patch(&format!("/Users/{a}"), &rename(name))
            .await
            .expect(200);
        let remove_or_add = if i == 0 {
            patch_ops(json!([{"op": "remove", "path": format!("members[value eq \"{b}\"]")}]))
        } else {
            add(&b)
        };
        api.patch(&format!("/Groups/{g}"), &remove_or_add)
            .await
            .expect(204);
        let msgs = q.take(2, DELIVERY).await;
        assert_eq!(msgs[1].resource()["id"], json!(g), "{:?}", msgs[1]);
        assert_eq!(display(&msgs[1], &a), json!(name), "{:?}", msgs[1]);
    }
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_publishes_its_delete_then_an_update_for_each_group_it_was_in() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("cascade");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let a = id_of(&api.create_user(user_body("amqp.cascade.a", "A")).await);
    let b = id_of(&api.create_user(user_body("amqp.cascade.b", "B")).await);
    let g1 = id_of(&api.create_group_with("both", &[&a, &b]).await);
    let g2 = id_of(&api.create_group_with("only a", &[&a]).await);
    let g3 = id_of(&api.create_group_with("only b", &[&b]).await);
    let a_before = api.user(&a).await;
    let before = q.take(5, DELIVERY).await;
    assert_eq!(
        before.iter().map(Msg::operation).collect::<Vec<_>>(),
        ["Create"; 5]
    );

    api.delete(&format!("/Users/{a}")).await.expect(204);
    let g1_after = api.group(&g1).await;
    let g2_after = api.group(&g2).await;
    assert_eq!(member_ids(&g1_after), std::slice::from_ref(&b));
    assert!(member_ids(&g2_after).is_empty());

    let msgs = q.take(3, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 8, "{events:#?}");
    let (delete, cascade) = (&msgs[0], &msgs[1..]);
    // The Delete comes first, then one Update per group the user was in.
    assert_eq!(
        (delete.operation(), delete.resource_type(), delete.scim_id()),
        ("Delete", "User".to_string(), a.clone()),
        "the user's Delete must come before the groups' Updates: {msgs:#?}"
    );
    assert_message(
        delete,
        by_message(&events, delete),
        &relative(&s, &a_before),
    );
    let mut updated = BTreeSet::new();
    for m in cascade {
        let e = by_message(&events, m);
        assert_eq!(e.kind, "patch", "{e:?}");
        assert!(
            e.cause.is_some(),
            "a server-made change records its cause: {e:?}"
        );
        assert!(m.position() > delete.position(), "{msgs:#?}");
        let expected = if m.scim_id() == g1 {
            &g1_after
        } else {
            &g2_after
        };
        assert_message(m, e, &relative(&s, expected));
        assert_eq!(m.version(), 2, "{m:?}");
        updated.insert(m.scim_id());
    }
    assert_eq!(
        updated,
        BTreeSet::from([g1.clone(), g2.clone()]),
        "g3 ({g3}) did not contain a"
    );
    q.delete().await;
}

// ---------------------------------------------------------------------------------------------
// Options: AMQP_EXCHANGE, AMQP_GROUP_MEMBERS, PUBLIC_URL
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn amqp_exchange_publishes_with_routing_keys_resource_type_dot_operation() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let exchange = unique("exchange");
    let queue = unique("all");
    // QUEUE gets everything (scimd binds it with `#`); consumers bind their own queues selectively.
    let mut all = Queue::open(&broker.url, &queue).await;
    let mut user_creates = Queue::bound(
        &broker.url,
        &unique("user-creates"),
        &exchange,
        "User.Create",
    )
    .await;
    let mut deletes = Queue::bound(&broker.url, &unique("deletes"), &exchange, "*.Delete").await;
    let mut groups = Queue::bound(&broker.url, &unique("groups"), &exchange, "Group.#").await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_EXCHANGE", &exchange)).await;
    let api = s.client();

    let u = id_of(&api.create_user(user_body("amqp.routed", "R")).await);
    api.put(&format!("/Users/{u}"), &user_body("amqp.routed", "R2"))
        .await
        .expect(200);
    let g = id_of(&api.create_group_with("routed", &[&u]).await);
    api.delete(&format!("/Users/{u}")).await.expect(204);
    api.delete(&format!("/Groups/{g}")).await.expect(204);

    let msgs = all.take(6, DELIVERY).await;
    all.assert_quiet(Duration::from_secs(1)).await;
    let keys: Vec<(&str, &str)> = msgs
        .iter()
        .map(|m| (m.exchange.as_str(), m.routing_key.as_str()))
        .collect();
    let x = exchange.as_str();
    assert_eq!(
        keys,
        [
            (x, "User.Create"),
            (x, "User.Update"),
            (x, "Group.Create"),
            (x, "User.Delete"),
            (x, "Group.Update"),
            (x, "Group.Delete"),
        ],
        "{msgs:#?}"
    );
    let events = log_events(&s).await;
    assert_every_event_exactly_or_again(&events, &msgs);
    for m in &msgs {
        assert_eq!(
            m.routing_key,
            format!("{}.{}", m.resource_type(), m.operation())
        );
    }

    let got = user_creates.take(1, DELIVERY).await;
    assert_eq!(
        (got[0].scim_id(), got[0].operation()),
        (u.clone(), "Create")
    );
    assert_eq!(
        got[0].body, msgs[0].body,
        "the same message goes to every bound queue"
    );
    let got = deletes.take(2, DELIVERY).await;
    assert_eq!(
        got.iter()
            .map(|m| m.routing_key.as_str())
            .collect::<Vec<_>>(),
        ["User.Delete", "Group.Delete"]
    );
    let got = groups.take(3, DELIVERY).await;
    assert_eq!(
        got.iter()
            .map(|m| m.routing_key.as_str())
            .collect::<Vec<_>>(),
        ["Group.Create", "Group.Update", "Group.Delete"]
    );
    for q in [&mut user_creates, &mut deletes, &mut groups] {
        q.assert_quiet(Duration::from_millis(500)).await;
    }
    for q in [all, user_creates, deletes, groups] {
        q.delete().await;
    }
    delete_exchange(&broker.url, &exchange).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_group_members_changes_sends_member_deltas_beside_a_group_without_members() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("changes");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_GROUP_MEMBERS", "changes")).await;
    let api = s.client();
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for n in ["a", "b", "c"] {
            v.push(id_of(
                &api.create_user(user_body(&format!("amqp.changes.{n}"), n))
                    .await,
            ));
        }
        v
    };
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let g = id_of(&api.create_group_with("deltas", &[a, b]).await);
    let path = format!("/Groups/{g}");
    let mut gets = vec![api.group(&g).await];
    api.put(
        &path,
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "deltas", "members": [{"value": b}, {"value": c}]}),
    )
    .await
    .expect(200);
    gets.push(api.group(&g).await);
    // Renamed, same members: no delta.
    api.put(
        &path,
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "renamed", "members": [{"value": c}, {"value": b}]}),
    )
    .await
    .expect(200);
    gets.push(api.group(&g).await);
    api.delete(&format!("/Users/{b}")).await.expect(204);
    gets.push(api.group(&g).await);
    api.delete(&path).await.expect(204);

    let msgs = q.take(9, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_every_event_exactly_or_again(&events, &msgs);
    let refs = |list: &[&String]| -> Value {
        let mut v: Vec<&String> = list.to_vec();
        v.sort();
        json!(
            v.iter()
                .map(|id| json!({"value": id, "type": "User"}))
                .collect::<Vec<_>>()
        )
    };
    let sorted_refs = |v: &Value| -> Value {
        let mut list = v
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .clone();
        list.sort_by(|x, y| x["value"].to_string().cmp(&y["value"].to_string()));
        Value::Array(list)
    };
    let group_msgs: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.resource_type() == "Group")
        .collect();
    let expected: [(&str, Value, Value); 5] = [
        ("Create", refs(&[a, b]), refs(&[])),
        ("Update", refs(&[c]), refs(&[a])),
        ("Update", refs(&[]), refs(&[])),
        ("Update", refs(&[]), refs(&[b])),
        ("Delete", refs(&[]), refs(&[c])),
    ];
    assert_eq!(group_msgs.len(), 5, "{msgs:#?}");
    for (i, (m, (op, added, removed))) in group_msgs.iter().zip(expected).enumerate() {
        assert_body_keys(m, &["operation", "resource", "members"]);
        assert_eq!(m.operation(), op, "{m:?}");
        assert_eq!(
            sorted_refs(&m.body["members"]["added"]),
            added,
            "members.added: {m:?}"
        );
        assert_eq!(
            sorted_refs(&m.body["members"]["removed"]),
            removed,
            "members.removed: {m:?}"
        );
        assert!(
            m.resource().get("members").is_none(),
            "no member list with `changes`: {m:?}"
        );
        // Otherwise the group as GET returned it (for the Delete: as before).
        let mut get = relative(&s, &gets[i.min(3)]);
        get.as_object_mut().unwrap().remove("members");
        let e = by_message(&events, m);
        assert_message(m, e, &get);
    }
    for m in msgs.iter().filter(|m| m.resource_type() == "User") {
        assert_body_keys(m, &["operation", "resource"]);
    }
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_url_makes_meta_location_and_member_refs_absolute_in_messages() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("public-url");
    let mut q = Queue::open(&broker.url, &queue).await;
    let public = "https://scim.example.org";
    let s = Scimd::start(broker.opts(&queue).public_url(public).base_path("/scim/v2")).await;
    let api = s.client();
    let u = id_of(&api.create_user(user_body("amqp.public", "P")).await);
    // Read before the group exists: messages carry no computed `User.groups`.
    let u_get = api.user(&u).await;
    let g = id_of(&api.create_group_with("public", &[&u]).await);
    let g_get = api.group(&g).await;

    let msgs = q.take(2, DELIVERY).await;
    let events = log_events(&s).await;
    let base = format!("{public}/scim/v2");
    assert_eq!(
        msgs[0].resource()["meta"]["location"],
        json!(format!("{base}/Users/{u}")),
        "{msgs:#?}"
    );
    assert_eq!(
        msgs[1].resource()["meta"]["location"],
        json!(format!("{base}/Groups/{g}")),
        "{msgs:#?}"
    );
    assert_eq!(
        msgs[1].resource()["members"][0]["$ref"],
        json!(format!("{base}/Users/{u}")),
        "{msgs:#?}"
    );
    // Exactly what GET returns, which also builds its URLs from PUBLIC_URL.
    assert_message(&msgs[0], &events[0], &u_get);
    assert_message(&msgs[1], &events[1], &g_get);
    q.delete().await;
}

// ---------------------------------------------------------------------------------------------
// Bulk
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_request_publishes_one_message_per_event_in_log_order() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("bulk");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let answer = api
        .post(
            "/Bulk",
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [
                    {"method": "POST", "path": "/Groups", "bulkId": "g",
                     "data": {"displayName": "Bulk Group",
                              "members": [{"value": "bulkId:keep"}, {"value": "bulkId:gone"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "keep",
                     "data": {"userName": "bulk.keep", "password": PASSWORD}},
                    {"method": "POST", "path": "/Users", "bulkId": "gone", "data": {"userName": "bulk.gone"}},
                    {"method": "PATCH", "path": "/Users/bulkId:keep",
                     "data": patch_ops(json!([{"op": "add", "path": "title", "value": "Kept"}]))},
                    {"method": "DELETE", "path": "/Users/bulkId:gone"},
                    {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "BULK.KEEP"}},
                ],
            }),
        )
        .await
        .expect(200)
        .json();
    let statuses: Vec<&str> = answer["Operations"]
        .as_array()
        .map(|ops| ops.iter().filter_map(|o| o["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        statuses,
        ["201", "201", "201", "200", "204", "409"],
        "{answer}"
    );
    let events = log_events(&s).await;
    // keep, gone, the group (after the users it refers to), keep's PATCH, gone's delete and the
    // group's change as gone leaves it (a membership delta); the refused duplicate wrote nothing.
    assert_eq!(
        events
            .iter()
            .map(|e| format!("{}:{}", e.resource_type, e.kind))
            .collect::<Vec<_>>(),
        [
            "User:create",
            "User:create",
            "Group:create",
            "User:patch",
            "User:delete",
            "Group:patch"
        ],
        "{events:#?}"
    );
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    assert_eq!(msgs.len(), events.len());
    for (m, e) in msgs.iter().zip(&events) {
        assert_eq!(m.message_id.as_deref(), Some(e.event_id.as_str()), "{m:?}");
        assert_eq!(m.position(), e.position);
        assert_eq!(m.operation(), e.operation(), "{m:?}");
        assert_eq!(m.version(), e.version);
        assert!(!m.body.to_string().contains(PASSWORD), "{m:?}");
    }
    // Each resource's last message carries it as GET returns it now.
    let group_id = events[2].resource_id.clone();
    let keep_id = events[0].resource_id.clone();
    assert_eq!(
        normalized(msgs[5].resource()),
        relative(&s, &api.group(&group_id).await)
    );
    assert_eq!(
        normalized(msgs[3].resource()),
        relative(&s, &api.user(&keep_id).await)
    );
    // The group as created held both users; the Delete carries the user as it was.
    assert_eq!(
        msgs[2].resource()["members"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(msgs[4].resource()["userName"], "bulk.gone");
    q.delete().await;
}
