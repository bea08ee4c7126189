//! The `sql` projection: Users and Groups as rows of two tables in PostgreSQL, MySQL/MariaDB or
//! SQLite, so that applications query them with the database's JSON functions.
//!
//! # Layout
//! Two tables named by `USER_MODEL_NAME` / `GROUP_MODEL_NAME` (default `Users` / `Groups`; letters,
//! digits and underscores only), each with
//! - `id`: the resource id, primary key (`VARCHAR(255)`; `TEXT` limited to 255 characters on SQLite);
//! - `details`: the full document (`JSONB` on PostgreSQL, `JSON` on MySQL/MariaDB, `TEXT` on SQLite),
//!
//! so that `details->>'userName'` (PostgreSQL) and `JSON_EXTRACT(details, '$.userName')`
//! (MySQL, MariaDB, SQLite) work. Tables an earlier server created with the same columns are reused.
//!
//! Two bookkeeping tables are shared by every scimd projection in the database:
//! - `scimd_checkpoint (name, position)`: one row per pair of tables, named `sql:{users},{groups}`,
//!   holding the log position the data reflects. It is written **in the same transaction** as the
//!   rows of each [`Projection::apply`], so data and checkpoint never disagree.
//! - `scimd_schema_version (scope, version)`: which migrations ran for a pair of tables (scope
//!   `{users},{groups}`).
//!
//! # Migrations
//! The schema lives in `migrations/{postgres,mysql,sqlite}/NNNN_*.sql` at the workspace root. Table
//! names are chosen at run time, so the files are templates: `{users}` and `{groups}` stand for the
//! quoted table names. They are embedded with `include_str!` and applied by [`SqlProjection::connect`]:
//! under a lock (PostgreSQL advisory lock, MySQL `GET_LOCK`, SQLite `BEGIN IMMEDIATE`), every
//! migration whose number is above the scope's recorded version runs, then the version is
//! recorded. Statements are idempotent (`IF NOT EXISTS`), so an interrupted migration (MySQL cannot
//! roll back DDL) is simply run again. To change the schema, add `0002_….sql` to each folder and
//! to the `MIGRATIONS` list of each dialect module.
//!
//! # Batches and errors
//! A batch is reduced to the last change per resource and written with multi-row statements in one
//! transaction together with the checkpoint. Failures are classified:
//! - connection, I/O, pool and time-out errors, locks, deadlocks, a missing table:
//!   [`ProjectionError::Unavailable`] (the transaction is rolled back; the runner retries);
//! - errors that are permanent for a row (constraint violations, data too long, a value the
//!   column type refuses, a packet over MySQL's `max_allowed_packet`): the batch is replayed one
//!   change at a time in a new transaction to find the culprit, which is reported as
//!   [`ProjectionError::Rejected`] with its index; **that transaction is rolled back too**, so none
//!   of the batch is written and the checkpoint does not move. (If every change passes on its own,
//!   e.g. the multi-row statement was merely too large, the batch is committed.)
//! - bad URLs and table names, refused credentials, an unknown database, a failed migration:
//!   [`ProjectionError::Config`] from `connect`.

mod mysql;
mod postgres;
mod sqlite;

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::error::DatabaseError;
use sqlx::{AssertSqlSafe, Database, Transaction};

use crate::{Change, Projection, ProjectionError, ResourceKind};

/// How long to wait for a connection, at start-up and on every use of the pool.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one `apply`, `stored_position` or `reset` may take before it counts as unavailable.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// A SQL projection on PostgreSQL, MySQL/MariaDB or SQLite.
///
/// See the [module documentation](self) for the layout, the migrations and the error mapping.
#[derive(Debug)]
pub struct SqlProjection {
    backend: Backend,
}

/// One pool per dialect: sqlx's `Any` driver would lose JSONB on PostgreSQL.
#[derive(Debug)]
enum Backend {
    Postgres(postgres::Postgres),
    MySql(mysql::MySql),
    Sqlite(sqlite::Sqlite),
}

