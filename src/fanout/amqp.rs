//! The AMQP publisher: a log subscriber that sends every change to RabbitMQ.
//!
//! The log is the outbox. Messages are published `mandatory` with publisher confirms, pipelined in
//! windows of at most [`WINDOW`], each confirm awaited with a timeout; the checkpoint advances only
//! past confirmed messages that reached a queue. A broker confirms an unroutable message too (the
//! queue was deleted, or unbound from AMQP_EXCHANGE), so without `mandatory` it would be lost; with
//! it the broker returns the message first, and a return counts as a failure. Any failure (broker
//! down, nack, return, confirm timeout) drops the connection, reconnects with capped backoff for as
//! long as it takes (declaring and binding QUEUE again, so a deleted queue comes back), and
//! republishes from the checkpoint:
//! delivery is at-least-once, duplicates carry the `message_id` (event id) they had the first time.
//! One channel publishes in log order, so per resource, versions arrive in increasing order
//! (except for such redeliveries).
//!
//! A message the broker refuses for good (see `amqp_refusals`: returned, or over its
//! `max_message_size`, several times in a row) is parked like a projection parks a change: kept
//! in the store by resource, shown in `/status`, published again by `scimd projection retry amqp`.
//! Later messages go on meanwhile.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};

use super::amqp_groups::GroupDocuments;
use super::amqp_refusals::Refusals;
use super::status::{StatusBoard, SubscriberState};
use crate::config::{AmqpConfig, GroupMembers};
use crate::metrics::METRICS;
use crate::store::{Event, EventKind, Parked, Snapshot, Store, StoreError, Write, WriteContext};
use scim::ResourceType;

/// The subscriber's name: its checkpoint key and its entry in `/status`.
pub const NAME: &str = "amqp";
/// Most messages in flight (published, not yet confirmed).
const WINDOW: usize = 512;
/// How long the broker has to confirm a message before the connection is considered broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting, opening the channel and declaring may take together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Reconnect backoff bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why a publishing session (or a retry of parked messages) ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// serde_json fails only on non-string map keys or a failing `Serialize` impl, which a JSON
    /// value does not have; should it ever fail, the session ends and the message is retried,
    /// never published empty.
    #[error("the message for position {position} does not serialise: {source}")]
    Encode {
        position: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("the broker refused (nack) the message for position {0}")]
    Nack(u64),
    #[error("the broker returned the message for position {0}: no queue is bound to receive it")]
    Returned(u64),
    /// The broker closed the channel with PRECONDITION_FAILED over this message.
    #[error("the broker refused the message for position {position}: {source}")]
    Refused {
        position: u64,
        #[source]
        source: lapin::Error,
    },
    #[error("the log holds no event at position {0}, which a parked message names")]
    Missing(u64),
    #[error("no confirm for position {0} within {CONFIRM_TIMEOUT:?}")]
    ConfirmTimeout(u64),
    #[error("saving the checkpoint failed: {0}")]
    Checkpoint(String),
    #[error("the broker did not complete the connection and declarations within {SETUP_TIMEOUT:?}")]
    SetupTimeout,
    #[error("the log stopped (shutting down)")]
    Closed,
}

impl SessionError {
    /// The `kind` label of `scimd_subscriber_errors_total`.
    fn kind(&self) -> &'static str {
        match self {
            SessionError::Amqp(_) | SessionError::SetupTimeout => "unavailable",
            SessionError::Store(_) => "store",
            SessionError::Nack(_) => "nack",
            SessionError::Returned(_) => "returned",
            SessionError::Refused { .. } => "refused",
            SessionError::Missing(_) => "store",
            SessionError::Encode { .. } => "encode",
            SessionError::ConfirmTimeout(_) => "confirm_timeout",
            SessionError::Checkpoint(_) => "checkpoint",
            SessionError::Closed => "closed",
        }
    }

    /// The message the broker refused (returned, or closed the channel over), if that is the error.
    fn refused_position(&self) -> Option<u64> {
        match self {
            SessionError::Returned(position) | SessionError::Refused { position, .. } => {
                Some(*position)
            }
            _ => None,
        }
    }

    /// `error`, which arose over the message at `position`: a refusal when the broker closed the
    /// channel with PRECONDITION_FAILED (406), which it does for a message over `max_message_size`.
    fn over(position: u64, error: lapin::Error) -> SessionError {
        match error.kind() {
            lapin::ErrorKind::ProtocolError(e) if e.get_id() == 406 => SessionError::Refused {
                position,
                source: error,
            },
            _ => SessionError::Amqp(error),
        }
    }
}

