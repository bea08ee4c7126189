//! Projections and PATCH (issue 7), from outside: PATCHes of users and groups and a Bulk request
//! reach the file, SQLite, PostgreSQL and MariaDB projections as `GET` returns the resources, and a
//! burst of single-member PATCHes of one group converges with the group written once per batch.
//!
//! The databases, their sharing and the environment: [`common::projections`].

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::projections::*;
use common::*;
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

// ---------------------------------------------------------------------------------------------
// PATCH (issue 7): reaches every projection like any other write, coalesced per batch
// ---------------------------------------------------------------------------------------------

/// PATCHes of Users (sub-attribute, multi-valued add and filtered remove, Okta's path-less
/// `active`, a password, a rename of a group member) and of Groups (member adds and removes by
/// value filter, Entra's removal by value, a rename with a member, a replace of the whole list, a
/// nested group, a removal by `type`). Returns the ids of (team, org).
async fn patch_workload(api: &Api, tag: &str) -> (String, String) {
    let mut u = Vec::new();
    for i in 0..6 {
        u.push(id_of(
            &api.create_user(user_body(&format!("{tag}-p-{i}"), i)).await,
        ));
    }
    let team = id_of(
        &api.create_group(group_body(
            &format!("{tag}-team"),
            &[(&u[0], "User"), (&u[1], "User")],
        ))
        .await,
    );
    let org = id_of(
        &api.create_group(group_body(
            &format!("{tag}-org"),
            &[(&team, "Group"), (&u[2], "User")],
        ))
        .await,
    );
    let empty = id_of(
        &api.create_group(group_body(&format!("{tag}-empty"), &[]))
            .await,
    );
    let patch_user = |i: usize, ops: Value| {
        let path = format!("/Users/{}", u[i]);
        async move { api.patch(&path, &patch_ops(ops)).await.expect(200) }
    };
    patch_user(
        0,
        json!([{"op": "replace", "path": "name.givenName", "value": "Patched"}]),
    )
    .await;
    patch_user(
        1,
        json!([{"op": "add", "path": "emails", "value": [{"value": format!("{tag}-1@home.example.org"), "type": "home"}]}]),
    )
    .await;
    patch_user(2, json!([{"op": "replace", "value": {"active": false}}])).await;
    patch_user(
        3,
        json!([
            {"op": "replace", "path": "password", "value": format!("{PASSWORD}-patched")},
            {"op": "add", "path": "title", "value": "Patched title"},
        ]),
    )
    .await;
    patch_user(
        4,
        json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
    )
    .await;
    // A member's new display name shows in the groups it belongs to.
    patch_user(
        0,
        json!([{"op": "replace", "path": "displayName", "value": format!("{tag} renamed by PATCH")}]),
    )
    .await;
    patch_user(5, json!([{"op": "remove", "path": "name.familyName"}])).await;

    let patch_group = |id: &String, ops: Value| {
        let path = format!("/Groups/{id}");
        async move { api.patch(&path, &patch_ops(ops)).await.expect(204) }
    };
    patch_group(
        &team,
        json!([{"op": "add", "path": "members", "value": [{"value": u[2]}, {"value": u[3]}]}]),
    )
    .await;
    patch_group(
        &team,
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", u[1])}]),
    )
    .await;
    patch_group(
        &team,
        json!([{"op": "Remove", "path": "members", "value": [{"value": u[2]}]}]),
    )
    .await;
    patch_group(
        &org,
        json!([
            {"op": "replace", "path": "displayName", "value": format!("{tag}-org-renamed")},
            {"op": "add", "path": "members", "value": [{"value": u[4]}]},
        ]),
    )
    .await;
    patch_group(
        &empty,
        json!([{"op": "add", "path": "members", "value": [{"value": team}, {"value": u[5]}]}]),
    )
    .await;
    patch_group(
        &org,
        json!([{"op": "replace", "path": "members", "value": [{"value": team}, {"value": u[5]}]}]),
    )
    .await;
    patch_group(
        &empty,
        json!([{"op": "remove", "path": "members[type eq \"User\"]"}]),
    )
    .await;
    // The user deleted last leaves team through a server-made patch.
    api.delete(&format!("/Users/{}", u[3])).await.expect(204);
    (team, org)
}

/// What GET shows for `team` and `org` after [`patch_workload`], so that a workload that silently
/// did less than intended cannot pass.
async fn assert_patch_workload_state(api: &Api, tag: &str, team: &str, org: &str) {
    let team = api.group(team).await;
    assert_eq!(member_ids(&team).len(), 1, "{team}");
    assert_eq!(
        team["members"][0]["display"],
        json!(format!("{tag} renamed by PATCH")),
        "{team}"
    );
    let org = api.group(org).await;
    assert_eq!(
        org["displayName"],
        json!(format!("{tag}-org-renamed")),
        "{org}"
    );
    assert_eq!(member_ids(&org).len(), 2, "{org}");
}

