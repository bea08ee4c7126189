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

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use common::server::{BIN, PATCH_OP, Server};
use serde_json::{Value, json};

use jumpcloud_emulator::Emulator;

const JC_KEY: &str = "jumpcloud-bench-jc-key";
/// How long a phase may take to reach the emulator.
const CATCH_UP: Duration = Duration::from_secs(3600);

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
    server.caught_up("jumpcloud", CATCH_UP).await?;
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
    let server = Server::start(
        std::path::Path::new(BIN),
        &tmp.path().join("data"),
        &[
            ("PROJECTIONS", "jumpcloud"),
            ("JUMPCLOUD_URL", &jc.url()),
            ("JUMPCLOUD_KEY", JC_KEY),
        ],
    )
    .await?;
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
            500,
            2,
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
    server.caught_up("jumpcloud", CATCH_UP).await?;
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
            500,
            2,
        )
    })
    .await?;
    Ok(())
}

fn main() -> ExitCode {
    common::main("jumpcloud", &["--users"], |args: Args| async move {
        run(&args).await
    })
}
