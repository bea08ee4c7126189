//! Moving in from the earlier server (issue 17), from outside: each earlier layout is built with
//! its own client (files; SQLite, PostgreSQL and MariaDB rows; MongoDB documents; LDAP entries),
//! `scimd import` moves it in, `GET` must show the source, a second import must change nothing,
//! and a projection then started on the same backend must adopt the rows: none lost, none twice.
//! Also: refusals and dangling members in the report, strict and lenient schemas, the store held
//! by a running server, and `replay --fresh` on a backend holding rows the log does not.
//!
//! Services come from `scripts/test`; a test whose service is not configured prints a notice and
//! passes, except with `CI=true`, where it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use common::projections::{
    Sql, as_is, assert_holds, caught_up, file_docs, projected_form, service_var,
};
use common::*;
use futures::TryStreamExt;
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(90);
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// A member the earlier server kept after the user was gone.
const GONE: &str = "deleted-long-ago";

// ---------------------------------------------------------------------------------------------
// The earlier server's data
// ---------------------------------------------------------------------------------------------

fn earlier_users() -> Vec<Value> {
    vec![
        json!({
            "schemas": [USER_SCHEMA],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "bjensen-ext",
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
            "active": true,
            "meta": {
                "resourceType": "User",
                "created": "2020-01-23T04:56:22.000Z",
                "lastModified": "2021-05-13T04:42:34.000Z",
                "location": "https://old.example.com/Users/2819c223-7f76-453a-919d-413861904646"
            }
        }),
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "id": "c75ad752-64ae-4823-840d-ffa80929976c",
            "userName": "jsmith",
            "displayName": "Jim Smith",
            ENTERPRISE: {"employeeNumber": "701984"}
        }),
        json!({
            "schemas": [USER_SCHEMA],
            "id": "u-3-alice",
            "userName": "alice",
            "title": "Engineer"
        }),
    ]
}

/// `Everyone` (listed first) holds `Tour Guides`, a user and a member that points nowhere.
fn earlier_groups() -> Vec<Value> {
    vec![
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": "fc348aa8-3835-40eb-a20b-c726e15c55b5",
            "displayName": "Everyone",
            "members": [
                {"value": "e9e30dba-f08f-4109-8486-d5c6a331660a", "type": "Group"},
                {"value": "u-3-alice", "type": "User"},
                {"value": GONE, "type": "User"}
            ]
        }),
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "members": [
                {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen",
                 "$ref": "https://old.example.com/Users/2819c223-7f76-453a-919d-413861904646"},
                {"value": "c75ad752-64ae-4823-840d-ffa80929976c", "type": "User"}
            ],
            "meta": {"resourceType": "Group", "created": "2019-03-01T10:00:00.000Z"}
        }),
    ]
}

/// The id of a resource (the earlier server's ids need not be UUIDs).
fn sid(doc: &Value) -> String {
    doc["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {doc}"))
        .to_owned()
}

fn ids(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(sid).collect()
}

/// `GET` shows every source resource with its id, attributes and `meta.created`, and each group
/// its members but the one that points nowhere; nothing else exists.
async fn assert_moved_in(s: &Scimd) {
    let api = s.client();
    for source in earlier_users().iter().chain(&earlier_groups()) {
        let id = sid(source);
        let endpoint = if source.get("members").is_some() {
            "Groups"
        } else {
            "Users"
        };
        let got = api
            .get(&format!("/{endpoint}/{id}"))
            .await
            .expect(200)
            .json();
        for (key, want) in source.as_object().into_iter().flatten() {
            match key.as_str() {
                "id" | "schemas" => {}
                "meta" => {
                    if let Some(created) = want.get("created") {
                        assert_eq!(&got["meta"]["created"], created, "{endpoint}/{id}: {got}");
                    }
                }
                "members" => {
                    let want: BTreeSet<&str> = want
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m["value"].as_str())
                        .filter(|v| *v != GONE)
                        .collect();
                    let held: BTreeSet<&str> = got["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m["value"].as_str())
                        .collect();
                    assert_eq!(held, want, "members of {id}: {got}");
                }
                _ => assert_eq!(&got[key], want, "{key} of {endpoint}/{id}: {got}"),
            }
        }
    }
    let users = ids(&api.list_all("/Users").await);
    let groups = ids(&api.list_all("/Groups").await);
    assert_eq!(users, ids(&earlier_users()));
    assert_eq!(groups, ids(&earlier_groups()));
}

