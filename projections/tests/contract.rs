//! The contract every projection backend keeps (see the crate documentation), run against each
//! backend on real storage: files in a temp dir, SQLite in a temp file, PostgreSQL at
//! `SCIMD_TEST_POSTGRES_URL`, MariaDB/MySQL at `SCIMD_TEST_MYSQL_URL`, slapd at
//! `SCIMD_TEST_LDAP_URL`, a MongoDB-wire server at `SCIMD_TEST_MONGO_URL`.
//!
//! Each test below is instantiated once per backend: `file::…`, `sqlite::…`, `postgres::…`,
//! `mysql::…`, `ldap::…`, `mongo::…`. The `delta_*` tests run against the backends that take
//! membership deltas (LDAP, MongoDB).

mod common;

use common::{
    Backend, Which, apply_ok, by_id, delete, group, members_change, refused_user, rejected_index,
    upsert, user,
};
use projections::ResourceKind::{Group, User};
use serde_json::json;

macro_rules! contract_tests {
    ($module:ident, $which:expr) => {
        mod $module {
            use super::*;
            contract_tests!(@each $which;
                upsert_then_delete_leaves_no_row,
                applying_a_batch_twice_gives_the_same_content,
                the_checkpoint_is_written_with_the_rows,
                an_empty_batch_still_records_its_position,
                a_document_too_large_for_the_column_is_rejected_not_retried,
                reset_removes_everything,
                the_last_change_to_a_resource_in_a_batch_wins,
                deleting_what_is_not_there_is_not_an_error,
                users_and_groups_with_the_same_id_are_kept_apart,
                documents_are_stored_as_given,
                a_large_batch_is_applied_in_full,
                the_read_side_gives_back_what_the_backend_holds,
            );
        }
    };
    (@each $which:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                let Some(mut backend) = Backend::open($which).await else { return };
                super::$test(&mut backend).await;
                backend.cleanup().await;
            }
        )*
    };
}

contract_tests!(file, Which::File);
contract_tests!(sqlite, Which::Sqlite);
contract_tests!(postgres, Which::Postgres);
contract_tests!(mysql, Which::MySql);
contract_tests!(ldap, Which::Ldap);
contract_tests!(mongo, Which::Mongo);

macro_rules! delta_tests {
    ($module:ident, $which:expr) => {
        mod $module {
            use super::*;
            contract_tests!(@each $which;
                delta_member_changes_apply_and_are_idempotent,
                delta_for_a_group_that_does_not_exist_is_rejected,
            );
        }
    };
}

delta_tests!(ldap_deltas, Which::Ldap);
delta_tests!(mongo_deltas, Which::Mongo);

mod mongo_keys {
    use super::*;
    contract_tests!(@each Which::Mongo;
        delta_with_dotted_attribute_names_matches_the_document,
    );
}

/// MongoDB reads `a.b` in `$set`/`$unset` as a path into a sub-document: a membership change that
/// also renames attributes with such names (a versioned extension URN, a lenient attribute) must
/// leave exactly the document it carries, not a nested copy beside the stale keys.
async fn delta_with_dotted_attribute_names_matches_the_document(b: &mut Backend) {
    let mut first = group("g-1", "Team", &["u-1"]);
    first["urn:example:params:2.0:Group"] = serde_json::json!({"k": 1});
    first["foo.bar"] = serde_json::json!("x");
    apply_ok(
        b,
        &[
            upsert(User, user("u-1", "user1")),
            upsert(User, user("u-2", "user2")),
        ],
        2,
    )
    .await;
    apply_ok(b, &[upsert(Group, first)], 3).await;

    let mut change = members_change("g-1", 2, &["u-2"], &[]);
    let projections::Change::Members {
        document,
        attributes_changed,
        ..
    } = &mut change
    else {
        unreachable!("members_change builds a Members change")
    };
    *attributes_changed = true;
    document["a.b"] = serde_json::json!({"c": 1});
    let mut expected = document.clone();
    apply_ok(b, std::slice::from_ref(&change), 4).await;

    expected["members"] = group("g-1", "Team", &["u-1", "u-2"])["members"].clone();
    let stored = b.contents(Group).await;
    assert_eq!(stored, by_id(&[&expected]));
}

