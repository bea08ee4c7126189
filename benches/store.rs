//! The store's size and `scimd log verify`'s memory (issue 15: no read transaction pins freed
//! pages; verify streams with bounded memory).
//!
//! ```text
//! cargo build --release
//! cargo bench --bench store -- --bin target/release/scimd --users 100000
//! cargo bench --bench store -- --bin target/release/scimd --users 100000 --get-after-each-bulk
//! ```
//!
//! Options: `--bin PATH` (the scimd binary; default: the one cargo built), `--users N` (default
//! 100000), `--cache-mb M` (`STORE_CACHE_MB` of the verify run, default 64),
//! `--get-after-each-bulk` (a `GET /Users?count=1` after every Bulk request, as a reader would).
//!
//! It starts `scimd serve` on a fresh DATA_PATH (`PROJECTIONS=none`, a free port), reads one page
//! of Users, creates N users through `POST /Bulk` (1,000 per request, one at a time) and one group
//! per 1,000 users holding them, prints the size of `scimd.redb` (and per 100,000 users), stops the
//! server with SIGTERM, then runs `scimd log verify` with `STORE_CACHE_MB=M` and prints its wall
//! time and peak RSS (from wait4). Without `--users` it prints this usage and exits 0 (what `cargo
//! test --all-targets` runs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use common::server::{BIN, BULK, KEY, Scratch, Server};
use serde_json::{Value, json};

/// The store's size and verify's memory; see the doc comment of `benches/store.rs`.
#[derive(Parser)]
#[command(name = "store", bin_name = "cargo bench --bench store --")]
struct Args {
    /// The scimd binary to run (default: the one cargo built)
    #[arg(long, value_name = "PATH", default_value = BIN)]
    bin: PathBuf,
    /// Users to create
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// STORE_CACHE_MB of the verify run
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
    /// GET /Users?count=1 after every Bulk request
    #[arg(long)]
    get_after_each_bulk: bool,
}

fn main() -> ExitCode {
    common::main("store", &["--users"], run)
}

async fn run(args: Args) -> Result<()> {
    let scratch = Scratch::new("store")?;
    let data = scratch.data();
    let server = Server::start(&args.bin, &data, &[]).await?;
    let loaded = load(&args, &server, &data).await;
    server.stop().await?;
    loaded?;
    let size = std::fs::metadata(data.join("scimd.redb"))?.len() as f64;
    println!("scimd.redb after the server stopped: {:.1} MB", size / 1e6);
    verify(&args, &data)
}

/// A page of Users, as any client or readiness check reads.
async fn read_a_page(server: &Server) -> Result<()> {
    let r = server
        .http
        .get(server.url("/Users?count=1"))
        .bearer_auth(KEY)
        .send()
        .await?;
    ensure!(r.status().is_success(), "GET /Users: {}", r.status());
    Ok(())
}

async fn load(args: &Args, server: &Server, data: &Path) -> Result<()> {
    // One read first: a read transaction cached then and kept would pin every page freed after it.
    read_a_page(server).await?;
    let started = Instant::now();
    let mut created = 0;
    while created < args.users {
        let n = (args.users - created).min(1000);
        let operations: Vec<Value> = (created..created + n)
            .map(|i| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                    "data": {"userName": format!("bench-user-{i}"), "displayName": format!("Bench User {i}"),
                        "emails": [{"value": format!("bench-user-{i}@example.org"), "type": "work"}]}})
            })
            .collect();
        let body = json!({"schemas": [BULK], "Operations": operations});
        let r = server.send(reqwest::Method::POST, "/Bulk", &body).await?;
        let ids: Vec<String> = r["Operations"]
            .as_array()
            .context("no Operations in the BulkResponse")?
            .iter()
            .filter(|o| o["status"] == "201")
            .filter_map(|o| o["location"].as_str())
            .filter_map(|l| l.rsplit('/').next())
            .map(str::to_owned)
            .collect();
        ensure!(
            ids.len() == n,
            "a Bulk request created {} of {n} users",
            ids.len()
        );
        let members: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        let group = json!({"displayName": format!("bench-group-{created}"), "members": members});
        server
            .send(reqwest::Method::POST, "/Groups", &group)
            .await?;
        if args.get_after_each_bulk {
            read_a_page(server).await?;
        }
        created += n;
    }
    let took = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(data.join("scimd.redb"))?.len() as f64;
    println!(
        "created {} users and {} groups in {took:.1} s ({:.0} users/s){}",
        args.users,
        args.users.div_ceil(1000),
        args.users as f64 / took,
        if args.get_after_each_bulk {
            ", a GET after each Bulk"
        } else {
            ""
        }
    );
    println!(
        "scimd.redb: {:.1} MB, {:.1} MB per 100,000 users",
        size / 1e6,
        size / 1e6 / args.users as f64 * 100_000.0
    );
    Ok(())
}

/// Runs `scimd log verify` and prints its time and peak RSS.
fn verify(args: &Args, data: &Path) -> Result<()> {
    let started = Instant::now();
    let child = std::process::Command::new(&args.bin)
        .args(["log", "verify"])
        .env("DATA_PATH", data)
        .env("STORE_CACHE_MB", args.cache_mb.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on the child this function spawned, with valid pointers.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    ensure!(waited >= 0, "wait4 failed");
    let took = started.elapsed().as_secs_f64();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    println!(
        "log verify (STORE_CACHE_MB={}): {} in {took:.1} s, peak RSS {:.0} MB",
        args.cache_mb,
        if ok { "clean" } else { "FAILED" },
        usage.ru_maxrss as f64 / 1024.0
    );
    if !ok {
        bail!("log verify found problems");
    }
    Ok(())
}