#[tokio::test]
async fn patches_reach_the_file_and_sqlite_projections_as_get_returns_them() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    let api = s.client();
    let (team, org) = patch_workload(&api, "patch-sqlite").await;
    assert_patch_workload_state(&api, "patch-sqlite", &team, &org).await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

#[tokio::test]
async fn patches_reach_the_postgres_projection_as_get_returns_them() {
    let Some(sql) = Sql::postgres(as_is).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    let (team, org) = patch_workload(&api, "patch-postgres").await;
    assert_patch_workload_state(&api, "patch-postgres", &team, &org).await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "postgres").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn patches_reach_the_mariadb_projection_as_get_returns_them() {
    let Some(sql) = Sql::mysql(mariadb_scheme).await else {
        return;
    };
    let s = Scimd::start(sql.opts(public(Opts::default())).env("PROJECTIONS", "sql")).await;
    let api = s.client();
    let (team, org) = patch_workload(&api, "patch-mariadb").await;
    assert_patch_workload_state(&api, "patch-mariadb", &team, &org).await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql, "mariadb").await;
    sql.cleanup().await;
}

#[tokio::test]
async fn a_bulk_request_reaches_the_file_and_sqlite_projections_as_get_returns_it() {
    let sql = Sql::sqlite().await;
    let s = Scimd::start(
        sql.opts(public(Opts::default()))
            .env("PROJECTIONS", "file,sql"),
    )
    .await;
    let api = s.client();
    let mut operations: Vec<Value> = (0..50)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                   "data": {"userName": format!("bulk-proj-{i}"), "displayName": format!("Bulk {i}")}})
        })
        .collect();
    let members: Vec<Value> = (0..50)
        .map(|i| json!({"value": format!("bulkId:u{i}")}))
        .collect();
    operations.insert(
        0,
        json!({"method": "POST", "path": "/Groups", "bulkId": "g",
               "data": {"displayName": "Bulk Projected", "members": members}}),
    );
    operations.push(
        json!({"method": "PATCH", "path": "/Users/bulkId:u1", "data": {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed In Bulk"}]}}),
    );
    operations.push(json!({"method": "DELETE", "path": "/Users/bulkId:u2"}));
    let answer = api
        .post(
            "/Bulk",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                    "Operations": operations}),
        )
        .await
        .expect(200)
        .json();
    let failed: Vec<&Value> = answer["Operations"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter(|o| {
                    !["200", "201", "204"].contains(&o["status"].as_str().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(failed.is_empty(), "{answer}");
    let groups = api.list_all("/Groups").await;
    assert_eq!(
        groups[0]["members"].as_array().map(Vec::len),
        Some(49),
        "{groups:?}"
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
}

/// Counts the documents the file projection renames into a directory (each write of a document is
/// one rename of a temporary file onto it), with inotify. inotify merges an event into the previous
/// one when they are alike (mask, watch, name; not the cookie) and the previous one is unread, so
/// consecutive renames onto the same name would count once: the watch also takes the
/// `IN_MOVED_FROM` of each (uniquely named) temporary file, which separates them.
struct RenameWatch {
    fd: i32,
    dir: std::path::PathBuf,
    counts: BTreeMap<String, usize>,
}

impl RenameWatch {
    fn new(dir: &Path) -> RenameWatch {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscalls; the path is a NUL-terminated copy that outlives the call.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let wd = unsafe {
            libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MOVED_FROM | libc::IN_MOVED_TO)
        };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        RenameWatch {
            fd,
            dir: dir.to_path_buf(),
            counts: BTreeMap::new(),
        }
    }

    /// How many times `name` was written since the watch began.
    fn writes(&mut self, name: &str) -> usize {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reads into a buffer of the length given.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "read inotify: {e}"
                );
                break;
            }
            let mut at = 0;
            let n = n as usize;
            while at + 16 <= n {
                let word =
                    |k: usize| u32::from_ne_bytes(buf[at + k..at + k + 4].try_into().unwrap());
                let (mask, len) = (word(4), word(12) as usize);
                assert_eq!(
                    mask & libc::IN_Q_OVERFLOW,
                    0,
                    "inotify queue overflow on {}: writes were not counted",
                    self.dir.display()
                );
                if mask & libc::IN_MOVED_TO != 0 {
                    let raw = &buf[at + 16..at + 16 + len];
                    let file =
                        String::from_utf8_lossy(raw.split(|b| *b == 0).next().unwrap_or(&[]));
                    *self.counts.entry(file.into_owned()).or_default() += 1;
                }
                at += 16 + len;
            }
        }
        self.counts.get(name).copied().unwrap_or(0)
    }
}

impl Drop for RenameWatch {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this watch owns.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// Counts the rows the SQLite projection inserts or updates for `id` in `table`, with triggers.
async fn count_sqlite_writes(sql: &Sql, table: &str, id: &str) -> String {
    let counter = format!("w_{}", random_suffix());
    sql.execute(format!(
        "CREATE TABLE \"{counter}\" (n INTEGER NOT NULL);
         INSERT INTO \"{counter}\" VALUES (0);
         CREATE TRIGGER \"{counter}_i\" AFTER INSERT ON \"{table}\" WHEN NEW.id = '{id}'
           BEGIN UPDATE \"{counter}\" SET n = n + 1; END;
         CREATE TRIGGER \"{counter}_u\" AFTER UPDATE ON \"{table}\" WHEN NEW.id = '{id}'
           BEGIN UPDATE \"{counter}\" SET n = n + 1; END;"
    ))
    .await;
    counter
}

async fn sqlite_writes(sql: &Sql, counter: &str) -> i64 {
    let Pool::Sqlite(pool) = &sql.pool else {
        unreachable!("SQLite only")
    };
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT n FROM \"{counter}\"")))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("read {counter}: {e}"))
}