async fn delta_member_changes_apply_and_are_idempotent(b: &mut Backend) {
    assert!(b.projection.member_deltas());
    let users: Vec<_> = (1..=4)
        .map(|i| user(&format!("u-{i}"), &format!("user{i}")))
        .collect();
    let mut batch: Vec<_> = users.iter().map(|u| upsert(User, u.clone())).collect();
    batch.push(upsert(Group, group("g-1", "Team", &["u-1", "u-2", "u-3"])));
    apply_ok(b, &batch, 5).await;

    let change = members_change("g-1", 2, &["u-4"], &["u-1"]);
    apply_ok(b, std::slice::from_ref(&change), 6).await;
    let groups = b.contents(Group).await;
    let mut expected = group("g-1", "Team", &["u-2", "u-3", "u-4"]);
    if let projections::Change::Members { document, .. } = &change {
        expected["meta"] = document["meta"].clone();
    }
    assert_eq!(groups, by_id(&[&expected]));

    // Redelivered, and a delta whose add is present and whose remove is absent: no error, same state.
    apply_ok(b, std::slice::from_ref(&change), 6).await;
    apply_ok(b, &[members_change("g-1", 2, &["u-2"], &["u-1"])], 6).await;
    assert_eq!(b.contents(Group).await, groups);

    // Emptied and refilled.
    apply_ok(
        b,
        &[members_change("g-1", 3, &[], &["u-2", "u-3", "u-4"])],
        7,
    )
    .await;
    let empty = &b.contents(Group).await["g-1"];
    assert_eq!(empty["members"], serde_json::json!([]), "{empty}");
    apply_ok(b, &[members_change("g-1", 4, &["u-1"], &[])], 8).await;
    let refilled = &b.contents(Group).await["g-1"];
    assert_eq!(refilled["members"][0]["value"], "u-1", "{refilled}");

    // Deleting a member's resource leaves no group listing it (LDAP) or the cascade does (MongoDB).
    apply_ok(
        b,
        &[delete(User, "u-1"), members_change("g-1", 5, &[], &["u-1"])],
        9,
    )
    .await;
    assert_eq!(
        b.contents(Group).await["g-1"]["members"],
        serde_json::json!([])
    );
}

async fn delta_for_a_group_that_does_not_exist_is_rejected(b: &mut Backend) {
    let result = b
        .projection
        .apply(
            &[
                upsert(User, user("u-1", "one")),
                members_change("g-none", 2, &["u-1"], &[]),
            ],
            2,
        )
        .await;
    assert_eq!(rejected_index(b.which, result), 1);
}

async fn upsert_then_delete_leaves_no_row(b: &mut Backend) {
    let alice = user("u-alice", "alice");
    let admins = group("g-admins", "Admins", &["u-alice"]);
    apply_ok(
        b,
        &[upsert(User, alice.clone()), upsert(Group, admins.clone())],
        1,
    )
    .await;
    assert_eq!(b.contents(User).await, by_id(&[&alice]));
    assert_eq!(b.contents(Group).await, by_id(&[&admins]));

    apply_ok(b, &[delete(User, "u-alice"), delete(Group, "g-admins")], 2).await;
    assert!(b.contents(User).await.is_empty());
    assert!(b.contents(Group).await.is_empty());
}

async fn applying_a_batch_twice_gives_the_same_content(b: &mut Backend) {
    let mut alice = user("u-1", "alice");
    let bob = user("u-2", "bob");
    let carol = user("u-3", "carol");
    let team = group("g-1", "Team", &["u-1", "u-2"]);
    let renamed = {
        alice["userName"] = json!("alice.smith");
        alice.clone()
    };
    let batch = vec![
        upsert(User, user("u-1", "alice")),
        upsert(User, bob.clone()),
        upsert(Group, team.clone()),
        upsert(User, renamed.clone()),
        delete(User, "u-2"),
        upsert(User, carol.clone()),
        upsert(Group, group("g-1", "Team", &["u-1"])),
    ];
    apply_ok(b, &batch, 7).await;
    let users = b.contents(User).await;
    let groups = b.contents(Group).await;
    assert_eq!(users, by_id(&[&renamed, &carol]));
    assert_eq!(groups, by_id(&[&group("g-1", "Team", &["u-1"])]));

    // The runner re-applies after a crash: same batch, same position.
    apply_ok(b, &batch, 7).await;
    assert_eq!(b.contents(User).await, users);
    assert_eq!(b.contents(Group).await, groups);

    // And an older batch replayed before the newer one ends in the same state too.
    apply_ok(b, &batch[..3], 3).await;
    apply_ok(b, &batch, 7).await;
    assert_eq!(b.contents(User).await, users);
    assert_eq!(b.contents(Group).await, groups);
    if b.which.keeps_checkpoint() {
        assert_eq!(b.projection.stored_position().await.ok(), Some(Some(7)));
    }
}

