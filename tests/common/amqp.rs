//! The AMQP side of the `amqp_*` test files: the broker of the run, a consumer that reads messages
//! back with lapin, the server's log as `scimd log tail` prints it, and the checks every file
//! shares (a message against its event and against what `GET` returned).
//!
//! Needs `SCIMD_TEST_AMQP` (an amqp:// URL); `scripts/test` starts a throwaway broker and exports it with
//! `SCIMD_TEST_RABBITMQ_STOP` / `SCIMD_TEST_RABBITMQ_START` (used by the outage test). Without
//! `SCIMD_TEST_AMQP` every test prints a notice and passes, except with `CI=true`, where it fails.
//!
//! The broker is shared: each test publishes to its own queue (and exchange) and deletes them at the end.
//! The outage test stops and starts the whole broker, so it holds [`BROKER`] for writing and every other
//! test holds it for reading: the outage never hits another test of its binary, and `cargo test` runs
//! one test binary at a time, so it never hits a test of another `amqp_*` file either.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::*;

/// Read: the test needs the broker up. Write: the test stops and starts the broker.
pub static BROKER: RwLock<()> = RwLock::const_new(());

/// How long a message may take to reach the queue when nothing is wrong.
pub const DELIVERY: Duration = Duration::from_secs(20);
/// How long the publisher may take to catch up after the broker or scimd came back (its backoff is
/// capped at 10 s).
pub const RECOVERY: Duration = Duration::from_secs(90);

pub const PASSWORD: &str = "Tr0ub4dor&3-n0t-in-any-message";

// ---------------------------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------------------------

/// The broker of this run, from the environment `scripts/test` exports.
pub struct Broker {
    pub url: String,
}

impl Broker {
    /// `None` (after printing why) when no broker is configured; with `CI=true` that is a failure.
    pub fn from_env() -> Option<Broker> {
        match std::env::var("SCIMD_TEST_AMQP") {
            Ok(url) if !url.trim().is_empty() => Some(Broker { url }),
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!(
                        "SCIMD_TEST_AMQP is not set and CI=true: the AMQP tests must run in CI \
                         (scripts/test starts RabbitMQ and exports it)"
                    );
                }
                // Straight to stderr, once: libtest would capture `eprintln!` of a passing test.
                static NOTICE: std::sync::Once = std::sync::Once::new();
                NOTICE.call_once(|| {
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        "NOTICE: skipping the AMQP tests: SCIMD_TEST_AMQP is not set \
                         (scripts/test starts a throwaway RabbitMQ and sets it)"
                    );
                });
                None
            }
        }
    }

    /// Shares the broker with the other tests (it stays up for the whole test).
    pub async fn shared() -> Option<(Broker, RwLockReadGuard<'static, ()>)> {
        let broker = Broker::from_env()?;
        Some((broker, BROKER.read().await))
    }

    /// Takes the broker for this test alone (it may be stopped and started).
    pub async fn exclusive() -> Option<(Broker, RwLockWriteGuard<'static, ()>)> {
        let broker = Broker::from_env()?;
        Some((broker, BROKER.write().await))
    }

    /// Runs `SCIMD_TEST_RABBITMQ_STOP` or `…_START` and asserts it succeeded.
    pub async fn control(var: &str) {
        let cmd = std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: the outage test needs scripts/test's broker controls")
        });
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {var} ({cmd}): {e}"));
        assert!(
            out.status.success(),
            "{var} ({cmd}) failed with {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `SCIMD_TEST_RABBITMQCTL ARGS…` (each arg shell-quoted); asserts success, returns stdout.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let prefix = std::env::var("SCIMD_TEST_RABBITMQCTL")
            .unwrap_or_else(|_| panic!("SCIMD_TEST_RABBITMQCTL is not set (scripts/test sets it)"));
        let quoted: Vec<String> = args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let cmd = format!("{prefix} {}", quoted.join(" "));
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
        assert!(
            out.status.success(),
            "{cmd} failed with {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn stop(&self) {
        Broker::control("SCIMD_TEST_RABBITMQ_STOP").await;
    }

    pub async fn start(&self) {
        Broker::control("SCIMD_TEST_RABBITMQ_START").await;
    }

    /// scimd options publishing to `queue` on this broker.
    pub fn opts(&self, queue: &str) -> Opts {
        Opts::default().env("AMQP", &self.url).env("QUEUE", queue)
    }
}

