//! SQLite: `details` is `TEXT` (SQLite's JSON functions read it); `id` is limited to 255
//! characters by a `CHECK`, like `VARCHAR(255)` elsewhere. One connection (SQLite has one writer),
//! WAL journal so that applications read while scimd writes, and `BEGIN IMMEDIATE` transactions.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite as Db};

use super::batch::{Plan, RowStatements, write_rows};
use super::dialect::{Connected, Dialect};
use super::migrate::{Migration, run_pending};
use super::url::SqliteDatabase;
use super::{CONNECT_TIMEOUT, TableNames, connect_error};
use crate::ProjectionError;

/// The SQLite dialect of [`super::SqlProjection`]: its batch statements.
#[derive(Debug)]
pub(super) struct Sqlite {
    /// Per slot (Users, Groups).
    sql: [RowStatements; 2],
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

/// Opens (creating it if missing) and migrates; see [`super::SqlProjection::connect`].
pub(super) async fn connect(
    location: SqliteDatabase,
    names: TableNames,
) -> Result<Connected<Sqlite>, ProjectionError> {
    let config = |e: sqlx::Error| ProjectionError::Config(format!("sql projection: {e}"));
    let (options, in_memory) = match location {
        SqliteDatabase::Url(url) => {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            (
                SqliteConnectOptions::from_str(&url).map_err(config)?,
                in_memory,
            )
        }
        SqliteDatabase::Path(path) => (SqliteConnectOptions::new().filename(path), false),
        SqliteDatabase::Memory => (
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

    let migrated = async {
        let mut conn = pool.acquire().await?;
        Sqlite::migrate(&mut conn, &names).await
    };
    migrated.await.map_err(|e| connect_error(e, |_| true))?;
    let dialect = Sqlite {
        sql: RowStatements::of::<Sqlite>(&names),
    };
    Ok(Connected {
        pool,
        names,
        dialect,
    })
}

#[async_trait]
impl Dialect for Sqlite {
    type Db = Db;
    const NAME: &'static str = "sqlite";
    const PARAMETERS: [&'static str; 2] = ["?", "?"];
    const QUOTE: char = '"';
    const MIGRATIONS: &'static [Migration] = &[Migration {
        version: 1,
        template: include_str!("../../../migrations/sqlite/0001_init.sql"),
    }];
    const BOOTSTRAP: &'static str = "CREATE TABLE IF NOT EXISTS scimd_schema_version (
        scope   TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL
    )";
    /// Takes the file's write lock at the start, not at the first write: two writers never
    /// deadlock half-way.
    const BEGIN: Option<&'static str> = Some("BEGIN IMMEDIATE");

    /// In one `BEGIN IMMEDIATE` transaction, which holds the write lock of the file from the start.
    async fn migrate(conn: &mut SqliteConnection, names: &TableNames) -> Result<(), sqlx::Error> {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        run_pending::<Sqlite>(&mut tx, names).await?;
        tx.commit().await
    }

    async fn write(&self, conn: &mut SqliteConnection, plan: &Plan<'_>) -> Result<(), sqlx::Error> {
        write_rows::<Db>(conn, &self.sql, plan, usize::MAX).await
    }

    /// SQLITE_TOOBIG (18), SQLITE_CONSTRAINT (19: NOT NULL, CHECK such as the id length, …),
    /// SQLITE_MISMATCH (20), SQLITE_RANGE (25).
    fn is_permanent(error: &dyn DatabaseError) -> bool {
        matches!(primary_code(error), Some(18 | 19 | 20 | 25))
    }
}
