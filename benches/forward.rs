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

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use common::server::{BIN, KEY, PATCH_OP, Server, scimd};
use serde_json::{Value, json};

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

async fn run(args: &Args) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("scimd-forward-bench-")
        .tempdir()?;
    let (source_dir, upstream_dir) = (tmp.path().join("source"), tmp.path().join("upstream"));
    std::fs::create_dir_all(&source_dir)?;
    std::fs::create_dir_all(&upstream_dir)?;
    let bin = std::path::Path::new(BIN);
    let upstream = Server::start(bin, &upstream_dir.join("data"), &[]).await?;
    let source = Server::start(bin, &source_dir.join("data"), &[]).await?;
    let users = source.create_users("fwd-", args.users).await?;
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
    source.stop().await?;
    let started = Instant::now();
    let out = scimd(
        bin,
        &source_dir.join("data"),
        &["replay", "--projection", "scim"],
        &[
            ("LISTEN", "127.0.0.1:9"),
            ("PROJECTIONS", "none"),
            ("FORWARD_SCIM_URL", &upstream.base),
            ("FORWARD_SCIM_KEY", KEY),
        ],
    )
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
        .get(upstream.url("/Users?count=0"))
        .bearer_auth(KEY)
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
    common::main("forward", &["--users"], |args: Args| async move {
        run(&args).await
    })
}
