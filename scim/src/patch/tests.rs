//! The PATCH engine against the built-in schemas: the RFC's rules and each client habit.

use serde_json::{Value, json};

use super::*;
use crate::ResourceType;
use crate::filter::Limits;
use crate::schema::{Registry, SchemaMode};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn registry() -> Registry {
    Registry::built_in(SchemaMode::Strict).unwrap()
}

fn user() -> Map<String, Value> {
    let v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "b@home.example", "type": "home", "primary": true},
            {"value": "b@work.example", "type": "work"}
        ],
        "active": true
    });
    v.as_object().unwrap().clone()
}

fn run(rt: ResourceType, current: &Map<String, Value>, ops: Value) -> Result<Patched, ScimError> {
    let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
    apply(&registry(), rt, current, parse(body)?, &Limits::default())
}

fn patch_user(ops: Value) -> Result<Map<String, Value>, ScimError> {
    run(ResourceType::User, &user(), ops).map(|p| p.attributes)
}

fn scim_type(r: Result<Map<String, Value>, ScimError>) -> Option<ScimType> {
    r.err().and_then(|e| e.scim_type)
}

#[test]
fn add_to_a_single_valued_attribute_replaces_it() {
    let u = patch_user(json!([{"op": "add", "path": "displayName", "value": "Babs"}])).unwrap();
    assert_eq!(u["displayName"], "Babs");
    let u = patch_user(json!([{"op": "add", "path": "displayName", "value": "Bee"}])).unwrap();
    assert_eq!(u["displayName"], "Bee");
}

#[test]
fn add_to_a_multi_valued_attribute_appends_without_duplicates() {
    let u = patch_user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "b@work.example", "type": "work"},
        {"value": "b@other.example", "type": "other"}
    ]}]))
    .unwrap();
    assert_eq!(u["emails"].as_array().unwrap().len(), 3);
}

#[test]
fn a_new_primary_value_clears_the_others() {
    let u = patch_user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "n@example", "type": "other", "primary": true}
    ]}]))
    .unwrap();
    let primaries: Vec<&Value> = u["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == json!(true))
        .collect();
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0]["value"], "n@example");
}

#[test]
fn sub_attribute_paths_change_only_that_sub_attribute() {
    let u =
        patch_user(json!([{"op": "replace", "path": "name.givenName", "value": "Babs"}])).unwrap();
    assert_eq!(
        u["name"],
        json!({"givenName": "Babs", "familyName": "Jensen"})
    );
}

#[test]
fn value_path_filters_select_elements() {
    let u = patch_user(json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@work.example"}
    ]))
    .unwrap();
    assert!(
        u["emails"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["value"] == "new@work.example")
    );
    let u = patch_user(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).unwrap();
    assert_eq!(u["emails"].as_array().unwrap().len(), 1);
}

#[test]
fn replace_on_a_value_path_matching_nothing_is_no_target() {
    let r = patch_user(json!([
        {"op": "replace", "path": "emails[type eq \"nope\"].value", "value": "x@example"}
    ]));
    assert_eq!(scim_type(r), Some(ScimType::NoTarget));
}

#[test]
fn remove_without_a_path_is_no_target() {
    let r = patch_user(json!([{"op": "remove"}]));
    assert_eq!(scim_type(r), Some(ScimType::NoTarget));
}

#[test]
fn removing_a_required_attribute_is_refused() {
    let r = patch_user(json!([{"op": "remove", "path": "userName"}]));
    assert_eq!(scim_type(r), Some(ScimType::InvalidValue));
}

#[test]
fn read_only_attributes_are_a_mutability_error() {
    for path in ["groups", "id", "meta.created"] {
        let r = patch_user(json!([{"op": "replace", "path": path, "value": "x"}]));
        assert_eq!(scim_type(r), Some(ScimType::Mutability), "{path}");
    }
}

