//! Errors a client can cause: every one a SCIM error body with the right status and scimType,
//! never a 500.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const ONE_MIB: usize = 1024 * 1024;

/// A user body of about `size` bytes.
fn big_user(size: usize) -> Vec<u8> {
    let pad = "x".repeat(size);
    json!({"userName": "big", "displayName": pad})
        .to_string()
        .into_bytes()
}

fn raw_head(s: &Scimd, method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/scim+json\r\n{extra}",
        s.addr(),
        s.key
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_400_invalid_syntax() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("m").await);
    let g = id_of(&api.create_group(json!({"displayName": "G"})).await);
    for (method, path) in [
        (Method::POST, "/Users".to_string()),
        (Method::PUT, format!("/Users/{u}")),
        (Method::POST, "/Groups".to_string()),
        (Method::PUT, format!("/Groups/{g}")),
    ] {
        for body in [
            r#"{"userName": "x""#,
            "{not json}",
            r#"{"userName": "x"} trailing"#,
        ] {
            let r = common::send(
                api.request(method.clone(), &path)
                    .header("Content-Type", "application/scim+json")
                    .body(body.to_string()),
            )
            .await;
            r.expect_scim_error(400, Some("invalidSyntax"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_that_is_not_an_object_or_has_wrong_types_is_400() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let cases = [
        ("/Users", json!([{"userName": "x"}])),
        ("/Users", json!("userName")),
        ("/Users", json!(42)),
        ("/Users", json!(null)),
        ("/Users", json!({"userName": 5})),
        ("/Users", json!({"userName": ["x"]})),
        ("/Users", json!({"userName": null})),
        ("/Users", json!({"userName": ""})),
        (
            "/Users",
            json!({"userName": "wrong-emails", "emails": "x@example.com"}),
        ),
        (
            "/Users",
            json!({"userName": "wrong-active", "active": "yes"}),
        ),
        (
            "/Users",
            json!({"userName": "wrong-name", "name": "Barbara"}),
        ),
        ("/Groups", json!({"displayName": 5})),
        ("/Groups", json!({"displayName": "G", "members": "x"})),
        (
            "/Groups",
            json!({"displayName": "G", "members": [{"value": 5}]}),
        ),
        ("/Groups", json!({"displayName": "G", "members": [{}]})),
    ];
    // Check every case, then report all that were not refused properly.
    let mut wrong = Vec::new();
    for (path, body) in cases {
        let r = api.post(path, &body).await;
        let json: Option<Value> = serde_json::from_str(&r.text).ok();
        let scim_type = json
            .as_ref()
            .and_then(|j| j["scimType"].as_str().map(str::to_string));
        let ok = r.status == 400
            && r.content_type().as_deref() == Some("application/scim+json")
            && json
                .as_ref()
                .is_some_and(|j| j["schemas"] == json!([ERROR_SCHEMA]) && j["status"] == "400")
            && matches!(scim_type.as_deref(), Some("invalidValue" | "invalidSyntax"));
        if !ok {
            wrong.push(format!("POST {path} {body} → {} {}", r.status, r.text));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected 400 invalidValue/invalidSyntax SCIM errors, got:\n{}",
        wrong.join("\n")
    );
    assert_eq!(api.list("/Users").await["totalResults"], 0);
    assert_eq!(api.list("/Groups").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_body_is_400() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = common::send(
        api.request(Method::POST, "/Users")
            .header("Content-Type", "application/scim+json")
            .body(""),
    )
    .await;
    r.expect_scim_error(400, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_route_is_404_with_a_scim_body() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("r").await);
    for path in [
        "/Nope".to_string(),
        "/Users/a/b".to_string(),
        format!("/Users/{u}/extra"),
        "/users2".to_string(),
        "/Schemas/nope/deeper".to_string(),
    ] {
        api.get(&path).await.expect_scim_error(404, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_method_is_405_with_a_scim_body() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("w").await);
    let cases = [
        (Method::DELETE, "/Users".to_string(), None),
        (
            Method::PUT,
            "/Users".to_string(),
            Some(json!({"userName": "x"})),
        ),
        (
            Method::POST,
            format!("/Users/{u}"),
            Some(json!({"userName": "x"})),
        ),
        (Method::DELETE, "/Groups".to_string(), None),
        (
            Method::PUT,
            "/Groups".to_string(),
            Some(json!({"displayName": "x"})),
        ),
    ];
    for (method, path, body) in cases {
        let rb = match &body {
            Some(b) => api.request_json(method.clone(), &path, b),
            None => api.request(method.clone(), &path),
        };
        common::send(rb).await.expect_scim_error(405, None);
    }
    assert_eq!(api.list("/Users").await["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_one_mib_with_content_length_is_413() {
    let s = Scimd::start_default().await;
    let body = big_user(ONE_MIB + 1000);
    let head = raw_head(
        &s,
        "POST",
        "/Users",
        &format!("Content-Length: {}", body.len()),
    );
    let r = raw_request(s.addr(), &head, body).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.json()["schemas"], json!([ERROR_SCHEMA]), "{r:?}");
    assert_eq!(r.json()["status"], "413");
    assert_eq!(s.client().list("/Users").await["totalResults"], 0);
}

/// The 413 is read by an ordinary client that sends its whole body first: the server reads the
/// rest of the body before it answers, so closing the connection does not reset it under the 413
/// (seen in CI as "IncompleteMessage" instead of the error).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_sending_a_body_over_one_mib_reads_its_413() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let user = json!({"userName": "big", "title": "x".repeat(ONE_MIB + 300_000)});
    for _ in 0..8 {
        api.post("/Users", &user).await.expect_scim_error(413, None);
    }
    assert_eq!(api.list("/Users").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_over_one_mib_is_413() {
    let s = Scimd::start_default().await;
    let body = chunked(&big_user(ONE_MIB + 64 * 1024), 32 * 1024);
    let head = raw_head(&s, "POST", "/Users", "Transfer-Encoding: chunked");
    let r = raw_request(s.addr(), &head, body).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.json()["schemas"], json!([ERROR_SCHEMA]), "{r:?}");
    assert_eq!(r.json()["status"], "413");
    assert_eq!(s.client().list("/Users").await["totalResults"], 0);

    // PUT too.
    let u = id_of(&s.client().create_user_named("big").await);
    let body = chunked(&big_user(2 * ONE_MIB), 64 * 1024);
    let head = raw_head(
        &s,
        "PUT",
        &format!("/Users/{u}"),
        "Transfer-Encoding: chunked",
    );
    let r = raw_request(s.addr(), &head, body).await;
    assert_eq!(r.status, 413, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_under_the_limit_is_accepted() {
    let s = Scimd::start_default().await;
    let body = json!({"userName": "chunky", "displayName": "y".repeat(100_000)})
        .to_string()
        .into_bytes();
    let head = raw_head(&s, "POST", "/Users", "Transfer-Encoding: chunked");
    let r = raw_request(s.addr(), &head, chunked(&body, 4096)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["userName"], "chunky");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_content_type_is_a_scim_client_error() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = common::send(
        api.request(Method::POST, "/Users")
            .header("Content-Type", "text/plain")
            .body(r#"{"userName": "plain"}"#),
    )
    .await;
    assert!(
        (400..500).contains(&r.status),
        "text/plain must be refused with a 4xx: {r:?}"
    );
    assert_scim_error_body(&r, r.status);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_of_an_unknown_id_is_404_with_a_scim_body() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for path in [
        format!("/Users/{}", uuid::Uuid::new_v4()),
        format!("/Groups/{}", uuid::Uuid::new_v4()),
        "/Users/%00".to_string(),
        "/Groups/..%2F..%2Fetc".to_string(),
        format!("/Users/{}", "z".repeat(2000)),
    ] {
        api.get(&path).await.expect_scim_error(404, None);
    }
    // A group id is not a user id.
    let g = id_of(&api.create_group(json!({"displayName": "G"})).await);
    api.get(&format!("/Users/{g}"))
        .await
        .expect_scim_error(404, None);
}

/// A sweep of hostile or odd requests: each must get a 4xx SCIM error (or a success), never a 5xx,
/// and the server must keep serving.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_a_client_sends_causes_a_500() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("target").await);
    let g = id_of(&api.create_group(json!({"displayName": "target"})).await);

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!(
        "{}1{}",
        r#"{"userName":"#.to_string() + &r#"{"a":"#.repeat(10_000),
        "}".repeat(10_001)
    );
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        deep_obj.into_bytes(),
        b"\xff\xfe\xfd".to_vec(),
        br#"{"userName": "\ud800"}"#.to_vec(),
        br#"{"userName": 1e400}"#.to_vec(),
        br#"{"userName": "n", "schemas": 5}"#.to_vec(),
        br#"{"userName": "n", "schemas": ["urn:nope"]}"#.to_vec(),
        br#"{"userName": "n", "emails": [{"value": 5}]}"#.to_vec(),
        br#"{"userName": "n", "emails": [null]}"#.to_vec(),
        br#"{"userName": "n", "meta": 5}"#.to_vec(),
        br#"{"userName": "n", "id": 5}"#.to_vec(),
        br#"{"userName": "n", "externalId": 5}"#.to_vec(),
        br#"{"userName": "n", "groups": [{"value": "x"}]}"#.to_vec(),
        br#"{"displayName": "n", "members": [{"value": null}]}"#.to_vec(),
        br#"{"displayName": "n", "members": null}"#.to_vec(),
        br#"{"displayName": "n", "members": [[]]}"#.to_vec(),
        br#"{"userName": "n", "userName": "m"}"#.to_vec(),
        br#"{"":""}"#.to_vec(),
        b"{}".to_vec(),
        b" ".to_vec(),
    ];
    let paths = [
        (Method::POST, "/Users".to_string()),
        (Method::PUT, format!("/Users/{u}")),
        (Method::POST, "/Groups".to_string()),
        (Method::PUT, format!("/Groups/{g}")),
    ];
    for (method, path) in &paths {
        for body in &bodies {
            let r = common::send(
                api.request(method.clone(), path)
                    .header("Content-Type", "application/scim+json")
                    .body(body.clone()),
            )
            .await;
            assert!(r.status < 500, "server error: {r:?}");
            if r.status >= 400 {
                assert_scim_error_body(&r, r.status);
            }
        }
    }

    let odd_gets = [
        "/Users?count=abc",
        "/Users?startIndex=abc",
        "/Users?count=99999999999999999999999",
        "/Users?startIndex=99999999999999999999999",
        "/Users?startIndex=18446744073709551615&count=100",
        "/Users?count=1.5",
        "/Users?count=",
        "/Users?%zz=1",
        "/Groups?count=-99999999999",
        "/Users/%ff%fe",
        "/Users/../Groups",
        "/Users//",
    ];
    for path in odd_gets {
        let r = api.get(path).await;
        assert!(r.status < 500, "server error: {r:?}");
        if r.status >= 400 {
            assert_scim_error_body(&r, r.status);
        }
    }

    let odd_headers = [
        ("If-Match", "garbage"),
        ("If-Match", ""),
        ("If-None-Match", "W/\"\""),
        ("Content-Type", "application/scim+json; charset=latin1"),
        ("Content-Type", "///"),
        ("X-Forwarded-Host", "exa mple"),
        ("X-Forwarded-Proto", "gopher://"),
    ];
    for (name, value) in odd_headers {
        let mut rb = api.request(Method::PUT, &format!("/Users/{u}"));
        if name != "Content-Type" {
            rb = rb.header("Content-Type", "application/scim+json");
        }
        let r = common::send(
            rb.header(name, value)
                .body(json!({"userName": "target"}).to_string()),
        )
        .await;
        assert!(r.status < 500, "server error with {name}: {value}: {r:?}");
        if r.status >= 400 {
            assert_scim_error_body(&r, r.status);
        }
    }

    // Still alive and consistent.
    s.client().user(&u).await;
    s.client().group(&g).await;
    s.anonymous().get("/health").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_body_never_echoes_the_rejected_resource() {
    // The error body must be a bare RFC 7644 §3.12 error: no resource attributes leak into it.
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user_named("dup").await;
    let r = api
        .post(
            "/Users",
            &json!({"userName": "dup", "password": "Leaky-Secret-1"}),
        )
        .await;
    let body: Value = r.expect_scim_error(409, Some("uniqueness"));
    assert!(
        body.get("userName").is_none() && body.get("id").is_none(),
        "{body}"
    );
    assert!(!r.text.contains("Leaky-Secret-1"));
}

/// A JSON value nested `depth` arrays deep: deeper than the parser allows.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("x"), |inner, _| json!([inner]))
}

/// The same sweep for PATCH and Bulk bodies: odd operations, paths, filters and values get a 4xx
/// SCIM error (the whole request, or the Bulk operation), never a 5xx, and leave the resources as
/// they were.
#[tokio::test(flavor = "multi_thread")]
async fn no_patch_or_bulk_body_causes_a_500_or_a_change() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("target").await);
    let g = id_of(
        &api.create_group(json!({"displayName": "target", "members": [{"value": u}]}))
            .await,
    );
    let (user_before, group_before) = (api.user(&u).await, api.group(&g).await);
    const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
    let deep_filter = format!(
        "emails[{}type eq \"x\"{}]",
        "not (".repeat(500),
        ")".repeat(500)
    );
    let operations: Vec<Value> = vec![
        json!({"op": "add", "path": "emails[type eq", "value": "x"}),
        json!({"op": "add", "path": &deep_filter, "value": "x"}),
        json!({"op": "replace", "path": "name.givenName.x", "value": "x"}),
        json!({"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:", "value": "x"}),
        json!({"op": "replace", "path": "", "value": "x"}),
        json!({"op": "replace", "path": 5, "value": "x"}),
        json!({"op": null, "path": "title", "value": "x"}),
        json!({"op": "move", "path": "title", "value": "x"}),
        json!({"op": "replace", "path": "emails[value pr].type", "value": {"a": 1}}),
        json!({"op": "add", "path": "emails[type eq \"work\"].value", "value": [1, 2]}),
        json!({"op": "add", "value": {"urn:unknown:ext:attr": 1}}),
        json!({"op": "replace", "path": "meta.created", "value": "x"}),
        json!({"op": "add", "path": "id", "value": "x"}),
        json!({"op": "add", "path": "groups", "value": [{"value": "x"}]}),
        json!({"op": "add", "path": "password", "value": 5}),
        json!({"op": "replace", "value": [1]}),
        json!({"op": "replace", "value": null}),
        json!({"op": "remove"}),
        json!({"op": "add", "path": "members", "value": "not-an-array"}),
        json!({"op": "add", "path": "members", "value": [{"value": "no-such-id"}]}),
        json!({"op": "replace", "path": "displayName", "value": {"nested": true}}),
        json!({"op": "replace", "path": "userName", "value": ""}),
        json!({"op": "replace", "path": "emails[type eq \"x\"]", "value": {"value": "x@y"}}),
        json!(5),
        json!(null),
        json!([]),
    ];
    let mut bodies: Vec<Value> = operations
        .iter()
        .map(|op| json!({"schemas": [PATCH_OP], "Operations": [op]}))
        .collect();
    bodies.extend([
        json!({"schemas": [PATCH_OP], "Operations": {}}),
        json!({"schemas": [PATCH_OP], "Operations": "x"}),
        json!({"schemas": [PATCH_OP]}),
        json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
        json!([]),
        json!("x"),
    ]);
    for path in [format!("/Users/{u}"), format!("/Groups/{g}")] {
        for body in &bodies {
            let r = api.patch(&path, body).await;
            assert!((400..500).contains(&r.status), "{path} {body}: {r:?}");
            assert_scim_error_body(&r, r.status);
        }
    }

    const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
    let mut bulk_ops: Vec<Value> = bodies
        .iter()
        .flat_map(|body| {
            [
                json!({"method": "PATCH", "path": format!("/Users/{u}"), "data": body}),
                json!({"method": "PATCH", "path": format!("/Groups/{g}"), "data": body}),
            ]
        })
        .collect();
    bulk_ops.extend([
        json!({"method": "POST", "path": "/Users", "bulkId": "", "data": {"userName": "x"}}),
        json!({"method": "DELETE", "path": "/Users/bulkId:"}),
        json!({"method": "PUT", "path": format!("/Users/{u}"), "data": {"userName": 5}}),
        json!({"method": "DELETE", "path": format!("/Users/{}", "a".repeat(50_000))}),
        json!({"method": "DELETE", "path": "/Users/%00"}),
        json!({"method": "DELETE", "path": 5}),
        json!({"method": 5, "path": "/Users"}),
        json!({"method": "POST", "path": "/Users", "bulkId": "b", "data": "x"}),
        json!({"method": "PUT", "path": format!("/Users/{u}"), "version": "garbage", "data": {"userName": "target"}}),
        json!(5),
        json!(null),
        json!("x"),
    ]);
    let r = api
        .post("/Bulk", &json!({"schemas": [BULK], "Operations": bulk_ops}))
        .await
        .expect(200);
    let answers = r.json()["Operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(answers.len(), bulk_ops.len());
    for a in &answers {
        let status: u16 = a["status"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!((400..500).contains(&status), "{a}");
        assert!(a["response"]["detail"].is_string(), "{a}");
    }
    for bad in [
        json!({"schemas": [BULK], "failOnErrors": 1e30, "Operations": []}),
        json!({"schemas": [BULK], "failOnErrors": true, "Operations": []}),
        json!({"schemas": [BULK], "Operations": {}}),
        json!({"schemas": "x", "Operations": []}),
        json!({"schemas": [BULK], "Operations": [{"method": "POST", "path": "/Users", "bulkId": "d",
               "data": {"userName": nested(200)}}]}),
    ] {
        let r = api.post("/Bulk", &bad).await;
        assert!(r.status < 500, "{bad}: {r:?}");
    }
    assert_eq!(api.user(&u).await, user_before);
    assert_eq!(api.group(&g).await, group_before);
    assert_eq!(api.list("/Users").await["totalResults"], 1);
}

/// RFC 7644 §3.11: a server without `/Me` SHOULD answer 501. An API key is not a User.
#[tokio::test(flavor = "multi_thread")]
async fn me_answers_501_for_every_method_and_401_without_a_key() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ] {
        let r = common::send(api.request_json(method.clone(), "/Me", &json!({}))).await;
        let e = r.expect_scim_error(501, None);
        assert!(
            e["detail"].as_str().is_some_and(|d| d.contains("/Me")),
            "{method}: {e}"
        );
    }
    s.anonymous().get("/Me").await.expect_scim_error(401, None);
}