/// Every User and Group as `GET /Users/{id}` / `GET /Groups/{id}` return them, in the form a
/// projection holds them: (users, groups). (The harness's `api_state` insists on UUID ids; the
/// earlier server's need not be.)
async fn api_docs(s: &Scimd) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
    let api = s.client();
    let mut out = Vec::new();
    for endpoint in ["Users", "Groups"] {
        let mut docs = BTreeMap::new();
        for id in ids(&api.list_all(&format!("/{endpoint}")).await) {
            let doc = api
                .get(&format!("/{endpoint}/{id}"))
                .await
                .expect(200)
                .json();
            docs.insert(id, projected_form(s, &doc));
        }
        out.push(docs);
    }
    let groups = out.pop().expect("groups");
    (out.pop().expect("users"), groups)
}

/// The file projection under `root` holds exactly what `GET` returns.
async fn assert_files_match(s: &Scimd, root: &Path) {
    let (users, groups) = api_docs(s).await;
    assert_holds("file", "Users", &file_docs(root, "Users"), &users);
    assert_holds("file", "Groups", &file_docs(root, "Groups"), &groups);
}

/// The sql projection's tables hold exactly what `GET` returns.
async fn assert_sql_matches(s: &Scimd, sql: &Sql) {
    let (users, groups) = api_docs(s).await;
    assert_holds("sql", "Users", &sql.users().await, &users);
    assert_holds("sql", "Groups", &sql.groups().await, &groups);
}

/// The JSON report of the last import.
fn report(s: &Scimd) -> Value {
    let path = s.data_path().join("import-report.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}\n{}", path.display(), s.log_tail()));
    serde_json::from_str(&text).expect("report is JSON")
}

/// Imports from `from` twice (the server stopped): the first moves everything in, the second
/// changes nothing (no new event). Leaves the server running.
async fn import_twice(s: &mut Scimd, from: &str) {
    s.stop().await;
    let out = s.cli(&["import", "--from", from]).await;
    assert!(out.status.success(), "{out:?}");
    let r = report(s);
    assert_eq!(r["Users"]["imported"], 3, "{r:#}");
    assert_eq!(r["Groups"]["imported"], 2, "{r:#}");
    assert_eq!(r["refused"], json!([]), "{r:#}");
    assert_eq!(
        r["danglingMembers"],
        json!([{"group": "fc348aa8-3835-40eb-a20b-c726e15c55b5", "members": [GONE]}]),
        "{r:#}"
    );
    assert!(
        out.stderr.contains(GONE),
        "the summary names the dangling member: {out:?}"
    );
    let events = s.cli(&["log", "tail"]).await.success().json_lines();
    assert!(events.iter().all(|e| e["kind"] == "import"), "{events:?}");
    assert_eq!(
        events.len(),
        5,
        "one event per resource, none twice: {events:?}"
    );
    // The read model (uniqueness and query indexes, membership, counts) is a fold of the log.
    s.cli(&["log", "verify"]).await.success();

    s.start_again().await;
    assert_moved_in(s).await;
    s.stop().await;

    let out = s.cli(&["import", "--from", from]).await;
    assert!(out.status.success(), "{out:?}");
    let r = report(s);
    assert_eq!(
        r["Users"],
        json!({"imported": 0, "unchanged": 3, "refused": 0}),
        "{r:#}"
    );
    assert_eq!(
        r["Groups"],
        json!({"imported": 0, "unchanged": 2, "refused": 0}),
        "{r:#}"
    );
    let again = s.cli(&["log", "tail"]).await.success().json_lines();
    assert_eq!(again.len(), 5, "a second import wrote events: {again:?}");
    s.start_again().await;
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn write_files(root: &Path) {
    for (dir, docs) in [("Users", earlier_users()), ("Groups", earlier_groups())] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        for doc in docs {
            let text = serde_json::to_string_pretty(&doc).expect("json");
            std::fs::write(root.join(dir).join(sid(&doc)), text).expect("write");
        }
    }
}

