//! Black-box harness: starts the real `scimd` binary on an ephemeral port with a fresh temporary
//! `DATA_PATH`, talks HTTP to it, stops it with SIGTERM (or kills it with SIGKILL) and runs the
//! `scimd log …` subcommands against its store.
//!
//! Every server's stdout and stderr go to `scimd.log` in the test's temporary directory. When a test
//! panics, the log of every server it started is printed and the directory is kept for inspection.

#![allow(dead_code)]

pub mod amqp;
pub mod faults;
pub mod projections;
pub mod sets;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_scimd");
/// The key servers get when a test does not choose one.
pub const DEFAULT_KEY: &str = "test-key-3f9c1d2e7a";
/// RFC 7644 §3.12.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// RFC 7644 §3.4.2.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// RFC 7643 §4.1.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// RFC 7643 §4.2.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// How long a server may take to answer `/health` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables passed through from the test runner to every scimd process.
const PASSTHROUGH_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"];

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// How to configure a server. `Opts::default()` sets `API_KEY` to [`DEFAULT_KEY`].
#[derive(Clone, Debug)]
pub struct Opts {
    /// Value of `API_KEY`; `None` leaves it unset (scimd then generates a key).
    pub api_key: Option<String>,
    pub base_path: Option<String>,
    pub public_url: Option<String>,
    pub page_size: Option<u32>,
    pub loglevel: String,
    /// Further environment variables.
    pub env: Vec<(String, String)>,
    /// Variables removed from the environment after everything else was set (e.g. `PROJECTIONS`,
    /// which the harness otherwise sets to `none`).
    pub unset: Vec<String>,
    /// A program (and its arguments) `scimd serve` runs under, e.g. `fiu-run -x` or `strace -f`;
    /// it must exec scimd or trace it, so that the pid the harness signals is scimd's or its
    /// tracer's.
    pub wrapper: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            api_key: Some(DEFAULT_KEY.to_string()),
            base_path: None,
            public_url: None,
            page_size: None,
            loglevel: "info".to_string(),
            env: Vec::new(),
            unset: Vec::new(),
            wrapper: Vec::new(),
        }
    }
}

