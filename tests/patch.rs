//! PATCH (RFC 7644 §3.5.2) on /Users/{id} and /Groups/{id}: the RFC's rules, atomicity, versions,
//! and each client habit the README lists (one test named after each).

mod common;

use common::*;
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn ops(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

async fn barbara(api: &Api) -> String {
    let u = api
        .create_user(json!({
            "schemas": [USER_SCHEMA],
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "b@home.example", "type": "home", "primary": true}],
            "active": true
        }))
        .await;
    id_of(&u)
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn patching_a_user_answers_200_with_the_user_and_a_new_version() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let r = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([
                {"op": "replace", "path": "name.givenName", "value": "Babs"},
                {"op": "add", "path": "emails", "value": [{"value": "b@work.example", "type": "work"}]}
            ])),
        )
        .await
        .expect(200);
    let u = r.json();
    assert_eq!(u["name"]["givenName"], "Babs");
    assert_eq!(u["name"]["familyName"], "Jensen");
    assert_eq!(u["emails"].as_array().unwrap().len(), 2);
    assert_eq!(u["meta"]["version"], "W/\"2\"");
    assert_eq!(r.header("ETag").as_deref(), Some("W/\"2\""));
    assert_eq!(api.user(&id).await["name"]["givenName"], "Babs");
}

#[tokio::test(flavor = "multi_thread")]
async fn patching_a_user_honours_attributes_and_excluded_attributes() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let body = ops(json!([{"op": "replace", "path": "displayName", "value": "B"}]));
    let u = api
        .patch(&format!("/Users/{id}?attributes=displayName"), &body)
        .await
        .expect(200)
        .json();
    assert_eq!(u["displayName"], "B");
    assert!(u.get("name").is_none(), "{u}");
    let u = api
        .patch(&format!("/Users/{id}?excludedAttributes=name"), &body)
        .await
        .expect(200)
        .json();
    assert!(u.get("name").is_none(), "{u}");
    assert_eq!(u["userName"], "bjensen");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_operation_applies_none_of_the_request() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let before = api.user(&id).await;
    api.patch(
        &format!("/Users/{id}"),
        &ops(json!([
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "replace", "path": "emails[type eq \"nope\"].value", "value": "x@example"}
        ])),
    )
    .await
    .expect_scim_error(400, Some("noTarget"));
    assert_eq!(api.user(&id).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_with_another_version_answers_412_and_changes_nothing() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let body = ops(json!([{"op": "replace", "path": "displayName", "value": "B"}]));
    let r = send(
        api.request_json(reqwest::Method::PATCH, &format!("/Users/{id}"), &body)
            .header("If-Match", "W/\"7\""),
    )
    .await;
    r.expect_scim_error(412, None);
    let r = send(
        api.request_json(reqwest::Method::PATCH, &format!("/Users/{id}"), &body)
            .header("If-Match", "W/\"1\""),
    )
    .await;
    r.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_patches_lose_no_update() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let api = s.client();
        let path = format!("/Users/{id}");
        tasks.push(tokio::spawn(async move {
            let body = ops(json!([{"op": "add", "path": "emails", "value": [
                {"value": format!("{i}@example"), "type": "other"}
            ]}]));
            api.patch(&path, &body).await.expect(200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let u = api.user(&id).await;
    assert_eq!(u["emails"].as_array().unwrap().len(), 21, "{u}");
    assert_eq!(u["meta"]["version"], "W/\"21\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn uniqueness_is_checked_as_on_create() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    api.create_user_named("taken").await;
    api.patch(
        &format!("/Users/{id}"),
        &ops(json!([{"op": "replace", "path": "userName", "value": "TAKEN"}])),
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc_errors_have_their_scim_types() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let path = format!("/Users/{id}");
    for (operations, status, scim_type) in [
        (json!([{"op": "remove"}]), 400, "noTarget"),
        (
            json!([{"op": "remove", "path": "userName"}]),
            400,
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "groups", "value": []}]),
            400,
            "mutability",
        ),
        (
            json!([{"op": "replace", "path": "nope", "value": 1}]),
            400,
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "emails[type eq]", "value": 1}]),
            400,
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
            400,
            "invalidValue",
        ),
        (
            json!([{"op": "frob", "path": "active", "value": true}]),
            400,
            "invalidSyntax",
        ),
    ] {
        api.patch(&path, &ops(operations))
            .await
            .expect_scim_error(status, Some(scim_type));
    }
    for body in [
        json!([]),
        json!({"Operations": []}),
        json!("x"),
        json!({"schemas": [PATCH_OP], "Operations": "x"}),
    ] {
        api.patch(&path, &body).await.expect_scim_error(400, None);
    }
    api.patch(
        "/Users/nope",
        &ops(json!([{"op": "remove", "path": "title"}])),
    )
    .await
    .expect_scim_error(404, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_true_clears_the_other_primaries() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "add", "path": "emails", "value": [
                {"value": "n@example", "type": "work", "primary": true}
            ]}])),
        )
        .await
        .expect(200)
        .json();
    let primaries: Vec<&Value> = u["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == json!(true))
        .collect();
    assert_eq!(primaries.len(), 1, "{u}");
    assert_eq!(primaries[0]["value"], "n@example");
}

