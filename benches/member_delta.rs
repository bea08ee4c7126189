//! What one member added to a large group costs the LDAP and MongoDB projections (issue 12: one
//! small operation, not a rewrite): bytes sent to the backend per add and catch-up latency.
//!
//! ```text
//! cargo build --release
//! cargo bench --bench member_delta -- --ldap ldap://127.0.0.1:47389 --mongo mongodb://127.0.0.1:47017/ --members 100000 --samples 100
//! ```
//!
//! Options: `--ldap URL` and/or `--mongo URL` (the backends; `--ldap-base DN`, default
//! `dc=example,dc=org`, must exist; `--ldap-admin DN`, default `cn=admin,` + the base;
//! `--ldap-password PW`, default `admin` or `LDAP_PASSWORD`: those of `scripts/services/slapd.sh`),
//! `--members N` (default 100000), `--samples S` single-member adds to measure (default 100),
//! `--keep` (leave the entries / database; removed by default).
//!
//! It puts a counting TCP proxy in front of each backend, starts the release `scimd serve` on a fresh
//! `DATA_PATH` with `PROJECTIONS=ldap,mongo` (those given) through the proxies (LDAP into
//! `ou=bench_u_<random>` / `ou=bench_g_<random>`, MongoDB into the database `bench_<random>`), creates
//! N + S users through `POST /Bulk` (1,000 per request), one group, adds N users in PATCHes of 5,000,
//! and waits until every projection's checkpoint is the log position (`GET /status`). Then it sends S
//! single-member `add` PATCHes one at a time; after each 204 it polls `/status` until every
//! projection's checkpoint has reached the position, and records per backend the time from the 204 to
//! the checkpoint (catch-up latency, p50/p99/max) and the bytes sent to the backend meanwhile
//! (client → server through the proxy: the operation plus anything else the projection wrote for
//! it, such as MongoDB's checkpoint document). Without `--ldap` or `--mongo` it prints this usage and
//! exits 0 (what `cargo test --all-targets` runs).

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use common::server::{BIN, Server};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Cost of one member added to a large group in the LDAP and MongoDB projections; see the doc
/// comment of `benches/member_delta.rs` for what it does and prints.
#[derive(Parser)]
#[command(
    name = "member_delta",
    bin_name = "cargo bench --bench member_delta --"
)]
#[command(group(clap::ArgGroup::new("into").required(true).multiple(true).args(["ldap", "mongo"])))]
struct Args {
    /// The LDAP directory (`ldap://host:port`)
    #[arg(long, value_name = "URL")]
    ldap: Option<String>,
    /// Base DN of the LDAP directory (must exist)
    #[arg(long, value_name = "DN", default_value = "dc=example,dc=org")]
    ldap_base: String,
    /// DN to bind as; default `cn=admin,` + the base
    #[arg(long, value_name = "DN")]
    ldap_admin: Option<String>,
    /// Its password
    #[arg(
        long,
        value_name = "PW",
        env = "LDAP_PASSWORD",
        default_value = "admin",
        hide_env_values = true
    )]
    ldap_password: String,
    /// The MongoDB server (`mongodb://host:port/`), database `bench_<random>`
    #[arg(long, value_name = "URL")]
    mongo: Option<String>,
    /// Members of the group
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    members: usize,
    /// Single-member adds to measure
    #[arg(long, value_name = "S", default_value_t = 100)]
    samples: usize,
    /// Leave the entries / database (removed by default)
    #[arg(long)]
    keep: bool,
}

/// A proxy on a free port to `target` (`host:port`), counting the bytes sent to the server.
async fn counting_proxy(target: String) -> Result<(u16, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("bind")?;
    let port = listener.local_addr()?.port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::Relaxed);
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok((port, sent))
}

/// `url` (`scheme://host:port/…`) pointing at 127.0.0.1:`port` instead, and its `host:port`.
fn through_proxy(url: &str, port: u16) -> Result<(String, String)> {
    let (scheme, rest) = url.split_once("://").context("URL without a scheme")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((
        format!("{scheme}://127.0.0.1:{port}/{path}"),
        authority.to_owned(),
    ))
}

