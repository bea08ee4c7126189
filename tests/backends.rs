//! Projections II (issue 12), from outside: one conformance workload through a real `scimd serve`
//! into every backend — files, SQLite, PostgreSQL, MariaDB, LDAP (slapd) and MongoDB (nx-27017) —
//! read back with each backend's own client and compared with what `GET` returns; and, for LDAP and
//! MongoDB, an outage mid-load, `replay --fresh` into an empty target, and a parked change retried.
//!
//! Services come from `scripts/test` (`SCIMD_TEST_LDAP_*`, `SCIMD_TEST_MONGO_*`, and the SQL ones):
//! `SCIMD_TEST_SKIP_LINT=1 scripts/test --test backends`. A test whose service is not configured
//! prints a notice and passes, except with `CI=true`, where it fails. Each test writes under OUs /
//! into a database of its own. The outage tests stop and start the shared server, so they hold
//! [`LDAP`] / [`MONGO`] for writing and every other test of this binary holds them for reading.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use futures::{StreamExt, TryStreamExt, stream};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LDAP: RwLock<()> = RwLock::const_new(());
static MONGO: RwLock<()> = RwLock::const_new(());

const CONVERGE: Duration = Duration::from_secs(90);
const RECOVERY: Duration = Duration::from_secs(120);
const PUBLIC_URL: &str = "https://scim.example.test";
/// Members of the large group of the workload.
const LARGE: usize = 300;

fn service_var(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{var} is not set and CI=true: the {what} tests must run in CI");
            }
            eprintln!("NOTICE: skipping this {what} test: {var} is not set (scripts/test sets it)");
            None
        }
    }
}

