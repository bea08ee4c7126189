//! MySQL and MariaDB: `details` is `JSON` (on MariaDB an alias of `LONGTEXT` with a `JSON_VALID`
//! check); a batch is multi-row `INSERT … ON DUPLICATE KEY UPDATE` and `DELETE … IN (…)`
//! statements of at most 256 rows and 1 MiB, well under the default `max_allowed_packet`.
//!
//! Connections run with `STRICT_ALL_TABLES` added to the server's `sql_mode`, so that an
//! over-long id is an error (and the change rejected) rather than silently truncated.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::mysql::{
    MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions,
};
use sqlx::{AssertSqlSafe, Connection, Transaction};

use super::{
    CONNECT_TIMEOUT, Dialect, MAX_ROWS, Migration, Plan, RowStatements, Tables, connect_error,
    pieces, render, timed, unreachable_within,
};
use crate::ProjectionError;

/// The schema migrations, in order (see the `sql` module documentation).
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    template: include_str!("../../../migrations/mysql/0001_init.sql"),
}];

/// Created before the migrations run; records which ran, per pair of tables.
const BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS scimd_schema_version (
    scope   VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Bytes of ids and documents per statement, unless one row alone is larger.
const MAX_BYTES: usize = 1 << 20;

/// The MySQL/MariaDB dialect of [`super::SqlProjection`].
#[derive(Debug)]
pub(super) struct MySql {
    pool: MySqlPool,
    tables: Tables,
    /// Per slot (Users, Groups).
    sql: [RowStatements; 2],
}

fn quote(name: &str) -> String {
    format!("`{name}`")
}

/// Errors that mean the server refuses us: SQLSTATE class 28 (access denied), and 1044 (no
/// access to the database), 1049 (unknown database), 1142 / 1227 (command denied).
fn refused(error: &dyn DatabaseError) -> bool {
    error.code().is_some_and(|code| code.starts_with("28"))
        || error
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|e| matches!(e.number(), 1044 | 1045 | 1049 | 1142 | 1227 | 1698))
}

impl MySql {
    /// Connects and migrates; see [`super::SqlProjection::connect`].
    pub(super) async fn connect(url: &str, tables: Tables) -> Result<Self, ProjectionError> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| ProjectionError::Config(format!("sql projection: {e}")))?;
        // A first connection of our own: its error (refused, unknown host, bad password) is more
        // useful than the pool's "timed out", and it runs the migrations.
        let mut conn =
            tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(&options))
                .await
                .map_err(|_| unreachable_within(CONNECT_TIMEOUT))?
                .map_err(|e| connect_error(e, refused))?;
        let migrated = timed(async {
            migrate(&mut conn, &tables)
                .await
                .map_err(|e| connect_error(e, |_| true))
        })
        .await;
        // The lock belongs to the session: closing the connection releases it, whatever happened.
        let _ = conn.close().await;
        migrated?;
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);

        let sql = [0, 1].map(|slot| {
            RowStatements::new(
                &quote(tables.name(slot)),
                "ON DUPLICATE KEY UPDATE details = VALUES(details)",
            )
        });
        Ok(Self { pool, tables, sql })
    }

    /// The table names.
    pub(super) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The recorded position.
    pub(super) async fn stored_position(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT position FROM scimd_checkpoint WHERE name = ?")
            .bind(&self.tables.checkpoint)
            .fetch_optional(&self.pool)
            .await
    }

    /// Deletes every row of both tables and the checkpoint row, in one transaction (`TRUNCATE`
    /// would commit on its own).
    pub(super) async fn reset(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
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

/// Runs the pending migrations under the server-wide lock `scimd_schema`. MySQL commits DDL
/// at once, so the statements are idempotent and an interrupted migration is run again.
async fn migrate(conn: &mut MySqlConnection, tables: &Tables) -> Result<(), sqlx::Error> {
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('scimd_schema', 30)")
        .fetch_one(&mut *conn)
        .await?;
    if locked != Some(1) {
        return Err(sqlx::Error::Protocol(
            "another process held the scimd_schema lock for 30 s".into(),
        ));
    }
    sqlx::raw_sql(BOOTSTRAP).execute(&mut *conn).await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM scimd_schema_version WHERE scope = ?")
            .bind(&tables.scope)
            .fetch_optional(&mut *conn)
            .await?;
    let (users, groups) = (quote(&tables.users), quote(&tables.groups));
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > current.unwrap_or(0))
    {
        for statement in render(migration.template, &users, &groups) {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(
            "INSERT INTO scimd_schema_version (scope, version) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE version = VALUES(version)",
        )
        .bind(&tables.scope)
        .bind(migration.version)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Dialect for MySql {
    type Db = sqlx::MySql;

    async fn begin(&self) -> Result<Transaction<'static, sqlx::MySql>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn write(&self, conn: &mut MySqlConnection, plan: &Plan<'_>) -> Result<(), sqlx::Error> {
        for (slot, sql) in self.sql.iter().enumerate() {
            let ids = &plan.deletes[slot];
            let sizes: Vec<usize> = ids.iter().map(|id| id.len()).collect();
            for range in pieces(&sizes, MAX_ROWS, MAX_BYTES) {
                let mut query = sqlx::query(sql.delete(range.len()));
                for id in &ids[range] {
                    query = query.bind(*id);
                }
                query.execute(&mut *conn).await?;
            }

            let rows = &plan.upserts[slot];
            let documents: Vec<String> = rows.iter().map(|(_, d)| d.to_string()).collect();
            let sizes: Vec<usize> = rows
                .iter()
                .zip(&documents)
                .map(|((id, _), d)| id.len() + d.len())
                .collect();
            for range in pieces(&sizes, MAX_ROWS, MAX_BYTES) {
                let mut query = sqlx::query(sql.upsert(range.len()));
                for ((id, _), document) in rows[range.clone()].iter().zip(&documents[range]) {
                    query = query.bind(*id).bind(document.as_str());
                }
                query.execute(&mut *conn).await?;
            }
        }
        Ok(())
    }

    async fn set_checkpoint(
        &self,
        conn: &mut MySqlConnection,
        position: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO scimd_checkpoint (name, position) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE position = VALUES(position)",
        )
        .bind(&self.tables.checkpoint)
        .bind(position)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// SQLSTATE classes 22 and 23, plus server errors that are about the row whatever their
    /// SQLSTATE: 1048 null, 1062 duplicate, 1118 row too large, 1153 packet over
    /// `max_allowed_packet`, 1264 out of range, 1292 truncated value, 1366 incorrect string value,
    /// 1406 data too long, 3140 invalid JSON (MySQL), 3819 check (MySQL), 4025 check (MariaDB).
    fn is_permanent(&self, error: &dyn DatabaseError) -> bool {
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
