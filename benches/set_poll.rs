//! SET poll benchmark (RFC 8936): how many SETs per second one receiver polls and acknowledges.
//!
//! Against a scimd with SETs on (from the repository root):
//!
//! ```text
//! cargo build --release --bin scimd
//! DATA_PATH=$(mktemp -d) API_KEY=k LISTEN=127.0.0.1:18000 PROJECTIONS=none LOGLEVEL=warn \
//!   PUBLIC_URL=https://scim.example.org SET_SIGNING_SECRET=bench-secret target/release/scimd serve &
//! cargo bench --bench set_poll -- --url http://127.0.0.1:18000 --token k --users 20000
//! kill %1
//! ```
//!
//! Options:
//!
//! - `--url BASE_URL`    scimd's SCIM base URL, with its base path if any; http only
//! - `--token TOKEN`     sent as `Authorization: Bearer TOKEN` (its name is the receiver)
//! - `--users N`         first create N users (32 at a time), so the feed holds at least N SETs
//!   (default 0: poll what the feed holds)
//! - `--max-events M`    `maxEvents` of each poll (default 1000)
//! - `--feed ID`         the feed polled (default `default`)
//!
//! It then polls with `returnImmediately: true`, each poll acknowledging the SETs of the one before,
//! until a poll answers no SET and `moreAvailable: false`, and prints the SETs received, the polls,
//! SETs per second over the polling (the final acknowledging poll included) and the poll latency
//! p50 / p99. The exit status is 1 when a request failed or a `jti` came twice. Without `--url` it
//! prints this usage and exits 0 (what `cargo test --all-targets` runs).

mod common;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// SET poll benchmark: SETs per second one receiver polls and acknowledges; see the doc comment of
/// `benches/set_poll.rs`.
#[derive(Parser)]
#[command(name = "set_poll", bin_name = "cargo bench --bench set_poll --")]
struct Args {
    /// scimd's SCIM base URL, with its base path if any; http only
    #[arg(long, value_name = "BASE_URL", value_parser = common::base_url)]
    url: String,
    /// Sent as `Authorization: Bearer TOKEN`
    #[arg(long)]
    token: Option<String>,
    /// Users to create first
    #[arg(long, value_name = "N", default_value_t = 0)]
    users: usize,
    /// `maxEvents` of each poll
    #[arg(long, value_name = "M", default_value_t = 1000)]
    max_events: usize,
    /// The feed polled
    #[arg(long, value_name = "ID", default_value = "default")]
    feed: String,
}

fn main() -> ExitCode {
    let Some(args) = common::parse::<Args>(&["--url"]) else {
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("set_poll: {e}");
            ExitCode::FAILURE
        }
    }
}

fn request(client: &reqwest::Client, args: &Args, url: String) -> reqwest::RequestBuilder {
    let rb = client.post(url).header("Content-Type", "application/json");
    match &args.token {
        Some(t) => rb.bearer_auth(t),
        None => rb,
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let args = Arc::new(args);
    create_users(&client, &args).await?;
    let url = format!("{}/Events/Feeds/{}/poll", args.url, args.feed);
    let mut seen: HashSet<String> = HashSet::new();
    let mut ack: Vec<String> = Vec::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    loop {
        let body = json!({"maxEvents": args.max_events, "returnImmediately": true, "ack": ack});
        let sent = Instant::now();
        let resp = request(&client, &args, url.clone())
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("poll: {e}"))?;
        let status = resp.status();
        let doc: Value = resp.json().await.map_err(|e| format!("poll answer: {e}"))?;
        latencies.push(sent.elapsed());
        if !status.is_success() {
            return Err(format!("poll answered {status}: {doc}"));
        }
        let sets = doc["sets"].as_object().cloned().unwrap_or_default();
        let more = doc["moreAvailable"].as_bool().unwrap_or(false);
        ack = sets.keys().cloned().collect();
        for jti in &ack {
            if !seen.insert(jti.clone()) {
                return Err(format!("jti {jti} came twice"));
            }
        }
        if ack.is_empty() && !more {
            break;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "polled {} SETs in {} polls (maxEvents {}) in {:.2} s: {:.0} SETs/s; poll latency p50 {:.1} ms, p99 {:.1} ms",
        seen.len(),
        latencies.len(),
        args.max_events,
        elapsed.as_secs_f64(),
        seen.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    );
    if seen.len() < args.users {
        return Err(format!(
            "{} SETs for {} created users",
            seen.len(),
            args.users
        ));
    }
    Ok(())
}

/// Creates `args.users` users, 32 requests at a time.
async fn create_users(client: &reqwest::Client, args: &Arc<Args>) -> Result<(), String> {
    if args.users == 0 {
        return Ok(());
    }
    let prefix = format!("poll-bench-{}-", uuid::Uuid::new_v4().simple());
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..32 {
        let (client, args, prefix) = (client.clone(), args.clone(), prefix.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while i < args.users {
                let body = json!({"schemas": [USER_SCHEMA], "userName": format!("{prefix}{i}")});
                let mut rb = client
                    .post(format!("{}/Users", args.url))
                    .header("Content-Type", "application/scim+json")
                    .body(body.to_string());
                if let Some(t) = &args.token {
                    rb = rb.bearer_auth(t);
                }
                let resp = rb.send().await.map_err(|e| format!("create: {e}"))?;
                if resp.status().as_u16() != 201 {
                    return Err(format!("create answered {}", resp.status()));
                }
                i += 32;
            }
            Ok::<(), String>(())
        }));
    }
    for w in workers {
        w.await.map_err(|e| format!("a writer panicked: {e}"))??;
    }
    println!(
        "created {} users in {:.2} s",
        args.users,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
