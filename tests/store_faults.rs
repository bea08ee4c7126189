//! The store under faults: a disk that fills up (a small tmpfs), failing `pwrite`/`fdatasync` and
//! a writer made to panic or stall (libfiu's `fiu-run`, with scimd's fault points
//! `scimd/store/batch/panic` and `scimd/store/batch/stall`). What must hold: reads and `/ready`
//! come back on their own, a dead or wedged writer shows in `/ready` and `/health` and is logged,
//! SIGTERM never hangs, no answer depends on a write that was not committed, every acknowledged
//! write survives and `scimd log verify` is clean afterwards.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::faults::{Fiu, Tmpfs, wait_status};
use common::*;
use futures::future::join_all;
use serde_json::json;

const PANIC: &str = "scimd/store/batch/panic";
const STALL: &str = "scimd/store/batch/stall";
const PWRITE: &str = "posix/io/rw/pwrite";
const FDATASYNC: &str = "posix/io/sync/fdatasync";

fn user(name: &str) -> serde_json::Value {
    json!({"schemas": [USER_SCHEMA], "userName": name})
}

/// How many Users have this userName.
async fn count_named(api: &Api, name: &str) -> u64 {
    let page = api
        .list(&format!(
            "/Users?filter=userName%20eq%20%22{name}%22&count=0"
        ))
        .await;
    page["totalResults"].as_u64().expect("totalResults")
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_and_ready_recover_after_a_failed_commit_without_a_write() {
    let Some(fs) = Tmpfs::mount(24) else { return };
    let data = fs.path().join("data");
    let mut s = Scimd::start(Opts::default().env("DATA_PATH", &data.to_string_lossy())).await;
    let api = s.client();
    let kept = id_of(&api.create_user_named("kept").await);

    let filler = fs.fill("filler");
    // A write that cannot reach the disk: 503, the outcome unknown.
    let big = "x".repeat(400 * 1024);
    let r = api
        .post("/Users", &json!({"userName": "too-big", "title": big}))
        .await;
    assert_eq!(r.status, 503, "a write on a full disk: {r:?}");

    // No write follows, and the disk is still full: reads and /ready must come back on their own.
    assert_eq!(
        wait_status(&s, "/ready", 200, Duration::from_secs(10)).await,
        200,
        "/ready must recover after a failed commit without waiting for a write\n{}",
        s.log_tail()
    );
    api.get(&format!("/Users/{kept}")).await.expect(200);
    api.get("/Users?count=5").await.expect(200);

    std::fs::remove_file(filler).unwrap();
    api.create_user_named("after").await;
    assert_eq!(count_named(&api, "kept").await, 1);
    assert_eq!(count_named(&api, "too-big").await, 0);
    s.stop().await;
    s.cli(&["log", "verify"]).await.success();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_that_panics_is_logged_fails_ready_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default(), dir.path()) else {
        return;
    };
    let mut s = Scimd::start(opts).await;
    let api = s.client();
    api.create_user_named("before").await;

    fiu.enable(&s, PANIC);
    let r = api.post("/Users", &user("lost")).await;
    assert_eq!(r.status, 503, "the write whose batch panicked: {r:?}");
    fiu.disable(&s, PANIC);
    assert_eq!(
        wait_status(&s, "/ready", 200, Duration::from_secs(10)).await,
        200,
        "the writer must be restarted\n{}",
        s.log_tail()
    );
    api.create_user_named("after").await;
    assert_eq!(
        count_named(&api, "lost").await,
        0,
        "a panicked batch is not committed"
    );
    let log = s.log();
    assert!(
        log.contains("ERROR") && log.contains("the store writer panicked"),
        "a panic of the writer is logged at ERROR\n{}",
        s.log_tail()
    );

    // One that keeps panicking is given up on: writes 503, /ready and /health fail.
    fiu.enable(&s, PANIC);
    for i in 0..7 {
        let r = api.post("/Users", &user(&format!("again-{i}"))).await;
        assert_eq!(r.status, 503, "{r:?}");
    }
    assert_eq!(
        wait_status(&s, "/health", 503, Duration::from_secs(5)).await,
        503
    );
    assert_eq!(
        wait_status(&s, "/ready", 503, Duration::from_secs(5)).await,
        503
    );
    fiu.disable(&s, PANIC);
    api.post("/Users", &user("refused")).await.expect(503);
    api.get("/Users?count=1").await.expect(200);
    s.stop().await;
    s.cli(&["log", "verify"]).await.success();
    s.start_again().await;
    let api = s.client();
    assert_eq!(count_named(&api, "before").await, 1);
    assert_eq!(count_named(&api, "after").await, 1);
    assert_eq!(count_named(&api, "refused").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_writer_fails_ready_and_health_until_it_moves() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts::default().env("WRITER_STALL_TIMEOUT", "1");
    let Some((opts, fiu)) = Fiu::opts(opts, dir.path()) else {
        return;
    };
    let s = Scimd::start(opts).await;
    let api = s.client();
    fiu.enable(&s, STALL);
    let pending = tokio::spawn({
        let api = api.clone();
        async move { api.post("/Users", &user("held")).await.status }
    });
    assert_eq!(
        wait_status(&s, "/ready", 503, Duration::from_secs(10)).await,
        503
    );
    assert_eq!(
        wait_status(&s, "/health", 503, Duration::from_secs(10)).await,
        503
    );
    let logged = async {
        while !s
            .log()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("WRITER_STALL_TIMEOUT"))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), logged)
            .await
            .is_ok(),
        "a stalled writer is logged at ERROR\n{}",
        s.log_tail()
    );
    fiu.disable(&s, STALL);
    assert_eq!(pending.await.unwrap(), 201);
    assert_eq!(
        wait_status(&s, "/ready", 200, Duration::from_secs(10)).await,
        200
    );
    assert_eq!(
        wait_status(&s, "/health", 200, Duration::from_secs(10)).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_does_not_hang_while_the_store_cannot_be_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default(), dir.path()) else {
        return;
    };
    let mut s = Scimd::start(opts).await;
    let api = s.client();
    fiu.enable(&s, PWRITE);
    api.post("/Users", &user("unwritten")).await.expect(503);
    // The store cannot be reopened while pwrite fails: writes are answered 503, not held.
    api.post("/Users", &user("meanwhile")).await.expect(503);
    assert_eq!(
        wait_status(&s, "/ready", 503, Duration::from_secs(5)).await,
        503
    );
    // The harness fails the test if scimd does not exit within its stop timeout.
    let status = s.stop_status().await;
    assert!(
        status.code().is_some(),
        "scimd must exit on SIGTERM: {status}"
    );
    s.start_again().await;
    assert_eq!(count_named(&s.client(), "meanwhile").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_fails_to_commit_answers_no_4xx_decided_on_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default(), dir.path()) else {
        return;
    };
    let s = Scimd::start(opts).await;
    let api = s.client();
    // Hold the writer, so that 20 creates of one userName queue up and land in one batch: the
    // first is applied, the others conflict with it (409), and then the commit fails.
    fiu.enable(&s, STALL);
    let creates: Vec<_> = (0..20)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post("/Users", &user("twin")).await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fiu.enable(&s, PWRITE);
    fiu.disable(&s, STALL);
    let statuses: Vec<u16> = join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    fiu.disable(&s, PWRITE);
    assert_eq!(
        wait_status(&s, "/ready", 200, Duration::from_secs(10)).await,
        200
    );
    let exists = count_named(&api, "twin").await;
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert!(
        exists == 1 || conflicts == 0,
        "{conflicts} creates were answered 409 against a twin that was never committed: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 503),
        "every command of a batch whose commit failed is answered 503: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_failing_fsync_and_pwrite() {
    let dir = tempfile::tempdir().unwrap();
    let Some((opts, fiu)) = Fiu::opts(Opts::default(), dir.path()) else {
        return;
    };
    let mut s = Scimd::start(opts).await;
    let api = s.client();
    let group = id_of(&api.create_group(json!({"displayName": "G"})).await);
    fiu.enable_random(&s, FDATASYNC, 0.3);
    fiu.enable_random(&s, PWRITE, 0.02);
    // 8 clients, 15 users each: create, then a PATCH adding it to the group.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let api = api.clone();
            let group = group.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..15 {
                    let name = format!("u{c}-{i}");
                    let r = api.post("/Users", &user(&name)).await;
                    let id = (r.status == 201).then(|| id_of(&r.json()));
                    answers.push((name, r.status, id.clone()));
                    if let Some(id) = id {
                        let patch = json!({
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]
                        });
                        let r = api.patch(&format!("/Groups/{group}"), &patch).await;
                        answers.push((format!("member {id}"), r.status, None));
                    }
                }
                answers
            })
        })
        .collect();
    let answers: Vec<(String, u16, Option<String>)> = join_all(clients)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    fiu.disable(&s, FDATASYNC);
    fiu.disable(&s, PWRITE);
    let by_status = answers.iter().fold(HashMap::new(), |mut m, (_, st, _)| {
        *m.entry(*st).or_insert(0) += 1;
        m
    });
    assert!(
        by_status.get(&503).copied().unwrap_or(0) > 0,
        "the faults must have failed some writes: {by_status:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(_, st, _)| [200, 201, 204, 503].contains(st)),
        "only 2xx and 503 are expected: {answers:?}"
    );
    assert_eq!(
        wait_status(&s, "/ready", 200, Duration::from_secs(10)).await,
        200
    );

    // A crash right after: every acknowledged write is there, once.
    s.kill().await;
    s.cli(&["log", "verify"]).await.success();
    s.start_again().await;
    let api = s.client();
    let members: Vec<String> = api.group(&group).await["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    for (what, status, id) in &answers {
        if let Some(id) = id {
            assert_eq!(
                api.user(id).await["userName"].as_str(),
                Some(what.as_str()),
                "an acknowledged create is lost"
            );
        }
        if let Some(member) = what.strip_prefix("member ")
            && *status == 204
        {
            assert!(
                members.iter().any(|m| m == member),
                "an acknowledged member add is lost"
            );
        }
        if *status == 503 && id.is_none() && !what.starts_with("member ") {
            // Outcome unknown: there at most once, and whole.
            assert!(count_named(&api, what).await <= 1);
        }
    }
    s.stop().await;
    s.cli(&["log", "verify"]).await.success();
}
