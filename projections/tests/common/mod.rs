//! Shared by the test binaries: opens each backend on a real store and reads back what it holds.
//!
//! PostgreSQL and MariaDB/MySQL come from `SCIMD_TEST_POSTGRES_URL` and `SCIMD_TEST_MYSQL_URL`, slapd
//! from `SCIMD_TEST_LDAP_URL` (each test writes under OUs of its own), MongoDB from
//! `SCIMD_TEST_MONGO_URL` (each test writes to a database of its own). When
//! one is missing its tests are skipped with a notice, except with `CI=true`, where a missing
//! service fails them. Every test gets tables of its own (random suffix), so tests run in parallel
//! against one database; they drop them when they pass.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use projections::file::FileProjection;
use projections::ldap::{Layout, LdapProjection, LdapSettings};
use projections::mongo::{MongoProjection, MongoSettings};
use projections::sql::SqlProjection;
use projections::{Change, Member, Projection, ProjectionError, ResourceKind};
use serde_json::{Value, json};
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Row};
use tempfile::TempDir;

/// The backends the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    File,
    Sqlite,
    Postgres,
    MySql,
    Ldap,
    Mongo,
}

impl Which {
    /// Whether the backend records the position with its data.
    pub fn keeps_checkpoint(self) -> bool {
        !matches!(self, Which::File | Which::Ldap)
    }

    /// Whether a batch is written all or nothing.
    pub fn transactional(self) -> bool {
        matches!(self, Which::Sqlite | Which::Postgres | Which::MySql)
    }
}

/// The URL of the server for `which` (PostgreSQL or MySQL), or `None` (skip) when not configured.
///
/// # Panics
/// When the variable is missing and `CI=true`: a missing service in CI is a failure.
pub fn server_url(which: Which) -> Option<String> {
    let var = match which {
        Which::Postgres => "SCIMD_TEST_POSTGRES_URL",
        Which::MySql => "SCIMD_TEST_MYSQL_URL",
        Which::Ldap => "SCIMD_TEST_LDAP_URL",
        Which::Mongo => "SCIMD_TEST_MONGO_URL",
        Which::File | Which::Sqlite => return None,
    };
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{var} is not set and CI=true: the {which:?} tests must run in CI")
        }
        _ => {
            eprintln!("skipping the {which:?} tests: {var} is not set");
            None
        }
    }
}

/// A suffix no other test of this run or of a parallel run uses.
pub fn unique_suffix() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}_{:x}_{}",
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with one more query parameter.
pub fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

/// A read-only view of what a backend holds, by the test's own connection.
pub enum Store {
    Files(PathBuf),
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
    Ldap(Box<(ldap3::Ldap, LdapSettings)>),
    Mongo(mongodb::Database),
}

/// The settings of the test slapd (`SCIMD_TEST_LDAP_*`) with OUs of the test's own.
pub fn ldap_settings(url: &str, suffix: &str, layout: Layout) -> LdapSettings {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    LdapSettings {
        url: url.to_owned(),
        base: var("SCIMD_TEST_LDAP_BASE", "dc=example,dc=org"),
        bind_dn: var("SCIMD_TEST_LDAP_ADMIN", "cn=admin,dc=example,dc=org"),
        password: var("SCIMD_TEST_LDAP_PASSWORD", "admin"),
        starttls: false,
        layout,
        users_ou: format!("Users_{suffix}"),
        groups_ou: format!("Groups_{suffix}"),
    }
}

/// The test's own connection to the directory of `settings`.
pub async fn ldap_client(settings: &LdapSettings) -> ldap3::Ldap {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&settings.url)
        .await
        .expect("connect to slapd");
    ldap3::drive!(conn);
    ldap.simple_bind(&settings.bind_dn, &settings.password)
        .await
        .and_then(|r| r.success())
        .expect("bind to slapd");
    ldap
}

