//! Projections through failures and rebuilds, from outside: a PostgreSQL outage delays the sql
//! projection but loses nothing; `scimd replay` (server stopped or running) rebuilds the same content
//! as the live projections; a restart resumes from the checkpoints without rewriting anything; new
//! tables fill from the start of the log; a change the database refuses for good is parked and
//! applied once by `retry`.
//!
//! The databases, their sharing and the environment: [`common::projections`].

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::projections::*;
use common::*;
use serde_json::json;
use sqlx::AssertSqlSafe;

// ---------------------------------------------------------------------------------------------
// Outage
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_postgres_outage_delays_the_sql_projection_but_loses_nothing() {
    let Some(sql) = Sql::postgres_exclusive().await else {
        return;
    };
    let mut pg = RestartPostgres { stopped: false };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    mixed_workload(&api, "before-outage").await;
    caught_up(&s, &["sql"], CONVERGE).await;

    pg.stop();
    // Writes go on while the backend is down: PostgreSQL stays stopped until the end of the test,
    // so a write that waited on the projection would never be answered (the client gives up after
    // 60 s and the test fails). No wall-clock budget: this machine is shared and its timings noisy.
    let during = create_users(&api, "during-outage", 40).await;
    mixed_workload(&api, "during-outage").await;
    api.put(
        &format!("/Users/{}", during[0]),
        &user_body("during-outage-renamed", 0),
    )
    .await
    .expect(200);
    api.delete(&format!("/Users/{}", during[1]))
        .await
        .expect(204);

    // /status shows the projection retrying, with the error, and lagging.
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = status(&s).await;
        let sub = &st["subscribers"]["sql"];
        if sub["state"] == "retrying"
            && sub["lastError"].is_string()
            && sub["lag"].as_u64() > Some(0)
        {
            break st;
        }
        if Instant::now() > deadline {
            panic!(
                "/status never showed the sql projection retrying with an error: {st:#}\n{}",
                s.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("during the outage: {}", st["subscribers"]["sql"]);
    // Still lagging a little later: nothing was acknowledged while the database was down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st2 = status(&s).await;
    assert!(
        st2["subscribers"]["sql"]["lag"].as_u64() > Some(0),
        "{st2:#}"
    );

    pg.start();
    caught_up(&s, &["sql"], RECOVERY).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    assert_eq!(
        sql.users().await.len(),
        api.list("/Users?count=1").await["totalResults"]
            .as_u64()
            .unwrap() as usize
    );
    sql.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn replay_with_the_server_stopped_rebuilds_the_same_content_as_the_live_projections() {
    let sql = Sql::sqlite().await;
    let mut s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    mixed_workload(&s.client(), "replay-stopped").await;
    create_users(&s.client(), "replay-stopped", 1500).await; // several batches
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    assert_files_match(&s, &s.data_path()).await;
    let (live_users, live_groups) = (sql.users().await, sql.groups().await);
    let (live_user_files, live_group_files) = (
        file_docs(&s.data_path(), "Users"),
        file_docs(&s.data_path(), "Groups"),
    );
    let (api_users, api_groups) = api_state(&s).await;
    let position = status(&s).await["position"].as_u64().unwrap();
    s.stop().await;

    // 1. Into a fresh pair of tables.
    let (users_b, groups_b) = sql.other_tables();
    s.opts.env.push(("USER_MODEL_NAME".into(), users_b.clone()));
    s.opts
        .env
        .push(("GROUP_MODEL_NAME".into(), groups_b.clone()));
    let out = s
        .cli(&["replay", "--projection", "sql", "--fresh"])
        .await
        .success();
    s.opts.env.truncate(s.opts.env.len() - 2);
    assert!(
        out.stderr.contains(&position.to_string()),
        "names the position it reached: {out:?}"
    );
    assert_holds(
        "sqlite (replayed into new tables)",
        "Users",
        &sql.rows(&users_b).await,
        &live_users,
    );
    assert_holds(
        "sqlite (replayed into new tables)",
        "Groups",
        &sql.rows(&groups_b).await,
        &live_groups,
    );

    // 2. Over the live tables, after damaging them: a row lost, a row altered, a stray row.
    let victim = live_users.keys().next().unwrap().clone();
    let t_users = sql.quote(&sql.users);
    let t_groups = sql.quote(&sql.groups);
    sql.execute(format!("DELETE FROM {t_users} WHERE id = '{victim}'"))
        .await;
    sql.execute(format!(
        "UPDATE {t_groups} SET details = '{{\"tampered\": true}}'"
    ))
    .await;
    sql.execute(format!(
        "INSERT INTO {t_users} (id, details) VALUES ('stray', '{{}}')"
    ))
    .await;
    // The stray row is not the log's: --fresh alone refuses (naming it) and changes nothing.
    let out = s.cli(&["replay", "--projection", "sql", "--fresh"]).await;
    assert!(
        !out.status.success() && out.stderr.contains("stray") && out.stderr.contains("--yes"),
        "{out:?}"
    );
    assert_eq!(sql.users().await.get("stray"), Some(&json!({})));
    s.cli(&["replay", "--projection", "sql", "--fresh", "--yes"])
        .await
        .success();
    assert_holds(
        "sqlite (replayed)",
        "Users",
        &sql.users().await,
        &live_users,
    );
    assert_holds(
        "sqlite (replayed)",
        "Groups",
        &sql.groups().await,
        &live_groups,
    );

    // 3. The file projection likewise.
    let users_dir = s.data_path().join("Users");
    std::fs::remove_file(users_dir.join(&victim)).unwrap();
    std::fs::write(users_dir.join("stray"), "{}").unwrap();
    let some_group = live_group_files.keys().next().unwrap();
    std::fs::write(
        s.data_path().join("Groups").join(some_group),
        "{\"tampered\": true}",
    )
    .unwrap();
    s.cli(&["replay", "--projection", "file", "--fresh", "--yes"])
        .await
        .success();
    assert_holds(
        "file (replayed)",
        "Users",
        &file_docs(&s.data_path(), "Users"),
        &live_user_files,
    );
    assert_holds(
        "file (replayed)",
        "Groups",
        &file_docs(&s.data_path(), "Groups"),
        &live_group_files,
    );

    // 4. The live runners continue from where the replay finished: nothing to redo, new writes land.
    s.start_again().await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_holds(
        "sqlite (after restart)",
        "Users",
        &sql.users().await,
        &api_users,
    );
    assert_holds(
        "sqlite (after restart)",
        "Groups",
        &sql.groups().await,
        &api_groups,
    );
    s.client().create_user_named("after-replay").await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    assert_files_match(&s, &s.data_path()).await;
}

#[tokio::test]
async fn replay_while_the_server_runs_goes_through_the_server_and_rebuilds_the_same_content() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "replay-running").await;
    create_users(&s.client(), "replay-running", 2500).await; // several batches
    caught_up(&s, &["sql"], CONVERGE).await;
    let (api_users, api_groups) = api_state(&s).await;
    assert_holds("postgres", "Users", &sql.users().await, &api_users);
    assert_holds("postgres", "Groups", &sql.groups().await, &api_groups);

    // Damage the tables behind the running server's back; the live runner does not notice.
    let t_users = sql.quote(&sql.users);
    sql.execute(format!(
        "DELETE FROM {t_users} WHERE id IN (SELECT id FROM {t_users} ORDER BY id LIMIT 100)"
    ))
    .await;
    sql.execute(format!(
        "INSERT INTO {t_users} (id, details) VALUES ('stray', '{{}}')"
    ))
    .await;

    // The stray row is not the log's: --fresh asks for --yes, beside the running server too.
    let out = s.cli(&["replay", "--projection", "sql", "--fresh"]).await;
    assert!(
        !out.status.success() && out.stderr.contains("--yes"),
        "{out:?}"
    );
    let started = Instant::now();
    let out = s
        .cli(&["replay", "--projection", "sql", "--fresh", "--yes"])
        .await
        .success();
    let took = started.elapsed();
    assert!(
        out.stderr.contains("scimd serve holds the store"),
        "with the server running the CLI asks the server: {out:?}"
    );
    // The CLI returned: the rebuild should be complete. Read right away, without waiting.
    let immediate: Vec<String> = [
        holds_diff("postgres", "Users", &sql.users().await, &api_users),
        holds_diff("postgres", "Groups", &sql.groups().await, &api_groups),
    ]
    .into_iter()
    .flatten()
    .collect();
    let st_immediate = status(&s).await;

    // Whatever the CLI said, the server completes the rebuild.
    let deadline = Instant::now() + CONVERGE;
    loop {
        caught_up(&s, &["sql"], CONVERGE).await;
        let diffs: Vec<String> = [
            holds_diff("postgres", "Users", &sql.users().await, &api_users),
            holds_diff("postgres", "Groups", &sql.groups().await, &api_groups),
        ]
        .into_iter()
        .flatten()
        .collect();
        if diffs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild through the server never completed:\n{}",
            diffs.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        immediate.is_empty(),
        "`scimd replay` returned after {took:?}, saying {:?}, before the rebuild was complete \
         (it completed later). /status right after: {st_immediate}\n{}",
        out.stderr.trim(),
        immediate.join("\n")
    );

    // Writes after the rebuild are projected as usual.
    s.client().create_user_named("after-online-replay").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn replay_of_a_projection_the_server_does_not_run_is_refused_with_a_clear_message() {
    let s = Scimd::start(Opts::default().env("PROJECTIONS", "file")).await;
    s.client().create_user_named("not-sql").await;
    // sql is not configured at all (no DATABASE_URL).
    let out = s.cli(&["replay", "--projection", "sql"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("DATABASE_URL"),
        "says what is missing: {out:?}"
    );
    let out = s.cli(&["replay", "--projection", "nosuch"]).await;
    assert!(!out.status.success(), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Restart and checkpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_restarted_server_resumes_from_its_checkpoints_without_rewriting_anything() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let mut s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    mixed_workload(&s.client(), "restart").await;
    create_users(&s.client(), "restart", 200).await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    assert_files_match(&s, &s.data_path()).await;

    let Pool::Postgres(pool) = &sql.pool else {
        unreachable!()
    };
    let xmins = |table: String| async move {
        let rows: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, xmin::text FROM \"{table}\""
        )))
        .fetch_all(pool)
        .await
        .expect("read xmin");
        rows.into_iter().collect::<BTreeMap<String, String>>()
    };
    let checkpoint_xmin = || async {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM scimd_checkpoint WHERE name = $1")
            .bind(format!("sql:{},{}", sql.users, sql.groups))
            .fetch_one(pool)
            .await
            .expect("checkpoint row")
    };
    let before = (
        xmins(sql.users.clone()).await,
        xmins(sql.groups.clone()).await,
        checkpoint_xmin().await,
        file_stamps(&s.data_path(), "Users"),
        file_stamps(&s.data_path(), "Groups"),
    );
    let (users, groups) = (sql.users().await, sql.groups().await);
    let position = status(&s).await["position"].as_u64().unwrap();

    s.restart().await;
    // Right away (as soon as each runner reports) the checkpoints equal the position.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(&s).await;
        assert_eq!(
            st["position"].as_u64(),
            Some(position),
            "a restart writes nothing to the log"
        );
        let subs = &st["subscribers"];
        if subs.get("file").is_some() && subs.get("sql").is_some() {
            for name in ["file", "sql"] {
                assert_eq!(
                    subs[name]["checkpoint"].as_u64(),
                    Some(position),
                    "{name}: {st:#}"
                );
                assert_eq!(subs[name]["lag"].as_u64(), Some(0), "{name}: {st:#}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projections did not report within 10 s: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // any re-application would have happened by now
    let after = (
        xmins(sql.users.clone()).await,
        xmins(sql.groups.clone()).await,
        checkpoint_xmin().await,
        file_stamps(&s.data_path(), "Users"),
        file_stamps(&s.data_path(), "Groups"),
    );
    assert!(
        before.0 == after.0 && before.1 == after.1,
        "sql rows were rewritten after a restart"
    );
    assert_eq!(
        before.2, after.2,
        "the sql checkpoint was rewritten after a restart"
    );
    assert!(
        before.3 == after.3 && before.4 == after.4,
        "files were rewritten after a restart"
    );
    assert_holds(
        "postgres (after restart)",
        "Users",
        &sql.users().await,
        &users,
    );
    assert_holds(
        "postgres (after restart)",
        "Groups",
        &sql.groups().await,
        &groups,
    );
    assert_sql_matches(&s, &sql, "postgres").await;
    assert_files_match(&s, &s.data_path()).await;
    sql.cleanup().await;
}

#[tokio::test]
async fn pointing_the_sql_projection_at_new_tables_fills_them_from_the_start_of_the_log() {
    // An operator moves the projection to another database (or other table names) and restarts:
    // the new tables have no checkpoint of their own, so they must be filled from position 1.
    let sql = Sql::sqlite().await;
    let mut s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "move").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    s.stop().await;

    let (users_b, groups_b) = sql.other_tables();
    s.opts.env.push(("USER_MODEL_NAME".into(), users_b.clone()));
    s.opts
        .env
        .push(("GROUP_MODEL_NAME".into(), groups_b.clone()));
    s.start_again().await;
    caught_up(&s, &["sql"], CONVERGE).await;
    let (api_users, api_groups) = api_state(&s).await;
    assert_holds(
        "sqlite (new tables)",
        "Users",
        &sql.rows(&users_b).await,
        &api_users,
    );
    assert_holds(
        "sqlite (new tables)",
        "Groups",
        &sql.rows(&groups_b).await,
        &api_groups,
    );
}

// ---------------------------------------------------------------------------------------------
// Parked changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_change_postgres_refuses_for_good_is_parked_and_retry_applies_it_once_fixed() {
    // JSONB cannot hold U+0000: PostgreSQL refuses such a document for good (SQLSTATE 22P05).
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    let good = id_of(&api.create_user(user_body("park-good-1", 1)).await);
    let bad_resp = api
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "park-bad", "title": "nul\u{0}inside"}),
        )
        .await;
    if bad_resp.status != 201 {
        eprintln!(
            "NOTICE: scimd refuses U+0000 in attribute values ({}); nothing to park",
            bad_resp.status
        );
        sql.cleanup().await;
        return;
    }
    let bad = id_of(&bad_resp.json());
    let good2 = id_of(&api.create_user(user_body("park-good-2", 2)).await);
    caught_up(&s, &["sql"], CONVERGE).await;
    let st = status(&s).await;
    assert_eq!(
        st["subscribers"]["sql"]["parked"].as_u64(),
        Some(1),
        "one change parked: {st:#}"
    );
    let users = sql.users().await;
    assert!(
        users.contains_key(&good) && users.contains_key(&good2),
        "the others were applied"
    );
    assert!(!users.contains_key(&bad), "the refused one was not");

    // Retrying while the document is still refused keeps it parked.
    s.cli(&["projection", "retry", "sql"]).await.success();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status(&s).await["subscribers"]["sql"]["parked"].as_u64(),
        Some(1)
    );

    // Fixed by a replace: retry applies the current state and unparks it.
    api.put(
        &format!("/Users/{bad}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "park-bad", "title": "fixed"}),
    )
    .await
    .expect(200);
    caught_up(&s, &["sql"], CONVERGE).await;
    s.cli(&["projection", "retry", "sql"]).await.success();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let st = status(&s).await;
        if st["subscribers"]["sql"]["parked"].as_u64() == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retry did not unpark the fixed change: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn retrying_parked_changes_never_moves_the_sql_position_backwards() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let mut s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    api.create_user(user_body("behind-good", 1)).await;
    let bad = api
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "behind-bad", "title": "nul\u{0}inside"}),
        )
        .await;
    if bad.status != 201 {
        eprintln!(
            "NOTICE: scimd refuses U+0000 ({}); nothing to park",
            bad.status
        );
        sql.cleanup().await;
        return;
    }
    let bad = id_of(&bad.json());
    caught_up(&s, &["sql"], CONVERGE).await;
    // Fixed by a replace, which the runner applies; the parked entry stays until a retry.
    api.put(
        &format!("/Users/{bad}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "behind-bad", "title": "fixed"}),
    )
    .await
    .expect(200);
    let st = caught_up(&s, &["sql"], CONVERGE).await;
    assert_eq!(
        st["subscribers"]["sql"]["parked"].as_u64(),
        Some(1),
        "{st:#}"
    );
    s.stop().await;
    // As after a crash between the SQL commit and the store's checkpoint: the database holds a
    // later position than the store's checkpoint of it.
    let name = format!("sql:{},{}", sql.users, sql.groups);
    let Pool::Postgres(pool) = &sql.pool else {
        unreachable!("a PostgreSQL pool");
    };
    let ahead = sql_position(pool, &name).await + 5;
    sql.execute(format!(
        "UPDATE scimd_checkpoint SET position = {ahead} WHERE name = '{name}'"
    ))
    .await;
    // With the server stopped, the retry runs here and applies the fixed user.
    s.cli(&["projection", "retry", "sql"]).await.success();
    assert!(sql.users().await.contains_key(&bad));
    assert_eq!(
        sql_position(pool, &name).await,
        ahead,
        "projection retry moved the SQL position back to the store's checkpoint"
    );
    sql.cleanup().await;
}

/// The position the sql projection recorded in `scimd_checkpoint` row `name`.
async fn sql_position(pool: &sqlx::PgPool, name: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT position FROM scimd_checkpoint WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("the checkpoint row")
}
