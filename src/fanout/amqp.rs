//! The AMQP publisher: a log subscriber that sends every change to RabbitMQ.
//!
//! The log is the outbox. Messages are published with publisher confirms, pipelined in windows of
//! at most [`WINDOW`], each confirm awaited with a timeout; the checkpoint advances only past
//! confirmed messages. Any failure (broker down, nack, confirm timeout) drops the connection,
//! reconnects with capped backoff for as long as it takes, and republishes from the checkpoint:
//! delivery is at-least-once, duplicates carry the `message_id` (event id) they had the first time.
//! One channel publishes in log order, so per resource, versions arrive in increasing order
//! (except for such redeliveries).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};

use super::document;
use super::status::{StatusBoard, SubscriberState};
use crate::config::{AmqpConfig, GroupMembers};
use crate::scim::ResourceType;
use crate::store::{Event, EventKind, Snapshot, Store, StoreError, Write, WriteContext};

/// The subscriber's name: its checkpoint key and its entry in `/status`.
pub const NAME: &str = "amqp";
/// Most messages in flight (published, not yet confirmed).
const WINDOW: usize = 512;
/// How long the broker has to confirm a message before the connection is considered broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect backoff bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why a publishing session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the broker refused (nack) the message for position {0}")]
    Nack(u64),
    #[error("no confirm for position {0} within {CONFIRM_TIMEOUT:?}")]
    ConfirmTimeout(u64),
    #[error("saving the checkpoint failed: {0}")]
    Checkpoint(String),
    #[error("the log stopped (shutting down)")]
    Closed,
}

/// Publishes the log to RabbitMQ.
pub struct Publisher {
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    config: AmqpConfig,
    url: String,
    /// PUBLIC_URL + BASE_PATH, or empty for relative `meta.location` and `$ref`.
    base: String,
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
        }
    }

    /// Runs until the process ends: connect, publish, and on any failure reconnect with backoff.
    pub async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let checkpoint = self.checkpoint().unwrap_or(0);
            self.board
                .report(NAME, checkpoint, SubscriberState::Starting, None);
            let started = std::time::Instant::now();
            let Err(e) = self.session().await;
            if matches!(e, SessionError::Closed) {
                return;
            }
            let checkpoint = self.checkpoint().unwrap_or(checkpoint);
            self.board.report(
                NAME,
                checkpoint,
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

    async fn session(&self) -> Result<Infallible, SessionError> {
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

        let mut checkpoint = self.checkpoint()?;
        self.board
            .report(NAME, checkpoint, SubscriberState::Running, None);
        let mut committed = self.store.committed();
        loop {
            while *committed.borrow_and_update() <= checkpoint {
                if committed.changed().await.is_err() {
                    return Err(SessionError::Closed);
                }
            }
            let snapshot = self.store.snapshot()?;
            let events = snapshot.events(checkpoint + 1, WINDOW)?;
            let mut confirms = Vec::with_capacity(events.len());
            for event in &events {
                let body = message_body(&snapshot, event, &self.base, self.config.group_members)?;
                let routing_key = fixed_key.clone().unwrap_or_else(|| {
                    format!("{}.{}", event.resource_type.name(), operation(event.kind)).into()
                });
                let confirm = channel
                    .basic_publish(
                        exchange.clone(),
                        routing_key,
                        BasicPublishOptions::default(),
                        &serde_json::to_vec(&body).unwrap_or_default(),
                        properties(event),
                    )
                    .await?;
                confirms.push((event.position, confirm));
            }
            drop(snapshot);
            let mut confirmed = checkpoint;
            for (position, confirm) in confirms {
                match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                    Ok(Ok(c)) if c.is_ack() => confirmed = position,
                    Ok(Ok(_)) => return Err(SessionError::Nack(position)),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(SessionError::ConfirmTimeout(position)),
                }
            }
            if confirmed > checkpoint {
                self.store
                    .write(
                        Write::Checkpoint {
                            name: NAME.into(),
                            position: confirmed,
                        },
                        WriteContext {
                            actor: "server".into(),
                            txn_id: format!("checkpoint-{NAME}"),
                        },
                    )
                    .await
                    .map_err(|e| SessionError::Checkpoint(e.detail))?;
                checkpoint = confirmed;
                self.board
                    .report(NAME, checkpoint, SubscriberState::Running, None);
            }
        }
    }
}

/// The operation name the earlier server used: Create, Update or Delete.
fn operation(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Create => "Create",
        EventKind::Replace | EventKind::Patch => "Update",
        EventKind::Delete => "Delete",
    }
}

/// `{"operation": …, "resource": {…}}`, and with `AMQP_GROUP_MEMBERS=changes` group messages carry
/// `"members": {"added": […], "removed": […]}` instead of the member list.
fn message_body(
    snapshot: &Snapshot,
    event: &Event,
    base: &str,
    group_members: GroupMembers,
) -> Result<Value, StoreError> {
    let mut resource = document::as_of(snapshot, event.clone(), base)?;
    let mut body = json!({"operation": operation(event.kind)});
    if event.resource_type == ResourceType::Group && group_members == GroupMembers::Changes {
        if let Some(doc) = resource.as_object_mut() {
            doc.remove("members");
        }
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
