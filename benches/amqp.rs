//! AMQP fan-out benchmark: publish throughput and end-to-end lag of scimd's RabbitMQ messages.
//!
//! Against a locally started RabbitMQ and a release scimd (from the repository root):
//!
//! ```text
//! env RMQ_DIR=/tmp/scimd-bench-rmq RMQ_PORT=35698 RMQ_PLUGINS= scripts/services/rabbitmq.sh
//! cargo build --release --bin scimd
//! DATA_PATH=$(mktemp -d) API_KEY=k LISTEN=127.0.0.1:18000 PROJECTIONS=none LOGLEVEL=warn \
//!   AMQP=amqp://guest:guest@127.0.0.1:35698/%2f QUEUE=bench target/release/scimd serve &
//! cargo bench --bench amqp -- --url http://127.0.0.1:18000 --token k \
//!   --amqp amqp://guest:guest@127.0.0.1:35698/%2f --queue bench --rate 1000 --seconds 10
//! cargo bench --bench amqp -- --url http://127.0.0.1:18000 --token k \
//!   --amqp amqp://guest:guest@127.0.0.1:35698/%2f --queue bench --burst 20000
//! kill %1; env RMQ_DIR=/tmp/scimd-bench-rmq RMQ_PORT=35698 scripts/services/rabbitmq.sh stop
//! ```
//!
//! Options:
//!
//! - `--url BASE_URL`   scimd's SCIM base URL, with its base path if any; http only
//! - `--token TOKEN`    sent as `Authorization: Bearer TOKEN`
//! - `--amqp URL`       the broker scimd publishes to (its `AMQP`)
//! - `--queue NAME`     the queue scimd publishes to (its `QUEUE`, default `SCIM`); the benchmark consumes
//!   from it, so nothing else should
//! - `--rate R`         open-loop mode: creates per second (default 1000)
//! - `--seconds S`      open-loop mode: how long to write (default 10)
//! - `--burst N`        burst mode instead: N creates as fast as `--concurrency` workers go
//! - `--concurrency C`  burst mode: workers (default 32)
//!
//! Open-loop mode (the default) sends `POST /Users` at the target rate whatever the responses do (the
//! schedule is a clock, not a loop waiting for answers), while a consumer reads the queue. The lag of a
//! user is the time the consumer received its Create message minus the time the client received the
//! 201 for it (matched by `scim-id`); a message that arrives before the 201 counts as 0 ms lag (how
//! many did is printed). It prints the achieved write rate, the HTTP latency, the messages consumed per
//! second, and the lag p50 / p99 / max.
//!
//! Burst mode measures publish throughput: N creates at concurrency C as fast as scimd takes them,
//! and the messages per second the consumer received from the first Create message to the last.
//!
//! The exit status is 1 when a write failed or a created user's message never arrived (within 60 s
//! of the last write). Without `--url` it prints this usage and exits 0 (what `cargo test
//! --all-targets` runs). The users it creates are left on the server.

mod common;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Requests in flight at most in open-loop mode; beyond, the schedule slips (and that is reported).
const MAX_IN_FLIGHT: usize = 2048;
/// How long to wait for the last messages after the last write.
const DRAIN: Duration = Duration::from_secs(60);
/// AMQP fan-out benchmark: publish throughput and end-to-end lag of scimd's RabbitMQ messages; see
/// the doc comment of `benches/amqp.rs` for the modes and what they print.
#[derive(Parser)]
#[command(name = "amqp", bin_name = "cargo bench --bench amqp --")]
struct Args {
    /// scimd's SCIM base URL, with its base path if any; http only
    #[arg(long, value_name = "BASE_URL", value_parser = common::base_url)]
    url: String,
    /// Sent as `Authorization: Bearer TOKEN`
    #[arg(long)]
    token: Option<String>,
    /// The broker scimd publishes to (its `AMQP`)
    #[arg(long, value_name = "URL")]
    amqp: String,
    /// The queue scimd publishes to (its `QUEUE`); the benchmark consumes from it, so nothing else
    /// should
    #[arg(long, value_name = "NAME", default_value = "SCIM")]
    queue: String,
    /// Open-loop mode: creates per second
    #[arg(long, value_name = "R", default_value_t = 1000.0, value_parser = common::positive)]
    rate: f64,
    /// Open-loop mode: how long to write
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = common::positive)]
    seconds: f64,
    /// Burst mode instead: N creates as fast as `--concurrency` workers go
    #[arg(long, value_name = "N", value_parser = count)]
    burst: Option<usize>,
    /// Burst mode: workers
    #[arg(long, value_name = "C", default_value_t = 32, value_parser = count)]
    concurrency: usize,
    /// userName prefix of this run's users: `amqp-bench-<uuid>-`.
    #[arg(skip = format!("amqp-bench-{}-", uuid::Uuid::new_v4().simple()))]
    prefix: String,
}

