//! `sets_of` against a real store: every event kind, the `active` flip, notice and full, and the
//! group-as-feed membership SETs.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::*;
use crate::store::{Store, Write, WriteContext};
use scim::patch::{OpKind, Operation};
use scim::resource::MemberInput;
use scim::schema::{Registry, SchemaMode};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Arc::new(Registry::built_in(SchemaMode::Strict).expect("registry"));
        let store = Arc::new(Store::open(dir.path(), registry, 1 << 20).expect("store"));
        Fixture { _dir: dir, store }
    }

    async fn write(&self, write: Write, txn: &str) {
        self.store
            .write(
                write,
                WriteContext {
                    actor: "test".into(),
                    txn_id: txn.into(),
                },
            )
            .await
            .expect("written");
    }

    /// The SETs of the event at `position` for `feed`.
    fn sets(&self, position: u64, feed: &FeedId, cfg: &SetConfig) -> Vec<SetClaims> {
        let snap = self.store.snapshot().expect("snapshot");
        let event = snap.event(position).expect("read").expect("event");
        sets_of(&event, &snap, feed, cfg).expect("sets")
    }
}

fn config(mode: EventMode, group_as_feed: bool) -> SetConfig {
    SetConfig {
        issuer: "https://idm.example.org".into(),
        audience: vec!["https://rp.example.org".into()],
        mode,
        group_as_feed,
        base: "https://idm.example.org/scim/v2".into(),
    }
}

fn user(name: &str, active: bool) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "active": active,
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

