//! Replay benchmark: how fast `scimd replay --projection sql|ldap|mongo --fresh` rebuilds a
//! projection from a log of N events, into SQLite and into PostgreSQL (and MySQL/MariaDB, an LDAP
//! directory, a MongoDB server if asked).
//!
//! ```text
//! cargo bench --bench replay -- --events 100000 --sqlite auto --postgres postgres://postgres@127.0.0.1:35433/scim
//! cargo bench --bench replay -- --events 100000 --ldap ldap://127.0.0.1:47389 --mongo mongodb://127.0.0.1:47017/
//! ```
//!
//! Options:
//!
//! - `--events N`: events in the log (default 100000): 90 % user creates, 5 % group creates with
//!   10 members each, 5 % user replaces (PUT)
//! - `--concurrency C`: concurrent HTTP requests while building the log (default 64)
//! - `--sqlite URL`: replay into this SQLite database (`sqlite:///abs/path.db`); `auto`: a file in the
//!   benchmark's temporary directory
//! - `--postgres URL`: replay into this PostgreSQL database (`postgres://…`)
//! - `--mysql URL`: replay into this MySQL/MariaDB database (`mysql://…`)
//! - `--ldap URL`: replay into this LDAP directory (`ldap://host:port`), with `--ldap-base DN`
//!   (default `dc=example,dc=org`, must exist), `--ldap-admin DN` (default `cn=admin,` + the base) and
//!   `--ldap-password PW` (default `admin`, or `LDAP_PASSWORD`): those of `scripts/services/slapd.sh`
//! - `--mongo URL`: replay into this MongoDB server (`mongodb://…`), database `bench_<random>`
//! - `--data DIR`: keep the store in DIR; a DIR that already holds a store of N events is reused
//!   (the build phase is skipped)
//! - `--keep`: keep the tables / entries / database the replay wrote (removed by default)
//!
//! Phase 1 builds the log through the public interface only: it starts the release `scimd serve` with
//! `PROJECTIONS=none` on a fresh `DATA_PATH` and drives the writes over HTTP, then stops it (SIGTERM).
//! Phase 2, for each database given: runs `scimd replay --projection sql --fresh` with the server
//! stopped (the CLI opens the store itself) into a new pair of tables (`bench_u_<random>` /
//! `bench_g_<random>`), timing the whole command (process start, connect, migrations, replay), then
//! checks the row counts with sqlx and prints events/s. The issue's target is ≥ 20,000 events/s.
//! LDAP: `scimd replay --projection ldap --fresh` into `ou=bench_u_<random>` / `ou=bench_g_<random>`
//! under the base (layout `device`), entries counted with ldap3 (a one-level search per ou), then
//! deleted. MongoDB: `scimd replay --projection mongo --fresh` into the database `bench_<random>`,
//! documents counted with the mongodb driver, then the database dropped.
//!
//! Without a database option it prints this usage and exits 0: that is what `cargo test --all-targets`
//! runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{ArgGroup, Parser};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use common::server::{BIN, KEY, Server, free_port, scimd};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Replay benchmark: how fast `scimd replay --projection sql --fresh` rebuilds the sql projection;
/// see the doc comment of `benches/replay.rs` for the phases and what they print.
#[derive(Parser)]
#[command(name = "replay", bin_name = "cargo bench --bench replay --")]
#[command(group(ArgGroup::new("into").required(true).multiple(true).args(["sqlite", "postgres", "mysql", "ldap", "mongo"])))]
struct Args {
    /// Events in the log: 90 % user creates, 5 % group creates with 10 members each, 5 % user
    /// replaces (PUT)
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = events)]
    events: usize,
    /// Concurrent HTTP requests while building the log
    #[arg(long, value_name = "C", default_value_t = 64)]
    concurrency: usize,
    /// Replay into this SQLite database (`sqlite:///abs/path.db`); `auto`: a file in the benchmark's
    /// temporary directory
    #[arg(long, value_name = "URL|auto")]
    sqlite: Option<String>,
    /// Replay into this PostgreSQL database (`postgres://…`)
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Replay into this MySQL/MariaDB database (`mysql://…`)
    #[arg(long, value_name = "URL")]
    mysql: Option<String>,
    /// Replay into this LDAP directory (`ldap://host:port`)
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
    /// Replay into this MongoDB server (`mongodb://…`), database `bench_<random>`
    #[arg(long, value_name = "URL")]
    mongo: Option<String>,
    /// Keep the store in DIR; a DIR that already holds a store of N events is reused (the build
    /// phase is skipped)
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Keep the tables / entries / database the replay wrote (removed by default)
    #[arg(long)]
    keep: bool,
}

