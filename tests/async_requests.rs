//! Asynchronous requests (RFC 9967 §3, RFC 7240 `Prefer: respond-async`): 202 with `Set-Txn`,
//! `Preference-Applied` and a `Location` where the `misc:asyncresp` outcome is fetched by the key
//! that asked; the outcome is what a synchronous request would have answered; the request survives
//! a SIGKILL right after its 202 and runs exactly once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::faults::{Fiu, Tmpfs};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const ASYNCRESP: &str = "urn:ietf:params:scim:event:misc:asyncresp";
const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes-0123";
const ISSUER: &str = "https://scimd.test";
const HOLD: &str = "scimd/async/hold";

/// Sends `method path` with a JSON body (if any) and `Prefer: {prefer}`.
async fn send_prefer(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<&Value>,
    prefer: &str,
) -> Resp {
    let rb = match body {
        Some(b) => api.request_json(method, path, b),
        None => api.request(method, path),
    };
    send(rb.header("Prefer", prefer)).await
}

/// `send_prefer` with `Prefer: respond-async`.
async fn send_async(api: &Api, method: Method, path: &str, body: Option<&Value>) -> Resp {
    send_prefer(api, method, path, body, "respond-async").await
}

/// A 202 of an accepted asynchronous request: its Set-Txn and Location.
struct Accepted {
    txn: String,
    location: String,
}

#[track_caller]
fn accepted(r: &Resp) -> Accepted {
    assert_eq!(r.status, 202, "not accepted: {r:?}");
    assert!(r.text.is_empty(), "a 202 has no body: {r:?}");
    let txn = r.header("set-txn").expect("Set-Txn");
    assert!(
        uuid::Uuid::parse_str(&txn).is_ok(),
        "Set-Txn {txn} is a UUID"
    );
    assert_eq!(
        r.header("preference-applied").as_deref(),
        Some("respond-async")
    );
    let location = r.header("location").expect("Location");
    assert!(
        location.ends_with(&format!("/Events/Async/{txn}")),
        "Location {location}"
    );
    Accepted { txn, location }
}