fn control(var: &str) {
    let cmd = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .output()
        .unwrap_or_else(|e| panic!("run {var}: {e}"));
    assert!(
        out.status.success(),
        "{var} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a stopped service again when dropped (a failing outage test must not leave it down).
struct Restart(&'static str, bool);

impl Drop for Restart {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(std::env::var(self.0).unwrap_or_default())
                .status();
        }
    }
}

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

#[allow(dead_code)]
enum Guard {
    Read(RwLockReadGuard<'static, ()>),
    Write(RwLockWriteGuard<'static, ()>),
}

// ---------------------------------------------------------------------------------------------
// The backends, each read with its own client
// ---------------------------------------------------------------------------------------------

/// An LDAP target: OUs of this test under the test directory's base.
struct Ldap {
    url: String,
    base: String,
    admin: String,
    password: String,
    users: String,
    groups: String,
    _guard: Guard,
}

impl Ldap {
    async fn new(exclusive: bool) -> Option<Ldap> {
        let url = service_var("SCIMD_TEST_LDAP_URL", "LDAP")?;
        let guard = if exclusive {
            Guard::Write(LDAP.write().await)
        } else {
            Guard::Read(LDAP.read().await)
        };
        let s = suffix();
        Some(Ldap {
            url,
            base: std::env::var("SCIMD_TEST_LDAP_BASE").unwrap_or("dc=example,dc=org".into()),
            admin: std::env::var("SCIMD_TEST_LDAP_ADMIN")
                .unwrap_or("cn=admin,dc=example,dc=org".into()),
            password: std::env::var("SCIMD_TEST_LDAP_PASSWORD").unwrap_or("admin".into()),
            users: format!("Users_{s}"),
            groups: format!("Groups_{s}"),
            _guard: guard,
        })
    }

    fn opts(&self, opts: Opts) -> Opts {
        opts.env("LDAP_HOSTNAME", &self.url)
            .env("LDAP_BASENAME", &self.base)
            .env("LDAP_PASSWORD", &self.password)
            .env("USER_MODEL_NAME", &self.users)
            .env("GROUP_MODEL_NAME", &self.groups)
    }

    async fn client(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url).await.expect("slapd");
        ldap3::drive!(conn);
        ldap.simple_bind(&self.admin, &self.password)
            .await
            .and_then(|r| r.success())
            .expect("bind");
        ldap
    }

    /// Every entry under `ou` (attribute → values), by id.
    async fn entries(&self, ou: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let mut ldap = self.client().await;
        let base = format!("ou={ou},{}", self.base);
        let found = ldap
            .search(&base, ldap3::Scope::OneLevel, "(objectClass=*)", vec!["*"])
            .await
            .expect("search");
        let entries = found.0;
        entries
            .into_iter()
            .map(|e| {
                let e = ldap3::SearchEntry::construct(e);
                let id = e.attrs["cn"][0].clone();
                (id, e.attrs.into_iter().collect())
            })
            .collect()
    }

    /// The resources the directory holds: `info` plus `id`, `userName`, `displayName`, members
    /// from the member DNs.
    async fn resources(&self, ou: &str) -> BTreeMap<String, Value> {
        let users_suffix = format!(",ou={},{}", self.users, self.base);
        self.entries(ou)
            .await
            .into_iter()
            .map(|(id, attrs)| {
                let first = |n: &str| attrs.get(n).and_then(|v| v.first()).cloned();
                let mut doc: Value =
                    serde_json::from_str(&first("info").expect("info")).expect("info JSON");
                doc["id"] = json!(id);
                if let Some(v) = first("uid") {
                    doc["userName"] = json!(v);
                }
                if let Some(v) = first("displayName") {
                    doc["displayName"] = json!(v);
                }
                if ou == self.groups {
                    let members: Vec<Value> = attrs
                        .get("member")
                        .into_iter()
                        .flatten()
                        .map(|dn| {
                            let (value, rest) = dn[3..].split_once(',').expect("member DN");
                            let t = if format!(",{rest}") == users_suffix {
                                "User"
                            } else {
                                "Group"
                            };
                            json!({"value": value, "type": t})
                        })
                        .collect();
                    doc["members"] = json!(members);
                }
                (id, canonical(&doc))
            })
            .collect()
    }

    async fn state(&self) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
        (
            self.resources(&self.users).await,
            self.resources(&self.groups).await,
        )
    }

    async fn cleanup(&self) {
        let mut ldap = self.client().await;
        for ou in [&self.users, &self.groups] {
            for id in self.entries(ou).await.keys() {
                let _ = ldap.delete(&format!("cn={id},ou={ou},{}", self.base)).await;
            }
            let _ = ldap.delete(&format!("ou={ou},{}", self.base)).await;
        }
    }
}

/// A MongoDB target: a database of this test.
struct Mongo {
    url: String,
    database: String,
    /// The collections: USER_MODEL_NAME / GROUP_MODEL_NAME (the defaults unless another target
    /// of the same server sets them).
    users: String,
    groups: String,
    _guard: Guard,
}

impl Mongo {
    async fn new(exclusive: bool) -> Option<Mongo> {
        let url = service_var("SCIMD_TEST_MONGO_URL", "MongoDB")?;
        let guard = if exclusive {
            Guard::Write(MONGO.write().await)
        } else {
            Guard::Read(MONGO.read().await)
        };
        Some(Mongo {
            url,
            database: format!("t_{}", suffix()),
            users: "Users".into(),
            groups: "Groups".into(),
            _guard: guard,
        })
    }

    fn opts(&self, opts: Opts) -> Opts {
        opts.env("MONGO_DB", &self.url)
            .env("MONGO_DATABASE", &self.database)
    }

    async fn db(&self, database: &str) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.url)
            .await
            .expect("mongo client")
            .database(database)
    }

    async fn resources(&self, database: &str, collection: &str) -> BTreeMap<String, Value> {
        let docs: Vec<Document> = self
            .db(database)
            .await
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read");
        docs.into_iter()
            .map(|d| {
                let v = mongodb::bson::Bson::Document(d).into_relaxed_extjson();
                assert!(v["_version"].is_number(), "{v}");
                let v = ::projections::mongo::resource_of(&v);
                (v["id"].as_str().expect("id").to_owned(), canonical(&v))
            })
            .collect()
    }

    async fn state_of(&self, database: &str) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
        (
            self.resources(database, &self.users).await,
            self.resources(database, &self.groups).await,
        )
    }

    async fn state(&self) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
        self.state_of(&self.database).await
    }

    async fn cleanup(&self) {
        let _ = self.db(&self.database).await.drop().await;
    }
}

/// The form every backend is compared in: no computed `groups`, members as sorted
/// `{value, type}` (LDAP and MongoDB keep neither `display` nor `$ref`).
fn canonical(doc: &Value) -> Value {
    let mut v = doc.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("groups");
        if let Some(members) = map.get_mut("members").and_then(Value::as_array_mut) {
            let mut list: Vec<Value> = members
                .iter()
                .map(|m| json!({"value": m["value"], "type": m["type"]}))
                .collect();
            list.sort_by(|a, b| a["value"].as_str().cmp(&b["value"].as_str()));
            *members = list;
        }
    }
    v
}

