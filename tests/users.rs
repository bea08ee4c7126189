//! Users: create, read, replace, delete, list and paging, meta, uniqueness, ETags.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn bjensen() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": "bjensen",
        "externalId": "ext-bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "active": true,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_a_user_returns_201_with_server_assigned_id_meta_location_and_etag() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let mut body = bjensen();
    body["id"] = json!("client-chosen-id");
    let r = api.post("/Users", &body).await.expect(201);
    assert_eq!(
        r.content_type().as_deref(),
        Some("application/scim+json"),
        "{r:?}"
    );
    let u = r.json();

    let id = id_of(&u);
    assert_ne!(id, "client-chosen-id", "a client-sent id must be ignored");
    assert_eq!(u["userName"], "bjensen");
    assert_eq!(u["externalId"], "ext-bjensen");
    assert_eq!(u["name"]["givenName"], "Barbara");
    assert_eq!(u["emails"][0]["value"], "bjensen@example.com");
    assert!(
        u["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(USER_SCHEMA)),
        "schemas must name the core User schema: {u}"
    );

    let meta = &u["meta"];
    assert_eq!(meta["resourceType"], "User");
    let created = assert_utc_timestamp(&meta["created"]);
    let modified = assert_utc_timestamp(&meta["lastModified"]);
    assert!(modified >= created);
    let now = chrono::Utc::now();
    assert!(
        (now - created.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 120,
        "meta.created is not the time of the request: {created}"
    );
    let version = version_of(&u);
    assert_weak_etag(&version);

    let location = format!("http://{}/Users/{id}", s.addr());
    assert_eq!(meta["location"], json!(location));
    assert_eq!(
        r.header("location"),
        Some(location),
        "201 must carry Location = meta.location"
    );
    assert_eq!(
        r.header("etag"),
        Some(version),
        "ETag must equal meta.version"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_user_can_be_read_back_by_id_with_its_etag() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let created = api.create_user(bjensen()).await;
    let id = id_of(&created);

    let r = api.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(r.content_type().as_deref(), Some("application/scim+json"));
    assert_eq!(r.header("etag"), Some(version_of(&created)));
    let got = r.json();
    assert_eq!(got, created, "GET must return what POST returned");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_can_be_created_with_plain_application_json() {
    let s = Scimd::start_default().await;
    let r = common::send(
        s.client()
            .request(Method::POST, "/Users")
            .header("Content-Type", "application/json")
            .body(json!({"schemas": [USER_SCHEMA], "userName": "plainjson"}).to_string()),
    )
    .await
    .expect(201);
    assert_eq!(r.json()["userName"], "plainjson");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_user_name_is_rejected_as_invalid_value() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = api
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "displayName": "No Name"}),
        )
        .await;
    r.expect_scim_error(400, Some("invalidValue"));
    assert_eq!(
        api.list("/Users").await["totalResults"],
        0,
        "nothing may be created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_names_collide_case_insensitively() {
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user_named("BJensen").await;
    let r = api
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "bjensen"}),
        )
        .await;
    r.expect_scim_error(409, Some("uniqueness"));
    let r = api
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "BJENSEN"}),
        )
        .await;
    r.expect_scim_error(409, Some("uniqueness"));
    assert_eq!(api.list("/Users").await["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_external_id_unique_two_users_cannot_share_an_external_id() {
    let s = Scimd::start(Opts::default().env("EXTERNAL_ID_UNIQUE", "true")).await;
    let api = s.client();
    api.create_user(json!({"userName": "a", "externalId": "ext-1"}))
        .await;
    let r = api
        .post("/Users", &json!({"userName": "b", "externalId": "ext-1"}))
        .await;
    r.expect_scim_error(409, Some("uniqueness"));
    assert_eq!(api.list("/Users").await["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_and_a_group_may_share_an_external_id() {
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user(json!({"userName": "a", "externalId": "shared-ext"}))
        .await;
    let g = api
        .create_group(json!({"displayName": "G", "externalId": "shared-ext"}))
        .await;
    assert_eq!(g["externalId"], "shared-ext");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_is_never_returned() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let secret = "Correct-Horse-Battery-9";
    let r = api
        .post("/Users", &json!({"userName": "pw", "password": secret}))
        .await
        .expect(201);
    assert!(
        r.json().get("password").is_none(),
        "POST returned password: {r:?}"
    );
    assert!(!r.text.contains(secret));
    let id = id_of(&r.json());

    let r = api.get(&format!("/Users/{id}")).await.expect(200);
    assert!(
        r.json().get("password").is_none(),
        "GET returned password: {r:?}"
    );
    assert!(!r.text.contains(secret));

    let r = api.get("/Users").await.expect(200);
    assert!(
        !r.text.contains(secret),
        "list returned the password: {r:?}"
    );
    assert!(r.json()["Resources"][0].get("password").is_none());

    let r = api
        .put(
            &format!("/Users/{id}"),
            &json!({"userName": "pw", "password": "Other-Secret-77"}),
        )
        .await
        .expect(200);
    assert!(
        r.json().get("password").is_none(),
        "PUT returned password: {r:?}"
    );
    assert!(!r.text.contains("Other-Secret-77"));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_replaces_all_attributes_and_keeps_id_and_created() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user(bjensen()).await;
    let id = id_of(&u);

    let r = api
        .put(
            &format!("/Users/{id}"),
            &json!({
                "schemas": [USER_SCHEMA],
                "id": "some-other-id",
                "userName": "bjensen",
                "nickName": "Babs",
            }),
        )
        .await
        .expect(200);
    let v = r.json();
    assert_eq!(v["id"], json!(id), "PUT must not change the id");
    assert_eq!(v["userName"], "bjensen");
    assert_eq!(v["nickName"], "Babs");
    for gone in ["displayName", "title", "emails", "name", "externalId"] {
        assert!(
            v.get(gone).is_none() || v[gone].is_null(),
            "PUT must replace all attributes; {gone} survived: {v}"
        );
    }
    assert_eq!(
        v["meta"]["created"], u["meta"]["created"],
        "meta.created must not change"
    );
    assert_ne!(
        version_of(&v),
        version_of(&u),
        "meta.version must change on PUT"
    );
    assert_weak_etag(&version_of(&v));
    assert_eq!(r.header("etag"), Some(version_of(&v)));
    let modified = assert_utc_timestamp(&v["meta"]["lastModified"]);
    assert!(modified >= assert_utc_timestamp(&u["meta"]["lastModified"]));
    assert_eq!(v["meta"]["location"], u["meta"]["location"]);

    assert_eq!(
        api.user(&id).await,
        v,
        "GET after PUT must return the replaced user"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn put_keeping_its_own_user_name_and_external_id_is_allowed() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user(bjensen()).await;
    let id = id_of(&u);
    let mut body = bjensen();
    body["title"] = json!("Manager");
    let v = api
        .put(&format!("/Users/{id}"), &body)
        .await
        .expect(200)
        .json();
    assert_eq!(v["title"], "Manager");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_may_change_the_case_of_its_own_user_name() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let id = id_of(&api.create_user_named("bjensen").await);
    let v = api
        .put(&format!("/Users/{id}"), &json!({"userName": "BJensen"}))
        .await
        .expect(200)
        .json();
    assert_eq!(v["userName"], "BJensen");
    // And the name is still taken, in any case.
    api.post("/Users", &json!({"userName": "bjensen"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_cannot_take_another_users_user_name_or_external_id() {
    let s = Scimd::start(Opts::default().env("EXTERNAL_ID_UNIQUE", "true")).await;
    let api = s.client();
    api.create_user(json!({"userName": "alice", "externalId": "ext-alice"}))
        .await;
    let bob = api
        .create_user(json!({"userName": "bob", "externalId": "ext-bob"}))
        .await;
    let bob_id = id_of(&bob);

    api.put(&format!("/Users/{bob_id}"), &json!({"userName": "ALICE"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
    api.put(
        &format!("/Users/{bob_id}"),
        &json!({"userName": "bob", "externalId": "ext-alice"}),
    )
    .await
    .expect_scim_error(409, Some("uniqueness"));

    let after = api.user(&bob_id).await;
    assert_eq!(after, bob, "a rejected PUT must not change anything");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_frees_the_former_user_name_and_external_id() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "old", "externalId": "ext-old"}))
        .await;
    api.put(
        &format!("/Users/{}", id_of(&u)),
        &json!({"userName": "new", "externalId": "ext-new"}),
    )
    .await
    .expect(200);
    api.create_user(json!({"userName": "old", "externalId": "ext-old"}))
        .await;
    api.post("/Users", &json!({"userName": "NEW"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_returns_204_and_frees_its_user_name_and_external_id() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "gone", "externalId": "ext-gone"}))
        .await;
    let id = id_of(&u);
    let r = api.delete(&format!("/Users/{id}")).await.expect(204);
    assert!(r.text.is_empty(), "204 must have no body: {r:?}");

    api.get(&format!("/Users/{id}"))
        .await
        .expect_scim_error(404, None);
    api.delete(&format!("/Users/{id}"))
        .await
        .expect_scim_error(404, None);
    api.put(&format!("/Users/{id}"), &json!({"userName": "gone"}))
        .await
        .expect_scim_error(404, None);
    assert_eq!(api.list("/Users").await["totalResults"], 0);

    let again = api
        .create_user(json!({"userName": "GONE", "externalId": "ext-gone"}))
        .await;
    assert_ne!(id_of(&again), id, "a new user gets a new id");
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_replacing_or_deleting_an_unknown_user_is_404() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let unknown = uuid::Uuid::new_v4();
    api.get(&format!("/Users/{unknown}"))
        .await
        .expect_scim_error(404, None);
    api.put(&format!("/Users/{unknown}"), &json!({"userName": "x"}))
        .await
        .expect_scim_error(404, None);
    api.delete(&format!("/Users/{unknown}"))
        .await
        .expect_scim_error(404, None);
    api.get("/Users/not-a-uuid")
        .await
        .expect_scim_error(404, None);
    assert_eq!(
        api.list("/Users").await["totalResults"],
        0,
        "PUT must not create"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_version_changes_on_every_write() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("v").await;
    let id = id_of(&u);
    let mut seen = vec![version_of(&u)];
    for i in 0..5 {
        let r = api
            .put(
                &format!("/Users/{id}"),
                &json!({"userName": "v", "title": format!("t{i}")}),
            )
            .await
            .expect(200);
        let v = version_of(&r.json());
        assert_weak_etag(&v);
        assert_eq!(r.header("etag"), Some(v.clone()));
        assert!(!seen.contains(&v), "version {v} repeated: {seen:?}");
        seen.push(v);
    }
    // Rewriting the same content is still a write.
    let r = api
        .put(
            &format!("/Users/{id}"),
            &json!({"userName": "v", "title": "t4"}),
        )
        .await
        .expect(200);
    assert!(!seen.contains(&version_of(&r.json())));
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_with_a_stale_version_on_put_is_412_and_nothing_is_written() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("im").await;
    let id = id_of(&u);
    let v1 = version_of(&u);
    let u2 = api
        .put(
            &format!("/Users/{id}"),
            &json!({"userName": "im", "title": "2"}),
        )
        .await
        .expect(200)
        .json();

    let r = common::send(
        api.request_json(
            Method::PUT,
            &format!("/Users/{id}"),
            &json!({"userName": "im", "title": "3"}),
        )
        .header("If-Match", &v1),
    )
    .await;
    r.expect_scim_error(412, None);
    let now = api.user(&id).await;
    assert_eq!(now, u2, "a 412 PUT must not write anything");

    let r = common::send(
        api.request_json(
            Method::PUT,
            &format!("/Users/{id}"),
            &json!({"userName": "im", "title": "3"}),
        )
        .header("If-Match", version_of(&u2)),
    )
    .await
    .expect(200);
    assert_eq!(r.json()["title"], "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_with_a_stale_version_on_delete_is_412_and_the_user_survives() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("imd").await;
    let id = id_of(&u);
    let r = common::send(
        api.request(Method::DELETE, &format!("/Users/{id}"))
            .header("If-Match", "W/\"999\""),
    )
    .await;
    r.expect_scim_error(412, None);
    assert_eq!(
        api.user(&id).await,
        u,
        "a 412 DELETE must not change anything"
    );

    common::send(
        api.request(Method::DELETE, &format!("/Users/{id}"))
            .header("If-Match", version_of(&u)),
    )
    .await
    .expect(204);
    api.get(&format!("/Users/{id}")).await.expect(404);
}

#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_with_the_current_version_gets_304() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("inm").await;
    let id = id_of(&u);
    let r = common::send(
        api.request(Method::GET, &format!("/Users/{id}"))
            .header("If-None-Match", version_of(&u)),
    )
    .await;
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.text.is_empty(), "304 has no body: {r:?}");

    let r = common::send(
        api.request(Method::GET, &format!("/Users/{id}"))
            .header("If-None-Match", "W/\"12345\""),
    )
    .await
    .expect(200);
    assert_eq!(r.json(), u);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_users_returns_a_list_response_with_totals() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let empty = api.list("/Users").await;
    assert_eq!(empty["totalResults"], 0);
    assert!(
        empty.get("Resources").is_none() || empty["Resources"] == json!([]),
        "an empty list has no resources: {empty}"
    );

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(id_of(&api.create_user_named(&format!("list{i}")).await));
    }
    let r = api.get("/Users").await.expect(200);
    assert_eq!(r.content_type().as_deref(), Some("application/scim+json"));
    let l = r.json();
    assert_eq!(l["schemas"], json!([LIST_SCHEMA]));
    assert_eq!(l["totalResults"], 3);
    assert_eq!(l["startIndex"], 1);
    assert_eq!(l["itemsPerPage"], 3);
    let got: Vec<String> = l["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(sorted(&got), sorted(&ids));
    for res in l["Resources"].as_array().unwrap() {
        assert_eq!(res["meta"]["resourceType"], "User");
        assert!(res["meta"]["location"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_by_start_index_and_count_walks_every_user_once() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(id_of(&api.create_user_named(&format!("page{i}")).await));
    }
    let mut seen = Vec::new();
    for start in [1, 4, 7] {
        let l = api
            .list(&format!("/Users?startIndex={start}&count=3"))
            .await;
        assert_eq!(l["totalResults"], 7);
        assert_eq!(l["startIndex"], start);
        let items = l["Resources"].as_array().unwrap();
        let expected = if start == 7 { 1 } else { 3 };
        assert_eq!(items.len(), expected, "page at {start}: {l}");
        assert_eq!(l["itemsPerPage"], expected);
        seen.extend(items.iter().map(id_of));
    }
    assert_eq!(
        sorted(&seen),
        sorted(&ids),
        "pages must cover every user exactly once"
    );

    let past = api.list("/Users?startIndex=50&count=3").await;
    assert_eq!(past["totalResults"], 7);
    assert!(
        past.get("Resources").is_none() || past["Resources"] == json!([]),
        "{past}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_index_below_one_is_treated_as_one() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for i in 0..3 {
        api.create_user_named(&format!("si{i}")).await;
    }
    let first = api.list("/Users?startIndex=1&count=2").await;
    for bad in ["0", "-5"] {
        let l = api.list(&format!("/Users?startIndex={bad}&count=2")).await;
        assert_eq!(l["startIndex"], 1, "startIndex={bad}: {l}");
        assert_eq!(l["Resources"], first["Resources"], "startIndex={bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn count_zero_returns_only_the_total() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for i in 0..3 {
        api.create_user_named(&format!("c{i}")).await;
    }
    let l = api.list("/Users?count=0").await;
    assert_eq!(l["totalResults"], 3);
    assert!(
        l.get("Resources").is_none() || l["Resources"] == json!([]),
        "count=0 must return no resources: {l}"
    );
    if let Some(ipp) = l.get("itemsPerPage") {
        assert_eq!(ipp, &json!(0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_negative_count_is_treated_as_zero() {
    // RFC 7644 §3.4.2.4: "A negative value SHALL be interpreted as 0."
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user_named("neg").await;
    let l = api.list("/Users?count=-1").await;
    assert_eq!(l["totalResults"], 1);
    assert!(
        l.get("Resources").is_none() || l["Resources"] == json!([]),
        "count=-1 must return no resources: {l}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn count_is_capped_at_page_size() {
    let s = Scimd::start(Opts::default().page_size(3)).await;
    let api = s.client();
    for i in 0..5 {
        api.create_user_named(&format!("cap{i}")).await;
    }
    for path in ["/Users", "/Users?count=10", "/Users?count=4"] {
        let l = api.list(path).await;
        assert_eq!(l["totalResults"], 5, "{path}");
        assert_eq!(l["Resources"].as_array().unwrap().len(), 3, "{path}: {l}");
        assert_eq!(l["itemsPerPage"], 3, "{path}");
    }
    let l = api.list("/Users?count=2").await;
    assert_eq!(l["Resources"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_default_to_pages_of_100() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let tasks: Vec<_> = (0..105)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { api.create_user_named(&format!("hundred{i}")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let l = api.list("/Users").await;
    assert_eq!(l["totalResults"], 105);
    assert_eq!(l["Resources"].as_array().unwrap().len(), 100);
    let l = api.list("/Users?count=1000").await;
    assert_eq!(
        l["Resources"].as_array().unwrap().len(),
        100,
        "count capped at 100"
    );
    assert_eq!(api.list_all("/Users").await.len(), 105);
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_location_uses_the_host_header() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = common::send(
        api.request_json(Method::POST, "/Users", &json!({"userName": "host"}))
            .header("Host", "scim.example.org:8443"),
    )
    .await
    .expect(201);
    let u = r.json();
    let expected = format!("http://scim.example.org:8443/Users/{}", id_of(&u));
    assert_eq!(u["meta"]["location"], json!(expected));
    assert_eq!(r.header("location"), Some(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_location_honours_x_forwarded_proto_and_host() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = common::send(
        api.request_json(Method::POST, "/Users", &json!({"userName": "fwd"}))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "idm.example.com"),
    )
    .await
    .expect(201);
    let u = r.json();
    let id = id_of(&u);
    let expected = format!("https://idm.example.com/Users/{id}");
    assert_eq!(u["meta"]["location"], json!(expected));
    assert_eq!(r.header("location"), Some(expected.clone()));

    let r = common::send(
        api.request(Method::GET, &format!("/Users/{id}"))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "idm.example.com"),
    )
    .await
    .expect(200);
    assert_eq!(r.json()["meta"]["location"], json!(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_location_uses_public_url_when_set() {
    let s = Scimd::start(Opts::default().public_url("https://scim.example.net")).await;
    let api = s.client();
    let r = common::send(
        api.request_json(Method::POST, "/Users", &json!({"userName": "pub"}))
            .header("X-Forwarded-Host", "ignored.example.com"),
    )
    .await
    .expect(201);
    let u = r.json();
    let expected = format!("https://scim.example.net/Users/{}", id_of(&u));
    assert_eq!(u["meta"]["location"], json!(expected));
    assert_eq!(r.header("location"), Some(expected.clone()));
    let l = api.list("/Users").await;
    assert_eq!(l["Resources"][0]["meta"]["location"], json!(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_sent_meta_is_ignored() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({
            "userName": "meta",
            "meta": {
                "resourceType": "Group",
                "created": "2001-01-01T00:00:00Z",
                "lastModified": "2001-01-01T00:00:00Z",
                "version": "W/\"77\"",
                "location": "http://evil.example/Users/x",
            }
        }))
        .await;
    assert_eq!(u["meta"]["resourceType"], "User");
    assert_ne!(u["meta"]["created"], "2001-01-01T00:00:00Z");
    assert_ne!(u["meta"]["version"], "W/\"77\"");
    assert_ne!(u["meta"]["location"], "http://evil.example/Users/x");
}