/// A queue or exchange name no other test (or earlier run) uses.
pub fn unique(what: &str) -> String {
    format!("scimd-test.{what}.{}", uuid::Uuid::new_v4().simple())
}

pub async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to RabbitMQ at {url}: {e}"))
}

pub fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

pub fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Messages as a consumer sees them
// ---------------------------------------------------------------------------------------------

/// One delivery, acknowledged as soon as it was received.
#[derive(Clone)]
pub struct Msg {
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub delivery_mode: Option<u8>,
    pub timestamp: Option<u64>,
    pub headers: BTreeMap<String, AMQPValue>,
    pub exchange: String,
    pub routing_key: String,
    pub redelivered: bool,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Msg {{ id: {:?}, exchange: {:?}, key: {:?}, redelivered: {}, content_type: {:?}, \
             delivery_mode: {:?}, timestamp: {:?}, headers: {:?}, body: {} }}",
            self.message_id,
            self.exchange,
            self.routing_key,
            self.redelivered,
            self.content_type,
            self.delivery_mode,
            self.timestamp,
            self.headers
                .iter()
                .map(|(k, v)| match v {
                    AMQPValue::LongString(s) => format!("{k}={:?}", s.to_string()),
                    AMQPValue::LongLongInt(n) => format!("{k}={n}"),
                    other => format!("{k}={other:?}"),
                })
                .collect::<Vec<_>>(),
            String::from_utf8_lossy(&self.raw)
        )
    }
}

impl Msg {
    pub fn from_delivery(d: &lapin::message::Delivery) -> Msg {
        let p = &d.properties;
        let headers = p
            .headers()
            .as_ref()
            .map(|t| {
                t.inner()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Msg {
            message_id: p.message_id().as_ref().map(|s| s.to_string()),
            content_type: p.content_type().as_ref().map(|s| s.to_string()),
            delivery_mode: *p.delivery_mode(),
            timestamp: *p.timestamp(),
            headers,
            exchange: d.exchange.to_string(),
            routing_key: d.routing_key.to_string(),
            redelivered: d.redelivered,
            raw: d.data.clone(),
            body: serde_json::from_slice(&d.data).unwrap_or(Value::Null),
        }
    }

    #[track_caller]
    pub fn id(&self) -> &str {
        self.message_id
            .as_deref()
            .unwrap_or_else(|| panic!("message without message_id: {self:?}"))
    }

    #[track_caller]
    pub fn int_header(&self, name: &str) -> u64 {
        match self.headers.get(name) {
            Some(AMQPValue::LongLongInt(n)) if *n > 0 => *n as u64,
            other => {
                panic!("header {name} is not a positive long-long-int but {other:?}: {self:?}")
            }
        }
    }

    #[track_caller]
    pub fn str_header(&self, name: &str) -> String {
        match self.headers.get(name) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("header {name} is not a long string but {other:?}: {self:?}"),
        }
    }

    #[track_caller]
    pub fn position(&self) -> u64 {
        self.int_header("scim-position")
    }

    #[track_caller]
    pub fn version(&self) -> u64 {
        self.int_header("scim-version")
    }

    #[track_caller]
    pub fn scim_id(&self) -> String {
        self.str_header("scim-id")
    }

    #[track_caller]
    pub fn resource_type(&self) -> String {
        self.str_header("scim-resource-type")
    }

    pub fn operation(&self) -> &str {
        self.body["operation"].as_str().unwrap_or("")
    }

    pub fn resource(&self) -> &Value {
        &self.body["resource"]
    }
}

/// A queue with a consumer on it: every delivery is acknowledged when it is received.
pub struct Queue {
    pub name: String,
    pub connection: Connection,
    pub channel: lapin::Channel,
    pub consumer: lapin::Consumer,
}

impl Queue {
    /// Declares `name` as scimd does (durable, no arguments) and consumes from it.
    pub async fn open(url: &str, name: &str) -> Queue {
        Queue::open_bound(url, name, None).await
    }