/// A positive number, as a count (any fraction dropped, at least 1 for `--concurrency`).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn count(s: &str) -> Result<usize, String> {
    common::positive(s).map(|n| n as usize)
}

/// When each created user's 201 and Create message arrived.
#[derive(Default)]
struct Times {
    /// scim id → when the client had the 201.
    created: HashMap<String, Instant>,
    /// scim id → when the consumer had the Create message.
    consumed: HashMap<String, Instant>,
    /// Messages that were not the Create of a user this run made (e.g. left in the queue before, or
    /// other writes to the server).
    foreign: usize,
    first_message: Option<Instant>,
    last_message: Option<Instant>,
}

/// The writer's results.
#[derive(Default)]
struct Writes {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
    /// Open loop: the largest delay between a request's scheduled time and its start.
    slipped: Duration,
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// `POST /Users`; `Ok(id)` on 201.
async fn create(client: &reqwest::Client, args: &Args, user_name: &str) -> Result<String, String> {
    let mut rb = client
        .post(format!("{}/Users", args.url))
        .header("Content-Type", "application/scim+json")
        .body(
            json!({"schemas": [USER_SCHEMA], "userName": user_name, "displayName": "AMQP bench"})
                .to_string(),
        );
    if let Some(t) = &args.token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.map_err(|e| format!("POST /Users: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("POST /Users: {e}"))?;
    if status != 201 {
        return Err(format!("POST /Users → {status}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("POST /Users: {e}"))?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("POST /Users: no id in {text}"))
}

/// Consumes from the queue (auto-ack) and records when each Create message arrived.
async fn consume(args: &Args, times: Arc<Mutex<Times>>) -> Result<(), String> {
    let connection = Connection::connect(&args.amqp, ConnectionProperties::default())
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.amqp))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare(args.queue.as_str().into(), durable, FieldTable::default())
        .await
        .map_err(|e| format!("declaring {}: {e}", args.queue))?;
    if queue.message_count() > 0 {
        eprintln!(
            "note: {} messages were already waiting in {}; they are read first and not counted",
            queue.message_count(),
            args.queue
        );
    }
    let mut consumer = channel
        .basic_consume(
            args.queue.as_str().into(),
            "scimd-bench".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consuming from {}: {e}", args.queue))?;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| format!("consuming: {e}"))?;
        let now = Instant::now();
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let id = match headers.inner().get("scim-id") {
            Some(AMQPValue::LongString(s)) => Some(s.to_string()),
            _ => None,
        };
        // A Create of a user this run made (its userName carries the run's prefix).
        let ours = serde_json::from_slice::<Value>(&delivery.data).is_ok_and(|b| {
            b["operation"] == "Create"
                && b["resource"]["userName"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&args.prefix))
        });
        let mut t = locked(&times);
        match id {
            Some(id) if ours => {
                t.first_message.get_or_insert(now);
                t.last_message = Some(now);
                t.consumed.entry(id).or_insert(now);
            }
            _ => t.foreign += 1,
        }
    }
    Ok(())
}

/// The data behind `m`, even if a task panicked while holding it (the numbers it left are still
/// worth reporting).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Open loop: one create every 1/rate seconds for `seconds`, whatever the responses do.
async fn open_loop(args: Arc<Args>, times: Arc<Mutex<Times>>) -> Result<Writes, String> {
    let client = http_client()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (args.rate * args.seconds).round() as usize;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let errors = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0usize;
    let mut slipped = Duration::ZERO;
    let mut tasks = Vec::with_capacity(total);
    while sent < total {
        tick.tick().await;
        // Everything scheduled up to now: request i is due at i / rate seconds.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = ((started.elapsed().as_secs_f64() * args.rate) as usize + 1).min(total);
        while sent < due {
            let scheduled = started + Duration::from_secs_f64(sent as f64 / args.rate);
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| format!("in-flight limit: {e}"))?;
            slipped = slipped.max(Instant::now().saturating_duration_since(scheduled));
            let (client, args, times, errors, latencies) = (
                client.clone(),
                args.clone(),
                times.clone(),
                errors.clone(),
                latencies.clone(),
            );
            let name = format!("{}{sent}", args.prefix);
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let result = create(&client, &args, &name).await;
                let now = Instant::now();
                locked(&latencies).push(now - t0);
                match result {
                    Ok(id) => {
                        locked(&times).created.insert(id, now);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("  error: {e}");
                        }
                    }
                }
                drop(permit);
            }));
            sent += 1;
        }
    }
    for t in tasks {
        t.await.map_err(|e| format!("writer task failed: {e}"))?;
    }
    let latencies = std::mem::take(&mut *locked(&latencies));
    Ok(Writes {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        slipped,
    })
}

