//! The `jumpcloud` projection against the JumpCloud emulator (`tests/jumpcloud_emulator/`, which
//! follows the API reference beside it), through a real scimd over HTTP: what reaches JumpCloud is
//! read back through the emulator's own API (v1 and v2 paging), as JumpCloud's clients read it.
//!
//! Needs no outside service: the emulator runs on loopback inside the test.

mod common;
mod jumpcloud_emulator;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{StreamExt, stream};
use serde_json::{Value, json};

use common::*;
use jumpcloud_emulator::{Emulator, Reader};

const JC_KEY: &str = "jc-test-key-5d1b";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// How long the projection may take to catch up when nothing is wrong.
const CONVERGE: Duration = Duration::from_secs(60);
/// How long after a failure (the runner's backoff is capped at 15 s, the client's at 30 s).
const RECOVERY: Duration = Duration::from_secs(120);

fn opts(jc: &Emulator, projections: &str) -> Opts {
    Opts::default()
        .env("PROJECTIONS", projections)
        .env("JUMPCLOUD_URL", &jc.url())
        .env("JUMPCLOUD_KEY", jc.key())
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

async fn status(s: &Scimd) -> Value {
    s.client().get("/status").await.expect(200).json()
}

/// Waits until the jumpcloud subscriber's checkpoint is the log position and it is running.
async fn caught_up(s: &Scimd, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let st = status(s).await;
        let sub = &st["subscribers"]["jumpcloud"];
        if sub["checkpoint"].as_u64() == st["position"].as_u64() && sub["state"] == "running" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "jumpcloud did not catch up within {within:?}: {st:#}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What JumpCloud should hold, from scimd's own GETs: username → (email, state), and group name
/// → member usernames. Users whose userName the rule cannot translate are left out (parked).
async fn expected(
    s: &Scimd,
) -> (
    BTreeMap<String, (String, String)>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let api = s.client();
    let mut users = BTreeMap::new();
    let mut names = BTreeMap::new();
    for u in api.list_all("/Users").await {
        let user_name = u["userName"].as_str().unwrap();
        let username = user_name.split('@').next().unwrap().to_owned();
        let email = u["emails"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["primary"] == true).or(e.first()))
            .and_then(|e| e["value"].as_str())
            .unwrap_or(user_name)
            .to_owned();
        let state = if u["active"] == false {
            "SUSPENDED"
        } else {
            "ACTIVATED"
        };
        names.insert(u["id"].as_str().unwrap().to_owned(), username.clone());
        users.insert(username, (email, state.to_owned()));
    }
    let mut groups = BTreeMap::new();
    for g in api.list_all("/Groups").await {
        let members = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["type"] == "User")
            .map(|m| names[m["value"].as_str().unwrap()].clone())
            .collect();
        groups.insert(g["displayName"].as_str().unwrap().to_owned(), members);
    }
    (users, groups)
}

/// What the emulator holds, read through its API, in the shape of [`expected`].
async fn held(
    jc: &Emulator,
) -> (
    BTreeMap<String, (String, String)>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let reader = Reader::new(&jc.url(), jc.key());
    let all = reader.all_users().await;
    let mut by_id = BTreeMap::new();
    let mut users = BTreeMap::new();
    for u in &all {
        assert_eq!(
            u["suspended"].as_bool(),
            Some(u["state"] == "SUSPENDED"),
            "state and suspended disagree: {u}"
        );
        let username = u["username"].as_str().unwrap().to_owned();
        by_id.insert(u["_id"].as_str().unwrap().to_owned(), username.clone());
        users.insert(
            username,
            (
                u["email"].as_str().unwrap().to_owned(),
                u["state"].as_str().unwrap().to_owned(),
            ),
        );
    }
    let mut groups = BTreeMap::new();
    for g in reader.all_groups().await {
        let members = reader
            .members(g["id"].as_str().unwrap())
            .await
            .into_iter()
            .map(|id| by_id[&id].clone())
            .collect();
        groups.insert(g["name"].as_str().unwrap().to_owned(), members);
    }
    (users, groups)
}

/// Waits until the projection caught up and the emulator holds what scimd's GETs show.
async fn converged(s: &Scimd, jc: &Emulator, within: Duration) {
    caught_up(s, within).await;
    let want = expected(s).await;
    let got = held(jc).await;
    assert_eq!(got.0, want.0, "JumpCloud users differ from scimd's");
    assert_eq!(got.1, want.1, "JumpCloud groups differ from scimd's");
}

