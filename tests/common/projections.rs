//! The projections side of the `projections_*` test files: the SQL databases of the run (SQLite in a
//! temporary directory, PostgreSQL, MariaDB) read back with sqlx, the file projection read from the
//! file system, what `GET` returns in the form a projection must hold it, and the workloads the
//! files share.
//!
//! Needs `SCIMD_TEST_POSTGRES_URL` (with `SCIMD_TEST_POSTGRES_STOP` / `SCIMD_TEST_POSTGRES_START` for
//! the outage test) and `SCIMD_TEST_MYSQL_URL`; `scripts/test` starts throwaway servers and exports
//! them (`SCIMD_TEST_SERVICES_ONLY=1 scripts/test cargo test --test 'projections_*'` runs only these
//! files). SQLite needs nothing. A test whose database is not configured prints a notice and passes,
//! except with `CI=true`, where it fails.
//!
//! The databases are shared: every test writes to its own pair of tables (`u_<random>` /
//! `g_<random>`) and drops them at the end. The outage test stops and starts the whole PostgreSQL
//! server, so it holds [`POSTGRES`] for writing and every other PostgreSQL test holds it for
//! reading; `cargo test` runs one test binary at a time, so the outage never hits a test of another
//! `projections_*` file either.
//!
//! Unless a test says otherwise, servers run with `PUBLIC_URL` set ([`public`]), so that `GET` and the
//! projections render the same absolute `meta.location` and `$ref` and documents compare as they
//! are.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use serde_json::{Value, json};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::*;

/// Read: the test needs PostgreSQL up. Write: the test stops and starts PostgreSQL.
pub static POSTGRES: RwLock<()> = RwLock::const_new(());

