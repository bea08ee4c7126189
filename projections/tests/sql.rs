//! What only the SQL backend does: URLs, JSON queries on the rows, the schema, dialect-specific
//! refusals, and errors on connect. Real SQLite, PostgreSQL (`SCIMD_TEST_POSTGRES_URL`) and
//! MariaDB/MySQL (`SCIMD_TEST_MYSQL_URL`); see `common` for skipping.

mod common;

use std::time::{Duration, Instant};

use common::{
    Backend, Which, apply_ok, by_id, rejected_index, server_url, unique_suffix, upsert, user,
};
use projections::ResourceKind::User;
use projections::sql::SqlProjection;
use projections::{Projection, ProjectionError};
use serde_json::json;
use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// Connects through `url`, writes one user, reads the checkpoint back and resets; drops the
/// tables afterwards through `server` (the plain URL of the same server) if given.
async fn round_trip(url: &str, server: Option<(Which, &str)>) {
    let suffix = unique_suffix();
    let (users, groups) = (format!("U_{suffix}"), format!("G_{suffix}"));
    let mut projection = match SqlProjection::connect(url, &users, &groups).await {
        Ok(p) => p,
        Err(e) => panic!("{url}: {e}"),
    };
    projection
        .apply(&[upsert(User, user("u-1", "alice"))], 1)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(
        projection.stored_position().await.ok(),
        Some(Some(1)),
        "{url}"
    );
    projection.reset().await.expect("reset");
    drop(projection);
    let Some((which, server)) = server else {
        return;
    };
    let statements = [
        format!(
            "DROP TABLE {}, {}",
            common::quote(which, &users),
            common::quote(which, &groups)
        ),
        format!("DELETE FROM scimd_schema_version WHERE scope = '{users},{groups}'"),
    ];
    for statement in statements {
        let result = if which == Which::Postgres {
            let pool = PgPool::connect(server).await.expect("pool");
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .map(drop)
        } else {
            let pool = MySqlPool::connect(server).await.expect("pool");
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .map(drop)
        };
        result.expect("cleanup");
    }
}

/// `url` with its scheme replaced by `scheme`.
fn with_scheme(url: &str, scheme: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    format!("{scheme}://{rest}")
}

#[tokio::test]
async fn sqlalchemy_style_urls_are_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let absolute = dir.path().join("alchemy.db");
    // SQLAlchemy's absolute form: four slashes.
    round_trip(&format!("sqlite+pysqlite:///{}", absolute.display()), None).await;
    assert!(
        absolute.is_file(),
        "sqlite+pysqlite:////… did not create {}",
        absolute.display()
    );
    let plain = dir.path().join("plain.db");
    round_trip(&format!("sqlite://{}", plain.display()), None).await;
    assert!(plain.is_file());

    if let Some(url) = server_url(Which::Postgres) {
        for scheme in [
            "postgresql+psycopg2",
            "postgresql+asyncpg",
            "postgresql",
            "postgres",
        ] {
            round_trip(&with_scheme(&url, scheme), Some((Which::Postgres, &url))).await;
        }
    }
    if let Some(url) = server_url(Which::MySql) {
        for scheme in ["mysql+pymysql", "mysql+mysqldb", "mariadb", "mysql"] {
            round_trip(&with_scheme(&url, scheme), Some((Which::MySql, &url))).await;
        }
    }
}

macro_rules! per_dialect {
    ($test:ident) => {
        mod $test {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                super::$test(Which::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$test(Which::Postgres).await;
            }
            #[tokio::test]
            async fn mysql() {
                super::$test(Which::MySql).await;
            }
        }
    };
}

per_dialect!(rows_are_queryable_with_json_functions);
per_dialect!(connecting_again_keeps_the_schema_and_the_data);

