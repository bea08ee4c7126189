//! What the three SQL dialects share, written once over sqlx's [`Database`]: reading, moving and
//! removing the checkpoint, emptying the tables, and applying a batch. A [`Dialect`] supplies only
//! what differs: its driver, the spelling of parameters, quotes and upserts, how a batch's rows are
//! bound, and which errors are the row's fault.

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Transaction,
    Type,
};

use super::batch::Plan;
use super::migrate::Migration;
use super::{TableNames, unavailable};
use crate::{Change, ProjectionError};

/// One SQL dialect: the SQL text and error codes of its database, and how it writes a batch.
#[async_trait]
pub(super) trait Dialect: Debug + Send + Sync + Sized + 'static {
    /// The sqlx driver.
    type Db: Database;

    /// `postgres`, `mysql` or `sqlite`, as [`SqlProjection::dialect`](super::SqlProjection::dialect) reports it.
    const NAME: &'static str;

    /// The first and second parameter of a statement: `$1`, `$2` or `?`, `?`.
    const PARAMETERS: [&'static str; 2];

    /// The quote around identifiers (table names are validated, so none holds it).
    const QUOTE: char;

    /// The schema migrations, in order (see the `sql` module documentation).
    const MIGRATIONS: &'static [Migration];

    /// Creates `scimd_schema_version` before the migrations run.
    const BOOTSTRAP: &'static str;

    /// The statement that starts a batch's transaction, if not the driver's plain `BEGIN`.
    const BEGIN: Option<&'static str> = None;

    /// `name` quoted as an identifier.
    fn quote(name: &str) -> String {
        format!("{q}{name}{q}", q = Self::QUOTE)
    }

    /// What follows `INSERT INTO t (key, value) VALUES …` so that a row whose `key` exists gets
    /// the new `value` instead: the upsert that makes writing the same row twice harmless.
    fn on_conflict(key: &str, value: &str) -> String {
        format!("ON CONFLICT ({key}) DO UPDATE SET {value} = EXCLUDED.{value}")
    }

    /// The statements that empty both tables (already quoted) inside a transaction.
    fn empty(users: &str, groups: &str) -> Vec<String> {
        vec![
            format!("DELETE FROM {users}"),
            format!("DELETE FROM {groups}"),
        ]
    }

    /// Takes the dialect's migration lock on `conn` and runs
    /// [`run_pending`](super::migrate::run_pending) under it.
    async fn migrate(
        conn: &mut <Self::Db as Database>::Connection,
        names: &TableNames,
    ) -> Result<(), sqlx::Error>;

    /// Writes the rows of `plan` on `conn`, inside the batch's transaction.
    async fn write(
        &self,
        conn: &mut <Self::Db as Database>::Connection,
        plan: &Plan<'_>,
    ) -> Result<(), sqlx::Error>;

    /// Whether a database error is permanent for the row being written.
    fn is_permanent(error: &dyn DatabaseError) -> bool;
}

/// A dialect connected: its pool, the table names and the dialect's prepared statement texts.
#[derive(Debug)]
pub(super) struct Connected<D: Dialect> {
    /// Connections to the database.
    pub(super) pool: sqlx::Pool<D::Db>,
    /// The tables written.
    pub(super) names: TableNames,
    /// The dialect, with the statements it prepared for `names`.
    pub(super) dialect: D,
}

impl<D: Dialect> Connected<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    /// The position recorded in `scimd_checkpoint`, if any.
    pub(super) async fn stored_position(&self) -> Result<Option<i64>, sqlx::Error> {
        let [name, _] = D::PARAMETERS;
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT position FROM scimd_checkpoint WHERE name = {name}"
        )))
        .bind(self.names.checkpoint.as_str())
        .fetch_optional(&self.pool)
        .await
    }

    /// Empties both tables and removes the checkpoint row, in one transaction: a crash leaves
    /// either the old data with its checkpoint or nothing at all, never rows without a position.
    pub(super) async fn reset(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        let (users, groups) = (D::quote(&self.names.users), D::quote(&self.names.groups));
        for statement in D::empty(&users, &groups) {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        let [name, _] = D::PARAMETERS;
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM scimd_checkpoint WHERE name = {name}"
        )))
        .bind(self.names.checkpoint.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Applies `changes`: the whole batch at once, and one change at a time to find a culprit.
    pub(super) async fn apply(
        &self,
        changes: &[Change],
        position: i64,
    ) -> Result<(), ProjectionError> {
        let error = match self.write_batch(&Plan::new(changes), position).await {
            Ok(()) => return Ok(()),
            Err(e) if permanent::<D>(&e) => e,
            Err(e) => return Err(unavailable(&e)),
        };
        tracing::debug!(%error, "sql projection: batch refused, looking for the change at fault");

        // Only the changes the batch's plan keeps are tried: a change a later one to the same
        // resource supersedes is never written, so it can neither be blamed (and parked) for a
        // refusal nor put a row the batch would not have into the transaction.
        let mut last = HashMap::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            last.insert((change.kind(), change.id()), index);
        }
        let mut tx = self.begin().await.map_err(|e| unavailable(&e))?;
        for (index, change) in changes.iter().enumerate() {
            if last.get(&(change.kind(), change.id())) != Some(&index) {
                continue;
            }
            let plan = Plan::new(std::slice::from_ref(change));
            if let Err(e) = self.dialect.write(&mut *tx, &plan).await {
                // Nothing of the batch is written and the checkpoint does not move.
                let _ = tx.rollback().await;
                return Err(if permanent::<D>(&e) {
                    ProjectionError::Rejected {
                        index,
                        reason: e.to_string(),
                    }
                } else {
                    unavailable(&e)
                });
            }
        }
        // Every change passes on its own: the multi-row statements were the problem, not the
        // data. Commit them with the checkpoint, as write_batch would have.
        let committed = async {
            self.set_checkpoint(&mut *tx, position).await?;
            tx.commit().await
        }
        .await;
        committed.map_err(|e| unavailable(&e))
    }

    /// Writes `plan` and the checkpoint **in one transaction**, so that the data and the position
    /// it reflects never disagree; rolls back on error. Writing the same plan again leaves the
    /// same rows (every row is an upsert or a delete by id), so the runner may re-apply a batch.
    async fn write_batch(&self, plan: &Plan<'_>, position: i64) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        let written = async {
            self.dialect.write(&mut *tx, plan).await?;
            self.set_checkpoint(&mut *tx, position).await
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

    /// Records `position` in `scimd_checkpoint`, inside the batch's transaction.
    async fn set_checkpoint(
        &self,
        conn: &mut <D::Db as Database>::Connection,
        position: i64,
    ) -> Result<(), sqlx::Error> {
        let [name, value] = D::PARAMETERS;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO scimd_checkpoint (name, position) VALUES ({name}, {value}) {}",
            D::on_conflict("name", "position")
        )))
        .bind(self.names.checkpoint.as_str())
        .bind(position)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Starts a transaction with the dialect's `BEGIN`.
    async fn begin(&self) -> Result<Transaction<'static, D::Db>, sqlx::Error> {
        match D::BEGIN {
            Some(statement) => self.pool.begin_with(statement).await,
            None => self.pool.begin().await,
        }
    }
}

/// Whether `error` is the row's fault for good (see [`Dialect::is_permanent`]).
fn permanent<D: Dialect>(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => D::is_permanent(db.as_ref()),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}
