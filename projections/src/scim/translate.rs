//! What the upstream receives: scimd's documents and membership deltas turned into request bodies,
//! with every reference to a scimd id (member values, the enterprise `manager`) replaced by the
//! upstream's id. Pure functions; the lookups happen before.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::{Member, ResourceKind};

/// RFC 7644 §3.5.2: the PatchOp message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// RFC 7643 §4.3: the enterprise User extension, whose `manager.value` is a User id.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Most operations sent in one PATCH: a large delta goes out in several requests.
pub const MAX_OPERATIONS: usize = 1000;

/// scimd id → upstream id, for the references of one document or delta.
pub type Translation = HashMap<(ResourceKind, String), String>;

/// The references (kind, scimd id) of `document` that need an upstream id: its members and the
/// enterprise manager.
pub fn references(kind: ResourceKind, document: &Value) -> Vec<(ResourceKind, String)> {
    let mut out = Vec::new();
    if let Some(members) = document.get("members").and_then(Value::as_array) {
        for m in members {
            if let Some(value) = m.get("value").and_then(Value::as_str) {
                out.push((member_kind(m), value.to_owned()));
            }
        }
    }
    if kind == ResourceKind::User
        && let Some(manager) = manager_value(document)
    {
        out.push((ResourceKind::User, manager.to_owned()));
    }
    out
}

