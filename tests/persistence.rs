//! The store on disk: restarts, crashes, graceful shutdown and the exclusive lock on DATA_PATH.

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn resources_survive_a_restart_with_the_same_versions() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let a = api
        .create_user(json!({"userName": "alice", "externalId": "ext-a", "displayName": "Alice"}))
        .await;
    let b = api.create_user_named("bob").await;
    let b = api
        .put(
            &format!("/Users/{}", id_of(&b)),
            &json!({"userName": "bob", "title": "v2"}),
        )
        .await
        .expect(200)
        .json();
    let gone = api.create_user_named("gone").await;
    let g = api
        .create_group_with("G", &[&id_of(&a), &id_of(&b), &id_of(&gone)])
        .await;
    api.delete(&format!("/Users/{}", id_of(&gone)))
        .await
        .expect(204);
    let g = api.group(&id_of(&g)).await;
    // Re-read the users: their computed `groups` changed when G was created.
    let a = api.user(&id_of(&a)).await;
    let b = api.user(&id_of(&b)).await;
    let users_before = api.list_all("/Users").await;
    let groups_before = api.list_all("/Groups").await;

    s.restart().await;
    let api = s.client();
    // Locations carry the new port; compare everything else.
    let relocate = |v: serde_json::Value| without_ports(&normalized(&v).to_string());
    for before in [&a, &b, &g] {
        let path = before["meta"]["location"].as_str().unwrap();
        let rel = &path[path.find("/Users/").or(path.find("/Groups/")).unwrap()..];
        let after = api.get(rel).await.expect(200);
        assert_eq!(after.header("etag"), Some(version_of(before)));
        assert_eq!(
            relocate(after.json()),
            relocate(before.clone()),
            "{rel} changed across a restart"
        );
    }
    api.get(&format!("/Users/{}", id_of(&gone)))
        .await
        .expect_scim_error(404, None);
    let users_after = api.list_all("/Users").await;
    let groups_after = api.list_all("/Groups").await;
    assert_eq!(users_after.len(), users_before.len());
    assert_eq!(groups_after.len(), groups_before.len());
    assert_eq!(
        member_ids(&groups_after[0]),
        sorted(&[id_of(&a), id_of(&b)])
    );
}

