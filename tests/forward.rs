//! The upstream SCIM projection (`PROJECTIONS=scim`, issue 13) from outside: a real `scimd serve`
//! forwarding to two independent SCIM servers on loopback — a second scimd and scim2-server (PyPI,
//! a third-party server; `SCIMD_TEST_SCIM2_*` from `scripts/test`) — checked with GETs on the
//! upstream: creates, replaces, PATCHes, member changes, deletes and their cascade; the upstream
//! down mid-load and back; `replay --fresh` into an empty upstream; a 4xx parked with the
//! upstream's error in `/status`; a 409 adopted (or parked with `FORWARD_SCIM_ADOPT=false`); a URL
//! without a key stopping start-up.
//!
//! `SCIMD_TEST_SKIP_LINT=1 scripts/test --test forward`. Without `SCIMD_TEST_SCIM2_URL` the
//! scim2-server test prints a notice and passes, except with `CI=true`, where it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::projections::*;
use common::*;
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A scimd to forward to, on a pinned port (so it can be stopped and started again at the same URL).
async fn upstream_scimd(port: u16) -> Scimd {
    Scimd::start(Opts::default().env("LISTEN", &format!("127.0.0.1:{port}"))).await
}

/// A scimd forwarding to `url` with `key`, plus `env`.
async fn forwarding(url: &str, key: &str, env: &[(&str, &str)]) -> Scimd {
    let mut opts = Opts::default()
        .env("PROJECTIONS", "scim")
        .env("FORWARD_SCIM_URL", url)
        .env("FORWARD_SCIM_KEY", key);
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    Scimd::start(opts).await
}

/// A client of an upstream that is not a scimd of the harness.
fn upstream_client(url: &str, token: &str) -> Api {
    Api::for_url(url, Auth::Bearer(token.to_owned()))
}

/// The one upstream resource whose `attribute` equals `value` (asserting there is exactly one).
async fn upstream_one(up: &Api, endpoint: &str, attribute: &str, value: &str) -> Value {
    let filter = format!("{attribute} eq \"{value}\"");
    let page = up
        .request(reqwest::Method::GET, endpoint)
        .query(&[("filter", filter.as_str())])
        .send()
        .await
        .expect("GET upstream")
        .json::<Value>()
        .await
        .expect("JSON");
    let found = page["Resources"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        found.len(),
        1,
        "upstream {endpoint}?filter={filter}: expected exactly one, got {page:#}"
    );
    found[0].clone()
}

async fn upstream_count(up: &Api, endpoint: &str, attribute: &str, value: &str) -> usize {
    let filter = format!("{attribute} eq \"{value}\"");
    let page = up
        .request(reqwest::Method::GET, endpoint)
        .query(&[("filter", filter.as_str())])
        .send()
        .await
        .expect("GET upstream")
        .json::<Value>()
        .await
        .expect("JSON");
    page["Resources"].as_array().map_or(0, Vec::len)
}