/// Every User and Group as GET returns them, in canonical form.
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
                    (id, canonical(&doc))
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        out.push(docs);
    }
    let groups = out.pop().unwrap_or_default();
    let users = out.pop().unwrap_or_default();
    (users, groups)
}

#[track_caller]
fn assert_same(backend: &str, held: &BTreeMap<String, Value>, expected: &BTreeMap<String, Value>) {
    let missing: Vec<_> = expected.keys().filter(|k| !held.contains_key(*k)).collect();
    let extra: Vec<_> = held.keys().filter(|k| !expected.contains_key(*k)).collect();
    let differing: Vec<String> = expected
        .iter()
        .filter(|(k, v)| held.get(*k).is_some_and(|h| normalized(h) != normalized(v)))
        .map(|(k, v)| format!("  {k}:\n    {backend}: {}\n    GET: {v}", held[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differing.is_empty(),
        "{backend} does not hold what GET returns: missing {missing:?}, extra {extra:?}\n{}",
        differing.join("\n")
    );
}

async fn status(s: &Scimd) -> Value {
    s.client().get("/status").await.expect(200).json()
}

async fn caught_up(s: &Scimd, names: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let st = status(s).await;
        let position = st["position"].as_u64();
        if names.iter().all(|n| {
            let sub = &st["subscribers"][*n];
            sub["checkpoint"].as_u64() == position && sub["state"] == "running"
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?} did not catch up within {within:?}: {st:#}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

async fn create_users(api: &Api, tag: &str, n: usize) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let tag = tag.to_owned();
            async move {
                id_of(
                    &api.create_user(json!({
                        "schemas": [USER_SCHEMA], "userName": format!("{tag}-{i}"),
                        "displayName": format!("User {i}"),
                        "emails": [{"value": format!("{tag}-{i}@example.org"), "type": "work", "primary": true},
                                   {"value": format!("{tag}-{i}@home.example"), "type": "home"}],
                    }))
                    .await,
                )
            }
        })
        .buffered(16)
        .collect()
        .await
}

/// Create, replace, PATCH, member adds and removes on a large group (single and in bulk), a
/// rename, deletes with their cascades out of groups.
async fn conformance_workload(api: &Api, tag: &str) {
    let users = create_users(api, tag, LARGE + 20).await;
    let members: Vec<Value> = users[..LARGE]
        .iter()
        .map(|id| json!({"value": id}))
        .collect();
    let large = id_of(
        &api.create_group(json!({"schemas": [GROUP_SCHEMA], "displayName": format!("{tag}-large"), "members": members}))
            .await,
    );
    let small = id_of(
        &api.create_group(
            json!({"schemas": [GROUP_SCHEMA], "displayName": format!("{tag}-small"),
            "members": [{"value": users[LARGE]}, {"value": large, "type": "Group"}]}),
        )
        .await,
    );
    // Replace of a user (attributes removed and added), PATCH of another.
    api.put(
        &format!("/Users/{}", users[0]),
        &json!({"schemas": [USER_SCHEMA], "userName": format!("{tag}-0"), "title": "Engineer",
                "x509Certificates": [{"value": "c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUcwIHRlc3Q="}]}),
    )
    .await
    .expect(200);
    api.patch(
        &format!("/Users/{}", users[1]),
        &patch(json!([{"op": "replace", "path": "name.givenName", "value": "Patched"},
                      {"op": "add", "path": "emails", "value": [{"value": "extra@example.org", "type": "other"}]}])),
    )
    .await
    .expect(200);
    // Member adds and removes on the large group: one by one, and several in one PATCH.
    for id in &users[LARGE..LARGE + 5] {
        api.patch(
            &format!("/Groups/{large}"),
            &patch(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .expect(204);
    }
    for id in &users[10..15] {
        api.patch(
            &format!("/Groups/{large}"),
            &patch(json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}])),
        )
        .await
        .expect(204);
    }
    let bulk_add: Vec<Value> = users[LARGE + 5..LARGE + 15]
        .iter()
        .map(|id| json!({"value": id}))
        .collect();
    api.patch(
        &format!("/Groups/{large}"),
        &patch(json!([{"op": "add", "path": "members", "value": bulk_add},
                      {"op": "remove", "path": "members", "value": [{"value": users[20]}, {"value": users[21]}]}])),
    )
    .await
    .expect(204);
    // Add then remove the same member (folded in one batch or not).
    let flip = &users[LARGE + 16];
    for op in ["add", "remove"] {
        api.patch(
            &format!("/Groups/{large}"),
            &patch(json!([{"op": op, "path": "members", "value": [{"value": flip}]}])),
        )
        .await
        .expect(204);
    }
    // Rename of a group (with a member change) and of a member user.
    api.patch(
        &format!("/Groups/{small}"),
        &patch(json!([{"op": "replace", "path": "displayName", "value": format!("{tag}-small-renamed")},
                      {"op": "add", "path": "members", "value": [{"value": users[LARGE + 17]}]}])),
    )
    .await
    .expect(204);
    api.put(
        &format!("/Users/{}", users[2]),
        &json!({"schemas": [USER_SCHEMA], "userName": format!("{tag}-2-renamed"), "displayName": "Renamed"}),
    )
    .await
    .expect(200);
    // Deletes: members of the large group (cascade), a group that is a member of another.
    for id in &users[30..35] {
        api.delete(&format!("/Users/{id}")).await.expect(204);
    }
    api.delete(&format!("/Users/{}", users[LARGE]))
        .await
        .expect(204);
    let gone = id_of(
        &api.create_group(
            json!({"schemas": [GROUP_SCHEMA], "displayName": format!("{tag}-gone"),
            "members": [{"value": users[40]}]}),
        )
        .await,
    );
    api.patch(
        &format!("/Groups/{small}"),
        &patch(
            json!([{"op": "add", "path": "members", "value": [{"value": gone, "type": "Group"}]}]),
        ),
    )
    .await
    .expect(204);
    api.delete(&format!("/Groups/{gone}")).await.expect(204);
}

// ---------------------------------------------------------------------------------------------
// Conformance: the same changes in, the same resources out
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_same_changes_reach_every_backend_as_the_same_resources() {
    let ldap = Ldap::new(false).await;
    let mut mongo = Mongo::new(false).await;
    // One USER_MODEL_NAME / GROUP_MODEL_NAME for all: LDAP's OUs of this test.
    let (users_name, groups_name) = ldap
        .as_ref()
        .map_or(("Users".to_string(), "Groups".to_string()), |l| {
            (l.users.clone(), l.groups.clone())
        });
    if let Some(m) = mongo.as_mut() {
        m.users = users_name.clone();
        m.groups = groups_name.clone();
    }
    let sqlite_dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = format!("sqlite://{}", sqlite_dir.path().join("p.db").display());
    // Every backend at once: PROJECTIONS=file,sql,ldap,mongo.
    let mut names = vec!["file", "sql"];
    let mut opts = Opts::default()
        .public_url(PUBLIC_URL)
        .env("DATABASE_URL", &sqlite_url);
    if let Some(l) = &ldap {
        opts = l.opts(opts);
        names.push("ldap");
    }
    if let Some(m) = &mongo {
        opts = m.opts(opts);
        names.push("mongo");
    }
    let opts = opts.env("PROJECTIONS", &names.join(","));
    let s = Scimd::start(opts).await;
    conformance_workload(&s.client(), "conf").await;
    caught_up(&s, &names, CONVERGE).await;
    let (users, groups) = api_state(&s).await;
    assert!(
        groups
            .values()
            .any(|g| g["members"].as_array().is_some_and(|m| m.len() >= LARGE))
    );

    let files = |dir: &str| -> BTreeMap<String, Value> {
        std::fs::read_dir(s.data_path().join(dir))
            .expect("dir")
            .map(|e| {
                let e = e.expect("entry");
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(e.path()).expect("read"))
                        .expect("json");
                (e.file_name().to_string_lossy().into_owned(), canonical(&v))
            })
            .collect()
    };
    assert_same("file", &files("Users"), &users);
    assert_same("file", &files("Groups"), &groups);
    let pool = sqlx::SqlitePool::connect(&sqlite_url)
        .await
        .expect("sqlite");
    for (table, expected) in [(&users_name, &users), (&groups_name, &groups)] {
        let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, details FROM \"{table}\""
        )))
        .fetch_all(&pool)
        .await
        .expect("rows");
        let held = rows
            .into_iter()
            .map(|(id, d)| (id, canonical(&serde_json::from_str(&d).expect("json"))))
            .collect();
        assert_same("sqlite", &held, expected);
    }
    if let Some(l) = &ldap {
        let (u, g) = l.state().await;
        assert_same("ldap", &u, &users);
        assert_same("ldap", &g, &groups);
        l.cleanup().await;
    }
    if let Some(m) = &mongo {
        let (u, g) = m.state().await;
        assert_same("mongo", &u, &users);
        assert_same("mongo", &g, &groups);
        m.cleanup().await;
    }
    // PostgreSQL and MariaDB: the same workload through a server of their own.
    for (var, what) in [
        ("SCIMD_TEST_POSTGRES_URL", "PostgreSQL"),
        ("SCIMD_TEST_MYSQL_URL", "MariaDB"),
    ] {
        let Some(url) = service_var(var, what) else {
            continue;
        };
        let t = suffix();
        let (ut, gt) = (format!("u_{t}"), format!("g_{t}"));
        let s = Scimd::start(
            Opts::default()
                .public_url(PUBLIC_URL)
                .env("PROJECTIONS", "sql")
                .env("DATABASE_URL", &url)
                .env("USER_MODEL_NAME", &ut)
                .env("GROUP_MODEL_NAME", &gt),
        )
        .await;
        conformance_workload(&s.client(), "conf").await;
        caught_up(&s, &["sql"], CONVERGE).await;
        let (users, groups) = api_state(&s).await;
        let held = |rows: Vec<(String, String)>| -> BTreeMap<String, Value> {
            rows.into_iter()
                .map(|(id, d)| (id, canonical(&serde_json::from_str(&d).expect("json"))))
                .collect()
        };
        for (table, expected) in [(&ut, &users), (&gt, &groups)] {
            let rows: Vec<(String, String)> = if what == "PostgreSQL" {
                let p = sqlx::PgPool::connect(&url).await.expect("pg");
                let r = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT id, details::text FROM \"{table}\""
                )))
                .fetch_all(&p)
                .await
                .expect("rows");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
                    .execute(&p)
                    .await;
                r
            } else {
                let p = sqlx::MySqlPool::connect(&url).await.expect("mysql");
                let r = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT CAST(id AS CHAR), CAST(details AS CHAR) FROM `{table}`"
                )))
                .fetch_all(&p)
                .await
                .expect("rows");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE `{table}`")))
                    .execute(&p)
                    .await;
                r
            };
            assert_same(what, &held(rows), expected);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outage, replay, parked: LDAP and MongoDB