    /// Declares `name`, binds it to the topic `exchange` (declared as scimd does) with `key`, and
    /// consumes from it.
    pub async fn bound(url: &str, name: &str, exchange: &str, key: &str) -> Queue {
        Queue::open_bound(url, name, Some((exchange, key))).await
    }

    pub async fn open_bound(url: &str, name: &str, bind: Option<(&str, &str)>) -> Queue {
        let connection = connect(url).await;
        let channel = connection.create_channel().await.expect("create channel");
        channel
            .queue_declare(name.into(), durable_queue(), FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("declare queue {name}: {e}"));
        if let Some((exchange, key)) = bind {
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    durable_exchange(),
                    FieldTable::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("declare exchange {exchange}: {e}"));
            channel
                .queue_bind(
                    name.into(),
                    exchange.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("bind {name} to {exchange} with {key}: {e}"));
        }
        channel
            .basic_qos(1000, BasicQosOptions::default())
            .await
            .expect("basic.qos");
        let consumer = channel
            .basic_consume(
                name.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("consume from {name}: {e}"));
        Queue {
            name: name.to_string(),
            connection,
            channel,
            consumer,
        }
    }

    /// The next message, acknowledged, or `None` if none arrives `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Msg> {
        let delivery = match tokio::time::timeout(within, self.consumer.next()).await {
            Err(_) => return None,
            Ok(None) => panic!("the consumer on {} ended", self.name),
            Ok(Some(Err(e))) => panic!("consuming from {}: {e}", self.name),
            Ok(Some(Ok(d))) => d,
        };
        delivery
            .ack(BasicAckOptions::default())
            .await
            .unwrap_or_else(|e| panic!("ack on {}: {e}", self.name));
        Some(Msg::from_delivery(&delivery))
    }

    /// Exactly the next `n` messages; fails if they do not all arrive `within`.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(m) => out.push(m),
                None => panic!(
                    "expected {n} messages on {} within {within:?}, got {}: {out:#?}",
                    self.name,
                    out.len()
                ),
            }
        }
        out
    }

    /// Messages until every id of `ids` has been seen (duplicates included); fails after `within`.
    pub async fn take_all_of(&mut self, ids: &HashSet<String>, within: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + within;
        let mut out: Vec<Msg> = Vec::new();
        let mut missing: HashSet<String> = ids.clone();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(m) => {
                    if let Some(id) = &m.message_id {
                        missing.remove(id);
                    }
                    out.push(m);
                }
                None => panic!(
                    "{} of {} events never reached {} within {within:?} ({} messages received); \
                     missing event ids: {missing:?}",
                    missing.len(),
                    ids.len(),
                    self.name,
                    out.len()
                ),
            }
        }
        out
    }

    /// Whatever else arrives within `quiet` (the queue is considered drained after that much silence).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.next(quiet).await {
            out.push(m);
        }
        out
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        let extra = self.drain(quiet).await;
        assert!(
            extra.is_empty(),
            "unexpected further messages on {}: {extra:#?}",
            self.name
        );
    }

    /// Deletes the queue and closes the connection.
    pub async fn delete(self) {
        let _ = self
            .channel
            .queue_delete(self.name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self.connection.close(200, "bye".into()).await;
    }

    /// Closes the connection, keeping the queue (and its messages).
    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

pub async fn delete_exchange(url: &str, exchange: &str) {
    let connection = connect(url).await;
    let channel = connection.create_channel().await.expect("create channel");
    let _ = channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bye".into()).await;
}

// ---------------------------------------------------------------------------------------------
// The log, as `scimd log tail` prints it
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberRef {
    pub value: String,
    #[serde(rename = "type")]
    pub member_type: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogEvent {
    pub position: u64,
    pub event_id: String,
    pub timestamp: String,
    pub resource_type: String,
    pub resource_id: String,
    pub version: u64,
    pub kind: String,
    #[serde(default)]
    pub cause: Option<Value>,
    #[serde(default)]
    pub attributes: Option<Map<String, Value>>,
    #[serde(default)]
    pub members_added: Vec<MemberRef>,
    #[serde(default)]
    pub members_removed: Vec<MemberRef>,
}

impl LogEvent {
    /// The operation the message must carry.
    pub fn operation(&self) -> &'static str {
        match self.kind.as_str() {
            "create" => "Create",
            "replace" | "patch" => "Update",
            "delete" => "Delete",
            other => panic!("unknown event kind {other:?}: {self:?}"),
        }
    }

    pub fn unix_time(&self) -> u64 {
        chrono::DateTime::parse_from_rfc3339(&self.timestamp)
            .unwrap_or_else(|e| panic!("event timestamp {:?}: {e}", self.timestamp))
            .timestamp() as u64
    }
}

/// Every event of the server's log.
pub async fn log_events(s: &Scimd) -> Vec<LogEvent> {
    let out = s.cli(&["log", "tail"]).await.success();
    out.json_lines()
        .into_iter()
        .map(|v| {
            serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("log line does not parse as an event ({e}): {v}"))
        })
        .collect()
}