impl Opts {
    pub fn api_key(mut self, v: &str) -> Self {
        self.api_key = Some(v.to_string());
        self
    }
    pub fn no_api_key(mut self) -> Self {
        self.api_key = None;
        self
    }
    pub fn base_path(mut self, v: &str) -> Self {
        self.base_path = Some(v.to_string());
        self
    }
    pub fn public_url(mut self, v: &str) -> Self {
        self.public_url = Some(v.to_string());
        self
    }
    pub fn page_size(mut self, v: u32) -> Self {
        self.page_size = Some(v);
        self
    }
    pub fn loglevel(mut self, v: &str) -> Self {
        self.loglevel = v.to_string();
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    /// Run `scimd serve` under this program (`["fiu-run", "-x"]`).
    pub fn wrapper(mut self, argv: &[&str]) -> Self {
        self.wrapper = argv.iter().map(|a| a.to_string()).collect();
        self
    }
    /// Leave `k` unset in every scimd process of the test (wins over the harness defaults and `env`).
    pub fn unset(mut self, k: &str) -> Self {
        self.unset.push(k.to_string());
        self
    }

    /// The secret of the first key in `API_KEY` (`name=secret` → `secret`).
    fn first_secret(&self) -> Option<String> {
        let first = self.api_key.as_ref()?.split(',').next()?.trim().to_string();
        Some(match first.split_once('=') {
            Some((_, secret)) => secret.to_string(),
            None => first,
        })
    }

    /// `BASE_PATH` as the URLs see it: `""`, or `/scim/v2` (no trailing slash).
    pub fn normalized_base_path(&self) -> String {
        match &self.base_path {
            None => String::new(),
            Some(p) => p.trim_end_matches('/').to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A running (or stopped) `scimd serve` process with its own temporary directory.
pub struct Scimd {
    pub opts: Opts,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    addr: String,
    http: reqwest::Client,
    /// The key clients send: the first of `API_KEY`, or the generated one from `DATA_PATH/api-key`.
    pub key: String,
    /// How many times the server was started (for the log separators).
    starts: u32,
    /// Extra processes (e.g. `log tail --follow`) that must die with the test.
    extra: Arc<Mutex<Vec<u32>>>,
}

impl Scimd {
    /// Starts a server with `opts` and waits until `GET /health` answers 200.
    pub async fn start(opts: Opts) -> Scimd {
        let dir = tempfile::Builder::new()
            .prefix("scimd-test-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        let mut s = Scimd {
            opts,
            dir: Some(dir),
            child: None,
            addr: String::new(),
            http: http_client(),
            key: String::new(),
            starts: 0,
            extra: Arc::new(Mutex::new(Vec::new())),
        };
        s.boot().await;
        s
    }

    /// Starts a server with the default options.
    pub async fn start_default() -> Scimd {
        Scimd::start(Opts::default()).await
    }

    /// The temporary directory of this test (holds `data/` and `scimd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// `DATA_PATH`.
    pub fn data_path(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Where stdout and stderr of every process of this server go.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("scimd.log")
    }

    /// Everything the server processes printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT` + BASE_PATH + `path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}{}{}",
            self.addr,
            self.opts.normalized_base_path(),
            path
        )
    }

    /// `http://127.0.0.1:PORT` + `path`, ignoring BASE_PATH.
    pub fn root_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A client that authenticates with `Authorization: Bearer <key>`.
    pub fn client(&self) -> Api {
        self.client_with(Auth::Bearer(self.key.clone()))
    }

    /// A client that authenticates with `X-API-Key: <key>`.
    pub fn client_x_api_key(&self) -> Api {
        self.client_with(Auth::XApiKey(self.key.clone()))
    }

    /// A client that sends `Authorization: Bearer <key>` with the given key.
    pub fn client_with_key(&self, key: &str) -> Api {
        self.client_with(Auth::Bearer(key.to_string()))
    }

    /// A client that sends no credentials.
    pub fn anonymous(&self) -> Api {
        self.client_with(Auth::None)
    }

    pub fn client_with(&self, auth: Auth) -> Api {
        Api {
            http: self.http.clone(),
            base: self.url(""),
            auth,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .expect("scimd is not running")
    }

    /// SIGTERM, wait for the exit, and assert that it was clean (exit status 0).
    pub async fn stop(&mut self) {
        let status = self.terminate(libc::SIGTERM).await;
        assert!(
            status.success(),
            "scimd exited with {status} after SIGTERM; expected a clean exit 0\n{}",
            self.log_tail()
        );
    }

    /// SIGTERM and wait, returning the exit status without judging it.
    pub async fn stop_status(&mut self) -> ExitStatus {
        self.terminate(libc::SIGTERM).await
    }

    /// SIGKILL (a crash) and wait.
    pub async fn kill(&mut self) {
        self.terminate(libc::SIGKILL).await;
    }

    /// Stop cleanly (asserting exit 0) and start again on the same DATA_PATH (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Start again on the same DATA_PATH after `stop()` or `kill()`.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again() while scimd is running");
        self.boot().await;
    }

    async fn terminate(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("scimd is not running");
        if let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped yet.
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(status) => status.expect("wait for scimd"),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                panic!(
                    "scimd did not exit within {STOP_TIMEOUT:?} of signal {signal}\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// The environment every scimd process of this test gets (serve and the CLI).
    fn command(&self, args: &[&str]) -> Command {
        self.command_under(&[], args)
    }

    /// [`command`](Self::command), run under `wrapper` (a program that execs or traces scimd).
    fn command_under(&self, wrapper: &[String], args: &[&str]) -> Command {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        cmd.args(args);
        cmd.env_clear();
        for k in PASSTHROUGH_ENV {
            if let Ok(v) = std::env::var(k) {
                cmd.env(k, v);
            }
        }
        cmd.env("RUST_BACKTRACE", "1");
        cmd.env("NO_COLOR", "1");
        cmd.env("DATA_PATH", self.data_path());
        cmd.env("PROJECTIONS", "none");
        // The CLI gets the server's LISTEN too, so that it can reach a running server.
        if !self.addr.is_empty() {
            cmd.env("LISTEN", &self.addr);
        }
        cmd.env("LOGLEVEL", &self.opts.loglevel);
        if let Some(k) = &self.opts.api_key {
            cmd.env("API_KEY", k);
        }
        if let Some(v) = &self.opts.base_path {
            cmd.env("BASE_PATH", v);
        }
        if let Some(v) = &self.opts.public_url {
            cmd.env("PUBLIC_URL", v);
        }
        if let Some(v) = self.opts.page_size {
            cmd.env("PAGE_SIZE", v.to_string());
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        for k in &self.opts.unset {
            cmd.env_remove(k);
        }
        cmd.stdin(Stdio::null());
        cmd.kill_on_drop(true);
        cmd
    }

    fn log_file(&self) -> std::fs::File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open scimd.log")
    }

    fn append_log(&self, line: &str) {
        use std::io::Write;
        let _ = writeln!(self.log_file(), "{line}");
    }

    /// Spawn `scimd serve` on a fresh port; retry on a port taken in the meantime.
    async fn boot(&mut self) {
        for attempt in 0..5 {
            self.starts += 1;
            // A LISTEN in the options pins the address (a server others must find again after a
            // restart, such as an upstream); otherwise a fresh port each start.
            self.addr = match self.opts.env.iter().find(|(k, _)| k == "LISTEN") {
                Some((_, pinned)) => pinned.clone(),
                None => format!("127.0.0.1:{}", free_port()),
            };
            self.append_log(&format!(
                "===== harness: start #{} of scimd serve on {} =====",
                self.starts, self.addr
            ));
            let log = self.log_file();
            let mut cmd = self.command_under(&self.opts.wrapper, &["serve"]);
            cmd.stdout(log.try_clone().unwrap()).stderr(log);
            let child = cmd.spawn().expect("spawn scimd serve");
            self.child = Some(child);
            match self.wait_ready().await {
                Ok(()) => {
                    self.key = match self.opts.first_secret() {
                        Some(k) => k,
                        None => self.generated_key(),
                    };
                    return;
                }
                Err(status) => {
                    let log = self.log();
                    let last_start = log.rsplit("===== harness").next().unwrap_or("");
                    if attempt < 4 && last_start.to_lowercase().contains("address already in use") {
                        continue;
                    }
                    panic!(
                        "scimd serve exited with {status} before it was ready\n{}",
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// Poll `GET /health` until it answers 200. `Err` if the process exited first.
    async fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = self.root_url("/health");
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                return Err(status);
            }
            if let Ok(r) = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().as_u16() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "scimd did not answer 200 on {url} within {READY_TIMEOUT:?}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The key scimd generated into `DATA_PATH/api-key`.
    pub fn generated_key(&self) -> String {
        let p = self.data_path().join("api-key");
        let k = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}\n{}", p.display(), self.log_tail()));
        let k = k.trim().to_string();
        assert!(!k.is_empty(), "{} is empty", p.display());
        k
    }

    /// The last part of the log, for assertion messages (the full log is printed on panic anyway).
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(6000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        format!(
            "----- last lines of {} -----\n{}",
            self.log_path().display(),
            &log[start..]
        )
    }

    // -----------------------------------------------------------------------------------------
    // Other processes on the same DATA_PATH
    // -----------------------------------------------------------------------------------------

    /// Run `scimd <args>` with this server's environment (DATA_PATH, API_KEY …) and wait for it.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn scimd");
        let out =
            match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
                Ok(out) => out.expect("wait for scimd"),
                Err(_) => panic!("`scimd {}` did not finish within 60 s", args.join(" ")),
            };
        let o = CliOutput {
            args: args.join(" "),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.append_log(&format!("===== harness: ran {o:?}"));
        o
    }

    /// Spawn `scimd <args>` with stdout piped, for long-running subcommands (`log tail --follow`).
    /// The process is killed when the test ends.
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(self.log_file());
        let child = cmd.spawn().expect("spawn scimd");
        if let Some(pid) = child.id() {
            self.extra.lock().unwrap().push(pid);
        }
        child
    }

    /// Start a second `scimd serve` on this DATA_PATH (on another port) and wait up to `within`
    /// for it to exit. `Ok((status, output))` if it exited; `Err(output)` if it was still running
    /// (it is killed then).
    pub async fn second_serve(&self, within: Duration) -> Result<(ExitStatus, String), String> {
        let mut cmd = self.command(&["serve"]);
        cmd.env("LISTEN", format!("127.0.0.1:{}", free_port()));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn second scimd serve");
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let read_out = tokio::spawn(async move {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s).await;
            s
        });
        let read_err = tokio::spawn(async move {
            let mut s = Vec::new();
            let _ = stderr.read_to_end(&mut s).await;
            s
        });
        let waited = tokio::time::timeout(within, child.wait()).await;
        let status = match waited {
            Ok(s) => Some(s.expect("wait")),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                None
            }
        };
        let out = String::from_utf8_lossy(&read_out.await.unwrap()).into_owned()
            + &String::from_utf8_lossy(&read_err.await.unwrap());
        self.append_log(&format!("===== harness: second serve printed:\n{out}"));
        match status {
            Some(s) => Ok((s, out)),
            None => Err(out),
        }
    }
}

impl Drop for Scimd {
    fn drop(&mut self) {
        for pid in self.extra.lock().unwrap().drain(..) {
            // SAFETY: kill(2) on a child we spawned; it may already have exited.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            let mut dir = self.dir.take().unwrap();
            dir.disable_cleanup(true);
            eprintln!(
                "\n===== the test failed; scimd log ({}) =====\n{}\n===== end of scimd log; directory kept: {} =====\n",
                self.log_path_of(&dir).display(),
                std::fs::read_to_string(self.log_path_of(&dir)).unwrap_or_default(),
                dir.path().display()
            );
        }
    }
}

impl Scimd {
    fn log_path_of(&self, dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("scimd.log")
    }
}

/// Output of a finished CLI run.
pub struct CliOutput {
    pub args: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`scimd {}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.status, self.stdout, self.stderr
        )
    }
}

impl CliOutput {
    /// Assert exit status 0.
    pub fn success(self) -> Self {
        assert!(self.status.success(), "expected success: {self:?}");
        self
    }

    /// Every non-empty stdout line parsed as a JSON object (panics on anything else).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("stdout line is not JSON ({e}): {l:?}\nfull output: {self:?}")
                });
                assert!(v.is_object(), "stdout line is not a JSON object: {l}");
                v
            })
            .collect()
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build reqwest client")
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// Which credentials a client sends.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(String),
    XApiKey(String),
    /// A raw `Authorization` header value.
    Authorization(String),
}

/// An HTTP client bound to one server's BASE_PATH, with credentials preset.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

impl Api {
    /// A client of any server at `base` (a URL prefix), e.g. an upstream that is not a scimd.
    pub fn for_url(base: &str, auth: Auth) -> Api {
        Api {
            http: http_client(),
            base: base.trim_end_matches('/').to_owned(),
            auth,
        }
    }

    /// The absolute URL of `path` (relative to BASE_PATH).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the credentials set; `path` is relative to BASE_PATH.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_url(method, &self.url(path))
    }

    /// A request to an absolute URL with the credentials set.
    pub fn request_url(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.auth {
            Auth::None => rb,
            Auth::Bearer(k) => rb.header("Authorization", format!("Bearer {k}")),
            Auth::XApiKey(k) => rb.header("X-API-Key", k),
            Auth::Authorization(v) => rb.header("Authorization", v),
        }
    }

    /// `request` with a JSON body sent as `application/scim+json`.
    pub fn request_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        self.request(method, path)
            .header("Content-Type", "application/scim+json")
            .body(serde_json::to_vec(body).unwrap())
    }

    pub async fn get(&self, path: &str) -> Resp {
        send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        send(self.request_json(Method::POST, path, body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        send(self.request_json(Method::PUT, path, body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        send(self.request_json(Method::PATCH, path, body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        send(self.request(Method::DELETE, path)).await
    }

    /// POST /Users, asserting 201; returns the created resource.
    pub async fn create_user(&self, body: Value) -> Value {
        self.post("/Users", &body).await.expect(201).json()
    }

    /// POST a minimal user with this userName, asserting 201.
    pub async fn create_user_named(&self, user_name: &str) -> Value {
        self.create_user(json!({"schemas": [USER_SCHEMA], "userName": user_name}))
            .await
    }

    /// POST /Groups, asserting 201; returns the created resource.
    pub async fn create_group(&self, body: Value) -> Value {
        self.post("/Groups", &body).await.expect(201).json()
    }

    /// POST a group with this displayName and these member ids, asserting 201.
    pub async fn create_group_with(&self, display_name: &str, member_ids: &[&str]) -> Value {
        let members: Vec<Value> = member_ids.iter().map(|id| json!({"value": id})).collect();
        self.create_group(json!({
            "schemas": [GROUP_SCHEMA],
            "displayName": display_name,
            "members": members,
        }))
        .await
    }

    /// GET /Users/{id}, asserting 200.
    pub async fn user(&self, id: &str) -> Value {
        self.get(&format!("/Users/{id}")).await.expect(200).json()
    }

    /// GET /Groups/{id}, asserting 200.
    pub async fn group(&self, id: &str) -> Value {
        self.get(&format!("/Groups/{id}")).await.expect(200).json()
    }

    /// GET a list (e.g. `/Users?count=10`), asserting 200 and the ListResponse schema.
    pub async fn list(&self, path: &str) -> Value {
        let body = self.get(path).await.expect(200).json();
        assert_eq!(
            body["schemas"],
            json!([LIST_SCHEMA]),
            "GET {path}: not a ListResponse: {body}"
        );
        body
    }

    /// Every resource of a list endpoint, walking the pages.
    pub async fn list_all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = self.list(&format!("{path}{sep}startIndex={start}")).await;
            let total = page["totalResults"].as_u64().expect("totalResults") as usize;
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            start += items.len();
            out.extend(items);
            if out.len() >= total {
                break;
            }
        }
        out
    }
}

/// Send a request and read the whole response.
pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
    let (client, req) = rb.build_split();
    let req = req.expect("build request");
    let what = format!("{} {}", req.method(), req.url());
    let r = client
        .execute(req)
        .await
        .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"));
    Resp {
        what,
        status,
        headers,
        text,
    }
}

/// A complete HTTP response.
#[derive(Clone)]
pub struct Resp {
    /// `METHOD URL`, for messages.
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {}\n{:?}\n{}",
            self.what, self.status, self.headers, self.text
        )
    }
}

impl Resp {
    /// Assert the status; returns self for chaining.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        self
    }

    /// The body as JSON (panics if it is not JSON).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is not ASCII").to_string())
    }

    /// The media type of `Content-Type`, without parameters, lower-cased.
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type")
            .map(|v| v.split(';').next().unwrap().trim().to_ascii_lowercase())
    }

    /// Assert the response is a SCIM error (RFC 7644 §3.12) with this status and, when given,
    /// this `scimType`. Returns the body.
    #[track_caller]
    pub fn expect_scim_error(&self, status: u16, scim_type: Option<&str>) -> Value {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        assert_scim_error_body(self, status);
        let body = self.json();
        if let Some(t) = scim_type {
            assert_eq!(body["scimType"], json!(t), "wrong scimType: {self:?}");
        }
        body
    }
}

/// The body is an RFC 7644 §3.12 error whose `status` (a string) is `status`.
#[track_caller]
pub fn assert_scim_error_body(r: &Resp, status: u16) {
    assert_eq!(
        r.content_type().as_deref(),
        Some("application/scim+json"),
        "an error must be application/scim+json: {r:?}"
    );
    let body = r.json();
    assert_eq!(
        body["schemas"],
        json!([ERROR_SCHEMA]),
        "not a SCIM error body: {r:?}"
    );
    assert_eq!(
        body["status"],
        json!(status.to_string()),
        "the error body's status must be the HTTP status as a string: {r:?}"
    );
    assert!(
        body["detail"].is_string(),
        "a SCIM error should carry a detail: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 (for chunked and oversized bodies, where the client must not give up early)
// ---------------------------------------------------------------------------------------------

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Send `head` (request line and headers, without the final blank line; `Connection: close` is
/// added) followed by `body`, writing the body in a separate task so that a server answering early
/// (413) is heard even when it stops reading. Returns the response once the server closes the
/// connection or the response is complete.
pub async fn raw_request(addr: &str, head: &str, body: Vec<u8>) -> RawResp {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to scimd");
    let (mut rd, mut wr) = stream.into_split();
    let request_head = format!("{}\r\nConnection: close\r\n\r\n", head.trim_end());
    let writer = tokio::spawn(async move {
        if wr.write_all(request_head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body.chunks(16 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open: shutting it down could make the server treat the request as aborted.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        if let Some(resp) = parse_raw_response(&buf, false) {
            writer.abort();
            return resp;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, rd.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => {
                writer.abort();
                panic!(
                    "no complete response within 30 s; got so far: {}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }
    writer.abort();
    parse_raw_response(&buf, true).unwrap_or_else(|| {
        panic!(
            "connection closed without a complete HTTP response; got: {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

/// Parse a complete HTTP/1.1 response (Content-Length or chunked); `None` if incomplete.
/// `closed`: the connection has ended, so an unframed body runs to the end of `buf`.
pub fn parse_raw_response(buf: &[u8], closed: bool) -> Option<RawResp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = &buf[end + 4..];
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut resp = RawResp {
        status,
        head,
        body: Vec::new(),
    };
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        resp.body = rest[..len].to_vec();
        return Some(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_str = String::from_utf8_lossy(&rest[at..line_end]).into_owned();
            let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                resp.body = body;
                return Some(resp);
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    if status == 204 || status == 304 {
        return Some(resp);
    }
    // No framing: the body runs to the end of the connection; only complete once closed.
    if closed {
        resp.body = rest.to_vec();
        return Some(resp);
    }
    None
}

/// `body` in HTTP/1.1 chunked transfer coding, `chunk` bytes per chunk, with the final zero chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk * 10 + 16);
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Assertions on resources
// ---------------------------------------------------------------------------------------------

/// The id of a resource, asserting it is a UUID.
#[track_caller]
pub fn id_of(resource: &Value) -> String {
    let id = resource["id"]
        .as_str()
        .unwrap_or_else(|| panic!("resource without an id: {resource}"));
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "id is not a UUID: {id:?} in {resource}"
    );
    id.to_string()
}

/// `meta.version` of a resource.
#[track_caller]
pub fn version_of(resource: &Value) -> String {
    resource["meta"]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("resource without meta.version: {resource}"))
        .to_string()
}

/// Asserts an ETag is weak: `W/"…"`.
#[track_caller]
pub fn assert_weak_etag(tag: &str) {
    assert!(
        tag.starts_with("W/\"") && tag.ends_with('"') && tag.len() > 4,
        "not a weak ETag: {tag:?}"
    );
}

/// Asserts a timestamp is RFC 3339 in UTC; returns it parsed.
#[track_caller]
pub fn assert_utc_timestamp(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("not an RFC 3339 timestamp ({e}): {s:?}"));
    assert_eq!(
        t.offset().local_minus_utc(),
        0,
        "timestamp not in UTC: {s:?}"
    );
    t
}

/// The member values (ids) of a group, sorted.
pub fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["value"].as_str().expect("member value").to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Sorted copy of a list of ids.
pub fn sorted<S: AsRef<str>>(ids: &[S]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.as_ref().to_string()).collect();
    v.sort();
    v
}

/// The numeric part of a version, whether it is `3`, `"3"` or `W/"3"`.
#[track_caller]
pub fn version_number(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().expect("version is not a u64"),
        Value::String(s) => s
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("version has no number: {s:?}")),
        other => panic!("version is neither a number nor a string: {other}"),
    }
}

/// A resource with its `members` sorted by value: multi-valued attributes are unordered
/// (RFC 7643 §2.4), so comparisons must not depend on the order the server lists them in.
pub fn normalized(resource: &Value) -> Value {
    let mut v = resource.clone();
    if let Some(members) = v.get_mut("members").and_then(Value::as_array_mut) {
        members.sort_by(|a, b| a["value"].to_string().cmp(&b["value"].to_string()));
    }
    v
}

/// RFC 7644 §3.5.2.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH request body with these `Operations`.
pub fn patch_ops(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}
