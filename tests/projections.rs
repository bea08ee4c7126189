//! Projections (issue 4), from outside: a real `scimd serve` materialising Users and Groups into flat
//! files and into real SQLite, PostgreSQL and MariaDB databases, read back with sqlx (or from the
//! file system) and compared, document by document, with what `GET` returns.
//!
//! Needs `SCIMD_TEST_POSTGRES_URL` (with `SCIMD_TEST_POSTGRES_STOP` / `SCIMD_TEST_POSTGRES_START` for
//! the outage test) and `SCIMD_TEST_MYSQL_URL`; `scripts/test` starts throwaway servers and exports
//! them (`SCIMD_TEST_SERVICES_ONLY=1 scripts/test cargo test --test projections` runs only this
//! file). SQLite needs nothing (a file in a temporary directory). A test whose database is not
//! configured prints a notice and passes, except with `CI=true`, where it fails.
//!
//! The databases are shared: every test writes to its own pair of tables (`u_<random>` /
//! `g_<random>`) and drops them at the end. The outage test stops and starts the whole PostgreSQL
//! server, so it holds [`POSTGRES`] for writing and every other PostgreSQL test holds it for
//! reading.
//!
//! Unless a test says otherwise, servers run with `PUBLIC_URL` set, so that `GET` and the
//! projections render the same absolute `meta.location` and `$ref` and documents compare as they
//! are; the file test runs without it and checks the relative locations projections fall back to.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Read: the test needs PostgreSQL up. Write: the test stops and starts PostgreSQL.
static POSTGRES: RwLock<()> = RwLock::const_new(());

/// How long a projection may take to catch up when nothing is wrong.
const CONVERGE: Duration = Duration::from_secs(60);
/// How long it may take after its backend came back (the runner's backoff is capped at 15 s).
const RECOVERY: Duration = Duration::from_secs(120);
/// What `meta.location` and `$ref` start with (in `GET` and in the projections).
const PUBLIC_URL: &str = "https://scim.example.test";
/// A password some users are created with; it must never reach a projection.
const PASSWORD: &str = "Pr0jected-n3ver-7c1e";

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// The value of a `SCIMD_TEST_*` variable; `None` (after a notice) when unset, a panic with `CI=true`.
fn service_var(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{var} is not set and CI=true: the {what} projection tests must run in CI \
                     (scripts/test starts {what} and exports it)"
                );
            }
            eprintln!(
                "NOTICE: skipping this {what} test: {var} is not set \
                 (scripts/test starts a throwaway {what} and sets it)"
            );
            None
        }
    }
}

