//! Security-event push benchmark: SETs per second scimd pushes (RFC 8935) to a receiver on loopback,
//! and the lag from a write's 201 to its SET's arrival at a steady write rate.
//!
//! The benchmark is the receiver: it listens on `--listen`, answers 202 to every SET and notes when
//! each arrived (matched to its write by `sub_id.id`; signatures are not checked here, the tests do
//! that). Start scimd pushing to it, then run the benchmark (from the repository root):
//!
//! ```text
//! cargo build --release --bin scimd
//! DATA_PATH=$(mktemp -d) API_KEY=k LISTEN=127.0.0.1:18000 PROJECTIONS=none LOGLEVEL=warn \
//!   SET_SIGNING_SECRET=0123456789abcdef0123456789abcdef SET_ISSUER=https://idm.example.org \
//!   SET_PUSH_URL=http://127.0.0.1:18100/events SET_PUSH_ALLOW_HTTP=true target/release/scimd serve &
//! cargo bench --bench set_push -- --url http://127.0.0.1:18000 --token k --listen 127.0.0.1:18100 --burst 5000
//! cargo bench --bench set_push -- --url http://127.0.0.1:18000 --token k --listen 127.0.0.1:18100 --rate 1000 --seconds 10
//! ```
//!
//! Options: `--url BASE_URL` (scimd's SCIM base URL), `--token TOKEN`, `--listen ADDR` (where the
//! receiver listens: SET_PUSH_URL's host and port, path `/events`), `--burst N` (N creates at
//! `--concurrency C`, default 32, then SETs/s from the first SET to the last; with `--backlog` the
//! receiver listens only after the last write, so the SETs/s are those of pushing a backlog) or `--rate R` with
//! `--seconds S` (open loop: R creates per second whatever the answers do; prints the achieved rate and
//! the lag p50 / p99 / max). A SET that arrives before its 201 counts as 0 ms.
//!
//! Exit status 1 when a write failed or a SET did not arrive within 60 s of the last write. Without
//! `--url` it prints this usage and exits 0 (what `cargo test --all-targets` runs). Start scimd on an
//! empty DATA_PATH: the SETs of earlier events would be counted too.

mod common;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use poem::listener::TcpListener;
use poem::{Body, EndpointExt, Response, handler};
use serde_json::{Value, json};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// How long to wait for the last SETs after the last write.
const DRAIN: Duration = Duration::from_secs(60);

/// Security-event push benchmark; see the doc comment of `benches/set_push.rs`.
#[derive(Parser)]
#[command(name = "set_push", bin_name = "cargo bench --bench set_push --")]
struct Args {
    /// scimd's SCIM base URL, with its base path if any
    #[arg(long, value_name = "BASE_URL", value_parser = common::base_url)]
    url: String,
    /// Sent as `Authorization: Bearer TOKEN`
    #[arg(long)]
    token: Option<String>,
    /// Where the receiver listens (SET_PUSH_URL's host:port; path /events)
    #[arg(long, default_value = "127.0.0.1:18100")]
    listen: String,
    /// Burst mode: this many creates as fast as --concurrency workers go
    #[arg(long)]
    burst: Option<usize>,
    /// Burst mode: the receiver starts listening only after the last write, so that the SETs/s
    /// measure pushing a backlog, not the write rate
    #[arg(long)]
    backlog: bool,
    /// Burst mode: workers
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Open-loop mode: creates per second
    #[arg(long, default_value_t = 1000.0, value_parser = common::positive)]
    rate: f64,
    /// Open-loop mode: seconds of writing
    #[arg(long, default_value_t = 10.0, value_parser = common::positive)]
    seconds: f64,
}

/// When each subject's SET arrived.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

