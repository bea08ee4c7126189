//! The store's size and `scimd log verify`'s memory (issue 15: no read transaction pins freed
//! pages; verify streams with bounded memory).
//!
//! ```text
//! cargo build --release
//! cargo bench --bench store -- --bin target/release/scimd --users 100000
//! cargo bench --bench store -- --bin target/release/scimd --users 100000 --get-after-each-bulk
//! ```
//!
//! Options: `--bin PATH` (the scimd binary), `--users N` (default 100000), `--port P` (default
//! 41170), `--cache-mb M` (`STORE_CACHE_MB` of the verify run, default 64),
//! `--get-after-each-bulk` (a `GET /Users?count=1` after every Bulk request, as a reader would).
//!
//! It starts `scimd serve` on a fresh DATA_PATH (`PROJECTIONS=none`), reads one page of Users,
//! creates N users through
//! `POST /Bulk` (1,000 per request, one at a time) and one group per 1,000 users holding them,
//! prints the size of `scimd.redb` (and per 100,000 users), stops the server with SIGTERM, then
//! runs `scimd log verify` with `STORE_CACHE_MB=M` and prints its wall time and peak RSS (from
//! wait4). Without `--bin` it prints this usage and exits 0 (what `cargo test --all-targets` runs).

mod common;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

/// The store's size and verify's memory; see the doc comment of `benches/store.rs`.
#[derive(Parser)]
#[command(name = "store", bin_name = "cargo bench --bench store --")]
struct Args {
    /// The scimd binary to run
    #[arg(long, value_name = "PATH")]
    bin: PathBuf,
    /// Users to create
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Port the server listens on (127.0.0.1)
    #[arg(long, default_value_t = 41170)]
    port: u16,
    /// STORE_CACHE_MB of the verify run
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
    /// GET /Users?count=1 after every Bulk request
    #[arg(long)]
    get_after_each_bulk: bool,
}

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

#[tokio::main]
async fn main() -> ExitCode {
    let Some(args) = common::parse::<Args>(&["--bin"]) else {
        return ExitCode::SUCCESS;
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("scimd-bench-store-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{}", args.port);
    let mut server = Command::new(&args.bin)
        .arg("serve")
        .env("DATA_PATH", &data)
        .env("API_KEY", "k")
        .env("LISTEN", format!("127.0.0.1:{}", args.port))
        .env("PROJECTIONS", "none")
        .env("LOGLEVEL", "warn")
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.bin.display()))?;
    let result = load(&args, &url, &data).await;
    // SAFETY: kill(2) on the server this run started.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let _ = server.wait();
    let result = result.and_then(|()| verify(&args, &data));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn load(args: &Args, url: &str, data: &std::path::Path) -> Result<(), String> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{url}/health")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the server did not answer /health".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let post = |path: &str, body: Value| {
        http.post(format!("{url}{path}"))
            .bearer_auth("k")
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    // One read first, as any client or readiness check makes: a read transaction cached then and
    // kept would pin every page freed after it.
    http.get(format!("{url}/Users?count=1"))
        .bearer_auth("k")
        .send()
        .await
        .map_err(|e| e.to_string())?;
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
        let r = post(
            "/Bulk",
            json!({"schemas": [BULK], "Operations": operations}),
        )
        .await
        .map_err(|e| e.to_string())?;
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        let ids: Vec<String> = body["Operations"]
            .as_array()
            .ok_or("no Operations in the BulkResponse")?
            .iter()
            .filter(|o| o["status"] == "201")
            .filter_map(|o| o["location"].as_str())
            .filter_map(|l| l.rsplit('/').next())
            .map(str::to_owned)
            .collect();
        if ids.len() != n {
            return Err(format!("a Bulk request created {} of {n} users", ids.len()));
        }
        let members: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        let r = post(
            "/Groups",
            json!({"displayName": format!("bench-group-{created}"), "members": members}),
        )
        .await
        .map_err(|e| e.to_string())?;
        if r.status().as_u16() != 201 {
            return Err(format!("creating a group: {}", r.status()));
        }
        if args.get_after_each_bulk {
            http.get(format!("{url}/Users?count=1"))
                .bearer_auth("k")
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        created += n;
    }
    let took = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(data.join("scimd.redb"))
        .map_err(|e| e.to_string())?
        .len() as f64;
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
fn verify(args: &Args, data: &std::path::Path) -> Result<(), String> {
    let started = Instant::now();
    let child = Command::new(&args.bin)
        .args(["log", "verify"])
        .env("DATA_PATH", data)
        .env("STORE_CACHE_MB", args.cache_mb.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on the child this function spawned, with valid pointers.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if waited < 0 {
        return Err("wait4 failed".into());
    }
    let took = started.elapsed().as_secs_f64();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    println!(
        "log verify (STORE_CACHE_MB={}): {} in {took:.1} s, peak RSS {:.0} MB",
        args.cache_mb,
        if ok { "clean" } else { "FAILED" },
        usage.ru_maxrss as f64 / 1024.0
    );
    if ok {
        Ok(())
    } else {
        Err("log verify found problems".into())
    }
}