/// Every entry in the OU of `kind`, as the resource it holds (device layout): `info` plus `id`
/// (`cn`), `userName` (`uid`), `displayName`, and `members` from the `member` DNs, sorted.
pub async fn ldap_resources(
    ldap: &mut ldap3::Ldap,
    settings: &LdapSettings,
    kind: ResourceKind,
) -> BTreeMap<String, Value> {
    let ou = settings.ou(kind);
    let (entries, result) = ldap
        .search(&ou, ldap3::Scope::OneLevel, "(objectClass=*)", vec!["*"])
        .await
        .expect("search")
        .non_error()
        .unwrap_or_else(|_| {
            (
                Vec::new(),
                ldap3::LdapResult {
                    rc: 0,
                    matched: String::new(),
                    text: String::new(),
                    refs: Vec::new(),
                    ctrls: Vec::new(),
                },
            )
        });
    let _ = result;
    let users_ou = format!(",{}", settings.ou(ResourceKind::User));
    let groups_ou = format!(",{}", settings.ou(ResourceKind::Group));
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = ldap3::SearchEntry::construct(entry);
        let first = |name: &str| entry.attrs.get(name).and_then(|v| v.first()).cloned();
        let id = entry
            .dn
            .strip_prefix("cn=")
            .and_then(|rest| rest.split_once(',').map(|(id, _)| id.to_owned()))
            .expect("cn=<id>");
        let mut doc: Value = first("info")
            .map(|info| serde_json::from_str(&info).expect("info is JSON"))
            .unwrap_or_else(|| json!({}));
        doc["id"] = json!(id);
        if let Some(uid) = first("uid") {
            doc["userName"] = json!(uid);
        }
        if let Some(name) = first("displayName") {
            doc["displayName"] = json!(name);
        }
        if kind == ResourceKind::Group {
            let mut members: Vec<Value> = entry
                .attrs
                .get("member")
                .into_iter()
                .flatten()
                .filter(|dn| !dn.is_empty())
                .map(|dn| {
                    let (value, rest) = dn
                        .strip_prefix("cn=")
                        .and_then(|r| r.split_once(','))
                        .expect("member DN cn=<id>,…");
                    let rest = format!(",{rest}");
                    let t = if rest == users_ou {
                        "User"
                    } else {
                        assert_eq!(rest, groups_ou, "member DN {dn} outside the OUs");
                        "Group"
                    };
                    json!({"value": value, "type": t, "$ref": format!("/{t}s/{value}")})
                })
                .collect();
            members.sort_by(|a, b| a["value"].as_str().cmp(&b["value"].as_str()));
            doc["members"] = json!(members);
        }
        out.insert(id, doc);
    }
    out
}

