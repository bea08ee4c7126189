//! Groups: CRUD, members (validation, server-filled type/$ref/display), the delete cascade.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn member<'a>(group: &'a Value, id: &str) -> &'a Value {
    group["members"]
        .as_array()
        .unwrap_or_else(|| panic!("group without members: {group}"))
        .iter()
        .find(|m| m["value"] == json!(id))
        .unwrap_or_else(|| panic!("{id} is not a member of {group}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_a_group_returns_201_with_meta_location_and_etag() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let r = api
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "id": "mine", "displayName": "Tour Guides", "externalId": "g-ext"}),
        )
        .await
        .expect(201);
    assert_eq!(r.content_type().as_deref(), Some("application/scim+json"));
    let g = r.json();
    let id = id_of(&g);
    assert_ne!(id, "mine");
    assert_eq!(g["displayName"], "Tour Guides");
    assert_eq!(g["externalId"], "g-ext");
    assert!(
        g["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(GROUP_SCHEMA))
    );
    assert_eq!(g["meta"]["resourceType"], "Group");
    assert_utc_timestamp(&g["meta"]["created"]);
    assert_utc_timestamp(&g["meta"]["lastModified"]);
    assert_weak_etag(&version_of(&g));
    let location = format!("http://{}/Groups/{id}", s.addr());
    assert_eq!(g["meta"]["location"], json!(location));
    assert_eq!(r.header("location"), Some(location));
    assert_eq!(r.header("etag"), Some(version_of(&g)));

    let r = api.get(&format!("/Groups/{id}")).await.expect(200);
    assert_eq!(r.header("etag"), Some(version_of(&g)));
    assert_eq!(normalized(&r.json()), normalized(&g));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_without_display_name_is_rejected_as_invalid_value() {
    let s = Scimd::start_default().await;
    let api = s.client();
    api.post(
        "/Groups",
        &json!({"schemas": [GROUP_SCHEMA], "members": []}),
    )
    .await
    .expect_scim_error(400, Some("invalidValue"));
    assert_eq!(api.list("/Groups").await["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_external_id_unique_two_groups_cannot_share_an_external_id() {
    let s = Scimd::start(Opts::default().env("EXTERNAL_ID_UNIQUE", "true")).await;
    let api = s.client();
    api.create_group(json!({"displayName": "A", "externalId": "gx"}))
        .await;
    api.post("/Groups", &json!({"displayName": "B", "externalId": "gx"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
}

#[tokio::test(flavor = "multi_thread")]
async fn members_get_type_ref_and_display_filled_by_the_server() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let with_display = api
        .create_user(json!({"userName": "bjensen", "displayName": "Babs Jensen"}))
        .await;
    let without_display = api.create_user_named("jsmith").await;
    let inner = api.create_group(json!({"displayName": "Inner"})).await;
    let (a, b, c) = (id_of(&with_display), id_of(&without_display), id_of(&inner));

    let r = api
        .post(
            "/Groups",
            &json!({
                "displayName": "Outer",
                "members": [
                    {"value": a},
                    {"value": b, "display": "client says"},
                    {"value": c},
                ],
            }),
        )
        .await
        .expect(201);
    let g = r.json();
    assert_eq!(member_ids(&g), sorted(&[&a, &b, &c]));

    let m = member(&g, &a);
    assert_eq!(m["type"], "User");
    assert_eq!(
        m["display"], "Babs Jensen",
        "display is the user's displayName"
    );
    assert_eq!(m["$ref"], json!(format!("http://{}/Users/{a}", s.addr())));

    let m = member(&g, &b);
    assert_eq!(m["type"], "User");
    assert_eq!(
        m["display"], "jsmith",
        "without displayName, display is the userName"
    );
    assert_eq!(m["$ref"], json!(format!("http://{}/Users/{b}", s.addr())));

    let m = member(&g, &c);
    assert_eq!(m["type"], "Group");
    assert_eq!(m["display"], "Inner");
    assert_eq!(m["$ref"], json!(format!("http://{}/Groups/{c}", s.addr())));

    assert_eq!(
        normalized(&api.group(&id_of(&g)).await),
        normalized(&g),
        "GET returns the same members"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn member_ref_uses_public_url_when_set() {
    let s = Scimd::start(Opts::default().public_url("https://scim.example.net")).await;
    let api = s.client();
    let u = id_of(&api.create_user_named("ref").await);
    let g = api.create_group_with("G", &[&u]).await;
    assert_eq!(
        member(&g, &u)["$ref"],
        json!(format!("https://scim.example.net/Users/{u}"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn members_naming_missing_ids_are_rejected_with_the_missing_ids() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let real = id_of(&api.create_user_named("real").await);
    let missing1 = uuid::Uuid::new_v4().to_string();
    let missing2 = uuid::Uuid::new_v4().to_string();
    let r = api
        .post(
            "/Groups",
            &json!({
                "displayName": "Broken",
                "members": [{"value": real}, {"value": missing1}, {"value": missing2}],
            }),
        )
        .await;
    let body = r.expect_scim_error(400, Some("invalidValue"));
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&missing1),
        "detail must name {missing1}: {detail}"
    );
    assert!(
        detail.contains(&missing2),
        "detail must name {missing2}: {detail}"
    );
    assert!(
        !detail.contains(&real),
        "detail must name only the missing ids: {detail}"
    );
    assert_eq!(
        api.list("/Groups").await["totalResults"],
        0,
        "nothing may be created"
    );

    // Not a UUID at all: also missing.
    api.post(
        "/Groups",
        &json!({"displayName": "Broken", "members": [{"value": "nobody"}]}),
    )
    .await
    .expect_scim_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_with_a_missing_member_is_rejected_and_nothing_changes() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("u").await);
    let g = api.create_group_with("G", &[&u]).await;
    let gid = id_of(&g);
    let missing = uuid::Uuid::new_v4().to_string();
    let body = api
        .put(
            &format!("/Groups/{gid}"),
            &json!({"displayName": "G2", "members": [{"value": missing}]}),
        )
        .await
        .expect_scim_error(400, Some("invalidValue"));
    assert!(body["detail"].as_str().unwrap().contains(&missing));
    assert_eq!(normalized(&api.group(&gid).await), normalized(&g));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_replaces_the_members_and_the_attributes_of_a_group() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user_named("a").await);
    let b = id_of(&api.create_user_named("b").await);
    let c = id_of(&api.create_user_named("c").await);
    let g = api
        .create_group(json!({"displayName": "G", "externalId": "gext", "members": [{"value": a}, {"value": b}]}))
        .await;
    let gid = id_of(&g);

    let r = api
        .put(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "G renamed", "members": [{"value": b}, {"value": c}]}),
        )
        .await
        .expect(200);
    let v = r.json();
    assert_eq!(v["id"], json!(gid));
    assert_eq!(v["displayName"], "G renamed");
    assert!(
        v.get("externalId").is_none() || v["externalId"].is_null(),
        "{v}"
    );
    assert_eq!(member_ids(&v), sorted(&[&b, &c]));
    assert_eq!(member(&v, &c)["display"], "c");
    assert_ne!(version_of(&v), version_of(&g));
    assert_eq!(r.header("etag"), Some(version_of(&v)));
    assert_eq!(v["meta"]["created"], g["meta"]["created"]);
    assert_eq!(normalized(&api.group(&gid).await), normalized(&v));

    let v = api
        .put(&format!("/Groups/{gid}"), &json!({"displayName": "Empty"}))
        .await
        .expect(200)
        .json();
    assert!(
        member_ids(&v).is_empty(),
        "PUT without members empties the group: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_removes_it_from_every_group() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let victim = id_of(&api.create_user_named("victim").await);
    let other = id_of(&api.create_user_named("other").await);
    let g1 = api.create_group_with("G1", &[&victim, &other]).await;
    let g2 = api.create_group_with("G2", &[&victim]).await;
    let g3 = api.create_group_with("G3", &[&other]).await;

    api.delete(&format!("/Users/{victim}")).await.expect(204);

    let r = api
        .get(&format!("/Groups/{}", id_of(&g1)))
        .await
        .expect(200);
    let g1b = r.json();
    assert_eq!(member_ids(&g1b), vec![other.clone()]);
    assert_ne!(
        version_of(&g1b),
        version_of(&g1),
        "the group must get a new version"
    );
    assert_eq!(r.header("etag"), Some(version_of(&g1b)));

    let g2b = api.group(&id_of(&g2)).await;
    assert!(member_ids(&g2b).is_empty(), "{g2b}");
    assert_ne!(version_of(&g2b), version_of(&g2));

    let g3b = api.group(&id_of(&g3)).await;
    assert_eq!(
        normalized(&g3b),
        normalized(&g3),
        "a group without the user is untouched"
    );

    // The list shows the same.
    let all = api.list_all("/Groups").await;
    assert_eq!(all.len(), 3);
    for g in &all {
        assert!(!member_ids(g).contains(&victim), "{g}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_group_removes_it_from_every_group_containing_it() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("u").await);
    let inner = id_of(&api.create_group_with("Inner", &[&u]).await);
    let outer = api.create_group_with("Outer", &[&inner, &u]).await;

    api.delete(&format!("/Groups/{inner}")).await.expect(204);
    api.get(&format!("/Groups/{inner}"))
        .await
        .expect_scim_error(404, None);

    let outer_b = api.group(&id_of(&outer)).await;
    assert_eq!(member_ids(&outer_b), vec![u.clone()]);
    assert_ne!(version_of(&outer_b), version_of(&outer));
    // The user itself survives the group's deletion.
    api.user(&u).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_member_cannot_be_added_back() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(&api.create_user_named("u").await);
    api.delete(&format!("/Users/{u}")).await.expect(204);
    let body = api
        .post(
            "/Groups",
            &json!({"displayName": "G", "members": [{"value": u}]}),
        )
        .await
        .expect_scim_error(400, Some("invalidValue"));
    assert!(body["detail"].as_str().unwrap().contains(&u));
}

#[tokio::test(flavor = "multi_thread")]
async fn member_display_follows_the_members_current_display_name() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let u = id_of(
        &api.create_user(json!({"userName": "bjensen", "displayName": "Babs"}))
            .await,
    );
    let g = id_of(&api.create_group_with("G", &[&u]).await);
    api.put(
        &format!("/Users/{u}"),
        &json!({"userName": "bjensen", "displayName": "Barbara Jensen"}),
    )
    .await
    .expect(200);
    let got = api.group(&g).await;
    assert_eq!(member(&got, &u)["display"], "Barbara Jensen", "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_guards_group_put_and_delete() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let g = api.create_group(json!({"displayName": "G"})).await;
    let gid = id_of(&g);
    common::send(
        api.request_json(
            Method::PUT,
            &format!("/Groups/{gid}"),
            &json!({"displayName": "H"}),
        )
        .header("If-Match", "W/\"41\""),
    )
    .await
    .expect_scim_error(412, None);
    common::send(
        api.request(Method::DELETE, &format!("/Groups/{gid}"))
            .header("If-Match", "W/\"41\""),
    )
    .await
    .expect_scim_error(412, None);
    assert_eq!(
        normalized(&api.group(&gid).await),
        normalized(&g),
        "nothing may be written after a 412"
    );

    let r = common::send(
        api.request(Method::GET, &format!("/Groups/{gid}"))
            .header("If-None-Match", version_of(&g)),
    )
    .await;
    assert_eq!(r.status, 304, "{r:?}");

    let h = common::send(
        api.request_json(
            Method::PUT,
            &format!("/Groups/{gid}"),
            &json!({"displayName": "H"}),
        )
        .header("If-Match", version_of(&g)),
    )
    .await
    .expect(200)
    .json();
    common::send(
        api.request(Method::DELETE, &format!("/Groups/{gid}"))
            .header("If-Match", version_of(&h)),
    )
    .await
    .expect(204);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_groups_pages_like_users() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(id_of(
            &api.create_group(json!({"displayName": format!("G{i}")}))
                .await,
        ));
    }
    let l = api.list("/Groups?count=2").await;
    assert_eq!(l["totalResults"], 5);
    assert_eq!(l["itemsPerPage"], 2);
    assert_eq!(l["startIndex"], 1);
    assert_eq!(l["Resources"].as_array().unwrap().len(), 2);
    assert_eq!(l["Resources"][0]["meta"]["resourceType"], "Group");
    let all: Vec<String> = api
        .list_all("/Groups?count=2")
        .await
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(sorted(&all), sorted(&ids));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_group_returns_204_and_unknown_groups_are_404() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let gid = id_of(&api.create_group(json!({"displayName": "G"})).await);
    let r = api.delete(&format!("/Groups/{gid}")).await.expect(204);
    assert!(r.text.is_empty());
    api.get(&format!("/Groups/{gid}"))
        .await
        .expect_scim_error(404, None);
    api.delete(&format!("/Groups/{gid}"))
        .await
        .expect_scim_error(404, None);
    api.put(&format!("/Groups/{gid}"), &json!({"displayName": "G"}))
        .await
        .expect_scim_error(404, None);
    assert_eq!(api.list("/Groups").await["totalResults"], 0);
}
