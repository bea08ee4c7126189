//! The AMQP fan-out (issue 3), from outside: a real `scimd serve` publishing to a real RabbitMQ, every
//! message read back from the queue with lapin and checked against the log (`scimd log tail`) and against
//! what `GET` returned at the time.
//!
//! Needs `SCIMD_TEST_AMQP` (an amqp:// URL); `scripts/test` starts a throwaway broker and exports it with
//! `SCIMD_TEST_RABBITMQ_STOP` / `SCIMD_TEST_RABBITMQ_START` (used by the outage test). Without
//! `SCIMD_TEST_AMQP` every test prints a notice and passes, except with `CI=true`, where it fails
//! (one test needs no broker and always runs: it plays a broker that accepts and never answers).
//!
//! The broker is shared: each test publishes to its own queue (and exchange) and deletes them at the end.
//! The outage test stops and starts the whole broker, so it holds [`BROKER`] for writing and every other
//! test holds it for reading: the outage never hits another test of this binary.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures::{StreamExt, stream};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Read: the test needs the broker up. Write: the test stops and starts the broker.
static BROKER: RwLock<()> = RwLock::const_new(());

/// How long a message may take to reach the queue when nothing is wrong.
const DELIVERY: Duration = Duration::from_secs(20);
/// How long the publisher may take to catch up after the broker or scimd came back (its backoff is
/// capped at 10 s).
const RECOVERY: Duration = Duration::from_secs(90);

const PASSWORD: &str = "Tr0ub4dor&3-n0t-in-any-message";

// ---------------------------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------------------------

/// The broker of this run, from the environment `scripts/test` exports.
struct Broker {
    url: String,
}