// ---------------------------------------------------------------------------------------------

/// The backend of a per-backend test.
enum Target {
    Ldap(Ldap),
    Mongo(Mongo),
}

impl Target {
    async fn new(name: &str, exclusive: bool) -> Option<Target> {
        match name {
            "ldap" => Ldap::new(exclusive).await.map(Target::Ldap),
            _ => Mongo::new(exclusive).await.map(Target::Mongo),
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Target::Ldap(_) => "ldap",
            Target::Mongo(_) => "mongo",
        }
    }
    fn opts(&self) -> Opts {
        let opts = Opts::default()
            .public_url(PUBLIC_URL)
            .env("PROJECTIONS", self.name());
        match self {
            Target::Ldap(l) => l.opts(opts),
            Target::Mongo(m) => m.opts(opts),
        }
    }
    fn control(&self, what: &str) -> &'static str {
        match (self, what) {
            (Target::Ldap(_), "stop") => "SCIMD_TEST_LDAP_STOP",
            (Target::Ldap(_), _) => "SCIMD_TEST_LDAP_START",
            (Target::Mongo(_), "stop") => "SCIMD_TEST_MONGO_STOP",
            (Target::Mongo(_), _) => "SCIMD_TEST_MONGO_START",
        }
    }
    async fn state(&self) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
        match self {
            Target::Ldap(l) => l.state().await,
            Target::Mongo(m) => m.state().await,
        }
    }
    async fn assert_matches(&self, s: &Scimd) {
        let (users, groups) = api_state(s).await;
        let (u, g) = self.state().await;
        assert_same(self.name(), &u, &users);
        assert_same(self.name(), &g, &groups);
    }
    async fn cleanup(&self) {
        match self {
            Target::Ldap(l) => l.cleanup().await,
            Target::Mongo(m) => m.cleanup().await,
        }
    }
}