#[tokio::test(flavor = "multi_thread")]
async fn urn_paths_set_extension_attributes() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([
                {"op": "add", "path": format!("{ENTERPRISE}:manager.value"), "value": "boss"},
                {"op": "add", "path": ENTERPRISE, "value": {"department": "Tours"}}
            ])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u[ENTERPRISE]["manager"]["value"], "boss");
    assert_eq!(u[ENTERPRISE]["department"], "Tours");
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "remove", "path": ENTERPRISE}])),
        )
        .await
        .expect(200)
        .json();
    assert!(u.get(ENTERPRISE).is_none(), "{u}");
    assert!(
        !u["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn habit_op_in_any_case() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(
                json!([{"op": "Replace", "path": "displayName", "value": "X"},
                        {"op": "ADD", "path": "title", "value": "T"}]),
            ),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u["displayName"], "X");
    assert_eq!(u["title"], "T");
}

#[tokio::test(flavor = "multi_thread")]
async fn habit_booleans_as_strings() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "replace", "path": "active", "value": "False"}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u["active"], json!(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn habit_pathless_value_keys_are_paths() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "replace", "value": {
                "name.givenName": "x",
                format!("{ENTERPRISE}:employeeNumber"): "1",
            }}, {"op": "replace", "value": {"active": false}}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u["name"]["givenName"], "x");
    assert_eq!(u["name"]["familyName"], "Jensen");
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "1");
    assert_eq!(u["active"], json!(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn habit_manager_as_a_bare_string() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(
                json!([{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": "boss-id"}]),
            ),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u[ENTERPRISE]["manager"]["value"], "boss-id");
}

#[tokio::test(flavor = "multi_thread")]
async fn habit_add_on_a_value_path_matching_nothing_creates_the_element() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "b@work.example"}])),
        )
        .await
        .expect(200)
        .json();
    let work: Vec<&Value> = u["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "work")
        .collect();
    assert_eq!(work.len(), 1, "{u}");
    assert_eq!(work[0]["value"], "b@work.example");
}

#[tokio::test(flavor = "multi_thread")]
async fn patching_a_group_answers_204_unless_a_representation_is_asked_for() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("m").await);
    let g = id_of(
        &api.create_group(json!({"schemas": [GROUP_SCHEMA], "displayName": "G"}))
            .await,
    );
    let body = ops(json!([{"op": "add", "path": "members", "value": [{"value": u}]}]));
    let r = api.patch(&format!("/Groups/{g}"), &body).await.expect(204);
    assert_eq!(r.header("ETag").as_deref(), Some("W/\"2\""));
    let r = api
        .patch(
            &format!("/Groups/{g}?attributes=members"),
            &ops(json!([{"op": "replace", "path": "displayName", "value": "H"}])),
        )
        .await
        .expect(200);
    assert_eq!(member_ids(&r.json()), vec![u.clone()]);
    let grp = api.group(&g).await;
    assert_eq!(grp["displayName"], "H");
    assert_eq!(member_ids(&grp), vec![u]);
}

