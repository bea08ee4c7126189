//! `scimd log tail` and `scimd log verify`, on a stopped store and beside a running server; the
//! actor recorded on every event.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// (resource_type, resource_id, version, kind) of an event, for comparisons.
fn fact(e: &Value) -> (String, String, u64, String) {
    (
        e["resource_type"]
            .as_str()
            .unwrap_or_else(|| panic!("event without resource_type: {e}"))
            .to_string(),
        e["resource_id"]
            .as_str()
            .unwrap_or_else(|| panic!("event without resource_id: {e}"))
            .to_string(),
        version_number(&e["version"]),
        e["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("event without kind: {e}"))
            .to_ascii_lowercase(),
    )
}

/// Every event has the required fields; positions are contiguous from `from`; event ids are unique UUIDs.
fn check_envelopes(events: &[Value], from: u64) {
    let mut ids = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["position"].as_u64(),
            Some(from + i as u64),
            "positions must be contiguous from {from}: {events:#?}"
        );
        let eid = e["event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no event_id: {e}"));
        assert!(
            uuid::Uuid::parse_str(eid).is_ok(),
            "event_id is not a UUID: {e}"
        );
        assert!(ids.insert(eid.to_string()), "duplicate event_id: {e}");
        fact(e);
    }
}

/// Creates a user, replaces it, puts it in a group and deletes it: five events.
async fn five_events(s: &Scimd) -> (String, String) {
    let api = s.client();
    let u = id_of(&api.create_user_named("logged").await);
    api.put(
        &format!("/Users/{u}"),
        &json!({"userName": "logged", "title": "x"}),
    )
    .await
    .expect(200);
    let g = id_of(&api.create_group_with("G", &[&u]).await);
    api.delete(&format!("/Users/{u}")).await.expect(204);
    (u, g)
}