/// An open connection with its confirming channel and where messages go.
struct Session {
    /// Kept open for as long as the channel is used.
    _connection: Connection,
    channel: lapin::Channel,
    /// The exchange to publish to (empty: the default exchange).
    exchange: ShortString,
    /// Without an exchange, the routing key is always the queue.
    fixed_key: Option<ShortString>,
}

/// Publishes the log to RabbitMQ.
pub struct Publisher {
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    config: AmqpConfig,
    url: String,
    /// PUBLIC_URL + BASE_PATH, or empty for relative `meta.location` and `$ref`.
    base: String,
    /// Sessions opened so far (every one after the first is a reconnect).
    sessions: std::sync::atomic::AtomicU64,
    /// Recent refusals, to tell a refusal for good from a passing one.
    refusals: std::sync::Mutex<Refusals>,
}

impl Publisher {
    /// A publisher to `url` configured by `config`.
    pub fn new(
        store: Arc<Store>,
        board: Arc<StatusBoard>,
        config: AmqpConfig,
        url: String,
        base: String,
    ) -> Publisher {
        Publisher {
            store,
            board,
            config,
            url,
            base,
            sessions: Default::default(),
            refusals: Default::default(),
        }
    }

    /// Runs until the process ends: connect, publish, and on any failure reconnect with backoff.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        self.board.report(
            NAME,
            self.checkpoint().unwrap_or(0),
            SubscriberState::Starting,
            None,
        );
        loop {
            let started = std::time::Instant::now();
            let Err(e) = self.session().await;
            if matches!(e, SessionError::Closed) {
                return;
            }
            METRICS.subscriber_error(NAME, e.kind());
            // The error stays on the board until a session is up again.
            self.board.report(
                NAME,
                self.checkpoint().unwrap_or(0),
                SubscriberState::Retrying,
                Some(e.to_string()),
            );
            if started.elapsed() > MAX_BACKOFF {
                backoff = MIN_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn checkpoint(&self) -> Result<u64, StoreError> {
        self.store.snapshot()?.checkpoint(NAME)
    }

    /// The refusal tracker. Its updates are single assignments, so a panic elsewhere while it was
    /// held cannot have left it half-written.
    fn refusals(&self) -> std::sync::MutexGuard<'_, Refusals> {
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shows on the board how many messages are parked.
    fn report_parked(&self) {
        if let Ok(parked) = self.store.snapshot().and_then(|s| s.parked(NAME)) {
            self.board.set_parked(NAME, parked.len() as u64);
        }
    }

    async fn write(&self, write: Write) -> Result<(), SessionError> {
        self.store
            .write(
                write,
                WriteContext {
                    actor: "server".into(),
                    txn_id: format!("checkpoint-{NAME}"),
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| SessionError::Checkpoint(e.detail))
    }

    /// The event at `position`.
    fn event_at(snapshot: &Snapshot, position: u64) -> Result<Event, SessionError> {
        snapshot
            .events(position, 1)?
            .into_iter()
            .next()
            .filter(|e| e.position == position)
            .ok_or(SessionError::Missing(position))
    }

    /// Publishes `event`'s message (mandatory, confirmed) on `session`, its group documents
    /// from `documents` (the session's, or a fresh one for a message out of log order).
    async fn publish(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        documents: &mut GroupDocuments,
        event: &Event,
    ) -> Result<lapin::PublisherConfirm, SessionError> {
        let body = message_body(snapshot, documents, event, &self.base)?;
        let body = serde_json::to_vec(&body).map_err(|source| SessionError::Encode {
            position: event.position,
            source,
        })?;
        let routing_key = session.fixed_key.clone().unwrap_or_else(|| {
            format!("{}.{}", event.resource_type.name(), operation(event)).into()
        });
        session
            .channel
            .basic_publish(
                session.exchange.clone(),
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties(event),
            )
            .await
            .map_err(|e| SessionError::over(event.position, e))
    }

    /// Waits for the broker's verdict on the message at `position`: `Ok` once it reached a queue.
    async fn confirmed(
        position: u64,
        confirm: lapin::PublisherConfirm,
    ) -> Result<(), SessionError> {
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(SessionError::Returned(position)),
            Ok(Ok(_)) => Err(SessionError::Nack(position)),
            Ok(Err(e)) => Err(SessionError::over(position, e)),
            Err(_) => Err(SessionError::ConfirmTimeout(position)),
        }
    }

    /// Parks the message at `position` (refused for good with `error`) and moves the checkpoint
    /// past it, so the messages after it go on. A resource keeps one parked message: a later one
    /// replaces it.
    async fn park(&self, position: u64, error: String) -> Result<(), SessionError> {
        let event = Self::event_at(&self.store.snapshot()?, position)?;
        tracing::error!(
            subscriber = NAME,
            position,
            id = %event.resource_id,
            error,
            "message refused for good: parked until `scimd projection retry amqp`"
        );
        self.write(Write::Park {
            subscriber: NAME.into(),
            id: event.resource_id,
            parked: Parked {
                resource_type: event.resource_type,
                position,
                error,
            },
        })
        .await?;
        self.write(Write::Checkpoint {
            name: NAME.into(),
            position,
        })
        .await?;
        self.report_parked();
        Ok(())
    }

    /// Publishes each parked message again, as it was first published; those a queue takes are
    /// unparked, the others stay parked with the new reason. Answers how many were unparked. A
    /// broker that cannot be reached is an error and leaves every message parked.
    pub async fn retry_parked(&self) -> Result<usize, SessionError> {
        let parked = self.store.snapshot()?.parked(NAME)?;
        let mut session = None;
        let mut unparked = 0;
        for (id, p) in parked {
            let open = match session.take() {
                Some(open) => open,
                None => tokio::time::timeout(SETUP_TIMEOUT, self.open())
                    .await
                    .map_err(|_| SessionError::SetupTimeout)??,
            };
            let outcome = async {
                let confirm = {
                    let snapshot = self.store.snapshot()?;
                    let event = Self::event_at(&snapshot, p.position)?;
                    let mut documents = GroupDocuments::new(self.config.group_members);
                    self.publish(&open, &snapshot, &mut documents, &event)
                        .await?
                };
                Self::confirmed(p.position, confirm).await
            }
            .await;
            match outcome {
                Ok(()) => {
                    self.write(Write::Unpark {
                        subscriber: NAME.into(),
                        id,
                    })
                    .await?;
                    unparked += 1;
                    session = Some(open);
                }
                // A refusal may have closed the channel: the next message gets a new session.
                Err(e) if e.refused_position().is_some() => {
                    self.write(Write::Park {
                        subscriber: NAME.into(),
                        id,
                        parked: Parked {
                            error: e.to_string(),
                            ..p
                        },
                    })
                    .await?;
                }
                Err(e) => {
                    self.report_parked();
                    return Err(e);
                }
            }
        }
        self.report_parked();
        Ok(unparked)
    }

    /// Connects, enables confirms and declares the queue (and exchange).
    async fn open(&self) -> Result<Session, SessionError> {
        let connection = Connection::connect(
            &self.url,
            ConnectionProperties::default().with_connection_name("scimd".into()),
        )
        .await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(
                self.config.queue.as_str().into(),
                durable,
                FieldTable::default(),
            )
            .await?;
        let (exchange, fixed_key): (ShortString, Option<ShortString>) = match &self.config.exchange
        {
            Some(exchange) => {
                let options = ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                };
                channel
                    .exchange_declare(
                        exchange.as_str().into(),
                        ExchangeKind::Topic,
                        options,
                        FieldTable::default(),
                    )
                    .await?;
                // QUEUE stays bound to everything, so that nothing published is lost before
                // consumers bind their own queues.
                channel
                    .queue_bind(
                        self.config.queue.as_str().into(),
                        exchange.as_str().into(),
                        "#".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                (exchange.as_str().into(), None)
            }
            None => ("".into(), Some(self.config.queue.as_str().into())),
        };
        Ok(Session {
            _connection: connection,
            channel,
            exchange,
            fixed_key,
        })
    }

    async fn session(&self) -> Result<Infallible, SessionError> {
        // A broker that accepts TCP but never answers must not hang the publisher for good.
        let session = tokio::time::timeout(SETUP_TIMEOUT, self.open())
            .await
            .map_err(|_| SessionError::SetupTimeout)??;
        if self
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            METRICS.reconnects.with_label_values(&[NAME]).inc();
        }
        let mut checkpoint = self.checkpoint()?;
        self.board
            .report(NAME, checkpoint, SubscriberState::Running, None);
        self.report_parked();
        let mut committed = self.store.committed();
        // Follows the log from the checkpoint on; a session that ends takes it along.
        let mut documents = GroupDocuments::new(self.config.group_members);
        loop {
            while *committed.borrow_and_update() <= checkpoint {
                if committed.changed().await.is_err() {
                    return Err(SessionError::Closed);
                }
            }
            let window = self.refusals().window(checkpoint, WINDOW);
            let snapshot = self.store.snapshot()?;
            let events = snapshot.events(checkpoint + 1, window)?;
            let mut confirms = Vec::with_capacity(events.len());
            // A failed publish ends the window; the confirms of what went before still count.
            let mut failure = None;
            for event in &events {
                match self
                    .publish(&session, &snapshot, &mut documents, event)
                    .await
                {
                    Ok(confirm) => confirms.push((event.position, confirm)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            drop(snapshot);
            let mut confirmed = checkpoint;
            for (position, confirm) in confirms {
                match Self::confirmed(position, confirm).await {
                    Ok(()) => confirmed = position,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            // The confirmed prefix is saved even when a later message failed, so a broker that
            // takes only part of each window (a full queue rejecting publishes) still advances.
            if confirmed > checkpoint {
                self.write(Write::Checkpoint {
                    name: NAME.into(),
                    position: confirmed,
                })
                .await?;
                checkpoint = confirmed;
                if failure.is_none() {
                    self.board
                        .report(NAME, checkpoint, SubscriberState::Running, None);
                }
            }
            if let Some(e) = failure {
                let last = events.last().map_or(checkpoint, |e| e.position);
                if let Some(position) = e.refused_position()
                    && self.refusals().refused(position, events.len(), last)
                {
                    self.park(position, e.to_string()).await?;
                }
                return Err(e);
            }
        }
    }
}

/// The operation name the earlier server used: Create, Update or Delete. An import is a Create when
/// it made the resource (version 1), else an Update.
fn operation(event: &Event) -> &'static str {
    match event.kind {
        EventKind::Create => "Create",
        EventKind::Import if event.version == 1 => "Create",
        EventKind::Import => "Update",
        EventKind::Replace | EventKind::Patch => "Update",
        EventKind::Delete => "Delete",
    }
}

/// `{"operation": …, "resource": {…}}`, and with `AMQP_GROUP_MEMBERS=changes` group messages carry
/// `"members": {"added": […], "removed": […]}` instead of the member list.
fn message_body(
    snapshot: &Snapshot,
    documents: &mut GroupDocuments,
    event: &Event,
    base: &str,
) -> Result<Value, StoreError> {
    let resource = documents.resource(snapshot, event, base)?;
    let mut body = json!({"operation": operation(event)});
    if event.resource_type == ResourceType::Group && documents.mode() == GroupMembers::Changes {
        let refs = |list: &[crate::store::MemberRef]| -> Vec<Value> {
            list.iter()
                .map(|m| json!({"value": m.value, "type": m.member_type.name()}))
                .collect()
        };
        body["members"] = json!({
            "added": refs(&event.members_added),
            "removed": refs(&event.members_removed),
        });
    }
    body["resource"] = resource;
    Ok(body)
}

fn properties(event: &Event) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "scim-position".into(),
        AMQPValue::LongLongInt(i64::try_from(event.position).unwrap_or(i64::MAX)),
    );
    headers.insert(
        "scim-resource-type".into(),
        AMQPValue::LongString(LongString::from(event.resource_type.name())),
    );
    headers.insert(
        "scim-id".into(),
        AMQPValue::LongString(LongString::from(event.resource_id.as_str())),
    );
    headers.insert(
        "scim-version".into(),
        AMQPValue::LongLongInt(i64::try_from(event.version).unwrap_or(i64::MAX)),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(event.event_id.to_string().into())
        .with_timestamp(u64::try_from(event.timestamp.timestamp()).unwrap_or(0))
        .with_headers(headers)
}
