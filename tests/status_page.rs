//! The status page (`BASE_PATH/status` for a browser): content negotiation over HTTP, then the page
//! itself in headless Chromium, driven over the DevTools protocol (`--remote-debugging-pipe`, so no
//! port and no WebSocket client): it takes the key from the URL fragment, shows the numbers, follows
//! writes, and its retry button re-applies a parked change.
//!
//! Chromium is Debian's `chromium` package (scripts/test installs it); without it the browser test
//! is skipped with a notice, or fails when CI=true.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test]
async fn status_is_html_for_browsers_and_json_for_clients() {
    let s = Scimd::start(Opts::default().base_path("/scim/v2")).await;
    let api = s.client();
    api.post(
        "/Users",
        &json!({"schemas": [USER_SCHEMA], "userName": "pw-user", "password": "Sup3r-secret!"}),
    )
    .await
    .expect(201);

    // A browser needs no key for the page: it holds no data.
    let page = send(
        s.anonymous()
            .request(Method::GET, "/status")
            .header("Accept", BROWSER_ACCEPT),
    )
    .await
    .expect(200);
    assert_eq!(page.content_type().as_deref(), Some("text/html"));
    assert_eq!(
        page.header("vary").as_deref(),
        Some("Accept"),
        "caches key on Accept"
    );
    assert!(page.text.contains("sessionStorage"), "{}", page.text);
    assert!(!page.text.contains("pw-user"), "the page holds no data");
    assert!(
        !page.text.contains("http://") && !page.text.contains("https://"),
        "nothing from a CDN"
    );

    // Everything else is the JSON API, with a key.
    for accept in [
        None,
        Some("*/*"),
        Some("application/json"),
        Some("application/scim+json"),
    ] {
        let mut rb = s.anonymous().request(Method::GET, "/status");
        if let Some(a) = accept {
            rb = rb.header("Accept", a);
        }
        send(rb).await.expect(401);
        let mut rb = api.request(Method::GET, "/status");
        if let Some(a) = accept {
            rb = rb.header("Accept", a);
        }
        let doc = send(rb).await.expect(200).json();
        assert_eq!(doc["position"], 1);
        assert_eq!(doc["resources"], json!({"User": 1, "Group": 0}));
        let event = &doc["recentEvents"][0];
        assert_eq!(event["kind"], "create");
        assert_eq!(event["resourceType"], "User");
        assert_eq!(
            event["actor"].as_str().map(|a| a.starts_with("key-")),
            Some(true)
        );
        let text = doc.to_string();
        assert!(
            !text.contains("Sup3r") && !text.contains("argon2"),
            "{text}"
        );
    }
}