async fn rows_are_queryable_with_json_functions(which: Which) {
    let Some(mut b) = Backend::open(which).await else {
        return;
    };
    let alice = user("u-alice", "alice");
    let bob = user("u-bob", "bob");
    apply_ok(&mut b, &[upsert(User, alice), upsert(User, bob)], 1).await;
    let table = common::quote(which, &b.users);
    let queries: Vec<String> = match which {
        Which::Postgres => vec![
            format!("SELECT details->>'userName' FROM {table} WHERE id = 'u-alice'"),
            format!("SELECT id FROM {table} WHERE details->>'userName' = 'alice'"),
            format!(
                "SELECT details->'name'->>'givenName' FROM {table} WHERE details @> '{{\"userName\": \"alice\"}}'"
            ),
        ],
        Which::MySql => vec![
            format!(
                "SELECT JSON_UNQUOTE(JSON_EXTRACT(details, '$.userName')) FROM {table} WHERE id = 'u-alice'"
            ),
            format!("SELECT id FROM {table} WHERE JSON_EXTRACT(details, '$.userName') = 'alice'"),
            format!(
                "SELECT JSON_UNQUOTE(JSON_EXTRACT(details, '$.name.givenName')) FROM {table} WHERE JSON_UNQUOTE(JSON_EXTRACT(details, '$.userName')) = 'alice'"
            ),
        ],
        _ => vec![
            format!("SELECT JSON_EXTRACT(details, '$.userName') FROM {table} WHERE id = 'u-alice'"),
            format!("SELECT id FROM {table} WHERE details->>'$.userName' = 'alice'"),
            format!(
                "SELECT JSON_EXTRACT(details, '$.name.givenName') FROM {table} WHERE JSON_EXTRACT(details, '$.userName') = 'alice'"
            ),
        ],
    };
    let mut answers = Vec::new();
    for query in queries {
        let rows: Vec<String> = match &b.store {
            common::Store::Postgres(pool) => {
                sqlx::query_scalar(AssertSqlSafe(query))
                    .fetch_all(pool)
                    .await
            }
            common::Store::MySql(pool) => {
                sqlx::query_scalar(AssertSqlSafe(query))
                    .fetch_all(pool)
                    .await
            }
            common::Store::Sqlite(pool) => {
                sqlx::query_scalar(AssertSqlSafe(query))
                    .fetch_all(pool)
                    .await
            }
            common::Store::Files(_) | common::Store::Ldap(_) | common::Store::Mongo(_) => {
                unreachable!("SQL only")
            }
        }
        .expect("query");
        answers.push(rows);
    }
    assert_eq!(
        answers,
        vec![
            vec!["alice".to_owned()],
            vec!["u-alice".to_owned()],
            vec!["Bärbel".to_owned()]
        ]
    );
    b.cleanup().await;
}

async fn connecting_again_keeps_the_schema_and_the_data(which: Which) {
    let Some(mut b) = Backend::open(which).await else {
        return;
    };
    let alice = user("u-alice", "alice");
    apply_ok(&mut b, &[upsert(User, alice.clone())], 9).await;

    // A restarted scimd connects again: migrations are not re-run, nothing is lost.
    let mut again = common::connect(&b.url, &b.users, &b.groups).await;
    assert_eq!(again.stored_position().await.ok(), Some(Some(9)));
    assert_eq!(again.name(), "sql");
    assert_eq!(
        again.checkpoint_name(),
        format!("sql:{},{}", b.users, b.groups)
    );
    assert_eq!(b.contents(User).await, by_id(&[&alice]));

    let scope = format!("{},{}", b.users, b.groups);
    let query = "SELECT version FROM scimd_schema_version WHERE scope = ";
    let version: i64 = match &b.store {
        common::Store::Postgres(pool) => {
            sqlx::query_scalar(AssertSqlSafe(format!("{query}$1")))
                .bind(&scope)
                .fetch_one(pool)
                .await
        }
        common::Store::MySql(pool) => {
            sqlx::query_scalar(AssertSqlSafe(format!("{query}?")))
                .bind(&scope)
                .fetch_one(pool)
                .await
        }
        common::Store::Sqlite(pool) => {
            sqlx::query_scalar(AssertSqlSafe(format!("{query}?")))
                .bind(&scope)
                .fetch_one(pool)
                .await
        }
        common::Store::Files(_) | common::Store::Ldap(_) | common::Store::Mongo(_) => {
            unreachable!("SQL only")
        }
    }
    .expect("schema version");
    assert_eq!(version, 1);
    b.cleanup().await;
}

#[tokio::test]
async fn postgres_rejects_a_nul_character_in_a_document() {
    let Some(mut b) = Backend::open(Which::Postgres).await else {
        return;
    };
    // JSONB cannot hold U+0000; PostgreSQL refuses it for good (SQLSTATE 22P05).
    let mut bad = user("u-nul", "nul");
    bad["displayName"] = json!("a\u{0}b");
    let good = user("u-good", "good");
    let result = b
        .projection
        .apply(&[upsert(User, good.clone()), upsert(User, bad)], 3)
        .await;
    assert_eq!(rejected_index(Which::Postgres, result), 1);
    apply_ok(&mut b, &[upsert(User, good.clone())], 3).await;
    assert_eq!(b.contents(User).await, by_id(&[&good]));
    b.cleanup().await;
}

