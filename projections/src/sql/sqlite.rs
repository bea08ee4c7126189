//! SQLite: `details` is `TEXT` (SQLite's JSON functions read it); `id` is limited to 255
//! characters by a `CHECK`, like `VARCHAR(255)` elsewhere. One connection (SQLite has one writer),
//! WAL journal so that applications read while scimd writes, and `BEGIN IMMEDIATE` transactions.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Transaction};

use super::{
    CONNECT_TIMEOUT, Dialect, MAX_ROWS, Migration, Plan, RowStatements, SqliteTarget, Tables,
    connect_error, pieces, render,
};
use crate::ProjectionError;

/// The schema migrations, in order (see the `sql` module documentation).
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    template: include_str!("../../../migrations/sqlite/0001_init.sql"),
}];

/// Created before the migrations run; records which ran, per pair of tables.
const BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS scimd_schema_version (
    scope   TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
)";

/// The SQLite dialect of [`super::SqlProjection`].
#[derive(Debug)]
pub(super) struct Sqlite {
    pool: SqlitePool,
    tables: Tables,
    /// Per slot (Users, Groups).
    sql: [RowStatements; 2],
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// The primary result code of a SQLite error (its extended code's low byte).
fn primary_code(error: &dyn DatabaseError) -> Option<i32> {
    error
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff)
}

/// The file cannot be opened or written, or is not a database: SQLITE_READONLY (8),
/// SQLITE_CANTOPEN (14), SQLITE_AUTH (23), SQLITE_NOTADB (26).
fn refused(error: &dyn DatabaseError) -> bool {
    matches!(primary_code(error), Some(8 | 14 | 23 | 26))
}

impl Sqlite {
    /// Opens (creating it if missing) and migrates; see [`super::SqlProjection::connect`].
    pub(super) async fn connect(
        target: SqliteTarget,
        tables: Tables,
    ) -> Result<Self, ProjectionError> {
        let config = |e: sqlx::Error| ProjectionError::Config(format!("sql projection: {e}"));
        let (options, in_memory) = match target {
            SqliteTarget::Url(url) => {
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                (
                    SqliteConnectOptions::from_str(&url).map_err(config)?,
                    in_memory,
                )
            }
            SqliteTarget::Path(path) => (SqliteConnectOptions::new().filename(path), false),
            SqliteTarget::Memory => (
                SqliteConnectOptions::from_str("sqlite::memory:").map_err(config)?,
                true,
            ),
        };
        if options.get_filename().as_os_str().is_empty() {
            return Err(ProjectionError::Config(
                "sql projection: the sqlite URL names no file (sqlite:///absolute/path.db or sqlite://relative.db)"
                    .into(),
            ));
        }
        let mut options = options.create_if_missing(true);
        if !in_memory {
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
        }
        // One connection that is never closed: SQLite has a single writer anyway, and an
        // in-memory database lives only as long as a connection to it.
        let pool = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            SqlitePoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options),
        )
        .await
        .map_err(|_| {
            ProjectionError::Unavailable("sql projection: opening the database timed out".into())
        })?
        .map_err(|e| connect_error(e, refused))?;

        let sql = [0, 1].map(|slot| {
            RowStatements::new(
                &quote(tables.name(slot)),
                "ON CONFLICT (id) DO UPDATE SET details = excluded.details",
            )
        });
        let me = Self { pool, tables, sql };
        me.migrate().await.map_err(|e| connect_error(e, |_| true))?;
        Ok(me)
    }

    /// The table names.
    pub(super) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Runs the pending migrations in one `BEGIN IMMEDIATE` transaction (which holds the write
    /// lock of the file from the start).
    async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(BOOTSTRAP).execute(&mut *tx).await?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM scimd_schema_version WHERE scope = ?")
                .bind(&self.tables.scope)
                .fetch_optional(&mut *tx)
                .await?;
        let (users, groups) = (quote(&self.tables.users), quote(&self.tables.groups));
        for migration in MIGRATIONS
            .iter()
            .filter(|m| m.version > current.unwrap_or(0))
        {
            for statement in render(migration.template, &users, &groups) {
                sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO scimd_schema_version (scope, version) VALUES (?, ?) \
                 ON CONFLICT (scope) DO UPDATE SET version = excluded.version",
            )
            .bind(&self.tables.scope)
            .bind(migration.version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The recorded position.
    pub(super) async fn stored_position(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT position FROM scimd_checkpoint WHERE name = ?")
            .bind(&self.tables.checkpoint)
            .fetch_optional(&self.pool)
            .await
    }

    /// Deletes every row of both tables and the checkpoint row, in one transaction.
    pub(super) async fn reset(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for table in [&self.tables.users, &self.tables.groups] {
            sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {}", quote(table))))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM scimd_checkpoint WHERE name = ?")
            .bind(&self.tables.checkpoint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

#[async_trait]
impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;

    async fn begin(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn write(&self, conn: &mut SqliteConnection, plan: &Plan<'_>) -> Result<(), sqlx::Error> {
        for (slot, sql) in self.sql.iter().enumerate() {
            let ids = &plan.deletes[slot];
            for range in pieces(&vec![0; ids.len()], MAX_ROWS, usize::MAX) {
                let mut query = sqlx::query(sql.delete(range.len()));
                for id in &ids[range] {
                    query = query.bind(*id);
                }
                query.execute(&mut *conn).await?;
            }

            let rows = &plan.upserts[slot];
            for range in pieces(&vec![0; rows.len()], MAX_ROWS, usize::MAX) {
                let mut query = sqlx::query(sql.upsert(range.len()));
                for (id, document) in &rows[range] {
                    query = query.bind(*id).bind(document.to_string());
                }
                query.execute(&mut *conn).await?;
            }
        }
        Ok(())
    }

    async fn set_checkpoint(
        &self,
        conn: &mut SqliteConnection,
        position: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO scimd_checkpoint (name, position) VALUES (?, ?) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        )
        .bind(&self.tables.checkpoint)
        .bind(position)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// SQLITE_TOOBIG (18), SQLITE_CONSTRAINT (19: NOT NULL, CHECK such as the id length, …),
    /// SQLITE_MISMATCH (20), SQLITE_RANGE (25).
    fn is_permanent(&self, error: &dyn DatabaseError) -> bool {
        matches!(primary_code(error), Some(18 | 19 | 20 | 25))
    }
}
