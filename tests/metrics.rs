//! `GET /metrics`: scraped and parsed as Prometheus text; the families move as writes happen;
//! the key is required unless METRICS_PUBLIC=true.

mod common;

use std::time::{Duration, Instant};

use common::*;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use reqwest::Method;

/// A parsed exposition.
type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

/// Scrapes `/metrics` (at the root, whatever BASE_PATH is) with `api`'s credentials and parses it
/// with a Prometheus text-format parser (a label value may hold braces: `/Users/{id}`).
async fn scrape(s: &Scimd, api: &Api) -> Scrape {
    let resp = send(api.request_url(Method::GET, &s.root_url("/metrics")))
        .await
        .expect(200);
    assert_eq!(resp.content_type().as_deref(), Some("text/plain"));
    parse_prometheus(&resp.text)
        .unwrap_or_else(|e| panic!("not Prometheus text ({e:?}):\n{}", resp.text))
}

/// The values of family `name` whose labels include every pair of `labels`.
fn samples(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<PrometheusValue> {
    let Some(family) = scrape.families.get(name) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .filter(|s| {
            let set = s.get_labelset().expect("bound to its family");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| s.value.clone())
        .collect()
}

/// The value of the one counter or gauge `name{labels}`; 0 when absent (a counter not yet touched).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match samples(scrape, name, labels).as_slice() {
        [] => 0.0,
        [PrometheusValue::Counter(c)] => c.value.as_f64(),
        [PrometheusValue::Gauge(g)] => g.as_f64(),
        [other] => panic!("{name} is not a counter or gauge: {other:?}"),
        many => panic!("{name}{labels:?} matches {} series", many.len()),
    }
}

