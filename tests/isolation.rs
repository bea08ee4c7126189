//! An expensive request slows only itself: store reads run off the async runtime, so queries that
//! scan every resource never keep the server from answering others (`/health` first of all).
//! Shown by order, not by time: `/health` is answered while every expensive query is still running.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Creates `n` users through Bulk, 1,000 per request.
async fn users(api: &Api, n: usize) {
    for start in (0..n).step_by(1000) {
        let ops: Vec<Value> = (start..n.min(start + 1000))
            .map(|i| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                       "data": {"schemas": [USER_SCHEMA], "userName": format!("user{i}"),
                                "title": format!("title {i}"), "name": {"familyName": format!("F{i}")}}})
            })
            .collect();
        api.post(
            "/Bulk",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}),
        )
        .await
        .expect(200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_while_unindexed_queries_scan_the_store() {
    let s = Scimd::start_default().await;
    let api = s.client();
    users(&api, 5000).await;
    // More scans than the server has runtime worker threads (one per core): on the runtime they
    // would occupy every worker until one finished.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let queries = 4 * cores;
    let done = Arc::new(AtomicUsize::new(0));
    let mut running = Vec::new();
    for i in 0..queries {
        let api = s.client();
        let done = done.clone();
        running.push(tokio::spawn(async move {
            // `co` on attributes without an index, sorted: every user is read and compared.
            let page = api
                .list(&format!(
                    "/Users?filter=title co \"{i}\" or name.familyName co \"zz{i}\"&sortBy=title&count=5"
                ))
                .await;
            done.fetch_add(1, Ordering::SeqCst);
            page
        }));
    }
    // Let the server take them all up before asking for /health.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = s.anonymous().get("/health").await;
    let finished = done.load(Ordering::SeqCst);
    assert_eq!(health.status, 200);
    for q in running {
        let page = q.await.unwrap();
        assert!(page["totalResults"].as_u64().unwrap() > 0, "{page}");
    }
    assert_eq!(
        finished, 0,
        "/health was answered only after {finished} of {queries} scans finished"
    );
}