/// Runs a `SCIMD_TEST_*_STOP` / `_START` command line and asserts it succeeded.
fn control(var: &str) {
    let cmd = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: the outage test needs scripts/test's controls")
    });
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .output()
        .unwrap_or_else(|e| panic!("run {var} ({cmd}): {e}"));
    assert!(
        out.status.success(),
        "{var} ({cmd}) failed with {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts PostgreSQL again when dropped, so that a failing outage test does not leave it down for
/// the other tests.
struct RestartPostgres {
    stopped: bool,
}

impl RestartPostgres {
    fn stop(&mut self) {
        control("SCIMD_TEST_POSTGRES_STOP");
        self.stopped = true;
    }
    fn start(&mut self) {
        control("SCIMD_TEST_POSTGRES_START");
        self.stopped = false;
    }
}

impl Drop for RestartPostgres {
    fn drop(&mut self) {
        if self.stopped {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(std::env::var("SCIMD_TEST_POSTGRES_START").unwrap_or_default())
                .status();
        }
    }
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

// ---------------------------------------------------------------------------------------------
// SQL databases, read with sqlx
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Holds the PostgreSQL lock for as long as the test uses the database.
#[allow(dead_code)]
enum PgGuard {
    Read(RwLockReadGuard<'static, ()>),
    Write(RwLockWriteGuard<'static, ()>),
}

/// One pair of tables of the sql projection, in one database: the `DATABASE_URL` scimd gets and
/// the test's own connection to the same database.
struct Sql {
    /// What scimd gets as DATABASE_URL (possibly in a SQLAlchemy spelling).
    url: String,
    pool: Pool,
    users: String,
    groups: String,
    _dir: Option<tempfile::TempDir>,
    _guard: Option<PgGuard>,
}

impl Sql {
    /// A fresh SQLite file in a temporary directory.
    async fn sqlite() -> Sql {
        let dir = tempfile::Builder::new()
            .prefix("scimd-sqlite-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("projection.db");
        let url = format!("sqlite://{}", path.display());
        // Lazy: the first query runs once scimd has created the file and switched it to WAL.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(10)),
            );
        Sql::new(url, Pool::Sqlite(pool), Some(dir), None)
    }

    /// PostgreSQL from `SCIMD_TEST_POSTGRES_URL`, shared with the other tests (read lock).
    /// `spelling` rewrites the URL scimd gets (e.g. into `postgresql+psycopg2://…`).
    async fn postgres(spelling: fn(&str) -> String) -> Option<Sql> {
        let url = service_var("SCIMD_TEST_POSTGRES_URL", "PostgreSQL")?;
        let guard = PgGuard::Read(POSTGRES.read().await);
        Some(Sql::postgres_with(&url, spelling, guard).await)
    }

    /// PostgreSQL for this test alone (write lock): it may be stopped and started.
    async fn postgres_exclusive() -> Option<Sql> {
        let url = service_var("SCIMD_TEST_POSTGRES_URL", "PostgreSQL")?;
        service_var("SCIMD_TEST_POSTGRES_STOP", "PostgreSQL")?;
        service_var("SCIMD_TEST_POSTGRES_START", "PostgreSQL")?;
        let guard = PgGuard::Write(POSTGRES.write().await);
        Some(Sql::postgres_with(&url, |u| u.to_string(), guard).await)
    }

    async fn postgres_with(url: &str, spelling: fn(&str) -> String, guard: PgGuard) -> Sql {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to PostgreSQL at {url}: {e}"));
        Sql::new(spelling(url), Pool::Postgres(pool), None, Some(guard))
    }

    /// MariaDB / MySQL from `SCIMD_TEST_MYSQL_URL`; `spelling` rewrites the URL scimd gets.
    async fn mysql(spelling: fn(&str) -> String) -> Option<Sql> {
        let url = service_var("SCIMD_TEST_MYSQL_URL", "MariaDB")?;
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect to MariaDB at {url}: {e}"));
        Some(Sql::new(spelling(&url), Pool::MySql(pool), None, None))
    }

    fn new(url: String, pool: Pool, dir: Option<tempfile::TempDir>, guard: Option<PgGuard>) -> Sql {
        let suffix = random_suffix();
        Sql {
            url,
            pool,
            users: format!("u_{suffix}"),
            groups: format!("g_{suffix}"),
            _dir: dir,
            _guard: guard,
        }
    }

    /// The settings that point scimd's sql projection at these tables.
    fn opts(&self, opts: Opts) -> Opts {
        opts.env("DATABASE_URL", &self.url)
            .env("USER_MODEL_NAME", &self.users)
            .env("GROUP_MODEL_NAME", &self.groups)
    }

    /// Another pair of tables in the same database.
    fn other_tables(&self) -> (String, String) {
        let suffix = random_suffix();
        (format!("u_{suffix}"), format!("g_{suffix}"))
    }

    fn quote(&self, table: &str) -> String {
        match self.pool {
            Pool::MySql(_) => format!("`{table}`"),
            _ => format!("\"{table}\""),
        }
    }

    /// Every row of `table` as id → parsed `details`. Panics on a `details` that is not JSON.
    async fn rows(&self, table: &str) -> BTreeMap<String, Value> {
        let t = self.quote(table);
        let raw: Vec<(String, String)> = match &self.pool {
            Pool::Postgres(p) => {
                sqlx::query(AssertSqlSafe(format!("SELECT id, details::text FROM {t}")))
                    .fetch_all(p)
                    .await
                    .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            }
            Pool::MySql(p) => sqlx::query(AssertSqlSafe(format!(
                "SELECT CAST(id AS CHAR), CAST(details AS CHAR) FROM {t}"
            )))
            .fetch_all(p)
            .await
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect()),
            Pool::Sqlite(p) => sqlx::query(AssertSqlSafe(format!("SELECT id, details FROM {t}")))
                .fetch_all(p)
                .await
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect()),
        }
        .unwrap_or_else(|e| panic!("read table {table}: {e}"));
        raw.into_iter()
            .map(|(id, text)| {
                assert!(
                    !text.contains(PASSWORD),
                    "row {id} of {table} holds a password: {text}"
                );
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                    panic!("details of {id} in {table} is not JSON ({e}): {text}")
                });
                (id, v)
            })
            .collect()
    }

    async fn users(&self) -> BTreeMap<String, Value> {
        self.rows(&self.users).await
    }

    async fn groups(&self) -> BTreeMap<String, Value> {
        self.rows(&self.groups).await
    }

    /// Runs a statement (for tampering with the tables); `$1`-style placeholders are not used.
    async fn execute(&self, sql: String) {
        let result = match &self.pool {
            Pool::Postgres(p) => sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(p)
                .await
                .map(|_| ()),
            Pool::MySql(p) => sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(p)
                .await
                .map(|_| ()),
            Pool::Sqlite(p) => sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(p)
                .await
                .map(|_| ()),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The ids of the users whose `userName` is `name`, found the way applications query: the
    /// database's own JSON functions on `details`.
    async fn find_user(&self, table: &str, name: &str) -> Vec<String> {
        let t = self.quote(table);
        match &self.pool {
            Pool::Postgres(p) => {
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT id FROM {t} WHERE details->>'userName' = $1"
                )))
                .bind(name)
                .fetch_all(p)
                .await
            }
            Pool::MySql(p) => {
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT CAST(id AS CHAR) FROM {t} WHERE JSON_EXTRACT(details, '$.userName') = ?"
                )))
                .bind(name)
                .fetch_all(p)
                .await
            }
            Pool::Sqlite(p) => {
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT id FROM {t} WHERE JSON_EXTRACT(details, '$.userName') = ?"
                )))
                .bind(name)
                .fetch_all(p)
                .await
            }
        }
        .unwrap_or_else(|e| panic!("query {table} by userName: {e}"))
    }

    /// The work email of the user `id`, through the JSON functions (a nested path).
    async fn email_of(&self, table: &str, id: &str) -> Option<String> {
        let t = self.quote(table);
        match &self.pool {
            Pool::Postgres(p) => sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT details->'emails'->0->>'value' FROM {t} WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(p)
            .await,
            Pool::MySql(p) => sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT JSON_UNQUOTE(JSON_EXTRACT(details, '$.emails[0].value')) FROM {t} WHERE id = ?"
            )))
            .bind(id)
            .fetch_optional(p)
            .await,
            Pool::Sqlite(p) => sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT JSON_EXTRACT(details, '$.emails[0].value') FROM {t} WHERE id = ?"
            )))
            .bind(id)
            .fetch_optional(p)
            .await,
        }
        .unwrap_or_else(|e| panic!("query the email of {id} in {table}: {e}"))
    }

    /// Drops `users` / `groups` and their bookkeeping rows (the databases are shared between runs).
    async fn drop_tables(&self, users: &str, groups: &str) {
        let scope = format!("{users},{groups}");
        let checkpoint = format!("sql:{scope}");
        let statements = [
            format!("DROP TABLE IF EXISTS {}", self.quote(users)),
            format!("DROP TABLE IF EXISTS {}", self.quote(groups)),
            format!("DELETE FROM scimd_checkpoint WHERE name = '{checkpoint}'"),
            format!("DELETE FROM scimd_schema_version WHERE scope = '{scope}'"),
        ];
        for sql in statements {
            let result = match &self.pool {
                Pool::Postgres(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
                Pool::MySql(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
                Pool::Sqlite(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
            };
            // The bookkeeping tables may not exist when scimd never connected; that is fine here.
            let _ = result;
        }
    }

    async fn cleanup(&self) {
        self.drop_tables(&self.users, &self.groups).await;
    }
}

/// `postgres://…` → `postgresql+psycopg2://…`, as SQLAlchemy deployments wrote it.
fn sqlalchemy_postgres(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("postgresql+psycopg2://{rest}")
}

/// `mysql://…` → `mariadb://…`.
fn mariadb_scheme(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("mariadb://{rest}")
}

/// `mysql://…` → `mysql+pymysql://…`, as SQLAlchemy deployments wrote it.
fn sqlalchemy_mysql(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("mysql+pymysql://{rest}")
}

fn as_is(url: &str) -> String {
    url.to_string()
}

// ---------------------------------------------------------------------------------------------
// The file projection, read from the file system
// ---------------------------------------------------------------------------------------------

/// Every entry of `root/dir` as file name → parsed document. Panics on anything that is not a
/// pretty JSON document (a stray temporary file shows up as an extra entry instead, since its name
/// is not an id).
fn file_docs(root: &Path, dir: &str) -> BTreeMap<String, Value> {
    let path = root.join(dir);
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !text.contains(PASSWORD),
            "{} holds a password: {text}",
            entry.path().display()
        );
        let doc = match serde_json::from_str::<Value>(&text) {
            Ok(v) => {
                assert!(
                    text.starts_with("{\n"),
                    "{} is not pretty-printed JSON: {text}",
                    entry.path().display()
                );
                v
            }
            Err(e) => json!({"not a JSON document": e.to_string(), "content": text}),
        };
        out.insert(name, doc);
    }
    out
}

