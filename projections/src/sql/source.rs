//! Reading the SQL layout back: every row of the Users and Groups tables as `(id, details)`, on
//! PostgreSQL, MySQL/MariaDB or SQLite. It connects without running the migrations: reading an
//! earlier server's database creates nothing in it.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::url::{DatabaseUrl, SqliteDatabase};
use super::{CONNECT_TIMEOUT, TableNames};
use crate::source::{Held, Source, parse_document, unreadable};
use crate::{ProjectionError, ResourceKind};

/// The two tables of a database, read.
#[derive(Debug)]
pub struct SqlSource {
    pool: ReadPool,
    names: TableNames,
}

/// A connection pool of one of the dialects.
#[derive(Debug)]
enum ReadPool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

impl SqlSource {
    /// Connects to `url` (any spelling [`super::SqlProjection::connect`] accepts) to read tables
    /// `users` and `groups`. An SQLite file must exist.
    ///
    /// # Errors
    /// [`ProjectionError::Config`] for a bad URL or table name, [`ProjectionError::Unavailable`]
    /// when the database cannot be reached or opened.
    pub async fn connect(url: &str, users: &str, groups: &str) -> Result<Self, ProjectionError> {
        let names = TableNames::new(users, groups)?;
        let config = |e: sqlx::Error| ProjectionError::Config(format!("sql: {e}"));
        let unavailable = |e: sqlx::Error| ProjectionError::Unavailable(format!("sql: {e}"));
        let pool = match super::url::parse(url)? {
            DatabaseUrl::Postgres(url) => ReadPool::Postgres(
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(PgConnectOptions::from_str(&url).map_err(config)?)
                    .await
                    .map_err(unavailable)?,
            ),
            DatabaseUrl::MySql(url) => ReadPool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(MySqlConnectOptions::from_str(&url).map_err(config)?)
                    .await
                    .map_err(unavailable)?,
            ),
            DatabaseUrl::Sqlite(location) => {
                let options = match location {
                    SqliteDatabase::Url(url) => {
                        SqliteConnectOptions::from_str(&url).map_err(config)?
                    }
                    SqliteDatabase::Path(path) => SqliteConnectOptions::new().filename(path),
                    SqliteDatabase::Memory => {
                        return Err(ProjectionError::Config(
                            "sql: an in-memory SQLite database holds nothing to read".into(),
                        ));
                    }
                };
                ReadPool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .connect_with(options.create_if_missing(false))
                        .await
                        .map_err(unavailable)?,
                )
            }
        };
        Ok(SqlSource { pool, names })
    }
}

#[async_trait]
impl Source for SqlSource {
    async fn read(&mut self, kind: ResourceKind) -> Result<Vec<Held>, ProjectionError> {
        let table = self.names.name(super::batch::slot(kind)).to_owned();
        let rows: Result<Vec<(Option<String>, Option<String>)>, sqlx::Error> = match &self.pool {
            ReadPool::Postgres(p) => {
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT id::text, details::text FROM \"{table}\""
                )))
                .fetch_all(p)
                .await
            }
            ReadPool::MySql(p) => {
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT CAST(id AS CHAR), CAST(details AS CHAR) FROM `{table}`"
                )))
                .fetch_all(p)
                .await
            }
            ReadPool::Sqlite(p) => {
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT CAST(id AS TEXT), CAST(details AS TEXT) FROM \"{table}\""
                )))
                .fetch_all(p)
                .await
            }
        };
        let rows = rows.map_err(|e| match e {
            // A missing table or column: the layout is not there (USER_MODEL_NAME misspelt?).
            sqlx::Error::Database(e) => {
                ProjectionError::Config(format!("sql: reading table {table}: {e}"))
            }
            e => ProjectionError::Unavailable(format!("sql: reading table {table}: {e}")),
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, details)| {
                let location = format!("table {table}, id {}", id.as_deref().unwrap_or("NULL"));
                match (id, details) {
                    (Some(id), Some(details)) => parse_document(location, id, &details),
                    (None, _) => unreadable(location, "the id is NULL"),
                    (_, None) => unreadable(location, "details is NULL"),
                }
            })
            .collect())
    }
}
