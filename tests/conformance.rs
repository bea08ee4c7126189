//! What independent suites (an RFC test collection, a property-based fuzzer, scim2-tester,
//! hostile hand-made inputs) found missing, each pinned as a behaviour: `Allow` on 405, a trailing
//! slash, externalId's scope, PATCH member validation, mappings of common attributes, and the
//! rough edges a new user meets first.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

/// RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405 response".
#[tokio::test(flavor = "multi_thread")]
async fn a_405_lists_the_allowed_methods() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("allow").await);
    let cases = [
        (
            Method::TRACE,
            "/ServiceProviderConfig".to_owned(),
            "GET, HEAD",
        ),
        (Method::DELETE, "/Users".to_owned(), "GET, HEAD, POST"),
        (Method::POST, "/Schemas".to_owned(), "GET, HEAD"),
        (Method::POST, "/health".to_owned(), "GET, HEAD"),
        (Method::DELETE, "/metrics".to_owned(), "GET, HEAD"),
        (
            Method::POST,
            format!("/Users/{u}"),
            "GET, HEAD, PUT, PATCH, DELETE",
        ),
        (Method::GET, "/Bulk".to_owned(), "POST"),
        (Method::GET, "/Groups/.search".to_owned(), "POST"),
        (Method::PUT, "/Users/".to_owned(), "GET, HEAD, POST"),
    ];
    for (method, path, allow) in cases {
        let r = send(api.request(method.clone(), &path)).await;
        r.expect_scim_error(405, None);
        assert_eq!(
            r.header("allow").as_deref(),
            Some(allow),
            "{method} {path}: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_405_under_base_path_lists_the_allowed_methods() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let api = s.client();
    let r = send(api.request(Method::DELETE, "/Groups")).await;
    r.expect_scim_error(405, None);
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD, POST"));
    let r = send(api.request(Method::POST, "/ResourceTypes/User")).await;
    r.expect_scim_error(405, None);
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
    // The routes served at the root whatever BASE_PATH is answer only the methods they list.
    for path in ["/health", "/favicon.ico"] {
        for method in [Method::POST, Method::DELETE, Method::OPTIONS] {
            let r = send(api.request_url(method.clone(), &s.root_url(path))).await;
            r.expect_scim_error(405, None);
            assert_eq!(
                r.header("allow").as_deref(),
                Some("GET, HEAD"),
                "{method} {path}: {r:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_trailing_slash_names_the_route_itself() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("slash").await;
    let id = id_of(&u);
    let all = api.get("/Users/").await.expect(200).json();
    assert_eq!(all["totalResults"], 1, "{all}");
    let found = api
        .get("/Users/?filter=userName%20eq%20%22slash%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["Resources"][0]["id"], id.as_str(), "{found}");
    assert_eq!(
        api.get(&format!("/Users/{id}/")).await.expect(200).json()["id"],
        id.as_str()
    );
    api.post("/Groups/", &json!({"displayName": "G"}))
        .await
        .expect(201);
    api.get("/ServiceProviderConfig/").await.expect(200);
    s.anonymous().get("/Schemas/").await.expect(200);
    // Only one slash: two are not the route.
    api.get("/Users//").await.expect_scim_error(404, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trailing_slash_works_under_base_path_too() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let api = s.client();
    api.create_user_named("b").await;
    assert_eq!(
        api.get("/Users/").await.expect(200).json()["totalResults"],
        1
    );
    let page = api.get("/").await.expect(200);
    assert!(page.text.contains("swagger"), "the explorer at BASE_PATH/");
}

/// RFC 7643 §3.1: externalId is the provisioning client's identifier, scoped to that client, and
/// not unique; a vendor validation collection provisions several Users with one.
#[tokio::test(flavor = "multi_thread")]
async fn external_id_is_not_unique_by_default_and_stays_searchable() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let a = api
        .create_user(json!({"userName": "a", "externalId": "idp-1"}))
        .await;
    let b = api
        .create_user(json!({"userName": "b", "externalId": "idp-1"}))
        .await;
    api.create_group(json!({"displayName": "G1", "externalId": "idp-g"}))
        .await;
    api.create_group(json!({"displayName": "G2", "externalId": "idp-g"}))
        .await;
    let found = api
        .get("/Users?filter=externalId%20eq%20%22idp-1%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 2, "{found}");
    let c = api.create_user(json!({"userName": "c"})).await;
    api.put(
        &format!("/Users/{}", id_of(&c)),
        &json!({"userName": "c", "externalId": "idp-1"}),
    )
    .await
    .expect(200);
    assert_ne!(id_of(&a), id_of(&b));
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_external_id_unique_rebuilds_the_index_at_start_up() {
    let mut s = Scimd::start(Opts::default().env("EXTERNAL_ID_UNIQUE", "true")).await;
    let api = s.client();
    api.create_user(json!({"userName": "a", "externalId": "x"}))
        .await;
    api.post("/Users", &json!({"userName": "b", "externalId": "x"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
    // Off: the value is free.
    s.stop().await;
    s.opts.env.retain(|(k, _)| k != "EXTERNAL_ID_UNIQUE");
    s.start_again().await;
    let api = s.client();
    let b = id_of(
        &api.create_user(json!({"userName": "b", "externalId": "x"}))
            .await,
    );
    let a = id_of(&api.list("/Users?filter=userName%20eq%20%22a%22").await["Resources"][0]);
    s.cli(&["log", "verify"]).await.success();
    // On again over a store where two Users share it: start-up works, the index holds one of them.
    s.stop().await;
    s.opts
        .env
        .push(("EXTERNAL_ID_UNIQUE".into(), "true".into()));
    s.start_again().await;
    let api = s.client();
    api.post("/Users", &json!({"userName": "c", "externalId": "x"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
    api.create_user(json!({"userName": "d", "externalId": "y"}))
        .await;
    // Both sharers stay writable while they keep the value: keeping it is no new claim, and
    // neither takes the index row from the other.
    for (id, name) in [(&a, "a"), (&b, "b")] {
        api.put(
            &format!("/Users/{id}"),
            &json!({"userName": name, "externalId": "x", "displayName": "kept"}),
        )
        .await
        .expect(200);
        let r = api
            .patch(
                &format!("/Users/{id}"),
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "displayName", "value": "patched"}]}),
            )
            .await;
        assert!(matches!(r.status, 200 | 204), "PATCH {name}: {r:?}");
    }
    api.post("/Users", &json!({"userName": "e", "externalId": "x"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
    s.cli(&["log", "verify"]).await.success();
}

/// A member sub-attribute no schema declares is refused by PATCH exactly as by POST and PUT
/// (400 `invalidValue`), never accepted and silently dropped.
#[tokio::test(flavor = "multi_thread")]
async fn patch_validates_member_sub_attributes_exactly_as_put() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("m").await);
    let g = api.create_group(json!({"displayName": "G"})).await;
    let gid = id_of(&g);
    let bogus = json!([{"value": u, "bogus": 1}]);
    let put = api
        .put(
            &format!("/Groups/{gid}"),
            &json!({"displayName": "G", "members": bogus}),
        )
        .await
        .expect_scim_error(400, Some("invalidValue"));
    for op in ["add", "replace"] {
        let r = api
            .patch(
                &format!("/Groups/{gid}"),
                &patch_ops(json!([{"op": op, "path": "members", "value": bogus}])),
            )
            .await;
        let e = r.expect_scim_error(400, Some("invalidValue"));
        assert_eq!(e["detail"], put["detail"], "{op}: the same answer as PUT");
        let r = api
            .patch(
                &format!("/Groups/{gid}"),
                &patch_ops(json!([{"op": op, "value": {"members": bogus}}])),
            )
            .await;
        r.expect_scim_error(400, Some("invalidValue"));
    }
    api.patch(
        &format!("/Groups/{gid}"),
        &patch_ops(json!([{"op": "add", "path": "members", "value": [{"value": u, "type": 5}]}])),
    )
    .await
    .expect_scim_error(400, Some("invalidValue"));
    let after = api.group(&gid).await;
    assert_eq!(
        after["meta"]["version"], g["meta"]["version"],
        "nothing changed"
    );
    assert!(member_ids(&after).is_empty());
}

/// SCHEMA_MODE=lenient keeps unknown attributes of a resource, but a member is an id and a type:
/// an unknown member sub-attribute cannot be kept, so it is refused rather than dropped.
#[tokio::test(flavor = "multi_thread")]
async fn lenient_mode_refuses_member_sub_attributes_it_cannot_keep() {
    let s = Scimd::start(Opts::default().env("SCHEMA_MODE", "lenient")).await;
    let api = s.client();
    let u = id_of(&api.create_user_named("m").await);
    let bogus = json!([{"value": u, "bogus": 1}]);
    api.post("/Groups", &json!({"displayName": "G", "members": bogus}))
        .await
        .expect_scim_error(400, Some("invalidValue"));
    let g = id_of(
        &api.create_group(json!({"displayName": "G", "extra": 1}))
            .await,
    );
    api.patch(
        &format!("/Groups/{g}"),
        &patch_ops(json!([{"op": "add", "path": "members", "value": bogus}])),
    )
    .await
    .expect_scim_error(400, Some("invalidValue"));
    api.patch(
        &format!("/Groups/{g}"),
        &patch_ops(json!([{"op": "add", "path": "members", "value": [{"value": u}]}])),
    )
    .await
    .expect(204);
    let after = api.group(&g).await;
    assert_eq!(member_ids(&after), [u]);
    assert_eq!(after["extra"], 1, "lenient mode keeps what it can");
}

/// RFC 7643 §3.1: externalId is readWrite, so a mapping may set it and read it; `id` and `meta`
/// are the server's, and naming one stops start-up with a one-line reason.
#[tokio::test(flavor = "multi_thread")]
async fn external_id_works_as_a_mapping_target_and_server_attributes_are_refused() {
    let sram = "urn:mace:surf.nl:sram:scim:extension:User";
    let mapping = json!({"externalId": format!("{sram}:eduPersonUniqueId")}).to_string();
    let s = Scimd::start(Opts::default().env("USER_MAPPING", &mapping)).await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "m", sram: {"eduPersonUniqueId": "u1@sram.example.org"}}))
        .await;
    assert_eq!(u["externalId"], "u1@sram.example.org", "{u}");
    for (setting, value, named) in [
        ("--user-mapping", r#"{"id": "userName"}"#, "id"),
        (
            "--user-mapping",
            r#"{"meta.created": "meta.lastModified"}"#,
            "meta.created",
        ),
        ("--group-mapping", r#"{"displayName": "meta"}"#, "meta"),
    ] {
        let out = s.cli(&["serve", setting, value]).await;
        assert!(!out.status.success(), "{out:?}");
        let line = error_line(&out.stderr);
        assert!(
            line.contains("_MAPPING")
                && line.contains(named)
                && line.contains("assigned by the server"),
            "{line}"
        );
    }
    let out = s
        .cli(&[
            "serve",
            "--user-mapping",
            r#"{"displayName": "externalId"}"#,
            "--listen",
            "127.0.0.1:1",
        ])
        .await;
    assert!(
        !error_line(&out.stderr).contains("MAPPING"),
        "externalId is a valid source: {out:?}"
    );
}

/// The `scimd: error:` line of a failed command's stderr.
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("scimd: error: "))
        .unwrap_or_else(|| panic!("no `scimd: error:` line in:\n{stderr}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_up_error_is_one_line_and_a_backtrace_comes_only_when_asked_for() {
    let s = Scimd::start(Opts::default().unset("RUST_BACKTRACE")).await;
    let out = s
        .cli(&["serve", "--schema-path", "/nonexistent/scimd-schemas"])
        .await;
    assert!(!out.status.success(), "{out:?}");
    let line = error_line(&out.stderr);
    assert!(line.contains("/nonexistent/scimd-schemas"), "{line}");
    let after: Vec<&str> = out
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("scimd: error: "))
        .skip(1)
        .collect();
    assert!(after.is_empty(), "nothing after the error line: {out:?}");
    assert!(!out.stderr.contains("Caused by") && !out.stderr.contains("Stack backtrace"));
    // Asked for: the message still comes first and alone on its line.
    let s = Scimd::start(Opts::default().env("RUST_BACKTRACE", "1")).await;
    let out = s.cli(&["serve", "--user-mapping", "not json"]).await;
    let lines: Vec<&str> = out.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("scimd: error: "))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(lines[at].contains("USER_MAPPING"), "{out:?}");
    assert!(
        lines
            .get(at + 1)
            .is_some_and(|l| l.starts_with("backtrace")),
        "the backtrace follows the line: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_of_an_unknown_projection_names_the_flag_and_the_valid_names() {
    let mut s = Scimd::start_default().await;
    s.stop().await;
    let out = s.cli(&["replay", "--projection", "nope"]).await;
    assert!(!out.status.success(), "{out:?}");
    let line = error_line(&out.stderr);
    assert!(
        line.contains("--projection")
            && line.contains("`nope`")
            && line.contains("file, sql, ldap, mongo")
            && !line.contains("PROJECTIONS"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_and_a_wrong_key_get_different_401_texts() {
    let s = Scimd::start_default().await;
    let missing = s
        .anonymous()
        .get("/Users")
        .await
        .expect_scim_error(401, None);
    let wrong = s
        .client_with_key("not-the-key")
        .get("/Users")
        .await
        .expect_scim_error(401, None);
    let basic = s
        .client_with(Auth::Authorization("Basic dXNlcjpwYXNz".into()))
        .get("/Users")
        .await
        .expect_scim_error(401, None);
    let texts = [&missing["detail"], &wrong["detail"], &basic["detail"]];
    assert!(
        texts[0]
            .as_str()
            .unwrap()
            .contains("authentication required"),
        "{texts:?}"
    );
    assert!(
        texts[1].as_str().unwrap().contains("not valid"),
        "{texts:?}"
    );
    assert!(texts[2].as_str().unwrap().contains("Bearer"), "{texts:?}");
    assert!(!texts[1].as_str().unwrap().contains("not-the-key"));
    // Nor where the keys live: an unauthenticated client learns nothing of the key store.
    for text in texts {
        let text = text.as_str().unwrap();
        for hint in ["API_KEY", "api-key", "DATA_PATH"] {
            assert!(!text.contains(hint), "{hint} in {text}");
        }
    }
    assert_ne!(texts[0], texts[1]);
    assert_ne!(texts[1], texts[2]);
    let x = s
        .client_with(Auth::XApiKey("nope".into()))
        .get("/Users")
        .await
        .expect_scim_error(401, None);
    assert_eq!(x["detail"], wrong["detail"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_store_starts_quietly_and_the_log_says_where_the_explorer_is() {
    let s = Scimd::start_default().await;
    s.client().get("/Users").await.expect(200);
    let log = s.log();
    assert!(
        !log.contains("index rebuilt"),
        "a new store has nothing to rebuild:\n{log}"
    );
    let explorer = format!("http://{}/", s.addr());
    assert!(log.contains(&explorer), "{log}");
    assert!(
        log.contains(&format!("http://{}/openapi.json", s.addr())),
        "{log}"
    );
    // Request lines carry the latency in milliseconds to the microsecond, not a float's expansion.
    let latency = log
        .lines()
        .filter_map(|l| l.split("latency_ms=").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect::<Vec<_>>();
    assert!(!latency.is_empty(), "{log}");
    for value in latency {
        let decimals = value.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "latency_ms={value}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_explorer_has_a_favicon_real_examples_and_tags_that_match_the_routes() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    for url in [s.root_url("/favicon.ico"), s.url("/favicon.ico")] {
        let r = send(s.anonymous().request_url(Method::GET, &url))
            .await
            .expect(200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("image/x-icon"),
            "{url}"
        );
    }
    let doc = s.anonymous().get("/openapi.json").await.expect(200).json();
    let schemas = &doc["components"]["schemas"];
    let user = &schemas["UserWrite"]["example"];
    assert_eq!(user["userName"], "bjensen");
    assert!(
        user["name"]["givenName"].is_string() && user["emails"].is_array(),
        "{user}"
    );
    assert!(schemas["GroupWrite"]["example"]["members"].is_array());
    let add = &schemas["GroupPatchOp"]["example"]["Operations"][0];
    assert_eq!(
        (&add["op"], &add["path"]),
        (&json!("add"), &json!("members"))
    );
    assert_eq!(doc["paths"]["/.search"]["post"]["tags"], json!(["Search"]));
    assert_eq!(
        doc["paths"]["/Users/.search"]["post"]["tags"],
        json!(["Users"])
    );
    let page = s.anonymous().get("/").await.expect(200);
    assert!(page.text.contains("favicon.ico") && page.text.contains("bjensen"));
}