/// Inode and modification time of every file under `root/dir`, to see whether a file was rewritten.
fn file_stamps(root: &Path, dir: &str) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
        for entry in entries {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            out.insert(
                entry.file_name().to_string_lossy().into_owned(),
                (meta.ino(), meta.modified().expect("mtime")),
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the API says, and waiting for the projections
// ---------------------------------------------------------------------------------------------

/// `GET /status` (authenticated), asserting 200.
async fn status(s: &Scimd) -> Value {
    s.client().get("/status").await.expect(200).json()
}

/// Waits until every projection in `names` has handled the whole log (checkpoint = position, lag
/// 0, running, no error). Returns the last `/status`.
async fn caught_up(s: &Scimd, names: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = status(s).await;
        let position = st["position"].as_u64().expect("position");
        let done = names.iter().all(|n| {
            let sub = &st["subscribers"][*n];
            sub["checkpoint"].as_u64() == Some(position)
                && sub["lag"].as_u64() == Some(0)
                && sub["state"] == "running"
                && sub["lastError"].is_null()
        });
        if done {
            return st;
        }
        if Instant::now() > deadline {
            panic!(
                "projections {names:?} did not catch up within {within:?}; last /status: {st:#}\n{}",
                s.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a projection must hold for `doc` as `GET` returned it: the same document without the
/// computed `User.groups` (membership lives on the groups), with members in a canonical order and,
/// when the server has no PUBLIC_URL, `meta.location` / `$ref` relative (a projection has no
/// request Host).
fn projected_form(s: &Scimd, doc: &Value) -> Value {
    let mut v = normalized(doc);
    if let Some(doc) = v.as_object_mut() {
        doc.remove("groups");
    }
    if s.opts.public_url.is_none() {
        let origin = format!("http://{}", s.addr());
        let relative = |x: &mut Value| {
            if let Some(u) = x.as_str()
                && let Some(rest) = u.strip_prefix(&origin)
            {
                *x = json!(rest);
            }
        };
        relative(&mut v["meta"]["location"]);
        if let Some(members) = v.get_mut("members").and_then(Value::as_array_mut) {
            for m in members {
                relative(&mut m["$ref"]);
            }
        }
    }
    v
}

/// Every User and Group as `GET /Users/{id}` / `GET /Groups/{id}` return them (ids from the
/// lists), in projected form: (users, groups).
async fn api_state(s: &Scimd) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
    let api = s.client();
    let mut out = Vec::new();
    for endpoint in ["Users", "Groups"] {
        let ids: Vec<String> = api
            .list_all(&format!("/{endpoint}?count=100"))
            .await
            .iter()
            .map(id_of)
            .collect();
        let docs: BTreeMap<String, Value> = stream::iter(ids)
            .map(|id| {
                let api = api.clone();
                async move {
                    let doc = api
                        .get(&format!("/{endpoint}/{id}"))
                        .await
                        .expect(200)
                        .json();
                    (id, projected_form(s, &doc))
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        out.push(docs);
    }
    let groups = out.pop().unwrap();
    let users = out.pop().unwrap();
    for (id, u) in &users {
        assert!(
            u.get("password").is_none(),
            "GET /Users/{id} shows a password: {u}"
        );
    }
    (users, groups)
}

/// Where `held` (what a backend holds) differs from `expected`: a resource missing, one extra, a
/// document not equal (members compared as a set). `None` when it holds exactly `expected`.
fn holds_diff(
    backend: &str,
    kind: &str,
    held: &BTreeMap<String, Value>,
    expected: &BTreeMap<String, Value>,
) -> Option<String> {
    let held: BTreeMap<&String, Value> = held.iter().map(|(k, v)| (k, normalized(v))).collect();
    let missing: Vec<&String> = expected.keys().filter(|k| !held.contains_key(k)).collect();
    let extra: Vec<&&String> = held
        .keys()
        .filter(|k| !expected.contains_key(**k))
        .collect();
    let mut differing = Vec::new();
    for (id, want) in expected {
        if let Some(got) = held.get(id)
            && got != &normalized(want)
        {
            differing.push(format!(
                "  {kind} {id}:\n    projected: {got}\n    GET:       {want}"
            ));
        }
    }
    if missing.is_empty() && extra.is_empty() && differing.is_empty() {
        return None;
    }
    Some(format!(
        "the {backend} projection does not hold exactly what GET returns for {kind}:\n\
         missing ({}): {missing:?}\nextra ({}): {extra:?}\ndiffering ({}):\n{}",
        missing.len(),
        extra.len(),
        differing.len(),
        differing.join("\n")
    ))
}

/// Asserts that `held` (what a backend holds) is exactly `expected` (see [`holds_diff`]).
#[track_caller]
fn assert_holds(
    backend: &str,
    kind: &str,
    held: &BTreeMap<String, Value>,
    expected: &BTreeMap<String, Value>,
) {
    if let Some(diff) = holds_diff(backend, kind, held, expected) {
        panic!("{diff}");
    }
}

/// Users and Groups of the sql projection equal what `GET` returns.
async fn assert_sql_matches(s: &Scimd, sql: &Sql, backend: &str) {
    let (users, groups) = api_state(s).await;
    assert_holds(backend, "Users", &sql.users().await, &users);
    assert_holds(backend, "Groups", &sql.groups().await, &groups);
}

/// Users and Groups of the file projection under `root` equal what `GET` returns.
async fn assert_files_match(s: &Scimd, root: &Path) {
    let (users, groups) = api_state(s).await;
    assert_holds("file", "Users", &file_docs(root, "Users"), &users);
    assert_holds("file", "Groups", &file_docs(root, "Groups"), &groups);
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn user_body(name: &str, i: usize) -> Value {
    let mut body = json!({
        "schemas": [USER_SCHEMA],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "displayName": format!("User {name}"),
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "emails": [{"value": format!("{name}@example.org"), "type": "work", "primary": true}],
        "active": !i.is_multiple_of(3),
    });
    if i.is_multiple_of(2) {
        body["password"] = json!(PASSWORD);
    }
    body
}

fn group_body(name: &str, members: &[(&str, &str)]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|(id, t)| json!({"value": id, "type": t}))
        .collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members})
}

/// Creates, replaces, membership changes and deletes (with cascades out of groups), leaving a mix of
/// live and deleted Users and Groups. Display names of members never change here (see
/// `renaming_a_member_updates_the_groups_it_belongs_to_in_every_projection`).
async fn mixed_workload(api: &Api, tag: &str) {
    let mut u = Vec::new();
    for i in 0..12 {
        let name = format!("{tag}-user-{i}");
        u.push(id_of(&api.create_user(user_body(&name, i)).await));
    }
    let uid = |i: usize| u[i].as_str();
    // g0: users 0-3; g1: users 3-6 and g0 (nested); g2: users 8, 9; g3: empty.
    let g0 = id_of(
        &api.create_group(group_body(
            &format!("{tag}-g0"),
            &[
                (uid(0), "User"),
                (uid(1), "User"),
                (uid(2), "User"),
                (uid(3), "User"),
            ],
        ))
        .await,
    );
    let g1 = id_of(
        &api.create_group(group_body(
            &format!("{tag}-g1"),
            &[
                (uid(3), "User"),
                (uid(4), "User"),
                (uid(5), "User"),
                (uid(6), "User"),
                (&g0, "Group"),
            ],
        ))
        .await,
    );
    let g2 = id_of(
        &api.create_group(group_body(
            &format!("{tag}-g2"),
            &[(uid(8), "User"), (uid(9), "User")],
        ))
        .await,
    );
    let _g3 = id_of(
        &api.create_group(group_body(&format!("{tag}-g3"), &[]))
            .await,
    );

    // Replaces (PUT) of users: a member keeps its display name but changes other attributes and its
    // password; a non-member is renamed completely; one loses attributes.
    let mut b1 = user_body(&format!("{tag}-user-1"), 1);
    b1["title"] = json!("Engineer");
    b1["emails"] = json!([{"value": format!("{tag}-one@example.net"), "type": "home"}]);
    b1["password"] = json!(format!("{PASSWORD}-changed"));
    api.put(&format!("/Users/{}", uid(1)), &b1)
        .await
        .expect(200);
    let b11 = user_body(&format!("{tag}-user-11-renamed"), 11);
    api.put(&format!("/Users/{}", uid(11)), &b11)
        .await
        .expect(200);
    api.put(
        &format!("/Users/{}", uid(10)),
        &json!({"schemas": [USER_SCHEMA], "userName": format!("{tag}-user-10"), "displayName": format!("User {tag}-user-10")}),
    )
    .await
    .expect(200);

    // Member changes: g1 loses users 3 and 4, gains 7 and 10 (keeps g0 and its display name);
    // g2 is emptied, then refilled.
    api.put(
        &format!("/Groups/{g1}"),
        &group_body(
            &format!("{tag}-g1"),
            &[
                (uid(5), "User"),
                (uid(6), "User"),
                (uid(7), "User"),
                (uid(10), "User"),
                (&g0, "Group"),
            ],
        ),
    )
    .await
    .expect(200);
    api.put(
        &format!("/Groups/{g2}"),
        &group_body(&format!("{tag}-g2"), &[]),
    )
    .await
    .expect(200);
    api.put(
        &format!("/Groups/{g2}"),
        &group_body(&format!("{tag}-g2"), &[(uid(8), "User"), (uid(11), "User")]),
    )
    .await
    .expect(200);

    // Deletes: user 0 (member of g0) and user 8 (member of g2) cascade out of their groups; g0
    // (member of g1) cascades out of g1; user 9 (no longer in any group) simply goes.
    api.delete(&format!("/Users/{}", uid(0))).await.expect(204);
    api.delete(&format!("/Users/{}", uid(8))).await.expect(204);
    api.delete(&format!("/Users/{}", uid(9))).await.expect(204);
    api.delete(&format!("/Groups/{g0}")).await.expect(204);

    // Short-lived resources: created and deleted right away.
    let brief = id_of(
        &api.create_user(user_body(&format!("{tag}-brief"), 13))
            .await,
    );
    let brief_group = id_of(
        &api.create_group(group_body(
            &format!("{tag}-brief-group"),
            &[(uid(2), "User")],
        ))
        .await,
    );
    api.delete(&format!("/Groups/{brief_group}"))
        .await
        .expect(204);
    api.delete(&format!("/Users/{brief}")).await.expect(204);

    // And a few more creates after the deletes.
    let late = id_of(&api.create_user(user_body(&format!("{tag}-late"), 14)).await);
    api.create_group(group_body(
        &format!("{tag}-late-group"),
        &[(&late, "User"), (uid(2), "User"), (&g1, "Group")],
    ))
    .await;
}

/// Creates `n` users (at some concurrency); returns their ids.
async fn create_users(api: &Api, tag: &str, n: usize) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let tag = tag.to_string();
            async move {
                let body = json!({
                    "schemas": [USER_SCHEMA],
                    "userName": format!("{tag}-bulk-{i}"),
                    "displayName": format!("Bulk {i}"),
                    "emails": [{"value": format!("{tag}-bulk-{i}@example.org"), "type": "work"}],
                });
                id_of(&api.create_user(body).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

fn public(opts: Opts) -> Opts {
    opts.public_url(PUBLIC_URL)
}

// ---------------------------------------------------------------------------------------------
// Each backend holds exactly what GET returns
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_file_projection_holds_exactly_the_resources_get_returns_with_relative_locations() {
    // No PUBLIC_URL: the documents carry relative meta.location and $ref.
    let s = Scimd::start(Opts::default().env("PROJECTIONS", "file")).await;
    mixed_workload(&s.client(), "file").await;
    let st = caught_up(&s, &["file"], CONVERGE).await;
    assert!(
        st["subscribers"].get("sql").is_none(),
        "only the file projection was asked for: {st}"
    );
    assert_files_match(&s, &s.data_path()).await;

    let users = file_docs(&s.data_path(), "Users");
    let (id, doc) = users.iter().next().expect("some user file");
    assert_eq!(
        doc["meta"]["location"],
        json!(format!("/Users/{id}")),
        "{doc}"
    );
    let groups = file_docs(&s.data_path(), "Groups");
    let with_members = groups
        .values()
        .find(|g| g["members"].as_array().is_some_and(|m| !m.is_empty()))
        .expect("a group with members");
    for m in with_members["members"].as_array().unwrap() {
        let want = format!(
            "/{}s/{}",
            m["type"].as_str().unwrap(),
            m["value"].as_str().unwrap()
        );
        assert_eq!(m["$ref"], json!(want), "{with_members}");
    }
}

#[tokio::test]
async fn the_file_projection_writes_under_files_path_when_it_is_set() {
    let files = tempfile::Builder::new()
        .prefix("scimd-files-")
        .tempdir()
        .unwrap();
    let s = Scimd::start(
        public(Opts::default())
            .env("PROJECTIONS", "file")
            .env("FILES_PATH", files.path().to_str().unwrap()),
    )
    .await;
    mixed_workload(&s.client(), "files-path").await;
    caught_up(&s, &["file"], CONVERGE).await;
    assert_files_match(&s, files.path()).await;
    assert!(
        file_docs(&s.data_path(), "Users").is_empty()
            && file_docs(&s.data_path(), "Groups").is_empty(),
        "with FILES_PATH set nothing is projected under DATA_PATH"
    );
}

#[tokio::test]
async fn the_sqlite_projection_holds_exactly_the_resources_get_returns() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "sqlite").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    assert!(
        file_docs(&s.data_path(), "Users").is_empty(),
        "PROJECTIONS=sql writes no files"
    );
}

#[tokio::test]
async fn the_postgres_projection_holds_exactly_the_resources_get_returns() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "postgres").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn the_mariadb_projection_holds_exactly_the_resources_get_returns() {
    let Some(sql) = Sql::mysql(mariadb_scheme).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "mariadb").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "mariadb").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn file_and_sql_projections_run_side_by_side_and_both_converge() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    mixed_workload(&s.client(), "both").await;
    // Some more traffic, so that both work through several batches.
    create_users(&s.client(), "both", 300).await;
    let st = caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_eq!(
        st["subscribers"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k == "file" || *k == "sql")
            .count(),
        2,
        "{st}"
    );
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

#[tokio::test]
async fn renaming_a_member_updates_the_groups_it_belongs_to_in_every_projection() {
    // A group's members carry the member's display name (GET /Groups shows the current one), so a
    // renamed User or Group changes the documents of the groups it belongs to.
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    let api = s.client();
    // alice is in team1; bob in team2; team2 is in org. alice (a User) and team2 (a Group) are
    // renamed: team1 and org must show the new display names.
    let alice = id_of(&api.create_user(user_body("rename-alice", 1)).await);
    let bob = id_of(&api.create_user(user_body("rename-bob", 2)).await);
    let team1 = id_of(
        &api.create_group(group_body("rename-team1", &[(&alice, "User")]))
            .await,
    );
    let team2 = id_of(
        &api.create_group(group_body("rename-team2", &[(&bob, "User")]))
            .await,
    );
    let _org = id_of(
        &api.create_group(group_body("rename-org", &[(&team2, "Group")]))
            .await,
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;

    let mut renamed = user_body("rename-alice", 1);
    renamed["displayName"] = json!("Alice Renamed");
    api.put(&format!("/Users/{alice}"), &renamed)
        .await
        .expect(200);
    api.put(
        &format!("/Groups/{team2}"),
        &group_body("rename-team2-renamed", &[(&bob, "User")]),
    )
    .await
    .expect(200);
    let group = api.group(&team1).await;
    assert!(
        group["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["display"] == "Alice Renamed"),
        "GET shows the member's new display name: {group}"
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

// ---------------------------------------------------------------------------------------------
// PATCH (issue 7): reaches every projection like any other write, coalesced per batch
// ---------------------------------------------------------------------------------------------

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn patch_ops(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// PATCHes of Users (sub-attribute, multi-valued add and filtered remove, Okta's path-less
/// `active`, a password, a rename of a group member) and of Groups (member adds and removes by
/// value filter, Entra's removal by value, a rename with a member, a replace of the whole list, a
/// nested group, a removal by `type`). Returns the ids of (team, org).
async fn patch_workload(api: &Api, tag: &str) -> (String, String) {
    let mut u = Vec::new();
    for i in 0..6 {
        u.push(id_of(
            &api.create_user(user_body(&format!("{tag}-p-{i}"), i)).await,
        ));
    }
    let team = id_of(
        &api.create_group(group_body(
            &format!("{tag}-team"),
            &[(&u[0], "User"), (&u[1], "User")],
        ))
        .await,
    );
    let org = id_of(
        &api.create_group(group_body(
            &format!("{tag}-org"),
            &[(&team, "Group"), (&u[2], "User")],
        ))
        .await,
    );
    let empty = id_of(
        &api.create_group(group_body(&format!("{tag}-empty"), &[]))
            .await,
    );
    let patch_user = |i: usize, ops: Value| {
        let path = format!("/Users/{}", u[i]);
        async move { api.patch(&path, &patch_ops(ops)).await.expect(200) }
    };
    patch_user(
        0,
        json!([{"op": "replace", "path": "name.givenName", "value": "Patched"}]),
    )
    .await;
    patch_user(
        1,
        json!([{"op": "add", "path": "emails", "value": [{"value": format!("{tag}-1@home.example.org"), "type": "home"}]}]),
    )
    .await;
    patch_user(2, json!([{"op": "replace", "value": {"active": false}}])).await;
    patch_user(
        3,
        json!([
            {"op": "replace", "path": "password", "value": format!("{PASSWORD}-patched")},
            {"op": "add", "path": "title", "value": "Patched title"},
        ]),
    )
    .await;
    patch_user(
        4,
        json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
    )
    .await;
    // A member's new display name shows in the groups it belongs to.
    patch_user(
        0,
        json!([{"op": "replace", "path": "displayName", "value": format!("{tag} renamed by PATCH")}]),
    )
    .await;
    patch_user(5, json!([{"op": "remove", "path": "name.familyName"}])).await;

    let patch_group = |id: &String, ops: Value| {
        let path = format!("/Groups/{id}");
        async move { api.patch(&path, &patch_ops(ops)).await.expect(204) }
    };
    patch_group(
        &team,
        json!([{"op": "add", "path": "members", "value": [{"value": u[2]}, {"value": u[3]}]}]),
    )
    .await;
    patch_group(
        &team,
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", u[1])}]),
    )
    .await;
    patch_group(
        &team,
        json!([{"op": "Remove", "path": "members", "value": [{"value": u[2]}]}]),
    )
    .await;
    patch_group(
        &org,
        json!([
            {"op": "replace", "path": "displayName", "value": format!("{tag}-org-renamed")},
            {"op": "add", "path": "members", "value": [{"value": u[4]}]},
        ]),
    )
    .await;
    patch_group(
        &empty,
        json!([{"op": "add", "path": "members", "value": [{"value": team}, {"value": u[5]}]}]),
    )
    .await;
    patch_group(
        &org,
        json!([{"op": "replace", "path": "members", "value": [{"value": team}, {"value": u[5]}]}]),
    )
    .await;
    patch_group(
        &empty,
        json!([{"op": "remove", "path": "members[type eq \"User\"]"}]),
    )
    .await;
    // The user deleted last leaves team through a server-made patch.
    api.delete(&format!("/Users/{}", u[3])).await.expect(204);
    (team, org)
}

/// What GET shows for `team` and `org` after [`patch_workload`], so that a workload that silently
/// did less than intended cannot pass.
async fn assert_patch_workload_state(api: &Api, tag: &str, team: &str, org: &str) {
    let team = api.group(team).await;
    assert_eq!(member_ids(&team).len(), 1, "{team}");
    assert_eq!(
        team["members"][0]["display"],
        json!(format!("{tag} renamed by PATCH")),
        "{team}"
    );
    let org = api.group(org).await;
    assert_eq!(
        org["displayName"],
        json!(format!("{tag}-org-renamed")),
        "{org}"
    );
    assert_eq!(member_ids(&org).len(), 2, "{org}");
}

#[tokio::test]
async fn patches_reach_the_file_and_sqlite_projections_as_get_returns_them() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    let api = s.client();
    let (team, org) = patch_workload(&api, "patch-sqlite").await;
    assert_patch_workload_state(&api, "patch-sqlite", &team, &org).await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

#[tokio::test]
async fn patches_reach_the_postgres_projection_as_get_returns_them() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    let (team, org) = patch_workload(&api, "patch-postgres").await;
    assert_patch_workload_state(&api, "patch-postgres", &team, &org).await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn patches_reach_the_mariadb_projection_as_get_returns_them() {
    let Some(sql) = Sql::mysql(mariadb_scheme).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    let (team, org) = patch_workload(&api, "patch-mariadb").await;
    assert_patch_workload_state(&api, "patch-mariadb", &team, &org).await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "mariadb").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn a_bulk_request_reaches_the_file_and_sqlite_projections_as_get_returns_it() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    let api = s.client();
    let mut operations: Vec<Value> = (0..50)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                   "data": {"userName": format!("bulk-proj-{i}"), "displayName": format!("Bulk {i}")}})
        })
        .collect();
    let members: Vec<Value> = (0..50)
        .map(|i| json!({"value": format!("bulkId:u{i}")}))
        .collect();
    operations.insert(
        0,
        json!({"method": "POST", "path": "/Groups", "bulkId": "g",
               "data": {"displayName": "Bulk Projected", "members": members}}),
    );
    operations.push(
        json!({"method": "PATCH", "path": "/Users/bulkId:u1", "data": {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed In Bulk"}]}}),
    );
    operations.push(json!({"method": "DELETE", "path": "/Users/bulkId:u2"}));
    let answer = api
        .post(
            "/Bulk",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                    "Operations": operations}),
        )
        .await
        .expect(200)
        .json();
    let failed: Vec<&Value> = answer["Operations"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter(|o| {
                    !["200", "201", "204"].contains(&o["status"].as_str().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(failed.is_empty(), "{answer}");
    let groups = api.list_all("/Groups").await;
    assert_eq!(
        groups[0]["members"].as_array().map(Vec::len),
        Some(49),
        "{groups:?}"
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

/// Counts the documents the file projection renames into a directory (each write of a document is
/// one rename of a temporary file onto it), with inotify. inotify merges an event into the previous
/// one when they are alike (mask, watch, name; not the cookie) and the previous one is unread, so
/// consecutive renames onto the same name would count once: the watch also takes the
/// `IN_MOVED_FROM` of each (uniquely named) temporary file, which separates them.
struct RenameWatch {
    fd: i32,
    dir: std::path::PathBuf,
    counts: BTreeMap<String, usize>,
}

impl RenameWatch {
    fn new(dir: &Path) -> RenameWatch {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscalls; the path is a NUL-terminated copy that outlives the call.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let wd = unsafe {
            libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MOVED_FROM | libc::IN_MOVED_TO)
        };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        RenameWatch {
            fd,
            dir: dir.to_path_buf(),
            counts: BTreeMap::new(),
        }
    }

    /// How many times `name` was written since the watch began.
    fn writes(&mut self, name: &str) -> usize {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reads into a buffer of the length given.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "read inotify: {e}"
                );
                break;
            }
            let mut at = 0;
            let n = n as usize;
            while at + 16 <= n {
                let word =
                    |k: usize| u32::from_ne_bytes(buf[at + k..at + k + 4].try_into().unwrap());
                let (mask, len) = (word(4), word(12) as usize);
                assert_eq!(
                    mask & libc::IN_Q_OVERFLOW,
                    0,
                    "inotify queue overflow on {}: writes were not counted",
                    self.dir.display()
                );
                if mask & libc::IN_MOVED_TO != 0 {
                    let raw = &buf[at + 16..at + 16 + len];
                    let file =
                        String::from_utf8_lossy(raw.split(|b| *b == 0).next().unwrap_or(&[]));
                    *self.counts.entry(file.into_owned()).or_default() += 1;
                }
                at += 16 + len;
            }
        }
        self.counts.get(name).copied().unwrap_or(0)
    }
}

impl Drop for RenameWatch {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this watch owns.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// Counts the rows the SQLite projection inserts or updates for `id` in `table`, with triggers.
async fn count_sqlite_writes(sql: &Sql, table: &str, id: &str) -> String {
    let counter = format!("w_{}", random_suffix());
    sql.execute(format!(
        "CREATE TABLE \"{counter}\" (n INTEGER NOT NULL);
         INSERT INTO \"{counter}\" VALUES (0);
         CREATE TRIGGER \"{counter}_i\" AFTER INSERT ON \"{table}\" WHEN NEW.id = '{id}'
           BEGIN UPDATE \"{counter}\" SET n = n + 1; END;
         CREATE TRIGGER \"{counter}_u\" AFTER UPDATE ON \"{table}\" WHEN NEW.id = '{id}'
           BEGIN UPDATE \"{counter}\" SET n = n + 1; END;"
    ))
    .await;
    counter
}

async fn sqlite_writes(sql: &Sql, counter: &str) -> i64 {
    let Pool::Sqlite(pool) = &sql.pool else {
        unreachable!("SQLite only")
    };
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT n FROM \"{counter}\"")))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("read {counter}: {e}"))
}

/// One single-member PATCH per user of `ids` on the group `gid`, 16 at a time.
async fn single_member_patches(api: &Api, gid: &str, op: &str, ids: &[String]) {
    let path = format!("/Groups/{gid}");
    let statuses: Vec<u16> = stream::iter(ids.to_vec())
        .map(|id| {
            let api = api.clone();
            let path = path.clone();
            let ops = match op {
                "add" => json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
                _ => json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
            };
            async move { api.patch(&path, &patch_ops(ops)).await.status }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 204),
        "every {op} PATCH must answer 204: {:?}",
        statuses.iter().filter(|s| **s != 204).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_burst_of_single_member_patches_converges_and_each_batch_writes_the_group_once() {
    const BURST: usize = 1000;
    const LIVE_ADDS: usize = 200;
    const LIVE_REMOVES: usize = 100;
    let sql = Sql::sqlite().await;
    let opts = sql
        .opts(public(Opts::default()))
        .env("PROJECTIONS", "file,sql");
    let mut s = Scimd::start(opts.clone()).await;
    let api = s.client();
    let users = create_users(&api, "burst", BURST + LIVE_ADDS).await;
    let gid = id_of(&api.create_group(group_body("burst", &[])).await);
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    let mut files = RenameWatch::new(&s.data_path().join("Groups"));
    let counter = count_sqlite_writes(&sql, &sql.groups, &gid).await;

    // A backlog: BURST single-member adds written while no projection runs. Both projections then
    // catch up in batches of up to 1,000 events, each batch writing the group once.
    s.opts = opts.clone().env("PROJECTIONS", "none");
    s.restart().await;
    let api = s.client();
    single_member_patches(&api, &gid, "add", &users[..BURST]).await;
    assert_eq!(member_ids(&api.group(&gid).await), sorted(&users[..BURST]));
    assert_eq!(
        (files.writes(&gid), sqlite_writes(&sql, &counter).await),
        (0, 0),
        "nothing projected while PROJECTIONS=none"
    );
    s.opts = opts.clone();
    s.restart().await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    let (file_writes, sql_writes) = (files.writes(&gid), sqlite_writes(&sql, &counter).await);
    eprintln!(
        "backlog of {BURST} member PATCHes: group file written {file_writes}x, row {sql_writes}x"
    );
    assert!(
        (1..=2).contains(&file_writes) && (1..=2).contains(&sql_writes),
        "{BURST} PATCH events of one group in at most two batches must write its document once \
         per batch: the file was written {file_writes} times, the row {sql_writes} times"
    );

    // Live: more adds and some removes while both projections run. However the events fall into
    // batches, the projections converge and never write the group more than once per event.
    let api = s.client();
    let (adds, removes) = (&users[BURST..], &users[..LIVE_REMOVES]);
    tokio::join!(
        single_member_patches(&api, &gid, "add", adds),
        single_member_patches(&api, &gid, "remove", removes),
    );
    assert_eq!(
        member_ids(&api.group(&gid).await),
        sorted(&users[LIVE_REMOVES..]),
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    let live_file = files.writes(&gid) - file_writes;
    let live_sql = (sqlite_writes(&sql, &counter).await - sql_writes) as usize;
    eprintln!(
        "{} live member PATCHes: group file written {live_file}x, row {live_sql}x",
        LIVE_ADDS + LIVE_REMOVES
    );
    assert!(
        (1..=LIVE_ADDS + LIVE_REMOVES).contains(&live_file)
            && (1..=LIVE_ADDS + LIVE_REMOVES).contains(&live_sql),
        "file written {live_file} times, row {live_sql} times for {} events",
        LIVE_ADDS + LIVE_REMOVES
    );
}

// ---------------------------------------------------------------------------------------------
// Applications query the documents with their database's JSON functions
// ---------------------------------------------------------------------------------------------

/// Creates two users, waits, and finds each by userName (and its email by a nested path) with the
/// JSON functions of the database.
async fn json_queries_find_users(sql: &Sql, backend: &str) {
    // PROJECTIONS unset: DATABASE_URL alone selects sql.
    let s = Scimd::start(sql.opts(public(Opts::default())).unset("PROJECTIONS")).await;
    let api = s.client();
    let tag = random_suffix();
    let alice = id_of(&api.create_user(user_body(&format!("alice-{tag}"), 1)).await);
    let bob = id_of(&api.create_user(user_body(&format!("bob-{tag}"), 2)).await);
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_eq!(
        sql.find_user(&sql.users, &format!("alice-{tag}")).await,
        vec![alice.clone()],
        "{backend}: the JSON query on userName finds alice"
    );
    assert_eq!(
        sql.find_user(&sql.users, &format!("bob-{tag}")).await,
        vec![bob.clone()]
    );
    assert!(sql.find_user(&sql.users, "nobody").await.is_empty());
    assert_eq!(
        sql.email_of(&sql.users, &alice).await.as_deref(),
        Some(format!("alice-{tag}@example.org").as_str()),
        "{backend}: a nested JSON path reads the email"
    );
    // A rename is found under the new name only.
    api.put(
        &format!("/Users/{bob}"),
        &user_body(&format!("robert-{tag}"), 2),
    )
    .await
    .expect(200);
    caught_up(&s, &["sql"], CONVERGE).await;
    assert!(
        sql.find_user(&sql.users, &format!("bob-{tag}"))
            .await
            .is_empty()
    );
    assert_eq!(
        sql.find_user(&sql.users, &format!("robert-{tag}")).await,
        vec![bob]
    );
}

#[tokio::test]
async fn applications_find_users_with_json_extract_on_sqlite() {
    let sql = Sql::sqlite().await;
    json_queries_find_users(&sql, "sqlite").await;
}

#[tokio::test]
async fn applications_find_users_with_json_extract_on_mariadb_reached_through_a_sqlalchemy_url() {
    let Some(sql) = Sql::mysql(sqlalchemy_mysql).await else {
        return;
    };
    json_queries_find_users(&sql, "mariadb").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn applications_find_users_with_jsonb_operators_on_postgres_reached_through_a_sqlalchemy_url()
{
    let Some(sql) = Sql::postgres(sqlalchemy_postgres).await else {
        return;
    };
    json_queries_find_users(&sql, "postgres").await;
    let Pool::Postgres(pool) = &sql.pool else {
        unreachable!()
    };
    let data_type: String = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = 'details'",
    )
    .bind(&sql.users)
    .fetch_one(pool)
    .await
    .expect("column type of details");
    assert_eq!(data_type, "jsonb", "details is JSONB on PostgreSQL");
    sql.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Outage
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_postgres_outage_delays_the_sql_projection_but_loses_nothing() {
    let Some(sql) = Sql::postgres_exclusive().await else {
        return;
    };
    let mut pg = RestartPostgres { stopped: false };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    mixed_workload(&api, "before-outage").await;
    caught_up(&s, &["sql"], CONVERGE).await;

    pg.stop();
    // Writes go on while the backend is down, and are not slowed down by it.
    let started = Instant::now();
    let during = create_users(&api, "during-outage", 40).await;
    mixed_workload(&api, "during-outage").await;
    api.put(
        &format!("/Users/{}", during[0]),
        &user_body("during-outage-renamed", 0),
    )
    .await
    .expect(200);
    api.delete(&format!("/Users/{}", during[1]))
        .await
        .expect(204);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "writes took {took:?} while PostgreSQL was down: the projection must not block the API"
    );

    // /status shows the projection retrying, with the error, and lagging.
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = status(&s).await;
        let sub = &st["subscribers"]["sql"];
        if sub["state"] == "retrying"
            && sub["lastError"].is_string()
            && sub["lag"].as_u64() > Some(0)
        {
            break st;
        }
        if Instant::now() > deadline {
            panic!(
                "/status never showed the sql projection retrying with an error: {st:#}\n{}",
                s.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("during the outage: {}", st["subscribers"]["sql"]);
    // Still lagging a little later: nothing was acknowledged while the database was down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st2 = status(&s).await;
    assert!(
        st2["subscribers"]["sql"]["lag"].as_u64() > Some(0),
        "{st2:#}"
    );

    pg.start();
    caught_up(&s, &["sql"], RECOVERY).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    assert_eq!(
        sql.users().await.len(),
        api.list("/Users?count=1").await["totalResults"]
            .as_u64()
            .unwrap() as usize
    );
    sql.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn replay_with_the_server_stopped_rebuilds_the_same_content_as_the_live_projections() {
    let sql = Sql::sqlite().await;
    let mut s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    mixed_workload(&s.client(), "replay-stopped").await;
    create_users(&s.client(), "replay-stopped", 1500).await; // several batches
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    assert_files_match(&s, &s.data_path()).await;
    let (live_users, live_groups) = (sql.users().await, sql.groups().await);
    let (live_user_files, live_group_files) = (
        file_docs(&s.data_path(), "Users"),
        file_docs(&s.data_path(), "Groups"),
    );
    let (api_users, api_groups) = api_state(&s).await;
    let position = status(&s).await["position"].as_u64().unwrap();
    s.stop().await;

    // 1. Into a fresh pair of tables.
    let (users_b, groups_b) = sql.other_tables();
    s.opts.env.push(("USER_MODEL_NAME".into(), users_b.clone()));
    s.opts
        .env
        .push(("GROUP_MODEL_NAME".into(), groups_b.clone()));
    let out = s
        .cli(&["replay", "--projection", "sql", "--fresh"])
        .await
        .success();
    s.opts.env.truncate(s.opts.env.len() - 2);
    assert!(
        out.stderr.contains(&position.to_string()),
        "names the position it reached: {out:?}"
    );
    assert_holds(
        "sqlite (replayed into new tables)",
        "Users",
        &sql.rows(&users_b).await,
        &live_users,
    );
    assert_holds(
        "sqlite (replayed into new tables)",
        "Groups",
        &sql.rows(&groups_b).await,
        &live_groups,
    );

    // 2. Over the live tables, after damaging them: a row lost, a row altered, a stray row.
    let victim = live_users.keys().next().unwrap().clone();
    let t_users = sql.quote(&sql.users);
    let t_groups = sql.quote(&sql.groups);
    sql.execute(format!("DELETE FROM {t_users} WHERE id = '{victim}'"))
        .await;
    sql.execute(format!(
        "UPDATE {t_groups} SET details = '{{\"tampered\": true}}'"
    ))
    .await;
    sql.execute(format!(
        "INSERT INTO {t_users} (id, details) VALUES ('stray', '{{}}')"
    ))
    .await;
    s.cli(&["replay", "--projection", "sql", "--fresh"])
        .await
        .success();
    assert_holds(
        "sqlite (replayed)",
        "Users",
        &sql.users().await,
        &live_users,
    );
    assert_holds(
        "sqlite (replayed)",
        "Groups",
        &sql.groups().await,
        &live_groups,
    );

    // 3. The file projection likewise.
    let users_dir = s.data_path().join("Users");
    std::fs::remove_file(users_dir.join(&victim)).unwrap();
    std::fs::write(users_dir.join("stray"), "{}").unwrap();
    let some_group = live_group_files.keys().next().unwrap();
    std::fs::write(
        s.data_path().join("Groups").join(some_group),
        "{\"tampered\": true}",
    )
    .unwrap();
    s.cli(&["replay", "--projection", "file", "--fresh"])
        .await
        .success();
    assert_holds(
        "file (replayed)",
        "Users",
        &file_docs(&s.data_path(), "Users"),
        &live_user_files,
    );
    assert_holds(
        "file (replayed)",
        "Groups",
        &file_docs(&s.data_path(), "Groups"),
        &live_group_files,
    );

    // 4. The live runners continue from where the replay finished: nothing to redo, new writes land.
    s.start_again().await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_holds(
        "sqlite (after restart)",
        "Users",
        &sql.users().await,
        &api_users,
    );
    assert_holds(
        "sqlite (after restart)",
        "Groups",
        &sql.groups().await,
        &api_groups,
    );
    s.client().create_user_named("after-replay").await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    assert_files_match(&s, &s.data_path()).await;
}

#[tokio::test]
async fn replay_while_the_server_runs_goes_through_the_server_and_rebuilds_the_same_content() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "replay-running").await;
    create_users(&s.client(), "replay-running", 2500).await; // several batches
    caught_up(&s, &["sql"], CONVERGE).await;
    let (api_users, api_groups) = api_state(&s).await;
    assert_holds("postgres", "Users", &sql.users().await, &api_users);
    assert_holds("postgres", "Groups", &sql.groups().await, &api_groups);

    // Damage the tables behind the running server's back; the live runner does not notice.
    let t_users = sql.quote(&sql.users);
    sql.execute(format!(
        "DELETE FROM {t_users} WHERE id IN (SELECT id FROM {t_users} ORDER BY id LIMIT 100)"
    ))
    .await;
    sql.execute(format!(
        "INSERT INTO {t_users} (id, details) VALUES ('stray', '{{}}')"
    ))
    .await;

    let started = Instant::now();
    let out = s
        .cli(&["replay", "--projection", "sql", "--fresh"])
        .await
        .success();
    let took = started.elapsed();
    assert!(
        out.stderr.contains("scimd serve holds the store"),
        "with the server running the CLI asks the server: {out:?}"
    );
    // The CLI returned: the rebuild should be complete. Read right away, without waiting.
    let immediate: Vec<String> = [
        holds_diff("postgres", "Users", &sql.users().await, &api_users),
        holds_diff("postgres", "Groups", &sql.groups().await, &api_groups),
    ]
    .into_iter()
    .flatten()
    .collect();
    let st_immediate = status(&s).await;

    // Whatever the CLI said, the server completes the rebuild.
    let deadline = Instant::now() + CONVERGE;
    loop {
        caught_up(&s, &["sql"], CONVERGE).await;
        let diffs: Vec<String> = [
            holds_diff("postgres", "Users", &sql.users().await, &api_users),
            holds_diff("postgres", "Groups", &sql.groups().await, &api_groups),
        ]
        .into_iter()
        .flatten()
        .collect();
        if diffs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild through the server never completed:\n{}",
            diffs.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        immediate.is_empty(),
        "`scimd replay` returned after {took:?}, saying {:?}, before the rebuild was complete \
         (it completed later). /status right after: {st_immediate}\n{}",
        out.stderr.trim(),
        immediate.join("\n")
    );

    // Writes after the rebuild are projected as usual.
    s.client().create_user_named("after-online-replay").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn replay_of_a_projection_the_server_does_not_run_is_refused_with_a_clear_message() {
    let s = Scimd::start(Opts::default().env("PROJECTIONS", "file")).await;
    s.client().create_user_named("not-sql").await;
    // sql is not configured at all (no DATABASE_URL).
    let out = s.cli(&["replay", "--projection", "sql"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("DATABASE_URL"),
        "says what is missing: {out:?}"
    );
    let out = s.cli(&["replay", "--projection", "nosuch"]).await;
    assert!(!out.status.success(), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Restart and checkpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_restarted_server_resumes_from_its_checkpoints_without_rewriting_anything() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let mut s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    mixed_workload(&s.client(), "restart").await;
    create_users(&s.client(), "restart", 200).await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    assert_files_match(&s, &s.data_path()).await;

    let Pool::Postgres(pool) = &sql.pool else {
        unreachable!()
    };
    let xmins = |table: String| async move {
        let rows: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, xmin::text FROM \"{table}\""
        )))
        .fetch_all(pool)
        .await
        .expect("read xmin");
        rows.into_iter().collect::<BTreeMap<String, String>>()
    };
    let checkpoint_xmin = || async {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM scimd_checkpoint WHERE name = $1")
            .bind(format!("sql:{},{}", sql.users, sql.groups))
            .fetch_one(pool)
            .await
            .expect("checkpoint row")
    };
    let before = (
        xmins(sql.users.clone()).await,
        xmins(sql.groups.clone()).await,
        checkpoint_xmin().await,
        file_stamps(&s.data_path(), "Users"),
        file_stamps(&s.data_path(), "Groups"),
    );
    let (users, groups) = (sql.users().await, sql.groups().await);
    let position = status(&s).await["position"].as_u64().unwrap();

    s.restart().await;
    // Right away (as soon as each runner reports) the checkpoints equal the position.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(&s).await;
        assert_eq!(
            st["position"].as_u64(),
            Some(position),
            "a restart writes nothing to the log"
        );
        let subs = &st["subscribers"];
        if subs.get("file").is_some() && subs.get("sql").is_some() {
            for name in ["file", "sql"] {
                assert_eq!(
                    subs[name]["checkpoint"].as_u64(),
                    Some(position),
                    "{name}: {st:#}"
                );
                assert_eq!(subs[name]["lag"].as_u64(), Some(0), "{name}: {st:#}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projections did not report within 10 s: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // any re-application would have happened by now
    let after = (
        xmins(sql.users.clone()).await,
        xmins(sql.groups.clone()).await,
        checkpoint_xmin().await,
        file_stamps(&s.data_path(), "Users"),
        file_stamps(&s.data_path(), "Groups"),
    );
    assert!(
        before.0 == after.0 && before.1 == after.1,
        "sql rows were rewritten after a restart"
    );
    assert_eq!(
        before.2, after.2,
        "the sql checkpoint was rewritten after a restart"
    );
    assert!(
        before.3 == after.3 && before.4 == after.4,
        "files were rewritten after a restart"
    );
    assert_holds(
        "postgres (after restart)",
        "Users",
        &sql.users().await,
        &users,
    );
    assert_holds(
        "postgres (after restart)",
        "Groups",
        &sql.groups().await,
        &groups,
    );
    assert_sql_matches(&s, &sql, "postgres").await;
    assert_files_match(&s, &s.data_path()).await;
    sql.cleanup().await;
}

#[tokio::test]
async fn pointing_the_sql_projection_at_new_tables_fills_them_from_the_start_of_the_log() {
    // An operator moves the projection to another database (or other table names) and restarts:
    // the new tables have no checkpoint of their own, so they must be filled from position 1.
    let sql = Sql::sqlite().await;
    let mut s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "move").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    s.stop().await;

    let (users_b, groups_b) = sql.other_tables();
    s.opts.env.push(("USER_MODEL_NAME".into(), users_b.clone()));
    s.opts
        .env
        .push(("GROUP_MODEL_NAME".into(), groups_b.clone()));
    s.start_again().await;
    caught_up(&s, &["sql"], CONVERGE).await;
    let (api_users, api_groups) = api_state(&s).await;
    assert_holds(
        "sqlite (new tables)",
        "Users",
        &sql.rows(&users_b).await,
        &api_users,
    );
    assert_holds(
        "sqlite (new tables)",
        "Groups",
        &sql.rows(&groups_b).await,
        &api_groups,
    );
}

// ---------------------------------------------------------------------------------------------
// Parked changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_change_postgres_refuses_for_good_is_parked_and_retry_applies_it_once_fixed() {
    // JSONB cannot hold U+0000: PostgreSQL refuses such a document for good (SQLSTATE 22P05).
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    let good = id_of(&api.create_user(user_body("park-good-1", 1)).await);
    let bad_resp = api
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "park-bad", "title": "nul\u{0}inside"}),
        )
        .await;
    if bad_resp.status != 201 {
        eprintln!(
            "NOTICE: scimd refuses U+0000 in attribute values ({}); nothing to park",
            bad_resp.status
        );
        sql.cleanup().await;
        return;
    }
    let bad = id_of(&bad_resp.json());
    let good2 = id_of(&api.create_user(user_body("park-good-2", 2)).await);
    caught_up(&s, &["sql"], CONVERGE).await;
    let st = status(&s).await;
    assert_eq!(
        st["subscribers"]["sql"]["parked"].as_u64(),
        Some(1),
        "one change parked: {st:#}"
    );
    let users = sql.users().await;
    assert!(
        users.contains_key(&good) && users.contains_key(&good2),
        "the others were applied"
    );
    assert!(!users.contains_key(&bad), "the refused one was not");

    // Retrying while the document is still refused keeps it parked.
    s.cli(&["projection", "retry", "sql"]).await.success();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status(&s).await["subscribers"]["sql"]["parked"].as_u64(),
        Some(1)
    );

    // Fixed by a replace: retry applies the current state and unparks it.
    api.put(
        &format!("/Users/{bad}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "park-bad", "title": "fixed"}),
    )
    .await
    .expect(200);
    caught_up(&s, &["sql"], CONVERGE).await;
    s.cli(&["projection", "retry", "sql"]).await.success();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let st = status(&s).await;
        if st["subscribers"]["sql"]["parked"].as_u64() == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retry did not unpark the fixed change: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Which projections run
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_projections_or_database_url_the_file_projection_runs_under_data_path() {
    let s = Scimd::start(
        public(Opts::default())
            .unset("PROJECTIONS")
            .unset("DATABASE_URL"),
    )
    .await;
    let user = s.client().create_user_named("default-file").await;
    let st = caught_up(&s, &["file"], CONVERGE).await;
    let names: BTreeSet<&String> = st["subscribers"].as_object().unwrap().keys().collect();
    assert!(
        !names.iter().any(|n| *n == "sql"),
        "no sql projection without DATABASE_URL: {st}"
    );
    let path = s.data_path().join("Users").join(id_of(&user));
    assert!(path.is_file(), "{} was not written", path.display());
    assert_files_match(&s, &s.data_path()).await;
}

#[tokio::test]
async fn with_only_database_url_the_sql_projection_runs_instead_of_the_files() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(sql.opts(public(Opts::default())).unset("PROJECTIONS")).await;
    let user = s.client().create_user_named("default-sql").await;
    let st = caught_up(&s, &["sql"], CONVERGE).await;
    assert!(
        st["subscribers"].get("file").is_none(),
        "DATABASE_URL selects sql only: {st}"
    );
    assert!(sql.users().await.contains_key(&id_of(&user)));
    assert!(
        file_docs(&s.data_path(), "Users").is_empty(),
        "no files with DATABASE_URL set"
    );
}

#[tokio::test]
async fn projections_none_turns_every_projection_off() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "none")).await;
    s.client().create_user_named("no-projection").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = status(&s).await;
    assert!(
        st["subscribers"].get("file").is_none() && st["subscribers"].get("sql").is_none(),
        "{st}"
    );
    assert!(file_docs(&s.data_path(), "Users").is_empty());
}