/// Every document of the collection of `kind`, as the resource it holds: without `_id` and
/// `_version`, members with their derivable `$ref`, sorted.
pub async fn mongo_resources(db: &mongodb::Database, name: &str) -> BTreeMap<String, Value> {
    use futures::TryStreamExt;
    let docs: Vec<mongodb::bson::Document> = db
        .collection::<mongodb::bson::Document>(name)
        .find(mongodb::bson::doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read documents");
    docs.into_iter()
        .map(|d| {
            let mut v = projections::mongo::resource_of(
                &mongodb::bson::Bson::Document(d).into_relaxed_extjson(),
            );
            if let Some(members) = v.get_mut("members").and_then(Value::as_array_mut) {
                for m in members.iter_mut() {
                    let r = format!(
                        "/{}s/{}",
                        m["type"].as_str().unwrap_or("?"),
                        m["value"].as_str().unwrap_or("?")
                    );
                    m["$ref"] = json!(r);
                }
                members.sort_by(|a, b| a["value"].as_str().cmp(&b["value"].as_str()));
            }
            (v["id"].as_str().expect("id").to_owned(), v)
        })
        .collect()
}

/// One backend under test.
pub struct Backend {
    pub which: Which,
    pub projection: Box<dyn Projection>,
    pub store: Store,
    pub users: String,
    pub groups: String,
    /// For the SQL backends: the URL the projection was opened with.
    pub url: String,
    dir: TempDir,
}

impl Backend {
    /// Opens `which` on fresh storage, or `None` when its server is not configured (see
    /// [`server_url`]).
    pub async fn open(which: Which) -> Option<Backend> {
        let dir = tempfile::tempdir().expect("temp dir");
        let suffix = unique_suffix();
        let users = format!("Users_{suffix}");
        let groups = format!("Groups_{suffix}");
        let (projection, store, url): (Box<dyn Projection>, Store, String) = match which {
            Which::File => {
                let root = dir.path().join("data");
                (
                    Box::new(FileProjection::new(root.clone())),
                    Store::Files(root),
                    String::new(),
                )
            }
            Which::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("scim.db").display());
                let projection = connect(&url, &users, &groups).await;
                let pool = SqlitePool::connect(&url).await.expect("sqlite pool");
                (Box::new(projection), Store::Sqlite(pool), url)
            }
            Which::Postgres => {
                let url = server_url(which)?;
                let url = with_param(&url, &format!("application_name=scimd-test-{suffix}"));
                let projection = connect(&url, &users, &groups).await;
                let pool = PgPool::connect(&url).await.expect("postgres pool");
                (Box::new(projection), Store::Postgres(pool), url)
            }
            Which::MySql => {
                let url = server_url(which)?;
                let projection = connect(&url, &users, &groups).await;
                let pool = MySqlPool::connect(&url).await.expect("mysql pool");
                (Box::new(projection), Store::MySql(pool), url)
            }
            Which::Ldap => {
                let url = server_url(which)?;
                let settings = ldap_settings(&url, &suffix, Layout::Device);
                let projection = LdapProjection::connect(settings.clone())
                    .await
                    .unwrap_or_else(|e| panic!("connect: {e}"));
                let client = ldap_client(&settings).await;
                (
                    Box::new(projection),
                    Store::Ldap(Box::new((client, settings))),
                    url,
                )
            }
            Which::Mongo => {
                let url = server_url(which)?;
                let settings = MongoSettings {
                    database: format!("t_{suffix}"),
                    users: "Users".into(),
                    groups: "Groups".into(),
                };
                let projection = MongoProjection::connect(&url, settings.clone())
                    .await
                    .unwrap_or_else(|e| panic!("connect: {e}"));
                let client = mongodb::Client::with_uri_str(&url)
                    .await
                    .expect("mongo client");
                let db = client.database(&settings.database);
                (Box::new(projection), Store::Mongo(db), url)
            }
        };
        Some(Backend {
            which,
            projection,
            store,
            users,
            groups,
            url,
            dir,
        })
    }

    /// The backend's read side (`projections::source`), on the same storage.
    pub async fn source(&self) -> Box<dyn projections::source::Source> {
        use projections::file::source::FileSource;
        use projections::ldap::source::LdapSource;
        use projections::mongo::source::MongoSource;
        use projections::sql::source::SqlSource;
        let opened: Result<Box<dyn projections::source::Source>, ProjectionError> =
            match &self.store {
                Store::Files(root) => FileSource::new(root.clone())
                    .map(|s| Box::new(s) as Box<dyn projections::source::Source>),
                Store::Sqlite(_) | Store::Postgres(_) | Store::MySql(_) => {
                    SqlSource::connect(&self.url, &self.users, &self.groups)
                        .await
                        .map(|s| Box::new(s) as Box<dyn projections::source::Source>)
                }
                Store::Ldap(ldap) => LdapSource::connect(ldap.1.clone())
                    .await
                    .map(|s| Box::new(s) as Box<dyn projections::source::Source>),
                Store::Mongo(db) => {
                    let settings = MongoSettings {
                        database: db.name().to_owned(),
                        users: "Users".into(),
                        groups: "Groups".into(),
                    };
                    MongoSource::connect(&self.url, settings)
                        .await
                        .map(|s| Box::new(s) as Box<dyn projections::source::Source>)
                }
            };
        opened.unwrap_or_else(|e| panic!("open the read side: {e}"))
    }

    /// The temporary directory of this test.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The table (SQL) or directory (file) of `kind`.
    pub fn table(&self, kind: ResourceKind) -> &str {
        match kind {
            ResourceKind::User => &self.users,
            ResourceKind::Group => &self.groups,
        }
    }

    /// Every resource of `kind` the backend holds, by id.
    pub async fn contents(&self, kind: ResourceKind) -> BTreeMap<String, Value> {
        let table = self.table(kind);
        match &self.store {
            Store::Ldap(ldap) => {
                let (client, settings) = &**ldap;
                return ldap_resources(&mut client.clone(), settings, kind).await;
            }
            Store::Mongo(db) => return mongo_resources(db, kind.plural()).await,
            _ => {}
        }
        let rows: Vec<(String, String)> = match &self.store {
            Store::Files(root) => {
                let dir = root.join(kind.plural());
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    return BTreeMap::new();
                };
                entries
                    .map(|entry| {
                        let entry = entry.expect("dir entry");
                        let text = std::fs::read_to_string(entry.path()).expect("read document");
                        (entry.file_name().to_string_lossy().into_owned(), text)
                    })
                    .collect()
            }
            Store::Postgres(pool) => sqlx::query(AssertSqlSafe(format!(
                "SELECT id, details::text FROM \"{table}\""
            )))
            .fetch_all(pool)
            .await
            .expect("select")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
            Store::MySql(pool) => sqlx::query(AssertSqlSafe(format!(
                "SELECT id, CAST(details AS CHAR) FROM `{table}`"
            )))
            .fetch_all(pool)
            .await
            .expect("select")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
            Store::Sqlite(pool) => sqlx::query(AssertSqlSafe(format!(
                "SELECT id, details FROM \"{table}\""
            )))
            .fetch_all(pool)
            .await
            .expect("select")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
            Store::Ldap(_) | Store::Mongo(_) => Vec::new(), // answered above
        };
        rows.into_iter()
            .map(|(id, text)| {
                let document = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{id}: stored document is not JSON: {e}"));
                (id, document)
            })
            .collect()
    }

    /// Drops what the test created in a shared database (the temp dir goes by itself).
    pub async fn cleanup(mut self) {
        match &self.store {
            Store::Ldap(_) => {
                let _ = self.projection.reset().await;
                if let Store::Ldap(ldap) = &self.store {
                    let (ldap, settings) = &**ldap;
                    let mut ldap = ldap.clone();
                    for kind in [ResourceKind::User, ResourceKind::Group] {
                        let _ = ldap.delete(&settings.ou(kind)).await;
                    }
                }
                return;
            }
            Store::Mongo(db) => {
                let _ = db.drop().await;
                return;
            }
            _ => {}
        }
        let statements = [
            format!("DROP TABLE {}", quote(self.which, &self.users)),
            format!("DROP TABLE {}", quote(self.which, &self.groups)),
            format!(
                "DELETE FROM scimd_checkpoint WHERE name = 'sql:{},{}'",
                self.users, self.groups
            ),
            format!(
                "DELETE FROM scimd_schema_version WHERE scope = '{},{}'",
                self.users, self.groups
            ),
        ];
        for statement in statements {
            let result = match &self.store {
                Store::Postgres(pool) => sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(pool)
                    .await
                    .map(drop),
                Store::MySql(pool) => sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(pool)
                    .await
                    .map(drop),
                Store::Files(_) | Store::Sqlite(_) | Store::Ldap(_) | Store::Mongo(_) => Ok(()),
            };
            if let Err(e) = result {
                eprintln!("cleanup of {:?}: {e}", self.which);
            }
        }
    }
}