impl Broker {
    /// `None` (after printing why) when no broker is configured; with `CI=true` that is a failure.
    fn from_env() -> Option<Broker> {
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
    async fn shared() -> Option<(Broker, RwLockReadGuard<'static, ()>)> {
        let broker = Broker::from_env()?;
        Some((broker, BROKER.read().await))
    }

    /// Takes the broker for this test alone (it may be stopped and started).
    async fn exclusive() -> Option<(Broker, RwLockWriteGuard<'static, ()>)> {
        let broker = Broker::from_env()?;
        Some((broker, BROKER.write().await))
    }

    /// Runs `SCIMD_TEST_RABBITMQ_STOP` or `…_START` and asserts it succeeded.
    async fn control(var: &str) {
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
    async fn ctl(&self, args: &[&str]) -> String {
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

    async fn stop(&self) {
        Broker::control("SCIMD_TEST_RABBITMQ_STOP").await;
    }

    async fn start(&self) {
        Broker::control("SCIMD_TEST_RABBITMQ_START").await;
    }

    /// scimd options publishing to `queue` on this broker.
    fn opts(&self, queue: &str) -> Opts {
        Opts::default().env("AMQP", &self.url).env("QUEUE", queue)
    }
}

/// A queue or exchange name no other test (or earlier run) uses.
fn unique(what: &str) -> String {
    format!("scimd-test.{what}.{}", uuid::Uuid::new_v4().simple())
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to RabbitMQ at {url}: {e}"))
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
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
struct Msg {
    message_id: Option<String>,
    content_type: Option<String>,
    delivery_mode: Option<u8>,
    timestamp: Option<u64>,
    headers: BTreeMap<String, AMQPValue>,
    exchange: String,
    routing_key: String,
    redelivered: bool,
    raw: Vec<u8>,
    body: Value,
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
    fn from_delivery(d: &lapin::message::Delivery) -> Msg {
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
    fn id(&self) -> &str {
        self.message_id
            .as_deref()
            .unwrap_or_else(|| panic!("message without message_id: {self:?}"))
    }

    #[track_caller]
    fn int_header(&self, name: &str) -> u64 {
        match self.headers.get(name) {
            Some(AMQPValue::LongLongInt(n)) if *n > 0 => *n as u64,
            other => {
                panic!("header {name} is not a positive long-long-int but {other:?}: {self:?}")
            }
        }
    }

    #[track_caller]
    fn str_header(&self, name: &str) -> String {
        match self.headers.get(name) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("header {name} is not a long string but {other:?}: {self:?}"),
        }
    }

    #[track_caller]
    fn position(&self) -> u64 {
        self.int_header("scim-position")
    }

    #[track_caller]
    fn version(&self) -> u64 {
        self.int_header("scim-version")
    }

    #[track_caller]
    fn scim_id(&self) -> String {
        self.str_header("scim-id")
    }

    #[track_caller]
    fn resource_type(&self) -> String {
        self.str_header("scim-resource-type")
    }

    fn operation(&self) -> &str {
        self.body["operation"].as_str().unwrap_or("")
    }

    fn resource(&self) -> &Value {
        &self.body["resource"]
    }
}

/// A queue with a consumer on it: every delivery is acknowledged when it is received.
struct Queue {
    name: String,
    connection: Connection,
    channel: lapin::Channel,
    consumer: lapin::Consumer,
}

impl Queue {
    /// Declares `name` as scimd does (durable, no arguments) and consumes from it.
    async fn open(url: &str, name: &str) -> Queue {
        Queue::open_bound(url, name, None).await
    }

    /// Declares `name`, binds it to the topic `exchange` (declared as scimd does) with `key`, and
    /// consumes from it.
    async fn bound(url: &str, name: &str, exchange: &str, key: &str) -> Queue {
        Queue::open_bound(url, name, Some((exchange, key))).await
    }

    async fn open_bound(url: &str, name: &str, bind: Option<(&str, &str)>) -> Queue {
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
    async fn next(&mut self, within: Duration) -> Option<Msg> {
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
    async fn take(&mut self, n: usize, within: Duration) -> Vec<Msg> {
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
    async fn take_all_of(&mut self, ids: &HashSet<String>, within: Duration) -> Vec<Msg> {
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
    async fn drain(&mut self, quiet: Duration) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.next(quiet).await {
            out.push(m);
        }
        out
    }

    /// Asserts that nothing arrives for `quiet`.
    async fn assert_quiet(&mut self, quiet: Duration) {
        let extra = self.drain(quiet).await;
        assert!(
            extra.is_empty(),
            "unexpected further messages on {}: {extra:#?}",
            self.name
        );
    }

    /// Deletes the queue and closes the connection.
    async fn delete(self) {
        let _ = self
            .channel
            .queue_delete(self.name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self.connection.close(200, "bye".into()).await;
    }

    /// Closes the connection, keeping the queue (and its messages).
    async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

async fn delete_exchange(url: &str, exchange: &str) {
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
struct MemberRef {
    value: String,
    #[serde(rename = "type")]
    member_type: String,
}

#[derive(Debug, Clone, Deserialize)]
struct LogEvent {
    position: u64,
    event_id: String,
    timestamp: String,
    resource_type: String,
    resource_id: String,
    version: u64,
    kind: String,
    #[serde(default)]
    cause: Option<Value>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    members_added: Vec<MemberRef>,
    #[serde(default)]
    members_removed: Vec<MemberRef>,
}

impl LogEvent {
    /// The operation the message must carry.
    fn operation(&self) -> &'static str {
        match self.kind.as_str() {
            "create" => "Create",
            "replace" | "patch" => "Update",
            "delete" => "Delete",
            other => panic!("unknown event kind {other:?}: {self:?}"),
        }
    }

    fn unix_time(&self) -> u64 {
        chrono::DateTime::parse_from_rfc3339(&self.timestamp)
            .unwrap_or_else(|e| panic!("event timestamp {:?}: {e}", self.timestamp))
            .timestamp() as u64
    }
}

/// Every event of the server's log.
async fn log_events(s: &Scimd) -> Vec<LogEvent> {
    let out = s.cli(&["log", "tail"]).await.success();
    out.json_lines()
        .into_iter()
        .map(|v| {
            serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("log line does not parse as an event ({e}): {v}"))
        })
        .collect()
}

fn event_ids(events: &[LogEvent]) -> HashSet<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// The server side
// ---------------------------------------------------------------------------------------------

/// `GET /status` → `subscribers.amqp`, with the log `position` copied in.
async fn amqp_status(api: &Api) -> Value {
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
async fn wait_published(api: &Api, within: Duration) -> Value {
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
fn relative(s: &Scimd, resource: &Value) -> Value {
    let text = resource
        .to_string()
        .replace(&format!("http://{}", s.addr()), "");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    // `User.groups` is computed for API responses only; messages never carry it (DESIGN.md).
    if let Some(o) = v.as_object_mut() {
        o.remove("groups");
    }
    normalized(&v)
}

/// Checks everything about one message: properties, headers, operation, resource, and the event it
/// was published for.
#[track_caller]
fn assert_message(m: &Msg, e: &LogEvent, expected_resource: &Value) {
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
fn assert_no_password(m: &Msg) {
    let raw = String::from_utf8_lossy(&m.raw);
    assert!(
        !raw.contains("password") && !raw.contains(PASSWORD) && !raw.contains("$argon2"),
        "a message must never carry a password, not even hashed: {m:?}"
    );
}

/// The only body keys a message may have.
#[track_caller]
fn assert_body_keys(m: &Msg, keys: &[&str]) {
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
fn by_message<'a>(events: &'a [LogEvent], m: &Msg) -> &'a LogEvent {
    events
        .iter()
        .find(|e| Some(e.event_id.as_str()) == m.message_id.as_deref())
        .unwrap_or_else(|| panic!("a message whose id is no event of the log: {m:?}"))
}

/// Per resource, versions strictly increase in consumption order, except for redeliveries: a
/// message may repeat an earlier one only with the same message_id (and then the same content).
#[track_caller]
fn assert_ordered_per_resource(msgs: &[Msg]) {
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
fn assert_every_event_exactly_or_again(events: &[LogEvent], msgs: &[Msg]) -> usize {
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn user_body(user_name: &str, display: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name, "displayName": display})
}

// ---------------------------------------------------------------------------------------------
// Every operation type
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_create_replace_and_delete_each_publish_one_message_with_the_resource_as_get_returns_it()
 {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("users");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let t0 = unix_now();

    let created = api
        .create_user(json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.alice",
            "password": PASSWORD,
            "displayName": "Alice",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@example.org", "type": "work", "primary": true}],
            "active": true,
        }))
        .await;
    let id = id_of(&created);
    let path = format!("/Users/{id}");
    let v1 = api.user(&id).await;
    api.put(
        &path,
        &json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.alice",
            "password": format!("{PASSWORD}-2"),
            "displayName": "Alice L.",
            "title": "Queen",
        }),
    )
    .await
    .expect(200);
    let v2 = api.user(&id).await;
    // A replace without a password keeps the stored one; still none in the message.
    api.put(
        &path,
        &json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.alice",
            "displayName": "Alice Liddell",
            "title": "Queen",
        }),
    )
    .await
    .expect(200);
    let v3 = api.user(&id).await;
    api.delete(&path).await.expect(204);
    let t1 = unix_now();

    let msgs = q.take(4, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4, "{events:#?}");

    let expected = [&v1, &v2, &v3, &v3];
    for (i, m) in msgs.iter().enumerate() {
        let e = &events[i];
        assert_eq!(e.position, i as u64 + 1);
        assert_message(m, e, &relative(&s, expected[i]));
        assert_body_keys(m, &["operation", "resource"]);
        // The default exchange, routed by queue name.
        assert_eq!(
            (m.exchange.as_str(), m.routing_key.as_str()),
            ("", queue.as_str()),
            "{m:?}"
        );
        assert!(!m.redelivered, "{m:?}");
        let ts = m.timestamp.unwrap();
        assert!(
            t0 <= ts && ts <= t1,
            "timestamp {ts} outside [{t0}, {t1}]: {m:?}"
        );
        // Without PUBLIC_URL the location is relative.
        assert_eq!(
            m.resource()["meta"]["location"],
            json!(format!("/Users/{id}")),
            "{m:?}"
        );
    }
    let ops: Vec<&str> = msgs.iter().map(Msg::operation).collect();
    assert_eq!(ops, ["Create", "Update", "Update", "Delete"]);
    assert_eq!(
        msgs[0].resource()["emails"][0]["value"],
        json!("alice@example.org")
    );
    assert_eq!(msgs[1].resource()["title"], json!("Queen"));
    assert_eq!(msgs[3].resource()["displayName"], json!("Alice Liddell"));
    assert_eq!(
        msgs.iter().map(Msg::version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    let st = wait_published(&api, DELIVERY).await;
    assert_eq!(st["checkpoint"], json!(4), "{st}");
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn group_create_replace_and_delete_each_publish_the_group_as_of_that_version() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("groups");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let gets = group_history(&s).await;

    let events = log_events(&s).await;
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    check_group_history(&events, &msgs, &gets, true);
    wait_published(&api, DELIVERY).await;
    q.delete().await;
}

/// Users a, b, c (with display names), then a group through create (a, b), replace (renamed; b, c:
/// adds c, removes a), replace (adds a), the delete of user b (a server-made membership-only change
/// of the group), and the group's delete. Returns what GET returned after each write (made
/// [`relative`]), by (id, version).
async fn group_history(s: &Scimd) -> HashMap<(String, u64), Value> {
    let api = s.client();
    let mut gets = HashMap::new();
    let mut ids = Vec::new();
    for n in ["a", "b", "c"] {
        let u = api
            .create_user(user_body(&format!("amqp.group.{n}"), &format!("User {n}")))
            .await;
        gets.insert((id_of(&u), 1), relative(s, &api.user(&id_of(&u)).await));
        ids.push(id_of(&u));
    }
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let gid = id_of(&api.create_group_with("Readers", &[a, b]).await);
    let path = format!("/Groups/{gid}");
    let record = |gets: &mut HashMap<_, _>, v: Value| {
        gets.insert(
            (gid.clone(), version_number(&v["meta"]["version"])),
            relative(s, &v),
        );
    };
    record(&mut gets, api.group(&gid).await);
    for members in [vec![b, c], vec![a, b, c]] {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        api.put(
            &path,
            &json!({
                "schemas": [GROUP_SCHEMA],
                "displayName": "Readers and writers",
                "externalId": "rw-1",
                "members": members,
            }),
        )
        .await
        .expect(200);
        record(&mut gets, api.group(&gid).await);
    }
    api.delete(&format!("/Users/{b}")).await.expect(204);
    record(&mut gets, api.group(&gid).await);
    api.delete(&path).await.expect(204);
    gets
}

/// The messages of [`group_history`], in log order, each equal to what GET returned at the time
/// (members' `display` left out of the comparison when `with_display` is false).
#[track_caller]
fn check_group_history(
    events: &[LogEvent],
    msgs: &[Msg],
    gets: &HashMap<(String, u64), Value>,
    with_display: bool,
) {
    assert_eq!(
        events.len(),
        9,
        "3 user creates, 5 group writes, 1 user delete: {events:#?}"
    );
    assert_eq!(msgs.len(), events.len());
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if !with_display {
            for m in v
                .get_mut("members")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                m.as_object_mut().unwrap().remove("display");
            }
        }
        v
    };
    for (m, e) in msgs.iter().zip(events) {
        let shown = if e.kind == "delete" {
            e.version - 1
        } else {
            e.version
        };
        let get = gets
            .get(&(e.resource_id.clone(), shown))
            .unwrap_or_else(|| panic!("no GET recorded for {e:?}"));
        let mut m = m.clone();
        m.body["resource"] = strip(m.resource());
        assert_message(&m, e, &strip(get));
        assert_body_keys(&m, &["operation", "resource"]);
    }
    let groups: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.resource_type() == "Group")
        .collect();
    let ops: Vec<&str> = groups.iter().map(|m| m.operation()).collect();
    assert_eq!(ops, ["Create", "Update", "Update", "Update", "Delete"]);
    let sizes: Vec<usize> = groups
        .iter()
        .map(|m| member_ids(m.resource()).len())
        .collect();
    assert_eq!(
        sizes,
        [2, 2, 3, 2, 2],
        "members per group message: {groups:#?}"
    );
    for m in &groups {
        for member in m.resource()["members"].as_array().unwrap() {
            let value = member["value"].as_str().unwrap();
            assert_eq!(member["type"], json!("User"), "{m:?}");
            assert_eq!(member["$ref"], json!(format!("/Users/{value}")), "{m:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_published_long_after_the_writes_still_show_each_group_as_of_its_own_version() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // Write everything with AMQP off, then turn it on: the publisher starts at position 1 and must
    // rebuild each group version from the current (deleted) state by undoing later deltas.
    let queue = unique("late");
    let mut s = Scimd::start_default().await;
    let gets = group_history(&s).await;
    s.stop().await;
    let mut q = Queue::open(&broker.url, &queue).await;
    s.opts = broker.opts(&queue);
    s.start_again().await;

    let events = log_events(&s).await;
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    // Member display names are checked by the next test.
    check_group_history(&events, &msgs, &gets, false);
    wait_published(&s.client(), DELIVERY).await;
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_group_message_shows_member_display_names_as_of_the_event() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // `resource` is the group as of its event: its members' `display` too, not the member's
    // current name (the publisher may run long after the write: outage, restart, AMQP turned on).
    let queue = unique("late-display");
    let mut s = Scimd::start_default().await;
    let api = s.client();
    let a = id_of(&api.create_user(user_body("amqp.display.a", "Ann")).await);
    let g = id_of(&api.create_group_with("display", &[&a]).await);
    let g_then = relative(&s, &api.group(&g).await);
    assert_eq!(g_then["members"][0]["display"], json!("Ann"), "{g_then}");
    api.put(
        &format!("/Users/{a}"),
        &user_body("amqp.display.a", "Annie"),
    )
    .await
    .expect(200);
    s.stop().await;
    let mut q = Queue::open(&broker.url, &queue).await;
    s.opts = broker.opts(&queue);
    s.start_again().await;

    let msgs = q.take(3, DELIVERY).await;
    let events = log_events(&s).await;
    q.delete().await;
    assert_eq!(
        msgs[1].resource()["members"][0]["display"],
        json!("Ann"),
        "the group's Create: {:?}",
        msgs[1]
    );
    assert_message(&msgs[1], &events[1], &g_then);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_publishes_its_delete_then_an_update_for_each_group_it_was_in() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("cascade");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let a = id_of(&api.create_user(user_body("amqp.cascade.a", "A")).await);
    let b = id_of(&api.create_user(user_body("amqp.cascade.b", "B")).await);
    let g1 = id_of(&api.create_group_with("both", &[&a, &b]).await);
    let g2 = id_of(&api.create_group_with("only a", &[&a]).await);
    let g3 = id_of(&api.create_group_with("only b", &[&b]).await);
    let a_before = api.user(&a).await;
    let before = q.take(5, DELIVERY).await;
    assert_eq!(
        before.iter().map(Msg::operation).collect::<Vec<_>>(),
        ["Create"; 5]
    );

    api.delete(&format!("/Users/{a}")).await.expect(204);
    let g1_after = api.group(&g1).await;
    let g2_after = api.group(&g2).await;
    assert_eq!(member_ids(&g1_after), std::slice::from_ref(&b));
    assert!(member_ids(&g2_after).is_empty());

    let msgs = q.take(3, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 8, "{events:#?}");
    let (delete, cascade) = (&msgs[0], &msgs[1..]);
    // The Delete comes first, then one Update per group the user was in.
    assert_eq!(
        (delete.operation(), delete.resource_type(), delete.scim_id()),
        ("Delete", "User".to_string(), a.clone()),
        "the user's Delete must come before the groups' Updates: {msgs:#?}"
    );
    assert_message(
        delete,
        by_message(&events, delete),
        &relative(&s, &a_before),
    );
    let mut updated = BTreeSet::new();
    for m in cascade {
        let e = by_message(&events, m);
        assert_eq!(e.kind, "patch", "{e:?}");
        assert!(
            e.cause.is_some(),
            "a server-made change records its cause: {e:?}"
        );
        assert!(m.position() > delete.position(), "{msgs:#?}");
        let expected = if m.scim_id() == g1 {
            &g1_after
        } else {
            &g2_after
        };
        assert_message(m, e, &relative(&s, expected));
        assert_eq!(m.version(), 2, "{m:?}");
        updated.insert(m.scim_id());
    }
    assert_eq!(
        updated,
        BTreeSet::from([g1.clone(), g2.clone()]),
        "g3 ({g3}) did not contain a"
    );
    q.delete().await;
}

// ---------------------------------------------------------------------------------------------
// Options: AMQP_EXCHANGE, AMQP_GROUP_MEMBERS, PUBLIC_URL
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn amqp_exchange_publishes_with_routing_keys_resource_type_dot_operation() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let exchange = unique("exchange");
    let queue = unique("all");
    // QUEUE gets everything (scimd binds it with `#`); consumers bind their own queues selectively.
    let mut all = Queue::open(&broker.url, &queue).await;
    let mut user_creates = Queue::bound(
        &broker.url,
        &unique("user-creates"),
        &exchange,
        "User.Create",
    )
    .await;
    let mut deletes = Queue::bound(&broker.url, &unique("deletes"), &exchange, "*.Delete").await;
    let mut groups = Queue::bound(&broker.url, &unique("groups"), &exchange, "Group.#").await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_EXCHANGE", &exchange)).await;
    let api = s.client();

    let u = id_of(&api.create_user(user_body("amqp.routed", "R")).await);
    api.put(&format!("/Users/{u}"), &user_body("amqp.routed", "R2"))
        .await
        .expect(200);
    let g = id_of(&api.create_group_with("routed", &[&u]).await);
    api.delete(&format!("/Users/{u}")).await.expect(204);
    api.delete(&format!("/Groups/{g}")).await.expect(204);

    let msgs = all.take(6, DELIVERY).await;
    all.assert_quiet(Duration::from_secs(1)).await;
    let keys: Vec<(&str, &str)> = msgs
        .iter()
        .map(|m| (m.exchange.as_str(), m.routing_key.as_str()))
        .collect();
    let x = exchange.as_str();
    assert_eq!(
        keys,
        [
            (x, "User.Create"),
            (x, "User.Update"),
            (x, "Group.Create"),
            (x, "User.Delete"),
            (x, "Group.Update"),
            (x, "Group.Delete"),
        ],
        "{msgs:#?}"
    );
    let events = log_events(&s).await;
    assert_every_event_exactly_or_again(&events, &msgs);
    for m in &msgs {
        assert_eq!(
            m.routing_key,
            format!("{}.{}", m.resource_type(), m.operation())
        );
    }

    let got = user_creates.take(1, DELIVERY).await;
    assert_eq!(
        (got[0].scim_id(), got[0].operation()),
        (u.clone(), "Create")
    );
    assert_eq!(
        got[0].body, msgs[0].body,
        "the same message goes to every bound queue"
    );
    let got = deletes.take(2, DELIVERY).await;
    assert_eq!(
        got.iter()
            .map(|m| m.routing_key.as_str())
            .collect::<Vec<_>>(),
        ["User.Delete", "Group.Delete"]
    );
    let got = groups.take(3, DELIVERY).await;
    assert_eq!(
        got.iter()
            .map(|m| m.routing_key.as_str())
            .collect::<Vec<_>>(),
        ["Group.Create", "Group.Update", "Group.Delete"]
    );
    for q in [&mut user_creates, &mut deletes, &mut groups] {
        q.assert_quiet(Duration::from_millis(500)).await;
    }
    for q in [all, user_creates, deletes, groups] {
        q.delete().await;
    }
    delete_exchange(&broker.url, &exchange).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_group_members_changes_sends_member_deltas_beside_a_group_without_members() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("changes");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_GROUP_MEMBERS", "changes")).await;
    let api = s.client();
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for n in ["a", "b", "c"] {
            v.push(id_of(
                &api.create_user(user_body(&format!("amqp.changes.{n}"), n))
                    .await,
            ));
        }
        v
    };
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let g = id_of(&api.create_group_with("deltas", &[a, b]).await);
    let path = format!("/Groups/{g}");
    let mut gets = vec![api.group(&g).await];
    api.put(
        &path,
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "deltas", "members": [{"value": b}, {"value": c}]}),
    )
    .await
    .expect(200);
    gets.push(api.group(&g).await);
    // Renamed, same members: no delta.
    api.put(
        &path,
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "renamed", "members": [{"value": c}, {"value": b}]}),
    )
    .await
    .expect(200);
    gets.push(api.group(&g).await);
    api.delete(&format!("/Users/{b}")).await.expect(204);
    gets.push(api.group(&g).await);
    api.delete(&path).await.expect(204);

