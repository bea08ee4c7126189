//! Expensive reads must slow only themselves (issue 15): `/health` latency idle and under
//! concurrent unindexed filters, and the memory one list request adds, at several store sizes.
//!
//! ```text
//! cargo bench --bench reads -- --users 20000,100000
//! ```
//!
//! For each size N: a fresh `scimd serve` (`PROJECTIONS=none`), N users through Bulk, then
//! - `/health` latency: `--samples` GETs one at a time, idle, then again while `--scans` clients
//!   each send `GET /Users?filter=displayName co "…"&count=10` in a loop (a filter the indexes
//!   cannot answer: a full scan of the Users), printing p50 / p99 / max of both and the scans' rate;
//! - memory per list request: for each kind of list (`filter=userName pr&count=1`, `sortBy=userName
//!   &count=10`, the unindexed filter, a plain page), the server's peak RSS is reset
//!   (/proc/PID/clear_refs), one request is sent, and the peak's growth over the RSS before it is
//!   printed, for each of `--repeat` tries (the first may also fill the store's page cache).
//!
//! The growth should not depend on N. Without `--users` it prints this usage and exits 0 (what
//! `cargo test --all-targets` runs).

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use common::server::{BIN, KEY, Scratch, Server, reset_peak_rss, rss_mb};

/// `/health` under unindexed filters and RSS per list request; see the doc comment of
/// `benches/reads.rs`.
#[derive(Parser)]
#[command(name = "reads", bin_name = "cargo bench --bench reads --")]
struct Args {
    /// Store sizes to measure, comma-separated
    #[arg(long, value_name = "N,…", value_delimiter = ',')]
    users: Vec<usize>,
    /// `/health` requests per measurement
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Concurrent clients sending unindexed filters
    #[arg(long, default_value_t = 4)]
    scans: usize,
    /// Tries per kind of list request
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The scimd binary to run (default: the one cargo built)
    #[arg(long, value_name = "PATH", default_value = BIN)]
    bin: PathBuf,
}

/// A filter no index answers and no user matches.
const UNINDEXED: &str = "/Users?filter=displayName%20co%20%22no-such-name%22&count=10";

/// The list requests whose memory is measured.
const LISTS: [(&str, &str); 4] = [
    (
        "filter=userName pr&count=1",
        "/Users?filter=userName%20pr&count=1",
    ),
    (
        "sortBy=userName&count=10",
        "/Users?sortBy=userName&count=10",
    ),
    ("filter=displayName co (unindexed)", UNINDEXED),
    ("count=100 (a plain page)", "/Users?count=100"),
];

/// GET `path` with the key; the answer must be 200.
async fn get(server: &Server, path: &str) -> Result<()> {
    let r = server
        .http
        .get(server.url(path))
        .bearer_auth(KEY)
        .send()
        .await?;
    let status = r.status();
    r.bytes().await?;
    ensure!(status.is_success(), "{path}: {status}");
    Ok(())
}

/// `samples` GETs of `/health` one at a time: p50, p99, max in ms.
async fn health(server: &Server, samples: usize) -> Result<(f64, f64, f64)> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        get(server, "/health").await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), times[times.len() - 1]))
}

async fn run_size(args: &Args, users: usize) -> Result<()> {
    let scratch = Scratch::new("reads")?;
    let server = Arc::new(Server::start(&args.bin, &scratch.data(), &[]).await?);
    let started = Instant::now();
    server.create_users("reads-", users).await?;
    println!(
        "[{users} users] created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Warm up: the store's pages in the cache, the first scan's allocations made.
    get(&server, UNINDEXED).await?;
    let idle = health(&server, args.samples).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let scans = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..args.scans {
        let (server, stop, scans) = (server.clone(), stop.clone(), scans.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                get(&server, UNINDEXED).await?;
                scans.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    // Let every scanning client have a request in flight first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_from = Instant::now();
    let loaded = health(&server, args.samples).await?;
    let loaded_for = loaded_from.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await??;
    }
    println!(
        "[{users} users] /health p50 / p99 / max: idle {:.2} / {:.2} / {:.2} ms; under {} \
         unindexed filters {:.2} / {:.2} / {:.2} ms ({:.1} scans/s meanwhile)",
        idle.0,
        idle.1,
        idle.2,
        args.scans,
        loaded.0,
        loaded.1,
        loaded.2,
        scans.load(Ordering::Relaxed) as f64 / loaded_for
    );

    for (name, path) in LISTS {
        let mut growth = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            reset_peak_rss(server.pid())?;
            let (_, before) = rss_mb(server.pid())?;
            get(&server, path).await?;
            let (peak, _) = rss_mb(server.pid())?;
            growth.push(format!("{:+.1}", peak - before));
        }
        let (_, rss) = rss_mb(server.pid())?;
        println!(
            "[{users} users] {name}: peak RSS {} MB (each try), now {rss:.0} MB",
            growth.join(" ")
        );
    }
    let server = Arc::try_unwrap(server)
        .map_err(|_| anyhow::anyhow!("a scanning client still holds the server"))?;
    server.stop().await
}

fn main() -> ExitCode {
    common::main("reads", &["--users"], |args: Args| async move {
        for &users in &args.users {
            run_size(&args, users)
                .await
                .with_context(|| format!("{users} users"))?;
        }
        Ok(())
    })
}
