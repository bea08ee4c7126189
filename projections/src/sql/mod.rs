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
//! # Code
//! - this file: [`SqlProjection`], table names, error mapping;
//! - `url`: the accepted DATABASE_URL spellings; `migrate`: the migrations; `source`: the tables
//!   read back (for `scimd import`);
//! - `batch`: a batch reduced to its last change per resource and cut into multi-row statements;
//! - `dialect`: what the dialects share (checkpoint, reset, the batch transaction), written once
//!   over sqlx's `Database`;
//! - `postgres`, `mysql`, `sqlite`: only what differs (connecting, locking the migrations, SQL
//!   spelling, binding a batch, error codes).
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

mod batch;
mod dialect;
mod migrate;
mod mysql;
mod postgres;
pub mod source;
mod sqlite;
mod url;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::DatabaseError;

use self::dialect::{Connected, Dialect};
use self::url::DatabaseUrl;
use crate::{Change, Projection, ProjectionError};

/// How long to wait for a connection, at start-up and on every use of the pool.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one `apply`, `stored_position` or `reset` may take before it counts as unavailable.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// A SQL projection on PostgreSQL, MySQL/MariaDB or SQLite.
///
/// See the [module documentation](self) for the layout, the migrations and the error mapping.
#[derive(Debug)]
pub struct SqlProjection {
    pool: Pool,
}

/// The connected database, one variant per dialect: sqlx's `Any` driver would lose JSONB on
/// PostgreSQL.
#[derive(Debug)]
enum Pool {
    Postgres(Connected<postgres::Postgres>),
    MySql(Connected<mysql::MySql>),
    Sqlite(Connected<sqlite::Sqlite>),
}

/// Runs `$body` with `$d` bound to the [`Connected`] dialect of `$pool`, whichever it is.
macro_rules! with_dialect {
    ($pool:expr, $d:ident => $body:expr) => {
        match $pool {
            Pool::Postgres($d) => $body,
            Pool::MySql($d) => $body,
            Pool::Sqlite($d) => $body,
        }
    };
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
        let names = TableNames::new(user_table, group_table)?;
        let pool = match url::parse(url)? {
            DatabaseUrl::Postgres(url) => Pool::Postgres(postgres::connect(&url, names).await?),
            DatabaseUrl::MySql(url) => Pool::MySql(mysql::connect(&url, names).await?),
            DatabaseUrl::Sqlite(location) => Pool::Sqlite(sqlite::connect(location, names).await?),
        };
        let projection = Self { pool };
        tracing::info!(
            dialect = projection.dialect(),
            users = user_table,
            groups = group_table,
            "sql projection connected"
        );
        Ok(projection)
    }

    /// The dialect spoken: `postgres`, `mysql` or `sqlite`.
    pub fn dialect(&self) -> &'static str {
        fn name<D: Dialect>(_: &Connected<D>) -> &'static str {
            D::NAME
        }
        with_dialect!(&self.pool, d => name(d))
    }

    /// The `name` of this projection's row in `scimd_checkpoint`: `sql:{users},{groups}`.
    pub fn checkpoint_name(&self) -> &str {
        with_dialect!(&self.pool, d => &d.names.checkpoint)
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
        timed(async { with_dialect!(&self.pool, d => d.apply(changes, position).await) }).await
    }

    fn records_position(&self) -> bool {
        true
    }

    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError> {
        let stored = timed(async {
            with_dialect!(&self.pool, d => d.stored_position().await).map_err(|e| unavailable(&e))
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
            with_dialect!(&self.pool, d => d.reset().await).map_err(|e| unavailable(&e))
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
// Table names and errors

/// The validated table names of one projection and the keys derived from them.
#[derive(Debug, Clone)]
struct TableNames {
    /// The Users table, unquoted.
    users: String,
    /// The Groups table, unquoted.
    groups: String,
    /// `scimd_schema_version.scope`: `{users},{groups}`.
    scope: String,
    /// `scimd_checkpoint.name`: `sql:{users},{groups}`.
    checkpoint: String,
}

impl TableNames {
    /// Validates both names.
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

    /// The table of `kind`'s slot (see [`batch::slot`]), unquoted.
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

/// A failure that is nobody's row's fault.
fn unavailable(error: &sqlx::Error) -> ProjectionError {
    match error {
        sqlx::Error::Configuration(_) => {
            ProjectionError::Config(format!("sql projection: {error}"))
        }
        _ => ProjectionError::Unavailable(format!("sql projection: {error}")),
    }
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
        assert!(TableNames::new("Users", "users").is_err());
    }
}