/// Every counter `name` summed.
fn total(scrape: &Scrape, name: &str) -> f64 {
    samples(scrape, name, &[])
        .iter()
        .map(|v| match v {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// The observations of histogram `name`, every series summed.
fn histogram_count(scrape: &Scrape, name: &str) -> u64 {
    samples(scrape, name, &[])
        .iter()
        .map(|v| match v {
            PrometheusValue::Histogram(h) => h
                .count
                .unwrap_or_else(|| h.buckets.last().map_or(0, |b| b.count.as_f64() as u64)),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

/// The route labels of every request series.
fn routes(scrape: &Scrape) -> Vec<String> {
    let Some(family) = scrape.families.get("scimd_http_requests_total") else {
        return Vec::new();
    };
    family
        .iter_samples()
        .filter_map(|s| {
            s.get_labelset()
                .ok()?
                .get_label_value("route")
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn the_families_move_as_writes_happen() {
    let s = Scimd::start(Opts::default().env("PROJECTIONS", "file")).await;
    let api = s.client();
    let before = scrape(&s, &api).await;
    let created = [("route", "/Users"), ("method", "POST"), ("status", "201")];
    assert_eq!(value(&before, "scimd_http_requests_total", &created), 0.0);
    assert_eq!(value(&before, "scimd_log_position", &[]), 0.0);
    let batches_before = histogram_count(&before, "scimd_writer_batch_size");

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            api.create_user_named(&format!("metrics-{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A password goes through the argon2 queue; a read and a miss by id use the template.
    api.post(
        "/Users",
        &serde_json::json!({"schemas": [USER_SCHEMA], "userName": "with-password", "password": "s3cret-Pa55"}),
    )
    .await
    .expect(201);
    api.get(&format!("/Users/{}", ids[0])).await.expect(200);
    api.get("/Users/no-such-id").await.expect(404);

    let after = scrape(&s, &api).await;
    assert_eq!(value(&after, "scimd_http_requests_total", &created), 6.0);
    let by_id = [("route", "/Users/{id}"), ("method", "GET")];
    assert_eq!(
        value(
            &after,
            "scimd_http_requests_total",
            &[by_id[0], by_id[1], ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "scimd_http_requests_total",
            &[by_id[0], by_id[1], ("status", "404")]
        ),
        1.0
    );
    let routes = routes(&after);
    assert!(
        routes
            .iter()
            .all(|r| !r.contains(&ids[0]) && !r.contains("no-such-id")),
        "no raw ids in route labels: {routes:?}"
    );
    // Every request is both counted and timed.
    assert_eq!(
        histogram_count(&after, "scimd_http_request_duration_seconds") as f64,
        total(&after, "scimd_http_requests_total")
    );
    assert!(histogram_count(&after, "scimd_writer_batch_size") > batches_before);
    assert!(histogram_count(&after, "scimd_writer_commit_seconds") >= 1);
    assert_eq!(
        value(&after, "scimd_log_position", &[]),
        6.0,
        "one event per create"
    );
    assert_eq!(
        value(&after, "scimd_resources", &[("resource_type", "User")]),
        6.0
    );
    assert!(value(&after, "scimd_store_file_bytes", &[]) > 0.0);
    assert_eq!(value(&after, "scimd_argon2_queue_depth", &[]), 0.0);
    assert_eq!(value(&after, "scimd_argon2_in_flight", &[]), 0.0);

    // The file projection catches up: checkpoint = position, no lag.
    let file = [("subscriber", "file")];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(&s, &api).await;
        if value(&m, "scimd_subscriber_checkpoint", &file) == 6.0 {
            assert_eq!(value(&m, "scimd_subscriber_lag_events", &file), 0.0);
            assert_eq!(value(&m, "scimd_subscriber_lag_seconds", &file), 0.0);
            assert_eq!(value(&m, "scimd_subscriber_parked", &file), 0.0);
            assert_eq!(
                value(
                    &m,
                    "scimd_subscriber_errors_total",
                    &[file[0], ("kind", "refused")]
                ),
                0.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file projection never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn made_up_methods_share_one_label() {
    let s = Scimd::start(Opts::default()).await;
    let api = s.client();
    for i in 0..5 {
        let method = Method::from_bytes(format!("ZZM{i}").as_bytes()).expect("a token");
        let resp = api
            .request_url(method, &s.root_url("/nope"))
            .send()
            .await
            .expect("an answer");
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let scrape = scrape(&s, &api).await;
    let methods: Vec<String> = scrape.families["scimd_http_requests_total"]
        .iter_samples()
        .filter_map(|s| {
            s.get_labelset()
                .ok()?
                .get_label_value("method")
                .map(str::to_owned)
        })
        .collect();
    assert!(methods.iter().all(|m| !m.starts_with("ZZM")), "{methods:?}");
    assert!(methods.iter().any(|m| m == "other"), "{methods:?}");
}

#[tokio::test]
async fn metrics_need_a_key_unless_public() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let url = s.root_url("/metrics");
    let anonymous = send(s.anonymous().request_url(Method::GET, &url)).await;
    assert_eq!(anonymous.status, 401);
    let wrong = send(
        s.client_with_key("not-the-key")
            .request_url(Method::GET, &url),
    )
    .await;
    assert_eq!(wrong.status, 401);
    // Both header forms, at the root even with a BASE_PATH.
    scrape(&s, &s.client()).await;
    let m = scrape(&s, &s.client_x_api_key()).await;
    assert_eq!(
        value(
            &m,
            "scimd_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ),
        2.0
    );

    let public = Scimd::start(Opts::default().env("METRICS_PUBLIC", "true")).await;
    scrape(&public, &public.anonymous()).await;
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_scimd_exposes() {
    let s = Scimd::start(Opts::default().env("PROJECTIONS", "file")).await;
    let api = s.client();
    api.create_user_named("dashboard").await;
    let m = scrape(&s, &api).await;
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/scimd.json"),
    )
    .unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    // Counters with labels appear once something was counted.
    let counted_later = [
        "scimd_subscriber_errors_total",
        "scimd_subscriber_reconnects_total",
    ];
    let mut names: Vec<&str> = dashboard
        .match_indices("scimd_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            m.families.contains_key(family) || counted_later.contains(&family),
            "the dashboard uses {name}, which /metrics does not expose"
        );
    }
}

#[tokio::test]
async fn a_refused_change_moves_the_subscriber_families() {
    let files = tempfile::tempdir().unwrap();
    let s = Scimd::start(
        Opts::default()
            .env("PROJECTIONS", "file")
            .env("FILES_PATH", files.path().to_str().unwrap()),
    )
    .await;
    let api = s.client();
    let id = api.create_user_named("refused").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = files.path().join("Users").join(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !target.is_file() {
        assert!(
            Instant::now() < deadline,
            "the file projection never wrote {target:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A directory in the way: the file projection refuses the next change to this user for good.
    std::fs::remove_file(&target).unwrap();
    std::fs::create_dir(&target).unwrap();
    api.put(
        &format!("/Users/{id}"),
        &serde_json::json!({"schemas": [USER_SCHEMA], "userName": "refused", "title": "x"}),
    )
    .await
    .expect(200);
    let file = [("subscriber", "file")];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(&s, &api).await;
        if value(&m, "scimd_subscriber_parked", &file) == 1.0 {
            assert_eq!(
                value(
                    &m,
                    "scimd_subscriber_errors_total",
                    &[file[0], ("kind", "refused")]
                ),
                1.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "nothing was parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the cause is gone, a retry unparks it.
    std::fs::remove_dir(&target).unwrap();
    send(api.request(Method::POST, "/admin/projections/file/retry"))
        .await
        .expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(&s, &api).await;
        if value(&m, "scimd_subscriber_parked", &file) == 0.0 {
            assert_eq!(value(&m, "scimd_subscriber_checkpoint", &file), 2.0);
            break;
        }
        assert!(Instant::now() < deadline, "the retry never unparked it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
