//! Schema migrations: templates embedded from `migrations/{postgres,mysql,sqlite}/NNNN_*.sql`,
//! rendered for the run-time table names, and recorded per pair of tables in
//! `scimd_schema_version`. Each dialect takes its own lock and calls [`run_pending`].

use sqlx::error::DatabaseError;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Type,
};

use super::dialect::Dialect;
use super::{CONNECT_TIMEOUT, TableNames, connect_error, timed, unreachable_within};
use crate::ProjectionError;

/// A schema migration: its number and its template (see the `sql` module documentation).
pub(super) struct Migration {
    /// Compared with `scimd_schema_version.version`; the first is 1.
    pub(super) version: i64,
    /// The statements, with `{users}` and `{groups}` for the quoted table names.
    pub(super) template: &'static str,
}

/// Migrates on a first connection of our own, closed afterwards whatever happened (which also
/// releases a session lock such as MySQL's): its error (refused, unknown host, bad password) is
/// more useful than a pool's "timed out". `refused` tells the errors that mean the server refuses
/// us (a configuration problem) from those that may pass.
pub(super) async fn on_own_connection<D: Dialect>(
    options: &<<D::Db as Database>::Connection as Connection>::Options,
    names: &TableNames,
    refused: fn(&dyn DatabaseError) -> bool,
) -> Result<(), ProjectionError> {
    let connect = <D::Db as Database>::Connection::connect_with(options);
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| unreachable_within(CONNECT_TIMEOUT))?
        .map_err(|e| connect_error(e, refused))?;
    let migrated = timed(async {
        D::migrate(&mut conn, names)
            .await
            .map_err(|e| connect_error(e, |_| true))
    })
    .await;
    let _ = conn.close().await;
    migrated
}

/// Runs every migration of `D` above the version recorded for `names`, recording each as it
/// completes. The caller holds the dialect's migration lock. Statements are idempotent
/// (`IF NOT EXISTS`), so where DDL commits on its own (MySQL) an interrupted migration is simply
/// run again.
pub(super) async fn run_pending<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    names: &TableNames,
) -> Result<(), sqlx::Error>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    let [scope, version] = D::PARAMETERS;
    sqlx::raw_sql(D::BOOTSTRAP).execute(&mut *conn).await?;
    let current: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM scimd_schema_version WHERE scope = {scope}"
    )))
    .bind(names.scope.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let record = format!(
        "INSERT INTO scimd_schema_version (scope, version) VALUES ({scope}, {version}) {}",
        D::on_conflict("scope", "version")
    );
    let (users, groups) = (D::quote(&names.users), D::quote(&names.groups));
    for migration in D::MIGRATIONS
        .iter()
        .filter(|m| m.version > current.unwrap_or(0))
    {
        for statement in render(migration.template, &users, &groups) {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(AssertSqlSafe(record.as_str()))
            .bind(names.scope.as_str())
            .bind(migration.version)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The statements of a migration template with `{users}` and `{groups}` replaced by the quoted
/// names. Lines starting with `--` are comments; a statement ends with `;` at the end of a line.
fn render(template: &str, users: &str, groups: &str) -> Vec<String> {
    let fill = |statement: &str| {
        statement
            .replace("{users}", users)
            .replace("{groups}", groups)
    };
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
            statements.push(fill(current.trim().trim_end_matches(';')));
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        statements.push(fill(current.trim()));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
