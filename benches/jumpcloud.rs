//! Changes per second the `jumpcloud` projection sends into the JumpCloud emulator
//! (`tests/jumpcloud_emulator/`) on loopback.
//!
//! ```text
//! cargo build --release
//! cargo bench --bench jumpcloud -- --users 2000
//! ```
//!
//! Options: `--users N` (default none: print this usage and exit 0, what `cargo test
//! --all-targets` runs), `--throttle-every K` (the emulator answers every K-th request 429, no
//! `Retry-After`, as JumpCloud documents none).
//!
//! It starts the emulator in this process and the release `scimd serve` on a fresh `DATA_PATH`
//! with `PROJECTIONS=jumpcloud`, then measures three phases, each from its first write until
//! `/status` shows the projection's checkpoint at the log position: N user creates (through
//! `POST /Bulk`, 500 per request: each is a lookup by username, a create and an id-map write),
//! N member adds to one group (PATCHes of 100 members: one member operation each), and N user
//! updates (Bulk PATCHes of `displayName`: one `PUT` each). It prints changes per second and the
//! requests the emulator answered per change.

mod common;
#[path = "../tests/jumpcloud_emulator/mod.rs"]
mod jumpcloud_emulator;

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use jumpcloud_emulator::Emulator;

const BIN: &str = env!("CARGO_BIN_EXE_scimd");
const KEY: &str = "jumpcloud-bench-key";
const JC_KEY: &str = "jumpcloud-bench-jc-key";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// Changes per second into the JumpCloud emulator; see the doc comment of
/// `benches/jumpcloud.rs`.
#[derive(Parser)]
#[command(name = "jumpcloud", bin_name = "cargo bench --bench jumpcloud --")]
struct Args {
    /// Users to create, add to a group and update
    #[arg(long, value_name = "N")]
    users: usize,
    /// The emulator answers every K-th request with 429 (no Retry-After)
    #[arg(long, value_name = "K")]
    throttle_every: Option<u64>,
}

struct Server {
    _child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| path.to_owned())?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        ensure!(status.is_success(), "{path}: {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Waits until the jumpcloud checkpoint is the log position.
    async fn caught_up(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let st: Value = self
                .http
                .get(format!("{}/status", self.base))
                .bearer_auth(KEY)
                .send()
                .await?
                .json()
                .await?;
            let sub = &st["subscribers"]["jumpcloud"];
            if sub["checkpoint"] == st["position"] {
                ensure!(sub["parked"] == 0, "changes were parked: {st:#}");
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no catch-up within an hour: {st:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Bulk requests of `ops`, 500 per request, 2 at a time; returns each operation's location.
    async fn bulk(&self, ops: Vec<Value>) -> Result<Vec<String>> {
        let chunks: Vec<Vec<Value>> = ops.chunks(500).map(<[Value]>::to_vec).collect();
        let answers: Vec<Vec<String>> = stream::iter(chunks)
            .map(|ops| async move {
                let r = self
                    .send(
                        reqwest::Method::POST,
                        "/Bulk",
                        &json!({"schemas": [BULK], "Operations": ops}),
                    )
                    .await?;
                r["Operations"]
                    .as_array()
                    .context("no Operations in the BulkResponse")?
                    .iter()
                    .map(|op| {
                        ensure!(
                            op["status"].as_str().is_some_and(|s| s.starts_with('2')),
                            "bulk operation failed: {op}"
                        );
                        Ok(op["location"]
                            .as_str()
                            .and_then(|l| l.rsplit('/').next())
                            .unwrap_or("")
                            .to_owned())
                    })
                    .collect::<Result<Vec<String>>>()
            })
            .buffered(2)
            .try_collect()
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }
}

async fn start_server(data: &std::path::Path, jc: &Emulator) -> Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(data.join("bench-serve.log"))?;
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("serve").env_clear();
    for k in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("DATA_PATH", data.join("data"))
        .env("API_KEY", KEY)
        .env("LISTEN", &listen)
        .env("LOGLEVEL", "warn")
        .env("NO_COLOR", "1")
        .env("PROJECTIONS", "jumpcloud")
        .env("JUMPCLOUD_URL", jc.url())
        .env("JUMPCLOUD_KEY", JC_KEY);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("spawn scimd serve")?;
    let server = Server {
        _child: child,
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = server
            .http
            .get(format!("{}/health", server.base))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(server);
        }
        ensure!(Instant::now() < deadline, "scimd serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `write`, waits for the catch-up, prints the rate of `changes`.
async fn phase<F, Fut, T>(
    server: &Server,
    jc: &Emulator,
    name: &str,
    changes: usize,
    write: F,
) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let requests = jc.state().log.len();
    let started = Instant::now();
    let out = write().await?;
    server.caught_up().await?;
    let seconds = started.elapsed().as_secs_f64();
    let state = jc.state();
    let sent = state.log.len() - requests;
    println!(
        "| {name} | {changes} | {seconds:.2} s | {:.0} | {:.2} | {} |",
        changes as f64 / seconds,
        sent as f64 / changes as f64,
        state.throttled
    );
    Ok(out)
}

async fn run(args: &Args) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("scimd-bench-jc-")
        .tempdir()?;
    let jc = Emulator::start(JC_KEY).await;
    jc.throttle(args.throttle_every, None);
    let server = start_server(tmp.path(), &jc).await?;
    let n = args.users;
    println!("| phase | changes | time | changes/s | requests per change | 429s so far |");
    println!("|---|---|---|---|---|---|");
    let ids = phase(&server, &jc, "user creates", n, || {
        server.bulk(
            (0..n)
                .map(|i| {
                    json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                                 "data": {"userName": format!("bench{i}"),
                                          "emails": [{"value": format!("bench{i}@corp.example")}]}})
                })
                .collect(),
        )
    })
    .await?;
    let group = server
        .send(
            reqwest::Method::POST,
            "/Groups",
            &json!({"displayName": "bench"}),
        )
        .await?["id"]
        .as_str()
        .context("group id")?
        .to_owned();
    server.caught_up().await?;
    phase(&server, &jc, "member adds", n, || async {
        for chunk in ids.chunks(100) {
            let value: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
            let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": value}]});
            server.send(reqwest::Method::PATCH, &format!("/Groups/{group}"), &body).await?;
        }
        Ok(())
    })
    .await?;
    phase(&server, &jc, "user updates", n, || {
        server.bulk(
            ids.iter()
                .map(|id| json!({"method": "PATCH", "path": format!("/Users/{id}"),
                                 "data": {"schemas": [PATCH_OP], "Operations": [
                                     {"op": "replace", "path": "displayName", "value": "Renamed"}]}}))
                .collect(),
        )
    })
    .await?;
    Ok(())
}

fn main() -> ExitCode {
    let Some(args) = common::parse::<Args>(&["--users"]) else {
        return ExitCode::SUCCESS;
    };
    let outcome = tokio::runtime::Runtime::new()
        .context("tokio runtime")
        .and_then(|rt| rt.block_on(run(&args)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jumpcloud bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