impl SqlProjection {
    /// Connects to `url` and applies the schema migrations for tables `user_table` / `group_table`.
    ///
    /// Accepted URLs: `postgres://`, `postgresql://`, `mysql://`, `mariadb://` (spoken to as
    /// MySQL), `sqlite://PATH` (sqlx's syntax: `sqlite:///abs/x.db`, `sqlite://rel.db`,
    /// `sqlite::memory:`; the file is created if missing), and the SQLAlchemy spellings earlier
    /// deployments used, `SCHEME+DRIVER://…` (`postgresql+psycopg2`, `postgresql+asyncpg`,
    /// `mysql+pymysql`, `mysql+mysqldb`, `sqlite+pysqlite` …), whose driver part is ignored. A
    /// SQLAlchemy SQLite URL keeps SQLAlchemy's meaning: `sqlite+pysqlite:///rel.db` is relative,
    /// `sqlite+pysqlite:////abs/x.db` absolute.
    ///
    /// Waits at most 5 s for a connection (then up to 60 s for the migrations, which may wait for
    /// another process migrating the same database). The pool connects lazily afterwards: later
    /// operations wait at most 5 s for a connection and reconnect after the server went away.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] for an unsupported URL, an invalid table name, refused
    /// credentials, an unknown database or a failed migration; [`ProjectionError::Unavailable`]
    /// when the server cannot be reached (the caller retries).
    pub async fn connect(
        url: &str,
        user_table: &str,
        group_table: &str,
    ) -> Result<Self, ProjectionError> {
        let tables = Tables::new(user_table, group_table)?;
        let backend = match parse_url(url)? {
            Target::Postgres(url) => {
                Backend::Postgres(postgres::Postgres::connect(&url, tables).await?)
            }
            Target::MySql(url) => Backend::MySql(mysql::MySql::connect(&url, tables).await?),
            Target::Sqlite(target) => {
                Backend::Sqlite(sqlite::Sqlite::connect(target, tables).await?)
            }
        };
        tracing::info!(
            dialect = backend.dialect(),
            users = user_table,
            groups = group_table,
            "sql projection connected"
        );
        Ok(Self { backend })
    }

    /// The dialect spoken: `postgres`, `mysql` or `sqlite`.
    pub fn dialect(&self) -> &'static str {
        self.backend.dialect()
    }

    /// The `name` of this projection's row in `scimd_checkpoint`: `sql:{users},{groups}`.
    pub fn checkpoint_name(&self) -> &str {
        match &self.backend {
            Backend::Postgres(d) => &d.tables().checkpoint,
            Backend::MySql(d) => &d.tables().checkpoint,
            Backend::Sqlite(d) => &d.tables().checkpoint,
        }
    }
}

impl Backend {
    fn dialect(&self) -> &'static str {
        match self {
            Backend::Postgres(_) => "postgres",
            Backend::MySql(_) => "mysql",
            Backend::Sqlite(_) => "sqlite",
        }
    }
}

#[async_trait]
impl Projection for SqlProjection {
    fn name(&self) -> &str {
        "sql"
    }

    async fn apply(&mut self, changes: &[Change], position: u64) -> Result<(), ProjectionError> {
        let position = i64::try_from(position).map_err(|_| {
            ProjectionError::Config(format!(
                "sql projection: position {position} does not fit the BIGINT checkpoint column"
            ))
        })?;
        timed(async {
            match &self.backend {
                Backend::Postgres(d) => apply(d, changes, position).await,
                Backend::MySql(d) => apply(d, changes, position).await,
                Backend::Sqlite(d) => apply(d, changes, position).await,
            }
        })
        .await
    }

