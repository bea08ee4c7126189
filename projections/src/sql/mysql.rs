//! MySQL and MariaDB: `details` is `JSON` (on MariaDB an alias of `LONGTEXT` with a `JSON_VALID`
//! check); a batch is multi-row `INSERT … ON DUPLICATE KEY UPDATE` and `DELETE … IN (…)`
//! statements of at most 256 rows and 1 MiB, well under the default `max_allowed_packet`.
//!
//! Connections run with `STRICT_ALL_TABLES` added to the server's `sql_mode`, so that an
//! over-long id is an error (and the change rejected) rather than silently truncated.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPoolOptions};

use super::batch::{Plan, RowStatements, write_rows};
use super::dialect::{Connected, Dialect};
use super::migrate::{Migration, on_own_connection, run_pending};
use super::{CONNECT_TIMEOUT, TableNames};
use crate::ProjectionError;

/// Bytes of ids and documents per statement, unless one row alone is larger.
const MAX_BYTES: usize = 1 << 20;

/// The MySQL/MariaDB dialect of [`super::SqlProjection`]: its batch statements.
#[derive(Debug)]
pub(super) struct MySql {
    /// Per slot (Users, Groups).
    sql: [RowStatements; 2],
}

/// Errors that mean the server refuses us: SQLSTATE class 28 (access denied), and 1044 (no
/// access to the database), 1049 (unknown database), 1142 / 1227 (command denied).
fn refused(error: &dyn DatabaseError) -> bool {
    error.code().is_some_and(|code| code.starts_with("28"))
        || error
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|e| matches!(e.number(), 1044 | 1045 | 1049 | 1142 | 1227 | 1698))
}

/// Connects and migrates; see [`super::SqlProjection::connect`].
pub(super) async fn connect(
    url: &str,
    names: TableNames,
) -> Result<Connected<MySql>, ProjectionError> {
    let options = MySqlConnectOptions::from_str(url)
        .map_err(|e| ProjectionError::Config(format!("sql projection: {e}")))?;
    on_own_connection::<MySql>(&options, &names, refused).await?;
    let pool = MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                sqlx::raw_sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect_lazy_with(options);

    let dialect = MySql {
        sql: RowStatements::of::<MySql>(&names),
    };
    Ok(Connected {
        pool,
        names,
        dialect,
    })
}

#[async_trait]
impl Dialect for MySql {
    type Db = sqlx::MySql;
    const NAME: &'static str = "mysql";
    const PARAMETERS: [&'static str; 2] = ["?", "?"];
    const QUOTE: char = '`';
    const MIGRATIONS: &'static [Migration] = &[Migration {
        version: 1,
        template: include_str!("../../../migrations/mysql/0001_init.sql"),
    }];
    const BOOTSTRAP: &'static str = "CREATE TABLE IF NOT EXISTS scimd_schema_version (
        scope   VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
        version BIGINT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

    /// `ON DUPLICATE KEY UPDATE value = VALUES(value)` (the only key of scimd's tables is `key`).
    fn on_conflict(_key: &str, value: &str) -> String {
        format!("ON DUPLICATE KEY UPDATE {value} = VALUES({value})")
    }

    /// Under the server-wide lock `scimd_schema`, which belongs to the session (closing the
    /// connection releases it). MySQL commits DDL at once: no transaction.
    async fn migrate(conn: &mut MySqlConnection, names: &TableNames) -> Result<(), sqlx::Error> {
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('scimd_schema', 30)")
            .fetch_one(&mut *conn)
            .await?;
        if locked != Some(1) {
            return Err(sqlx::Error::Protocol(
                "another process held the scimd_schema lock for 30 s".into(),
            ));
        }
        run_pending::<MySql>(conn, names).await
    }

    async fn write(&self, conn: &mut MySqlConnection, plan: &Plan<'_>) -> Result<(), sqlx::Error> {
        write_rows::<sqlx::MySql>(conn, &self.sql, plan, MAX_BYTES).await
    }

    /// SQLSTATE classes 22 and 23, plus server errors that are about the row whatever their
    /// SQLSTATE: 1048 null, 1062 duplicate, 1118 row too large, 1153 packet over
    /// `max_allowed_packet`, 1264 out of range, 1292 truncated value, 1366 incorrect string value,
    /// 1406 data too long, 3140 invalid JSON (MySQL), 3819 check (MySQL), 4025 check (MariaDB).
    fn is_permanent(error: &dyn DatabaseError) -> bool {
        let by_number = error
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|e| {
                matches!(
                    e.number(),
                    1048 | 1062 | 1118 | 1153 | 1264 | 1292 | 1366 | 1406 | 3140 | 3819 | 4025
                )
            });
        by_number
            || error
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
    }
}