async fn the_checkpoint_is_written_with_the_rows(b: &mut Backend) {
    assert_eq!(b.projection.stored_position().await.ok(), Some(None));
    let alice = user("u-alice", "alice");
    apply_ok(b, &[upsert(User, alice.clone())], 41).await;

    if !b.which.keeps_checkpoint() {
        // The file backend leaves the checkpoint to the runner.
        assert_eq!(b.projection.stored_position().await.ok(), Some(None));
        return;
    }
    assert_eq!(b.projection.stored_position().await.ok(), Some(Some(41)));

    // A batch that fails does not move the position; a transactional backend keeps none of its rows.
    let bob = user("u-bob", "bob");
    let (refused, _) = refused_user(b.which);
    let result = b.projection.apply(&[upsert(User, bob), refused], 57).await;
    assert_eq!(rejected_index(b.which, result), 1);
    assert_eq!(b.projection.stored_position().await.ok(), Some(Some(41)));
    if b.which.transactional() {
        assert_eq!(b.contents(User).await, by_id(&[&alice]));
    }

    apply_ok(b, &[delete(User, "u-alice"), delete(User, "u-bob")], 58).await;
    assert_eq!(b.projection.stored_position().await.ok(), Some(Some(58)));
    assert!(b.contents(User).await.is_empty());
}

async fn an_empty_batch_still_records_its_position(b: &mut Backend) {
    apply_ok(b, &[], 3).await;
    let expected = b.which.keeps_checkpoint().then_some(3);
    assert_eq!(b.projection.stored_position().await.ok(), Some(expected));
}

async fn a_document_too_large_for_the_column_is_rejected_not_retried(b: &mut Backend) {
    // An id over 255 characters: too long for VARCHAR(255) (the CHECK on SQLite) and for a file
    // name; LDAP and MongoDB refuse other things (see `refused_user`).
    let first = user("u-first", "first");
    let last = user("u-last", "last");
    let batch = vec![
        upsert(User, first.clone()),
        refused_user(b.which).0,
        upsert(User, last.clone()),
    ];
    let result = b.projection.apply(&batch, 10).await;
    assert_eq!(rejected_index(b.which, result), 1);

    // The runner parks change 1 and goes on; the backend still works.
    apply_ok(b, &[batch[0].clone(), batch[2].clone()], 10).await;
    assert_eq!(b.contents(User).await, by_id(&[&first, &last]));

    // The same change is rejected again: it is not a passing failure.
    let result = b.projection.apply(&batch[1..2], 11).await;
    assert_eq!(rejected_index(b.which, result), 0);
}

async fn reset_removes_everything(b: &mut Backend) {
    let users: Vec<_> = (0..20)
        .map(|i| user(&format!("u-{i}"), &format!("user{i}")))
        .collect();
    let mut batch: Vec<_> = users.iter().map(|u| upsert(User, u.clone())).collect();
    batch.push(upsert(Group, group("g-1", "All", &["u-1", "u-2"])));
    apply_ok(b, &batch, 21).await;
    assert_eq!(b.contents(User).await.len(), 20);

    b.projection.reset().await.expect("reset");
    assert!(b.contents(User).await.is_empty());
    assert!(b.contents(Group).await.is_empty());
    assert_eq!(b.projection.stored_position().await.ok(), Some(None));

    // A rebuild from position 0 starts from an empty backend.
    apply_ok(b, &batch[..2], 2).await;
    assert_eq!(b.contents(User).await, by_id(&[&users[0], &users[1]]));
    let expected = b.which.keeps_checkpoint().then_some(2);
    assert_eq!(b.projection.stored_position().await.ok(), Some(expected));

    // Resetting twice is fine.
    b.projection.reset().await.expect("reset");
    b.projection.reset().await.expect("second reset");
    assert!(b.contents(User).await.is_empty());
}

async fn the_last_change_to_a_resource_in_a_batch_wins(b: &mut Backend) {
    let first = user("u-1", "first");
    let second = user("u-1", "second");
    apply_ok(
        b,
        &[
            upsert(User, first),
            delete(User, "u-1"),
            upsert(User, second.clone()),
            upsert(User, user("u-2", "gone")),
            delete(User, "u-2"),
            upsert(Group, group("g-1", "Old", &[])),
            upsert(Group, group("g-1", "New", &["u-1"])),
        ],
        5,
    )
    .await;
    assert_eq!(b.contents(User).await, by_id(&[&second]));
    assert_eq!(
        b.contents(Group).await,
        by_id(&[&group("g-1", "New", &["u-1"])])
    );
}

async fn deleting_what_is_not_there_is_not_an_error(b: &mut Backend) {
    apply_ok(b, &[delete(User, "u-never"), delete(Group, "g-never")], 1).await;
    apply_ok(b, &[delete(User, "u-never")], 2).await;
    assert!(b.contents(User).await.is_empty());
}

async fn users_and_groups_with_the_same_id_are_kept_apart(b: &mut Backend) {
    let the_user = user("same-id", "someone");
    let the_group = group("same-id", "Something", &[]);
    apply_ok(
        b,
        &[
            upsert(User, the_user.clone()),
            upsert(Group, the_group.clone()),
        ],
        1,
    )
    .await;
    assert_eq!(b.contents(User).await, by_id(&[&the_user]));
    assert_eq!(b.contents(Group).await, by_id(&[&the_group]));

    apply_ok(b, &[delete(User, "same-id")], 2).await;
    assert!(b.contents(User).await.is_empty());
    assert_eq!(b.contents(Group).await, by_id(&[&the_group]));
}

