//! Load generator for any SCIM 2.0 server (scimd or another one).
//!
//! ```text
//! cargo bench --bench load -- --url http://127.0.0.1:8000 --token KEY --users 20000 --concurrency 64
//! ```
//!
//! Options:
//!
//! - `--url BASE_URL`     the SCIM base URL, with its base path if any (`http://host:8000/scim/v2`); http only
//! - `--token TOKEN`      sent as `Authorization: Bearer TOKEN` (omit for a server without auth)
//! - `--users N`          users to create (default 10000)
//! - `--concurrency C`    concurrent workers (default 64); each keeps its own keep-alive connection
//! - `--gets M`           `GET /Users/{id}` requests (default 3 × N)
//! - `--queries Q`        filtered `GET /Users` requests per query kind (default 0): `userName eq`,
//!   `externalId eq`, `emails.value eq` and `userName sw` (about ten matches) on random users of this
//!   run, and
//!   `meta.lastModified gt` a time taken just before 10 last users were created
//! - `--rounds R`         run the query phases R times (default 1): the first round on a freshly loaded
//!   store also pays for filling the store's page cache, later rounds show a warm server
//! - `--bulk B`           also create N more users through `POST /Bulk`, B users per request (default
//!   0: no bulk phase); its line counts Bulk requests, and a second line gives users per second
//!
//! Phase 1 creates N users (`POST /Users`, `application/scim+json`, a userName unique to this run, a
//! displayName and an email). Phase 2 reads M random users among those created. For each phase it prints
//! the requests, the errors (non-2xx or transport failures; the first few are printed in full), the elapsed
//! time, the throughput and the p50 / p99 / max latency. The exit status is 1 when any request failed.
//! The users it creates are left on the server.
//!
//! Without `--url` it prints this usage and exits 0: that is what `cargo test --all-targets` runs.
//!
//! To measure scimd itself:
//!
//! ```text
//! cargo build --release
//! DATA_PATH=$(mktemp -d) API_KEY=k LISTEN=127.0.0.1:18000 target/release/scimd serve &
//! cargo bench --bench load -- --url http://127.0.0.1:18000 --token k
//! ```

mod common;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

const SCIM_JSON: &str = "application/scim+json";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Errors printed in full per phase; the rest are only counted.
const ERRORS_SHOWN: usize = 5;
/// Load generator for any SCIM 2.0 server (scimd or another one); see the doc comment of
/// `benches/load.rs` for the phases and what they print.
#[derive(Parser)]
#[command(name = "load", bin_name = "cargo bench --bench load --")]
struct Args {
    /// The SCIM base URL, with its base path if any (`http://host:8000/scim/v2`); http only
    #[arg(long, value_name = "BASE_URL", value_parser = common::base_url)]
    url: String,
    /// Sent as `Authorization: Bearer TOKEN` (omit for a server without auth)
    #[arg(long)]
    token: Option<String>,
    /// Users to create
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    users: usize,
    /// Concurrent workers; each keeps its own keep-alive connection
    #[arg(long, value_name = "C", default_value_t = 64)]
    concurrency: usize,
    /// `GET /Users/{id}` requests [default: 3 × N]
    #[arg(long, value_name = "M")]
    gets: Option<usize>,
    /// Filtered `GET /Users` requests per query kind (`userName eq`, `externalId eq`,
    /// `emails.value eq`, `userName sw`, `meta.lastModified gt`)
    #[arg(long, value_name = "Q", default_value_t = 0)]
    queries: usize,
    /// Run the query phases R times (the first round also fills the store's page cache)
    #[arg(long, value_name = "R", default_value_t = 1)]
    rounds: usize,
    /// Also create N more users through `POST /Bulk`, B users per request (0: no bulk phase)
    #[arg(long, value_name = "B", default_value_t = 0)]
    bulk: usize,
}

impl Args {
    /// `--gets`, by default 3 × `--users`.
    fn gets(&self) -> usize {
        self.gets.unwrap_or(self.users * 3)
    }
}

/// What one phase measured.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Outcome {
    fn print(&self, phase: &str) {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // nearest-rank percentile, in permille: p50 = 500, p99 = 990
        let pct = |permille: usize| {
            let rank = (sorted.len() * permille).div_ceil(1000).max(1);
            sorted.get(rank - 1).copied().map_or(0.0, ms)
        };
        let secs = self.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
        let rate = if secs > 0.0 {
            sorted.len() as f64 / secs
        } else {
            0.0
        };
        println!(
            "{phase:<8} {:>9} {:>7} {:>10.2} {:>10.1} {:>8.2} {:>8.2} {:>8.2}",
            sorted.len(),
            self.errors,
            secs,
            rate,
            pct(500),
            pct(990),
            sorted.last().copied().map_or(0.0, ms),
        );
    }
}