/// `--events`: at least 40 (the mix needs some of each kind).
fn events(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 40 => Ok(n),
        Ok(_) => Err("must be at least 40".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// How the N events are made up.
struct Mix {
    users: usize,
    groups: usize,
    replaces: usize,
}

impl Mix {
    fn of(events: usize) -> Mix {
        let groups = events / 20;
        let replaces = events / 20;
        Mix {
            users: events - groups - replaces,
            groups,
            replaces,
        }
    }
}

/// Sends `n` requests made by `make(i)` at `concurrency`; returns the JSON bodies in index order.
async fn drive(
    http: &reqwest::Client,
    what: &str,
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> (reqwest::Method, String, Value),
) -> Result<Vec<Value>> {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let requests: Vec<(usize, reqwest::Method, String, Value)> = (0..n)
        .map(|i| {
            let (m, u, b) = make(i);
            (i, m, u, b)
        })
        .collect();
    let mut out: Vec<(usize, Value)> = stream::iter(requests)
        .map(|(i, method, url, body)| {
            let http = http.clone();
            let done = done.clone();
            async move {
                let r = http
                    .request(method, &url)
                    .bearer_auth(KEY)
                    .header("Content-Type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .with_context(|| url.clone())?;
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                ensure!(status.is_success(), "{url}: {status}: {text}");
                let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                if k.is_multiple_of((n / 10).max(1)) {
                    eprint!("\r  {what}: {k}/{n}");
                }
                Ok((i, serde_json::from_str(&text).unwrap_or(Value::Null)))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "\r  {what}: {n} in {secs:.1} s ({:.0}/s)          ",
        n as f64 / secs
    );
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// Phase 1: a store of `events` events, built over HTTP.
async fn build_store(data: &Path, args: &Args) -> Result<u64> {
    let mix = Mix::of(args.events);
    let server = Server::start(Path::new(BIN), data, &[]).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let existing = server.position().await?;
    if existing > 0 {
        server.stop().await?;
        ensure!(
            existing as usize == args.events,
            "{} already holds a store of {existing} events, not {}",
            data.display(),
            args.events
        );
        eprintln!(
            "reusing the store in {} ({existing} events)",
            data.display()
        );
        return Ok(existing);
    }
    eprintln!(
        "building a log of {} events: {} user creates, {} group creates (10 members), {} user replaces",
        args.events, mix.users, mix.groups, mix.replaces
    );
    let started = Instant::now();
    let base = server.base.clone();
    let users = drive(&http, "POST /Users", mix.users, args.concurrency, |i| {
        (
            reqwest::Method::POST,
            format!("{base}/Users"),
            json!({
                "schemas": [USER_SCHEMA],
                "userName": format!("bench.user.{i}"),
                "displayName": format!("Bench User {i}"),
                "name": {"givenName": "Bench", "familyName": format!("User{i}")},
                "emails": [{"value": format!("bench.user.{i}@example.org"), "type": "work", "primary": true}],
                "active": true,
            }),
        )
    })
    .await?;
    let ids: Vec<String> = users
        .iter()
        .map(|u| {
            u["id"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no id in a created user: {u}"))
        })
        .collect::<Result<_>>()?;
    drive(&http, "POST /Groups", mix.groups, args.concurrency, |g| {
        let members: Vec<Value> = (0..10)
            .map(|k| json!({"value": ids[(g * 10 + k * 7919) % ids.len()], "type": "User"}))
            .collect();
        (
            reqwest::Method::POST,
            format!("{base}/Groups"),
            json!({"schemas": [GROUP_SCHEMA], "displayName": format!("bench.group.{g}"), "members": members}),
        )
    })
    .await?;
    drive(
        &http,
        "PUT /Users/{id}",
        mix.replaces,
        args.concurrency,
        |i| {
            let id = &ids[(i * 13) % ids.len()];
            (
                reqwest::Method::PUT,
                format!("{base}/Users/{id}"),
                json!({
                    "schemas": [USER_SCHEMA],
                    "userName": format!("bench.user.{}", (i * 13) % ids.len()),
                    "displayName": format!("Bench User {i} (replaced)"),
                    "active": false,
                }),
            )
        },
    )
    .await?;
    let at = server.position().await?;
    server.stop().await?;
    eprintln!(
        "log built: {at} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(at)
}

/// The pool of the benchmark's own connection, for counting and dropping.
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

impl Pool {
    async fn connect(url: &str) -> Result<Pool> {
        Ok(if url.starts_with("sqlite:") {
            Pool::Sqlite(
                sqlx::SqlitePool::connect(url)
                    .await
                    .context("connect to SQLite")?,
            )
        } else if url.starts_with("postgres") {
            Pool::Postgres(
                sqlx::PgPool::connect(url)
                    .await
                    .context("connect to PostgreSQL")?,
            )
        } else {
            Pool::MySql(
                sqlx::MySqlPool::connect(url)
                    .await
                    .context("connect to MySQL")?,
            )
        })
    }

    fn quote(&self, t: &str) -> String {
        match self {
            Pool::MySql(_) => format!("`{t}`"),
            _ => format!("\"{t}\""),
        }
    }

    async fn count(&self, table: &str) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.quote(table));
        match self {
            Pool::Sqlite(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await,
            Pool::Postgres(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await,
            Pool::MySql(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await,
        }
        .with_context(|| format!("count {table}"))
    }

    async fn drop_tables(&self, users: &str, groups: &str) {
        let scope = format!("{users},{groups}");
        for sql in [
            format!("DROP TABLE IF EXISTS {}", self.quote(users)),
            format!("DROP TABLE IF EXISTS {}", self.quote(groups)),
            format!("DELETE FROM scimd_checkpoint WHERE name = 'sql:{scope}'"),
            format!("DELETE FROM scimd_schema_version WHERE scope = '{scope}'"),
        ] {
            let _ = match self {
                Pool::Sqlite(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
                Pool::Postgres(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
                Pool::MySql(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
            };
        }
    }
}

/// Phase 2 for one database: times `scimd replay --projection sql --fresh`; returns events/s.
async fn replay_into(name: &str, url: &str, data: &Path, events: u64, args: &Args) -> Result<f64> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let (users, groups) = (format!("bench_u_{suffix}"), format!("bench_g_{suffix}"));
    let listen = format!("127.0.0.1:{}", free_port()?);
    let started = Instant::now();
    let out = scimd(
        Path::new(BIN),
        data,
        &["replay", "--projection", "sql", "--fresh", "--yes"],
        &[
            ("LISTEN", &listen),
            ("DATABASE_URL", url),
            ("USER_MODEL_NAME", &users),
            ("GROUP_MODEL_NAME", &groups),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .await
    .context("run scimd replay")?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "scimd replay into {name} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = Pool::connect(url).await?;
    let mix = Mix::of(args.events);
    let (nu, ng) = (pool.count(&users).await?, pool.count(&groups).await?);
    if (nu as usize, ng as usize) != (mix.users, mix.groups) {
        bail!(
            "{name}: {nu} user and {ng} group rows after the replay, expected {} and {}",
            mix.users,
            mix.groups
        );
    }
    if !args.keep {
        pool.drop_tables(&users, &groups).await;
    }
    let rate = events as f64 / secs;
    println!(
        "{name:<9} replay of {events} events: {secs:.2} s, {rate:.0} events/s ({nu} user rows, {ng} group rows)"
    );
    Ok(rate)
}

/// Runs `scimd replay --projection NAME --fresh` with `env`; returns the seconds it took.
async fn timed_replay(
    name: &str,
    projection: &str,
    data: &Path,
    env: &[(&str, &str)],
) -> Result<f64> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let started = Instant::now();
    let env: Vec<(&str, &str)> = [("LISTEN", listen.as_str())]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    let out = scimd(
        Path::new(BIN),
        data,
        &["replay", "--projection", projection, "--fresh", "--yes"],
        &env,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .await
    .context("run scimd replay")?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "scimd replay into {name} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

/// Checks the counts against the mix and prints the rate.
fn report(
    name: &str,
    what: &str,
    events: u64,
    secs: f64,
    nu: usize,
    ng: usize,
    args: &Args,
) -> Result<f64> {
    let mix = Mix::of(args.events);
    if (nu, ng) != (mix.users, mix.groups) {
        bail!(
            "{name}: {nu} user and {ng} group {what} after the replay, expected {} and {}",
            mix.users,
            mix.groups
        );
    }
    let rate = events as f64 / secs;
    println!(
        "{name:<9} replay of {events} events: {secs:.2} s, {rate:.0} events/s ({nu} user {what}, {ng} group {what})"
    );
    Ok(rate)
}

/// An ldap3 connection bound as the admin.
async fn ldap_client(url: &str, args: &Args) -> Result<ldap3::Ldap> {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(url)
        .await
        .with_context(|| format!("connect to {url}"))?;
    ldap3::drive!(conn);
    let admin = args
        .ldap_admin
        .clone()
        .unwrap_or_else(|| format!("cn=admin,{}", args.ldap_base));
    ldap.simple_bind(&admin, &args.ldap_password)
        .await
        .and_then(|r| r.success())
        .with_context(|| format!("bind as {admin}"))?;
    Ok(ldap)
}

/// The DNs of the entries right under `base` (a one-level search, no attributes).
async fn ldap_children(ldap: &mut ldap3::Ldap, base: &str) -> Result<Vec<String>> {
    let (entries, _) = ldap
        .search(base, ldap3::Scope::OneLevel, "(objectClass=*)", vec!["1.1"])
        .await
        .and_then(|r| r.success())
        .with_context(|| format!("search {base}"))?;
    Ok(entries
        .into_iter()
        .map(|e| ldap3::SearchEntry::construct(e).dn)
        .collect())
}

/// Phase 2 into an LDAP directory: times `scimd replay --projection ldap --fresh`; returns events/s.
async fn replay_into_ldap(url: &str, data: &Path, events: u64, args: &Args) -> Result<f64> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let (users, groups) = (format!("bench_u_{suffix}"), format!("bench_g_{suffix}"));
    let admin = args
        .ldap_admin
        .clone()
        .unwrap_or_else(|| format!("cn=admin,{}", args.ldap_base));
    let secs = timed_replay(
        "ldap",
        "ldap",
        data,
        &[
            ("LDAP_HOSTNAME", url),
            ("LDAP_BASENAME", &args.ldap_base),
            ("LDAP_USERNAME", &admin),
            ("LDAP_PASSWORD", &args.ldap_password),
            ("USER_MODEL_NAME", &users),
            ("GROUP_MODEL_NAME", &groups),
        ],
    )
    .await?;
    let mut ldap = ldap_client(url, args).await?;
    let mut counts = Vec::new();
    for ou in [&users, &groups] {
        let base = format!("ou={ou},{}", args.ldap_base);
        let dns = ldap_children(&mut ldap, &base).await?;
        counts.push(dns.len());
        if !args.keep {
            let started = Instant::now();
            stream::iter(dns.into_iter().chain([base.clone()]).map(|dn| {
                let mut ldap = ldap.clone();
                async move { ldap.delete(&dn).await.and_then(|r| r.success()).map(|_| ()) }
            }))
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await
            .with_context(|| format!("delete under {base}"))?;
            eprintln!(
                "  (deleted {base} in {:.1} s, not timed)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    report("ldap", "entries", events, secs, counts[0], counts[1], args)
}

/// Phase 2 into a MongoDB server: times `scimd replay --projection mongo --fresh`; returns events/s.
async fn replay_into_mongo(url: &str, data: &Path, events: u64, args: &Args) -> Result<f64> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let database = format!("bench_{suffix}");
    let secs = timed_replay(
        "mongo",
        "mongo",
        data,
        &[("MONGO_DB", url), ("MONGO_DATABASE", &database)],
    )
    .await?;
    let db = mongodb::Client::with_uri_str(url)
        .await
        .context("connect to MongoDB")?
        .database(&database);
    let mut counts = Vec::new();
    for c in ["Users", "Groups"] {
        let n = db
            .collection::<mongodb::bson::Document>(c)
            .count_documents(mongodb::bson::doc! {})
            .await
            .with_context(|| format!("count {database}.{c}"))?;
        counts.push(n as usize);
    }
    if !args.keep {
        db.drop()
            .await
            .with_context(|| format!("drop {database}"))?;
    }
    report(
        "mongo",
        "documents",
        events,
        secs,
        counts[0],
        counts[1],
        args,
    )
}

/// Builds the store (or reuses `--data`) and replays it into each database given.
async fn run(args: &Args) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("scimd-replay-bench-")
        .tempdir()
        .context("temp dir")?;
    let data = args.data.clone().unwrap_or_else(|| tmp.path().join("data"));
    std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
    let events = build_store(&data, args).await?;
    let mut targets: Vec<(&str, String)> = Vec::new();
    if let Some(u) = &args.sqlite {
        let url = if u == "auto" {
            format!("sqlite://{}", tmp.path().join("projection.db").display())
        } else {
            u.clone()
        };
        targets.push(("sqlite", url));
    }
    if let Some(u) = &args.postgres {
        targets.push(("postgres", u.clone()));
    }
    if let Some(u) = &args.mysql {
        targets.push(("mysql", u.clone()));
    }
    for (name, url) in &targets {
        replay_into(name, url, &data, events, args).await?;
    }
    if let Some(url) = &args.ldap {
        replay_into_ldap(url, &data, events, args).await?;
    }
    if let Some(url) = &args.mongo {
        replay_into_mongo(url, &data, events, args).await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let needs = ["--sqlite", "--postgres", "--mysql", "--ldap", "--mongo"];
    common::main(
        "replay",
        &needs,
        |args: Args| async move { run(&args).await },
    )
}
