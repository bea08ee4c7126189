//! The server drops the projection's connections (a restart, a failover, an idle timeout): the
//! next batches go through on fresh connections. A test binary of its own, because on MySQL it
//! kills every idle session of the test user on the test database, which would break parallel
//! tests of another binary.

mod common;

use common::{Backend, Which, apply_ok, by_id, upsert, user};
use projections::ProjectionError;
use projections::ResourceKind::User;

/// Kills the server side of the projection's connections; returns how many.
async fn kill_connections(b: &Backend) -> u64 {
    match &b.store {
        common::Store::Postgres(pool) => {
            // The projection's connections carry this test's application_name (see common).
            let name = b
                .url
                .split("application_name=")
                .nth(1)
                .and_then(|rest| rest.split('&').next())
                .expect("application_name in the URL")
                .to_owned();
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
            )
            .bind(name)
            .fetch_all(pool)
            .await
            .expect("terminate");
            killed.len() as u64
        }
        common::Store::MySql(pool) => {
            let mut conn = pool.acquire().await.expect("connection");
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AND DB = DATABASE() \
                 AND COMMAND = 'Sleep' AND ID <> CONNECTION_ID()",
            )
            .fetch_all(&mut *conn)
            .await
            .expect("processlist");
            for id in &ids {
                // A session may end by itself meanwhile.
                let kill = format!("KILL CONNECTION {id}");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(kill))
                    .execute(&mut *conn)
                    .await;
            }
            ids.len() as u64
        }
        common::Store::Files(_)
        | common::Store::Sqlite(_)
        | common::Store::Ldap(_)
        | common::Store::Mongo(_) => 0,
    }
}

async fn a_lost_connection_is_replaced(which: Which) {
    let Some(mut b) = Backend::open(which).await else {
        return;
    };
    let first = user("u-1", "first");
    apply_ok(&mut b, &[upsert(User, first.clone())], 1).await;
    assert!(
        kill_connections(&b).await >= 1,
        "no connection of the projection found"
    );

    // The pool tests idle connections before use, so the batch normally goes through at once; an
    // Unavailable (never a Rejected) is allowed once, as the runner would retry it.
    let second = user("u-2", "second");
    let batch = [upsert(User, second.clone())];
    let mut attempts = 0;
    loop {
        attempts += 1;
        match b.projection.apply(&batch, 2).await {
            Ok(()) => break,
            Err(ProjectionError::Unavailable(message)) if attempts < 3 => {
                eprintln!("{which:?}: attempt {attempts}: {message}");
            }
            Err(e) => panic!("{which:?}: {e}"),
        }
    }
    assert_eq!(b.contents(User).await, by_id(&[&first, &second]));
    assert_eq!(b.projection.stored_position().await.ok(), Some(Some(2)));
    b.cleanup().await;
}

#[tokio::test]
async fn a_lost_postgres_connection_is_replaced() {
    a_lost_connection_is_replaced(Which::Postgres).await;
}

#[tokio::test]
async fn a_lost_mysql_connection_is_replaced() {
    a_lost_connection_is_replaced(Which::MySql).await;
}