#[tokio::test(flavor = "multi_thread")]
async fn members_are_added_and_removed_by_value_filter() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user_named("a").await);
    let b = id_of(&api.create_user_named("b").await);
    let g = id_of(&api.create_group_with("G", &[&a]).await);
    let path = format!("/Groups/{g}");
    api.patch(
        &path,
        &ops(json!([{"op": "add", "path": "members", "value": [{"value": b}, {"value": a}]}])),
    )
    .await
    .expect(204);
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(member_ids(&api.group(&g).await), both);
    api.patch(
        &path,
        &ops(json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}])),
    )
    .await
    .expect(204);
    assert_eq!(member_ids(&api.group(&g).await), vec![b.clone()]);
    api.patch(
        &path,
        &ops(json!([{"op": "add", "path": "members", "value": [{"value": "nope"}]}])),
    )
    .await
    .expect_scim_error(400, Some("invalidValue"));
    api.patch(
        &path,
        &ops(json!([{"op": "remove", "path": "members[type eq \"User\"]"}])),
    )
    .await
    .expect(204);
    assert!(member_ids(&api.group(&g).await).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_value_filter_ignores_case_as_queries_do() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("member").await);
    let g = id_of(
        &api.create_group(json!({"displayName": "G", "members": [{"value": u}]}))
            .await,
    );
    let upper = u.to_ascii_uppercase();
    let found = api
        .list(&format!(
            "/Groups?filter=members.value%20eq%20%22{upper}%22"
        ))
        .await;
    assert_eq!(found["totalResults"], 1, "{found}");
    api.patch(
        &format!("/Groups/{g}"),
        &ops(json!([{"op": "remove", "path": format!("members[value eq \"{upper}\"]")}])),
    )
    .await
    .expect(204);
    assert!(member_ids(&api.group(&g).await).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn habit_entra_member_removal_removes_only_those_members() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user_named("a").await);
    let b = id_of(&api.create_user_named("b").await);
    let g = id_of(&api.create_group_with("G", &[&a, &b]).await);
    api.patch(
        &format!("/Groups/{g}"),
        &ops(json!([{"op": "Remove", "path": "members", "value": [{"value": a}]}])),
    )
    .await
    .expect(204);
    assert_eq!(member_ids(&api.group(&g).await), vec![b]);
    // One patch event carrying only the delta, not the member list.
    let out = s.cli(&["log", "tail", "--from", "1"]).await.success();
    let last = out.json_lines().pop().unwrap();
    assert_eq!(last["kind"], "patch", "{last}");
    assert_eq!(
        last["members_removed"],
        json!([{"value": a, "type": "User"}]),
        "{last}"
    );
    assert!(last.get("members_added").is_none(), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn habit_replace_members_with_an_empty_array() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user_named("a").await);
    let g = id_of(&api.create_group_with("G", &[&a]).await);
    api.patch(
        &format!("/Groups/{g}"),
        &ops(json!([{"op": "replace", "path": "members", "value": []}])),
    )
    .await
    .expect(204);
    assert!(member_ids(&api.group(&g).await).is_empty());
    assert!(api.user(&a).await.get("groups").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patched_password_is_stored_hashed_and_never_returned() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "replace", "value": {"password": "s3cret!"}}])),
        )
        .await
        .expect(200)
        .json();
    assert!(u.get("password").is_none());
    assert_log_holds_only_hashes(&s, &["s3cret!"]).await;
}

