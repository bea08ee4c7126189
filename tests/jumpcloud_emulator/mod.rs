//! A faithful JumpCloud emulator for tests and benchmarks: an HTTP server on loopback that follows
//! `REFERENCE.md` (beside this file: JumpCloud's API as its specs and official clients show it).
//!
//! What it does as JumpCloud does:
//! - `x-api-key` on every route (401 otherwise); errors as `{"code","message","status"}`, 400s
//!   with google.rpc-style `details` naming the field;
//! - v1 system users (`/api/systemusers`): create answers **200**, `username` and `email`
//!   required, the username convention (a letter first, letters, digits, `.`, `-`, `_`, at most
//!   30 characters, no `@`), username unique in the org and email unique (400 "User already
//!   exists"), custom attributes (names letters and digits under 32 characters, unique; values up
//!   to 1,024), `state` / `suspended` kept equal, PUT **partial**, lists as
//!   `{totalCount, results}` with `limit` (default 10, at most 100), `skip`, `filter`
//!   (`field:$eq:value`, `$ne`; repeated = AND), `fields`, sorted by `_id`; SSH keys under
//!   `/api/systemusers/{id}/sshkeys`, shown in the user's read-only `ssh_keys`; a deleted user
//!   leaves its groups;
//! - v2 user groups (`/api/v2/usergroups`): create answers **201**, `name` required and unique
//!   without regard to case (409), PUT a **full replace** (an omitted `description` becomes ""),
//!   lists as bare arrays with `x-total-count` (`filter=name:eq:value`), members as graph edges
//!   `[{"to":{"id","type":"user"}}]`, member `add`/`remove` answering **204**, 409 for a member
//!   already there, 404 for one that is not (or an unknown user);
//! - ids are 24 lowercase hex digits (`_id` in v1 with an `id` mirror, `id` in v2).
//!
//! What a test controls ([`Emulator`]): a 429 on every n-th request with or without
//! `Retry-After` (JumpCloud documents none), a burst of 5xx answers, the server going down
//! (connections refused, open ones closed) and coming back on the same port, and counters of
//! what was asked. Tests read the emulator's state through its own API (`all_users`,
//! `all_groups`, `members`), paging as JumpCloud's clients do.

#![allow(dead_code)]

mod groups;
mod users;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use poem::listener::TcpAcceptor;
use poem::{Request, Server};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the emulated organisation holds, and the test's controls.
#[derive(Debug, Default)]
pub struct State {
    /// `_id` → system user (as GET returns it, `ssh_keys` included).
    pub users: BTreeMap<String, Value>,
    /// `id` → user group.
    pub groups: BTreeMap<String, Value>,
    /// Group id → its direct user members.
    pub members: BTreeMap<String, BTreeSet<String>>,
    next_id: u64,
    /// Answer 429 to every n-th request.
    pub throttle_every: Option<u64>,
    /// The `Retry-After` (seconds) of those 429s; none when `None`, as JumpCloud documents.
    pub retry_after: Option<u64>,
    /// Answer this many requests with `fail_status`.
    pub fail_next: u64,
    /// The status of those failures (503 by default).
    pub fail_status: u16,
    /// Every request, as `METHOD /path`.
    pub log: Vec<String>,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests answered with an injected 5xx.
    pub failed: u64,
}

impl State {
    /// A new ObjectId-like id: 24 lowercase hex digits.
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!(
            "5f{:06x}{:016x}",
            std::process::id() & 0xff_ffff,
            self.next_id
        )
    }
}

/// A running (or stopped) emulator on one loopback port.
pub struct Emulator {
    addr: SocketAddr,
    key: String,
    state: Arc<Mutex<State>>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Emulator {
    /// Starts an emulator on a free loopback port that accepts the API key `key`.
    pub async fn start(key: &str) -> Emulator {
        Emulator::start_on("127.0.0.1:0", key).await
    }

    /// Starts an emulator on `addr` (`127.0.0.1:0` for a free port).
    pub async fn start_on(addr: &str, key: &str) -> Emulator {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind the JumpCloud emulator on {addr}: {e}"));
        let mut emulator = Emulator {
            addr: listener.local_addr().expect("local address"),
            key: key.to_owned(),
            state: Arc::new(Mutex::new(State {
                fail_status: 503,
                ..State::default()
            })),
            server: None,
        };
        emulator.serve(listener);
        emulator
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let state = self.state.clone();
        let key = self.key.clone();
        let app = poem::endpoint::make(move |req: Request| {
            let state = state.clone();
            let key = key.clone();
            async move { wire::respond(&state, &key, req).await }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(Duration::ZERO),
                )
                .await;
        });
        self.server = Some((stop, task));
    }

