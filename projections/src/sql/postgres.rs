//! PostgreSQL: `details` is `JSONB`; a batch is one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT`
//! and one `DELETE … = ANY(…)` per table and 1,000 rows.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection, Transaction};

use super::{
    CONNECT_TIMEOUT, Dialect, Migration, Plan, Tables, connect_error, render, timed,
    unreachable_within,
};
use crate::ProjectionError;

/// The schema migrations, in order (see the `sql` module documentation).
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    template: include_str!("../../../migrations/postgres/0001_init.sql"),
}];

/// Created before the migrations run; records which ran, per pair of tables.
const BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS scimd_schema_version (
    scope   VARCHAR(255) PRIMARY KEY,
    version BIGINT NOT NULL
)";

/// Serialises concurrent migrations (several scimd processes or tests on one database).
const MIGRATION_LOCK: i64 = 0x5c1d_0001;

/// Rows per statement.
const CHUNK: usize = 1000;

/// The PostgreSQL dialect of [`super::SqlProjection`].
#[derive(Debug)]
pub(super) struct Postgres {
    pool: PgPool,
    tables: Tables,
    /// Per slot (Users, Groups).
    sql: [TableSql; 2],
}

/// The statements of one table.
#[derive(Debug)]
struct TableSql {
    upsert: Arc<str>,
    delete: Arc<str>,
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// Errors that mean the server refuses us (bad credentials, unknown database, no privilege).
fn refused(error: &dyn DatabaseError) -> bool {
    error
        .code()
        .is_some_and(|code| code.starts_with("28") || code.starts_with("3D") || code == "42501")
}

impl Postgres {
    /// Connects and migrates; see [`super::SqlProjection::connect`].
    pub(super) async fn connect(url: &str, tables: Tables) -> Result<Self, ProjectionError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| ProjectionError::Config(format!("sql projection: {e}")))?;
        if options.get_application_name().is_none() {
            options = options.application_name("scimd");
        }
        // A first connection of our own: its error (refused, unknown host, bad password) is more
        // useful than the pool's "timed out", and it runs the migrations.
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| unreachable_within(CONNECT_TIMEOUT))?
            .map_err(|e| connect_error(e, refused))?;
        let migrated = timed(async {
            migrate(&mut conn, &tables)
                .await
                .map_err(|e| connect_error(e, |_| true))
        })
        .await;
        let _ = conn.close().await;
        migrated?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);

        let sql = [0, 1].map(|slot| {
            let table = quote(tables.name(slot));
            TableSql {
                upsert: format!(
                    "INSERT INTO {table} (id, details) \
                     SELECT * FROM UNNEST($1::text[], $2::jsonb[]) \
                     ON CONFLICT (id) DO UPDATE SET details = EXCLUDED.details"
                )
                .into(),
                delete: format!("DELETE FROM {table} WHERE id = ANY($1::text[])").into(),
            }
        });
        Ok(Self { pool, tables, sql })
    }

    /// The table names.
    pub(super) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The recorded position.
    pub(super) async fn stored_position(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT position FROM scimd_checkpoint WHERE name = $1")
            .bind(&self.tables.checkpoint)
            .fetch_optional(&self.pool)
            .await
    }

    /// Empties both tables and removes the checkpoint row, in one transaction.
    pub(super) async fn reset(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let truncate = format!(
            "TRUNCATE TABLE {}, {}",
            quote(&self.tables.users),
            quote(&self.tables.groups)
        );
        sqlx::raw_sql(AssertSqlSafe(truncate))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM scimd_checkpoint WHERE name = $1")
            .bind(&self.tables.checkpoint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

/// Runs the pending migrations in one transaction under an advisory lock.
async fn migrate(conn: &mut PgConnection, tables: &Tables) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(BOOTSTRAP).execute(&mut *tx).await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM scimd_schema_version WHERE scope = $1")
            .bind(&tables.scope)
            .fetch_optional(&mut *tx)
            .await?;
    let (users, groups) = (quote(&tables.users), quote(&tables.groups));
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
            "INSERT INTO scimd_schema_version (scope, version) VALUES ($1, $2) \
             ON CONFLICT (scope) DO UPDATE SET version = EXCLUDED.version",
        )
        .bind(&tables.scope)
        .bind(migration.version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[async_trait]
impl Dialect for Postgres {
    type Db = sqlx::Postgres;

    async fn begin(&self) -> Result<Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn write(&self, conn: &mut PgConnection, plan: &Plan<'_>) -> Result<(), sqlx::Error> {
        for (slot, sql) in self.sql.iter().enumerate() {
            for ids in plan.deletes[slot].chunks(CHUNK) {
                sqlx::query(AssertSqlSafe(sql.delete.clone()))
                    .bind(ids.to_vec())
                    .execute(&mut *conn)
                    .await?;
            }
            for rows in plan.upserts[slot].chunks(CHUNK) {
                let ids: Vec<&str> = rows.iter().map(|(id, _)| *id).collect();
                let documents: Vec<Json<&Value>> = rows.iter().map(|(_, d)| Json(*d)).collect();
                sqlx::query(AssertSqlSafe(sql.upsert.clone()))
                    .bind(ids)
                    .bind(documents)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    async fn set_checkpoint(
        &self,
        conn: &mut PgConnection,
        position: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO scimd_checkpoint (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
        )
        .bind(&self.tables.checkpoint)
        .bind(position)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// SQLSTATE classes 22 (data exception: too long, bad encoding, `\u0000` in JSONB …) and 23
    /// (integrity constraint), and 54000 (program limit exceeded, e.g. an over-large JSONB value).
    fn is_permanent(&self, error: &dyn DatabaseError) -> bool {
        error
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23") || code == "54000")
    }
}