/// Runs `total` requests with `concurrency` workers. Worker `w` owns one client (so one keep-alive
/// connection) and takes the next request number `i` until all are taken; `request(client, i)` returns
/// the value to keep (e.g. the created id) or an error message.
async fn run_phase<F, Fut>(
    args: &Args,
    total: usize,
    request: F,
) -> Result<(Outcome, Vec<String>), String>
where
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<String>, String>> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let errors_seen = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency.min(total.max(1)) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let (request, next, errors_seen) = (request.clone(), next.clone(), errors_seen.clone());
        workers.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let mut kept = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let sent = Instant::now();
                let result = request(client.clone(), i).await;
                outcome.latencies.push(sent.elapsed());
                match result {
                    Ok(value) => kept.extend(value),
                    Err(message) => {
                        outcome.errors += 1;
                        if errors_seen.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
                            eprintln!("  error: {message}");
                        }
                    }
                }
            }
            (outcome, kept)
        }));
    }
    let mut all = Outcome::default();
    let mut kept = Vec::with_capacity(total);
    for worker in workers {
        let (outcome, values) = worker.await.map_err(|e| format!("worker failed: {e}"))?;
        all.latencies.extend(outcome.latencies);
        all.errors += outcome.errors;
        kept.extend(values);
    }
    all.elapsed = started.elapsed();
    Ok((all, kept))
}

/// Sends one request and reads the whole body (so the connection is reused); a non-2xx is an error.
async fn send(request: reqwest::RequestBuilder, token: Option<&str>) -> Result<Value, String> {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request
        .header(ACCEPT, SCIM_JSON)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", with_causes(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{status}: reading the body failed: {}", with_causes(&e)))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(300).collect();
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{status}: body is not JSON: {e}"))
}

/// `error: cause: cause …`: reqwest's own message omits why a request failed (refused, reset …).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

async fn run(args: Args) -> Result<bool, String> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let run_id = Arc::new(run_id[..8].to_string());
    let users_url = Arc::new(format!("{}/Users", args.url));
    let token = Arc::new(args.token.clone());
    println!(
        "load: {} users, {} gets, concurrency {}, userName prefix load-{run_id}-, against {}",
        args.users,
        args.gets(),
        args.concurrency,
        users_url
    );
    println!(
        "{:<8} {:>9} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "phase", "requests", "errors", "elapsed_s", "req/s", "p50_ms", "p99_ms", "max_ms"
    );

    let (url, tok, rid) = (users_url.clone(), token.clone(), run_id.clone());
    let (created, ids) = run_phase(&args, args.users, move |client, i| {
        let (url, tok, run_id) = (url.clone(), tok.clone(), rid.clone());
        async move {
            let user = json!({
                "schemas": [USER_SCHEMA],
                "userName": format!("load-{run_id}-{i:07}"),
                "externalId": format!("ext-{run_id}-{i:07}"),
                "displayName": format!("Load User {i}"),
                "name": {"givenName": "Load", "familyName": format!("User {i}")},
                "emails": [{"value": format!("load-{run_id}-{i:07}@example.org"), "type": "work", "primary": true}],
                "active": true,
            });
            let request = client
                .post(url.as_str())
                .header(CONTENT_TYPE, SCIM_JSON)
                .body(user.to_string());
            let body = send(request, tok.as_deref()).await?;
            match body.get("id").and_then(Value::as_str) {
                Some(id) => Ok(Some(id.to_string())),
                None => Err("201 without an id in the body".to_string()),
            }
        }
    })
    .await?;
    created.print("create");

    if ids.is_empty() {
        println!("get: skipped, no user was created");
        return Ok(created.errors == 0);
    }
    let ids = Arc::new(ids);
    let (url, tok) = (users_url.clone(), token.clone());
    let (read, _) = run_phase(&args, args.gets(), move |client, _| {
        let id = &ids[rand::random_range(0..ids.len())];
        let request = client.get(format!("{url}/{id}"));
        let tok = tok.clone();
        async move { send(request, tok.as_deref()).await.map(|_| None) }
    })
    .await?;
    read.print("get");
    let mut queried = true;
    for round in 1..=args.rounds {
        if args.queries == 0 {
            break;
        }
        if args.rounds > 1 {
            println!("query round {round} of {}", args.rounds);
        }
        queried &= queries(&args, &users_url, &token, &run_id, round).await?;
    }
    let bulked = if args.bulk > 0 {
        bulk(&args, &token, &run_id).await?
    } else {
        true
    };
    Ok(created.errors == 0 && read.errors == 0 && queried && bulked)
}