/// Asserts that the upstream holds every User and Group of `s` as scimd's GET shows them: the same
/// userName/displayName/externalId/active/emails, the enterprise manager and each group's members
/// translated to the upstream's ids. Returns scimd id → upstream id.
async fn assert_upstream_mirrors(s: &Scimd, up: &Api) -> BTreeMap<String, String> {
    let api = s.client();
    let mut remote: BTreeMap<String, String> = BTreeMap::new();
    let users = api.list_all("/Users?count=100").await;
    for u in &users {
        let name = u["userName"].as_str().expect("userName");
        let theirs = upstream_one(up, "/Users", "userName", name).await;
        for attribute in ["displayName", "externalId", "active", "name"] {
            assert_eq!(
                theirs.get(attribute),
                u.get(attribute),
                "{attribute} of {name} upstream: {theirs:#}"
            );
        }
        let emails = |v: &Value| -> BTreeSet<String> {
            v["emails"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e["value"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(emails(&theirs), emails(u), "emails of {name} upstream");
        remote.insert(id_of(u), id_of(&theirs));
    }
    for u in &users {
        if let Some(manager) = u[ENTERPRISE]["manager"]["value"].as_str() {
            let theirs =
                upstream_one(up, "/Users", "userName", u["userName"].as_str().unwrap()).await;
            assert_eq!(
                theirs[ENTERPRISE]["manager"]["value"].as_str(),
                remote.get(manager).map(String::as_str),
                "the manager upstream is the upstream id of scimd's manager"
            );
        }
    }
    let groups = api.list_all("/Groups?count=100").await;
    for g in &groups {
        let name = g["displayName"].as_str().expect("displayName");
        let theirs = upstream_one(up, "/Groups", "displayName", name).await;
        remote.insert(id_of(g), id_of(&theirs));
    }
    for g in &groups {
        let name = g["displayName"].as_str().unwrap();
        let theirs = upstream_one(up, "/Groups", "displayName", name).await;
        let theirs = up
            .get(&format!("/Groups/{}", id_of(&theirs)))
            .await
            .expect(200)
            .json();
        let members = |v: &Value| -> BTreeSet<String> {
            v["members"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m["value"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let expected: BTreeSet<String> = members(g)
            .into_iter()
            .map(|m| {
                remote
                    .get(&m)
                    .cloned()
                    .unwrap_or_else(|| format!("unmapped {m}"))
            })
            .collect();
        assert_eq!(members(&theirs), expected, "members of {name} upstream");
        assert_eq!(theirs.get("externalId"), g.get("externalId"));
    }
    remote
}

/// Waits until the `scim` projection parked `n` changes; returns its `/status` entry.
async fn parked(s: &Scimd, n: u64) -> Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let st = status(s).await;
        let sub = st["subscribers"]["scim"].clone();
        if sub["parked"].as_u64() == Some(n) {
            return sub;
        }
        assert!(
            Instant::now() < deadline,
            "scim did not park {n} change(s): {st:#}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_workload_outage_and_fresh_replay_reach_an_upstream_scimd() {
    let port = free_port();
    let mut up = upstream_scimd(port).await;
    let s = forwarding(&up.url(""), &up.key, &[]).await;
    let api = s.client();
    let alice = api
        .create_user(json!({
            "schemas": [USER_SCHEMA], "userName": "alice", "externalId": "idp-alice",
            "displayName": "Alice", "name": {"givenName": "Alice", "familyName": "A"},
            "emails": [{"value": "alice@example.org", "type": "work", "primary": true}],
            "password": PASSWORD,
        }))
        .await;
    let bob = api.create_user_named("bob").await;
    let carol = api
        .create_user(json!({
            "schemas": [USER_SCHEMA, ENTERPRISE], "userName": "carol",
            ENTERPRISE: {"employeeNumber": "7", "manager": {"value": id_of(&alice)}},
        }))
        .await;
    let staff = api
        .create_group(json!({
            "schemas": [GROUP_SCHEMA], "displayName": "staff", "externalId": "idp-staff",
            "members": [{"value": id_of(&alice)}, {"value": id_of(&bob)}],
        }))
        .await;
    let all = api
        .create_group_with("all", &[&id_of(&staff), &id_of(&carol)])
        .await;
    api.put(
        &format!("/Users/{}", id_of(&bob)),
        &json!({"schemas": [USER_SCHEMA], "userName": "bob", "displayName": "Bob B"}),
    )
    .await
    .expect(200);
    api.patch(
        &format!("/Users/{}", id_of(&alice)),
        &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await
    .expect(200);
    api.patch(
        &format!("/Groups/{}", id_of(&staff)),
        &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": id_of(&carol)}]},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", id_of(&bob))},
        ]}),
    )
    .await
    .expect(204);
    caught_up(&s, &["scim"], CONVERGE).await;
    let remote = assert_upstream_mirrors(&s, &up.client()).await;
    // The password never leaves scimd, and the upstream assigned ids of its own.
    assert_ne!(remote[&id_of(&alice)], id_of(&alice));
    assert!(
        !up.client()
            .get(&format!("/Users/{}", remote[&id_of(&alice)]))
            .await
            .text
            .contains(PASSWORD)
    );

    // The upstream goes down mid-load; the API goes on; the projection converges once it is back.
    up.stop().await;
    let dave = api.create_user_named("dave").await;
    api.create_user_named("erin").await;
    api.patch(
        &format!("/Groups/{}", id_of(&staff)),
        &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": id_of(&dave)}]},
        ]}),
    )
    .await
    .expect(204);
    api.delete(&format!("/Users/{}", id_of(&carol)))
        .await
        .expect(204);
    up.start_again().await;
    caught_up(&s, &["scim"], RECOVERY).await;
    assert_upstream_mirrors(&s, &up.client()).await;
    assert_eq!(
        upstream_count(&up.client(), "/Users", "userName", "carol").await,
        0,
        "delete reached the upstream"
    );

    api.delete(&format!("/Groups/{}", id_of(&all)))
        .await
        .expect(204);
    caught_up(&s, &["scim"], CONVERGE).await;
    assert_eq!(
        upstream_count(&up.client(), "/Groups", "displayName", "all").await,
        0
    );

    // replay --fresh into an empty upstream at the same URL: everything is created again, once.
    up.stop().await;
    let empty = upstream_scimd(port).await;
    s.cli(&["replay", "--projection", "scim", "--fresh"])
        .await
        .success();
    caught_up(&s, &["scim"], CONVERGE).await;
    let remote = assert_upstream_mirrors(&s, &empty.client()).await;
    let users = empty.client().list("/Users").await;
    assert_eq!(
        users["totalResults"], 4,
        "alice, bob, dave, erin and nothing twice: {users:#}"
    );
    assert_eq!(remote.len(), 5);
}

