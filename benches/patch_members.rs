//! Latency of single-member PATCHes on a large group (issue 7: a member change writes O(1) data).
//!
//! ```text
//! cargo build --release
//! DATA_PATH=$(mktemp -d) API_KEY=k LISTEN=127.0.0.1:18000 target/release/scimd serve &
//! cargo bench --bench patch_members -- --url http://127.0.0.1:18000 --token k --members 100000
//! ```
//!
//! Options: `--url BASE_URL` (http only, with its base path), `--token TOKEN` (Bearer), `--members N`
//! (default 100000), `--samples S` single-member operations of each kind to time (default 500).
//!
//! It creates N users (64 at a time), one group, and adds the users in PATCHes of 5,000 members.
//! Then it times S single-member `add` PATCHes (new users) and S single-member `remove` PATCHes
//! (Entra's `{"op":"remove","path":"members","value":[{"value":id}]}`), one at a time, and prints p50,
//! p99 and max for each. Without `--url` it prints this usage and exits 0 (what `cargo test
//! --all-targets` runs). The resources it creates are left on the server.

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Latency of single-member PATCHes on a large group; see the doc comment of
/// `benches/patch_members.rs` for what it does and prints.
#[derive(Parser)]
#[command(
    name = "patch_members",
    bin_name = "cargo bench --bench patch_members --"
)]
struct Args {
    /// scimd's SCIM base URL, with its base path if any; http only
    #[arg(long, value_name = "BASE_URL", value_parser = common::base_url)]
    url: String,
    /// Sent as `Authorization: Bearer TOKEN`
    #[arg(long)]
    token: Option<String>,
    /// Members of the group
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    members: usize,
    /// Single-member operations of each kind to time
    #[arg(long, value_name = "S", default_value_t = 500)]
    samples: usize,
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("Content-Type", "application/scim+json")
            .body(body.to_string());
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_user(&self, name: String) -> Result<String, String> {
        let u = self
            .send(reqwest::Method::POST, "/Users", &json!({"userName": name}))
            .await?;
        u["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no id in {u}"))
    }

    async fn members(&self, group: &str, op: &str, ids: &[String]) -> Result<(), String> {
        let value: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        let body = json!({"schemas": [PATCH_OP], "Operations": [
            {"op": op, "path": "members", "value": value}
        ]});
        self.send(reqwest::Method::PATCH, &format!("/Groups/{group}"), &body)
            .await
            .map(|_| ())
    }
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(i).copied().unwrap_or_default()
    };
    println!(
        "{what}: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        times.len(),
        at(0.5),
        at(0.99),
        times.last().copied().unwrap_or_default()
    );
}

async fn run(client: Client, members: usize, samples: usize) -> Result<(), String> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let created: Vec<Result<String, String>> = futures::stream::iter(
        (0..members + samples).map(|i| client.create_user(format!("pm-{tag}-{i}"))),
    )
    .buffer_unordered(64)
    .collect()
    .await;
    let ids: Vec<String> = created.into_iter().collect::<Result<_, _>>()?;
    println!("created {} users in {:.1?}", ids.len(), started.elapsed());
    let g = client
        .send(
            reqwest::Method::POST,
            "/Groups",
            &json!({"displayName": format!("pm-{tag}")}),
        )
        .await?;
    let group = g["id"].as_str().ok_or("no group id")?.to_owned();
    let (bulk, extra) = ids.split_at(members);
    let started = Instant::now();
    for chunk in bulk.chunks(5_000) {
        client.members(&group, "add", chunk).await?;
    }
    println!(
        "group of {members} members built in {:.1?}",
        started.elapsed()
    );
    let mut adds = Vec::with_capacity(samples);
    for id in extra {
        let t = Instant::now();
        client
            .members(&group, "add", std::slice::from_ref(id))
            .await?;
        adds.push(t.elapsed());
    }
    let mut removes = Vec::with_capacity(samples);
    for id in extra {
        let t = Instant::now();
        client
            .members(&group, "remove", std::slice::from_ref(id))
            .await?;
        removes.push(t.elapsed());
    }
    report("single-member add", adds);
    report("single-member remove", removes);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(args) = common::parse::<Args>(&["--url"]) else {
        return ExitCode::SUCCESS;
    };
    let client = Client {
        http: reqwest::Client::new(),
        url: args.url,
        token: args.token,
    };
    match run(client, args.members, args.samples).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