/// The bulk phase: `args.users` more users created through `POST /Bulk`, `args.bulk` per request.
/// An operation that does not answer 201 is an error.
async fn bulk(
    args: &Args,
    token: &Arc<Option<String>>,
    run_id: &Arc<String>,
) -> Result<bool, String> {
    let per_request = args.bulk;
    let requests = args.users.div_ceil(per_request);
    let url = Arc::new(format!("{}/Bulk", args.url));
    let (tok, rid) = (token.clone(), run_id.clone());
    let (outcome, _) = run_phase(args, requests, move |client, r| {
        let (url, tok, run_id) = (url.clone(), tok.clone(), rid.clone());
        async move {
            let operations: Vec<Value> = (0..per_request)
                .map(|j| {
                    let i = r * per_request + j;
                    json!({"method": "POST", "path": "/Users", "bulkId": format!("u{j}"), "data": {
                        "schemas": [USER_SCHEMA],
                        "userName": format!("bulk-{run_id}-{i:07}"),
                        "displayName": format!("Bulk User {i}"),
                        "emails": [{"value": format!("bulk-{run_id}-{i:07}@example.org"), "type": "work"}],
                    }})
                })
                .collect();
            let body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": operations,
            });
            let request = client
                .post(url.as_str())
                .header(CONTENT_TYPE, SCIM_JSON)
                .body(body.to_string());
            let answer = send(request, tok.as_deref()).await?;
            let failed = answer["Operations"]
                .as_array()
                .map_or(per_request, |ops| ops.iter().filter(|o| o["status"] != "201").count());
            if failed > 0 {
                return Err(format!("{failed} of {per_request} operations did not answer 201"));
            }
            Ok(None)
        }
    })
    .await?;
    outcome.print("bulk");
    #[allow(clippy::cast_precision_loss)] // user counts are far below 2^52
    let users_per_sec = (requests * per_request) as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
    println!(
        "bulk: {} users in {per_request}-operation requests, {users_per_sec:.0} users/s",
        requests * per_request
    );
    Ok(outcome.errors == 0)
}

/// The filter of one query kind for run `run` and user number `i`.
type FilterFor = fn(&str, usize) -> String;

/// The query phases: each kind of filter `args.queries` times, on random users of this run. A query
/// that finds nothing it should is an error.
async fn queries(
    args: &Args,
    users_url: &Arc<String>,
    token: &Arc<Option<String>>,
    run_id: &Arc<String>,
    round: usize,
) -> Result<bool, String> {
    // `meta.lastModified gt T` must select few users: T is taken just before the last 10 are created.
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let client = reqwest::Client::new();
    for i in 0..10 {
        let user =
            json!({"schemas": [USER_SCHEMA], "userName": format!("late-{run_id}-{round}-{i}")});
        let request = client
            .post(users_url.as_str())
            .header(CONTENT_TYPE, SCIM_JSON)
            .body(user.to_string());
        send(request, token.as_deref()).await?;
    }
    let kinds: [(&str, FilterFor); 4] = [
        ("eq", |run, i| format!("userName eq \"load-{run}-{i:07}\"")),
        ("extId", |run, i| {
            format!("externalId eq \"ext-{run}-{i:07}\"")
        }),
        ("email", |run, i| {
            format!("emails.value eq \"load-{run}-{i:07}@example.org\"")
        }),
        // Ten users share the name but its last digit.
        ("sw", |run, i| {
            format!("userName sw \"load-{run}-{:06}\"", i / 10)
        }),
    ];
    let mut ok = true;
    for (phase, filter) in kinds {
        let (url, tok, run, users) = (users_url.clone(), token.clone(), run_id.clone(), args.users);
        let (outcome, _) = run_phase(args, args.queries, move |client, _| {
            let i = rand::random_range(0..users);
            let url = reqwest::Url::parse_with_params(
                url.as_str(),
                &[("filter", filter(&run, i)), ("count", "10".into())],
            );
            let tok = tok.clone();
            async move {
                let url = url.map_err(|e| format!("bad URL: {e}"))?;
                let body = send(client.get(url), tok.as_deref()).await?;
                match body["totalResults"].as_u64() {
                    Some(n) if n >= 1 => Ok(None),
                    _ => Err(format!("user {i} not found: {body}")),
                }
            }
        })
        .await?;
        outcome.print(phase);
        ok &= outcome.errors == 0;
    }
    let (url, tok) = (users_url.clone(), token.clone());
    let filter = format!("meta.lastModified gt \"{since}\"");
    let (outcome, _) = run_phase(args, args.queries, move |client, _| {
        let url = reqwest::Url::parse_with_params(url.as_str(), &[("filter", filter.as_str())]);
        let tok = tok.clone();
        async move {
            let url = url.map_err(|e| format!("bad URL: {e}"))?;
            let body = send(client.get(url), tok.as_deref()).await?;
            match body["totalResults"].as_u64() {
                Some(10) => Ok(None),
                _ => Err(format!("expected the 10 late users: {body}")),
            }
        }
    })
    .await?;
    outcome.print("lastMod");
    Ok(ok && outcome.errors == 0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(mut args) = common::parse::<Args>(&["--url"]) else {
        return ExitCode::SUCCESS;
    };
    args.concurrency = args.concurrency.max(1);
    args.rounds = args.rounds.max(1);
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}