#[tokio::test]
async fn scim2_server_receives_the_workload_and_a_conflict_is_adopted() {
    let Some(url) = service_var("SCIMD_TEST_SCIM2_URL", "scim2-server") else {
        return;
    };
    let token = std::env::var("SCIMD_TEST_SCIM2_TOKEN").expect("SCIMD_TEST_SCIM2_TOKEN");
    let up = upstream_client(&url, &token);
    let sfx = random_suffix();
    let name = |n: &str| format!("{n}-{sfx}");
    // Already upstream before scimd creates it: the 409 adopts it.
    up.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "userName": name("ann"), "displayName": "Theirs"}),
    )
    .await
    .expect(201);
    let s = forwarding(&url, &token, &[]).await;
    let api = s.client();
    let ann = api
        .create_user(json!({"schemas": [USER_SCHEMA], "userName": name("ann"), "displayName": "Ours", "externalId": name("x-ann")}))
        .await;
    let ben = api.create_user_named(&name("ben")).await;
    let cid = api.create_user_named(&name("cid")).await;
    let team = api
        .create_group_with(&name("team"), &[&id_of(&ann), &id_of(&ben)])
        .await;
    api.patch(
        &format!("/Groups/{}", id_of(&team)),
        &json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": id_of(&cid)}]},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", id_of(&ann))},
        ]}),
    )
    .await
    .expect(204);
    api.put(
        &format!("/Users/{}", id_of(&ben)),
        &json!({"schemas": [USER_SCHEMA], "userName": name("ben"), "displayName": "Ben", "active": true}),
    )
    .await
    .expect(200);
    caught_up(&s, &["scim"], CONVERGE).await;
    let theirs = upstream_one(&up, "/Users", "userName", &name("ann")).await;
    assert_eq!(
        theirs["displayName"], "Ours",
        "the adopted user took scimd's state"
    );
    assert_eq!(
        theirs["externalId"],
        json!(name("x-ann")),
        "externalId goes unchanged"
    );
    assert!(s.log().contains("adopted"), "adoption is logged");
    let group = upstream_one(&up, "/Groups", "displayName", &name("team")).await;
    let members: BTreeSet<String> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    let ben_up = id_of(&upstream_one(&up, "/Users", "userName", &name("ben")).await);
    let cid_up = id_of(&upstream_one(&up, "/Users", "userName", &name("cid")).await);
    assert_eq!(members, BTreeSet::from([ben_up.clone(), cid_up]));
    assert_eq!(
        upstream_one(&up, "/Users", "userName", &name("ben")).await["displayName"],
        "Ben"
    );

    // A delete reaches it, and the group loses the member (scimd's cascade, forwarded).
    api.delete(&format!("/Users/{}", id_of(&cid)))
        .await
        .expect(204);
    caught_up(&s, &["scim"], CONVERGE).await;
    assert_eq!(
        upstream_count(&up, "/Users", "userName", &name("cid")).await,
        0
    );
    let group = upstream_one(&up, "/Groups", "displayName", &name("team")).await;
    let members: Vec<&str> = group["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(members, vec![ben_up.as_str()]);
    api.delete(&format!("/Groups/{}", id_of(&team)))
        .await
        .expect(204);
    caught_up(&s, &["scim"], CONVERGE).await;
    assert_eq!(
        upstream_count(&up, "/Groups", "displayName", &name("team")).await,
        0
    );

    // With FORWARD_SCIM_ADOPT=false the same conflict is parked with the upstream's error.
    up.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "userName": name("dan")}),
    )
    .await
    .expect(201);
    let strict = forwarding(&url, &token, &[("FORWARD_SCIM_ADOPT", "false")]).await;
    strict.client().create_user_named(&name("dan")).await;
    let sub = parked(&strict, 1).await;
    let error = sub["parkedChanges"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("409") && error.contains("FORWARD_SCIM_ADOPT=false"),
        "parked error: {sub:#}"
    );
}

