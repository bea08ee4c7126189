//! Shared by the test binaries: opens each backend on a real store and reads back what it holds.
//!
//! PostgreSQL and MariaDB/MySQL come from `SCIMD_TEST_POSTGRES_URL` and `SCIMD_TEST_MYSQL_URL`. When
//! one is missing its tests are skipped with a notice, except with `CI=true`, where a missing
//! service fails them. Every test gets tables of its own (random suffix), so tests run in parallel
//! against one database; they drop them when they pass.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use projections::file::FileProjection;
use projections::sql::SqlProjection;
use projections::{Change, Projection, ProjectionError, ResourceKind};
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
}

impl Which {
    /// Whether the backend records the position with its data.
    pub fn keeps_checkpoint(self) -> bool {
        self != Which::File
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
    pub async fn cleanup(self) {
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
                Store::Files(_) | Store::Sqlite(_) => Ok(()),
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

/// What `contents` returns for the given documents.
pub fn by_id(documents: &[&Value]) -> BTreeMap<String, Value> {
    documents
        .iter()
        .map(|d| (d["id"].as_str().expect("id").to_owned(), (*d).clone()))
        .collect()
}