    fn records_position(&self) -> bool {
        true
    }

    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError> {
        let stored = timed(async {
            match &self.backend {
                Backend::Postgres(d) => d.stored_position().await,
                Backend::MySql(d) => d.stored_position().await,
                Backend::Sqlite(d) => d.stored_position().await,
            }
            .map_err(|e| unavailable(&e))
        })
        .await?;
        stored
            .map(|p| {
                u64::try_from(p).map_err(|_| {
                    ProjectionError::Config(format!(
                        "sql projection: the checkpoint row holds a negative position ({p})"
                    ))
                })
            })
            .transpose()
    }

    async fn reset(&mut self) -> Result<(), ProjectionError> {
        timed(async {
            match &self.backend {
                Backend::Postgres(d) => d.reset().await,
                Backend::MySql(d) => d.reset().await,
                Backend::Sqlite(d) => d.reset().await,
            }
            .map_err(|e| unavailable(&e))
        })
        .await
    }
}

/// Runs `operation` with [`OPERATION_TIMEOUT`]; a time-out is [`ProjectionError::Unavailable`].
async fn timed<T>(
    operation: impl Future<Output = Result<T, ProjectionError>>,
) -> Result<T, ProjectionError> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            Err(ProjectionError::Unavailable(format!(
                "sql projection: no answer within {} s",
                OPERATION_TIMEOUT.as_secs()
            )))
        })
}

// ---------------------------------------------------------------------------------------------
// URLs

/// Where a database URL points, in the form the dialect module connects with.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A URL sqlx's PostgreSQL driver parses.
    Postgres(String),
    /// A URL sqlx's MySQL driver parses.
    MySql(String),
    /// A SQLite database.
    Sqlite(SqliteTarget),
}

/// A SQLite database, as named by the URL.
#[derive(Debug, PartialEq, Eq)]
enum SqliteTarget {
    /// A `sqlite:` URL in sqlx's syntax.
    Url(String),
    /// A file named by a SQLAlchemy URL.
    Path(PathBuf),
    /// `sqlite+pysqlite://` (SQLAlchemy's in-memory database).
    Memory,
}