#[handler]
async fn receive(body: Body, arrivals: poem::web::Data<&Arrivals>) -> Response {
    let now = Instant::now();
    let token = body.into_string().await.unwrap_or_default();
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if let Some(id) = claims["sub_id"]["id"].as_str() {
        arrivals.lock().unwrap().entry(id.to_owned()).or_insert(now);
    }
    Response::builder()
        .status(poem::http::StatusCode::ACCEPTED)
        .finish()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Creates one user; answers its id and when the 201 arrived.
async fn create(http: &reqwest::Client, args: &Args, n: usize) -> Option<(String, Instant)> {
    let mut request = http.post(format!("{}/Users", args.url)).json(&json!({
        "schemas": [USER_SCHEMA],
        "userName": format!("set-bench-{}-{n}", std::process::id()),
    }));
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    let at = Instant::now();
    if response.status() != 201 {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    Some((body["id"].as_str()?.to_owned(), at))
}

/// Waits until every id has arrived (or DRAIN passed); answers how many are missing.
async fn drain(arrivals: &Arrivals, ids: &[(String, Instant)]) -> usize {
    let deadline = Instant::now() + DRAIN;
    loop {
        let missing = {
            let got = arrivals.lock().unwrap();
            ids.iter().filter(|(id, _)| !got.contains_key(id)).count()
        };
        if missing == 0 || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(args) = common::parse::<Args>(&["--url"]) else {
        return ExitCode::SUCCESS;
    };
    let args = Arc::new(args);
    let arrivals: Arrivals = Arc::default();
    let app = poem::Route::new()
        .at("/events", poem::post(receive))
        .data(arrivals.clone());
    let listen = args.listen.clone();
    let receiver = async move { poem::Server::new(TcpListener::bind(listen)).run(app).await };
    let mut receiver = Some(receiver);
    if !args.backlog {
        tokio::spawn(receiver.take().expect("not started yet"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let http = reqwest::Client::new();
    let mut failed = 0usize;
    let mut ids: Vec<(String, Instant)> = Vec::new();
    let started = Instant::now();
    if let Some(n) = args.burst {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..args.concurrency {
            let (http, args, next) = (http.clone(), args.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    out.push(create(&http, &args, i).await);
                }
            }));
        }
        for w in workers {
            for r in w.await.unwrap_or_default() {
                match r {
                    Some(done) => ids.push(done),
                    None => failed += 1,
                }
            }
        }
    } else {
        let total = (args.rate * args.seconds) as usize;
        let period = Duration::from_secs_f64(1.0 / args.rate);
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            tokio::time::sleep_until((started + period * i as u32).into()).await;
            let (http, args) = (http.clone(), args.clone());
            tasks.push(tokio::spawn(async move { create(&http, &args, i).await }));
        }
        for t in tasks {
            match t.await.ok().flatten() {
                Some(done) => ids.push(done),
                None => failed += 1,
            }
        }
    }
    let wrote = started.elapsed();
    if let Some(receiver) = receiver {
        tokio::spawn(receiver);
    }
    let missing = drain(&arrivals, &ids).await;
    let got = arrivals.lock().unwrap().clone();
    let arrived: Vec<Instant> = ids
        .iter()
        .filter_map(|(id, _)| got.get(id).copied())
        .collect();
    println!(
        "writes: {} ok, {failed} failed in {:.2} s ({:.0}/s)",
        ids.len(),
        wrote.as_secs_f64(),
        ids.len() as f64 / wrote.as_secs_f64()
    );
    if let (Some(first), Some(last)) = (arrived.iter().min(), arrived.iter().max()) {
        let span = last.duration_since(*first).as_secs_f64().max(1e-9);
        println!(
            "SETs received: {} ({:.0} SETs/s first to last)",
            arrived.len(),
            arrived.len() as f64 / span
        );
    }
    let mut lags: Vec<Duration> = ids
        .iter()
        .filter_map(|(id, at)| {
            got.get(id)
                .map(|arrived| arrived.saturating_duration_since(*at))
        })
        .collect();
    lags.sort_unstable();
    println!(
        "lag 201 → SET: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} arrived before their 201)",
        percentile(&lags, 0.5).as_secs_f64() * 1e3,
        percentile(&lags, 0.99).as_secs_f64() * 1e3,
        lags.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        lags.iter().filter(|l| l.is_zero()).count()
    );
    if failed > 0 || missing > 0 {
        eprintln!("{failed} writes failed, {missing} SETs never arrived");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