/// `name` quoted for `which`'s SQL.
pub fn quote(which: Which, name: &str) -> String {
    match which {
        Which::MySql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

/// Connects the SQL projection, failing the test on error.
pub async fn connect(url: &str, users: &str, groups: &str) -> SqlProjection {
    match SqlProjection::connect(url, users, groups).await {
        Ok(projection) => projection,
        Err(e) => panic!("connect: {e}"),
    }
}

/// A SCIM User document as the runner projects it.
pub fn user(id: &str, user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id,
        "userName": user_name,
        "name": { "givenName": "Bärbel", "familyName": "O'Hara \"Q\"" },
        "emails": [{ "value": format!("{user_name}@example.org"), "primary": true }],
        "active": true,
        "meta": {
            "resourceType": "User",
            "created": "2026-01-02T03:04:05Z",
            "lastModified": "2026-01-02T03:04:05Z",
            "version": "W/\"1\"",
            "location": format!("/Users/{id}")
        }
    })
}

/// A SCIM Group document with `members` (user ids).
pub fn group(id: &str, display_name: &str, members: &[&str]) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": id,
        "displayName": display_name,
        "members": members.iter().map(|m| json!({ "value": m, "$ref": format!("/Users/{m}"), "type": "User" })).collect::<Vec<_>>(),
        "meta": { "resourceType": "Group", "location": format!("/Groups/{id}") }
    })
}