async fn documents_are_stored_as_given(b: &mut Backend) {
    let document = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "bjensen",
        "userName": "bjensen@example.com",
        "name": { "formatted": "Ms. Barbara J Jensen, III", "honorificSuffix": null },
        "displayName": "Zoë 'Babs' \"Jensen\" \\ 北京 🎉",
        "nickName": "",
        "emails": [
            { "value": "bjensen@example.com", "type": "work", "primary": true },
            { "value": "babs@jensen.org", "type": "home" }
        ],
        "x509Certificates": [{ "value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAw" }],
        "active": false,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "manager": { "value": "26118915-6090-4610-87e4-49d8ca9f808d", "$ref": "../Users/26118915" }
        },
        "numbers": [0, -1, 1.5, 12345678901234_i64, 1e-7],
        "nested": [[], {}, [[{ "deep": [true, false, null] }]]],
        "meta": { "resourceType": "User", "version": "W/\"3694e05e9dff591\"" }
    });
    apply_ok(b, &[upsert(User, document.clone())], 1).await;
    assert_eq!(b.contents(User).await, by_id(&[&document]));
}

async fn a_large_batch_is_applied_in_full(b: &mut Backend) {
    // ~1 KB per document: several multi-row statements per table on every dialect.
    let padding = "p".repeat(1000);
    let users: Vec<_> = (0..1500)
        .map(|i| {
            let mut u = user(&format!("u-{i:05}"), &format!("user{i}"));
            u["title"] = json!(padding);
            u
        })
        .collect();
    let member_ids: Vec<String> = (0..300).map(|i| format!("u-{i:05}")).collect();
    let members: Vec<&str> = member_ids.iter().map(String::as_str).collect();
    let big_group = group("g-big", "Everyone", &members);
    let mut batch: Vec<_> = users.iter().map(|u| upsert(User, u.clone())).collect();
    batch.push(upsert(Group, big_group.clone()));
    apply_ok(b, &batch, 1501).await;
    assert_eq!(b.contents(User).await.len(), 1500);

    // Delete 700, rewrite 200 others, in one batch.
    let mut second: Vec<_> = (0..700)
        .map(|i| delete(User, &format!("u-{i:05}")))
        .collect();
    let mut expected: Vec<_> = users[700..].to_vec();
    for u in expected.iter_mut().take(200) {
        u["active"] = json!(false);
        second.push(upsert(User, u.clone()));
    }
    apply_ok(b, &second, 2401).await;
    let refs: Vec<_> = expected.iter().collect();
    assert_eq!(b.contents(User).await, by_id(&refs));
    // LDAP removes a deleted entry's DN from every group (its members were users 0-299).
    let big_group = if b.which == Which::Ldap {
        group("g-big", "Everyone", &[])
    } else {
        big_group
    };
    assert_eq!(b.contents(Group).await, by_id(&[&big_group]));
}

/// What `scimd import` reads of a backend is what the backend holds (the harness's own reader of
/// each layout is the reference; members compared without the derivable `$ref`).
async fn the_read_side_gives_back_what_the_backend_holds(b: &mut Backend) {
    let changes = [
        upsert(User, user("u1", "alice")),
        upsert(User, user("u-2", "bob")),
        upsert(Group, group("g1", "Team", &["u1", "u-2"])),
        upsert(Group, group("g-empty", "Nobody", &[])),
    ];
    apply_ok(b, &changes, 1).await;
    let without_refs = |mut doc: serde_json::Value| {
        if let Some(members) = doc.get_mut("members").and_then(|m| m.as_array_mut()) {
            for m in members.iter_mut() {
                if let Some(m) = m.as_object_mut() {
                    m.remove("$ref");
                }
            }
            members.sort_by(|a, b| a["value"].as_str().cmp(&b["value"].as_str()));
        }
        doc
    };
    let mut source = b.source().await;
    for kind in [User, Group] {
        let read: std::collections::BTreeMap<String, serde_json::Value> = source
            .read(kind)
            .await
            .unwrap_or_else(|e| panic!("read {kind:?}: {e}"))
            .into_iter()
            .map(|held| {
                let found = held.unwrap_or_else(|u| panic!("unreadable: {u:?}"));
                (found.id, without_refs(found.document))
            })
            .collect();
        let held: std::collections::BTreeMap<String, serde_json::Value> = b
            .contents(kind)
            .await
            .into_iter()
            .map(|(id, doc)| (id, without_refs(doc)))
            .collect();
        assert_eq!(read, held, "{kind:?}");
        assert_eq!(read.len(), 2, "{kind:?}: {read:?}");
    }
}
