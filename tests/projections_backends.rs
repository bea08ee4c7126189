//! Projections (issue 4), from outside, what they hold: a real `scimd serve` materialising Users and
//! Groups into flat files and into real SQLite, PostgreSQL and MariaDB databases, each holding
//! exactly the resources `GET` returns (compared document by document, read back with sqlx or from
//! the file system), side by side and through a member's rename; applications finding users with
//! their database's JSON functions; and which projections run for `PROJECTIONS` / `DATABASE_URL`.
//!
//! The file test runs without `PUBLIC_URL` and checks the relative locations projections fall back
//! to. The databases, their sharing and the environment: [`common::projections`].

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::projections::*;
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Each backend holds exactly what GET returns
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_file_projection_holds_exactly_the_resources_get_returns_with_relative_locations() {
    // No PUBLIC_URL: the documents carry relative meta.location and $ref.
    let s = Scimd::start(Opts::default().env("PROJECTIONS", "file")).await;
    mixed_workload(&s.client(), "file").await;
    let st = caught_up(&s, &["file"], CONVERGE).await;
    assert!(
        st["subscribers"].get("sql").is_none(),
        "only the file projection was asked for: {st}"
    );
    assert_files_match(&s, &s.data_path()).await;

    let users = file_docs(&s.data_path(), "Users");
    let (id, doc) = users.iter().next().expect("some user file");
    assert_eq!(
        doc["meta"]["location"],
        json!(format!("/Users/{id}")),
        "{doc}"
    );
    let groups = file_docs(&s.data_path(), "Groups");
    let with_members = groups
        .values()
        .find(|g| g["members"].as_array().is_some_and(|m| !m.is_empty()))
        .expect("a group with members");
    for m in with_members["members"].as_array().unwrap() {
        let want = format!(
            "/{}s/{}",
            m["type"].as_str().unwrap(),
            m["value"].as_str().unwrap()
        );
        assert_eq!(m["$ref"], json!(want), "{with_members}");
    }
}

#[tokio::test]
async fn the_file_projection_writes_under_files_path_when_it_is_set() {
    let files = tempfile::Builder::new()
        .prefix("scimd-files-")
        .tempdir()
        .unwrap();
    let s = Scimd::start(
        public(Opts::default())
            .env("PROJECTIONS", "file")
            .env("FILES_PATH", files.path().to_str().unwrap()),
    )
    .await;
    mixed_workload(&s.client(), "files-path").await;
    caught_up(&s, &["file"], CONVERGE).await;
    assert_files_match(&s, files.path()).await;
    assert!(
        file_docs(&s.data_path(), "Users").is_empty()
            && file_docs(&s.data_path(), "Groups").is_empty(),
        "with FILES_PATH set nothing is projected under DATA_PATH"
    );
}

#[tokio::test]
async fn the_sqlite_projection_holds_exactly_the_resources_get_returns() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "sqlite").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    assert!(
        file_docs(&s.data_path(), "Users").is_empty(),
        "PROJECTIONS=sql writes no files"
    );
}

#[tokio::test]
async fn the_postgres_projection_holds_exactly_the_resources_get_returns() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "postgres").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn the_mariadb_projection_holds_exactly_the_resources_get_returns() {
    let Some(sql) = Sql::mysql(mariadb_scheme).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    mixed_workload(&s.client(), "mariadb").await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "mariadb").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn file_and_sql_projections_run_side_by_side_and_both_converge() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    mixed_workload(&s.client(), "both").await;
    // Some more traffic, so that both work through several batches.
    create_users(&s.client(), "both", 300).await;
    let st = caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_eq!(
        st["subscribers"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k == "file" || *k == "sql")
            .count(),
        2,
        "{st}"
    );
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