/// GET `location` until it is no longer 202 (pending), for up to 20 s; the final response.
async fn fetch(api: &Api, location: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = send(api.request_url(Method::GET, location)).await;
        if r.status != 202 {
            return r;
        }
        assert_eq!(r.header("retry-after").as_deref(), Some("1"), "{r:?}");
        assert!(Instant::now() < deadline, "still pending after 20 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outcome SET's claims at `a`'s Location, checked against RFC 9967 §2.5.1.3; returns the
/// bulk-response operation it carries.
async fn outcome(api: &Api, a: &Accepted) -> Value {
    let claims = fetch(api, &a.location).await.expect(200).json();
    asyncresp(&claims, &a.txn)
}

#[track_caller]
fn asyncresp(claims: &Value, txn: &str) -> Value {
    assert_eq!(claims["txn"], json!(txn), "{claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims}"
    );
    let events = claims["events"].as_object().expect("events");
    assert_eq!(events.len(), 1, "one event: {claims}");
    let op = events[ASYNCRESP].clone();
    assert!(op.get("bulkId").is_none(), "no bulkId: {op}");
    op
}

/// The log's events, as `scimd log tail` prints them.
async fn log(s: &Scimd) -> Vec<Value> {
    s.cli(&["log", "tail"]).await.success().json_lines()
}

fn user(name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": name})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_answers_202_and_its_outcome_is_what_a_synchronous_create_answers() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let a = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("alice"))).await);
    let op = outcome(&api, &a).await;
    assert_eq!(op["method"], json!("POST"));
    assert_eq!(op["status"], json!("201"));
    let location = op["location"].as_str().expect("location").to_owned();
    assert!(location.contains("/Users/"), "{op}");
    let got = send(api.request_url(Method::GET, &location))
        .await
        .expect(200);
    assert_eq!(
        got.header("etag"),
        op["version"].as_str().map(str::to_owned)
    );
    assert_eq!(got.json()["userName"], json!("alice"));
    assert!(
        op.get("response").is_none(),
        "a 2xx carries no response: {op}"
    );

    // The same userName again: the outcome is the 409 a synchronous create answers.
    let sync = api.post("/Users", &user("alice")).await;
    let sync_error = sync.expect_scim_error(409, Some("uniqueness"));
    let b = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("ALICE"))).await);
    let op = outcome(&api, &b).await;
    assert_eq!(op["status"], json!("409"), "{op}");
    assert!(
        op.get("location").is_none(),
        "a failed POST has no location: {op}"
    );
    assert_eq!(op["response"]["scimType"], sync_error["scimType"]);
    assert_eq!(op["response"]["status"], json!("409"));
    assert_eq!(op["response"]["schemas"], json!([ERROR_SCHEMA]));

    // Its events carry the Set-Txn as their transaction.
    let events = log(&s).await;
    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e["txn_id"] == json!(a.txn))
        .collect();
    assert_eq!(
        created.len(),
        1,
        "one event of the async create: {events:?}"
    );
    assert_eq!(created[0]["kind"], json!("create"));
    assert!(location.ends_with(created[0]["resource_id"].as_str().unwrap()));
    assert!(
        !events.iter().any(|e| e["txn_id"] == json!(b.txn)),
        "the 409 wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn put_patch_and_delete_outcomes_carry_status_location_and_version_and_a_404_for_a_gone_resource()
 {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("bob").await;
    let path = format!("/Users/{}", id_of(&u));
    let url = api.url(&path);

    let put = json!({"schemas": [USER_SCHEMA], "userName": "bob", "title": "v2"});
    let a = accepted(&send_async(&api, Method::PUT, &path, Some(&put)).await);
    let op = outcome(&api, &a).await;
    assert_eq!(
        (
            op["method"].clone(),
            op["status"].clone(),
            op["location"].clone()
        ),
        (json!("PUT"), json!("200"), json!(url))
    );
    assert_eq!(op["version"], json!("W/\"2\""), "{op}");

    let ops = patch_ops(json!([{"op": "replace", "path": "title", "value": "v3"}]));
    let a = accepted(&send_async(&api, Method::PATCH, &path, Some(&ops)).await);
    let op = outcome(&api, &a).await;
    assert_eq!(
        (op["status"].clone(), op["version"].clone()),
        (json!("200"), json!("W/\"3\""))
    );
    assert_eq!(api.user(&id_of(&u)).await["title"], json!("v3"));

    let a = accepted(&send_async(&api, Method::DELETE, &path, None).await);
    let op = outcome(&api, &a).await;
    assert_eq!(
        (op["method"].clone(), op["status"].clone()),
        (json!("DELETE"), json!("204"))
    );
    api.get(&path).await.expect_scim_error(404, None);

    // The resource is gone: the outcome is the 404 a synchronous PATCH answers.
    let sync = api.patch(&path, &ops).await.expect_scim_error(404, None);
    let a = accepted(&send_async(&api, Method::PATCH, &path, Some(&ops)).await);
    let op = outcome(&api, &a).await;
    assert_eq!(op["status"], json!("404"), "{op}");
    assert_eq!(
        op["location"],
        json!(url),
        "a failed PATCH names its resource: {op}"
    );
    assert_eq!(op["response"]["detail"], sync["detail"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_has_one_outcome_per_operation_with_txn_set_txn_colon_index() {
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user_named("taken").await;
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "c", "data": user("carol")},
            {"method": "POST", "path": "/Users", "bulkId": "t", "data": user("taken")},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": [GROUP_SCHEMA], "displayName": "G", "members": [{"value": "bulkId:c"}]}},
        ]
    });
    let a = accepted(&send_async(&api, Method::POST, "/Bulk", Some(&bulk)).await);
    let all = fetch(&api, &a.location).await.expect(200).json();
    let sets = all["sets"].as_object().expect("sets").clone();
    let keys: Vec<&String> = sets.keys().collect();
    let expected: Vec<String> = (0..3).map(|i| format!("{}:{i}", a.txn)).collect();
    assert_eq!(keys, expected.iter().collect::<Vec<_>>(), "{all}");
    let ops: Vec<Value> = expected.iter().map(|t| asyncresp(&sets[t], t)).collect();
    assert_eq!(ops[0]["status"], json!("201"));
    assert_eq!(ops[1]["status"], json!("409"));
    assert_eq!(ops[1]["response"]["scimType"], json!("uniqueness"));
    assert_eq!(ops[2]["status"], json!("201"));
    let group = send(api.request_url(Method::GET, ops[2]["location"].as_str().unwrap()))
        .await
        .expect(200)
        .json();
    let carol = ops[0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(member_ids(&group), vec![carol]);

    // One operation's outcome at Set-Txn:index.
    let one = fetch(&api, &format!("{}:1", a.location))
        .await
        .expect(200)
        .json();
    assert_eq!(asyncresp(&one, &expected[1]), ops[1]);
    let none = fetch(&api, &format!("{}:3", a.location)).await;
    none.expect_scim_error(404, None);
    // One URL per SET: another spelling of an index names nothing.
    for other in ["01", "+1"] {
        let r = fetch(&api, &format!("{}:{other}", a.location)).await;
        r.expect_scim_error(404, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_key_that_asked_sees_the_outcome() {
    let s = Scimd::start(Opts::default().api_key("one=secret-one-1234,two=secret-two-5678")).await;
    let one = s.client_with_key("secret-one-1234");
    let two = s.client_with_key("secret-two-5678");
    let a = accepted(&send_async(&one, Method::POST, "/Users", Some(&user("dave"))).await);
    outcome(&one, &a).await;
    send(two.request_url(Method::GET, &a.location))
        .await
        .expect_scim_error(404, None);
    let anonymous = send(s.anonymous().request_url(Method::GET, &a.location)).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    send(one.request_url(Method::GET, &format!("{}x", a.location)))
        .await
        .expect_scim_error(404, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_of_the_wrong_shape_is_refused_synchronously_and_nothing_is_kept() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("erin").await;
    let path = format!("/Users/{}", id_of(&u));
    let before = log(&s).await.len();
    let cases = [
        (
            Method::POST,
            "/Users".to_owned(),
            json!({"schemas": [USER_SCHEMA]}),
        ),
        (
            Method::PUT,
            path.clone(),
            json!({"schemas": [USER_SCHEMA], "userName": 42}),
        ),
        (Method::PATCH, path.clone(), json!({"Operations": "nope"})),
        (
            Method::POST,
            "/Bulk".to_owned(),
            json!({"schemas": ["x"], "Operations": 1}),
        ),
    ];
    for (method, path, body) in cases {
        let r = send_async(&api, method.clone(), &path, Some(&body)).await;
        r.expect_scim_error(400, None);
        assert!(r.header("set-txn").is_none(), "{method} {path}: {r:?}");
        assert!(r.header("preference-applied").is_none(), "{r:?}");
    }
    assert_eq!(log(&s).await.len(), before, "nothing was written");
    // The server is not left with work: the next async request runs at once.
    let a = accepted(&send_async(&api, Method::DELETE, &path, None).await);
    assert_eq!(outcome(&api, &a).await["status"], json!("204"));
    assert_eq!(log(&s).await.len(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_answers_synchronously_when_the_request_completes_in_time() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = send_prefer(
        &api,
        Method::POST,
        "/Users",
        Some(&user("fay")),
        "respond-async, wait=10",
    )
    .await
    .expect(201);
    assert!(r.header("preference-applied").is_none(), "{r:?}");
    let created = r.json();
    assert_eq!(created["userName"], json!("fay"));
    api.user(&id_of(&created)).await;
    // A refusal decided by the store is answered as it would be synchronously.
    send_prefer(
        &api,
        Method::POST,
        "/Users",
        Some(&user("fay")),
        "Respond-Async; x=1, Wait=10",
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));
}

/// Options with SETs on: HS256 with [`SECRET`], issuer [`ISSUER`].
fn with_sets(opts: Opts) -> Opts {
    opts.env("SET_SIGNING_SECRET", SECRET)
        .env("SET_ISSUER", ISSUER)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_sets_on_the_outcome_is_a_signed_set_and_service_provider_config_says_request() {
    let s = Scimd::start(with_sets(Opts::default())).await;
    let api = s.client();
    let spc = api.get("/ServiceProviderConfig").await.expect(200).json();
    assert_eq!(
        spc["securityEvents"]["asyncRequest"],
        json!("request"),
        "{spc}"
    );
    let uris = spc["securityEvents"]["eventUris"]
        .as_array()
        .expect("eventUris");
    assert!(uris.contains(&json!(ASYNCRESP)), "{spc}");

    let a = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("kim"))).await);
    let r = fetch(&api, &a.location).await.expect(200);
    assert_eq!(
        r.content_type().as_deref(),
        Some("application/secevent+jwt")
    );
    let header = jsonwebtoken::decode_header(&r.text).expect("a JWS header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).expect("an HS256 key");
    let claims = jsonwebtoken::decode::<Value>(&r.text, &key, &validation)
        .expect("the signature verifies")
        .claims;
    assert_eq!(claims["iss"], json!(ISSUER), "{claims}");
    assert!(claims["iat"].is_i64() && claims["toe"].is_i64(), "{claims}");
    assert!(
        claims.get("sub").is_none(),
        "no sub (RFC 9967 §2.1): {claims}"
    );
    let op = asyncresp(&claims, &a.txn);
    let id = op["location"].as_str().unwrap().rsplit('/').next().unwrap();
    assert_eq!(
        claims["sub_id"],
        json!({"format": "scim", "uri": format!("/Users/{id}"), "id": id})
    );
    // The same outcome carries the same jti every time it is fetched.
    let again = fetch(&api, &a.location).await.expect(200);
    let again = jsonwebtoken::decode::<Value>(&again.text, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(again["jti"], claims["jti"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_async_requests_off_the_preference_is_ignored() {
    let s = Scimd::start(with_sets(Opts::default()).env("ASYNC_REQUESTS", "false")).await;
    let api = s.client();
    let spc = api.get("/ServiceProviderConfig").await.expect(200).json();
    assert_eq!(
        spc["securityEvents"]["asyncRequest"],
        json!("none"),
        "{spc}"
    );
    let uris = spc["securityEvents"]["eventUris"]
        .as_array()
        .expect("eventUris");
    assert!(!uris.contains(&json!(ASYNCRESP)), "{spc}");
    let r = send_async(&api, Method::POST, "/Users", Some(&user("gus")))
        .await
        .expect(201);
    assert!(
        r.header("set-txn").is_none() && r.header("preference-applied").is_none(),
        "{r:?}"
    );
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "h", "data": user("hal")}]
    });
    let r = send_async(&api, Method::POST, "/Bulk", Some(&bulk))
        .await
        .expect(200);
    assert_eq!(r.json()["Operations"][0]["status"], json!("201"));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_accepted_before_a_sigkill_complete_after_the_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default(), dir.path()) else {
        return;
    };
    let mut s = Scimd::start(opts).await;
    let api = s.client();
    let u = api.create_user_named("ivy").await;
    let path = format!("/Users/{}", id_of(&u));
    fiu.enable(&s, HOLD);
    let create = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("jo"))).await);
    let ops = patch_ops(json!([{"op": "add", "path": "title", "value": "held"}]));
    let patch = accepted(&send_async(&api, Method::PATCH, &path, Some(&ops)).await);
    // Held: accepted, not run; its Location says so; wait=1 gives up and answers 202.
    let r = send(api.request_url(Method::GET, &create.location)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let late = send_prefer(&api, Method::DELETE, &path, None, "respond-async, wait=1").await;
    let delete = accepted(&late);
    // `log verify` knows the tables: pending requests are listed in arrival order.
    s.cli(&["log", "verify"]).await.success();
    s.kill().await;

    s.start_again().await;
    let api = s.client();
    // The server listens on a new port now.
    let moved = |a: Accepted| Accepted {
        location: api.url(&format!("/Events/Async/{}", a.txn)),
        txn: a.txn,
    };
    let (create, patch, delete) = (moved(create), moved(patch), moved(delete));
    let created = outcome(&api, &create).await;
    assert_eq!(created["status"], json!("201"), "{created}");
    let patched = outcome(&api, &patch).await;
    assert_eq!(
        (patched["status"].clone(), patched["version"].clone()),
        (json!("200"), json!("W/\"2\""))
    );
    assert_eq!(outcome(&api, &delete).await["status"], json!("204"));
    // Each ran once, in arrival order, and nothing more runs later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = log(&s).await;
    let mut by_txn: HashMap<String, Vec<String>> = HashMap::new();
    for e in &events {
        by_txn
            .entry(e["txn_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["kind"].as_str().unwrap().to_owned());
    }
    assert_eq!(by_txn[&create.txn], vec!["create"]);
    assert_eq!(by_txn[&patch.txn], vec!["patch"]);
    assert_eq!(by_txn[&delete.txn], vec!["delete"]);
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| e["txn_id"].as_str())
        .filter(|t| {
            [&create.txn, &patch.txn, &delete.txn]
                .iter()
                .any(|x| x == t)
        })
        .collect();
    assert_eq!(order, vec![&create.txn, &patch.txn, &delete.txn]);
    s.restart().await;
    assert_eq!(
        log(&s).await.len(),
        events.len(),
        "a restart runs nothing again"
    );
    // The tables agree with the log once the requests ran across the crash, too.
    s.stop().await;
    s.cli(&["log", "verify"]).await.success();
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_async_max_pending_a_request_is_refused_503_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default().env("ASYNC_MAX_PENDING", "2"), dir.path())
    else {
        return;
    };
    let s = Scimd::start(opts).await;
    let api = s.client();
    fiu.enable(&s, HOLD);
    let first = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("u1"))).await);
    accepted(&send_async(&api, Method::POST, "/Users", Some(&user("u2"))).await);
    let r = send_async(&api, Method::POST, "/Users", Some(&user("u3"))).await;
    r.expect_scim_error(503, None);
    assert!(r.header("set-txn").is_none(), "{r:?}");
    fiu.disable(&s, HOLD);
    assert_eq!(outcome(&api, &first).await["status"], json!("201"));
    // Once they have run there is room again; the refused one was never kept.
    let third = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("u3"))).await);
    assert_eq!(outcome(&api, &third).await["status"], json!("201"));
    let names: Vec<Value> = api
        .list_all("/Users")
        .await
        .iter()
        .map(|u| u["userName"].clone())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retention_longer_than_the_calendar_keeps_outcomes_and_requests_still_run() {
    // "Keep forever": subtracting it from now once panicked the executor, and every accepted
    // request stayed pending.
    let s = Scimd::start(Opts::default().env("ASYNC_RETENTION_HOURS", "1000000000000")).await;
    let api = s.client();
    let a = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("kept"))).await);
    assert_eq!(outcome(&api, &a).await["status"], json!("201"));
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_is_checked_when_the_request_runs_and_requests_on_one_resource_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default(), dir.path()) else {
        return;
    };
    let s = Scimd::start(opts).await;
    let api = s.client();
    let created = api.post("/Users", &user("ordered")).await.expect(201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let etag = created.header("etag").expect("etag");
    let path = format!("/Users/{id}");
    let rename = |name: &str| {
        json!({"schemas": [PATCH_OP],
               "Operations": [{"op": "replace", "path": "displayName", "value": name}]})
    };
    fiu.enable(&s, HOLD);
    // Both carry the version current at arrival: the first runs, the second then no longer
    // matches (412), though it matched when it was accepted.
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let r = send(
            api.request_json(Method::PATCH, &path, &rename(name))
                .header("Prefer", "respond-async")
                .header("If-Match", &etag),
        )
        .await;
        ids.push(accepted(&r));
    }
    let third = accepted(&send_async(&api, Method::PATCH, &path, Some(&rename("third"))).await);
    fiu.disable(&s, HOLD);
    assert_eq!(outcome(&api, &ids[0]).await["status"], json!("200"));
    let refused = outcome(&api, &ids[1]).await;
    assert_eq!(refused["status"], json!("412"), "{refused}");
    assert_eq!(outcome(&api, &third).await["status"], json!("200"));
    let now = api.get(&path).await.expect(200).json();
    assert_eq!(now["displayName"], json!("third"), "arrival order: {now}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_full_disk_a_request_is_not_accepted_and_nothing_of_it_runs_later() {
    let Some(fs) = Tmpfs::mount(24) else { return };
    let data = fs.path().join("data");
    let mut s = Scimd::start(Opts::default().env("DATA_PATH", &data.to_string_lossy())).await;
    let api = s.client();
    let filler = fs.fill("filler");
    // Big enough that its commit cannot fit in what redb's file still has free.
    let big =
        json!({"schemas": [USER_SCHEMA], "userName": "lost", "title": "x".repeat(400 * 1024)});
    let r = send_async(&api, Method::POST, "/Users", Some(&big)).await;
    assert_eq!(r.status, 503, "no 202 unless it is on disk: {r:?}");
    assert!(r.header("set-txn").is_none(), "{r:?}");
    std::fs::remove_file(filler).unwrap();
    let a = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("kept"))).await);
    assert_eq!(outcome(&api, &a).await["status"], json!("201"));
    let names: Vec<Value> = api
        .list_all("/Users")
        .await
        .iter()
        .map(|u| u["userName"].clone())
        .collect();
    assert_eq!(names, vec![json!("kept")], "the refused one never ran");
    s.stop().await;
    s.cli(&["log", "verify"]).await.success();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_that_panics_is_restarted_and_the_request_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default(), dir.path()) else {
        return;
    };
    let s = Scimd::start(opts).await;
    let api = s.client();
    fiu.enable(&s, "scimd/async/panic");
    let a = accepted(&send_async(&api, Method::POST, "/Users", Some(&user("survivor"))).await);
    // Until the executor has panicked at least once the request must still be pending.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("fault point scimd/async/panic") {
        assert!(
            Instant::now() < deadline,
            "no panic logged\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fiu.disable(&s, "scimd/async/panic");
    assert_eq!(outcome(&api, &a).await["status"], json!("201"));
    assert!(
        s.log().contains("executor panicked; restarting it"),
        "the restart is logged\n{}",
        s.log_tail()
    );
}