    let msgs = q.take(9, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_every_event_exactly_or_again(&events, &msgs);
    let refs = |list: &[&String]| -> Value {
        let mut v: Vec<&String> = list.to_vec();
        v.sort();
        json!(
            v.iter()
                .map(|id| json!({"value": id, "type": "User"}))
                .collect::<Vec<_>>()
        )
    };
    let sorted_refs = |v: &Value| -> Value {
        let mut list = v
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .clone();
        list.sort_by(|x, y| x["value"].to_string().cmp(&y["value"].to_string()));
        Value::Array(list)
    };
    let group_msgs: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.resource_type() == "Group")
        .collect();
    let expected: [(&str, Value, Value); 5] = [
        ("Create", refs(&[a, b]), refs(&[])),
        ("Update", refs(&[c]), refs(&[a])),
        ("Update", refs(&[]), refs(&[])),
        ("Update", refs(&[]), refs(&[b])),
        ("Delete", refs(&[]), refs(&[c])),
    ];
    assert_eq!(group_msgs.len(), 5, "{msgs:#?}");
    for (i, (m, (op, added, removed))) in group_msgs.iter().zip(expected).enumerate() {
        assert_body_keys(m, &["operation", "resource", "members"]);
        assert_eq!(m.operation(), op, "{m:?}");
        assert_eq!(
            sorted_refs(&m.body["members"]["added"]),
            added,
            "members.added: {m:?}"
        );
        assert_eq!(
            sorted_refs(&m.body["members"]["removed"]),
            removed,
            "members.removed: {m:?}"
        );
        assert!(
            m.resource().get("members").is_none(),
            "no member list with `changes`: {m:?}"
        );
        // Otherwise the group as GET returned it (for the Delete: as before).
        let mut get = relative(&s, &gets[i.min(3)]);
        get.as_object_mut().unwrap().remove("members");
        let e = by_message(&events, m);
        assert_message(m, e, &get);
    }
    for m in msgs.iter().filter(|m| m.resource_type() == "User") {
        assert_body_keys(m, &["operation", "resource"]);
    }
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_url_makes_meta_location_and_member_refs_absolute_in_messages() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("public-url");
    let mut q = Queue::open(&broker.url, &queue).await;
    let public = "https://scim.example.org";
    let s = Scimd::start(broker.opts(&queue).public_url(public).base_path("/scim/v2")).await;
    let api = s.client();
    let u = id_of(&api.create_user(user_body("amqp.public", "P")).await);
    // Read before the group exists: messages carry no computed `User.groups`.
    let u_get = api.user(&u).await;
    let g = id_of(&api.create_group_with("public", &[&u]).await);
    let g_get = api.group(&g).await;