#[test]
fn bad_paths_are_invalid_path_and_bad_values_invalid_value() {
    for path in [
        "nope",
        "emails[type eq]",
        "name.nope",
        "emails[type eq \"work\"].nope",
    ] {
        let r = patch_user(json!([{"op": "replace", "path": path, "value": "x"}]));
        assert_eq!(scim_type(r), Some(ScimType::InvalidPath), "{path}");
    }
    let r = patch_user(json!([{"op": "replace", "path": "active", "value": "maybe"}]));
    assert_eq!(scim_type(r), Some(ScimType::InvalidValue));
}

#[test]
fn urn_paths_reach_extension_attributes_and_whole_extensions() {
    let u = patch_user(json!([
        {"op": "add", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "42"},
        {"op": "add", "path": format!("{ENTERPRISE}:manager.value"), "value": "boss"}
    ]))
    .unwrap();
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "42");
    assert_eq!(u[ENTERPRISE]["manager"]["value"], "boss");
    assert!(
        u["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE))
    );
    let u = patch_user(json!([
        {"op": "add", "path": ENTERPRISE, "value": {"department": "Tours"}}
    ]))
    .unwrap();
    assert_eq!(u[ENTERPRISE]["department"], "Tours");
}

#[test]
fn habit_op_in_any_case() {
    let u = patch_user(json!([{"op": "Replace", "path": "displayName", "value": "X"}])).unwrap();
    assert_eq!(u["displayName"], "X");
}

#[test]
fn habit_booleans_as_strings() {
    let u = patch_user(json!([{"op": "replace", "path": "active", "value": "False"}])).unwrap();
    assert_eq!(u["active"], json!(false));
}

#[test]
fn habit_pathless_value_keys_are_paths() {
    let u = patch_user(json!([{"op": "replace", "value": {
        "name.givenName": "x",
        format!("{ENTERPRISE}:employeeNumber"): "1",
        "active": false
    }}]))
    .unwrap();
    assert_eq!(u["name"]["givenName"], "x");
    assert_eq!(u["name"]["familyName"], "Jensen");
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "1");
    assert_eq!(u["active"], json!(false));
}

#[test]
fn habit_manager_as_a_bare_string() {
    let u = patch_user(json!([
        {"op": "replace", "path": format!("{ENTERPRISE}:manager"), "value": "boss-id"}
    ]))
    .unwrap();
    assert_eq!(u[ENTERPRISE]["manager"]["value"], "boss-id");
}

#[test]
fn habit_add_on_a_value_path_matching_nothing_creates_the_element() {
    let u = patch_user(json!([
        {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555"}
    ]))
    .unwrap();
    assert_eq!(
        u["phoneNumbers"],
        json!([{"type": "work", "value": "+1 555"}])
    );
}

#[test]
fn habit_entra_member_removal_removes_only_those_members() {
    let group =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"});
    let p = run(
        ResourceType::Group,
        group.as_object().unwrap(),
        json!([{"op": "remove", "path": "members", "value": [{"value": "u1"}]}]),
    )
    .unwrap();
    assert_eq!(p.members, vec![MemberOp::Remove(vec!["u1".into()])]);
}

#[test]
fn habit_replace_members_with_an_empty_array() {
    let group =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"});
    let p = run(
        ResourceType::Group,
        group.as_object().unwrap(),
        json!([{"op": "replace", "path": "members", "value": []}]),
    )
    .unwrap();
    assert_eq!(p.members, vec![MemberOp::Replace(Vec::new())]);
}

#[test]
fn member_filters_on_value_need_no_member_list() {
    let group =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"});
    let p = run(
        ResourceType::Group,
        group.as_object().unwrap(),
        json!([{"op": "remove", "path": "members[value eq \"u1\" or value eq \"u2\"]"}]),
    )
    .unwrap();
    assert_eq!(
        p.members,
        vec![MemberOp::Remove(vec!["u1".into(), "u2".into()])]
    );
}

#[test]
fn a_body_that_is_not_a_patch_op_is_invalid_syntax() {
    for body in [
        json!([]),
        json!({"Operations": []}),
        json!({"schemas": [PATCH_OP_SCHEMA]}),
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "frob"}]}),
    ] {
        assert_eq!(
            parse(body).err().and_then(|e| e.scim_type),
            Some(ScimType::InvalidSyntax)
        );
    }
}

