//! AMQP publish throughput for single-member changes to one large group, in both
//! `AMQP_GROUP_MEMBERS` modes (issue 15: a `full` message used to decode every member resource).
//!
//! ```text
//! env RMQ_DIR=/tmp/scimd-bench-rmq RMQ_PORT=35698 RMQ_PLUGINS= scripts/services/rabbitmq.sh
//! cargo bench --bench amqp_groups -- --amqp amqp://guest:guest@127.0.0.1:35698/%2f \
//!   --members 100000 --changes 1000
//! env RMQ_DIR=/tmp/scimd-bench-rmq RMQ_PORT=35698 scripts/services/rabbitmq.sh stop
//! ```
//!
//! For each mode (`--modes full,changes` by default), on a fresh DATA_PATH: a `scimd serve`
//! publishing to a queue of its own creates N + K users through Bulk and one group holding N of
//! them (PATCHes of 5,000) and publishes all that; a second server, without AMQP, makes K
//! single-member `add` PATCHes (one at a time) so that they wait in the log; a third, publishing
//! again, is timed from its start until its AMQP checkpoint reaches the end of the log. It prints
//! the K messages' rate, their size, when the consumer (in this process, acking everything) had
//! the last one, and that server's peak RSS. `--bin PATH` runs another scimd build (e.g. one from
//! before the member cache). Without `--amqp` it prints this usage and exits 0 (what `cargo test
//! --all-targets` runs).

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use common::server::{BIN, PATCH_OP, Scratch, Server, rss_mb};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

/// AMQP publish throughput for single-member changes to one large group; see the doc comment of
/// `benches/amqp_groups.rs`.
#[derive(Parser)]
#[command(name = "amqp_groups", bin_name = "cargo bench --bench amqp_groups --")]
struct Args {
    /// The broker to publish to
    #[arg(long, value_name = "URL")]
    amqp: String,
    /// Members of the group
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    members: usize,
    /// Single-member changes to time
    #[arg(long, value_name = "K", default_value_t = 1000)]
    changes: usize,
    /// AMQP_GROUP_MEMBERS modes to run, comma-separated
    #[arg(long, default_value = "full,changes", value_delimiter = ',')]
    modes: Vec<String>,
    /// The scimd binary to run (default: the one cargo built)
    #[arg(long, value_name = "PATH", default_value = BIN)]
    bin: PathBuf,
}

/// What the consumer saw of the timed messages (those after position `after`).
#[derive(Default)]
struct Seen {
    after: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Microseconds since `epoch` when the last timed message arrived.
    last_us: AtomicU64,
}

/// Consumes `queue` (declared durable, as scimd declares it) and acks everything, counting the
/// messages past `seen.after`.
async fn consume(url: &str, queue: &str, seen: Arc<Seen>, epoch: Instant) -> Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), durable, FieldTable::default())
        .await?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut consumer = channel
        .basic_consume(queue.into(), "bench".into(), no_ack, FieldTable::default())
        .await?;
    tokio::spawn(async move {
        let _keep = connection;
        while let Some(Ok(delivery)) = consumer.next().await {
            let position = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("scim-position").cloned());
            let Some(AMQPValue::LongLongInt(position)) = position else {
                continue;
            };
            if u64::try_from(position).unwrap_or(0) > seen.after.load(Ordering::Relaxed) {
                seen.messages.fetch_add(1, Ordering::Relaxed);
                seen.bytes
                    .fetch_add(delivery.data.len() as u64, Ordering::Relaxed);
                seen.last_us
                    .store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

async fn run_mode(args: &Args, mode: &str) -> Result<()> {
    let scratch = Scratch::new("amqp-groups")?;
    let data = scratch.data();
    let queue = format!("bench-groups-{mode}-{}", std::process::id());
    let epoch = Instant::now();
    let seen = Arc::new(Seen {
        after: AtomicU64::new(u64::MAX),
        ..Seen::default()
    });
    consume(&args.amqp, &queue, seen.clone(), epoch).await?;
    let publishing = [
        ("AMQP", args.amqp.as_str()),
        ("QUEUE", queue.as_str()),
        ("AMQP_GROUP_MEMBERS", mode),
    ];

    let built = Instant::now();
    let server = Server::start(&args.bin, &data, &publishing).await?;
    let users = server
        .create_users("amqp-groups-", args.members + args.changes)
        .await?;
    let group = server
        .send(
            reqwest::Method::POST,
            "/Groups",
            &json!({"displayName": "amqp-groups-bench"}),
        )
        .await?;
    let group = group["id"].as_str().context("no group id")?.to_owned();
    for chunk in users[..args.members].chunks(5000) {
        server.add_members(&group, chunk).await?;
    }
    let before = server.caught_up("amqp", Duration::from_secs(3600)).await?;
    server.stop().await?;
    println!(
        "[{mode}] {} users and a group of {} published in {:.1} s",
        users.len(),
        args.members,
        built.elapsed().as_secs_f64()
    );

    let server = Server::start(&args.bin, &data, &[]).await?;
    for id in &users[args.members..] {
        let body = json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": id}]}
        ]});
        server
            .send(reqwest::Method::PATCH, &format!("/Groups/{group}"), &body)
            .await?;
    }
    server.stop().await?;

    seen.after.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let server = Server::start(&args.bin, &data, &publishing).await?;
    let end = server.caught_up("amqp", Duration::from_secs(3600)).await?;
    let took = started.elapsed().as_secs_f64();
    let (peak, _) = rss_mb(server.pid())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.messages.load(Ordering::Relaxed) < end - before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = seen.messages.load(Ordering::Relaxed);
    let last = Duration::from_micros(seen.last_us.load(Ordering::Relaxed))
        .saturating_sub(started.duration_since(epoch))
        .as_secs_f64();
    server.stop().await?;
    println!(
        "[{mode}] {} messages (single-member adds to a group of {}) published in {took:.2} s: \
         {:.1} messages/s; {:.2} MB per message; consumer had {received} of them, the last after \
         {last:.2} s; server peak RSS {peak:.0} MB",
        end - before,
        args.members,
        (end - before) as f64 / took,
        seen.bytes.load(Ordering::Relaxed) as f64 / received.max(1) as f64 / 1e6,
    );
    Ok(())
}

fn main() -> ExitCode {
    common::main("amqp_groups", &["--amqp"], |args: Args| async move {
        for mode in &args.modes {
            run_mode(&args, mode)
                .await
                .with_context(|| format!("AMQP_GROUP_MEMBERS={mode}"))?;
        }
        Ok(())
    })
}