    let msgs = q.take(2, DELIVERY).await;
    let events = log_events(&s).await;
    let base = format!("{public}/scim/v2");
    assert_eq!(
        msgs[0].resource()["meta"]["location"],
        json!(format!("{base}/Users/{u}")),
        "{msgs:#?}"
    );
    assert_eq!(
        msgs[1].resource()["meta"]["location"],
        json!(format!("{base}/Groups/{g}")),
        "{msgs:#?}"
    );
    assert_eq!(
        msgs[1].resource()["members"][0]["$ref"],
        json!(format!("{base}/Users/{u}")),
        "{msgs:#?}"
    );
    // Exactly what GET returns, which also builds its URLs from PUBLIC_URL.
    assert_message(&msgs[0], &events[0], &u_get);
    assert_message(&msgs[1], &events[1], &g_get);
    q.delete().await;
}

// ---------------------------------------------------------------------------------------------
// PATCH (issue 7): one event, one Update message, the resource as of that event
// ---------------------------------------------------------------------------------------------

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn patch_ops(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

#[tokio::test(flavor = "multi_thread")]
async fn user_patches_each_publish_one_update_with_the_user_as_get_returned_it_after_the_patch() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let exchange = unique("patch-exchange");
    let queue = unique("user-patch");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut updates = Queue::bound(
        &broker.url,
        &unique("user-updates"),
        &exchange,
        "User.Update",
    )
    .await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_EXCHANGE", &exchange)).await;
    let api = s.client();
    let id = id_of(
        &api.create_user(json!({
            "schemas": [USER_SCHEMA],
            "userName": "amqp.patched",
            "password": PASSWORD,
            "displayName": "Alice",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@example.org", "type": "work", "primary": true}],
            "active": true,
        }))
        .await,
    );
    let path = format!("/Users/{id}");
    let mut gets = vec![api.user(&id).await];
    let patches = [
        json!([{"op": "replace", "path": "name.givenName", "value": "Alicia"}]),
        json!([{"op": "add", "path": "emails", "value": [{"value": "alice@home.example.org", "type": "home"}]}]),
        // Okta deactivates with a path-less replace.
        json!([{"op": "replace", "value": {"active": false}}]),
        // A new password (stored hashed, never published) beside a visible change.
        json!([
            {"op": "replace", "path": "password", "value": format!("{PASSWORD}-patched")},
            {"op": "add", "path": "title", "value": "Queen"},
        ]),
    ];
    for ops in &patches {
        let answered = api
            .patch(&path, &patch_ops(ops.clone()))
            .await
            .expect(200)
            .json();
        let got = api.user(&id).await;
        assert_eq!(
            answered, got,
            "the PATCH answers the user as GET returns it"
        );
        gets.push(got);
    }
    assert_eq!(
        gets[1]["name"],
        json!({"givenName": "Alicia", "familyName": "Liddell"})
    );
    assert_eq!(
        gets[2]["emails"].as_array().map(Vec::len),
        Some(2),
        "{}",
        gets[2]
    );
    assert_eq!(gets[3]["active"], json!(false));
    assert_eq!(gets[4]["title"], json!("Queen"));

    let msgs = q.take(5, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let events = log_events(&s).await;
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["create", "patch", "patch", "patch", "patch"],
        "each PATCH is one event: {events:#?}"
    );
    for (i, m) in msgs.iter().enumerate() {
        // Headers, properties, operation, version, no password, and the user as GET returned it.
        assert_message(m, &events[i], &relative(&s, &gets[i]));
        assert_body_keys(m, &["operation", "resource"]);
        assert_eq!(m.routing_key, format!("User.{}", m.operation()), "{m:?}");
    }
    assert_eq!(
        msgs.iter().map(Msg::operation).collect::<Vec<_>>(),
        ["Create", "Update", "Update", "Update", "Update"]
    );
    assert_eq!(
        msgs.iter().map(Msg::version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(msgs[1].resource()["name"]["givenName"], json!("Alicia"));
    assert!(
        msgs[2].resource()["emails"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["value"] == "alice@home.example.org"),
        "{:?}",
        msgs[2]
    );
    assert_eq!(msgs[3].resource()["active"], json!(false));
    assert_eq!(msgs[4].resource()["title"], json!("Queen"));
    // A consumer bound to `User.Update` gets the four PATCHes, the same messages.
    let got = updates.take(4, DELIVERY).await;
    updates.assert_quiet(Duration::from_millis(500)).await;
    assert_eq!(
        got.iter().map(|m| (m.id(), &m.body)).collect::<Vec<_>>(),
        msgs[1..]
            .iter()
            .map(|m| (m.id(), &m.body))
            .collect::<Vec<_>>()
    );
    wait_published(&api, DELIVERY).await;
    for q in [q, updates] {
        q.delete().await;
    }
    delete_exchange(&broker.url, &exchange).await;
}

/// The member letters of each version of the group [`group_patch_history`] writes.
const PATCHED_MEMBERS: [&[&str]; 8] = [
    &["a"],
    &["a", "b", "c"],
    &["b", "c"],
    &["c"],
    &["c", "d"],
    &["a", "d"],
    &["a", "c", "d"],
    &[],
];

/// A group written through PATCHes of its members.
struct PatchedGroup {
    id: String,
    /// User id → its letter.
    letters: HashMap<String, &'static str>,
    /// What GET returned after each version (made [`relative`]).
    gets: BTreeMap<u64, Value>,
}

impl PatchedGroup {
    /// The letters of member references (sorted), asserting each is `{"value", "type": "User"}`
    /// plus whatever else the caller allowed in `keys`.
    #[track_caller]
    fn letters_of(&self, refs: &Value, keys: &[&str]) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = refs
            .as_array()
            .unwrap_or_else(|| panic!("not a list of members: {refs}"))
            .iter()
            .map(|m| {
                let got: BTreeSet<&str> =
                    m.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(got, keys.iter().copied().collect::<BTreeSet<_>>(), "{m}");
                assert_eq!(m["type"], json!("User"), "{m}");
                self.letters[m["value"].as_str().unwrap()]
            })
            .collect();
        out.sort();
        out
    }

    /// (added, removed) letters between two versions.
    fn delta(
        &self,
        before: &[&'static str],
        after: &[&'static str],
    ) -> (Vec<&'static str>, Vec<&'static str>) {
        let added = after
            .iter()
            .filter(|x| !before.contains(x))
            .copied()
            .collect();
        let removed = before
            .iter()
            .filter(|x| !after.contains(x))
            .copied()
            .collect();
        (added, removed)
    }
}

/// Users a–d, a group created with a, then seven PATCHes of its members (one also renames it):
/// by value filter, Entra's remove by value, a replace of the whole list, an add of a member already
/// there, a remove by a filter on `type`. Asserts the members after each ([`PATCHED_MEMBERS`]).
async fn group_patch_history(s: &Scimd) -> PatchedGroup {
    let api = s.client();
    let mut ids: BTreeMap<&'static str, String> = BTreeMap::new();
    for n in ["a", "b", "c", "d"] {
        let u = api
            .create_user(user_body(
                &format!("amqp.patch.{n}"),
                &format!("Member {n}"),
            ))
            .await;
        ids.insert(n, id_of(&u));
    }
    let id = |n: &str| ids[n].clone();
    let gid = id_of(&api.create_group_with("patched", &[&id("a")]).await);
    let path = format!("/Groups/{gid}");
    let mut gets = BTreeMap::new();
    gets.insert(1, relative(s, &api.group(&gid).await));
    let patches = [
        json!([{"op": "add", "path": "members", "value": [{"value": id("b")}, {"value": id("c")}]}]),
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", id("a"))}]),
        // Entra removes members by value.
        json!([{"op": "Remove", "path": "members", "value": [{"value": id("b")}]}]),
        // A rename and a new member in one PATCH: one event.
        json!([
            {"op": "replace", "path": "displayName", "value": "patched and renamed"},
            {"op": "add", "path": "members", "value": [{"value": id("d")}]},
        ]),
        json!([{"op": "replace", "path": "members", "value": [{"value": id("a")}, {"value": id("d")}]}]),
        // d is a member already: only c is added.
        json!([{"op": "add", "path": "members", "value": [{"value": id("c")}, {"value": id("d")}]}]),
        json!([{"op": "remove", "path": "members[type eq \"User\"]"}]),
    ];
    for ops in patches {
        let r = api.patch(&path, &patch_ops(ops)).await.expect(204);
        let g = api.group(&gid).await;
        assert_eq!(
            r.header("ETag").as_ref(),
            g["meta"]["version"].as_str().map(str::to_string).as_ref()
        );
        gets.insert(version_number(&g["meta"]["version"]), relative(s, &g));
    }
    let group = PatchedGroup {
        id: gid,
        letters: ids.iter().map(|(k, v)| (v.clone(), *k)).collect(),
        gets,
    };
    let shown: Vec<Vec<&str>> = group
        .gets
        .values()
        .map(|g| {
            group.letters_of(
                &g.get("members").cloned().unwrap_or(json!([])),
                &["value", "type", "display", "$ref"],
            )
        })
        .collect();
    assert_eq!(shown, PATCHED_MEMBERS, "members after each version");
    assert_eq!(
        group.gets.keys().copied().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u64>>()
    );
    assert_eq!(group.gets[&5]["displayName"], json!("patched and renamed"));
    group
}

/// The log records each member PATCH as one `patch` event carrying only its delta.
#[track_caller]
fn assert_patch_events_carry_deltas(events: &[LogEvent], g: &PatchedGroup) {
    let group: Vec<&LogEvent> = events.iter().filter(|e| e.resource_id == g.id).collect();
    assert_eq!(
        group
            .iter()
            .map(|e| (e.kind.as_str(), e.version))
            .collect::<Vec<_>>(),
        [
            ("create", 1),
            ("patch", 2),
            ("patch", 3),
            ("patch", 4),
            ("patch", 5),
            ("patch", 6),
            ("patch", 7),
            ("patch", 8)
        ],
        "{group:#?}"
    );
    for (i, e) in group.iter().enumerate().skip(1) {
        let letters = |refs: &[MemberRef]| -> Vec<&'static str> {
            let mut v: Vec<&'static str> = refs.iter().map(|m| g.letters[&m.value]).collect();
            v.sort();
            v
        };
        assert_eq!(
            (letters(&e.members_added), letters(&e.members_removed)),
            g.delta(PATCHED_MEMBERS[i - 1], PATCHED_MEMBERS[i]),
            "the delta of {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn group_member_patches_publish_updates_with_the_members_as_of_each_event() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("group-patch");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let g = group_patch_history(&s).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4 + 8, "{events:#?}");
    assert_patch_events_carry_deltas(&events, &g);
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let mut shown = Vec::new();
    for (m, e) in msgs.iter().zip(&events) {
        if e.resource_type != "Group" {
            assert_eq!(m.id(), e.event_id, "{m:?}");
            continue;
        }
        assert_message(m, e, &g.gets[&e.version]);
        assert_body_keys(m, &["operation", "resource"]);
        shown.push(g.letters_of(
            &m.resource().get("members").cloned().unwrap_or(json!([])),
            &["value", "type", "display", "$ref"],
        ));
    }
    assert_eq!(shown, PATCHED_MEMBERS, "members in each group message");
    wait_published(&s.client(), DELIVERY).await;
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn group_member_patches_publish_exactly_their_delta_with_amqp_group_members_changes() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("group-patch-changes");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue).env("AMQP_GROUP_MEMBERS", "changes")).await;
    let g = group_patch_history(&s).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4 + 8, "{events:#?}");
    assert_patch_events_carry_deltas(&events, &g);
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    let mut deltas = Vec::new();
    for (m, e) in msgs.iter().zip(&events) {
        if e.resource_type != "Group" {
            assert_eq!(m.id(), e.event_id, "{m:?}");
            assert_body_keys(m, &["operation", "resource"]);
            continue;
        }
        assert_body_keys(m, &["operation", "resource", "members"]);
        assert!(
            m.resource().get("members").is_none(),
            "no member list with `changes`: {m:?}"
        );
        let mut get = g.gets[&e.version].clone();
        get.as_object_mut().unwrap().remove("members");
        assert_message(m, e, &get);
        let body_members: BTreeSet<&str> = m.body["members"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(body_members, BTreeSet::from(["added", "removed"]), "{m:?}");
        deltas.push((
            g.letters_of(&m.body["members"]["added"], &["value", "type"]),
            g.letters_of(&m.body["members"]["removed"], &["value", "type"]),
        ));
    }
    let mut expected = vec![(vec!["a"], vec![])];
    for w in PATCHED_MEMBERS.windows(2) {
        expected.push(g.delta(w[0], w[1]));
    }
    assert_eq!(
        deltas, expected,
        "members.added / members.removed of each group message"
    );
    // Spelled out, so that a wrong expectation above cannot hide a wrong delta.
    assert_eq!(
        expected,
        [
            (vec!["a"], vec![]),
            (vec!["b", "c"], vec![]),
            (vec![], vec!["a"]),
            (vec![], vec!["b"]),
            (vec!["d"], vec![]),
            (vec!["a"], vec!["c"]),
            (vec!["c"], vec![]),
            (vec![], vec!["a", "c", "d"]),
        ]
    );
    wait_published(&s.client(), DELIVERY).await;
    q.delete().await;
}

/// Members of the large group, added in PATCHes of [`CHUNK`].
const LARGE: usize = 2000;
const CHUNK: usize = 500;

/// Creates `n` users named `{prefix}.{i}` (16 at a time); returns their ids in that order.
async fn create_many_users(api: &Api, prefix: &str, n: usize) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}.{i}");
            async move {
                id_of(
                    &api.create_user(user_body(&name, &format!("Large {i}")))
                        .await,
                )
            }
        })
        .buffered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn single_member_patches_of_a_group_of_thousands_publish_its_membership_and_its_delta() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // The group is built with AMQP off; then a copy of the store goes to a second server. One
    // server publishes in full mode, the other with AMQP_GROUP_MEMBERS=changes, both from position
    // 1 (the group as of each 500-member PATCH is rebuilt by undoing every later delta), and the
    // same single-member PATCHes go to both while they publish live.
    let mut full = Scimd::start_default().await;
    let api = full.client();
    let users = create_many_users(&api, "amqp.large", LARGE + 3).await;
    let (members, extra) = users.split_at(LARGE);
    let gid = id_of(&api.create_group_with("large", &[]).await);
    let path = format!("/Groups/{gid}");
    let mut setup = BTreeMap::new();
    setup.insert(1, relative(&full, &api.group(&gid).await));
    for chunk in members.chunks(CHUNK) {
        let value: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        api.patch(
            &path,
            &patch_ops(json!([{"op": "add", "path": "members", "value": value}])),
        )
        .await
        .expect(204);
        let g = api.group(&gid).await;
        setup.insert(version_number(&g["meta"]["version"]), relative(&full, &g));
    }
    assert_eq!(member_ids(&setup[&5]), sorted(members));
    full.stop().await;
    let copy = tempfile::Builder::new()
        .prefix("scimd-amqp-copy-")
        .tempdir()
        .expect("temp dir");
    for entry in std::fs::read_dir(full.data_path()).expect("read DATA_PATH") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "scimd.lock" {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy store");
        }
    }
    let (full_queue, changes_queue) = (unique("large-full"), unique("large-changes"));
    let mut full_q = Queue::open(&broker.url, &full_queue).await;
    let mut changes_q = Queue::open(&broker.url, &changes_queue).await;
    full.opts = broker.opts(&full_queue);
    full.start_again().await;
    let changes = Scimd::start(
        broker
            .opts(&changes_queue)
            .env("AMQP_GROUP_MEMBERS", "changes")
            .env("DATA_PATH", copy.path().to_str().unwrap()),
    )
    .await;

    let add = |id: &String| json!([{"op": "add", "path": "members", "value": [{"value": id}]}]);
    let singles: [(Value, Vec<&String>, Vec<&String>); 7] = [
        (add(&extra[0]), vec![&extra[0]], vec![]),
        (
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", members[17])}]),
            vec![],
            vec![&members[17]],
        ),
        (add(&extra[1]), vec![&extra[1]], vec![]),
        // Entra's removal by value.
        (
            json!([{"op": "remove", "path": "members", "value": [{"value": members[1500]}]}]),
            vec![],
            vec![&members[1500]],
        ),
        (
            json!([{"op": "remove", "path": "members", "value": [{"value": extra[0]}]}]),
            vec![],
            vec![&extra[0]],
        ),
        (add(&members[17]), vec![&members[17]], vec![]),
        (add(&extra[2]), vec![&extra[2]], vec![]),
    ];
    let servers = [&full, &changes];
    let mut gets = [setup.clone(), setup];
    for (ops, _, _) in &singles {
        for (k, s) in servers.iter().enumerate() {
            let api = s.client();
            api.patch(&path, &patch_ops(ops.clone())).await.expect(204);
            let g = api.group(&gid).await;
            gets[k].insert(version_number(&g["meta"]["version"]), relative(s, &g));
        }
    }
    let mut end: Vec<&String> = members.iter().filter(|id| **id != members[1500]).collect();
    end.extend([&extra[1], &extra[2]]);
    for got in &gets {
        assert_eq!(got.len(), 1 + 4 + 7);
        assert_eq!(member_ids(&got[&12]), sorted(&end));
        let sizes: Vec<usize> = got.range(6..).map(|(_, g)| member_ids(g).len()).collect();
        assert_eq!(sizes, [2001, 2000, 2001, 2000, 1999, 2000, 2001]);
    }

    // Full mode: each group message lists the members as of its event, exactly as GET showed them.
    let events = log_events(&full).await;
    assert_eq!(events.len(), LARGE + 3 + 1 + 4 + 7);
    let mut msgs = full_q.take_all_of(&event_ids(&events), RECOVERY).await;
    msgs.extend(full_q.drain(Duration::from_secs(1)).await);
    assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    let mut seen = HashSet::new();
    for m in msgs.iter().filter(|m| m.scim_id() == gid) {
        if !seen.insert(m.id().to_string()) {
            continue;
        }
        let e = by_message(&events, m);
        assert_message(m, e, &gets[0][&e.version]);
        assert_body_keys(m, &["operation", "resource"]);
    }
    assert_eq!(seen.len(), 12, "one message per group event");

    // Changes mode: each group message carries exactly its delta and no member list.
    let events = log_events(&changes).await;
    assert_eq!(events.len(), LARGE + 3 + 1 + 4 + 7);
    let mut msgs = changes_q.take_all_of(&event_ids(&events), RECOVERY).await;
    msgs.extend(changes_q.drain(Duration::from_secs(1)).await);
    assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    let ids_of = |refs: &Value| -> Vec<String> {
        let list = refs
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {refs}"));
        for r in list {
            assert_eq!(r["type"], json!("User"), "{r}");
        }
        let ids: Vec<&str> = list.iter().map(|r| r["value"].as_str().unwrap()).collect();
        sorted(&ids)
    };
    let mut seen = HashSet::new();
    for m in msgs.iter().filter(|m| m.scim_id() == gid) {
        if !seen.insert(m.id().to_string()) {
            continue;
        }
        let e = by_message(&events, m);
        assert_body_keys(m, &["operation", "resource", "members"]);
        let mut get = gets[1][&e.version].clone();
        get.as_object_mut().unwrap().remove("members");
        assert_message(m, e, &get);
        let (added, removed) = (
            ids_of(&m.body["members"]["added"]),
            ids_of(&m.body["members"]["removed"]),
        );
        let expected: (Vec<String>, Vec<String>) = match e.version {
            1 => (vec![], vec![]),
            v @ 2..=5 => (
                sorted(&members[(v as usize - 2) * CHUNK..(v as usize - 1) * CHUNK]),
                vec![],
            ),
            v => {
                let (_, a, r) = &singles[v as usize - 6];
                (sorted(a), sorted(r))
            }
        };
        assert_eq!(
            (added.len(), removed.len()),
            (expected.0.len(), expected.1.len()),
            "delta sizes of group v{}",
            e.version
        );
        assert_eq!(
            (added, removed),
            expected,
            "the delta of group v{}",
            e.version
        );
    }
    assert_eq!(seen.len(), 12, "one message per group event");
    for q in [full_q, changes_q] {
        q.delete().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_to_the_same_resources_arrive_in_increasing_version_order() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("ordering");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(id_of(
            &api.create_user(user_body(&format!("amqp.order.{i}"), "v0"))
                .await,
        ));
    }
    let mut groups = Vec::new();
    for (i, user) in users.iter().enumerate().take(2) {
        groups.push(id_of(
            &api.create_group_with(&format!("order {i}"), &[user]).await,
        ));
    }
    const WRITES: usize = 400;
    let statuses: Vec<(usize, u16)> = stream::iter(0..WRITES)
        .map(|i| {
            let api = api.clone();
            let users = users.clone();
            let groups = groups.clone();
            async move {
                // Three writes in five on a user, two on a group whose membership changes each time.
                let r = if i % 5 < 3 {
                    let u = i % users.len();
                    api.put(&format!("/Users/{}", users[u]), &user_body(&format!("amqp.order.{u}"), &format!("v{i}")))
                        .await
                } else {
                    let g = i % groups.len();
                    let members: Vec<Value> = users
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| (i >> k) & 1 == 1)
                        .map(|(_, id)| json!({"value": id}))
                        .collect();
                    api.put(
                        &format!("/Groups/{}", groups[g]),
                        &json!({"schemas": [GROUP_SCHEMA], "displayName": format!("order {g}"), "members": members}),
                    )
                    .await
                };
                (i, r.status)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<_> = statuses.iter().filter(|(_, st)| *st != 200).collect();
    assert!(failed.is_empty(), "every PUT must succeed: {failed:?}");

    wait_published(&api, RECOVERY).await;
    let events = log_events(&s).await;
    assert_eq!(events.len(), 4 + 2 + WRITES);
    let mut msgs = q.take_all_of(&event_ids(&events), DELIVERY).await;
    msgs.extend(q.drain(Duration::from_secs(1)).await);
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );

    // Each message describes its own version: a user's after-image, a group's members as of it
    // (folded from the log's deltas).
    let mut members_at: HashMap<(String, u64), BTreeSet<String>> = HashMap::new();
    let mut current: HashMap<String, BTreeSet<String>> = HashMap::new();
    for e in events.iter().filter(|e| e.resource_type == "Group") {
        let set = current.entry(e.resource_id.clone()).or_default();
        for m in &e.members_added {
            set.insert(m.value.clone());
        }
        for m in &e.members_removed {
            set.remove(&m.value);
        }
        members_at.insert((e.resource_id.clone(), e.version), set.clone());
    }
    for m in &msgs {
        let e = by_message(&events, m);
        assert_eq!(
            version_number(&m.resource()["meta"]["version"]),
            e.version,
            "{m:?}"
        );
        if e.resource_type == "User" {
            let attrs = e.attributes.as_ref().expect("user events carry attributes");
            assert_eq!(m.resource()["displayName"], attrs["displayName"], "{m:?}");
        } else {
            let expected = &members_at[&(e.resource_id.clone(), e.version)];
            let got: BTreeSet<String> = member_ids(m.resource()).into_iter().collect();
            assert_eq!(
                &got, expected,
                "members of group {} v{}: {m:?}",
                e.resource_id, e.version
            );
        }
    }
    q.delete().await;
}