fn assert_five_events(events: &[Value], u: &str, g: &str) {
    assert_eq!(events.len(), 5, "expected 5 events: {events:#?}");
    check_envelopes(events, 1);
    let facts: Vec<_> = events.iter().map(fact).collect();
    let user = |v, k: &str| ("User".to_string(), u.to_string(), v, k.to_string());
    let group = |v, k: &str| ("Group".to_string(), g.to_string(), v, k.to_string());
    assert_eq!(facts[0], user(1, "create"));
    assert_eq!(facts[1], user(2, "replace"));
    assert_eq!(facts[2], group(1, "create"));
    let last: HashSet<_> = facts[3..].iter().cloned().collect();
    let expected: HashSet<_> = [user(3, "delete"), group(2, "patch")].into_iter().collect();
    assert_eq!(
        last, expected,
        "deleting the user is a delete plus a patch of its group (the cascade): {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_tail_prints_one_json_line_per_event_on_a_stopped_store() {
    let mut s = Scimd::start_default().await;
    let (u, g) = five_events(&s).await;
    s.stop().await;
    let out = s.cli(&["log", "tail", "--from", "1"]).await.success();
    assert_five_events(&out.json_lines(), &u, &g);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_tail_works_while_the_server_runs() {
    let s = Scimd::start_default().await;
    let (u, g) = five_events(&s).await;
    let out = s.cli(&["log", "tail", "--from", "1"]).await.success();
    assert_five_events(&out.json_lines(), &u, &g);
    // The server still owns the store and keeps writing.
    let api = s.client();
    let w = id_of(&api.create_user_named("after-tail").await);
    let out = s.cli(&["log", "tail", "--from", "6"]).await.success();
    let events = out.json_lines();
    assert_eq!(events.len(), 1, "{out:?}");
    check_envelopes(&events, 6);
    assert_eq!(fact(&events[0]), ("User".into(), w, 1, "create".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn log_tail_from_n_starts_at_position_n() {
    let mut s = Scimd::start_default().await;
    five_events(&s).await;
    s.stop().await;
    let out = s.cli(&["log", "tail", "--from", "3"]).await.success();
    let events = out.json_lines();
    assert_eq!(events.len(), 3, "{out:?}");
    check_envelopes(&events, 3);
    let out = s.cli(&["log", "tail", "--from", "6"]).await.success();
    assert!(
        out.json_lines().is_empty(),
        "nothing after the last event: {out:?}"
    );
}

async fn next_event<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("no event line within 20 s")
        .expect("read stdout")
        .expect("log tail --follow ended");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn log_tail_follow_prints_new_events_as_they_are_written() {
    let s = Scimd::start_default().await;
    let first = id_of(&s.client().create_user_named("before-follow").await);
    let mut child = s.cli_spawn(&["log", "tail", "--from", "1", "--follow"]);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();

    let e = next_event(&mut lines).await;
    assert_eq!(e["resource_id"], json!(first));
    assert_eq!(e["position"], 1);

    let second = id_of(&s.client().create_user_named("during-follow").await);
    let e = next_event(&mut lines).await;
    assert_eq!(e["resource_id"], json!(second), "{e}");
    assert_eq!(e["position"], 2);

    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_verify_succeeds_on_a_healthy_stopped_store_and_prints_a_summary() {
    let mut s = Scimd::start_default().await;
    five_events(&s).await;
    s.stop().await;
    let out = s.cli(&["log", "verify"]).await.success();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !text.trim().is_empty(),
        "verify must print a summary: {out:?}"
    );
    assert!(
        text.contains('5'),
        "the summary should mention the 5 events: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_verify_succeeds_while_the_server_runs_and_writes() {
    let s = Scimd::start_default().await;
    five_events(&s).await;
    let api = s.client();
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            let u = api.create_user_named(&format!("busy{i}")).await;
            if i % 3 == 0 {
                api.delete(&format!("/Users/{}", id_of(&u)))
                    .await
                    .expect(204);
            }
        }
    });
    for _ in 0..3 {
        s.cli(&["log", "verify"]).await.success();
    }
    writer.await.unwrap();
    s.cli(&["log", "verify"]).await.success();
    s.client().create_user_named("after-verify").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_verify_succeeds_after_a_kill_9() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let reqs: Vec<_> = (0..50)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { api.create_user_named(&format!("crash{i}")).await })
        })
        .collect();
    for r in reqs {
        r.await.unwrap();
    }
    s.kill().await;
    s.cli(&["log", "verify"]).await.success();
    let out = s.cli(&["log", "tail", "--from", "1"]).await.success();
    let events = out.json_lines();
    assert_eq!(events.len(), 50);
    check_envelopes(&events, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_record_the_name_of_the_key_that_made_them() {
    let mut s = Scimd::start(Opts::default().api_key("entra=secret1,okta=secret2")).await;
    let entra = s.client_with_key("secret1");
    let okta = s.client_with(Auth::XApiKey("secret2".into()));
    let u = id_of(&entra.create_user_named("from-entra").await);
    let g = id_of(&okta.create_group(json!({"displayName": "from-okta"})).await);
    okta.put(
        &format!("/Users/{u}"),
        &json!({"userName": "from-entra", "title": "okta"}),
    )
    .await
    .expect(200);
    s.stop().await;
    let out = s.cli(&["log", "tail", "--from", "1"]).await.success();
    let events = out.json_lines();
    assert_eq!(events.len(), 3, "{out:?}");
    let actor = |id: &str, version: u64| {
        events
            .iter()
            .find(|e| e["resource_id"] == json!(id) && version_number(&e["version"]) == version)
            .unwrap_or_else(|| panic!("no event for {id} v{version}: {events:#?}"))["actor"]
            .clone()
    };
    assert_eq!(actor(&u, 1), json!("entra"));
    assert_eq!(actor(&g, 1), json!("okta"));
    assert_eq!(actor(&u, 2), json!("okta"));
    for secret in ["secret1", "secret2"] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} appears in log tail output"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unnamed_keys_are_recorded_as_a_short_hash_never_the_key() {
    let k1 = "Unnamed-Key-AAAA1111bbbb";
    let k2 = "Unnamed-Key-CCCC2222dddd";
    let mut s = Scimd::start(Opts::default().api_key(&format!("{k1},{k2}"))).await;
    let a = id_of(&s.client_with_key(k1).create_user_named("a").await);
    let b = id_of(&s.client_with_key(k2).create_user_named("b").await);
    s.restart().await;
    let c = id_of(&s.client_with_key(k1).create_user_named("c").await);
    s.stop().await;

    let out = s.cli(&["log", "tail", "--from", "1"]).await.success();
    for k in [k1, k2] {
        assert!(
            !out.stdout.contains(k),
            "the key {k} appears in log tail output"
        );
        assert!(
            !out.stderr.contains(k),
            "the key {k} appears in log tail stderr"
        );
    }
    let events = out.json_lines();
    let actor_of = |id: &str| -> String {
        let e = events
            .iter()
            .find(|e| e["resource_id"] == json!(id))
            .unwrap_or_else(|| panic!("no event for {id}: {events:#?}"));
        e["actor"]
            .as_str()
            .unwrap_or_else(|| panic!("event without a string actor: {e}"))
            .to_string()
    };
    let (aa, ab, ac) = (actor_of(&a), actor_of(&b), actor_of(&c));
    for actor in [&aa, &ab] {
        assert!(
            (4..=32).contains(&actor.len()),
            "the actor of an unnamed key should be a short hash, got {actor:?}"
        );
        assert!(
            !k1.contains(actor.as_str()) && !k2.contains(actor.as_str()),
            "{actor:?} is part of a key"
        );
    }
    assert_ne!(aa, ab, "two keys must be told apart");
    assert_eq!(
        aa, ac,
        "the same key must be recorded the same way across restarts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_never_holds_a_password_in_clear() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let u = api
        .create_user(json!({"userName": "pw", "password": "Plaintext-Password-123"}))
        .await;
    api.put(
        &format!("/Users/{}", id_of(&u)),
        &json!({"userName": "pw", "password": "Plaintext-Password-456"}),
    )
    .await
    .expect(200);
    s.stop().await;
    let out = s.cli(&["log", "tail", "--from", "1"]).await.success();
    assert_eq!(out.json_lines().len(), 2);
    for p in ["Plaintext-Password-123", "Plaintext-Password-456"] {
        assert!(!out.stdout.contains(p), "{p} appears in the event log");
        // Nor anywhere in the store's files.
        for entry in walk(&s.data_path()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "{p} is stored in clear in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