pub fn event_ids(events: &[LogEvent]) -> HashSet<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// The server side
// ---------------------------------------------------------------------------------------------

/// `GET /status` → `subscribers.amqp`, with the log `position` copied in.
pub async fn amqp_status(api: &Api) -> Value {
    let status = api.get("/status").await.expect(200).json();
    let mut amqp = status["subscribers"]["amqp"].clone();
    assert!(
        amqp.is_object(),
        "GET /status has no subscribers.amqp: {status}"
    );
    amqp["position"] = status["position"].clone();
    amqp
}

/// Waits until the publisher has confirmed everything in the log: checkpoint = position, lag 0,
/// running, no error. Returns that status.
pub async fn wait_published(api: &Api, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = amqp_status(api).await;
        if st["lag"] == json!(0)
            && st["checkpoint"] == st["position"]
            && st["state"] == json!("running")
            && st["lastError"].is_null()
        {
            return st;
        }
        if Instant::now() > deadline {
            panic!("the AMQP publisher did not catch up within {within:?}: {st}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A resource as the publisher must render it: what GET returned, with the absolute URLs the API
/// builds from the request (`http://127.0.0.1:PORT…`) made relative, as messages carry them without
/// PUBLIC_URL.
pub fn relative(s: &Scimd, resource: &Value) -> Value {
    let text = resource
        .to_string()
        .replace(&format!("http://{}", s.addr()), "");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    // `User.groups` is computed for API responses only; messages never carry it: docs/ARCHITECTURE.md, Subscribers and checkpoints.
    if let Some(o) = v.as_object_mut() {
        o.remove("groups");
    }
    normalized(&v)
}

/// Checks everything about one message: properties, headers, operation, resource, and the event it
/// was published for.
#[track_caller]
pub fn assert_message(m: &Msg, e: &LogEvent, expected_resource: &Value) {
    assert_eq!(
        m.message_id.as_deref(),
        Some(e.event_id.as_str()),
        "message_id must be the event id of {e:?}: {m:?}"
    );
    assert!(
        uuid::Uuid::parse_str(m.id()).is_ok(),
        "message_id is not a UUID: {m:?}"
    );
    assert_eq!(
        m.delivery_mode,
        Some(2),
        "messages must be persistent: {m:?}"
    );
    assert_eq!(m.content_type.as_deref(), Some("application/json"), "{m:?}");
    assert_eq!(
        m.timestamp,
        Some(e.unix_time()),
        "timestamp must be the event's commit time {}: {m:?}",
        e.timestamp
    );
    let names: BTreeSet<&str> = m.headers.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "scim-id",
            "scim-position",
            "scim-resource-type",
            "scim-version"
        ]),
        "headers: {m:?}"
    );
    assert_eq!(m.position(), e.position, "scim-position: {m:?}");
    assert_eq!(
        m.resource_type(),
        e.resource_type,
        "scim-resource-type: {m:?}"
    );
    assert_eq!(m.scim_id(), e.resource_id, "scim-id: {m:?}");
    assert_eq!(m.version(), e.version, "scim-version: {m:?}");
    assert_eq!(
        m.operation(),
        e.operation(),
        "operation for a {} event: {m:?}",
        e.kind
    );
    assert_no_password(m);
    let resource = m.resource();
    assert_eq!(resource["id"], json!(e.resource_id), "resource.id: {m:?}");
    assert_eq!(
        resource["meta"]["resourceType"],
        json!(e.resource_type),
        "{m:?}"
    );
    let shown = version_number(&resource["meta"]["version"]);
    if e.kind == "delete" {
        assert_eq!(
            shown,
            e.version - 1,
            "a Delete carries the resource as it was before: {m:?}"
        );
    } else {
        assert_eq!(
            shown, e.version,
            "meta.version must match scim-version: {m:?}"
        );
    }
    assert_eq!(
        normalized(resource),
        normalized(expected_resource),
        "the resource of {} {} v{} differs from what GET returned\nmessage: {m:?}",
        e.kind,
        e.resource_type,
        e.version
    );
}