#[test]
fn schemas_id_and_meta_echoed_inside_an_extension_value_are_ignored() {
    let u = patch_user(json!([{"op": "add", "path": ENTERPRISE, "value": {
        "schemas": [ENTERPRISE], "department": "Tours"
    }}]))
    .unwrap();
    assert_eq!(u[ENTERPRISE], json!({"department": "Tours"}));
}

#[test]
fn removing_a_set_immutable_attribute_is_a_mutability_error() {
    let vo = "urn:temporaryNamespace:scim:schemas:voPerson:User";
    let mut current = user();
    current.insert(vo.into(), json!({"voPersonID": [{"value": "v1"}]}));
    for path in [format!("{vo}:voPersonID"), vo.to_owned()] {
        let r = run(
            ResourceType::User,
            &current,
            json!([{"op": "remove", "path": path}]),
        );
        assert_eq!(
            r.err().and_then(|e| e.scim_type),
            Some(ScimType::Mutability),
            "{path}"
        );
    }
}

#[test]
fn named_attributes_lists_paths_without_filters_and_pathless_keys() {
    let ops = parse(json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [
        {"op": "add", "path": "emails[type eq \"work\"].value", "value": "x"},
        {"op": "replace", "value": {"displayName": "d"}}
    ]}))
    .unwrap();
    assert_eq!(named_attributes(&ops), vec!["emails", "displayName"]);
}

#[test]
fn passwords_are_found_in_every_form_a_patch_can_set_them() {
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": "password", "value": "a"},
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:password", "value": "b"},
        {"op": "replace", "value": {"password": "c", "urn:ietf:params:scim:schemas:core:2.0:User:password": "d"}},
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User", "value": {"PASSWORD": "e"}},
        {"op": "replace", "value": {"urn:ietf:params:scim:schemas:core:2.0:User": {"password": "f"}}},
        {"op": "replace", "path": "title", "value": "not a password"},
    ]});
    let mut ops = parse(body).expect("a PatchOp");
    let mut found: Vec<String> = passwords(&mut ops).into_iter().map(|p| p.clone()).collect();
    found.sort();
    assert_eq!(found, ["a", "b", "c", "d", "e", "f"]);
}

#[test]
fn a_password_that_was_not_hashed_is_refused_rather_than_stored() {
    let e = patch_user(json!([{"op": "replace", "path": "password", "value": "clear"}]))
        .expect_err("a clear-text password must not reach the store");
    assert_eq!(e.status, 400);
    let ok =
        patch_user(json!([{"op": "replace", "path": "password", "value": "$argon2id$v=19$x"}]))
            .expect("a hash is stored");
    assert_eq!(ok["password"], "$argon2id$v=19$x");
}

#[test]
fn adding_many_values_at_once_skips_those_already_there() {
    let values: Vec<Value> = (0..100)
        .map(|i| json!({"value": format!("{i}@example.org")}))
        .collect();
    let once = patch_user(json!([{"op": "add", "path": "emails", "value": values.clone()}]))
        .expect("added");
    let mut twice_ops = values.clone();
    twice_ops.extend(values);
    let twice =
        patch_user(json!([{"op": "add", "path": "emails", "value": twice_ops}])).expect("added");
    assert_eq!(once["emails"], twice["emails"]);
    let before = user()["emails"].as_array().map_or(0, Vec::len);
    assert_eq!(once["emails"].as_array().map(Vec::len), Some(before + 100));
}