// ---------------------------------------------------------------------------------------------
// Failures: broker outage, scimd crash, restart
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_delays_messages_but_writes_succeed_and_none_is_lost() {
    let Some((broker, _exclusive)) = Broker::exclusive().await else {
        return;
    };
    let queue = unique("outage");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(id_of(
            &api.create_user(user_body(&format!("amqp.outage.{i}"), "before"))
                .await,
        ));
    }
    let g = id_of(
        &api.create_group_with("outage", &[&users[0], &users[5]])
            .await,
    );
    let before = q.take(7, DELIVERY).await;
    wait_published(&api, DELIVERY).await;
    q.close().await;

    // A client keeps writing, about 50 writes/s, through the whole outage: the broker goes down while
    // the publisher is busy (confirms in flight) and comes back while writes still arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, users, g, stop) = (api.clone(), users.clone(), g.clone(), stop.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = if i % 10 == 9 {
                    api.post(
                        "/Users",
                        &user_body(&format!("amqp.outage.new.{i}"), "during"),
                    )
                    .await
                } else if i % 10 == 4 {
                    let members: Vec<Value> = users[..5]
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| (i / 10 + k).is_multiple_of(2))
                        .map(|(_, id)| json!({"value": id}))
                        .collect();
                    api.put(
                        &format!("/Groups/{g}"),
                        &json!({"schemas": [GROUP_SCHEMA], "displayName": "outage", "members": members}),
                    )
                    .await
                } else {
                    let u = i % 5;
                    api.put(
                        &format!("/Users/{}", users[u]),
                        &user_body(&format!("amqp.outage.{u}"), &format!("during {i}")),
                    )
                    .await
                };
                results.push((i, r.status, started.elapsed()));
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.stop().await;

    // The publisher reports that it is retrying, with the error, and lags.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let down = loop {
        let st = amqp_status(&api).await;
        if st["state"] == json!("retrying")
            && st["lastError"].as_str().is_some_and(|e| !e.is_empty())
            && st["lag"].as_u64().is_some_and(|lag| lag > 0)
        {
            break st;
        }
        seen.push(st);
        assert!(
            Instant::now() < deadline,
            "/status never showed the publisher retrying with an error and a lag: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("while the broker was down: {down}");
    assert_eq!(
        down["lag"].as_u64(),
        Some(down["position"].as_u64().unwrap() - down["checkpoint"].as_u64().unwrap()),
        "{down}"
    );
    // A delete with a cascade, while the broker is down.
    api.delete(&format!("/Users/{}", users[5]))
        .await
        .expect(204);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = amqp_status(&api).await;
    assert!(
        still["lag"].as_u64() > down["lag"].as_u64(),
        "the lag grows while the broker is down: {down} then {still}"
    );

    broker.start().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let results = writer.await.unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, st, _)| !(200..300).contains(st))
        .collect();
    assert!(
        failed.is_empty(),
        "writes must succeed while the broker is down: {failed:?}"
    );
    let slowest = results.iter().map(|(_, _, t)| *t).max().unwrap();
    assert!(
        slowest < Duration::from_secs(5),
        "a write took {slowest:?}: writes must not wait for the broker"
    );
    let up = wait_published(&api, RECOVERY).await;
    eprintln!(
        "{} writes during the outage, slowest {slowest:?}; after the broker came back: {up}",
        results.len()
    );

    let events = log_events(&s).await;
    assert_eq!(up["position"].as_u64(), Some(events.len() as u64));
    let mut q = Queue::open(&broker.url, &queue).await;
    let later: HashSet<String> = event_ids(&events[7..]);
    let mut msgs = before.clone();
    msgs.extend(q.take_all_of(&later, DELIVERY).await);
    msgs.extend(q.drain(Duration::from_secs(1)).await);
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );
    q.close().await;

    // Again, and this time scimd is restarted while the broker is down: it stops promptly and
    // cleanly, and the new process resumes from the checkpoint once the broker is back.
    broker.stop().await;
    for i in 0..20 {
        api.create_user(user_body(&format!("amqp.outage.restart.{i}"), "down"))
            .await;
    }
    let stopping = Instant::now();
    s.restart().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "a restart with the broker down took {:?}",
        stopping.elapsed()
    );
    let api = s.client();
    for i in 20..30 {
        api.create_user(user_body(&format!("amqp.outage.restart.{i}"), "down"))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let down = loop {
        let st = amqp_status(&api).await;
        if st["state"] == json!("retrying") && st["lastError"].is_string() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "not retrying after the restart: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        down["checkpoint"].as_u64(),
        Some(events.len() as u64),
        "the restarted publisher starts at its checkpoint: {down}"
    );
    broker.start().await;
    wait_published(&api, RECOVERY).await;
    let all_events = log_events(&s).await;
    assert_eq!(all_events.len(), events.len() + 30);
    let mut q = Queue::open(&broker.url, &queue).await;
    let new = event_ids(&all_events[events.len()..]);
    let mut again = q.take_all_of(&new, DELIVERY).await;
    again.extend(q.drain(Duration::from_secs(1)).await);
    let old: Vec<&Msg> = again.iter().filter(|m| !new.contains(m.id())).collect();
    assert!(
        old.is_empty(),
        "messages confirmed before the restart were published again: {old:#?}"
    );
    let duplicates = assert_every_event_exactly_or_again(&all_events[events.len()..], &again);
    assert_eq!(duplicates, 0, "{again:#?}");
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_that_rejects_messages_delays_them_but_every_one_gets_through() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    // At most 5 ready messages; beyond, RabbitMQ refuses new ones with a nack (`reject-publish`).
    // Whatever the broker accepted must count as published (checkpoint), or the publisher would
    // resend the same first messages forever while the rest never get in.
    let queue = unique("nack");
    let policy = queue.clone();
    let connection = connect(&broker.url).await;
    let channel = connection.create_channel().await.expect("create channel");
    channel
        .queue_declare(
            queue.as_str().into(),
            durable_queue(),
            FieldTable::default(),
        )
        .await
        .expect("declare queue");
    broker
        .ctl(&[
            "set_policy",
            "--apply-to",
            "queues",
            &policy,
            &format!("^{}$", queue.replace('.', "\\.")),
            r#"{"max-length": 5, "overflow": "reject-publish"}"#,
        ])
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !broker
        .ctl(&["list_queues", "name", "policy"])
        .await
        .lines()
        .any(|l| l.starts_with(&queue) && l.contains(&policy))
    {
        assert!(
            Instant::now() < deadline,
            "the policy never applied to {queue}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    for i in 0..20 {
        api.create_user(user_body(&format!("amqp.nack.{i}"), "n"))
            .await;
    }
    // With nobody consuming, 5 get in and the publisher reports the refusals.
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let st = amqp_status(&api).await;
        if st["lastError"].is_string() && st["lag"].as_u64() > Some(0) {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no error reported while the queue refuses messages: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("while the queue was full: {refused}");

    // A slow consumer (one message at a time): every event gets through, 5 at a time at most.
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("basic.qos");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let events = log_events(&s).await;
    let mut missing = event_ids(&events);
    let mut msgs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(delivery))) = tokio::time::timeout(left, consumer.next()).await else {
            let st = amqp_status(&api).await;
            let ids: Vec<&str> = msgs.iter().map(Msg::id).collect();
            panic!(
                "{} of {} events never got through a queue that only takes 5 at a time; {} messages \
                 received ({} distinct); /status: {st}\nmessage ids in order: {ids:#?}",
                missing.len(),
                events.len(),
                msgs.len(),
                ids.iter().collect::<HashSet<_>>().len()
            );
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        let m = Msg::from_delivery(&delivery);
        missing.remove(m.id());
        msgs.push(m);
    }
    wait_published(&api, RECOVERY).await;
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );
    broker.ctl(&["clear_policy", &policy]).await;
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "bye".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_accepts_connections_but_never_answers_is_reported_and_retried() {
    // Needs no RabbitMQ: a TCP listener that accepts and then says nothing, like a broker whose VM
    // froze or a load balancer in front of a dead node. The publisher must not wait forever on the
    // AMQP handshake: it reports an error in /status and tries again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let hold = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                open.push(socket);
            }
        })
    };
    let s = Scimd::start(
        Opts::default()
            .env("AMQP", &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
            .env("QUEUE", "never"),
    )
    .await;
    let api = s.client();
    api.create_user(user_body("amqp.blackhole", "B")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        last = amqp_status(&api).await;
        if last["state"] == json!("retrying")
            && last["lastError"].as_str().is_some_and(|e| !e.is_empty())
            && accepted.load(Ordering::SeqCst) >= 2
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s against a broker that never answers, the publisher still waits on its first \
             connection ({} accepted) and /status shows no error: {last}",
            accepted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{last}");
    assert_eq!(last["lag"], json!(1), "{last}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scimd_killed_mid_stream_loses_no_message_and_only_repeats_earlier_ones() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("crash");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();

    // A burst of creates; the consumer runs alongside and scimd is killed once it is well underway.
    const BURST: usize = 1500;
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            stream::iter(0..BURST)
                .map(|i| {
                    let api = api.clone();
                    async move {
                        let r = api
                            .request_json(
                                Method::POST,
                                "/Users",
                                &user_body(&format!("amqp.crash.{i}"), "burst"),
                            )
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await
                            .ok()?;
                        (r.status().as_u16() == 201).then_some(())?;
                        let v: Value = r.json().await.ok()?;
                        Some(id_of(&v))
                    }
                })
                .buffer_unordered(16)
                .filter_map(|x| async move { x })
                .collect::<Vec<String>>()
                .await
        })
    };
    let mut msgs = Vec::new();
    while msgs.len() < 200 {
        match q.next(DELIVERY).await {
            Some(m) => msgs.push(m),
            None => panic!(
                "only {} messages within {DELIVERY:?} of the burst",
                msgs.len()
            ),
        }
    }
    s.kill().await;
    let created = writer.await.unwrap();
    eprintln!(
        "killed scimd after {} consumed messages; {} of {BURST} creates were answered 201",
        msgs.len(),
        created.len()
    );
    assert!(
        created.len() < BURST,
        "the kill came after the burst: make it longer"
    );

    s.start_again().await;
    let api = s.client();
    for i in 0..20 {
        api.create_user(user_body(&format!("amqp.crash.after.{i}"), "after"))
            .await;
    }
    wait_published(&api, RECOVERY).await;
    let events = log_events(&s).await;
    let consumed: HashSet<String> = msgs.iter().map(|m| m.id().to_string()).collect();
    let rest: HashSet<String> = event_ids(&events).difference(&consumed).cloned().collect();
    msgs.extend(q.take_all_of(&rest, DELIVERY).await);
    msgs.extend(q.drain(Duration::from_secs(1)).await);
    let duplicates = assert_every_event_exactly_or_again(&events, &msgs);
    // Every 201 is in the log (and so was published).
    let logged: HashSet<&str> = events.iter().map(|e| e.resource_id.as_str()).collect();
    for id in &created {
        assert!(
            logged.contains(id.as_str()),
            "user {id} was answered 201 but is not in the log"
        );
    }
    // A duplicate repeats a message seen before: same message_id, same content (checked here).
    assert_ordered_per_resource(&msgs);
    eprintln!(
        "{} messages for {} events ({duplicates} duplicates)",
        msgs.len(),
        events.len()
    );
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_scimd_continues_from_its_checkpoint_without_publishing_anything_twice() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("restart");
    let mut q = Queue::open(&broker.url, &queue).await;
    let mut s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(id_of(
            &api.create_user(user_body(&format!("amqp.restart.{i}"), "one"))
                .await,
        ));
    }
    wait_published(&api, DELIVERY).await;
    let first = q.take(30, DELIVERY).await;

    s.restart().await;
    let api = s.client();
    // Before any new write, the publisher resumes at its durable checkpoint.
    let st = wait_published(&api, DELIVERY).await;
    assert_eq!(st["checkpoint"], json!(30), "{st}");
    q.assert_quiet(Duration::from_secs(2)).await;
    for (i, id) in ids.iter().enumerate().take(10) {
        api.put(
            &format!("/Users/{id}"),
            &user_body(&format!("amqp.restart.{i}"), "two"),
        )
        .await
        .expect(200);
    }
    wait_published(&api, DELIVERY).await;
    let second = q.take(10, DELIVERY).await;
    q.assert_quiet(Duration::from_secs(2)).await;
    let events = log_events(&s).await;
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    let duplicates = assert_every_event_exactly_or_again(&events, &all);
    assert_eq!(duplicates, 0, "a clean restart must not republish anything");
    for m in &second {
        assert!(
            m.position() > 30 && m.operation() == "Update" && m.version() == 2,
            "{m:?}"
        );
        assert!(!m.redelivered, "{m:?}");
    }
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_request_publishes_one_message_per_event_in_log_order() {
    let Some((broker, _shared)) = Broker::shared().await else {
        return;
    };
    let queue = unique("bulk");
    let mut q = Queue::open(&broker.url, &queue).await;
    let s = Scimd::start(broker.opts(&queue)).await;
    let api = s.client();
    let answer = api
        .post(
            "/Bulk",
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [
                    {"method": "POST", "path": "/Groups", "bulkId": "g",
                     "data": {"displayName": "Bulk Group",
                              "members": [{"value": "bulkId:keep"}, {"value": "bulkId:gone"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "keep",
                     "data": {"userName": "bulk.keep", "password": PASSWORD}},
                    {"method": "POST", "path": "/Users", "bulkId": "gone", "data": {"userName": "bulk.gone"}},
                    {"method": "PATCH", "path": "/Users/bulkId:keep",
                     "data": patch_ops(json!([{"op": "add", "path": "title", "value": "Kept"}]))},
                    {"method": "DELETE", "path": "/Users/bulkId:gone"},
                    {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "BULK.KEEP"}},
                ],
            }),
        )
        .await
        .expect(200)
        .json();
    let statuses: Vec<&str> = answer["Operations"]
        .as_array()
        .map(|ops| ops.iter().filter_map(|o| o["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        statuses,
        ["201", "201", "201", "200", "204", "409"],
        "{answer}"
    );
    let events = log_events(&s).await;
    // keep, gone, the group (after the users it refers to), keep's PATCH, gone's delete and the
    // group's change as gone leaves it (a membership delta); the refused duplicate wrote nothing.
    assert_eq!(
        events
            .iter()
            .map(|e| format!("{}:{}", e.resource_type, e.kind))
            .collect::<Vec<_>>(),
        [
            "User:create",
            "User:create",
            "Group:create",
            "User:patch",
            "User:delete",
            "Group:patch"
        ],
        "{events:#?}"
    );
    let msgs = q.take(events.len(), DELIVERY).await;
    q.assert_quiet(Duration::from_secs(1)).await;
    assert_eq!(msgs.len(), events.len());
    for (m, e) in msgs.iter().zip(&events) {
        assert_eq!(m.message_id.as_deref(), Some(e.event_id.as_str()), "{m:?}");
        assert_eq!(m.position(), e.position);
        assert_eq!(m.operation(), e.operation(), "{m:?}");
        assert_eq!(m.version(), e.version);
        assert!(!m.body.to_string().contains(PASSWORD), "{m:?}");
    }
    // Each resource's last message carries it as GET returns it now.
    let group_id = events[2].resource_id.clone();
    let keep_id = events[0].resource_id.clone();
    assert_eq!(
        normalized(msgs[5].resource()),
        relative(&s, &api.group(&group_id).await)
    );
    assert_eq!(
        normalized(msgs[3].resource()),
        relative(&s, &api.user(&keep_id).await)
    );
    // The group as created held both users; the Delete carries the user as it was.
    assert_eq!(
        msgs[2].resource()["members"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(msgs[4].resource()["userName"], "bulk.gone");
    q.delete().await;
}
