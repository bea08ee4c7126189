//! A `scimd serve` of a benchmark's own: started on a free loopback port with a clean environment,
//! reached over HTTP, seeded with users through `POST /Bulk`, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

/// The scimd binary cargo built beside the benchmark (the profile `cargo bench` builds: release).
pub const BIN: &str = env!("CARGO_BIN_EXE_scimd");
/// The API key of every benchmark server.
pub const KEY: &str = "bench-key";
pub const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A free port on 127.0.0.1 (the kernel's choice, so benchmarks beside each other do not collide).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `scimd ARGS` of `bin` with a clean environment: DATA_PATH, API_KEY ([`KEY`]), LOGLEVEL=warn,
/// NO_COLOR, then `env`.
pub fn scimd(
    bin: &Path,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args).env_clear();
    for k in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("DATA_PATH", data)
        .env("API_KEY", KEY)
        .env("LOGLEVEL", "warn")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// A running `scimd serve`.
pub struct Server {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub http: reqwest::Client,
    /// Where its output goes: `bench-serve.log` in DATA_PATH.
    pub log: PathBuf,
}

impl Server {
    /// Starts `bin serve` on `data` (`PROJECTIONS=none` unless `env` says otherwise; its output in
    /// `data/bench-serve.log`) and waits until `/health` answers 200.
    pub async fn start(bin: &Path, data: &Path, env: &[(&str, &str)]) -> Result<Server> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        std::fs::create_dir_all(data).with_context(|| format!("create {}", data.display()))?;
        let log = data.join("bench-serve.log");
        let file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut all = vec![("PROJECTIONS", "none"), ("LISTEN", listen.as_str())];
        all.extend_from_slice(env);
        let child = scimd(bin, data, &["serve"], &all)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawn {} serve", bin.display()))?;
        let server = Server {
            child,
            base: format!("http://{listen}"),
            http: reqwest::Client::builder().no_proxy().build()?,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = server.http.get(server.url("/health")).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            ensure!(
                Instant::now() < deadline,
                "scimd serve did not start; see {}",
                server.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `body` with the key; a non-2xx answer is an error. Answers the JSON body (Null if none).
    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .http
            .request(method, self.url(path))
            .bearer_auth(KEY)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| path.to_owned())?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        ensure!(status.is_success(), "{path}: {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The log position (`GET /ready`).
    pub async fn position(&self) -> Result<u64> {
        let v: Value = self
            .http
            .get(self.url("/ready"))
            .send()
            .await
            .context("GET /ready")?
            .json()
            .await
            .context("/ready is not JSON")?;
        v["position"]
            .as_u64()
            .with_context(|| format!("no position in /ready: {v}"))
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Result<Value> {
        self.http
            .get(self.url("/status"))
            .bearer_auth(KEY)
            .header("Accept", "application/json")
            .send()
            .await
            .context("GET /status")?
            .json()
            .await
            .context("/status is not JSON")
    }

    /// Waits until subscriber `name`'s checkpoint is the log position; answers that position. A
    /// change it parked is an error.
    pub async fn caught_up(&self, name: &str, within: Duration) -> Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let st = self.status().await?;
            let position = st["position"].as_u64().context("no position in /status")?;
            let subscriber = &st["subscribers"][name];
            ensure!(
                subscriber["parked"].as_u64().unwrap_or(0) == 0,
                "{name} parked changes: {st:#}"
            );
            if subscriber["checkpoint"].as_u64() == Some(position) {
                return Ok(position);
            }
            ensure!(
                Instant::now() < deadline,
                "{name} did not catch up within {within:?}: {st:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `ops` as Bulk requests of `per_request` operations, `concurrent` at a time; every
    /// operation must succeed. Answers the id at the end of each operation's `location` (empty
    /// for none), in order.
    pub async fn bulk(
        &self,
        ops: Vec<Value>,
        per_request: usize,
        concurrent: usize,
    ) -> Result<Vec<String>> {
        let chunks: Vec<Vec<Value>> = ops.chunks(per_request).map(<[Value]>::to_vec).collect();
        let answers: Vec<Vec<String>> = stream::iter(chunks)
            .map(|ops| async move {
                let body = json!({"schemas": [BULK], "Operations": ops});
                let r = self.send(reqwest::Method::POST, "/Bulk", &body).await?;
                r["Operations"]
                    .as_array()
                    .context("no Operations in the BulkResponse")?
                    .iter()
                    .map(|op| {
                        ensure!(
                            op["status"].as_str().is_some_and(|s| s.starts_with('2')),
                            "a bulk operation failed: {op}"
                        );
                        Ok(op["location"]
                            .as_str()
                            .and_then(|l| l.rsplit('/').next())
                            .unwrap_or("")
                            .to_owned())
                    })
                    .collect::<Result<Vec<String>>>()
            })
            .buffered(concurrent)
            .try_collect()
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Creates `n` users named `{prefix}{i}` through Bulk (1,000 per request, 4 at a time);
    /// answers their ids in order.
    pub async fn create_users(&self, prefix: &str, n: usize) -> Result<Vec<String>> {
        let ops = (0..n)
            .map(|i| {
                json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                       "data": {"userName": format!("{prefix}{i}"),
                                "displayName": format!("User {prefix}{i}")}})
            })
            .collect();
        self.bulk(ops, 1000, 4).await
    }

    /// Adds `ids` to group `group` in one PATCH.
    pub async fn add_members(&self, group: &str, ids: &[String]) -> Result<()> {
        let value: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        let body = json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": value}
        ]});
        self.send(reqwest::Method::PATCH, &format!("/Groups/{group}"), &body)
            .await
            .map(|_| ())
    }

    /// Stops the server with SIGTERM and waits (60 s at most) for a clean exit.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("scimd did not stop within 60 s")?
            .context("wait for scimd")?;
        ensure!(status.success(), "scimd serve exited with {status}");
        Ok(())
    }
}

/// A fresh directory under TMPDIR for one run (`DATA_PATH` is its `data`), removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new `scimd-bench-{what}-{pid}-{n}` directory.
    pub fn new(what: &str) -> Result<Scratch> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("scimd-bench-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    /// The DATA_PATH inside it.
    pub fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Peak and current RSS of process `pid` in MB (VmHWM, VmRSS of /proc/PID/status).
pub fn rss_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("unreadable {line}"))?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets the peak RSS (VmHWM) of process `pid` to its current RSS (`5` to /proc/PID/clear_refs).
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("reset the peak RSS of {pid}"))
}