/// Maps the accepted URL spellings onto the driver to use. Never echoes the URL (it may hold a
/// password) in errors.
fn parse_url(url: &str) -> Result<Target, ProjectionError> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or_else(|| {
        ProjectionError::Config("sql projection: DATABASE_URL has no scheme".into())
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let (base, driver) = match scheme.split_once('+') {
        Some((base, driver)) => (base, Some(driver)),
        None => (scheme.as_str(), None),
    };
    match base {
        "postgres" | "postgresql" => Ok(Target::Postgres(format!("postgres:{rest}"))),
        "mysql" | "mariadb" => Ok(Target::MySql(format!("mysql:{rest}"))),
        "sqlite" if driver.is_some() => {
            // SQLAlchemy: sqlite:// is in-memory, sqlite:///rel.db relative, sqlite:////abs.db absolute.
            let path = rest.strip_prefix("//").ok_or_else(|| {
                ProjectionError::Config(format!(
                    "sql projection: a {scheme} URL must start with {scheme}://"
                ))
            })?;
            let path = path.split_once('?').map_or(path, |(path, _)| path);
            if path.is_empty() || path == "/:memory:" {
                return Ok(Target::Sqlite(SqliteTarget::Memory));
            }
            let path = path.strip_prefix('/').ok_or_else(|| {
                ProjectionError::Config(format!(
                    "sql projection: a {scheme} URL names a file as {scheme}:///relative or {scheme}:////absolute"
                ))
            })?;
            Ok(Target::Sqlite(SqliteTarget::Path(PathBuf::from(path))))
        }
        "sqlite" => Ok(Target::Sqlite(SqliteTarget::Url(format!("sqlite:{rest}")))),
        _ => Err(ProjectionError::Config(format!(
            "sql projection: unsupported DATABASE_URL scheme {scheme:?} \
             (postgres, postgresql, mysql, mariadb, sqlite, optionally with +driver)"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Table names and migrations

/// The validated table names of one projection and the keys derived from them.
#[derive(Debug, Clone)]
struct Tables {
    /// The Users table, unquoted.
    users: String,
    /// The Groups table, unquoted.
    groups: String,
    /// `scimd_schema_version.scope`: `{users},{groups}`.
    scope: String,
    /// `scimd_checkpoint.name`: `sql:{users},{groups}`.
    checkpoint: String,
}

impl Tables {
    fn new(users: &str, groups: &str) -> Result<Self, ProjectionError> {
        check_table_name(users)?;
        check_table_name(groups)?;
        if users.eq_ignore_ascii_case(groups) {
            return Err(ProjectionError::Config(format!(
                "sql projection: Users and Groups need two tables, both are named {users:?}"
            )));
        }
        let scope = format!("{users},{groups}");
        Ok(Self {
            users: users.to_owned(),
            groups: groups.to_owned(),
            checkpoint: format!("sql:{scope}"),
            scope,
        })
    }

    /// The table of `kind`'s slot (see [`slot`]), unquoted.
    fn name(&self, slot: usize) -> &str {
        if slot == 0 { &self.users } else { &self.groups }
    }
}

/// Table names: an ASCII letter or underscore, then letters, digits and underscores; at most 63
/// characters (PostgreSQL's limit). Quoting them is then trivial in every dialect.
fn check_table_name(name: &str) -> Result<(), ProjectionError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if valid {
        Ok(())
    } else {
        Err(ProjectionError::Config(format!(
            "sql projection: table name {name:?} must be 1-63 letters, digits or underscores, not starting with a digit"
        )))
    }
}

/// A schema migration: its number and its template (see the module documentation).
struct Migration {
    version: i64,
    template: &'static str,
}

/// The statements of a migration template with `{users}` and `{groups}` replaced by the quoted
/// names. Lines starting with `--` are comments; a statement ends with `;` at the end of a line.
fn render(template: &str, users: &str, groups: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in template.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let statement = current.trim().trim_end_matches(';').to_owned();
            statements.push(
                statement
                    .replace("{users}", users)
                    .replace("{groups}", groups),
            );
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        statements.push(
            current
                .trim()
                .replace("{users}", users)
                .replace("{groups}", groups),
        );
    }
    statements
}

// ---------------------------------------------------------------------------------------------
// Batches

/// Index of a kind's table in [`Tables`] and [`Plan`]: 0 for Users, 1 for Groups.
fn slot(kind: ResourceKind) -> usize {
    match kind {
        ResourceKind::User => 0,
        ResourceKind::Group => 1,
    }
}

/// What a batch amounts to: the last change to each resource, sorted by table and operation.
/// Rows are distinct within a plan, so the order of its statements does not matter.
#[derive(Debug, Default)]
struct Plan<'a> {
    /// Per slot: `(id, document)` to insert or overwrite, in batch order.
    upserts: [Vec<(&'a str, &'a Value)>; 2],
    /// Per slot: ids to delete, in batch order.
    deletes: [Vec<&'a str>; 2],
}

impl<'a> Plan<'a> {
    fn new(changes: &'a [Change]) -> Self {
        let mut last: HashMap<(ResourceKind, &str), usize> = HashMap::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            let kind = match change {
                Change::Upsert { kind, .. } | Change::Delete { kind, .. } => *kind,
            };
            last.insert((kind, change.id()), index);
        }
        let mut plan = Plan::default();
        for (index, change) in changes.iter().enumerate() {
            match change {
                Change::Upsert {
                    kind, id, document, ..
                } if last[&(*kind, id.as_str())] == index => {
                    plan.upserts[slot(*kind)].push((id, document));
                }
                Change::Delete { kind, id } if last[&(*kind, id.as_str())] == index => {
                    plan.deletes[slot(*kind)].push(id);
                }
                _ => {}
            }
        }
        plan
    }
}

/// Splits items of the given sizes into consecutive ranges for multi-row statements: each range
/// holds a power of two of items, at most `max_rows`, and at most `max_bytes` in total unless a
/// single item is larger. Powers of two keep the number of distinct statements (and prepared
/// statements cached per connection) small.
fn pieces(sizes: &[usize], max_rows: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut end = start;
        let mut bytes = 0usize;
        while end < sizes.len()
            && end - start < max_rows
            && (end == start || bytes.saturating_add(sizes[end]) <= max_bytes)
        {
            bytes = bytes.saturating_add(sizes[end]);
            end += 1;
        }
        let n = end - start;
        let power = 1usize << (usize::BITS - 1 - n.leading_zeros());
        ranges.push(start..start + power);
        start += power;
    }
    ranges
}

/// `(?, ?), (?, ?), …` with `rows` groups of `per_row` placeholders.
fn placeholders(rows: usize, per_row: usize) -> String {
    let row = format!("({})", vec!["?"; per_row].join(", "));
    vec![row; rows].join(", ")
}

/// Most rows in one multi-row statement of the dialects that bind a parameter per value
/// (MySQL/MariaDB, SQLite); a power of two.
const MAX_ROWS: usize = 256;

/// The multi-row upsert and delete statements of one table for the dialects that bind a parameter
/// per value, written once for each statement size [`pieces`] produces: 1, 2, 4 … [`MAX_ROWS`].
#[derive(Debug)]
struct RowStatements {
    /// Indexed by log2 of the number of rows.
    upsert: Vec<Arc<str>>,
    delete: Vec<Arc<str>>,
}

impl RowStatements {
    /// The statements of `table` (already quoted); `on_conflict` follows
    /// `INSERT INTO table (id, details) VALUES …` to update a row that exists.
    fn new(table: &str, on_conflict: &str) -> RowStatements {
        let sizes = (0..=MAX_ROWS.trailing_zeros()).map(|log| 1usize << log);
        RowStatements {
            upsert: sizes
                .clone()
                .map(|n| {
                    format!(
                        "INSERT INTO {table} (id, details) VALUES {} {on_conflict}",
                        placeholders(n, 2)
                    )
                    .into()
                })
                .collect(),
            delete: sizes
                .map(|n| {
                    format!(
                        "DELETE FROM {table} WHERE id IN ({})",
                        vec!["?"; n].join(", ")
                    )
                    .into()
                })
                .collect(),
        }
    }

    /// The upsert of `rows` rows (a power of two, at most [`MAX_ROWS`], as [`pieces`] cuts them).
    fn upsert(&self, rows: usize) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.upsert[rows.trailing_zeros() as usize].clone())
    }

    /// The delete of `rows` ids, sized as for [`RowStatements::upsert`].
    fn delete(&self, rows: usize) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.delete[rows.trailing_zeros() as usize].clone())
    }
}