/// How long a projection may take to catch up when nothing is wrong.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// How long it may take after its backend came back (the runner's backoff is capped at 15 s).
pub const RECOVERY: Duration = Duration::from_secs(120);
/// What `meta.location` and `$ref` start with (in `GET` and in the projections).
pub const PUBLIC_URL: &str = "https://scim.example.test";
/// A password some users are created with; it must never reach a projection.
pub const PASSWORD: &str = "Pr0jected-n3ver-7c1e";

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// The value of a `SCIMD_TEST_*` variable; `None` (after a notice) when unset, a panic with `CI=true`.
pub fn service_var(var: &str, what: &str) -> Option<String> {
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
pub fn control(var: &str) {
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
pub struct RestartPostgres {
    pub stopped: bool,
}

impl RestartPostgres {
    pub fn stop(&mut self) {
        control("SCIMD_TEST_POSTGRES_STOP");
        self.stopped = true;
    }
    pub fn start(&mut self) {
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

pub fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

// ---------------------------------------------------------------------------------------------
// SQL databases, read with sqlx
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
pub enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Holds the PostgreSQL lock for as long as the test uses the database.
#[allow(dead_code)]
pub enum PgGuard {
    Read(RwLockReadGuard<'static, ()>),
    Write(RwLockWriteGuard<'static, ()>),
}

/// One pair of tables of the sql projection, in one database: the `DATABASE_URL` scimd gets and
/// the test's own connection to the same database.
pub struct Sql {
    /// What scimd gets as DATABASE_URL (possibly in a SQLAlchemy spelling).
    pub url: String,
    pub pool: Pool,
    pub users: String,
    pub groups: String,
    _dir: Option<tempfile::TempDir>,
    _guard: Option<PgGuard>,
}

impl Sql {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> Sql {
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
    pub async fn postgres(spelling: fn(&str) -> String) -> Option<Sql> {
        let url = service_var("SCIMD_TEST_POSTGRES_URL", "PostgreSQL")?;
        let guard = PgGuard::Read(POSTGRES.read().await);
        Some(Sql::postgres_with(&url, spelling, guard).await)
    }

    /// PostgreSQL for this test alone (write lock): it may be stopped and started.
    pub async fn postgres_exclusive() -> Option<Sql> {
        let url = service_var("SCIMD_TEST_POSTGRES_URL", "PostgreSQL")?;
        service_var("SCIMD_TEST_POSTGRES_STOP", "PostgreSQL")?;
        service_var("SCIMD_TEST_POSTGRES_START", "PostgreSQL")?;
        let guard = PgGuard::Write(POSTGRES.write().await);
        Some(Sql::postgres_with(&url, |u| u.to_string(), guard).await)
    }

    pub async fn postgres_with(url: &str, spelling: fn(&str) -> String, guard: PgGuard) -> Sql {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to PostgreSQL at {url}: {e}"));
        Sql::new(spelling(url), Pool::Postgres(pool), None, Some(guard))
    }

    /// MariaDB / MySQL from `SCIMD_TEST_MYSQL_URL`; `spelling` rewrites the URL scimd gets.
    pub async fn mysql(spelling: fn(&str) -> String) -> Option<Sql> {
        let url = service_var("SCIMD_TEST_MYSQL_URL", "MariaDB")?;
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect to MariaDB at {url}: {e}"));
        Some(Sql::new(spelling(&url), Pool::MySql(pool), None, None))
    }

    pub fn new(
        url: String,
        pool: Pool,
        dir: Option<tempfile::TempDir>,
        guard: Option<PgGuard>,
    ) -> Sql {
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
    pub fn opts(&self, opts: Opts) -> Opts {
        opts.env("DATABASE_URL", &self.url)
            .env("USER_MODEL_NAME", &self.users)
            .env("GROUP_MODEL_NAME", &self.groups)
    }

    /// Another pair of tables in the same database.
    pub fn other_tables(&self) -> (String, String) {
        let suffix = random_suffix();
        (format!("u_{suffix}"), format!("g_{suffix}"))
    }

    pub fn quote(&self, table: &str) -> String {
        match self.pool {
            Pool::MySql(_) => format!("`{table}`"),
            _ => format!("\"{table}\""),
        }
    }

    /// Every row of `table` as id → parsed `details`. Panics on a `details` that is not JSON.
    pub async fn rows(&self, table: &str) -> BTreeMap<String, Value> {
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

    pub async fn users(&self) -> BTreeMap<String, Value> {
        self.rows(&self.users).await
    }

    pub async fn groups(&self) -> BTreeMap<String, Value> {
        self.rows(&self.groups).await
    }

    /// Runs a statement (for tampering with the tables); `$1`-style placeholders are not used.
    pub async fn execute(&self, sql: String) {
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
    pub async fn find_user(&self, table: &str, name: &str) -> Vec<String> {
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
    pub async fn email_of(&self, table: &str, id: &str) -> Option<String> {
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
    pub async fn drop_tables(&self, users: &str, groups: &str) {
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

    pub async fn cleanup(&self) {
        self.drop_tables(&self.users, &self.groups).await;
    }
}

/// `postgres://…` → `postgresql+psycopg2://…`, as SQLAlchemy deployments wrote it.
pub fn sqlalchemy_postgres(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("postgresql+psycopg2://{rest}")
}

/// `mysql://…` → `mariadb://…`.
pub fn mariadb_scheme(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("mariadb://{rest}")
}

/// `mysql://…` → `mysql+pymysql://…`, as SQLAlchemy deployments wrote it.
pub fn sqlalchemy_mysql(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("mysql+pymysql://{rest}")
}

pub fn as_is(url: &str) -> String {
    url.to_string()
}

// ---------------------------------------------------------------------------------------------
// The file projection, read from the file system
// ---------------------------------------------------------------------------------------------

/// Every entry of `root/dir` as file name → parsed document. Panics on anything that is not a
/// pretty JSON document (a stray temporary file shows up as an extra entry instead, since its name
/// is not an id).
pub fn file_docs(root: &Path, dir: &str) -> BTreeMap<String, Value> {
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
pub fn file_stamps(root: &Path, dir: &str) -> BTreeMap<String, (u64, std::time::SystemTime)> {
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
pub async fn status(s: &Scimd) -> Value {
    s.client().get("/status").await.expect(200).json()
}

/// Waits until every projection in `names` has handled the whole log (checkpoint = position, lag
/// 0, running, no error). Returns the last `/status`.
pub async fn caught_up(s: &Scimd, names: &[&str], within: Duration) -> Value {
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
pub fn projected_form(s: &Scimd, doc: &Value) -> Value {
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
pub async fn api_state(s: &Scimd) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
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
pub fn holds_diff(
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
pub fn assert_holds(
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
pub async fn assert_sql_matches(s: &Scimd, sql: &Sql, backend: &str) {
    let (users, groups) = api_state(s).await;
    assert_holds(backend, "Users", &sql.users().await, &users);
    assert_holds(backend, "Groups", &sql.groups().await, &groups);
}

/// Users and Groups of the file projection under `root` equal what `GET` returns.
pub async fn assert_files_match(s: &Scimd, root: &Path) {
    let (users, groups) = api_state(s).await;
    assert_holds("file", "Users", &file_docs(root, "Users"), &users);
    assert_holds("file", "Groups", &file_docs(root, "Groups"), &groups);
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

pub fn user_body(name: &str, i: usize) -> Value {
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

pub fn group_body(name: &str, members: &[(&str, &str)]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|(id, t)| json!({"value": id, "type": t}))
        .collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members})
}

/// Creates, replaces, membership changes and deletes (with cascades out of groups), leaving a mix of
/// live and deleted Users and Groups. Display names of members never change here (see
/// `renaming_a_member_updates_the_groups_it_belongs_to_in_every_projection`).
pub async fn mixed_workload(api: &Api, tag: &str) {
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
pub async fn create_users(api: &Api, tag: &str, n: usize) -> Vec<String> {
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

pub fn public(opts: Opts) -> Opts {
    opts.public_url(PUBLIC_URL)
}
