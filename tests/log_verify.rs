//! `scimd log verify` against stores damaged on purpose (a bit flipped, an event removed or
//! rewritten, a resource row changed behind the log's back): it names each problem with its
//! position and goes on, and it never writes to the store.

mod common;

use std::path::Path;

use common::*;
use redb::{ConcurrencyMode, ReadableTable, TableDefinition};
use serde_json::{Value, json};
use sha2::Digest;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const RESOURCES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("resources");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

fn open(data: &Path) -> redb::Database {
    redb::Builder::new()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .create(data.join("scimd.redb"))
        .expect("open the store")
}

/// A stopped store with users, a group and a deleted user; the position of the event that created
/// `alice`, and her id.
async fn stopped_store() -> (Scimd, u64, String) {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let alice = id_of(
        &api.create_user(json!({"userName": "alice", "title": "Engineer"}))
            .await,
    );
    let bob = id_of(&api.create_user_named("bob").await);
    let carol = id_of(&api.create_user_named("carol").await);
    api.create_group_with("G", &[&alice, &bob, &carol]).await;
    api.delete(&format!("/Users/{carol}")).await.expect(204);
    api.create_user_named("dave").await;
    s.stop().await;
    (s, 1, alice)
}

/// `log verify`, expected to fail; its JSON report.
async fn verify_fails(s: &Scimd) -> Value {
    let out = s.cli(&["log", "verify"]).await;
    assert_eq!(out.status.code(), Some(1), "verify must fail: {out:?}");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {out:?}"))
}

/// The problems of a report, as (position, text).
fn problems(report: &Value) -> Vec<(Option<u64>, String)> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["position"].as_u64(),
                format!(
                    "{} {}",
                    p["at"].as_str().unwrap_or(""),
                    p["problem"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

fn rewrite_event(data: &Path, position: u64, edit: impl FnOnce(&mut Value)) {
    let db = open(data);
    let txn = db.begin_write().unwrap();
    {
        let mut events = txn.open_table(EVENTS).unwrap();
        let mut event: Value =
            serde_json::from_slice(events.get(position).unwrap().unwrap().value()).unwrap();
        edit(&mut event);
        events
            .insert(position, serde_json::to_vec(&event).unwrap().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_an_event_rewritten_so_that_it_still_decodes() {
    let (s, position, _) = stopped_store().await;
    s.cli(&["log", "verify"]).await.success();
    rewrite_event(&s.data_path(), position, |e| {
        e["attributes"]["title"] = json!("Director");
    });
    let report = verify_fails(&s).await;
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|(p, text)| *p == Some(position + 1) && text.contains("hash chain")),
        "the chain must break right after the rewritten event: {found:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_an_event_removed_from_the_log() {
    let (s, _, _) = stopped_store().await;
    let db = open(&s.data_path());
    let txn = db.begin_write().unwrap();
    txn.open_table(EVENTS).unwrap().remove(2).unwrap();
    txn.commit().unwrap();
    drop(db);
    let report = verify_fails(&s).await;
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|(p, text)| *p == Some(3) && text.contains("gap")),
        "a gap at position 3 (2 missing): {found:#?}"
    );
    assert!(
        found.iter().any(|(p, _)| *p == Some(2)),
        "the streams row pointing at the removed event: {found:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_resource_row_changed_behind_the_logs_back() {
    let (s, _, alice) = stopped_store().await;
    let db = open(&s.data_path());
    let txn = db.begin_write().unwrap();
    {
        let mut resources = txn.open_table(RESOURCES).unwrap();
        let mut row: Value = serde_json::from_slice(
            resources
                .get(("User", alice.as_str()))
                .unwrap()
                .unwrap()
                .value(),
        )
        .unwrap();
        row["attributes"]["title"] = json!("Admin");
        resources
            .insert(
                ("User", alice.as_str()),
                serde_json::to_vec(&row).unwrap().as_slice(),
            )
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let found = problems(&verify_fails(&s).await);
    assert!(
        found
            .iter()
            .any(|(_, text)| text.contains(&alice) && text.contains("title")),
        "the changed row and attribute are named: {found:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_a_flipped_bit_and_goes_on() {
    let (s, _, _) = stopped_store().await;
    let path = s.data_path().join("scimd.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    // "Engineer" is only in alice's create event: flip one bit of it wherever it is on disk.
    let needle = b"Engineer";
    let mut flipped = 0;
    for i in 0..bytes.len().saturating_sub(needle.len()) {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + 2] ^= 0x02;
            flipped += 1;
        }
    }
    assert!(flipped > 0, "the marker must be on disk");
    std::fs::write(&path, bytes).unwrap();
    let report = verify_fails(&s).await;
    let found = problems(&report);
    assert!(
        found.iter().any(|(p, _)| p.is_some()),
        "the flipped bit is reported at a position: {found:#?}"
    );
    assert!(
        report["events"].as_u64().unwrap() > 0,
        "the run went on: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_never_writes_even_to_a_store_a_crash_left_unrepaired() {
    let mut s = Scimd::start_default().await;
    s.client().create_user_named("crash").await;
    s.kill().await;
    let path = s.data_path().join("scimd.redb");
    let digest = || sha2::Sha256::digest(std::fs::read(&path).unwrap());
    let before = digest();
    let out = s.cli(&["log", "verify"]).await.success();
    assert!(
        out.stderr.contains("copy"),
        "verify says it read a repaired copy: {out:?}"
    );
    assert_eq!(digest(), before, "verify wrote to the store");
    s.cli(&["log", "tail"]).await.success();
    assert_eq!(digest(), before, "log tail wrote to the store");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_written_before_the_chain_starts_it_at_the_upgrade() {
    let (mut s, _, _) = stopped_store().await;
    // Make the store look as an older scimd left it: no event carries a chain hash.
    let db = open(&s.data_path());
    let txn = db.begin_write().unwrap();
    let last = {
        let mut events = txn.open_table(EVENTS).unwrap();
        let rows: Vec<(u64, Vec<u8>)> = events
            .range(0u64..)
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect();
        for (p, bytes) in &rows {
            let mut e: Value = serde_json::from_slice(bytes).unwrap();
            e.as_object_mut().unwrap().remove("prev");
            events
                .insert(*p, serde_json::to_vec(&e).unwrap().as_slice())
                .unwrap();
        }
        txn.open_table(COUNTERS)
            .unwrap()
            .remove("chain-head")
            .unwrap();
        rows.len() as u64
    };
    txn.commit().unwrap();
    drop(db);
    let out = s.cli(&["log", "verify"]).await.success();
    assert!(out.stderr.contains("no event carries it"), "{out:?}");

    s.start_again().await;
    s.client().create_user_named("after-upgrade").await;
    s.stop().await;
    let out = s.cli(&["log", "verify"]).await.success();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["chain_from"].as_u64(), Some(last + 1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("begins at position {}", last + 1)),
        "{out:?}"
    );
    // The chain now covers the new event: rewriting the last old one breaks it.
    rewrite_event(&s.data_path(), last, |e| e["txn_id"] = json!("forged"));
    let found = problems(&verify_fails(&s).await);
    assert!(
        found
            .iter()
            .any(|(p, text)| *p == Some(last + 1) && text.contains("hash chain")),
        "{found:#?}"
    );
}
