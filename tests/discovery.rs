//! What a client or operator discovers: health, readiness, the OpenAPI document and its explorer.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_status_ok() {
    let s = Scimd::start_default().await;
    let r = s.anonymous().get("/health").await.expect(200);
    assert_eq!(r.json(), json!({"status": "OK"}));
    s.anonymous().get("/ready").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_json_documents_every_route_with_its_auth_schemes() {
    let s = Scimd::start_default().await;
    let r = s.client().get("/openapi.json").await.expect(200);
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with('3'),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let keys: Vec<&String> = paths.keys().collect();
    let find = |suffix: &str| {
        paths
            .iter()
            .find(|(k, _)| k.ends_with(suffix))
            .unwrap_or_else(|| panic!("openapi.json does not document {suffix}: {keys:?}"))
            .1
            .clone()
    };
    let users = find("/Users");
    assert!(
        users.get("get").is_some() && users.get("post").is_some(),
        "{users}"
    );
    let groups = find("/Groups");
    assert!(
        groups.get("get").is_some() && groups.get("post").is_some(),
        "{groups}"
    );
    for item in [
        paths
            .iter()
            .find(|(k, _)| k.contains("/Users/{"))
            .unwrap_or_else(|| panic!("no /Users/{{id}} in {keys:?}"))
            .1,
        paths
            .iter()
            .find(|(k, _)| k.contains("/Groups/{"))
            .unwrap_or_else(|| panic!("no /Groups/{{id}} in {keys:?}"))
            .1,
    ] {
        for m in ["get", "put", "delete"] {
            assert!(item.get(m).is_some(), "{m} missing: {item}");
        }
    }
    find("/ServiceProviderConfig");

    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .unwrap_or_else(|| panic!("no securitySchemes: {doc}"));
    let text = serde_json::to_string(schemes).unwrap().to_lowercase();
    assert!(text.contains("bearer"), "no bearer scheme: {text}");
    assert!(text.contains("x-api-key"), "no X-API-Key scheme: {text}");
    // The resource operations declare them.
    let op = &users["get"];
    assert!(
        op.get("security").is_some() || doc.get("security").is_some(),
        "GET /Users declares no security: {op}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_explorer_is_served_without_any_cdn() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = common::send(api.request_url(Method::GET, &s.url("/"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.content_type().unwrap_or_default().contains("html"),
        "{r:?}"
    );
    let html = r.text.to_lowercase();
    assert!(html.contains("swagger"), "not Swagger UI: {}", r.text);
    for cdn in ["unpkg", "jsdelivr", "cdnjs", "googleapis", "cdn."] {
        assert!(!html.contains(cdn), "the explorer references a CDN ({cdn})");
    }
    for attr in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "src=\"//",
        "href=\"//",
    ] {
        assert!(
            !html.contains(attr),
            "the explorer loads an external asset ({attr})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn service_provider_config_states_exactly_what_works() {
    let s = Scimd::start_default().await;
    let r = s.client().get("/ServiceProviderConfig").await.expect(200);
    assert_eq!(r.content_type().as_deref(), Some("application/scim+json"));
    let c = r.json();
    assert!(
        c["schemas"].as_array().unwrap().contains(&json!(
            "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
        )),
        "{c}"
    );
    for feature in ["filter", "sort", "patch"] {
        assert_eq!(
            c[feature]["supported"],
            json!(true),
            "{feature} must be supported: {c}"
        );
    }
    assert_eq!(c["filter"]["maxResults"], json!(100), "{c}");
    assert_eq!(
        c["bulk"],
        json!({"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576}),
        "{c}"
    );
    assert_eq!(c["etag"]["supported"], json!(true), "{c}");
    // `password` is accepted on create and replace (hashed, never returned).
    assert_eq!(c["changePassword"]["supported"], json!(true), "{c}");
    assert!(c["authenticationSchemes"].is_array(), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn service_provider_config_is_readable_without_a_key() {
    let s = Scimd::start_default().await;
    let c = s
        .anonymous()
        .get("/ServiceProviderConfig")
        .await
        .expect(200)
        .json();
    assert_eq!(c["etag"]["supported"], json!(true), "{c}");
    s.anonymous()
        .get("/Users")
        .await
        .expect_scim_error(401, None);
}
