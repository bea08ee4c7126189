//! API keys: both header forms, rotation, named keys, the generated key, 401s on every route.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use reqwest::Method;
use serde_json::json;

/// Every route that touches resources, with a body where the route takes one.
fn resource_routes(user: &str, group: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    let u = json!({"userName": "intruder"});
    let g = json!({"displayName": "intruders"});
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "x"}],
    });
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]});
    let bulk =
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []});
    vec![
        (Method::GET, "/Users".into(), None),
        (Method::POST, "/Users".into(), Some(u.clone())),
        (Method::GET, format!("/Users/{user}"), None),
        (Method::PUT, format!("/Users/{user}"), Some(u.clone())),
        (Method::PATCH, format!("/Users/{user}"), Some(patch.clone())),
        (Method::DELETE, format!("/Users/{user}"), None),
        (Method::GET, "/Groups".into(), None),
        (Method::POST, "/Groups".into(), Some(g.clone())),
        (Method::GET, format!("/Groups/{group}"), None),
        (Method::PUT, format!("/Groups/{group}"), Some(g.clone())),
        (Method::PATCH, format!("/Groups/{group}"), Some(patch)),
        (Method::DELETE, format!("/Groups/{group}"), None),
        (Method::POST, "/.search".into(), Some(search.clone())),
        (Method::POST, "/Users/.search".into(), Some(search.clone())),
        (Method::POST, "/Groups/.search".into(), Some(search)),
        (Method::POST, "/Bulk".into(), Some(bulk)),
    ]
}

async fn assert_every_route_rejects(s: &Scimd, api: &Api, user: &str, group: &str) {
    for (method, path, body) in resource_routes(user, group) {
        let rb = match &body {
            Some(b) => api.request_json(method.clone(), &path, b),
            None => api.request(method.clone(), &path),
        };
        let r = common::send(rb).await;
        r.expect_scim_error(401, None);
        let www = r.header("www-authenticate").unwrap_or_default();
        assert!(
            www.to_ascii_lowercase().starts_with("bearer"),
            "{method} {path}: 401 must carry WWW-Authenticate: Bearer, got {www:?}"
        );
    }
    // Nothing was written or deleted.
    let api = s.client();
    api.user(user).await;
    api.group(group).await;
    assert_eq!(api.list("/Users").await["totalResults"], 1);
    assert_eq!(api.list("/Groups").await["totalResults"], 1);
}