#[tokio::test]
async fn renaming_a_member_updates_the_groups_it_belongs_to_in_every_projection() {
    // A group's members carry the member's display name (GET /Groups shows the current one), so a
    // renamed User or Group changes the documents of the groups it belongs to.
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    let api = s.client();
    // alice is in team1; bob in team2; team2 is in org. alice (a User) and team2 (a Group) are
    // renamed: team1 and org must show the new display names.
    let alice = id_of(&api.create_user(user_body("rename-alice", 1)).await);
    let bob = id_of(&api.create_user(user_body("rename-bob", 2)).await);
    let team1 = id_of(
        &api.create_group(group_body("rename-team1", &[(&alice, "User")]))
            .await,
    );
    let team2 = id_of(
        &api.create_group(group_body("rename-team2", &[(&bob, "User")]))
            .await,
    );
    let _org = id_of(
        &api.create_group(group_body("rename-org", &[(&team2, "Group")]))
            .await,
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;

    let mut renamed = user_body("rename-alice", 1);
    renamed["displayName"] = json!("Alice Renamed");
    api.put(&format!("/Users/{alice}"), &renamed)
        .await
        .expect(200);
    api.put(
        &format!("/Groups/{team2}"),
        &group_body("rename-team2-renamed", &[(&bob, "User")]),
    )
    .await
    .expect(200);
    let group = api.group(&team1).await;
    assert!(
        group["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["display"] == "Alice Renamed"),
        "GET shows the member's new display name: {group}"
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

// ---------------------------------------------------------------------------------------------
// Applications query the documents with their database's JSON functions
// ---------------------------------------------------------------------------------------------

/// Creates two users, waits, and finds each by userName (and its email by a nested path) with the
/// JSON functions of the database.
async fn json_queries_find_users(sql: &Sql, backend: &str) {
    // PROJECTIONS unset: DATABASE_URL alone selects sql.
    let s = Scimd::start(sql.opts(public(Opts::default())).unset("PROJECTIONS")).await;
    let api = s.client();
    let tag = random_suffix();
    let alice = id_of(&api.create_user(user_body(&format!("alice-{tag}"), 1)).await);
    let bob = id_of(&api.create_user(user_body(&format!("bob-{tag}"), 2)).await);
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_eq!(
        sql.find_user(&sql.users, &format!("alice-{tag}")).await,
        vec![alice.clone()],
        "{backend}: the JSON query on userName finds alice"
    );
    assert_eq!(
        sql.find_user(&sql.users, &format!("bob-{tag}")).await,
        vec![bob.clone()]
    );
    assert!(sql.find_user(&sql.users, "nobody").await.is_empty());
    assert_eq!(
        sql.email_of(&sql.users, &alice).await.as_deref(),
        Some(format!("alice-{tag}@example.org").as_str()),
        "{backend}: a nested JSON path reads the email"
    );
    // A rename is found under the new name only.
    api.put(
        &format!("/Users/{bob}"),
        &user_body(&format!("robert-{tag}"), 2),
    )
    .await
    .expect(200);
    caught_up(&s, &["sql"], CONVERGE).await;
    assert!(
        sql.find_user(&sql.users, &format!("bob-{tag}"))
            .await
            .is_empty()
    );
    assert_eq!(
        sql.find_user(&sql.users, &format!("robert-{tag}")).await,
        vec![bob]
    );
}

#[tokio::test]
async fn applications_find_users_with_json_extract_on_sqlite() {
    let sql = Sql::sqlite().await;
    json_queries_find_users(&sql, "sqlite").await;
}

#[tokio::test]
async fn applications_find_users_with_json_extract_on_mariadb_reached_through_a_sqlalchemy_url() {
    let Some(sql) = Sql::mysql(sqlalchemy_mysql).await else {
        return;
    };
    json_queries_find_users(&sql, "mariadb").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn applications_find_users_with_jsonb_operators_on_postgres_reached_through_a_sqlalchemy_url()
{
    let Some(sql) = Sql::postgres(sqlalchemy_postgres).await else {
        return;
    };
    json_queries_find_users(&sql, "postgres").await;
    let Pool::Postgres(pool) = &sql.pool else {
        unreachable!()
    };
    let data_type: String = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = 'details'",
    )
    .bind(&sql.users)
    .fetch_one(pool)
    .await
    .expect("column type of details");
    assert_eq!(data_type, "jsonb", "details is JSONB on PostgreSQL");
    sql.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Which projections run
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_projections_or_database_url_the_file_projection_runs_under_data_path() {
    let s = Scimd::start(
        public(Opts::default())
            .unset("PROJECTIONS")
            .unset("DATABASE_URL"),
    )
    .await;
    let user = s.client().create_user_named("default-file").await;
    let st = caught_up(&s, &["file"], CONVERGE).await;
    let names: BTreeSet<&String> = st["subscribers"].as_object().unwrap().keys().collect();
    assert!(
        !names.iter().any(|n| *n == "sql"),
        "no sql projection without DATABASE_URL: {st}"
    );
    let path = s.data_path().join("Users").join(id_of(&user));
    assert!(path.is_file(), "{} was not written", path.display());
    assert_files_match(&s, &s.data_path()).await;
}

#[tokio::test]
async fn with_only_database_url_the_sql_projection_runs_instead_of_the_files() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(sql.opts(public(Opts::default())).unset("PROJECTIONS")).await;
    let user = s.client().create_user_named("default-sql").await;
    let st = caught_up(&s, &["sql"], CONVERGE).await;
    assert!(
        st["subscribers"].get("file").is_none(),
        "DATABASE_URL selects sql only: {st}"
    );
    assert!(sql.users().await.contains_key(&id_of(&user)));
    assert!(
        file_docs(&s.data_path(), "Users").is_empty(),
        "no files with DATABASE_URL set"
    );
}

#[tokio::test]
async fn projections_none_turns_every_projection_off() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "none")).await;
    s.client().create_user_named("no-projection").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = status(&s).await;
    assert!(
        st["subscribers"].get("file").is_none() && st["subscribers"].get("sql").is_none(),
        "{st}"
    );
    assert!(file_docs(&s.data_path(), "Users").is_empty());
}