/// The log has password hashes and none of `secrets` in clear.
async fn assert_log_holds_only_hashes(s: &Scimd, secrets: &[&str]) {
    let out = s.cli(&["log", "tail"]).await.success();
    for secret in secrets {
        assert!(
            !out.stdout.contains(secret),
            "clear-text password in the log"
        );
    }
    assert!(out.stdout.contains("$argon2id$"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_inside_the_core_schema_urn_is_stored_hashed() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let path = format!("/Users/{id}");
    api.patch(
        &path,
        &ops(json!([{"op": "replace", "value": {USER_SCHEMA: {"displayName": "D", "password": "wrapped-1"}}}])),
    )
    .await
    .expect(200);
    api.patch(
        &path,
        &ops(json!([{"op": "replace", "path": USER_SCHEMA, "value": {"password": "wrapped-2"}}])),
    )
    .await
    .expect(200);
    assert_log_holds_only_hashes(&s, &["wrapped-1", "wrapped-2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn re_adding_the_primary_value_changes_nothing() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let path = format!("/Users/{id}");
    let before = api.user(&id).await;
    let again = before["emails"].clone();
    let u = api
        .patch(
            &path,
            &ops(json!([{"op": "add", "path": "emails", "value": again}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u["emails"], before["emails"], "{u}");
}

#[tokio::test(flavor = "multi_thread")]
async fn add_on_a_value_path_keeps_the_sub_attributes_it_does_not_give() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        u["emails"],
        json!([{"value": "b@home.example", "type": "home", "primary": true, "display": "Home"}])
    );
    // `replace` of a value path replaces the matching values whole.
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "new@home.example", "type": "home"}}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        u["emails"],
        json!([{"value": "new@home.example", "type": "home"}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_core_schema_is_invalid_path_and_changes_nothing() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let before = api.user(&id).await;
    api.patch(
        &format!("/Users/{id}"),
        &ops(json!([{"op": "remove", "path": USER_SCHEMA}])),
    )
    .await
    .expect_scim_error(400, Some("invalidPath"));
    assert_eq!(api.user(&id).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_returned_request_attribute_the_patch_names_is_in_the_response() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = barbara(&api).await;
    let vo = "urn:temporaryNamespace:scim:schemas:voPerson:User";
    let u = api
        .patch(
            &format!("/Users/{id}"),
            &ops(json!([{"op": "add", "path": format!("{vo}:voPersonID"), "value": [{"value": "v-1"}]}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(u[vo]["voPersonID"], json!([{"value": "v-1"}]), "{u}");
    assert!(
        api.user(&id).await.get(vo).is_none(),
        "GET shows it only when asked"
    );
    api.patch(
        &format!("/Users/{id}"),
        &ops(json!([{"op": "remove", "path": vo}])),
    )
    .await
    .expect_scim_error(400, Some("mutability"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_that_changes_nothing_keeps_the_version_and_appends_no_event() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let member = id_of(&api.create_user_named("member").await);
    let outsider = id_of(&api.create_user_named("outsider").await);
    let g = id_of(&api.create_group_with("G", &[&member]).await);
    let u = barbara(&api).await;
    let position = |st: Value| st["position"].as_u64().unwrap();
    let before = position(api.get("/status").await.expect(200).json());
    let group_path = format!("/Groups/{g}");
    for op in [
        json!({"op": "remove", "path": "members", "value": [{"value": outsider}]}),
        json!({"op": "remove", "path": format!("members[value eq \"{outsider}\"]")}),
        json!({"op": "remove", "path": "members[display eq \"nobody\"]"}),
        json!({"op": "add", "path": "members", "value": [{"value": member}]}),
        json!({"op": "replace", "path": "displayName", "value": "G"}),
    ] {
        let r = api.patch(&group_path, &ops(json!([op]))).await.expect(204);
        assert_eq!(r.header("ETag").as_deref(), Some("W/\"1\""), "{op}");
    }
    let r = api
        .patch(
            &format!("/Users/{u}"),
            &ops(json!([{"op": "replace", "path": "name.givenName", "value": "Barbara"}])),
        )
        .await
        .expect(200);
    assert_eq!(r.header("ETag").as_deref(), Some("W/\"1\""));
    assert_eq!(r.json()["meta"]["version"], "W/\"1\"");
    assert_eq!(
        position(api.get("/status").await.expect(200).json()),
        before,
        "a PATCH that changed nothing appended an event"
    );
    assert_eq!(member_ids(&api.group(&g).await), vec![member]);
}

/// Creates `n` users named `{prefix}{i}` through Bulk and returns their ids in order.
async fn many_users(api: &Api, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(1000) {
        let ops: Vec<Value> = (start..n.min(start + 1000))
            .map(|i| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                       "data": {"schemas": [USER_SCHEMA], "userName": format!("{prefix}{i}")}})
            })
            .collect();
        let r = api
            .post(
                "/Bulk",
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}),
            )
            .await
            .expect(200)
            .json();
        for op in r["Operations"].as_array().unwrap() {
            assert_eq!(op["status"], "201", "{op}");
            let location = op["location"].as_str().unwrap();
            ids.push(location.rsplit('/').next().unwrap().to_owned());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_member_filters_on_display_removes_what_each_would_in_order() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let ids = many_users(&api, "m", 300).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let g = id_of(&api.create_group_with("G", &refs).await);
    // Filters on `display` (the userName) for m0..m49, then m0 added back, then m299 filtered out:
    // the re-added member stays, every other named one goes.
    let mut operations: Vec<Value> = (0..50)
        .map(|i| json!({"op": "remove", "path": format!("members[display eq \"m{i}\"]")}))
        .collect();
    operations.push(json!({"op": "add", "path": "members", "value": [{"value": ids[0]}]}));
    operations.push(json!({"op": "remove", "path": "members[display eq \"m299\"]"}));
    api.patch(&format!("/Groups/{g}"), &ops(Value::Array(operations)))
        .await
        .expect(204);
    let mut expected: Vec<String> = ids[50..299].to_vec();
    expected.push(ids[0].clone());
    expected.sort();
    assert_eq!(member_ids(&api.group(&g).await), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_over_the_writer_time_limit_is_413_and_changes_nothing() {
    let s = Scimd::start(Opts::default().env("PATCH_TIME_LIMIT_MS", "50")).await;
    let api = s.client();
    let ids = many_users(&api, "member-", 2000).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let g = id_of(&api.create_group_with("G", &refs).await);
    // 10,000 filters on something other than `value`, each over 2,000 members: far more than
    // 50 ms of the writer's time in any build.
    let operations: Vec<Value> = (0..10_000)
        .map(|i| json!({"op": "remove", "path": format!("members[display eq \"nobody-{i}\"]")}))
        .collect();
    let r = api
        .patch(&format!("/Groups/{g}"), &ops(Value::Array(operations)))
        .await
        .expect(413);
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("PATCH_TIME_LIMIT_MS"), "{detail}");
    let group = api.group(&g).await;
    assert_eq!(group["meta"]["version"], "W/\"1\"");
    assert_eq!(member_ids(&group).len(), 2000);
    // The writer is free for everyone else.
    api.create_user_named("after").await;
}
