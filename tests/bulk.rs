//! Bulk (RFC 7644 §3.7) at POST /Bulk: bulkId references in paths and data in any order, cycles and
//! unknown references, failOnErrors, `version` as If-Match, the limits, and each operation's
//! outcome being its own.

mod common;

use common::*;
use serde_json::{Value, json};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

fn bulk(operations: Value) -> Value {
    json!({"schemas": [BULK_REQUEST], "Operations": operations})
}

async fn run(api: &Api, body: &Value) -> Vec<Value> {
    let r = api.post("/Bulk", body).await.expect(200).json();
    assert_eq!(r["schemas"], json!([BULK_RESPONSE]), "{r}");
    r["Operations"].as_array().cloned().unwrap_or_default()
}

fn by_bulk_id<'a>(answers: &'a [Value], bulk_id: &str) -> &'a Value {
    answers
        .iter()
        .find(|a| a["bulkId"] == bulk_id)
        .unwrap_or_else(|| panic!("no answer for bulkId {bulk_id}: {answers:?}"))
}

fn id_from_location(answer: &Value) -> String {
    answer["location"]
        .as_str()
        .and_then(|l| l.rsplit('/').next())
        .unwrap_or_else(|| panic!("no location in {answer}"))
        .to_owned()
}

fn status(answer: &Value) -> &str {
    answer["status"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_refers_to_users_created_later_in_the_same_request() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": [GROUP_SCHEMA], "displayName": "Tour Guides",
                      "members": [{"value": "bulkId:alice", "type": "User"}, {"value": "bulkId:bob"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "alice",
             "data": {"schemas": [USER_SCHEMA], "userName": "alice", "displayName": "Alice"}},
            {"method": "POST", "path": "/Users", "bulkId": "bob",
             "data": {"schemas": [USER_SCHEMA], "userName": "bob"}},
        ])),
    )
    .await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    // Answers come in request order.
    assert_eq!(answers[0]["bulkId"], "g");
    for a in &answers {
        assert_eq!(status(a), "201", "{a}");
        assert_eq!(a["method"], "POST");
        assert_eq!(a["version"], "W/\"1\"", "{a}");
        assert!(a.get("response").is_none(), "{a}");
    }
    let alice = id_from_location(by_bulk_id(&answers, "alice"));
    let bob = id_from_location(by_bulk_id(&answers, "bob"));
    let g = by_bulk_id(&answers, "g");
    assert_eq!(
        g["location"],
        json!(s.url(&format!("/Groups/{}", id_from_location(g))))
    );
    let group = api.group(&id_from_location(g)).await;
    assert_eq!(member_ids(&group), sorted(&[alice.as_str(), bob.as_str()]));
    let alice_member = group["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["value"] == alice.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(alice_member["display"], "Alice", "{group}");
    assert_eq!(api.user(&alice).await["userName"], "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_patch_and_delete_reach_resources_by_bulk_id_path_and_by_id() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let existing = id_of(&api.create_user_named("existing").await);
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "POST", "path": "/Users", "bulkId": "u",
             "data": {"schemas": [USER_SCHEMA], "userName": "new"}},
            {"method": "PUT", "path": "/Users/bulkId:u",
             "data": {"schemas": [USER_SCHEMA], "userName": "new", "title": "Tour Guide"}},
            {"method": "PATCH", "path": "/Users/bulkId:u", "bulkId": "p",
             "data": {"schemas": [PATCH_OP], "Operations": [
                 {"op": "add", "path": "emails", "value": [{"value": "new@example.org", "type": "work"}]}]}},
            {"method": "PATCH", "path": format!("/Users/{existing}"),
             "data": {"schemas": [PATCH_OP], "Operations": [
                 {"op": "replace", "path": "displayName", "value": "Still Here"}]}},
            {"method": "DELETE", "path": format!("/Users/{existing}")},
        ])),
    )
    .await;
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    assert_eq!(statuses, ["201", "200", "200", "200", "204"], "{answers:?}");
    let new = id_from_location(&answers[0]);
    assert_eq!(id_from_location(&answers[1]), new);
    assert_eq!(answers[2]["bulkId"], "p");
    assert_eq!(answers[2]["version"], "W/\"3\"", "{answers:?}");
    assert_eq!(
        answers[4]["location"],
        json!(s.url(&format!("/Users/{existing}")))
    );
    let u = api.user(&new).await;
    assert_eq!(u["title"], "Tour Guide");
    assert_eq!(u["emails"][0]["value"], "new@example.org");
    assert_eq!(version_of(&u), "W/\"3\"");
    api.get(&format!("/Users/{existing}"))
        .await
        .expect_scim_error(404, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn version_acts_as_if_match_for_that_operation_only() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user_named("a").await);
    let b = id_of(&api.create_user_named("b").await);
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "PATCH", "path": format!("/Users/{a}"), "version": "W/\"7\"",
             "data": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}},
            {"method": "PATCH", "path": format!("/Users/{b}"), "version": "W/\"1\"",
             "data": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "y"}]}},
            {"method": "DELETE", "path": format!("/Users/{a}"), "version": "W/\"9\""},
        ])),
    )
    .await;
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    assert_eq!(statuses, ["412", "200", "412"], "{answers:?}");
    assert_eq!(answers[0]["response"]["status"], "412", "{answers:?}");
    // RFC 7644 §3.7.3: a failed operation other than a POST still says where.
    assert_eq!(answers[0]["location"], json!(s.url(&format!("/Users/{a}"))));
    assert_eq!(answers[2]["location"], json!(s.url(&format!("/Users/{a}"))));
    assert!(api.user(&a).await.get("title").is_none());
    assert_eq!(api.user(&b).await["title"], "y");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_bulk_id_fails_only_its_operation_with_invalid_value() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"displayName": "G", "members": [{"value": "bulkId:nobody"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "somebody"}},
        ])),
    )
    .await;
    assert_eq!(status(&answers[0]), "400", "{answers:?}");
    assert_eq!(answers[0]["response"]["scimType"], "invalidValue");
    let detail = answers[0]["response"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("nobody"), "{detail}");
    assert_eq!(status(&answers[1]), "201");
    assert_eq!(api.list("/Groups").await["totalResults"], 0);
    assert_eq!(api.list("/Users").await["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn circular_references_fail_the_operations_involved_and_the_rest_runs() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "a",
             "data": {"displayName": "A", "members": [{"value": "bulkId:b"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "b",
             "data": {"displayName": "B", "members": [{"value": "bulkId:a"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "c", "data": {"displayName": "C"}},
        ])),
    )
    .await;
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    assert_eq!(statuses, ["409", "409", "201"], "{answers:?}");
    let detail = answers[0]["response"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("cycle"), "{detail}");
    let groups = api.list_all("/Groups").await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["displayName"], "C");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operation_referring_to_a_failed_post_fails_too() {
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user_named("taken").await;
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "TAKEN"}},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"displayName": "G", "members": [{"value": "bulkId:dup"}]}},
        ])),
    )
    .await;
    assert_eq!(status(&answers[0]), "409");
    assert_eq!(answers[0]["response"]["scimType"], "uniqueness");
    assert_eq!(status(&answers[1]), "409", "{answers:?}");
    assert_eq!(api.list("/Groups").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_on_errors_stops_after_that_many_errors() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let mut body = bulk(json!([
        {"method": "POST", "path": "/Users", "bulkId": "1", "data": {"userName": "one"}},
        {"method": "POST", "path": "/Users", "bulkId": "2", "data": {"userName": "ONE"}},
        {"method": "DELETE", "path": "/Users/no-such-id"},
        {"method": "POST", "path": "/Users", "bulkId": "4", "data": {"userName": "four"}},
    ]));
    body["failOnErrors"] = json!(2);
    let answers = run(&api, &body).await;
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    assert_eq!(statuses, ["201", "409", "404"], "{answers:?}");
    let names: Vec<Value> = api
        .list_all("/Users")
        .await
        .iter()
        .map(|u| u["userName"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("one")],
        "the operation after the limit must not run"
    );

    // Without failOnErrors every operation runs, whatever fails.
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "DELETE", "path": "/Users/no-such-id"},
            {"method": "DELETE", "path": "/Groups/no-such-id"},
            {"method": "POST", "path": "/Users", "bulkId": "5", "data": {"userName": "five"}},
        ])),
    )
    .await;
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    assert_eq!(statuses, ["404", "404", "201"], "{answers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_operations_fail_alone_with_a_scim_error() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "GET", "path": "/Users"},
            {"method": "POST", "path": "/Users", "data": {"userName": "no-bulk-id"}},
            {"method": "POST", "path": "/Things", "bulkId": "t", "data": {}},
            {"method": "PUT", "path": "/Users/x", "bulkId": "nodata"},
            {"method": "POST", "path": "/Users", "bulkId": "typed", "data": {"userName": 5}},
            {"method": "PATCH", "path": "/Users/x", "data": {"Operations": "no"}},
            {"method": "POST", "path": "/Users", "bulkId": "ok", "data": {"userName": "fine"}},
        ])),
    )
    .await;
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    assert_eq!(
        statuses,
        ["400", "400", "400", "400", "400", "400", "201"],
        "{answers:?}"
    );
    assert_eq!(answers[0]["method"], "GET");
    for a in &answers[..6] {
        let r = &a["response"];
        assert_eq!(
            r["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
            "{a}"
        );
        assert!(r["detail"].as_str().is_some_and(|d| !d.is_empty()), "{a}");
    }
    assert_eq!(api.list("/Users").await["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_level_errors_change_nothing() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let post = |i: usize| {
        json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
               "data": {"userName": format!("u{i}")}})
    };
    let too_many: Vec<Value> = (0..1001).map(post).collect();
    let e = api
        .post("/Bulk", &bulk(json!(too_many)))
        .await
        .expect_scim_error(413, None);
    assert!(
        e["detail"].as_str().unwrap_or_default().contains("1000"),
        "{e}"
    );
    let big = "x".repeat(4096);
    let heavy: Vec<Value> = (0..300)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("h{i}"),
                   "data": {"userName": format!("h{i}"), "title": big}})
        })
        .collect();
    api.post("/Bulk", &bulk(json!(heavy)))
        .await
        .expect_scim_error(413, None);
    let lower = api
        .post(
            "/Bulk",
            &json!({"schemas": [BULK_REQUEST.to_ascii_lowercase()], "Operations": []}),
        )
        .await;
    assert_eq!(
        lower.status, 200,
        "schema URNs compare case-insensitively: {lower:?}"
    );
    api.post("/Bulk", &json!({"Operations": [post(1)]}))
        .await
        .expect_scim_error(400, Some("invalidSyntax"));
    let mut bad_limit = bulk(json!([post(2)]));
    bad_limit["failOnErrors"] = json!(0);
    api.post("/Bulk", &bad_limit)
        .await
        .expect_scim_error(400, Some("invalidValue"));
    assert_eq!(api.list("/Users").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_operations_in_one_request_all_land() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let mut ops: Vec<Value> = (0..999)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                   "data": {"userName": format!("user{i}")}})
        })
        .collect();
    let members: Vec<Value> = (0..999)
        .map(|i| json!({"value": format!("bulkId:u{i}")}))
        .collect();
    ops.insert(
        0,
        json!({"method": "POST", "path": "/Groups", "bulkId": "all",
               "data": {"displayName": "Everyone", "members": members}}),
    );
    let answers = run(&api, &bulk(json!(ops))).await;
    assert_eq!(answers.len(), 1000);
    assert!(answers.iter().all(|a| status(a) == "201"), "{answers:?}");
    let group = api.group(&id_from_location(&answers[0])).await;
    assert_eq!(group["members"].as_array().map(Vec::len), Some(999));
    assert_eq!(api.list("/Users?count=0").await["totalResults"], 999);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_writes_are_events_like_any_other_and_share_the_request_id() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = api
        .request_json(
            reqwest::Method::POST,
            "/Bulk",
            &bulk(json!([
                {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "u"}},
                {"method": "POST", "path": "/Groups", "bulkId": "g",
                 "data": {"displayName": "G", "members": [{"value": "bulkId:u"}]}},
                {"method": "DELETE", "path": "/Users/bulkId:u"},
            ])),
        )
        .header("X-Request-Id", "bulk-request-1");
    send(r).await.expect(200);
    let events = s.cli(&["log", "tail"]).await.success().json_lines();
    // The user's create, the group's create, the user's delete, and the group's update (the
    // deleted user leaves it).
    assert_eq!(events.len(), 4, "{events:#?}");
    for e in &events {
        assert_eq!(e["txn_id"], "bulk-request-1", "{e}");
    }
    let group = api.list_all("/Groups").await;
    assert!(member_ids(&group[0]).is_empty(), "{group:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_in_bulk_operations_are_hashed_and_never_returned() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let answers = run(
        &api,
        &bulk(json!([
            {"method": "POST", "path": "/Users", "bulkId": "a",
             "data": {"userName": "a", "password": "first secret"}},
            {"method": "PATCH", "path": "/Users/bulkId:a",
             "data": {"schemas": [PATCH_OP], "Operations": [
                 {"op": "replace", "path": "password", "value": "second secret"}]}},
        ])),
    )
    .await;
    let statuses: Vec<&str> = answers.iter().map(status).collect();
    assert_eq!(statuses, ["201", "200"], "{answers:?}");
    let text = answers.iter().map(Value::to_string).collect::<String>();
    assert!(!text.contains("secret"), "{text}");
    let u = api.user(&id_from_location(&answers[0])).await;
    assert!(u.get("password").is_none(), "{u}");
    let log = s.cli(&["log", "tail"]).await.success().json_lines();
    let events = serde_json::to_string(&log).unwrap_or_default();
    assert!(!events.contains("secret"), "the log must hold only hashes");
    assert!(events.contains("$argon2id$"), "{events}");
}
