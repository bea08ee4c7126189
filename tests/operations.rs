//! What operators and container runtimes rely on: `scimd health` (the image's HEALTHCHECK) and log
//! output that carries no terminal escape sequences when it is not written to a terminal.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{DEFAULT_KEY, Opts, Scimd, free_port};
use serde_json::json;
use tokio::process::Command;

/// Runs `scimd health ARGS` with only `env` (plus PATH) set; returns (exit success, stdout, stderr).
async fn health(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(common::BIN);
    cmd.arg("health").args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("scimd health finished within 30 s")
        .expect("run scimd health");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn health_succeeds_against_a_running_server() {
    let s = Scimd::start_default().await;
    let (ok, out, err) = health(&[], &[("LISTEN", s.addr())]).await;
    assert!(ok, "scimd health failed\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("/health"), "{out}");
}

#[tokio::test]
async fn health_reaches_a_wildcard_listen_on_loopback() {
    let s = Scimd::start_default().await;
    let port = s.addr().rsplit(':').next().unwrap().to_string();
    let wildcard = format!("0.0.0.0:{port}");
    let (ok, out, err) = health(&[], &[("LISTEN", &wildcard)]).await;
    assert!(ok, "scimd health failed\nstdout: {out}\nstderr: {err}");
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
}

#[tokio::test]
async fn health_ignores_base_path_because_health_answers_at_the_root() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let (ok, out, err) = health(&[], &[("LISTEN", s.addr()), ("BASE_PATH", "/scim/v2")]).await;
    assert!(ok, "scimd health failed\nstdout: {out}\nstderr: {err}");
}

#[tokio::test]
async fn health_fails_when_nothing_listens() {
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (ok, _out, err) = health(&["--timeout", "2"], &[("LISTEN", &addr)]).await;
    assert!(!ok, "scimd health succeeded with nothing on {addr}");
    assert!(err.contains(&addr), "the error names the URL: {err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn health_fails_on_a_non_200_answer() {
    let s = Scimd::start_default().await;
    // /Users needs a key: 401.
    let url = s.root_url("/Users");
    let (ok, _out, err) = health(&["--url", &url], &[]).await;
    assert!(!ok, "scimd health succeeded on a 401");
    assert!(err.contains("401"), "{err}");
}

/// Starts `scimd serve` directly (not through the harness, which sets NO_COLOR) with stdout and
/// stderr piped, writes a User, stops it with SIGTERM and returns everything it printed.
async fn serve_piped(extra_env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(common::BIN);
    cmd.arg("serve").env_clear();
    for k in ["PATH", "HOME", "TMPDIR", "TERM"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("LISTEN", &addr)
        .env("DATA_PATH", dir.path())
        .env("API_KEY", DEFAULT_KEY)
        .env("PROJECTIONS", "none")
        .env("LOGLEVEL", "info");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn scimd serve");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = http
            .get(format!("http://{addr}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200);
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "scimd did not come up on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = http
        .post(format!("http://{addr}/Users"))
        .bearer_auth(DEFAULT_KEY)
        .json(&json!({"userName": "ansi-check"}))
        .send()
        .await
        .expect("POST /Users");
    assert_eq!(created.status().as_u16(), 201);
    let pid = child.id().expect("pid of scimd");
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("scimd exited within 30 s of SIGTERM")
        .expect("wait for scimd");
    assert!(out.status.success(), "scimd exited with {}", out.status);
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    all
}

#[tokio::test]
async fn text_logs_to_a_pipe_have_no_escape_sequences() {
    let log = serve_piped(&[]).await;
    assert!(log.contains("scimd serving"), "{log}");
    assert!(log.contains("request"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escape sequences in piped log output:\n{log:?}"
    );
}

#[tokio::test]
async fn json_logs_stay_one_object_per_line() {
    let log = serve_piped(&[("LOG_FORMAT", "json")]).await;
    assert!(!log.contains("\x1b["), "{log:?}");
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v["fields"].is_object(), "{line}");
        lines += 1;
    }
    assert!(lines >= 3, "{log}");
}