async fn seed(s: &Scimd) -> (String, String) {
    let api = s.client();
    let u = id_of(&api.create_user_named("owner").await);
    let g = id_of(&api.create_group_with("owners", &[&u]).await);
    (u, g)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_resource_route_answers_401_without_a_key() {
    let s = Scimd::start_default().await;
    let (u, g) = seed(&s).await;
    assert_every_route_rejects(&s, &s.anonymous(), &u, &g).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_resource_route_answers_401_with_a_wrong_key() {
    let s = Scimd::start_default().await;
    let (u, g) = seed(&s).await;
    assert_every_route_rejects(&s, &s.client_with_key("not-the-key"), &u, &g).await;
    assert_every_route_rejects(&s, &s.client_with(Auth::XApiKey("nope".into())), &u, &g).await;
    // A prefix of the real key is not the key.
    let prefix = DEFAULT_KEY[..DEFAULT_KEY.len() - 1].to_string();
    assert_every_route_rejects(&s, &s.client_with_key(&prefix), &u, &g).await;
    // Another scheme carrying the key is not accepted as Bearer.
    let basic = s.client_with(Auth::Authorization(format!("Basic {DEFAULT_KEY}")));
    assert_every_route_rejects(&s, &basic, &u, &g).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_is_accepted_as_bearer_token_and_as_x_api_key() {
    let s = Scimd::start_default().await;
    let created = s.client().create_user_named("bearer").await;
    let got = s.client_x_api_key().user(&id_of(&created)).await;
    assert_eq!(got, created);
    s.client_x_api_key().create_user_named("xapikey").await;
    assert_eq!(s.client().list("/Users").await["totalResults"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_of_a_comma_separated_list_is_accepted() {
    let s = Scimd::start(Opts::default().api_key("old-key-111, new-key-222")).await;
    s.client_with_key("old-key-111")
        .create_user_named("a")
        .await;
    s.client_with_key("new-key-222")
        .create_user_named("b")
        .await;
    s.client_with(Auth::XApiKey("new-key-222".into()))
        .list("/Users")
        .await;
    s.client_with_key("old-key-111, new-key-222")
        .get("/Users")
        .await
        .expect_scim_error(401, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn named_keys_authenticate_by_their_secret_not_their_name() {
    let s = Scimd::start(Opts::default().api_key("entra=secret1,okta=secret2")).await;
    s.client_with_key("secret1").create_user_named("a").await;
    s.client_with_key("secret2").create_user_named("b").await;
    for wrong in ["entra", "okta", "entra=secret1", "secret1,okta=secret2"] {
        s.client_with_key(wrong)
            .get("/Users")
            .await
            .expect_scim_error(401, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_api_key_a_generated_key_is_kept_in_data_path_with_mode_0600_and_never_printed() {
    let s = Scimd::start(Opts::default().no_api_key()).await;
    let path = s.data_path().join("api-key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "api-key must be mode 0600, is {mode:o}");
    let key = s.generated_key();
    assert!(
        key.len() >= 16,
        "the generated key is too short to be a secret: {} chars",
        key.len()
    );

    s.client_with_key(&key).create_user_named("gen").await;
    s.client_with(Auth::XApiKey(key.clone()))
        .list("/Users")
        .await;
    s.anonymous()
        .get("/Users")
        .await
        .expect_scim_error(401, None);
    s.client_with_key("")
        .get("/Users")
        .await
        .expect_scim_error(401, None);

    assert!(
        !s.log().contains(&key),
        "the generated key appears in scimd's output"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_key_survives_a_restart() {
    let mut s = Scimd::start(Opts::default().no_api_key()).await;
    let key = s.generated_key();
    s.client_with_key(&key).create_user_named("gen").await;
    s.restart().await;
    assert_eq!(
        s.generated_key(),
        key,
        "the key must be kept, not regenerated"
    );
    assert_eq!(
        s.client_with_key(&key).list("/Users").await["totalResults"],
        1
    );
    assert!(!s.log().contains(&key));
}

#[tokio::test(flavor = "multi_thread")]
async fn help_never_shows_secret_values() {
    let s = Scimd::start(Opts::default().api_key("help=Hidden-Secret-Value-42")).await;
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let out = s.cli(args).await.success();
        assert!(
            !out.stdout.contains("Hidden-Secret-Value-42")
                && !out.stderr.contains("Hidden-Secret-Value-42"),
            "`scimd {}` shows the API key: {out:?}",
            args.join(" ")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_output_never_contains_api_keys_or_passwords() {
    let s = Scimd::start(
        Opts::default()
            .api_key("entra=Entra-Secret-abc123,Unnamed-Secret-def456")
            .loglevel("debug"),
    )
    .await;
    let a = s.client_with_key("Entra-Secret-abc123");
    let b = s.client_with(Auth::XApiKey("Unnamed-Secret-def456".into()));
    let u = a
        .create_user(json!({"userName": "pw", "password": "Password-Plaintext-789"}))
        .await;
    b.put(
        &format!("/Users/{}", id_of(&u)),
        &json!({"userName": "pw", "password": "Password-Plaintext-790"}),
    )
    .await
    .expect(200);
    b.get("/Users").await.expect(200);
    s.client_with_key("Wrong-Key-Attempt-000")
        .get("/Users")
        .await
        .expect(401);
    let log = s.log();
    for secret in [
        "Entra-Secret-abc123",
        "Unnamed-Secret-def456",
        "Password-Plaintext-789",
        "Password-Plaintext-790",
    ] {
        assert!(!log.contains(secret), "{secret} appears in scimd's output");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_ready_need_no_key() {
    let s = Scimd::start_default().await;
    let api = s.anonymous();
    let r = api.get("/health").await.expect(200);
    assert_eq!(r.json(), json!({"status": "OK"}));
    api.get("/ready").await.expect(200);
}