fn user(name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": name,
           "emails": [{"value": format!("{}@mail.example", name.split('@').next().unwrap()), "primary": true}]})
}

async fn create_users(api: &Api, tag: &str, n: usize) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{tag}{i}");
            async move { id_of(&api.create_user(user(&name)).await) }
        })
        .buffered(8)
        .collect()
        .await
}

/// Users, a group of them, member adds and removes, a rename, a deactivation and deletes.
async fn workload(api: &Api, tag: &str, n: usize) {
    let ids = create_users(api, tag, n).await;
    let half: Vec<&str> = ids[..n / 2].iter().map(String::as_str).collect();
    let group = id_of(&api.create_group_with(&format!("{tag} team"), &half).await);
    for id in &ids[n / 2..] {
        api.patch(
            &format!("/Groups/{group}"),
            &patch(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .expect(204);
    }
    api.patch(
        &format!("/Groups/{group}"),
        &patch(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}])),
    )
    .await
    .expect(204);
    api.patch(
        &format!("/Users/{}", ids[1]),
        &patch(
            json!([{"op": "replace", "value": {"active": false, "displayName": "Gone fishing"}}]),
        ),
    )
    .await
    .expect(200);
    api.delete(&format!("/Users/{}", ids[2])).await.expect(204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_groups_and_member_changes_reach_jumpcloud_as_its_api_shows() {
    let jc = Emulator::start(JC_KEY).await;
    let s = Scimd::start(opts(&jc, "file,jumpcloud")).await;
    let api = s.client();
    let key_line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq alice@laptop";
    let alice = id_of(
        &api.create_user(json!({
            "schemas": [USER_SCHEMA, ENTERPRISE], "userName": "alice@corp.example",
            "externalId": "ext-alice", "displayName": "Alice Ames", "title": "Boss",
            "name": {"givenName": "Alice", "familyName": "Ames"},
            "emails": [{"value": "alice.ames@corp.example", "type": "work", "primary": true}],
            "x509Certificates": [{"value": base64::engine::general_purpose::STANDARD.encode(key_line)}],
            ENTERPRISE: {"employeeNumber": "42"},
        }))
        .await,
    );
    let bob = id_of(&api.create_user(user("bob")).await);
    let carol = id_of(&api.create_user(user("carol")).await);
    let team = id_of(&api.create_group_with("Team", &[&alice, &bob]).await);
    converged(&s, &jc, CONVERGE).await;

    let reader = Reader::new(&jc.url(), jc.key());
    let users = reader.all_users().await;
    let a = users
        .iter()
        .find(|u| u["username"] == "alice")
        .expect("alice in JumpCloud");
    assert_eq!(a["email"], "alice.ames@corp.example");
    assert_eq!(
        (a["firstname"].clone(), a["lastname"].clone()),
        (json!("Alice"), json!("Ames"))
    );
    assert_eq!(a["displayname"], "Alice Ames");
    let attrs: BTreeMap<&str, &str> = a["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["name"].as_str().unwrap(), x["value"].as_str().unwrap()))
        .collect();
    assert_eq!(attrs.get("externalId"), Some(&"ext-alice"));
    assert_eq!(attrs.get("title"), Some(&"Boss"));
    assert_eq!(attrs.get("employeeNumber"), Some(&"42"));
    assert_eq!(a["ssh_keys"][0]["public_key"], key_line);
    assert_eq!(a["ssh_keys"][0]["name"], "scimd:alice@laptop");
    assert!(
        s.data_path().join("Users").join(&alice).exists(),
        "the file projection runs beside it"
    );

    // One member added, one removed: one member operation each, never the list.
    let ops_before = jc.requests("POST /api/v2/usergroups/");
    api.patch(
        &format!("/Groups/{team}"),
        &patch(
            json!([{"op": "add", "path": "members", "value": [{"value": carol}]},
                      {"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]),
        ),
    )
    .await
    .expect(204);
    converged(&s, &jc, CONVERGE).await;
    assert_eq!(jc.requests("POST /api/v2/usergroups/") - ops_before, 2);
    assert_eq!(
        jc.requests("PUT /api/v2/usergroups/"),
        0,
        "no rename, no group PUT"
    );

    // Rename the group, deactivate and change alice, drop her key; delete carol (she leaves Team).
    api.patch(
        &format!("/Groups/{team}"),
        &patch(json!([{"op": "replace", "path": "displayName", "value": "Crew"}])),
    )
    .await
    .expect(204);
    api.put(
        &format!("/Users/{alice}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "alice@corp.example", "active": false,
                "emails": [{"value": "alice@new.example", "primary": true}]}),
    )
    .await
    .expect(200);
    api.delete(&format!("/Users/{carol}")).await.expect(204);
    converged(&s, &jc, CONVERGE).await;
    let users = reader.all_users().await;
    let a = users.iter().find(|u| u["username"] == "alice").unwrap();
    assert_eq!(
        (a["state"].clone(), a["suspended"].clone()),
        (json!("SUSPENDED"), json!(true))
    );
    assert_eq!(
        a["displayname"], "",
        "a removed displayName is cleared (JumpCloud's PUT is partial)"
    );
    assert_eq!(
        a["ssh_keys"],
        json!([]),
        "the key left with x509Certificates"
    );
    assert!(
        a["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["name"] != "title")
    );

    // A larger workload, then delete the group.
    workload(&api, "w", 12).await;
    converged(&s, &jc, CONVERGE).await;
    api.delete(&format!("/Groups/{team}")).await.expect(204);
    converged(&s, &jc, CONVERGE).await;
    assert!(!held(&jc).await.1.contains_key("Crew"));
    let st = status(&s).await;
    assert_eq!(st["subscribers"]["jumpcloud"]["parked"], 0, "{st:#}");
    assert!(
        !s.log().contains(JC_KEY),
        "the JumpCloud key must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_jumpcloud_refuses_is_translated_or_parked_with_the_reason() {
    let jc = Emulator::start(JC_KEY).await;
    let s = Scimd::start(opts(&jc, "jumpcloud")).await;
    let api = s.client();
    let upn = id_of(
        &api.create_user(json!({"schemas": [USER_SCHEMA], "userName": "dave@corp.example"}))
            .await,
    );
    let spaced = id_of(
        &api.create_user(json!({"schemas": [USER_SCHEMA], "userName": "erin smith",
                                "emails": [{"value": "erin@mail.example"}]}))
            .await,
    );
    let no_mail = id_of(
        &api.create_user(json!({"schemas": [USER_SCHEMA], "userName": "frank"}))
            .await,
    );
    let group = id_of(&api.create_group_with("Mixed", &[&upn, &spaced]).await);
    caught_up(&s, CONVERGE).await;

    let reader = Reader::new(&jc.url(), jc.key());
    let users = reader.all_users().await;
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dave"],
        "the UPN's local part; the others are parked"
    );
    assert_eq!(
        users[0]["email"], "dave@corp.example",
        "the userName is the email when there is none"
    );

    let st = status(&s).await;
    let parked = st["subscribers"]["jumpcloud"]["parkedChanges"]
        .as_array()
        .unwrap()
        .clone();
    let reason = |id: &str| -> String {
        parked
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not parked: {st:#}"))["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        reason(&spaced).contains("cannot be a JumpCloud username"),
        "{}",
        reason(&spaced)
    );
    assert!(
        reason(&no_mail).contains("requires an email"),
        "{}",
        reason(&no_mail)
    );
    assert!(
        reason(&group).contains("not in JumpCloud"),
        "{}",
        reason(&group)
    );
    let groups = reader.all_groups().await;
    assert_eq!(groups.len(), 1, "the group itself went through");
    assert_eq!(
        reader
            .members(groups[0]["id"].as_str().unwrap())
            .await
            .len(),
        1,
        "with dave"
    );

    // A member added to the parked group afterwards goes through as a delta; the retry below
    // must still send the group whole (the same version) to add what the park left out.
    let gina = id_of(&api.create_user(user("gina")).await);
    api.patch(
        &format!("/Groups/{group}"),
        &patch(json!([{"op": "add", "path": "members", "value": [{"value": gina}]}])),
    )
    .await
    .expect(204);
    caught_up(&s, CONVERGE).await;
    assert_eq!(
        reader
            .members(groups[0]["id"].as_str().unwrap())
            .await
            .len(),
        2,
        "dave and gina"
    );

    // Fixed in scimd, then retried: everything arrives, nothing stays parked.
    api.patch(
        &format!("/Users/{spaced}"),
        &patch(json!([{"op": "replace", "path": "userName", "value": "erin.smith"}])),
    )
    .await
    .expect(200);
    api.patch(
        &format!("/Users/{no_mail}"),
        &patch(
            json!([{"op": "add", "path": "emails", "value": [{"value": "frank@corp.example"}]}]),
        ),
    )
    .await
    .expect(200);
    caught_up(&s, CONVERGE).await;
    s.cli(&["projection", "retry", "jumpcloud"]).await.success();
    let deadline = Instant::now() + CONVERGE;
    while status(&s).await["subscribers"]["jumpcloud"]["parked"] != 0 {
        assert!(
            Instant::now() < deadline,
            "still parked: {:#}",
            status(&s).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    converged(&s, &jc, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_with_and_without_retry_after_and_a_5xx_burst_converge() {
    let jc = Emulator::start(JC_KEY).await;
    let s = Scimd::start(opts(&jc, "jumpcloud")).await;
    let api = s.client();
    jc.throttle(Some(4), Some(1));
    workload(&api, "ra", 10).await;
    converged(&s, &jc, RECOVERY).await;
    let throttled = jc.state().throttled;
    assert!(throttled > 0, "the emulator never throttled");

    jc.throttle(Some(3), None);
    workload(&api, "nora", 10).await;
    converged(&s, &jc, RECOVERY).await;
    assert!(
        jc.state().throttled > throttled,
        "no 429 without Retry-After was sent"
    );

    jc.throttle(None, None);
    jc.fail_next(9, 503);
    workload(&api, "burst", 10).await;
    converged(&s, &jc, RECOVERY).await;
    assert_eq!(jc.state().failed, 9);
    let st = status(&s).await;
    assert_eq!(
        st["subscribers"]["jumpcloud"]["parked"], 0,
        "nothing may be parked: {st:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jumpcloud_down_mid_load_then_back_converges() {
    let mut jc = Emulator::start(JC_KEY).await;
    let s = Scimd::start(opts(&jc, "jumpcloud")).await;
    let api = s.client();
    workload(&api, "pre", 8).await;
    converged(&s, &jc, CONVERGE).await;

    // Down in the middle of a load; the API goes on meanwhile.
    let load = {
        let api = api.clone();
        tokio::spawn(async move { create_users(&api, "mid", 40).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    jc.stop().await;
    workload(&api, "down", 8).await;
    assert_eq!(load.await.expect("load").len(), 40);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let st = status(&s).await;
        let sub = &st["subscribers"]["jumpcloud"];
        if sub["state"] == "retrying" && sub["lastError"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/status never showed the outage: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    jc.resume().await;
    converged(&s, &jc, RECOVERY).await;
    let st = status(&s).await;
    assert_eq!(st["subscribers"]["jumpcloud"]["parked"], 0, "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_fresh_rebuilds_what_scimd_wrote_and_leaves_the_rest() {
    let jc = Emulator::start(JC_KEY).await;
    let mut s = Scimd::start(opts(&jc, "jumpcloud")).await;
    workload(&s.client(), "rp", 10).await;
    converged(&s, &jc, CONVERGE).await;
    // Someone adds a user in JumpCloud's console: not scimd's, so --fresh leaves it.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/systemusers", jc.url()))
        .header("x-api-key", JC_KEY)
        .json(&json!({"username": "console", "email": "console@corp.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "create answers 200");
    let before: BTreeSet<String> = Reader::new(&jc.url(), JC_KEY)
        .all_users()
        .await
        .iter()
        .map(|u| u["_id"].as_str().unwrap().to_owned())
        .collect();
    s.stop().await;

    s.cli(&["replay", "--projection", "jumpcloud", "--fresh"])
        .await
        .success();
    let after = Reader::new(&jc.url(), JC_KEY).all_users().await;
    let console = after
        .iter()
        .find(|u| u["username"] == "console")
        .expect("the console user stays");
    assert!(before.contains(console["_id"].as_str().unwrap()));
    for u in after.iter().filter(|u| u["username"] != "console") {
        assert!(
            !before.contains(u["_id"].as_str().unwrap()),
            "{} was not recreated",
            u["username"]
        );
    }
    s.start_again().await;
    let mut want = expected(&s).await;
    want.0.insert(
        "console".into(),
        ("console@corp.example".into(), "ACTIVATED".into()),
    );
    caught_up(&s, CONVERGE).await;
    assert_eq!(held(&jc).await, want);
}

#[tokio::test]
async fn a_jumpcloud_url_without_a_key_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_PATH", dir.path())
        .env("API_KEY", "k")
        .env("LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("PROJECTIONS", "jumpcloud")
        .env("JUMPCLOUD_URL", "https://console.jumpcloud.com")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("JUMPCLOUD_KEY"), "{text}");
}