/// One backend under test.
struct Target {
    name: &'static str,
    sent: Arc<AtomicU64>,
}

/// Each target's checkpoint in `st` (None if missing).
fn checkpoint(st: &Value, name: &str) -> Option<u64> {
    st["subscribers"][name]["checkpoint"].as_u64()
}

/// Waits until every target's checkpoint is the log position; returns that position.
async fn caught_up(server: &Server, targets: &[Target], within: Duration) -> Result<u64> {
    let deadline = Instant::now() + within;
    let mut shown = Instant::now();
    loop {
        let st = server.status().await?;
        let position = st["position"].as_u64().context("no position in /status")?;
        if targets
            .iter()
            .all(|t| checkpoint(&st, t.name) == Some(position))
        {
            return Ok(position);
        }
        ensure!(
            Instant::now() < deadline,
            "the projections did not catch up within {within:?}: {st:#}"
        );
        if shown.elapsed() > Duration::from_secs(5) {
            let at: Vec<String> = targets
                .iter()
                .map(|t| format!("{} {:?}", t.name, checkpoint(&st, t.name)))
                .collect();
            eprintln!("  waiting: position {position}, {}", at.join(", "));
            shown = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

async fn run(args: &Args) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("scimd-member-delta-bench-")
        .tempdir()
        .context("temp dir")?;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (users_ou, groups_ou) = (format!("bench_u_{suffix}"), format!("bench_g_{suffix}"));
    let database = format!("bench_{suffix}");
    let admin = args
        .ldap_admin
        .clone()
        .unwrap_or_else(|| format!("cn=admin,{}", args.ldap_base));
    let mut env: Vec<(String, String)> = vec![
        ("USER_MODEL_NAME".into(), users_ou.clone()),
        ("GROUP_MODEL_NAME".into(), groups_ou.clone()),
    ];
    let mut targets = Vec::new();
    let mut projections = Vec::new();
    if let Some(url) = &args.ldap {
        let (_, authority) = through_proxy(url, 0)?;
        let (port, sent) = counting_proxy(authority).await?;
        let (proxied, _) = through_proxy(url, port)?;
        env.extend([
            (
                "LDAP_HOSTNAME".into(),
                proxied.trim_end_matches('/').to_owned(),
            ),
            ("LDAP_BASENAME".into(), args.ldap_base.clone()),
            ("LDAP_USERNAME".into(), admin.clone()),
            ("LDAP_PASSWORD".into(), args.ldap_password.clone()),
        ]);
        projections.push("ldap");
        targets.push(Target { name: "ldap", sent });
    }
    if let Some(url) = &args.mongo {
        let (_, authority) = through_proxy(url, 0)?;
        let (port, sent) = counting_proxy(authority).await?;
        let (proxied, _) = through_proxy(url, port)?;
        env.extend([
            ("MONGO_DB".into(), proxied),
            ("MONGO_DATABASE".into(), database.clone()),
        ]);
        projections.push("mongo");
        targets.push(Target {
            name: "mongo",
            sent,
        });
    }
    env.push(("PROJECTIONS".into(), projections.join(",")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start(std::path::Path::new(BIN), &tmp.path().join("data"), &env).await?;
    let (n, s) = (args.members, args.samples);

    let started = Instant::now();
    let ids = server.create_users(&format!("md-{suffix}-"), n + s).await?;
    eprintln!(
        "created {} users (Bulk, 1,000 per request) in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let g = server
        .send(
            reqwest::Method::POST,
            "/Groups",
            &json!({"displayName": format!("md-{suffix}")}),
        )
        .await?;
    let group = g["id"].as_str().context("no group id")?.to_owned();
    let (bulk, extra) = ids.split_at(n);
    let t = Instant::now();
    for chunk in bulk.chunks(5_000) {
        server.add_members(&group, chunk).await?;
    }
    eprintln!(
        "group of {n} members built in {:.1} s (PATCHes of 5,000)",
        t.elapsed().as_secs_f64()
    );
    let position = caught_up(&server, &targets, Duration::from_secs(3600)).await?;
    let build_secs = started.elapsed().as_secs_f64();
    let build_bytes: Vec<u64> = targets
        .iter()
        .map(|t| t.sent.load(Ordering::Relaxed))
        .collect();
    eprintln!(
        "projections caught up at position {position}, {build_secs:.1} s after the first create"
    );

    // Per target: latency (ms) and bytes of each add.
    let mut latency: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut bytes: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut expected = position;
    for id in extra {
        let before: Vec<u64> = targets
            .iter()
            .map(|t| t.sent.load(Ordering::Relaxed))
            .collect();
        server.add_members(&group, std::slice::from_ref(id)).await?;
        let answered = Instant::now();
        expected += 1;
        let mut done: Vec<Option<f64>> = vec![None; targets.len()];
        while done.iter().any(Option::is_none) {
            let st = server.status().await?;
            let at = st["position"].as_u64().context("no position")?;
            ensure!(
                at == expected,
                "position {at}, expected {expected}: another writer?"
            );
            for (k, t) in targets.iter().enumerate() {
                if done[k].is_none() && checkpoint(&st, t.name).is_some_and(|c| c >= expected) {
                    done[k] = Some(answered.elapsed().as_secs_f64() * 1000.0);
                    bytes[k].push((t.sent.load(Ordering::Relaxed) - before[k]) as f64);
                }
            }
            ensure!(
                answered.elapsed() < Duration::from_secs(60),
                "a single add was not projected within 60 s: {st:#}"
            );
        }
        for (k, d) in done.into_iter().enumerate() {
            latency[k].push(d.unwrap_or_default());
        }
    }
    println!(
        "group of {n} members, {s} single-member add PATCHes, one at a time (each 204, then /status polled)"
    );
    for (k, t) in targets.iter().enumerate() {
        let (b50, b99, bmax) = quantiles(bytes[k].clone());
        let (l50, l99, lmax) = quantiles(latency[k].clone());
        println!(
            "{:<6} bytes sent per add: p50 {b50:.0} p99 {b99:.0} max {bmax:.0} (building the group and its users: {} bytes); catch-up after the 204: p50 {l50:.2} ms p99 {l99:.2} ms max {lmax:.2} ms",
            t.name, build_bytes[k]
        );
    }

    server.stop().await?;
    if !args.keep {
        cleanup(args, &admin, &users_ou, &groups_ou, &database).await?;
    }
    Ok(())
}

/// Removes what the projections wrote (not timed).
async fn cleanup(
    args: &Args,
    admin: &str,
    users: &str,
    groups: &str,
    database: &str,
) -> Result<()> {
    let started = Instant::now();
    if let Some(url) = &args.ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(url)
            .await
            .with_context(|| format!("connect to {url}"))?;
        ldap3::drive!(conn);
        ldap.simple_bind(admin, &args.ldap_password)
            .await
            .and_then(|r| r.success())
            .with_context(|| format!("bind as {admin}"))?;
        for ou in [groups, users] {
            let base = format!("ou={ou},{}", args.ldap_base);
            let Ok((entries, _)) = ldap
                .search(
                    &base,
                    ldap3::Scope::OneLevel,
                    "(objectClass=*)",
                    vec!["1.1"],
                )
                .await
                .and_then(|r| r.success())
            else {
                continue;
            };
            let dns: Vec<String> = entries
                .into_iter()
                .map(|e| ldap3::SearchEntry::construct(e).dn)
                .chain([base])
                .collect();
            let _ = stream::iter(dns)
                .map(|dn| {
                    let mut ldap = ldap.clone();
                    async move { ldap.delete(&dn).await.map(|_| ()) }
                })
                .buffered(32)
                .collect::<Vec<_>>()
                .await;
        }
    }
    if let Some(url) = &args.mongo {
        let client = mongodb::Client::with_uri_str(url)
            .await
            .context("connect to MongoDB")?;
        client
            .database(database)
            .drop()
            .await
            .with_context(|| format!("drop {database}"))?;
    }
    eprintln!(
        "(removed the entries / database in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    common::main(
        "member_delta",
        &["--ldap", "--mongo"],
        |args: Args| async move { run(&args).await },
    )
}