/// An upsert of `document` (whose `id` it takes).
pub fn upsert(kind: ResourceKind, document: Value) -> Change {
    Change::Upsert {
        kind,
        id: document["id"].as_str().expect("document id").to_owned(),
        version: 1,
        document,
    }
}

/// A delete.
pub fn delete(kind: ResourceKind, id: &str) -> Change {
    Change::Delete {
        kind,
        id: id.to_owned(),
    }
}

/// Applies `changes`, failing the test with the backend's error.
pub async fn apply_ok(backend: &mut Backend, changes: &[Change], position: u64) {
    if let Err(e) = backend.projection.apply(changes, position).await {
        panic!("{:?}: apply at {position}: {e}", backend.which);
    }
}

/// The index of a rejection, failing the test on anything else.
pub fn rejected_index(which: Which, result: Result<(), ProjectionError>) -> usize {
    match result {
        Err(ProjectionError::Rejected { index, reason }) => {
            eprintln!("{which:?} rejected change {index}: {reason}");
            index
        }
        other => panic!("{which:?}: expected a rejection, got {other:?}"),
    }
}

/// What `contents` returns for the given documents (members sorted by value).
pub fn by_id(documents: &[&Value]) -> BTreeMap<String, Value> {
    documents
        .iter()
        .map(|d| {
            let mut d = (*d).clone();
            if let Some(members) = d.get_mut("members").and_then(Value::as_array_mut) {
                members.sort_by(|a, b| a["value"].as_str().cmp(&b["value"].as_str()));
            }
            (d["id"].as_str().expect("id").to_owned(), d)
        })
        .collect()
}

/// An upsert of a User that `which` refuses for good: an id too long for a file name or an SQL
/// column, an email LDAP's IA5String syntax refuses, a field name BSON cannot encode.
pub fn refused_user(which: Which) -> (Change, String) {
    match which {
        Which::Ldap => {
            let mut u = user("u-refused", "refused");
            u["emails"] = json!([{"value": "bärbel@exämple.org", "primary": true}]);
            (upsert(ResourceKind::User, u), "u-refused".into())
        }
        Which::Mongo => {
            let mut u = user("u-refused", "refused");
            u["bad\u{0}key"] = json!(1);
            (upsert(ResourceKind::User, u), "u-refused".into())
        }
        _ => {
            let id = "x".repeat(300);
            (upsert(ResourceKind::User, user(&id, "long")), id)
        }
    }
}

/// A membership delta of group `id` at `version`, with its document without members.
pub fn members_change(id: &str, version: u64, added: &[&str], removed: &[&str]) -> Change {
    let member = |v: &&str| Member {
        value: (*v).to_owned(),
        kind: ResourceKind::User,
    };
    let mut document = group(id, "Team", &[]);
    if let Some(doc) = document.as_object_mut() {
        doc.remove("members");
    }
    Change::Members {
        id: id.to_owned(),
        version,
        document,
        attributes_changed: false,
        added: added.iter().map(member).collect(),
        removed: removed.iter().map(member).collect(),
    }
}
