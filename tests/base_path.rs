//! BASE_PATH: every SCIM route, openapi.json and the explorer live under it; /health also at the root.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn scim_routes_live_under_base_path() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let api = s.client();
    assert!(api.url("/Users").ends_with("/scim/v2/Users"));

    let r = api
        .post("/Users", &json!({"userName": "bp"}))
        .await
        .expect(201);
    let u = r.json();
    let id = id_of(&u);
    let location = format!("http://{}/scim/v2/Users/{id}", s.addr());
    assert_eq!(u["meta"]["location"], json!(location));
    assert_eq!(r.header("location"), Some(location));
    api.user(&id).await;
    let g = api.create_group_with("G", &[&id]).await;
    assert_eq!(
        g["members"][0]["$ref"],
        json!(format!("http://{}/scim/v2/Users/{id}", s.addr()))
    );
    assert_eq!(
        g["meta"]["location"],
        json!(format!("http://{}/scim/v2/Groups/{}", s.addr(), id_of(&g)))
    );
    api.list("/Users").await;
    api.list("/Groups").await;
    api.get("/ServiceProviderConfig").await.expect(200);
    api.delete(&format!("/Users/{id}")).await.expect(204);
    // Filters, Bulk (its locations too) and the 404s work under BASE_PATH.
    api.get("/Users?filter=userName%20eq%20%22x%22")
        .await
        .expect(200);
    let bulk = api
        .post(
            "/Bulk",
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [{"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "in-bulk"}}],
            }),
        )
        .await
        .expect(200)
        .json();
    let location = bulk["Operations"][0]["location"]
        .as_str()
        .unwrap_or_default();
    assert!(
        location.starts_with(&format!("http://{}/scim/v2/Users/", s.addr())),
        "{bulk}"
    );
    api.get("/Nope").await.expect_scim_error(404, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_outside_base_path_are_404() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let root = s.client_with(Auth::Bearer(s.key.clone()));
    for path in [
        "/Users",
        "/Groups",
        "/ServiceProviderConfig",
        "/scim/Users",
        "/v2/Users",
    ] {
        let r = common::send(root.request_url(Method::GET, &s.root_url(path))).await;
        r.expect_scim_error(404, None);
    }
    let r = common::send(
        root.request_url(Method::POST, &s.root_url("/Users"))
            .header("Content-Type", "application/scim+json")
            .body(json!({"userName": "root"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(s.client().list("/Users").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_at_the_root_and_under_base_path() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let api = s.anonymous();
    for url in [s.root_url("/health"), s.url("/health")] {
        let r = common::send(api.request_url(Method::GET, &url))
            .await
            .expect(200);
        assert_eq!(r.json(), json!({"status": "OK"}), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_json_and_the_explorer_live_under_base_path() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let api = s.client();
    let r = api.get("/openapi.json").await.expect(200);
    let doc = r.json();
    assert!(doc["openapi"].is_string(), "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(
        paths.keys().any(|p| p.ends_with("/Users")),
        "openapi.json must document /Users: {:?}",
        paths.keys().collect::<Vec<_>>()
    );

    let r = common::send(api.request_url(Method::GET, &s.url("/"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.text.to_lowercase().contains("swagger"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn base_path_and_public_url_combine_in_locations() {
    let s = Scimd::start(
        Opts::default()
            .base_path("/scim/v2")
            .public_url("https://idm.example.org"),
    )
    .await;
    let api = s.client();
    let r = api
        .post("/Users", &json!({"userName": "pub"}))
        .await
        .expect(201);
    let id = id_of(&r.json());
    let expected = format!("https://idm.example.org/scim/v2/Users/{id}");
    assert_eq!(r.json()["meta"]["location"], json!(expected));
    assert_eq!(r.header("location"), Some(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn base_path_and_forwarded_headers_combine_in_locations() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let api = s.client();
    let r = common::send(
        api.request_json(Method::POST, "/Users", &json!({"userName": "fwd"}))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "proxy.example.com"),
    )
    .await
    .expect(201);
    let id = id_of(&r.json());
    assert_eq!(
        r.json()["meta"]["location"],
        json!(format!("https://proxy.example.com/scim/v2/Users/{id}"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn base_path_of_a_single_slash_means_no_prefix() {
    let s = Scimd::start(Opts::default().base_path("/")).await;
    let api = s.client();
    assert_eq!(api.url("/Users"), s.root_url("/Users"));
    let r = api
        .post("/Users", &json!({"userName": "slash"}))
        .await
        .expect(201);
    let id = id_of(&r.json());
    assert_eq!(
        r.json()["meta"]["location"],
        json!(format!("http://{}/Users/{id}", s.addr())),
        "no double slash, no prefix"
    );
    api.get("/openapi.json").await.expect(200);
    api.get("/health").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_is_required_under_base_path() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let r = s.anonymous().get("/Users").await;
    r.expect_scim_error(401, None);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .to_lowercase()
            .starts_with("bearer")
    );
}
