//! Queries (RFC 7644 §3.4.2, §3.4.3): `filter`, `sortBy` / `sortOrder`, paging, and POST `.search`,
//! black-box against the real binary.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SRAM: &str = "urn:mace:surf.nl:sram:scim:extension:User";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// GET `path` with these query parameters (encoded by the client).
async fn query(api: &Api, path: &str, params: &[(&str, &str)]) -> Resp {
    let url = reqwest::Url::parse_with_params(&api.url(path), params).expect("a valid URL");
    send(api.request_url(Method::GET, url.as_str())).await
}

/// The `userName`s (or, for groups, `displayName`s) of a list body, in order.
fn names(body: &Value) -> Vec<String> {
    body["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no Resources: {body}"))
        .iter()
        .map(|r| {
            r.get("userName")
                .or_else(|| r.get("displayName"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The names matching `filter` on /Users, sorted by userName.
async fn users_where(api: &Api, filter: &str) -> Vec<String> {
    let r = query(api, "/Users", &[("filter", filter), ("sortBy", "userName")]).await;
    assert_eq!(r.status, 200, "{filter}: {r:?}");
    let body = r.json();
    assert_eq!(
        body["totalResults"].as_u64().unwrap() as usize,
        body["Resources"].as_array().unwrap().len(),
        "{filter}: {body}"
    );
    names(&body)
}

/// Three users that differ in every attribute the tests filter on.
async fn three_users(api: &Api) -> Vec<Value> {
    vec![
        api.create_user(json!({
            "schemas": [USER_SCHEMA, ENT, SRAM],
            "userName": "alice",
            "externalId": "Ext-A",
            "displayName": "Alice Adams",
            "active": true,
            "name": {"familyName": "Adams", "givenName": "Alice"},
            "emails": [
                {"value": "alice@work.example", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"}
            ],
            ENT: {"employeeNumber": "100"},
            SRAM: {"eduPersonUniqueId": "alice@surf.nl"}
        }))
        .await,
        api.create_user(json!({
            "schemas": [USER_SCHEMA, ENT],
            "userName": "Bob",
            "externalId": "ext-b",
            "displayName": "Bob Brown",
            "active": false,
            "name": {"familyName": "Brown"},
            "emails": [{"value": "bob@home.example", "type": "home"}],
            ENT: {"employeeNumber": "200"}
        }))
        .await,
        api.create_user(json!({
            "schemas": [USER_SCHEMA],
            "userName": "carol",
            "title": ""
        }))
        .await,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_find_users_by_every_operator_and_combination() {
    let s = Scimd::start_default().await;
    let api = s.client();
    three_users(&api).await;
    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "ALICE""#, &["alice"]),
        (r#"userName ne "alice""#, &["Bob", "carol"]),
        (r#"userName co "o""#, &["Bob", "carol"]),
        (r#"userName sw "b""#, &["Bob"]),
        (r#"userName ew "OL""#, &["carol"]),
        (r#"userName gt "b""#, &["Bob", "carol"]),
        (r#"userName ge "bob""#, &["Bob", "carol"]),
        (r#"userName lt "bob""#, &["alice"]),
        (r#"userName le "bob""#, &["alice", "Bob"]),
        (r#"displayName pr"#, &["alice", "Bob"]),
        (r#"title pr"#, &[]),
        (r#"externalId eq "ext-a""#, &[]),
        (r#"externalId eq "Ext-A""#, &["alice"]),
        (r#"active eq false"#, &["Bob"]),
        (r#"name.familyName eq "adams""#, &["alice"]),
        (r#"emails.value ew "home.example""#, &["alice", "Bob"]),
        (r#"emails co "work""#, &["alice"]),
        (r#"emails[type eq "home" and value sw "bob"]"#, &["Bob"]),
        (r#"emails[type eq "work" and value sw "bob"]"#, &[]),
        (
            r#"userName eq "carol" or active eq true and displayName pr"#,
            &["alice", "carol"],
        ),
        (
            r#"(userName eq "carol" or active eq true) and displayName pr"#,
            &["alice"],
        ),
        (r#"not (displayName pr)"#, &["carol"]),
        (r#"nickName eq null"#, &["alice", "Bob", "carol"]),
        (r#"noSuchAttribute eq "x""#, &[]),
        (&format!("{ENT}:employeeNumber eq \"200\""), &["Bob"]),
        (&format!("{ENT}:employeeNumber pr"), &["alice", "Bob"]),
        (
            r#"urn:mace:surf.nl:sram:scim:extension:User.eduPersonUniqueId eq "alice@surf.nl""#,
            &["alice"],
        ),
        (
            r#"urn:mace:surf.nl:sram:scim:extension:User:eduPersonUniqueId pr"#,
            &["alice"],
        ),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "A""#,
            &["alice"],
        ),
        (r#"meta.resourceType eq "User""#, &["alice", "Bob", "carol"]),
    ];
    for (filter, expected) in cases {
        assert_eq!(users_where(&api, filter).await, *expected, "{filter}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn id_and_unique_attributes_find_exactly_one_resource() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let users = three_users(&api).await;
    let bob = id_of(&users[1]);
    assert_eq!(
        users_where(&api, &format!("id eq \"{bob}\"")).await,
        ["Bob"]
    );
    assert_eq!(users_where(&api, "userName eq \"BOB\"").await, ["Bob"]);
    assert_eq!(
        users_where(&api, "userName eq \"bob\" and active eq true").await,
        Vec::<String>::new()
    );
    assert_eq!(users_where(&api, "externalId eq \"ext-b\"").await, ["Bob"]);
    assert_eq!(
        users_where(&api, "userName eq \"nobody\"").await,
        Vec::<String>::new()
    );
    // A deleted user is no longer found through the index.
    api.delete(&format!("/Users/{bob}")).await.expect(204);
    assert_eq!(
        users_where(&api, "userName eq \"bob\"").await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_last_modified_compares_as_an_instant() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let first = api.create_user_named("first").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    api.create_user_named("second").await;
    let t = first["meta"]["lastModified"].as_str().unwrap().to_owned();
    let parsed = chrono::DateTime::parse_from_rfc3339(&t).unwrap();
    // The same instant written in another offset.
    let shifted = parsed
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    assert_eq!(
        users_where(&api, &format!("meta.lastModified gt \"{shifted}\"")).await,
        ["second"]
    );
    assert_eq!(
        users_where(&api, &format!("meta.lastModified le \"{shifted}\"")).await,
        ["first"]
    );
    assert_eq!(
        users_where(&api, &format!("meta.lastModified eq \"{shifted}\"")).await,
        ["first"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_filter_is_invalid_filter_naming_the_column() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let cases: &[(&str, &str)] = &[
        (r#"userName xx "x""#, "column 10"),
        (r#"userName eq "x" and"#, "column 20"),
        (r#"userName eq "unclosed"#, "not closed"),
        (r#"(userName eq "x""#, "')'"),
        (r#"userName eq bare"#, "not a value"),
        ("", "empty"),
        (r#"emails[type eq "work""#, "']'"),
    ];
    for path in ["/Users", "/Groups"] {
        for (filter, says) in cases {
            let r = query(&api, path, &[("filter", filter)]).await;
            let body = r.expect_scim_error(400, Some("invalidFilter"));
            let detail = body["detail"].as_str().unwrap();
            assert!(detail.contains(says), "{filter}: {detail}");
            assert!(detail.contains("column"), "{filter}: {detail}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn comparing_incompatible_types_is_invalid_filter() {
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user_named("x").await;
    for filter in [
        "active gt true",
        "active eq \"true\"",
        "meta.lastModified gt \"yesterday\"",
        "meta.created co \"2020\"",
        "userName eq 5",
        "userName gt null",
        "name eq \"x\"",
        "userName[value eq \"x\"]",
    ] {
        let r = query(&api, "/Users", &[("filter", filter)]).await;
        let body = r.expect_scim_error(400, Some("invalidFilter"));
        assert!(
            body["detail"].as_str().unwrap().contains("column"),
            "{filter}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_filters_are_refused_within_the_configured_limits() {
    let s = Scimd::start(
        Opts::default()
            .env("FILTER_MAX_LENGTH", "60")
            .env("FILTER_MAX_DEPTH", "2")
            .env("FILTER_MAX_TERMS", "3"),
    )
    .await;
    let api = s.client();
    let long = format!("userName eq \"{}\"", "x".repeat(60));
    let deep = "(((userName pr)))";
    let wide = "a pr or b pr or c pr or d pr";
    for (filter, says) in [
        (long.as_str(), "at most 60"),
        (deep, "nesting"),
        (wide, "more than 3"),
    ] {
        let body = query(&api, "/Users", &[("filter", filter)])
            .await
            .expect_scim_error(400, Some("invalidFilter"));
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
    }
    query(&api, "/Users", &[("filter", "((userName pr))")])
        .await
        .expect(200);
    // Hostile input at the default limits neither hangs nor fails the server.
    let d = Scimd::start_default().await;
    let hostile = "(".repeat(50_000);
    d.client()
        .post("/Users/.search", &json!({"filter": hostile}))
        .await
        .expect_scim_error(400, Some("invalidFilter"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sort_by_orders_results_with_missing_values_last_and_ties_by_id() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let mut ids = Vec::new();
    for (user, nick) in [
        ("u1", Some("b")),
        ("u2", None),
        ("u3", Some("A")),
        ("u4", Some("b")),
    ] {
        let mut body = json!({"userName": user});
        if let Some(n) = nick {
            body["nickName"] = json!(n);
        }
        ids.push((id_of(&api.create_user(body).await), user));
    }
    let tie: Vec<&str> = {
        let mut t: Vec<&(String, &str)> = ids
            .iter()
            .filter(|(_, u)| *u == "u1" || *u == "u4")
            .collect();
        t.sort();
        t.iter().map(|(_, u)| *u).collect()
    };
    let r = query(&api, "/Users", &[("sortBy", "nickName")])
        .await
        .expect(200)
        .json();
    assert_eq!(names(&r), [vec!["u3"], tie.clone(), vec!["u2"]].concat());
    let r = query(
        &api,
        "/Users",
        &[("sortBy", "NICKNAME"), ("sortOrder", "descending")],
    )
    .await
    .expect(200)
    .json();
    assert_eq!(names(&r)[0], "u2", "missing first when descending: {r}");
    assert_eq!(names(&r)[3], "u3");
    assert_eq!(names(&r)[1..3], tie[..], "ties stay in id order");
    // An attribute nobody has sorts by id.
    let r = query(&api, "/Users", &[("sortBy", "noSuchAttribute")])
        .await
        .expect(200)
        .json();
    let mut by_id = ids.clone();
    by_id.sort();
    assert_eq!(names(&r), by_id.iter().map(|(_, u)| *u).collect::<Vec<_>>());
    query(
        &api,
        "/Users",
        &[("sortBy", "userName"), ("sortOrder", "sideways")],
    )
    .await
    .expect_scim_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sorting_by_a_multi_valued_or_extension_attribute_uses_the_primary_value() {
    let s = Scimd::start_default().await;
    let api = s.client();
    api.create_user(json!({"userName": "p", "emails": [
        {"value": "z@x"}, {"value": "a@x", "primary": false}, {"value": "m@x", "primary": true}
    ]}))
    .await;
    api.create_user(json!({"userName": "q", "emails": [{"value": "b@x"}, {"value": "y@x"}]}))
        .await;
    api.create_user(
        json!({"userName": "r", "schemas": [USER_SCHEMA, ENT], ENT: {"employeeNumber": "0"}}),
    )
    .await;
    let r = query(&api, "/Users", &[("sortBy", "emails.value")])
        .await
        .expect(200)
        .json();
    assert_eq!(names(&r), ["q", "p", "r"]);
    let r = query(&api, "/Users", &[("sortBy", "emails")])
        .await
        .expect(200)
        .json();
    assert_eq!(names(&r), ["q", "p", "r"]);
    let r = query(
        &api,
        "/Users",
        &[("sortBy", &format!("{ENT}:employeeNumber"))],
    )
    .await
    .expect(200)
    .json();
    assert_eq!(names(&r)[0], "r");
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_a_filtered_sorted_list_keeps_total_results_exact() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for i in 0..7 {
        api.create_user(json!({"userName": format!("user{i}"), "title": if i % 2 == 0 { "even" } else { "odd" }}))
            .await;
    }
    let base = [("filter", "title eq \"even\""), ("sortBy", "userName")];
    let page = |start: &'static str, count: &'static str| {
        let mut p = base.to_vec();
        p.push(("startIndex", start));
        p.push(("count", count));
        p
    };
    let r = query(&api, "/Users", &page("2", "2"))
        .await
        .expect(200)
        .json();
    assert_eq!(r["totalResults"], 4);
    assert_eq!(r["startIndex"], 2);
    assert_eq!(r["itemsPerPage"], 2);
    assert_eq!(names(&r), ["user2", "user4"]);
    let r = query(&api, "/Users", &page("0", "10"))
        .await
        .expect(200)
        .json();
    assert_eq!(r["startIndex"], 1);
    assert_eq!(names(&r), ["user0", "user2", "user4", "user6"]);
    let r = query(&api, "/Users", &page("1", "0"))
        .await
        .expect(200)
        .json();
    assert_eq!(r["totalResults"], 4);
    assert!(r.get("Resources").is_none(), "{r}");
    let r = query(&api, "/Users", &page("9", "10"))
        .await
        .expect(200)
        .json();
    assert_eq!(r["totalResults"], 4);
    assert_eq!(r["itemsPerPage"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn post_search_takes_a_search_request_body() {
    let s = Scimd::start_default().await;
    let api = s.client();
    three_users(&api).await;
    let body = api
        .post(
            "/Users/.search",
            &json!({
                "schemas": [SEARCH],
                "filter": "emails.type eq \"home\"",
                "sortBy": "userName",
                "sortOrder": "descending",
                "attributes": ["userName"],
                "startIndex": 1,
                "count": 10
            }),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(body["schemas"], json!([LIST_SCHEMA]));
    assert_eq!(names(&body), ["Bob", "alice"]);
    let first = &body["Resources"][0];
    assert!(
        first.get("emails").is_none() && first.get("id").is_some(),
        "{first}"
    );
    let body = api
        .post(
            "/Users/.search",
            &json!({"schemas": [SEARCH], "excludedAttributes": "emails,name"}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(body["totalResults"], 3);
    assert!(
        body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("emails").is_none())
    );
    api.post("/Users/.search", &json!({"filter": "userName eq"}))
        .await
        .expect_scim_error(400, Some("invalidFilter"));
    api.post("/Users/.search", &json!({"count": "ten"}))
        .await
        .expect_scim_error(400, Some("invalidSyntax"));
    api.post("/Users/.search", &json!(["not", "an", "object"]))
        .await
        .expect_scim_error(400, Some("invalidSyntax"));
}

#[tokio::test(flavor = "multi_thread")]
async fn post_search_at_the_root_spans_users_and_groups() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let users = three_users(&api).await;
    api.create_group_with("Admins", &[&id_of(&users[0])]).await;
    api.create_group_with("Builders", &[]).await;
    // displayName is defined for both types; userName only for Users (no value on Groups).
    let body = api
        .post(
            "/.search",
            &json!({"filter": "displayName sw \"b\"", "sortBy": "displayName"}),
        )
        .await
        .expect(200)
        .json();
    let types: Vec<&str> = body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["User", "Group"], "{body}");
    let body = api
        .post(
            "/.search",
            &json!({"filter": "userName pr or displayName eq \"admins\""}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(body["totalResults"], 4);
    let body = api
        .post("/.search", &json!({"count": 0}))
        .await
        .expect(200)
        .json();
    assert_eq!(body["totalResults"], 5);
    let body = api
        .post("/Groups/.search", &json!({"filter": "userName pr"}))
        .await
        .expect(200)
        .json();
    assert_eq!(body["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_are_found_by_member_and_users_by_group() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let users = three_users(&api).await;
    let alice = id_of(&users[0]);
    let bob = id_of(&users[1]);
    let admins = api.create_group_with("Admins", &[&alice, &bob]).await;
    api.create_group_with("Staff", &[&bob]).await;
    api.create_group_with("Empty", &[]).await;
    let r = query(
        &api,
        "/Groups",
        &[
            ("filter", &format!("members[value eq \"{alice}\"]")),
            ("excludedAttributes", "members"),
        ],
    )
    .await
    .expect(200)
    .json();
    assert_eq!(names(&r), ["Admins"]);
    assert!(r["Resources"][0].get("members").is_none(), "{r}");
    let r = query(
        &api,
        "/Groups",
        &[
            ("filter", &format!("members.value eq \"{bob}\"")),
            ("sortBy", "displayName"),
        ],
    )
    .await
    .expect(200)
    .json();
    assert_eq!(names(&r), ["Admins", "Staff"]);
    assert_eq!(r["Resources"][0]["members"].as_array().unwrap().len(), 2);
    let r = query(
        &api,
        "/Groups",
        &[("filter", "members pr"), ("sortBy", "displayName")],
    )
    .await
    .expect(200)
    .json();
    assert_eq!(names(&r), ["Admins", "Staff"]);
    let admins = id_of(&admins);
    assert_eq!(
        users_where(&api, &format!("groups.value eq \"{admins}\"")).await,
        ["alice", "Bob"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn indexed_queries_follow_replaces_deletes_and_cascades_and_log_verify_agrees() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(
            json!({"userName": "Old", "externalId": "e1", "emails": [{"value": "old@x.example"}]}),
        )
        .await;
    let uid = id_of(&u);
    let other = id_of(&api.create_user_named("other").await);
    let g = id_of(&api.create_group_with("Team", &[&uid, &other]).await);
    api.put(
        &format!("/Users/{uid}"),
        &json!({"userName": "New", "displayName": "Newly", "emails": [{"value": "new@x.example"}]}),
    )
    .await
    .expect(200);
    assert_eq!(
        users_where(&api, "userName eq \"old\"").await,
        Vec::<String>::new()
    );
    assert_eq!(users_where(&api, "userName sw \"ne\"").await, ["New"]);
    assert_eq!(
        users_where(&api, "externalId pr").await,
        Vec::<String>::new()
    );
    assert_eq!(
        users_where(&api, "emails.value eq \"old@x.example\"").await,
        Vec::<String>::new()
    );
    assert_eq!(
        users_where(&api, "emails.value eq \"NEW@x.example\"").await,
        ["New"]
    );
    assert_eq!(
        users_where(&api, "displayName eq \"newly\" or userName eq \"other\"").await,
        ["New", "other"]
    );
    let before = api.group(&g).await["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    api.delete(&format!("/Users/{other}")).await.expect(204);
    let r = query(
        &api,
        "/Groups",
        &[("filter", &format!("meta.lastModified gt \"{before}\""))],
    )
    .await
    .expect(200)
    .json();
    assert_eq!(
        names(&r),
        ["Team"],
        "the cascade gave the group a new lastModified"
    );
    let r = query(
        &api,
        "/Groups",
        &[("filter", &format!("members[value eq \"{other}\"]"))],
    )
    .await
    .expect(200)
    .json();
    assert_eq!(r["totalResults"], 0);
    s.stop().await;
    s.cli(&["log", "verify"]).await.success();
}

/// Walks `path` by cursor (RFC 9865) with these extra parameters; returns the names on each page.
async fn walk(api: &Api, path: &str, extra: &[(&str, &str)], count: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut params = extra.to_vec();
        params.push(("count", count));
        params.push(("cursor", &cursor));
        let body = query(api, path, &params).await.expect(200).json();
        assert!(body.get("startIndex").is_none(), "{body}");
        pages.push(names(&body));
        match body.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(pages.len() < 100, "the walk does not end");
    }
    pages
}

#[tokio::test(flavor = "multi_thread")]
async fn walking_by_cursor_never_skips_or_repeats_while_others_write() {
    let s = Scimd::start_default().await;
    let api = s.client();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(id_of(&api.create_user_named(&format!("stay{i}")).await));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = String::new();
    let mut round = 0;
    loop {
        let body = query(&api, "/Users", &[("count", "3"), ("cursor", &cursor)])
            .await
            .expect(200)
            .json();
        assert_eq!(
            body["itemsPerPage"].as_u64().unwrap() as usize,
            names(&body).len()
        );
        seen.extend(names(&body));
        // Others write between pages: new users, and a deleted one that never was "throughout".
        round += 1;
        let extra = id_of(&api.create_user_named(&format!("new{round}")).await);
        api.delete(&format!("/Users/{extra}")).await.expect(204);
        api.create_user_named(&format!("kept{round}")).await;
        match body.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(round < 50);
    }
    for i in 0..10 {
        let name = format!("stay{i}");
        assert_eq!(
            seen.iter().filter(|n| **n == name).count(),
            1,
            "{name} in {seen:?}"
        );
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "repeats: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_paging_follows_the_filter_and_sort_order() {
    let s = Scimd::start_default().await;
    let api = s.client();
    for i in 0..7 {
        api.create_user(
            json!({"userName": format!("c{i}"), "title": if i == 3 { "skip" } else { "t" }}),
        )
        .await;
    }
    let pages = walk(
        &api,
        "/Users",
        &[
            ("filter", "title eq \"t\""),
            ("sortBy", "userName"),
            ("sortOrder", "descending"),
        ],
        "4",
    )
    .await;
    assert_eq!(pages, [vec!["c6", "c5", "c4", "c2"], vec!["c1", "c0"]]);
    let body = api
        .post(
            "/.search",
            &json!({"cursor": "", "count": 5, "filter": "userName sw \"c\""}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(body["totalResults"], 7);
    let next = body["nextCursor"].as_str().unwrap();
    let body = api
        .post(
            "/.search",
            &json!({"cursor": next, "count": 5, "filter": "userName sw \"c\""}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(names(&body).len(), 2);
    assert!(body.get("nextCursor").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn altered_foreign_and_expired_cursors_are_refused() {
    let s = Scimd::start(Opts::default().env("CURSOR_TIMEOUT", "0")).await;
    let api = s.client();
    for i in 0..3 {
        api.create_user_named(&format!("x{i}")).await;
    }
    let body = query(&api, "/Users", &[("count", "1"), ("cursor", "")])
        .await
        .expect(200)
        .json();
    let next = body["nextCursor"].as_str().unwrap().to_owned();
    let mut altered = next.clone().into_bytes();
    altered[2] = if altered[2] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [altered.as_str(), "garbage", "a.b"] {
        query(&api, "/Users", &[("count", "1"), ("cursor", bad)])
            .await
            .expect_scim_error(400, Some("invalidCursor"));
    }
    // A cursor belongs to its query.
    query(
        &api,
        "/Users",
        &[("count", "1"), ("cursor", &next), ("filter", "userName pr")],
    )
    .await
    .expect_scim_error(400, Some("invalidCursor"));
    query(&api, "/Users", &[("cursor", ""), ("startIndex", "2")])
        .await
        .expect_scim_error(400, Some("invalidValue"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    query(&api, "/Users", &[("count", "1"), ("cursor", &next)])
        .await
        .expect_scim_error(400, Some("expiredCursor"));
    let c = api.get("/ServiceProviderConfig").await.expect(200).json();
    assert_eq!(c["pagination"]["cursor"], json!(true), "{c}");
    assert_eq!(c["pagination"]["cursorTimeout"], json!(0), "{c}");
}