#[tokio::test]
async fn the_file_layout_moves_in_and_the_file_projection_adopts_it() {
    let earlier = tempfile::tempdir().expect("tempdir");
    write_files(earlier.path());
    let root = earlier.path().display().to_string();
    let mut s = Scimd::start(Opts::default().env("FILES_PATH", &root)).await;

    // Before the import, the files are rows the log cannot rebuild: --fresh asks for --yes.
    s.stop().await;
    let out = s.cli(&["replay", "--projection", "file", "--fresh"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(
        std::fs::read_dir(earlier.path().join("Users"))
            .expect("dir")
            .count(),
        3
    );
    s.start_again().await;

    import_twice(&mut s, &format!("file:{root}")).await;

    // The file projection on the same directory rewrites each file in place: none lost, none extra.
    s.stop().await;
    s.opts.env.push(("PROJECTIONS".into(), "file".into()));
    s.start_again().await;
    caught_up(&s, &["file"], CONVERGE).await;
    assert_files_match(&s, earlier.path()).await;
    assert_moved_in(&s).await;

    // Every file is now the log's: --fresh needs no --yes.
    s.stop().await;
    let out = s.cli(&["replay", "--projection", "file", "--fresh"]).await;
    assert!(out.status.success(), "{out:?}");
    s.start_again().await;
    assert_files_match(&s, earlier.path()).await;
}

#[tokio::test]
async fn refusals_are_reported_with_their_reasons_and_the_rest_moves_in() {
    let earlier = tempfile::tempdir().expect("tempdir");
    let users = earlier.path().join("Users");
    std::fs::create_dir_all(&users).expect("mkdir");
    let write = |id: &str, doc: Value| {
        std::fs::write(
            users.join(id),
            serde_json::to_string_pretty(&doc).expect("json"),
        )
        .expect("write")
    };
    write("ok", json!({"userName": "carol", "displayName": "Carol"}));
    write("shoe", json!({"userName": "dave", "shoeSize": 44}));
    write(
        "other-id",
        json!({"id": "not-the-file-name", "userName": "erin"}),
    );
    std::fs::write(users.join("broken"), "{ this is not JSON").expect("write");
    let from = format!("file:{}", earlier.path().display());
    let mut s = Scimd::start_default().await;

    // The store is held by the server: a clear refusal; a dry run reads beside it.
    let out = s.cli(&["import", "--from", &from]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("stop it"), "{out:?}");
    let out = s.cli(&["import", "--from", &from, "--dry-run"]).await;
    assert!(out.stderr.contains("dry run"), "{out:?}");
    let r = report(&s);
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["Users"]["toImport"], 1, "{r:#}");
    assert_eq!(s.client().list("/Users").await["totalResults"], 0);

    s.stop().await;
    let out = s.cli(&["import", "--from", &from, "--dry-run"]).await;
    assert!(out.stderr.contains("dry run"), "{out:?}");
    let events = s.cli(&["log", "tail"]).await.success().json_lines();
    assert!(events.is_empty(), "a dry run wrote events: {events:?}");
    let out = s.cli(&["import", "--from", &from]).await;
    assert!(
        !out.status.success(),
        "refusals make the exit status 1: {out:?}"
    );
    let r = report(&s);
    assert_eq!(r["Users"]["imported"], 1, "{r:#}");
    assert_eq!(r["Users"]["refused"], 3, "{r:#}");
    let refused: BTreeMap<String, Value> = r["refused"]
        .as_array()
        .expect("refused")
        .iter()
        .map(|e| {
            let key = e["id"].as_str().or(e["location"].as_str()).unwrap_or("?");
            (key.rsplit('/').next().unwrap_or(key).to_owned(), e.clone())
        })
        .collect();
    assert_eq!(refused["shoe"]["scimType"], "invalidValue", "{r:#}");
    assert!(
        refused["shoe"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("shoeSize")
    );
    assert!(
        refused["broken"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("JSON"),
        "{r:#}"
    );
    assert!(
        refused["other-id"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not-the-file-name"),
        "{r:#}"
    );

    // Lenient schemas keep the unknown attribute; what was imported stays unchanged.
    s.opts.env.push(("SCHEMA_MODE".into(), "lenient".into()));
    let out = s.cli(&["import", "--from", &from]).await;
    assert!(
        !out.status.success(),
        "two files are still refused: {out:?}"
    );
    let r = report(&s);
    assert_eq!(r["Users"]["imported"], 1, "{r:#}");
    assert_eq!(r["Users"]["unchanged"], 1, "{r:#}");
    s.start_again().await;
    let dave = s.client().user("shoe").await;
    assert_eq!(dave["shoeSize"], 44, "{dave}");
    assert_eq!(s.client().user("ok").await["userName"], "carol");
}

/// Hostile source data: an id the source holds as a User and a Group, an id the store gives a
/// resource of the other type, userNames that collide within the source and with the store, and
/// members the earlier server typed wrongly. The dry run must predict the real run resource by
/// resource, each refusal must give its true reason, and a wrongly typed member is kept.
#[tokio::test]
async fn a_dry_run_predicts_the_real_run_and_each_refusal_gives_its_true_reason() {
    let mut s = Scimd::start_default().await;
    let api = s.client();
    api.create_user(json!({"schemas": [USER_SCHEMA], "userName": "held"}))
        .await;
    let gid = sid(&api
        .create_group(json!({"schemas": [GROUP_SCHEMA], "displayName": "Store group"}))
        .await);
    let gone = sid(&api
        .create_user(json!({"schemas": [USER_SCHEMA], "userName": "gone"}))
        .await);
    api.delete(&format!("/Users/{gone}")).await.expect(204);

    let earlier = tempfile::tempdir().expect("tempdir");
    let put = |dir: &str, id: &str, doc: Value| {
        let dir = earlier.path().join(dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(id), doc.to_string()).expect("write");
    };
    put("Users", "same", json!({"userName": "same-user"}));
    put("Groups", "same", json!({"displayName": "Same"}));
    put("Users", &gid, json!({"userName": "clash"}));
    put("Users", "taker", json!({"userName": "HELD"}));
    put("Users", &gone, json!({"userName": "back-again"}));
    put("Users", "dup-1", json!({"userName": "twice"}));
    put("Users", "dup-2", json!({"userName": "Twice"}));
    put(
        "Groups",
        "gx",
        json!({"displayName": "Gx", "members": [{"value": "gy", "type": "User"}]}),
    );
    put(
        "Groups",
        "gy",
        json!({"displayName": "Gy", "members": [{"value": "same", "type": "Group"}]}),
    );
    let from = format!("file:{}", earlier.path().display());

    s.stop().await;
    let outcome = |r: &Value| {
        let refused: BTreeMap<String, String> = r["refused"]
            .as_array()
            .expect("refused")
            .iter()
            .map(|e| {
                let key = format!("{} {}", e["resourceType"], e["id"]);
                (key, e["detail"].as_str().unwrap_or("").to_owned())
            })
            .collect();
        (refused, r["danglingMembers"].clone())
    };
    let out = s.cli(&["import", "--from", &from, "--dry-run"]).await;
    assert!(!out.status.success(), "{out:?}");
    let dry = report(&s);
    let out = s.cli(&["import", "--from", &from]).await;
    assert!(!out.status.success(), "{out:?}");
    let real = report(&s);
    assert_eq!(outcome(&dry), outcome(&real), "dry {dry:#}\nreal {real:#}");
    for rt in ["Users", "Groups"] {
        assert_eq!(
            dry[rt]["toImport"], real[rt]["imported"],
            "{dry:#}\n{real:#}"
        );
    }
    assert_eq!(
        real["Users"]["imported"], 2,
        "same and one of dup-*: {real:#}"
    );
    assert_eq!(real["Groups"]["imported"], 2, "{real:#}");
    let (refused, dangling) = outcome(&real);
    assert_eq!(
        dangling,
        json!([]),
        "wrongly typed members are kept: {real:#}"
    );
    assert_eq!(refused.len(), 5, "{real:#}");
    assert!(
        refused[&format!(r#""User" "{gone}""#)].contains("deleted"),
        "{real:#}"
    );
    assert!(
        refused[r#""Group" "same""#].contains("as a User too"),
        "{real:#}"
    );
    assert!(
        refused[&format!(r#""User" "{gid}""#)].contains("holds a Group"),
        "{real:#}"
    );
    assert!(
        refused[r#""User" "taker""#].contains("already used"),
        "{real:#}"
    );

    s.start_again().await;
    let members = |g: Value| -> BTreeSet<(String, String)> {
        g["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    sid(&json!({"id": m["value"]})),
                    m["type"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let api = s.client();
    assert_eq!(
        members(api.group("gx").await),
        BTreeSet::from([("gy".to_owned(), "Group".to_owned())])
    );
    assert_eq!(
        members(api.group("gy").await),
        BTreeSet::from([("same".to_owned(), "User".to_owned())])
    );
    assert_eq!(api.group(&gid).await["displayName"], "Store group");
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

/// The earlier server's tables, filled with its own client.
async fn fill_tables(sql: &Sql) {
    let details = match sql.pool {
        common::projections::Pool::Postgres(_) => "JSONB",
        common::projections::Pool::MySql(_) => "JSON",
        common::projections::Pool::Sqlite(_) => "TEXT",
    };
    for (table, docs) in [
        (&sql.users, earlier_users()),
        (&sql.groups, earlier_groups()),
    ] {
        let t = sql.quote(table);
        sql.execute(format!(
            "CREATE TABLE {t} (id VARCHAR(255) PRIMARY KEY, details {details} NOT NULL)"
        ))
        .await;
        for doc in docs {
            let text = doc.to_string().replace('\'', "''");
            sql.execute(format!(
                "INSERT INTO {t} (id, details) VALUES ('{}', '{text}')",
                sid(&doc)
            ))
            .await;
        }
    }
}

/// An earlier table with an extra column, no primary key (an id twice), and rows no backend or URL
/// could serve: `..` and a dot file are ids the file layout cannot hold (a directory, a file its
/// reader skips) and a URL cannot name; they are refused, the rest moves in.
#[tokio::test]
async fn odd_rows_of_an_earlier_table_are_refused_one_by_one() {
    let sql = Sql::sqlite().await;
    for (table, rows) in [
        (
            &sql.users,
            vec![
                ("ok", json!({"userName": "ok"}).to_string()),
                ("ok", json!({"userName": "ok-again"}).to_string()),
                ("..", json!({"userName": "dots"}).to_string()),
                (".hidden", json!({"userName": "hidden"}).to_string()),
                ("str", json!("a string").to_string()),
                ("text", "{not json".to_owned()),
            ],
        ),
        (&sql.groups, vec![]),
    ] {
        let t = sql.quote(table);
        sql.execute(format!(
            "CREATE TABLE {t} (id VARCHAR(255), details TEXT, legacy INTEGER)"
        ))
        .await;
        for (id, details) in rows {
            let details = details.replace('\'', "''");
            sql.execute(format!(
                "INSERT INTO {t} (id, details, legacy) VALUES ('{id}', '{details}', 7)"
            ))
            .await;
        }
    }
    let mut s = Scimd::start(sql.opts(Opts::default())).await;
    s.stop().await;
    let from = format!("sql:{}", sql.url);
    let out = s.cli(&["import", "--from", &from]).await;
    assert!(!out.status.success(), "{out:?}");
    let r = report(&s);
    assert_eq!(r["Users"]["imported"], 1, "{r:#}");
    assert_eq!(r["Users"]["refused"], 5, "{r:#}");
    let detail = |id: &str| {
        r["refused"]
            .as_array()
            .expect("refused")
            .iter()
            .find(|e| e["id"] == id)
            .and_then(|e| e["detail"].as_str())
            .unwrap_or_else(|| panic!("{id} not refused: {r:#}"))
            .to_owned()
    };
    assert!(detail("..").contains("no backend"), "{r:#}");
    assert!(detail(".hidden").contains("no backend"), "{r:#}");
    assert!(detail("ok").contains("twice"), "{r:#}");

    // The source changes: `ok` is renamed and a newcomer, read first, takes its former userName.
    // Both move in, in a dry run as in the real one.
    let t = sql.quote(&sql.users);
    sql.execute(format!("DELETE FROM {t}")).await;
    for (id, name) in [("newcomer", "ok"), ("ok", "ok-renamed")] {
        sql.execute(format!(
            "INSERT INTO {t} (id, details) VALUES ('{id}', '{{\"userName\": \"{name}\"}}')"
        ))
        .await;
    }
    for dry_run in [true, false] {
        let mut args = vec!["import", "--from", &from];
        if dry_run {
            args.push("--dry-run");
        }
        let out = s.cli(&args).await;
        assert!(out.status.success(), "{out:?}");
        let r = report(&s);
        let imported = if dry_run { "toImport" } else { "imported" };
        assert_eq!(r["Users"][imported], 2, "{r:#}");
    }
    s.start_again().await;
    assert_eq!(s.client().user("ok").await["userName"], "ok-renamed");
    assert_eq!(s.client().user("newcomer").await["userName"], "ok");
    sql.cleanup().await;
}

async fn sql_layout_moves_in(sql: Sql) {
    fill_tables(&sql).await;
    let mut s = Scimd::start(sql.opts(Opts::default())).await;
    import_twice(&mut s, &format!("sql:{}", sql.url)).await;

    s.stop().await;
    s.opts.env.push(("PROJECTIONS".into(), "sql".into()));
    s.start_again().await;
    caught_up(&s, &["sql"], CONVERGE).await;
    assert_sql_matches(&s, &sql).await;
    assert_moved_in(&s).await;
    sql.cleanup().await;
}

#[tokio::test]
async fn sqlite_rows_move_in_and_the_sql_projection_adopts_them() {
    sql_layout_moves_in(Sql::sqlite().await).await;
}

#[tokio::test]
async fn postgresql_rows_move_in_and_the_sql_projection_adopts_them() {
    if let Some(sql) = Sql::postgres(as_is).await {
        sql_layout_moves_in(sql).await;
    }
}

#[tokio::test]
async fn mariadb_rows_move_in_and_the_sql_projection_adopts_them() {
    if let Some(sql) = Sql::mysql(as_is).await {
        sql_layout_moves_in(sql).await;
    }
}

// ---------------------------------------------------------------------------------------------
// MongoDB
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mongodb_documents_move_in_and_the_mongo_projection_adopts_them() {
    let Some(url) = service_var("SCIMD_TEST_MONGO_URL", "MongoDB") else {
        return;
    };
    let database = format!("import_{}", common::projections::random_suffix());
    let client = mongodb::Client::with_uri_str(&url).await.expect("mongo");
    let db = client.database(&database);
    for (name, docs) in [("Users", earlier_users()), ("Groups", earlier_groups())] {
        let stored: Vec<mongodb::bson::Document> = docs
            .iter()
            .map(|d| {
                let mut doc = mongodb::bson::to_document(d).expect("bson");
                doc.insert("_id", sid(d));
                doc
            })
            .collect();
        db.collection(name)
            .insert_many(stored)
            .await
            .expect("insert");
    }
    let mut s = Scimd::start(Opts::default().env("MONGO_DATABASE", &database)).await;
    import_twice(&mut s, &format!("mongo:{url}")).await;

    s.stop().await;
    s.opts.env.push(("PROJECTIONS".into(), "mongo".into()));
    s.opts.env.push(("MONGO_DB".into(), url.clone()));
    s.start_again().await;
    caught_up(&s, &["mongo"], CONVERGE).await;
    let api = s.client();
    for (name, endpoint) in [("Users", "Users"), ("Groups", "Groups")] {
        let held: Vec<mongodb::bson::Document> = db
            .collection(name)
            .find(mongodb::bson::doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents");
        let held_ids: Vec<String> = held
            .iter()
            .map(|d| d.get_str("_id").expect("_id").to_owned())
            .collect();
        let listed = ids(&api.list_all(&format!("/{endpoint}")).await);
        assert_eq!(held_ids.len(), listed.len(), "{name}: {held:?}");
        assert_eq!(held_ids.iter().cloned().collect::<BTreeSet<_>>(), listed);
        for d in &held {
            let id = d.get_str("_id").expect("_id");
            let got = api
                .get(&format!("/{endpoint}/{id}"))
                .await
                .expect(200)
                .json();
            // The server may hand a small number back as a 32-bit integer.
            let version = match d.get("_version") {
                Some(mongodb::bson::Bson::Int64(v)) => *v,
                Some(mongodb::bson::Bson::Int32(v)) => i64::from(*v),
                other => panic!("{id}: the projection did not write _version: {other:?} in {d:?}"),
            };
            assert_eq!(
                got["meta"]["version"],
                json!(format!("W/\"{version}\"")),
                "{id}: {d:?}"
            );
        }
    }
    assert_moved_in(&s).await;
    let _ = db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// LDAP
// ---------------------------------------------------------------------------------------------

struct Directory {
    url: String,
    base: String,
    admin: String,
    password: String,
    users: String,
    groups: String,
}

impl Directory {
    fn new() -> Option<Directory> {
        let url = service_var("SCIMD_TEST_LDAP_URL", "LDAP")?;
        let s = common::projections::random_suffix();
        Some(Directory {
            url,
            base: std::env::var("SCIMD_TEST_LDAP_BASE").unwrap_or("dc=example,dc=org".into()),
            admin: std::env::var("SCIMD_TEST_LDAP_ADMIN")
                .unwrap_or("cn=admin,dc=example,dc=org".into()),
            password: std::env::var("SCIMD_TEST_LDAP_PASSWORD").unwrap_or("admin".into()),
            users: format!("Users_{s}"),
            groups: format!("Groups_{s}"),
        })
    }

    async fn client(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url).await.expect("slapd");
        ldap3::drive!(conn);
        ldap.simple_bind(&self.admin, &self.password)
            .await
            .and_then(|r| r.success())
            .expect("bind");
        ldap
    }

    fn dn(&self, ou: &str, id: &str) -> String {
        format!("cn={id},ou={ou},{}", self.base)
    }

    /// The earlier server's tree: `device` entries, the rest of each resource as JSON in `info`.
    async fn fill(&self) {
        let mut ldap = self.client().await;
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<String>>();
        for ou in [&self.users, &self.groups] {
            let attrs = vec![
                ("objectClass".to_string(), set(&["organizationalUnit"])),
                ("ou".to_string(), set(&[ou])),
            ];
            ldap.add(&format!("ou={ou},{}", self.base), attrs)
                .await
                .and_then(|r| r.success())
                .expect("add ou");
        }
        for (ou, docs) in [
            (&self.users, earlier_users()),
            (&self.groups, earlier_groups()),
        ] {
            for doc in docs {
                let id = sid(&doc);
                let mut info = doc.clone();
                let map = info.as_object_mut().expect("object");
                let user_name = map.remove("userName");
                let display_name = map.remove("displayName");
                let members = map.remove("members");
                map.remove("id");
                let mut attrs: Vec<(String, HashSet<String>)> = vec![
                    ("objectClass".into(), set(&["device", "extensibleObject"])),
                    ("cn".into(), set(&[&id])),
                    ("info".into(), set(&[&info.to_string()])),
                ];
                if let Some(Value::String(v)) = user_name {
                    attrs.push(("uid".into(), set(&[&v])));
                }
                if let Some(Value::String(v)) = display_name {
                    attrs.push(("displayName".into(), set(&[&v])));
                }
                if let Some(Value::Array(list)) = members {
                    let dns: HashSet<String> = list
                        .iter()
                        .map(|m| {
                            let ou = if m["type"] == "Group" {
                                &self.groups
                            } else {
                                &self.users
                            };
                            self.dn(ou, m["value"].as_str().expect("value"))
                        })
                        .collect();
                    attrs.push(("member".into(), dns));
                }
                let attrs: Vec<(&str, HashSet<&str>)> = attrs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
                    .collect();
                ldap.add(&self.dn(ou, &id), attrs)
                    .await
                    .and_then(|r| r.success())
                    .expect("add entry");
            }
        }
    }

    /// id → attributes of every entry under `ou`.
    async fn entries(&self, ou: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let mut ldap = self.client().await;
        let (entries, _) = ldap
            .search(
                &format!("ou={ou},{}", self.base),
                ldap3::Scope::OneLevel,
                "(objectClass=*)",
                vec!["*"],
            )
            .await
            .and_then(|r| r.success())
            .expect("search");
        entries
            .into_iter()
            .map(|e| {
                let e = ldap3::SearchEntry::construct(e);
                (e.attrs["cn"][0].clone(), e.attrs.into_iter().collect())
            })
            .collect()
    }

    async fn remove(&self) {
        let mut ldap = self.client().await;
        for ou in [&self.users, &self.groups] {
            for id in self.entries(ou).await.keys() {
                let _ = ldap.delete(&self.dn(ou, id)).await;
            }
            let _ = ldap.delete(&format!("ou={ou},{}", self.base)).await;
        }
    }
}

#[tokio::test]
async fn ldap_entries_move_in_and_the_ldap_projection_adopts_them() {
    let Some(dir) = Directory::new() else {
        return;
    };
    dir.fill().await;
    let opts = Opts::default()
        .env("LDAP_HOSTNAME", &dir.url)
        .env("LDAP_BASENAME", &dir.base)
        .env("LDAP_PASSWORD", &dir.password)
        .env("USER_MODEL_NAME", &dir.users)
        .env("GROUP_MODEL_NAME", &dir.groups);
    let mut s = Scimd::start(opts).await;
    import_twice(&mut s, "ldap:").await;

    s.stop().await;
    s.opts.env.push(("PROJECTIONS".into(), "ldap".into()));
    s.start_again().await;
    caught_up(&s, &["ldap"], CONVERGE).await;
    let api = s.client();
    for (ou, endpoint) in [(&dir.users, "Users"), (&dir.groups, "Groups")] {
        let entries = dir.entries(ou).await;
        let listed = ids(&api.list_all(&format!("/{endpoint}")).await);
        assert_eq!(entries.keys().cloned().collect::<BTreeSet<_>>(), listed);
        for (id, attrs) in &entries {
            let got = api
                .get(&format!("/{endpoint}/{id}"))
                .await
                .expect(200)
                .json();
            let info: Value = serde_json::from_str(&attrs["info"][0]).expect("info");
            assert_eq!(
                info["meta"]["version"], got["meta"]["version"],
                "{id}: {attrs:?}"
            );
            if endpoint == "Groups" {
                let members: BTreeSet<String> = attrs
                    .get("member")
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let want: BTreeSet<String> = got["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let ou = if m["type"] == "Group" {
                            &dir.groups
                        } else {
                            &dir.users
                        };
                        dir.dn(ou, m["value"].as_str().expect("value"))
                    })
                    .collect();
                assert_eq!(
                    members, want,
                    "{id}: the dangling member is gone, the rest kept"
                );
            }
        }
    }
    assert_moved_in(&s).await;
    s.stop().await;
    dir.remove().await;
}