#[track_caller]
pub fn assert_no_password(m: &Msg) {
    let raw = String::from_utf8_lossy(&m.raw);
    assert!(
        !raw.contains("password") && !raw.contains(PASSWORD) && !raw.contains("$argon2"),
        "a message must never carry a password, not even hashed: {m:?}"
    );
}

/// The only body keys a message may have.
#[track_caller]
pub fn assert_body_keys(m: &Msg, keys: &[&str]) {
    let got: BTreeSet<&str> = m
        .body
        .as_object()
        .unwrap_or_else(|| panic!("body is not a JSON object: {m:?}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        got,
        keys.iter().copied().collect::<BTreeSet<_>>(),
        "body keys: {m:?}"
    );
}

/// The event each message was published for, by message_id; fails on an unknown id.
#[track_caller]
pub fn by_message<'a>(events: &'a [LogEvent], m: &Msg) -> &'a LogEvent {
    events
        .iter()
        .find(|e| Some(e.event_id.as_str()) == m.message_id.as_deref())
        .unwrap_or_else(|| panic!("a message whose id is no event of the log: {m:?}"))
}

/// Per resource, versions strictly increase in consumption order, except for redeliveries: a
/// message may repeat an earlier one only with the same message_id (and then the same content).
#[track_caller]
pub fn assert_ordered_per_resource(msgs: &[Msg]) {
    let mut last: HashMap<String, (u64, String)> = HashMap::new();
    let mut seen: HashMap<String, &Msg> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        let id = m.scim_id();
        let v = m.version();
        if let Some(first) = seen.get(m.id()) {
            assert_eq!(
                (&first.headers, &first.body),
                (&m.headers, &m.body),
                "message #{i} repeats message_id {} with a different content:\nfirst: {first:?}\nagain: {m:?}",
                m.id()
            );
            continue;
        }
        if let Some((lv, lid)) = last.get(&id) {
            assert!(
                v > *lv,
                "message #{i}: {} {id} version {v} arrived after version {lv} (message {lid}), with a new \
                 message_id {}: {m:?}",
                m.resource_type(),
                m.id()
            );
        }
        last.insert(id, (v, m.id().to_string()));
        seen.insert(m.id().to_string(), m);
    }
}

/// Every event of the log arrived, no message is foreign to the log, and each message carries the
/// facts of its event. Returns how many messages were duplicates.
#[track_caller]
pub fn assert_every_event_exactly_or_again(events: &[LogEvent], msgs: &[Msg]) -> usize {
    let by_id: HashMap<&str, &LogEvent> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for m in msgs {
        let e = by_id
            .get(m.id())
            .unwrap_or_else(|| panic!("a message whose id is no event of the log: {m:?}"));
        assert_eq!(
            (m.position(), m.scim_id(), m.version(), m.operation()),
            (e.position, e.resource_id.clone(), e.version, e.operation()),
            "message and event disagree: {e:?}\n{m:?}"
        );
        if !seen.insert(m.id().to_string()) {
            duplicates += 1;
        }
    }
    let missing: Vec<&LogEvent> = events
        .iter()
        .filter(|e| !seen.contains(&e.event_id))
        .collect();
    assert!(missing.is_empty(), "events never published: {missing:#?}");
    duplicates
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn user_body(user_name: &str, display: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name, "displayName": display})
}