#[tokio::test]
async fn an_upstream_refusal_is_parked_with_its_scim_error_in_status() {
    let up = upstream_scimd(free_port()).await;
    let s = forwarding(&up.url(""), &up.key, &[("SCHEMA_MODE", "lenient")]).await;
    let api = s.client();
    // scimd (lenient) keeps an attribute no schema declares; the upstream (strict) refuses it.
    let odd = api
        .create_user(json!({"schemas": [USER_SCHEMA], "userName": "odd", "shoeSize": 44}))
        .await;
    api.create_user_named("plain").await;
    let sub = parked(&s, 1).await;
    let entry = &sub["parkedChanges"][0];
    assert_eq!(entry["id"], json!(id_of(&odd)));
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("upstream answered 400 to POST /Users") && error.contains("shoeSize"),
        "the parked change carries the upstream's SCIM error: {entry:#}"
    );
    caught_up(&s, &["scim"], CONVERGE).await;
    assert_eq!(
        upstream_count(&up.client(), "/Users", "userName", "plain").await,
        1,
        "the rest went on"
    );
    assert_eq!(
        upstream_count(&up.client(), "/Users", "userName", "odd").await,
        0
    );
}

#[tokio::test]
async fn an_upstream_url_without_a_key_stops_start_up() {
    for url_name in ["FORWARD_SCIM_URL", "SCIM_FORWARD_URL"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_scimd"))
                .arg("serve")
                .env_clear()
                .env("DATA_PATH", dir.path())
                .env("LISTEN", format!("127.0.0.1:{}", free_port()))
                .env("API_KEY", DEFAULT_KEY)
                .env("PROJECTIONS", "scim")
                .env(url_name, "http://127.0.0.1:9/scim/v2")
                .output(),
        )
        .await
        .expect("scimd exits by itself")
        .expect("run scimd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{url_name} without a key: scimd started"
        );
        assert!(
            stderr.contains("FORWARD_SCIM_KEY") && stderr.contains("no default"),
            "{url_name} without a key: {stderr}"
        );
        assert!(
            !stderr.contains(DEFAULT_KEY),
            "scimd's own key is never printed"
        );
    }
}