/// Burst: `n` creates by `concurrency` workers, each sending its next request when the last is answered.
async fn burst(args: Arc<Args>, n: usize, times: Arc<Mutex<Times>>) -> Result<Writes, String> {
    let client = http_client()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(n.max(1)) {
        let (client, args, times, next) =
            (client.clone(), args.clone(), times.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut w = Writes::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t0 = Instant::now();
                let result = create(&client, &args, &format!("{}{i}", args.prefix)).await;
                let now = Instant::now();
                w.latencies.push(now - t0);
                match result {
                    Ok(id) => {
                        locked(&times).created.insert(id, now);
                    }
                    Err(e) => {
                        w.errors += 1;
                        if w.errors <= 2 {
                            eprintln!("  error: {e}");
                        }
                    }
                }
            }
            w
        }));
    }
    let mut all = Writes::default();
    for w in workers {
        let w = w.await.map_err(|e| format!("worker failed: {e}"))?;
        all.latencies.extend(w.latencies);
        all.errors += w.errors;
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile (permille: p50 = 500, p99 = 990) of sorted values.
fn pct(sorted: &[Duration], permille: usize) -> f64 {
    let rank = (sorted.len() * permille).div_ceil(1000).max(1);
    sorted.get(rank - 1).copied().map_or(0.0, ms)
}

async fn run(args: Args) -> Result<bool, String> {
    let args = Arc::new(args);
    let times = Arc::new(Mutex::new(Times::default()));
    let consumer = {
        let (args, times) = (args.clone(), times.clone());
        tokio::spawn(async move { consume(&args, times).await })
    };
    // Let the consumer attach before the first write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if consumer.is_finished() {
        return Err(consumer
            .await
            .map_err(|e| e.to_string())?
            .err()
            .unwrap_or_default());
    }
    let started = Instant::now();
    let writes = match args.burst {
        Some(n) => {
            println!(
                "burst: {n} creates at concurrency {} against {}, consuming {}",
                args.concurrency, args.url, args.queue
            );
            burst(args.clone(), n, times.clone()).await?
        }
        None => {
            println!(
                "open loop: {} creates/s for {} s against {}, consuming {}",
                args.rate, args.seconds, args.url, args.queue
            );
            open_loop(args.clone(), times.clone()).await?
        }
    };
    // Wait for the messages of every created user.
    let deadline = Instant::now() + DRAIN;
    loop {
        let (created, missing) = {
            let t = locked(&times);
            let missing = t
                .created
                .keys()
                .filter(|id| !t.consumed.contains_key(*id))
                .count();
            (t.created.len(), missing)
        };
        if missing == 0 || Instant::now() > deadline || consumer.is_finished() {
            if missing > 0 {
                eprintln!("{missing} of {created} created users' messages did not arrive");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.abort();

    let t = locked(&times);
    let mut lags = Vec::with_capacity(t.created.len());
    let mut early = 0usize;
    let mut missing = 0usize;
    for (id, answered) in &t.created {
        match t.consumed.get(id) {
            Some(received) => {
                if received < answered {
                    early += 1;
                }
                lags.push(received.saturating_duration_since(*answered));
            }
            None => missing += 1,
        }
    }
    lags.sort_unstable();
    let mut latencies = writes.latencies.clone();
    latencies.sort_unstable();
    let ok = t.created.len();
    let secs = writes.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let write_rate = ok as f64 / secs;
    let consumed = t.created.len() - missing;
    let consume_span = match (t.first_message, t.last_message) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    #[allow(clippy::cast_precision_loss)]
    let consume_rate = if consume_span > 0.0 {
        consumed as f64 / consume_span
    } else {
        0.0
    };
    let until_all = t
        .last_message
        .map_or(0.0, |l| l.saturating_duration_since(started).as_secs_f64());
    println!(
        "writes:   {ok} created, {} errors in {secs:.2} s = {write_rate:.1} creates/s; HTTP latency \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        writes.errors,
        pct(&latencies, 500),
        pct(&latencies, 990),
        latencies.last().copied().map_or(0.0, ms)
    );
    if args.burst.is_none() {
        println!(
            "schedule: largest slip behind the open-loop clock {:.2} ms",
            ms(writes.slipped)
        );
    }
    println!(
        "messages: {consumed} consumed in {consume_span:.2} s (first to last) = {consume_rate:.1} \
         msg/s; all in {until_all:.2} s after the first write; {missing} missing; {} other messages",
        t.foreign
    );
    println!(
        "lag (consumer receipt − 201 receipt): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         {early} of {} messages arrived before their 201 (counted as 0)",
        pct(&lags, 500),
        pct(&lags, 990),
        lags.last().copied().map_or(0.0, ms),
        lags.len()
    );
    Ok(writes.errors == 0 && missing == 0)
}

fn main() -> ExitCode {
    let Some(mut args) = common::parse::<Args>(&["--url"]) else {
        return ExitCode::SUCCESS;
    };
    args.concurrency = args.concurrency.max(1);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