/// One single-member PATCH per user of `ids` on the group `gid`, 16 at a time.
async fn single_member_patches(api: &Api, gid: &str, op: &str, ids: &[String]) {
    let path = format!("/Groups/{gid}");
    let statuses: Vec<u16> = stream::iter(ids.to_vec())
        .map(|id| {
            let api = api.clone();
            let path = path.clone();
            let ops = match op {
                "add" => json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
                _ => json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
            };
            async move { api.patch(&path, &patch_ops(ops)).await.status }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 204),
        "every {op} PATCH must answer 204: {:?}",
        statuses.iter().filter(|s| **s != 204).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_burst_of_single_member_patches_converges_and_each_batch_writes_the_group_once() {
    const BURST: usize = 1000;
    const LIVE_ADDS: usize = 200;
    const LIVE_REMOVES: usize = 100;
    let sql = Sql::sqlite().await;
    let opts = sql
        .opts(public(Opts::default()))
        .env("PROJECTIONS", "file,sql");
    let mut s = Scimd::start(opts.clone()).await;
    let api = s.client();
    let users = create_users(&api, "burst", BURST + LIVE_ADDS).await;
    let gid = id_of(&api.create_group(group_body("burst", &[])).await);
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    let mut files = RenameWatch::new(&s.data_path().join("Groups"));
    let counter = count_sqlite_writes(&sql, &sql.groups, &gid).await;

    // A backlog: BURST single-member adds written while no projection runs. Both projections then
    // catch up in batches of up to 1,000 events, each batch writing the group once.
    s.opts = opts.clone().env("PROJECTIONS", "none");
    s.restart().await;
    let api = s.client();
    single_member_patches(&api, &gid, "add", &users[..BURST]).await;
    assert_eq!(member_ids(&api.group(&gid).await), sorted(&users[..BURST]));
    assert_eq!(
        (files.writes(&gid), sqlite_writes(&sql, &counter).await),
        (0, 0),
        "nothing projected while PROJECTIONS=none"
    );
    s.opts = opts.clone();
    s.restart().await;
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    let (file_writes, sql_writes) = (files.writes(&gid), sqlite_writes(&sql, &counter).await);
    eprintln!(
        "backlog of {BURST} member PATCHes: group file written {file_writes}x, row {sql_writes}x"
    );
    assert!(
        (1..=2).contains(&file_writes) && (1..=2).contains(&sql_writes),
        "{BURST} PATCH events of one group in at most two batches must write its document once \
         per batch: the file was written {file_writes} times, the row {sql_writes} times"
    );

    // Live: more adds and some removes while both projections run. However the events fall into
    // batches, the projections converge and never write the group more than once per event.
    let api = s.client();
    let (adds, removes) = (&users[BURST..], &users[..LIVE_REMOVES]);
    tokio::join!(
        single_member_patches(&api, &gid, "add", adds),
        single_member_patches(&api, &gid, "remove", removes),
    );
    assert_eq!(
        member_ids(&api.group(&gid).await),
        sorted(&users[LIVE_REMOVES..]),
    );
    caught_up(&s, &["file", "sql"], CONVERGE).await;
    assert_files_match(&s, &s.data_path()).await;
    assert_sql_matches(&s, &sql, "sqlite").await;
    let live_file = files.writes(&gid) - file_writes;
    let live_sql = (sqlite_writes(&sql, &counter).await - sql_writes) as usize;
    eprintln!(
        "{} live member PATCHes: group file written {live_file}x, row {live_sql}x",
        LIVE_ADDS + LIVE_REMOVES
    );
    assert!(
        (1..=LIVE_ADDS + LIVE_REMOVES).contains(&live_file)
            && (1..=LIVE_ADDS + LIVE_REMOVES).contains(&live_sql),
        "file written {live_file} times, row {live_sql} times for {} events",
        LIVE_ADDS + LIVE_REMOVES
    );
}