/// The body of a POST or PUT: the document without `id` and `meta` (the upstream's own), members
/// as `{value, type}` with upstream ids, and the manager's id translated. `externalId` and every
/// other attribute go unchanged. A reference with no upstream id (its resource is not there yet, or
/// was refused) is left out and returned, so the caller can add it once it exists.
pub fn body(
    kind: ResourceKind,
    document: &Value,
    ids: &Translation,
) -> (Value, Vec<(ResourceKind, String)>) {
    let mut missing = Vec::new();
    let mut out: Map<String, Value> = match document {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    out.remove("id");
    out.remove("meta");
    out.remove("groups");
    out.remove("password");
    if let Some(Value::Array(members)) = out.remove("members") {
        let mut translated = Vec::with_capacity(members.len());
        for m in &members {
            let Some(value) = m.get("value").and_then(Value::as_str) else {
                continue;
            };
            let mk = member_kind(m);
            match ids.get(&(mk, value.to_owned())) {
                Some(remote) => translated.push(member_value(remote, mk)),
                None => missing.push((mk, value.to_owned())),
            }
        }
        out.insert("members".into(), Value::Array(translated));
    }
    if kind == ResourceKind::User
        && let Some(Value::Object(enterprise)) = out.get_mut(ENTERPRISE)
        && let Some(Value::Object(manager)) = enterprise.get_mut("manager")
    {
        manager.remove("$ref");
        manager.remove("displayName");
        let remote = manager
            .get("value")
            .and_then(Value::as_str)
            .and_then(|v| ids.get(&(ResourceKind::User, v.to_owned())));
        match remote {
            Some(remote) => {
                manager.insert("value".into(), Value::String(remote.clone()));
            }
            None => {
                if let Some(Value::String(v)) = manager.get("value") {
                    missing.push((ResourceKind::User, v.clone()));
                }
                enterprise.remove("manager");
            }
        }
    }
    (Value::Object(out), missing)
}

/// PatchOp bodies for a group's membership delta (RFC 7644 §3.5.2): one `add` of the added
/// members, one `remove` with a value filter per removed member, never the whole list; with
/// `attributes`, a first path-less `replace` of the group's other attributes (and a `remove` of
/// `externalId` when the group no longer has one). Split into bodies of at most
/// [`MAX_OPERATIONS`] operations (members per `add` included).
pub fn member_patches(
    attributes: Option<&Value>,
    added: &[(String, ResourceKind)],
    removed: &[String],
) -> Vec<Value> {
    let mut operations: Vec<Value> = Vec::new();
    if let Some(Value::Object(document)) = attributes {
        let mut values = document.clone();
        for key in ["id", "meta", "schemas", "members", "groups"] {
            values.remove(key);
        }
        if !document.contains_key("externalId") {
            operations.push(json!({"op": "remove", "path": "externalId"}));
        }
        operations.push(json!({"op": "replace", "value": values}));
    }
    for remote in removed {
        operations.push(json!({
            "op": "remove",
            "path": format!("members[value eq {}]", Value::String(remote.clone())),
        }));
    }
    let mut bodies = Vec::new();
    let mut pending_adds: &[(String, ResourceKind)] = added;
    loop {
        let room = MAX_OPERATIONS.saturating_sub(operations.len());
        let take = room.min(pending_adds.len());
        if take > 0 {
            let values: Vec<Value> = pending_adds[..take]
                .iter()
                .map(|(remote, kind)| member_value(remote, *kind))
                .collect();
            operations.push(json!({"op": "add", "path": "members", "value": values}));
            pending_adds = &pending_adds[take..];
        }
        while operations.len() > MAX_OPERATIONS {
            let rest = operations.split_off(MAX_OPERATIONS);
            bodies.push(patch_body(std::mem::replace(&mut operations, rest)));
        }
        if pending_adds.is_empty() {
            break;
        }
        if !operations.is_empty() {
            bodies.push(patch_body(std::mem::take(&mut operations)));
        }
    }
    if !operations.is_empty() {
        bodies.push(patch_body(operations));
    }
    bodies
}

/// A group's member list after a delta, for an upstream without PATCH: `current` (the upstream's
/// members as a GET returned them) without `removed`, plus `added` not already there.
pub fn apply_delta(
    current: &[Value],
    added: &[(String, ResourceKind)],
    removed: &[String],
) -> Vec<Value> {
    let mut out: Vec<Value> = current
        .iter()
        .filter_map(|m| {
            let value = m.get("value").and_then(Value::as_str)?;
            (!removed.iter().any(|r| r == value)).then(|| member_value(value, member_kind(m)))
        })
        .collect();
    for (remote, kind) in added {
        let present = out
            .iter()
            .any(|m| m.get("value").and_then(Value::as_str) == Some(remote.as_str()));
        if !present {
            out.push(member_value(remote, *kind));
        }
    }
    out
}

/// The (kind, id) of each member of a delta, for the lookup of their upstream ids.
pub fn delta_references(added: &[Member], removed: &[Member]) -> Vec<(ResourceKind, String)> {
    added
        .iter()
        .chain(removed)
        .map(|m| (m.kind, m.value.clone()))
        .collect()
}

fn patch_body(operations: Vec<Value>) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

fn member_value(remote: &str, kind: ResourceKind) -> Value {
    let kind = match kind {
        ResourceKind::User => "User",
        ResourceKind::Group => "Group",
    };
    json!({"value": remote, "type": kind})
}

fn member_kind(member: &Value) -> ResourceKind {
    match member.get("type").and_then(Value::as_str) {
        Some("Group") => ResourceKind::Group,
        _ => ResourceKind::User,
    }
}

fn manager_value(document: &Value) -> Option<&str> {
    document
        .get(ENTERPRISE)?
        .get("manager")?
        .get("value")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(ResourceKind, &str, &str)]) -> Translation {
        pairs
            .iter()
            .map(|(k, id, r)| ((*k, id.to_string()), r.to_string()))
            .collect()
    }

    #[test]
    fn a_group_body_has_upstream_member_ids_and_no_server_attributes() {
        let document = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g1", "externalId": "idp-7", "displayName": "Staff",
            "meta": {"resourceType": "Group", "version": "W/\"3\""},
            "members": [
                {"value": "u1", "type": "User", "display": "Ann", "$ref": "/Users/u1"},
                {"value": "g2", "type": "Group"},
                {"value": "u9", "type": "User"},
            ],
        });
        let translation = ids(&[
            (ResourceKind::User, "u1", "R-u1"),
            (ResourceKind::Group, "g2", "R-g2"),
        ]);
        let (body, missing) = body(ResourceKind::Group, &document, &translation);
        assert_eq!(
            body,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "externalId": "idp-7", "displayName": "Staff",
                "members": [{"value": "R-u1", "type": "User"}, {"value": "R-g2", "type": "Group"}],
            })
        );
        assert_eq!(missing, vec![(ResourceKind::User, "u9".to_string())]);
    }

    #[test]
    fn a_users_manager_is_translated_or_left_out_until_it_exists_upstream() {
        let document = json!({
            "id": "u2", "userName": "bob", "externalId": "e-2",
            ENTERPRISE: {"employeeNumber": "7", "manager": {"value": "u1", "$ref": "/Users/u1", "displayName": "Ann"}},
        });
        assert_eq!(
            references(ResourceKind::User, &document),
            vec![(ResourceKind::User, "u1".to_string())]
        );
        let (sent, missing) = body(
            ResourceKind::User,
            &document,
            &ids(&[(ResourceKind::User, "u1", "R-u1")]),
        );
        assert_eq!(
            sent,
            json!({"userName": "bob", "externalId": "e-2", ENTERPRISE: {"employeeNumber": "7", "manager": {"value": "R-u1"}}})
        );
        assert!(missing.is_empty());
        let (sent, missing) = body(ResourceKind::User, &document, &Translation::new());
        assert_eq!(sent[ENTERPRISE], json!({"employeeNumber": "7"}));
        assert_eq!(missing, vec![(ResourceKind::User, "u1".to_string())]);
    }

    #[test]
    fn a_member_delta_is_add_and_remove_operations_never_the_list() {
        let added = vec![("R-a".to_string(), ResourceKind::User)];
        let removed = vec!["R-\"b".to_string()];
        let bodies = member_patches(None, &added, &removed);
        assert_eq!(
            bodies,
            vec![json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "remove", "path": "members[value eq \"R-\\\"b\"]"},
                {"op": "add", "path": "members", "value": [{"value": "R-a", "type": "User"}]},
            ]})]
        );
        let renamed = json!({"id": "g", "displayName": "New", "meta": {}, "schemas": ["s"]});
        let bodies = member_patches(Some(&renamed), &[], &[]);
        assert_eq!(
            bodies[0]["Operations"],
            json!([{"op": "remove", "path": "externalId"}, {"op": "replace", "value": {"displayName": "New"}}])
        );
    }

    #[test]
    fn a_large_delta_is_split_into_patches_of_bounded_size() {
        let added: Vec<(String, ResourceKind)> = (0..2500)
            .map(|i| (format!("a{i}"), ResourceKind::User))
            .collect();
        let removed: Vec<String> = (0..1500).map(|i| format!("r{i}")).collect();
        let bodies = member_patches(None, &added, &removed);
        let mut adds = 0;
        let mut removes = 0;
        for body in &bodies {
            let ops = body["Operations"].as_array().expect("operations");
            let size: usize = ops
                .iter()
                .map(|op| op["value"].as_array().map_or(1, Vec::len))
                .sum();
            assert!(size <= MAX_OPERATIONS, "{size} values in one PATCH");
            for op in ops {
                match op["op"].as_str() {
                    Some("add") => adds += op["value"].as_array().map_or(0, Vec::len),
                    Some("remove") => removes += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!((adds, removes), (2500, 1500));
    }

    #[test]
    fn without_patch_a_delta_is_applied_to_the_upstream_list() {
        let current = vec![
            json!({"value": "R-1", "type": "User", "display": "x"}),
            json!({"value": "R-2"}),
        ];
        let out = apply_delta(
            &current,
            &[
                ("R-2".into(), ResourceKind::User),
                ("R-3".into(), ResourceKind::Group),
            ],
            &["R-1".into()],
        );
        assert_eq!(
            out,
            vec![
                json!({"value": "R-2", "type": "User"}),
                json!({"value": "R-3", "type": "Group"})
            ]
        );
    }
}
