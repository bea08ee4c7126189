//! `scimd replay` and `scimd projection retry` beside a running server act on the server of their
//! DATA_PATH, found where it published itself (DATA_PATH/server.json), never on whatever answers
//! at LISTEN; and they check the store id that server reports before they ask it for anything.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::json;
use tokio::process::Command;

fn file_server() -> Opts {
    Opts::default().env("PROJECTIONS", "file")
}

/// Runs `scimd args` on `data_path` with LISTEN pointing at `listen` (another server's address).
async fn tool(data_path: &Path, listen: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_PATH", data_path)
        .env("LISTEN", listen)
        .env("API_KEY", DEFAULT_KEY)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run scimd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until the file projection of `s` holds User `id`.
async fn projected(s: &Scimd, id: &str) {
    let path = s.data_path().join("Users").join(id);
    for _ in 0..200 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{} never appeared", path.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_rebuilds_the_server_of_its_data_path_not_the_one_at_listen() {
    let a = Scimd::start(file_server()).await;
    let b = Scimd::start(file_server()).await;
    let in_a = id_of(&a.client().create_user_named("in-a").await);
    let in_b = id_of(&b.client().create_user_named("in-b").await);
    projected(&a, &in_a).await;
    projected(&b, &in_b).await;
    // Both projections lose their document; B's replay must restore B's only.
    std::fs::remove_file(a.data_path().join("Users").join(&in_a)).unwrap();
    std::fs::remove_file(b.data_path().join("Users").join(&in_b)).unwrap();

    let (ok, out) = tool(
        &b.data_path(),
        a.addr(),
        &["replay", "--projection", "file"],
    )
    .await;
    assert!(ok, "{out}");
    projected(&b, &in_b).await;
    assert!(
        !a.data_path().join("Users").join(&in_a).exists(),
        "replay with B's DATA_PATH rebuilt A's projection"
    );
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.data_path().join("server.json")).unwrap())
            .unwrap();
    assert_eq!(published["url"], json!(format!("http://{}", b.addr())));
    assert!(published.get("key").is_none() && !published.to_string().contains(DEFAULT_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_serving_another_store_is_refused_and_nothing_is_done() {
    let a = Scimd::start(file_server()).await;
    let b = Scimd::start(file_server()).await;
    let in_a = id_of(&a.client().create_user_named("in-a").await);
    projected(&a, &in_a).await;
    std::fs::remove_file(a.data_path().join("Users").join(&in_a)).unwrap();
    // B's published address now names A (as after B's port went to another deployment).
    let reach_file = b.data_path().join("server.json");
    let mut published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reach_file).unwrap()).unwrap();
    published["url"] = json!(format!("http://{}", a.addr()));
    std::fs::write(&reach_file, published.to_string()).unwrap();

    for args in [
        &["replay", "--projection", "file", "--fresh"][..],
        &["projection", "retry", "file"][..],
    ] {
        let (ok, out) = tool(&b.data_path(), b.addr(), args).await;
        assert!(
            !ok,
            "{args:?} succeeded against another store's server: {out}"
        );
        assert!(out.contains("nothing was done"), "{out}");
    }
    assert!(
        !a.data_path().join("Users").join(&in_a).exists(),
        "A's projection was rebuilt by a command given B's DATA_PATH"
    );
    let status = a.client().get("/status").await.expect(200).json();
    assert_ne!(status["subscribers"]["file"]["state"], "rebuilding");
}