/// What each dialect provides for [`apply`].
#[async_trait]
trait Dialect: Send + Sync {
    /// The sqlx database.
    type Db: Database;

    /// Starts the transaction of one batch.
    async fn begin(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;

    /// Writes the rows of `plan`.
    async fn write(
        &self,
        conn: &mut <Self::Db as Database>::Connection,
        plan: &Plan<'_>,
    ) -> Result<(), sqlx::Error>;

    /// Records `position` in the checkpoint table.
    async fn set_checkpoint(
        &self,
        conn: &mut <Self::Db as Database>::Connection,
        position: i64,
    ) -> Result<(), sqlx::Error>;

    /// Whether a database error is permanent for the row being written.
    fn is_permanent(&self, error: &dyn DatabaseError) -> bool;
}

/// Whether `error` is the row's fault for good (see [`Dialect::is_permanent`]).
fn permanent<D: Dialect>(dialect: &D, error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => dialect.is_permanent(db.as_ref()),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// A failure that is nobody's row's fault.
fn unavailable(error: &sqlx::Error) -> ProjectionError {
    match error {
        sqlx::Error::Configuration(_) => {
            ProjectionError::Config(format!("sql projection: {error}"))
        }
        _ => ProjectionError::Unavailable(format!("sql projection: {error}")),
    }
}

/// Writes `plan` and the checkpoint in one transaction; rolls back on error.
async fn write_batch<D: Dialect>(
    dialect: &D,
    plan: &Plan<'_>,
    position: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = dialect.begin().await?;
    let written = async {
        dialect.write(&mut *tx, plan).await?;
        dialect.set_checkpoint(&mut *tx, position).await
    }
    .await;
    match written {
        Ok(()) => tx.commit().await,
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The common `apply`: the whole batch at once, and one change at a time to find a culprit.
async fn apply<D: Dialect>(
    dialect: &D,
    changes: &[Change],
    position: i64,
) -> Result<(), ProjectionError> {
    let error = match write_batch(dialect, &Plan::new(changes), position).await {
        Ok(()) => return Ok(()),
        Err(e) if permanent(dialect, &e) => e,
        Err(e) => return Err(unavailable(&e)),
    };
    tracing::debug!(%error, "sql projection: batch refused, looking for the change at fault");

    let mut tx = dialect.begin().await.map_err(|e| unavailable(&e))?;
    for (index, change) in changes.iter().enumerate() {
        let plan = Plan::new(std::slice::from_ref(change));
        if let Err(e) = dialect.write(&mut *tx, &plan).await {
            let _ = tx.rollback().await;
            return Err(if permanent(dialect, &e) {
                ProjectionError::Rejected {
                    index,
                    reason: e.to_string(),
                }
            } else {
                unavailable(&e)
            });
        }
    }
    // Every change passes on its own: the multi-row statements were the problem, not the data.
    let committed = async {
        dialect.set_checkpoint(&mut *tx, position).await?;
        tx.commit().await
    }
    .await;
    committed.map_err(|e| unavailable(&e))
}

/// The server did not answer in time.
fn unreachable_within(timeout: Duration) -> ProjectionError {
    ProjectionError::Unavailable(format!(
        "sql projection: no connection within {} s",
        timeout.as_secs()
    ))
}

/// Maps an error while connecting or migrating: the database refusing us is a configuration
/// problem (credentials, unknown database, missing privileges); anything else may pass.
fn connect_error(
    error: sqlx::Error,
    refused: impl Fn(&dyn DatabaseError) -> bool,
) -> ProjectionError {
    match &error {
        sqlx::Error::Database(db) if refused(db.as_ref()) => {
            ProjectionError::Config(format!("sql projection: {error}"))
        }
        _ => unavailable(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_map_onto_their_driver() {
        assert_eq!(
            parse_url("postgres://u:p@h:5432/db").ok(),
            Some(Target::Postgres("postgres://u:p@h:5432/db".into()))
        );
        assert_eq!(
            parse_url("postgresql://h/db?sslmode=disable").ok(),
            Some(Target::Postgres("postgres://h/db?sslmode=disable".into()))
        );
        assert_eq!(
            parse_url("mariadb://u:p@h/db").ok(),
            Some(Target::MySql("mysql://u:p@h/db".into()))
        );
        assert_eq!(
            parse_url("sqlite:///tmp/x.db").ok(),
            Some(Target::Sqlite(SqliteTarget::Url(
                "sqlite:///tmp/x.db".into()
            )))
        );
        assert_eq!(
            parse_url("sqlite://relative.db").ok(),
            Some(Target::Sqlite(SqliteTarget::Url(
                "sqlite://relative.db".into()
            )))
        );
    }

    #[test]
    fn sqlalchemy_urls_lose_their_driver() {
        for (url, expected) in [
            ("postgresql+psycopg2://u:p@h/db", "postgres://u:p@h/db"),
            ("postgresql+asyncpg://u:p@h/db", "postgres://u:p@h/db"),
            ("POSTGRESQL+PSYCOPG2://u:p@h/db", "postgres://u:p@h/db"),
        ] {
            assert_eq!(parse_url(url).ok(), Some(Target::Postgres(expected.into())));
        }
        for (url, expected) in [
            (
                "mysql+pymysql://u:p@h/db?charset=utf8mb4",
                "mysql://u:p@h/db?charset=utf8mb4",
            ),
            ("mysql+mysqldb://u:p@h:3306/db", "mysql://u:p@h:3306/db"),
        ] {
            assert_eq!(parse_url(url).ok(), Some(Target::MySql(expected.into())));
        }
    }

    #[test]
    fn sqlalchemy_sqlite_urls_keep_sqlalchemy_paths() {
        assert_eq!(
            parse_url("sqlite+pysqlite:///scim.db").ok(),
            Some(Target::Sqlite(SqliteTarget::Path("scim.db".into())))
        );
        assert_eq!(
            parse_url("sqlite+pysqlite:////var/lib/scim.db?timeout=5").ok(),
            Some(Target::Sqlite(SqliteTarget::Path(
                "/var/lib/scim.db".into()
            )))
        );
        assert_eq!(
            parse_url("sqlite+pysqlite://").ok(),
            Some(Target::Sqlite(SqliteTarget::Memory))
        );
    }

    #[test]
    fn other_schemes_are_a_configuration_error() {
        for url in ["mongodb://h/db", "nonsense", "mssql+pyodbc://h/db", ""] {
            assert!(
                matches!(parse_url(url), Err(ProjectionError::Config(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_the_password() {
        let Err(ProjectionError::Config(message)) = parse_url("oracle://u:secret@h/db") else {
            panic!("accepted");
        };
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn table_names_are_letters_digits_and_underscores() {
        for good in ["Users", "Groups", "scim_users_2", "_x", &"a".repeat(63)] {
            assert!(check_table_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1users",
            "Users;DROP",
            "my-table",
            "a.b",
            "\"Users\"",
            "Üsers",
            &"a".repeat(64),
        ] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
        assert!(Tables::new("Users", "users").is_err());
    }

    #[test]
    fn templates_render_into_statements() {
        let template = "-- comment {users}\nCREATE TABLE {users} (\n  id TEXT\n);\n\nCREATE TABLE {groups} (id TEXT);\n";
        assert_eq!(
            render(template, "\"U\"", "\"G\""),
            vec![
                "CREATE TABLE \"U\" (\n  id TEXT\n)",
                "CREATE TABLE \"G\" (id TEXT)"
            ]
        );
    }

    #[test]
    fn a_batch_keeps_the_last_change_per_resource() {
        let upsert = |kind, id: &str, n: i64| Change::Upsert {
            kind,
            id: id.into(),
            version: 1,
            document: serde_json::json!({ "n": n }),
        };
        let delete = |kind, id: &str| Change::Delete {
            kind,
            id: id.into(),
        };
        let changes = vec![
            upsert(ResourceKind::User, "a", 1),
            upsert(ResourceKind::User, "b", 1),
            delete(ResourceKind::User, "a"),
            upsert(ResourceKind::Group, "a", 2),
            upsert(ResourceKind::User, "b", 3),
            delete(ResourceKind::Group, "c"),
        ];
        let plan = Plan::new(&changes);
        assert_eq!(plan.deletes, [vec!["a"], vec!["c"]]);
        let ids = |slot: usize| {
            plan.upserts[slot]
                .iter()
                .map(|(id, d)| (*id, d["n"].clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0), vec![("b", serde_json::json!(3))]);
        assert_eq!(ids(1), vec![("a", serde_json::json!(2))]);
    }

    #[test]
    fn pieces_are_powers_of_two_within_the_limits() {
        let sizes = vec![10; 500];
        let ranges = pieces(&sizes, 256, usize::MAX);
        let lengths: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
        assert_eq!(lengths, vec![256, 128, 64, 32, 16, 4]);
        assert_eq!(ranges.last().map(|r| r.end), Some(500));

        let ranges = pieces(&[600, 600, 600, 5000, 1], 256, 1000);
        assert_eq!(ranges, vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert!(pieces(&[], 256, 1000).is_empty());
    }
}
