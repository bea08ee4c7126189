//! PostgreSQL: `details` is `JSONB`; a batch is one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT`
//! and one `DELETE … = ANY(…)` per table and 1,000 rows.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection};

use super::batch::Plan;
use super::dialect::{Connected, Dialect};
use super::migrate::{Migration, on_own_connection, run_pending};
use super::{CONNECT_TIMEOUT, TableNames};
use crate::ProjectionError;

/// Serialises concurrent migrations (several scimd processes or tests on one database).
const MIGRATION_LOCK: i64 = 0x5c1d_0001;

/// Rows per statement.
const CHUNK: usize = 1000;

/// The PostgreSQL dialect of [`super::SqlProjection`]: its batch statements.
#[derive(Debug)]
pub(super) struct Postgres {
    /// Per slot (Users, Groups).
    sql: [TableSql; 2],
}

/// The statements of one table.
#[derive(Debug)]
struct TableSql {
    /// `INSERT … SELECT FROM UNNEST($1, $2) ON CONFLICT …`.
    upsert: Arc<str>,
    /// `DELETE … WHERE id = ANY($1)`.
    delete: Arc<str>,
}

/// Errors that mean the server refuses us (bad credentials, unknown database, no privilege).
fn refused(error: &dyn DatabaseError) -> bool {
    error
        .code()
        .is_some_and(|code| code.starts_with("28") || code.starts_with("3D") || code == "42501")
}

/// Connects and migrates; see [`super::SqlProjection::connect`].
pub(super) async fn connect(
    url: &str,
    names: TableNames,
) -> Result<Connected<Postgres>, ProjectionError> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| ProjectionError::Config(format!("sql projection: {e}")))?;
    if options.get_application_name().is_none() {
        options = options.application_name("scimd");
    }
    on_own_connection::<Postgres>(&options, &names, refused).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options);

    let sql = [0, 1].map(|slot| {
        let table = Postgres::quote(names.name(slot));
        TableSql {
            upsert: format!(
                "INSERT INTO {table} (id, details) \
                 SELECT * FROM UNNEST($1::text[], $2::jsonb[]) {}",
                Postgres::on_conflict("id", "details")
            )
            .into(),
            delete: format!("DELETE FROM {table} WHERE id = ANY($1::text[])").into(),
        }
    });
    Ok(Connected {
        pool,
        names,
        dialect: Postgres { sql },
    })
}

#[async_trait]
impl Dialect for Postgres {
    type Db = sqlx::Postgres;
    const NAME: &'static str = "postgres";
    const PARAMETERS: [&'static str; 2] = ["$1", "$2"];
    const QUOTE: char = '"';
    const MIGRATIONS: &'static [Migration] = &[Migration {
        version: 1,
        template: include_str!("../../../migrations/postgres/0001_init.sql"),
    }];
    const BOOTSTRAP: &'static str = "CREATE TABLE IF NOT EXISTS scimd_schema_version (
        scope   VARCHAR(255) PRIMARY KEY,
        version BIGINT NOT NULL
    )";

    /// One `TRUNCATE` of both tables (transactional in PostgreSQL).
    fn empty(users: &str, groups: &str) -> Vec<String> {
        vec![format!("TRUNCATE TABLE {users}, {groups}")]
    }

    /// Runs the pending migrations in one transaction under an advisory lock.
    async fn migrate(conn: &mut PgConnection, names: &TableNames) -> Result<(), sqlx::Error> {
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        run_pending::<Postgres>(&mut tx, names).await?;
        tx.commit().await
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

    /// SQLSTATE classes 22 (data exception: too long, bad encoding, `\u0000` in JSONB …) and 23
    /// (integrity constraint), and 54000 (program limit exceeded, e.g. an over-large JSONB value).
    fn is_permanent(error: &dyn DatabaseError) -> bool {
        error
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23") || code == "54000")
    }
}
