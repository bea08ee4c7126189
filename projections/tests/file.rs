//! The file backend's layout and its refusals, on a real temp directory.

mod common;

use std::fs;

use common::{apply_ok, delete, group, upsert, user};
use projections::ResourceKind::{Group, User};
use projections::file::FileProjection;
use projections::{Projection, ProjectionError};

fn open() -> (tempfile::TempDir, FileProjection) {
    let dir = tempfile::tempdir().expect("temp dir");
    let projection = FileProjection::new(dir.path().join("data"));
    (dir, projection)
}

/// Every name in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn documents_are_pretty_printed_json_files_named_by_id() {
    let (dir, mut projection) = open();
    let alice = user("2819c223-7f76-453a-919d-413861904646", "alice");
    let admins = group("e9e30dba-f08f-4109-8486-d5c6a331660a", "Admins", &[]);
    projection
        .apply(
            &[upsert(User, alice.clone()), upsert(Group, admins.clone())],
            1,
        )
        .await
        .expect("apply");

    let root = dir.path().join("data");
    let text = fs::read_to_string(root.join("Users/2819c223-7f76-453a-919d-413861904646"))
        .expect("user file");
    assert_eq!(text, serde_json::to_string_pretty(&alice).expect("json"));
    let text = fs::read_to_string(root.join("Groups/e9e30dba-f08f-4109-8486-d5c6a331660a"))
        .expect("group file");
    assert_eq!(text, serde_json::to_string_pretty(&admins).expect("json"));
    assert_eq!(
        projection.document_path(User, "abc"),
        Some(root.join("Users").join("abc"))
    );
}

#[tokio::test]
async fn no_temporary_file_is_left_behind() {
    let (dir, mut projection) = open();
    let batch: Vec<_> = (0..50)
        .map(|i| upsert(User, user(&format!("u-{i:02}"), &format!("user{i}"))))
        .collect();
    projection.apply(&batch, 50).await.expect("apply");
    projection.apply(&batch, 50).await.expect("apply again");
    projection
        .apply(&[delete(User, "u-00"), delete(User, "u-49")], 51)
        .await
        .expect("delete");
    let expected: Vec<String> = (1..49).map(|i| format!("u-{i:02}")).collect();
    assert_eq!(names(&dir.path().join("data/Users")), expected);
}

#[tokio::test]
async fn ids_that_are_not_file_names_are_rejected_before_anything_is_written() {
    let (dir, mut projection) = open();
    for bad in ["../escape", "a/b", ".", "..", "", "nul\0byte"] {
        let batch = [
            upsert(User, user("u-ok", "ok")),
            upsert(User, user(bad, "bad")),
        ];
        match projection.apply(&batch, 1).await {
            Err(ProjectionError::Rejected { index: 1, .. }) => {}
            other => panic!("{bad:?}: expected change 1 rejected, got {other:?}"),
        }
        match projection.apply(&[delete(Group, bad)], 1).await {
            Err(ProjectionError::Rejected { index: 0, .. }) => {}
            other => panic!("delete {bad:?}: expected a rejection, got {other:?}"),
        }
        assert_eq!(projection.document_path(User, bad), None);
    }
    assert!(
        !dir.path().join("data/Users").exists(),
        "something was written"
    );
    assert!(!dir.path().join("escape").exists());
}

#[tokio::test]
async fn an_unusable_directory_is_unavailable_not_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The root is a regular file: nothing can be created under it, whatever the user (even root).
    let root = dir.path().join("not-a-directory");
    fs::write(&root, "x").expect("write");
    let mut projection = FileProjection::new(root.clone());
    match projection.apply(&[upsert(User, user("u-1", "a"))], 1).await {
        Err(ProjectionError::Unavailable(message)) => eprintln!("{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match projection.create_layout().await {
        Err(ProjectionError::Config(message)) => eprintln!("{message}"),
        other => panic!("expected Config, got {other:?}"),
    }

    // Once the operator fixes it, the same batch goes through.
    fs::remove_file(&root).expect("remove");
    projection.create_layout().await.expect("layout");
    apply_ok_file(&mut projection).await;
}

async fn apply_ok_file(projection: &mut FileProjection) {
    projection
        .apply(&[upsert(User, user("u-1", "a"))], 1)
        .await
        .expect("apply");
    assert!(projection.root().join("Users/u-1").is_file());
}

#[tokio::test]
async fn reset_removes_stray_temporary_files_and_keeps_other_directories() {
    let Some(mut b) = common::Backend::open(common::Which::File).await else {
        return;
    };
    apply_ok(&mut b, &[upsert(User, user("u-1", "a"))], 1).await;
    let users = b.dir().join("data/Users");
    fs::write(users.join(".scimd-1-1.tmp"), "{").expect("stray temp");
    fs::create_dir(users.join("keep")).expect("subdir");
    b.projection.reset().await.expect("reset");
    assert_eq!(names(&users), vec!["keep".to_owned()]);
}