/// Headless Chromium with a DevTools session on one page.
struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: BufReader<std::fs::File>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium, or `None` (after a notice) when it is not installed and CI is not set.
    fn start() -> Option<Browser> {
        let Some(bin) = ["chromium", "chromium-browser"].into_iter().find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        }) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium is not installed and CI=true (scripts/test installs Debian's package)"
            );
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: skipping the status page browser test: no chromium"
            );
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        // fd 3: what Chromium reads (our commands); fd 4: what it writes (answers and events).
        let (cmd_read, cmd_write) = pipe();
        let (out_read, out_write) = pipe();
        let (cmd_read_fd, out_write_fd) = (raw(&cmd_read), raw(&out_write));
        let mut command = Command::new(bin);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(cmd_read_fd, 3) < 0 || libc::dup2(out_write_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop(cmd_read);
        drop(out_write);
        let mut b = Browser {
            child,
            to_browser: std::fs::File::from(cmd_write),
            from_browser: BufReader::new(std::fs::File::from(out_read)),
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = b.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        Some(b)
    }

    /// Sends one DevTools command and waits for its answer (events in between are skipped).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium");
        loop {
            let mut buf = Vec::new();
            let n = self
                .from_browser
                .read_until(0, &mut buf)
                .expect("read from chromium");
            assert!(n > 0, "chromium closed the DevTools pipe");
            buf.pop();
            let answer: Value = serde_json::from_slice(&buf).expect("DevTools JSON");
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    fn navigate(&mut self, url: &str) {
        let session = self.session.clone();
        self.call(Some(&session), "Page.navigate", json!({"url": url}));
    }

    /// Evaluates `expr` in the page; its value.
    fn eval(&mut self, expr: &str) -> Value {
        let session = self.session.clone();
        let r = self.call(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page (the page reloads its JSON every 2 s).
    fn wait_for(&mut self, expr: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Until the page has loaded, `document.body` may be null: that is "not yet".
        let check = format!(
            "(() => {{ try {{ return Boolean({expr}); }} catch (e) {{ return false; }} }})()"
        );
        while self.eval(&check) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}: {}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors we then own; O_CLOEXEC keeps them out of other children.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_follows_writes_and_retries_a_parked_change() {
    let files = tempfile::tempdir().unwrap();
    let s = Scimd::start(
        Opts::default()
            .base_path("/scim/v2")
            .env("PROJECTIONS", "file")
            .env("FILES_PATH", files.path().to_str().unwrap()),
    )
    .await;
    let api = s.client();
    let id = api.create_user_named("blocked").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A directory where the file projection must write this user's file: the next change to it is
    // refused for good and parked.
    let target = files.path().join("Users").join(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !target.is_file() {
        assert!(
            Instant::now() < deadline,
            "the file projection never wrote {target:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(&target).unwrap();
    std::fs::create_dir(&target).unwrap();
    api.put(
        &format!("/Users/{id}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "blocked", "title": "parked"}),
    )
    .await
    .expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = api.get("/status").await.expect(200).json();
        if st["subscribers"]["file"]["parked"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was parked: {st:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let url = format!("{}#key={}", s.url("/status"), s.key);
    let key = s.key.clone();
    let Some(mut b) = tokio::task::block_in_place(Browser::start) else {
        return;
    };
    tokio::task::block_in_place(|| {
        b.navigate(&url);
        b.wait_for("document.body.dataset.position === '2'", "position 2");
        assert_eq!(
            b.eval("document.getElementById('users').textContent"),
            json!("1")
        );
        // The key moved from the fragment into this tab's sessionStorage, never into a cookie.
        assert_eq!(b.eval("location.hash"), json!(""));
        assert_eq!(
            b.eval("sessionStorage.getItem('scimd-api-key')"),
            json!(key)
        );
        assert_eq!(b.eval("document.cookie"), json!(""));
        assert_eq!(
            b.eval("document.querySelector('#parked tr[data-subscriber=file]')?.dataset.id"),
            json!(id)
        );
        assert_eq!(
            b.eval("document.querySelectorAll('#events tr').length"),
            json!(2)
        );
        assert_eq!(
            b.eval("document.getElementById('growth').textContent"),
            json!("")
        );
        assert_eq!(
            b.eval("document.querySelector('#events tr td:nth-child(4)').textContent.startsWith('key-')"),
            json!(true)
        );
    });

    // Writes show up on the open page.
    for i in 0..3 {
        api.create_user_named(&format!("later-{i}")).await;
    }
    tokio::task::block_in_place(|| {
        b.wait_for("document.body.dataset.position === '5'", "position 5");
        assert_eq!(
            b.eval("document.getElementById('users').textContent"),
            json!("4")
        );
        assert_eq!(
            b.eval("/^\\+[1-3] \\(/.test(document.getElementById('growth').textContent)"),
            json!(true)
        );
        // The cause is gone; the retry button re-applies the parked change.
        std::fs::remove_dir(&target).unwrap();
        b.eval("document.querySelector('#parked button.retry').click()");
        b.wait_for(
            "document.querySelectorAll('#parked tr').length === 0 && \
             document.querySelector('#subscribers tr[data-subscriber=file] .parked').textContent === '0'",
            "the parked change retried",
        );
    });
    let written: Value = serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    assert_eq!(
        written["title"], "parked",
        "the retried change is in the file now"
    );
}