fn group(name: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

fn members(ids: &[&str]) -> Option<Vec<MemberInput>> {
    Some(
        ids.iter()
            .map(|id| MemberInput {
                value: (*id).into(),
                member_type: Some(ResourceType::User),
            })
            .collect(),
    )
}

fn uris(set: &SetClaims) -> Vec<&str> {
    let mut uris: Vec<&str> = set.events.keys().map(String::as_str).collect();
    uris.sort_unstable();
    uris
}

fn create_user(id: &str, active: bool) -> Write {
    Write::Create {
        rt: ResourceType::User,
        id: id.into(),
        attributes: user(id, active),
        members: None,
    }
}

#[tokio::test]
async fn each_user_event_is_one_set_with_the_envelope_rfc_9967_asks_for() {
    let f = Fixture::new();
    let cfg = config(EventMode::Notice, false);
    let default = FeedId::default_feed();
    f.write(create_user("u1", true), "t-create").await;
    f.write(
        Write::Replace {
            rt: ResourceType::User,
            id: "u1".into(),
            if_match: None,
            attributes: user("u1", false),
            members: None,
        },
        "t-put",
    )
    .await;
    f.write(
        Write::Patch {
            rt: ResourceType::User,
            id: "u1".into(),
            if_match: None,
            operations: vec![Operation {
                op: OpKind::Replace,
                path: Some("displayName".into()),
                value: Some(json!("Alice")),
            }],
            limits: Default::default(),
            with_members: false,
            time_limit: std::time::Duration::from_secs(5),
        },
        "t-patch",
    )
    .await;
    f.write(
        Write::Delete {
            rt: ResourceType::User,
            id: "u1".into(),
            if_match: None,
        },
        "t-delete",
    )
    .await;

    let [create] = f.sets(1, &default, &cfg).try_into().expect("one SET");
    assert_eq!(create.jti, "default:1:0");
    assert_eq!(create.txn, "t-create");
    assert_eq!(create.iss, "https://idm.example.org");
    assert_eq!(create.aud, Some(json!("https://rp.example.org")));
    assert_eq!(
        serde_json::to_value(&create.sub_id).expect("json"),
        json!({"format": "scim", "uri": "/Users/u1", "id": "u1", "externalId": "ext-u1"})
    );
    assert_eq!(uris(&create), [uri::ACTIVATE, uri::CREATE_NOTICE]);
    let notice = &create.events[uri::CREATE_NOTICE];
    assert_eq!(notice["version"], "W/\"1\"");
    let attributes = notice["attributes"].as_array().expect("attributes");
    assert!(attributes.contains(&json!("userName")) && notice.get("data").is_none());

    let [put] = f.sets(2, &default, &cfg).try_into().expect("one SET");
    assert_eq!(uris(&put), [uri::DEACTIVATE, uri::PUT_NOTICE]);
    assert_eq!(put.events[uri::PUT_NOTICE]["attributes"], json!(["active"]));
    assert_eq!(put.events[uri::PUT_NOTICE]["version"], "W/\"2\"");

    let [patch] = f.sets(3, &default, &cfg).try_into().expect("one SET");
    assert_eq!(uris(&patch), [uri::PATCH_NOTICE], "active did not flip");
    assert_eq!(
        patch.events[uri::PATCH_NOTICE]["attributes"],
        json!(["displayName"])
    );

    let [delete] = f.sets(4, &default, &cfg).try_into().expect("one SET");
    assert_eq!(uris(&delete), [uri::DELETE]);
    assert_eq!(delete.events[uri::DELETE], json!({}));
    assert_eq!(delete.jti, "default:4:0");
}

#[tokio::test]
async fn a_user_created_inactive_gets_no_deactivate_and_full_mode_carries_the_resource() {
    let f = Fixture::new();
    let cfg = config(EventMode::Full, false);
    f.write(create_user("u1", false), "t1").await;
    let [create] = f
        .sets(1, &FeedId::default_feed(), &cfg)
        .try_into()
        .expect("one SET");
    assert_eq!(uris(&create), [uri::CREATE_FULL]);
    let full = &create.events[uri::CREATE_FULL];
    assert_eq!(full["data"]["id"], "u1");
    assert_eq!(full["data"]["userName"], "u1");
    assert_eq!(
        full["data"]["meta"]["location"],
        "https://idm.example.org/scim/v2/Users/u1"
    );
    assert_eq!(full["version"], "W/\"1\"");
    assert!(full.get("attributes").is_none());
}

#[tokio::test]
async fn a_group_feed_hears_of_members_joining_changing_leaving_and_being_deleted() {
    let f = Fixture::new();
    let cfg = config(EventMode::Notice, true);
    for id in ["u1", "u2", "u3"] {
        f.write(create_user(id, true), id).await; // positions 1-3
    }
    f.write(
        Write::Create {
            rt: ResourceType::Group,
            id: "g".into(),
            attributes: group("staff"),
            members: members(&["u1", "u2"]),
        },
        "t-group",
    )
    .await; // 4
    let feed = FeedId::group("g");
    assert!(f.sets(1, &feed, &cfg).is_empty(), "u1 joined later");

    let joined = f.sets(4, &feed, &cfg);
    assert_eq!(joined.len(), 2);
    for (i, (set, id)) in joined.iter().zip(["u1", "u2"]).enumerate() {
        assert_eq!(uris(set), [uri::FEED_ADD]);
        assert_eq!(set.sub_id.id, id);
        assert_eq!(set.jti, format!("group:g:4:{i}"));
        assert_eq!(set.txn, "t-group", "same transaction as the group's change");
    }
    let [group_set] = f
        .sets(4, &FeedId::default_feed(), &cfg)
        .try_into()
        .expect("the default feed: the group's own create");
    assert_eq!(group_set.sub_id.uri, "/Groups/g");

    f.write(
        Write::Replace {
            rt: ResourceType::User,
            id: "u1".into(),
            if_match: None,
            attributes: user("u1", false),
            members: None,
        },
        "t5",
    )
    .await; // 5
    let [change] = f.sets(5, &feed, &cfg).try_into().expect("a member's SET");
    assert_eq!(uris(&change), [uri::DEACTIVATE, uri::PUT_NOTICE]);
    f.write(
        Write::Replace {
            rt: ResourceType::User,
            id: "u3".into(),
            if_match: None,
            attributes: user("u3", false),
            members: None,
        },
        "t6",
    )
    .await; // 6
    assert!(f.sets(6, &feed, &cfg).is_empty(), "u3 is no member");

    f.write(
        Write::Replace {
            rt: ResourceType::Group,
            id: "g".into(),
            if_match: None,
            attributes: group("staff"),
            members: members(&["u2"]),
        },
        "t7",
    )
    .await; // 7
    let [left] = f.sets(7, &feed, &cfg).try_into().expect("u1 left");
    assert_eq!(uris(&left), [uri::FEED_REMOVE]);
    assert_eq!(left.sub_id.id, "u1");
    assert!(
        f.sets(5, &feed, &cfg).len() == 1,
        "u1 was still a member at position 5, though not any more"
    );

    f.write(
        Write::Delete {
            rt: ResourceType::User,
            id: "u2".into(),
            if_match: None,
        },
        "t8",
    )
    .await; // 8: u2's delete, 9: the group's cascade
    let [deleted] = f.sets(8, &feed, &cfg).try_into().expect("the delete");
    assert_eq!(uris(&deleted), [uri::DELETE]);
    assert!(
        f.sets(9, &feed, &cfg).is_empty(),
        "no feed:remove beside a prov:delete (RFC 9967 §2.4.4)"
    );
    let [cascade] = f
        .sets(9, &FeedId::default_feed(), &cfg)
        .try_into()
        .expect("the group's server-made patch");
    assert_eq!(uris(&cascade), [uri::PATCH_NOTICE]);
    assert_eq!(
        cascade.events[uri::PATCH_NOTICE]["attributes"],
        json!(["members"])
    );

    assert!(
        f.sets(4, &feed, &config(EventMode::Notice, false))
            .is_empty(),
        "no group feeds without SET_GROUP_AS_FEED"
    );
}

#[tokio::test]
async fn activate_and_deactivate_only_when_active_really_flips() {
    let f = Fixture::new();
    let cfg = config(EventMode::Notice, false);
    let default = FeedId::default_feed();
    let mut without_active = user("u1", false);
    without_active.remove("active");
    f.write(
        Write::Create {
            rt: ResourceType::User,
            id: "u1".into(),
            attributes: without_active.clone(),
            members: None,
        },
        "t1",
    )
    .await;
    let replace = |attributes: Map<String, Value>| Write::Replace {
        rt: ResourceType::User,
        id: "u1".into(),
        if_match: None,
        attributes,
        members: None,
    };
    // Absent → false → absent: never active, so nothing was deactivated.
    f.write(replace(user("u1", false)), "t2").await;
    f.write(replace(without_active.clone()), "t3").await;
    // Absent → true → absent: on, then off.
    f.write(replace(user("u1", true)), "t4").await;
    f.write(replace(without_active), "t5").await;
    let flips: Vec<Vec<&str>> = (2..=5)
        .map(|p| {
            let [set] = f.sets(p, &default, &cfg).try_into().expect("one SET");
            uris(&set)
                .into_iter()
                .filter(|u| *u == uri::ACTIVATE || *u == uri::DEACTIVATE)
                .map(|u| {
                    if u == uri::ACTIVATE {
                        "activate"
                    } else {
                        "deactivate"
                    }
                })
                .collect()
        })
        .collect();
    assert_eq!(
        flips,
        [vec![], vec![], vec!["activate"], vec!["deactivate"]]
    );
}
