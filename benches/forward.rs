//! Changes per second the `scim` projection forwards into an upstream scimd on loopback (issue 13).
//!
//! ```text
//! cargo build --release
//! cargo bench --bench forward -- --users 10000 --group-size 100
//! ```
//!
//! Options: `--users N` (what makes it run), `--group-size M` (default 100: one group per M users,
//! holding them), `--patches P` (default 1000: single-member PATCHes after the groups).
//!
//! It starts two release `scimd serve` on fresh `DATA_PATH`s: the upstream, and the source with
//! `PROJECTIONS=none`, writes the workload into the source (N users through `POST /Bulk`, N/M groups
//! of M members, P member PATCHes moving a user between two groups), stops the source, and times
//! `scimd replay --projection scim` into the empty upstream (store opened directly: what a catch-up
//! after an outage costs). It prints the changes forwarded (one per resource, deltas folded per
//! batch), the seconds and changes/s, and checks the upstream's user count. Without `--users` it
//! prints this usage and exits 0 (what `cargo test --all-targets` runs).

mod common;

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_scimd");
const KEY: &str = "forward-bench-key";
const UPSTREAM_KEY: &str = "forward-bench-upstream-key";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Changes/s of the scim projection into an upstream scimd; see the doc comment of
/// `benches/forward.rs`.
#[derive(Parser)]
#[command(name = "forward", bin_name = "cargo bench --bench forward --")]
struct Args {
    /// Users to create and forward
    #[arg(long, value_name = "N")]
    users: usize,
    /// Members per group (one group per this many users)
    #[arg(long, value_name = "M", default_value_t = 100)]
    group_size: usize,
    /// Single-member PATCHes after the groups
    #[arg(long, value_name = "P", default_value_t = 1000)]
    patches: usize,
}

struct Server {
    _child: tokio::process::Child,
    base: String,
    key: &'static str,
    http: reqwest::Client,
}

impl Server {
    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        ensure!(status.is_success(), "{path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn command(data: &Path, key: &str, listen: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear();
    for k in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("DATA_PATH", data)
        .env("API_KEY", key)
        .env("LISTEN", listen)
        .env("LOGLEVEL", "warn")
        .env("NO_COLOR", "1")
        .env("PROJECTIONS", "none");
    cmd
}

async fn start(dir: &Path, key: &'static str) -> Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let child = command(&dir.join("data"), key, &listen)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("spawn scimd serve")?;
    let server = Server {
        _child: child,
        base: format!("http://{listen}"),
        key,
        http: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server
        .http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        ensure!(Instant::now() < deadline, "scimd serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(server)
}

/// Creates `n` users through Bulk, 1,000 per request; returns their ids.
async fn create_users(server: &Server, n: usize) -> Result<Vec<String>> {
    let chunks: Vec<(usize, usize)> = (0..n)
        .step_by(1000)
        .map(|s| (s, (s + 1000).min(n)))
        .collect();
    let answers: Vec<Vec<String>> = stream::iter(chunks)
        .map(|(from, to)| async move {
            let ops: Vec<Value> = (from..to)
                .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                                "data": {"userName": format!("fwd-{i}"), "displayName": format!("User {i}")}}))
                .collect();
            let r = server
                .send(reqwest::Method::POST, "/Bulk", &json!({"schemas": [BULK], "Operations": ops}))
                .await?;
            r["Operations"]
                .as_array()
                .context("no Operations")?
                .iter()
                .map(|op| {
                    op["location"]
                        .as_str()
                        .and_then(|l| l.rsplit('/').next())
                        .map(str::to_owned)
                        .with_context(|| format!("bulk create failed: {op}"))
                })
                .collect::<Result<Vec<String>>>()
        })
        .buffered(4)
        .try_collect()
        .await?;
    Ok(answers.into_iter().flatten().collect())
}

async fn run(args: &Args) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("scimd-forward-bench-")
        .tempdir()?;
    let (source_dir, upstream_dir) = (tmp.path().join("source"), tmp.path().join("upstream"));
    std::fs::create_dir_all(&source_dir)?;
    std::fs::create_dir_all(&upstream_dir)?;
    let upstream = start(&upstream_dir, UPSTREAM_KEY).await?;
    let source = start(&source_dir, KEY).await?;
    let users = create_users(&source, args.users).await?;
    let size = args.group_size.max(1);
    let mut groups = Vec::new();
    for (g, chunk) in users.chunks(size).enumerate() {
        let members: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        let r = source
            .send(
                reqwest::Method::POST,
                "/Groups",
                &json!({"displayName": format!("group-{g}"), "members": members}),
            )
            .await?;
        groups.push(r["id"].as_str().context("group id")?.to_owned());
    }
    if groups.len() >= 2 {
        for i in 0..args.patches {
            let member = &users[i % users.len()];
            let (from, to) = (&groups[i % 2], &groups[(i + 1) % 2]);
            for (group, op) in [(to, "add"), (from, "remove")] {
                let value = match op {
                    "add" => json!({"op": "add", "path": "members", "value": [{"value": member}]}),
                    _ => json!({"op": "remove", "path": format!("members[value eq \"{member}\"]")}),
                };
                source
                    .send(
                        reqwest::Method::PATCH,
                        &format!("/Groups/{group}"),
                        &json!({"schemas": [PATCH_OP], "Operations": [value]}),
                    )
                    .await?;
            }
        }
    }
    drop(source);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let out = command(&source_dir.join("data"), KEY, "127.0.0.1:9")
        .args(["replay", "--projection", "scim"])
        .env("FORWARD_SCIM_URL", &upstream.base)
        .env("FORWARD_SCIM_KEY", UPSTREAM_KEY)
        .output()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = upstream
        .http
        .get(format!("{}/Users?count=0", upstream.base))
        .bearer_auth(UPSTREAM_KEY)
        .send()
        .await?
        .json::<Value>()
        .await?;
    ensure!(
        listed["totalResults"].as_u64() == Some(args.users as u64),
        "the upstream holds {} users, not {}",
        listed["totalResults"],
        args.users
    );
    let changes = args.users + groups.len();
    println!(
        "forwarded {} users and {} groups of {size} (+{} member PATCHes, folded) into an upstream scimd: \
         {seconds:.1} s, {:.0} changes/s",
        args.users,
        groups.len(),
        args.patches * 2,
        changes as f64 / seconds
    );
    Ok(())
}

fn main() -> ExitCode {
    let Some(args) = common::parse::<Args>(&["--users"]) else {
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forward bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