#[tokio::test]
async fn the_search_for_a_refused_change_skips_changes_the_batch_supersedes() {
    let Some(mut b) = Backend::open(Which::Postgres).await else {
        return;
    };
    // u-a's first version is refused (NUL), but a later change in the same batch replaces it, so
    // the batch never writes it: the change at fault is u-b's, and it alone must be named (the
    // runner parks what is named; parking u-a's old version would park a change already fixed).
    let mut old_a = user("u-a", "a");
    old_a["displayName"] = json!("a\u{0}b");
    let new_a = user("u-a", "a");
    let mut bad_b = user("u-b", "b");
    bad_b["displayName"] = json!("b\u{0}c");
    let result = b
        .projection
        .apply(
            &[
                upsert(User, old_a),
                upsert(User, bad_b),
                upsert(User, new_a.clone()),
            ],
            5,
        )
        .await;
    assert_eq!(rejected_index(Which::Postgres, result), 1);
    // Nothing of the refused batch was written.
    assert_eq!(b.contents(User).await, by_id(&[]));
    apply_ok(&mut b, &[upsert(User, new_a.clone())], 5).await;
    assert_eq!(b.contents(User).await, by_id(&[&new_a]));
    b.cleanup().await;
}

#[tokio::test]
async fn mysql_rejects_a_document_over_max_allowed_packet() {
    let Some(mut b) = Backend::open(Which::MySql).await else {
        return;
    };
    let common::Store::MySql(pool) = &b.store else {
        unreachable!()
    };
    let limit: u64 = sqlx::query_scalar("SELECT @@max_allowed_packet")
        .fetch_one(pool)
        .await
        .expect("max_allowed_packet");
    let mut huge = user("u-huge", "huge");
    huge["title"] = json!("h".repeat(usize::try_from(limit).expect("limit") + 1024));
    let good = user("u-good", "good");
    let result = b
        .projection
        .apply(&[upsert(User, good.clone()), upsert(User, huge)], 4)
        .await;
    assert_eq!(rejected_index(Which::MySql, result), 1);
    // The server dropped that connection; the pool replaces it.
    apply_ok(&mut b, &[upsert(User, good.clone())], 4).await;
    assert_eq!(b.contents(User).await, by_id(&[&good]));
    assert_eq!(b.projection.stored_position().await.ok(), Some(Some(4)));
    b.cleanup().await;
}

#[tokio::test]
async fn invalid_table_names_are_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    for (users, groups) in [
        ("Users; DROP TABLE x", "Groups"),
        ("Users", "Gr\"oups"),
        ("", "Groups"),
        ("Users", "Users"),
    ] {
        match SqlProjection::connect(&url, users, groups).await {
            Err(ProjectionError::Config(message)) => eprintln!("{message}"),
            other => panic!("{users:?}/{groups:?}: expected Config, got {other:?}"),
        }
    }
    match SqlProjection::connect("mongodb://localhost/scim", "Users", "Groups").await {
        Err(ProjectionError::Config(_)) => {}
        other => panic!("expected Config, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_seconds() {
    let started = Instant::now();
    let (pg, my) = tokio::join!(
        SqlProjection::connect("postgres://scim@127.0.0.1:1/scim", "Users", "Groups"),
        SqlProjection::connect("mysql://scim@127.0.0.1:1/scim", "Users", "Groups"),
    );
    for result in [pg, my] {
        match result {
            Err(ProjectionError::Unavailable(message)) => eprintln!("{message}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn refused_credentials_are_a_configuration_error() {
    if let Some(url) = server_url(Which::Postgres) {
        let (base, _) = url.rsplit_once('/').expect("database in URL");
        let wrong = format!("{base}/scimd_no_such_database_{}", unique_suffix());
        match SqlProjection::connect(&wrong, "Users", "Groups").await {
            Err(ProjectionError::Config(message)) => eprintln!("{message}"),
            other => panic!("postgres: expected Config, got {other:?}"),
        }
    }
    if let Some(url) = server_url(Which::MySql) {
        let (scheme, rest) = url.split_once("://").expect("scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let wrong = format!("{scheme}://scimd_nobody:wrong@{host}");
        match SqlProjection::connect(&wrong, "Users", "Groups").await {
            Err(ProjectionError::Config(message)) => eprintln!("{message}"),
            other => panic!("mysql: expected Config, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_sqlite_file_in_a_missing_directory_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("missing/dir/x.db").display());
    match SqlProjection::connect(&url, "Users", "Groups").await {
        Err(ProjectionError::Config(message)) => eprintln!("{message}"),
        other => panic!("expected Config, got {other:?}"),
    }
}

#[tokio::test]
async fn two_projections_share_a_database_but_neither_rows_nor_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let mut first = common::connect(&url, "Users", "Groups").await;
    let mut second = common::connect(&url, "StagingUsers", "StagingGroups").await;
    first
        .apply(&[upsert(User, user("u-1", "a"))], 5)
        .await
        .expect("apply");
    second.apply(&[], 8).await.expect("apply");
    assert_eq!(first.stored_position().await.ok(), Some(Some(5)));
    assert_eq!(second.stored_position().await.ok(), Some(Some(8)));
    let pool = SqlitePool::connect(&url).await.expect("pool");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM \"StagingUsers\"")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
}