    /// `http://127.0.0.1:PORT`: what scimd gets as `JUMPCLOUD_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API key it accepts.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Goes down: the port refuses connections and open ones are closed.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Comes back on the same port with the same state.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "resume() while the emulator runs");
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("emulator: rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind the JumpCloud emulator on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// The state, for controls and counters.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer 429 to every `every`-th request (`None`: never), with `Retry-After: retry_after`
    /// when given.
    pub fn throttle(&self, every: Option<u64>, retry_after: Option<u64>) {
        let mut s = self.state();
        s.throttle_every = every;
        s.retry_after = retry_after;
    }

    /// Answer the next `n` requests with `status` (a 5xx burst).
    pub fn fail_next(&self, n: u64, status: u16) {
        let mut s = self.state();
        s.fail_next = n;
        s.fail_status = status;
    }

    /// How many requests matched `prefix` (`"POST /api/v2/usergroups/"`).
    pub fn requests(&self, prefix: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the emulator through its own API, as JumpCloud's clients page
// ---------------------------------------------------------------------------------------------

/// A client of an emulator (or of JumpCloud) that reads everything, page by page.
pub struct Reader {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Reader {
    /// Reads from `url` with `key`.
    pub fn new(url: &str, key: &str) -> Reader {
        Reader {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// `GET path`, tried again (as JumpCloud's clients do) while the answer is a 429 or a 5xx,
    /// which the test may have asked the emulator for.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> reqwest::Response {
        for _ in 0..100 {
            let r = self
                .http
                .get(format!("{}{path}", self.url))
                .header("x-api-key", &self.key)
                .query(query)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            if r.status().as_u16() != 429 && !r.status().is_server_error() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("GET {path}: throttled or failing through 100 tries");
    }

    /// Every system user, through v1 paging (`skip += len(results)` until `totalCount`), 7 per
    /// page so that paging is exercised.
    pub async fn all_users(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let r = self
                .get(
                    "/api/systemusers",
                    &[
                        ("limit", "7".into()),
                        ("skip", out.len().to_string()),
                        ("sort", "_id".into()),
                    ],
                )
                .await;
            assert_eq!(r.status().as_u16(), 200, "list users");
            let page: Value = r.json().await.expect("users page");
            let total = page["totalCount"].as_u64().expect("totalCount") as usize;
            let results = page["results"].as_array().expect("results").clone();
            let n = results.len();
            out.extend(results);
            if n == 0 || out.len() >= total {
                return out;
            }
        }
    }

    /// Every user group, through v2 paging (`x-total-count`), 7 per page.
    pub async fn all_groups(&self) -> Vec<Value> {
        self.v2_all("/api/v2/usergroups").await
    }

    /// The user ids of a group's direct members.
    pub async fn members(&self, group_id: &str) -> BTreeSet<String> {
        self.v2_all(&format!("/api/v2/usergroups/{group_id}/members"))
            .await
            .iter()
            .map(|edge| edge["to"]["id"].as_str().expect("member id").to_owned())
            .collect()
    }

    async fn v2_all(&self, path: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let r = self
                .get(
                    path,
                    &[("limit", "7".into()), ("skip", out.len().to_string())],
                )
                .await;
            assert_eq!(r.status().as_u16(), 200, "list {path}");
            let total: usize = r
                .headers()
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("x-total-count");
            let page: Vec<Value> = r.json().await.expect("a JSON array");
            let n = page.len();
            out.extend(page);
            if n < 7 || out.len() >= total {
                return out;
            }
        }
    }
}