async fn server_stopped_mid_load_catches_up_and_loses_nothing(name: &str) {
    let Some(t) = Target::new(name, true).await else {
        return;
    };
    let s = Scimd::start(t.opts()).await;
    let api = s.client();
    conformance_workload(&api, "before").await;
    caught_up(&s, &[t.name()], CONVERGE).await;

    let mut restart = Restart(t.control("start"), false);
    let load = {
        let api = api.clone();
        tokio::spawn(async move { create_users(&api, "during", 200).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    control(t.control("stop"));
    restart.1 = true;
    // The backend stays down until this workload is answered, so a write that waited on the
    // projection would never complete (the client gives up and the test fails); no wall-clock
    // budget, this machine is shared and its timings noisy.
    conformance_workload(&api, "during-outage").await;
    let created = load.await.expect("load");
    assert_eq!(created.len(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status(&s).await;
        let sub = &st["subscribers"][t.name()];
        if sub["state"] == "retrying" && sub["lastError"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/status never showed the outage: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    control(t.control("start"));
    restart.1 = false;
    caught_up(&s, &[t.name()], RECOVERY).await;
    t.assert_matches(&s).await;
    t.cleanup().await;
}

#[tokio::test]
async fn an_ldap_server_stopped_mid_load_is_caught_up_with_and_nothing_is_lost() {
    server_stopped_mid_load_catches_up_and_loses_nothing("ldap").await;
}

#[tokio::test]
async fn a_mongo_server_stopped_mid_load_is_caught_up_with_and_nothing_is_lost() {
    server_stopped_mid_load_catches_up_and_loses_nothing("mongo").await;
}

async fn replay_fresh_into_an_empty_target_equals_the_live_one(name: &str) {
    let Some(t) = Target::new(name, false).await else {
        return;
    };
    let mut s = Scimd::start(t.opts()).await;
    conformance_workload(&s.client(), "replay").await;
    caught_up(&s, &[t.name()], CONVERGE).await;
    t.assert_matches(&s).await;
    let live = t.state().await;
    s.stop().await;
    match &t {
        Target::Mongo(m) => {
            // Into another, empty database.
            let other = format!("{}_r", m.database);
            s.opts.env.push(("MONGO_DATABASE".into(), other.clone()));
            s.cli(&["replay", "--projection", "mongo", "--fresh"])
                .await
                .success();
            assert_eq!(m.state_of(&other).await, live, "replayed database differs");
            let _ = m.db(&other).await.drop().await;
            s.opts.env.pop();
        }
        Target::Ldap(l) => {
            // Emptied by --fresh, after damage: an entry removed, a stray one.
            let mut ldap = l.client().await;
            let victim = live.0.keys().next().expect("a user").clone();
            ldap.delete(&format!("cn={victim},ou={},{}", l.users, l.base))
                .await
                .expect("delete");
            s.cli(&["replay", "--projection", "ldap", "--fresh"])
                .await
                .success();
            assert_eq!(l.state().await, live, "replayed directory differs");
        }
    }
    t.cleanup().await;
}

#[tokio::test]
async fn replay_fresh_rebuilds_the_ldap_tree_as_the_live_one() {
    replay_fresh_into_an_empty_target_equals_the_live_one("ldap").await;
}

#[tokio::test]
async fn replay_fresh_into_an_empty_mongo_database_equals_the_live_one() {
    replay_fresh_into_an_empty_target_equals_the_live_one("mongo").await;
}

#[tokio::test]
async fn an_email_ldap_refuses_is_parked_and_retried_once_fixed() {
    // `email` is an IA5String: LDAP refuses a non-ASCII address for good (invalidAttributeSyntax).
    let Some(t) = Target::new("ldap", false).await else {
        return;
    };
    let s = Scimd::start(t.opts()).await;
    let api = s.client();
    let bad = id_of(
        &api.create_user(json!({"schemas": [USER_SCHEMA], "userName": "park-bad",
            "emails": [{"value": "bärbel@exämple.org"}]}))
            .await,
    );
    let good = id_of(&api.create_user_named("park-good").await);
    caught_up(&s, &["ldap"], CONVERGE).await;
    let st = status(&s).await;
    assert_eq!(st["subscribers"]["ldap"]["parked"], 1, "{st:#}");
    let (users, _) = t.state().await;
    assert!(users.contains_key(&good) && !users.contains_key(&bad));

    api.put(
        &format!("/Users/{bad}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "park-bad", "emails": [{"value": "barbel@example.org"}]}),
    )
    .await
    .expect(200);
    caught_up(&s, &["ldap"], CONVERGE).await;
    s.cli(&["projection", "retry", "ldap"]).await.success();
    let deadline = Instant::now() + CONVERGE;
    while status(&s).await["subscribers"]["ldap"]["parked"] != 0 {
        assert!(
            Instant::now() < deadline,
            "retry did not unpark the fixed change"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    t.assert_matches(&s).await;
    let entries = match &t {
        Target::Ldap(l) => l.entries(&l.users).await,
        Target::Mongo(_) => unreachable!(),
    };
    assert_eq!(
        entries[&bad]["email"],
        vec!["barbel@example.org".to_string()]
    );
    t.cleanup().await;
}