/// `text` with every `127.0.0.1:PORT` replaced by `HOST`.
fn without_ports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..at]);
        out.push_str("HOST");
        rest = rest[at + "127.0.0.1:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_after_a_restart_continue_with_the_next_version() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let u = api.create_user_named("v").await;
    let id = id_of(&u);
    let u2 = api
        .put(
            &format!("/Users/{id}"),
            &json!({"userName": "v", "title": "2"}),
        )
        .await
        .expect(200)
        .json();
    let g = api.create_group(json!({"displayName": "G"})).await;
    let gid = id_of(&g);
    assert_eq!(version_number(&u["meta"]["version"]), 1);
    assert_eq!(version_number(&u2["meta"]["version"]), 2);

    s.restart().await;
    let api = s.client();
    assert_eq!(version_of(&api.user(&id).await), version_of(&u2));
    let u3 = api
        .put(
            &format!("/Users/{id}"),
            &json!({"userName": "v", "title": "3"}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(version_number(&u3["meta"]["version"]), 3, "{u3}");
    let g2 = api
        .put(&format!("/Groups/{gid}"), &json!({"displayName": "G2"}))
        .await
        .expect(200)
        .json();
    assert_eq!(version_number(&g2["meta"]["version"]), 2, "{g2}");

    // If-Match with the version from before the restart is now stale.
    common::send(
        api.request(reqwest::Method::DELETE, &format!("/Users/{id}"))
            .header("If-Match", version_of(&u2)),
    )
    .await
    .expect_scim_error(412, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn uniqueness_survives_a_restart() {
    let mut s = Scimd::start(Opts::default().env("EXTERNAL_ID_UNIQUE", "true")).await;
    let api = s.client();
    api.create_user(json!({"userName": "bjensen", "externalId": "e1"}))
        .await;
    api.create_group(json!({"displayName": "G", "externalId": "ge1"}))
        .await;
    s.restart().await;
    let api = s.client();
    api.post("/Users", &json!({"userName": "BJENSEN"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
    api.post("/Users", &json!({"userName": "other", "externalId": "e1"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
    api.post("/Groups", &json!({"displayName": "H", "externalId": "ge1"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_a_kill_9() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let reqs = (0..100).map(|i| {
        let api = api.clone();
        tokio::spawn(async move { api.create_user_named(&format!("durable{i}")).await })
    });
    let created: Vec<serde_json::Value> = join_all(reqs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let victim = id_of(&created[0]);
    let g = api
        .create_group_with("G", &[&victim, &id_of(&created[1])])
        .await;
    api.delete(&format!("/Users/{victim}")).await.expect(204);

    s.kill().await;
    s.start_again().await;
    let api = s.client();
    let listed: Vec<String> = api.list_all("/Users").await.iter().map(id_of).collect();
    let expected: Vec<String> = created[1..].iter().map(id_of).collect();
    assert_eq!(
        sorted(&listed),
        sorted(&expected),
        "every 201 must survive a crash"
    );
    for u in &created[1..10] {
        let got = api.user(&id_of(u)).await;
        assert_eq!(version_of(&got), version_of(u));
    }
    let g = api.group(&id_of(&g)).await;
    assert_eq!(
        member_ids(&g),
        vec![id_of(&created[1])],
        "the acknowledged cascade survives"
    );
    // The store is usable after the crash.
    api.create_user_named("after-crash").await;
    api.post("/Users", &json!({"userName": "DURABLE5"}))
        .await
        .expect_scim_error(409, Some("uniqueness"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_writes_exits_cleanly_and_loses_no_acknowledged_write() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let writers = (0..8).map(|w| {
        let api = api.clone();
        tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0..10_000 {
                let r = api
                    .request_json(
                        reqwest::Method::POST,
                        "/Users",
                        &json!({"userName": format!("term-{w}-{i}")}),
                    )
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let v: serde_json::Value = r.json().await.unwrap();
                        ok.push(v["id"].as_str().unwrap().to_string());
                    }
                    Ok(r) => {
                        // While shutting down the server may refuse (503) but never fail otherwise.
                        let st = r.status().as_u16();
                        assert!(st == 503, "unexpected status during shutdown: {st}");
                        break;
                    }
                    Err(_) => break, // connection refused / closed: the server has stopped
                }
            }
            ok
        })
    });
    let writers: Vec<_> = writers.collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.stop().await; // asserts a clean exit 0
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty(),
        "no write succeeded before SIGTERM"
    );

    s.start_again().await;
    let api = s.client();
    let listed: Vec<String> = api.list_all("/Users").await.iter().map(id_of).collect();
    for id in &acknowledged {
        assert!(
            listed.contains(id),
            "acknowledged user {id} lost across SIGTERM"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_data_path_refuses_to_start() {
    let s = Scimd::start_default().await;
    s.client().create_user_named("first").await;
    let outcome = s.second_serve(Duration::from_secs(15)).await;
    let (status, out) = match outcome {
        Ok(x) => x,
        Err(out) => panic!("a second scimd serve on the same DATA_PATH kept running:\n{out}"),
    };
    assert!(
        !status.success(),
        "the second server must exit non-zero, got {status}\n{out}"
    );
    let lower = out.to_lowercase();
    assert!(
        lower.contains("lock") || lower.contains("another scimd") || lower.contains("in use"),
        "the message must say DATA_PATH is locked / used by another scimd:\n{out}"
    );
    // The first server is unaffected.
    assert_eq!(s.client().list("/Users").await["totalResults"], 1);
    s.client().create_user_named("still-writable").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lock_is_released_on_a_clean_stop_and_after_a_crash() {
    let mut s = Scimd::start_default().await;
    s.client().create_user_named("x").await;
    s.stop().await;
    s.start_again().await;
    s.kill().await;
    s.start_again().await;
    assert_eq!(s.client().list("/Users").await["totalResults"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_reports_the_store_is_open() {
    let s = Scimd::start_default().await;
    let r = s.anonymous().get("/ready").await.expect(200);
    assert!(r.text.len() < 10_000);
}

/// The mode bits of a path.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Starts a server with the file projection on a DATA_PATH it creates itself, writes a User, and
/// returns the modes of DATA_PATH, the store file, `Users/` and the User's document.
async fn modes_with(files_mode: Option<&str>) -> [u32; 4] {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let mut opts = Opts::default()
        .env("DATA_PATH", &data.to_string_lossy())
        .env("PROJECTIONS", "file");
    if let Some(m) = files_mode {
        opts = opts.env("FILES_MODE", m);
    }
    let mut s = Scimd::start(opts).await;
    let id = id_of(&s.client().create_user_named("modes").await);
    let doc = data.join("Users").join(&id);
    for _ in 0..100 {
        if doc.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
    [
        mode(&data),
        mode(&data.join("scimd.redb")),
        mode(&data.join("Users")),
        mode(&doc),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn store_files_and_projection_documents_are_private_by_default() {
    assert_eq!(modes_with(None).await, [0o700, 0o600, 0o700, 0o600]);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_mode_0640_lets_the_group_read() {
    assert_eq!(modes_with(Some("0640")).await, [0o750, 0o640, 0o750, 0o640]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_files_mode_that_is_not_a_data_file_mode_stops_start_up() {
    let s = Scimd::start_default().await;
    let out = s.cli(&["--files-mode", "0755", "log", "tail"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("FILES_MODE"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_does_not_keep_the_store_from_reusing_freed_pages() {
    let mut s = Scimd::start(Opts::default().loglevel("warn")).await;
    let api = s.client();
    let id = id_of(&api.create_user_named("churn").await);
    // A read, then only writes: a read transaction kept from here on would pin every page the
    // writes free, and the file would grow with each commit instead of reusing them.
    api.get("/Users?count=1").await.expect(200);
    let file = s.data_path().join("scimd.redb");
    let size = || std::fs::metadata(&file).unwrap().len();
    // Bulk answers carry no representation, so nothing reads between these writes.
    let bulk = |i: usize| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{"method": "PATCH", "path": format!("/Users/{id}"), "data": {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "title", "value": format!("t{i}-{}", "x".repeat(2000))}]
            }}]
        })
    };
    for i in 0..100 {
        api.post("/Bulk", &bulk(i)).await.expect(200);
    }
    let warm = size();
    for i in 100..400 {
        api.post("/Bulk", &bulk(i)).await.expect(200);
    }
    let grown = size() - warm;
    s.stop().await;
    // 300 events of ≈2.5 KB are ≈0.8 MB of log; the rewritten pages must be reused.
    assert!(
        grown < 3_000_000,
        "300 PATCHes grew the store by {grown} bytes (from {warm}): freed pages are not reused"
    );
}
