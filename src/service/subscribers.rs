//! The log subscribers as the operations routes see them: each one's progress for `GET /status`,
//! and the controls of the running projections (rebuild, retry parked changes) and of the AMQP
//! publisher (retry parked messages).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::fanout::amqp::{self, Publisher};
use crate::fanout::projection::Control;
use crate::fanout::set::push::{self, Pusher};
use crate::fanout::status::StatusBoard;
use scim::ScimError;

/// The log subscribers of a serving scimd: the board they report to, a control channel per
/// running projection, by name, and the AMQP publisher if one runs.
pub struct Subscribers {
    pub(super) board: Arc<StatusBoard>,
    projections: BTreeMap<String, mpsc::Sender<Control>>,
    publisher: Option<Arc<Publisher>>,
    pusher: Option<Arc<Pusher>>,
}

impl Subscribers {
    /// The subscribers reporting to `board`, with the control channels of the running
    /// `projections`, the running AMQP `publisher` and the running SET `pusher`.
    pub fn new(
        board: Arc<StatusBoard>,
        projections: BTreeMap<String, mpsc::Sender<Control>>,
        publisher: Option<Arc<Publisher>>,
        pusher: Option<Arc<Pusher>>,
    ) -> Subscribers {
        Subscribers {
            board,
            projections,
            publisher,
            pusher,
        }
    }

    /// The `GET /status` document at log position `position`: each subscriber's status with its
    /// lag (events not yet handled). A status that cannot be encoded is a 500: the document never
    /// shows an empty one in its place.
    pub fn status(&self, position: u64) -> Result<Value, ScimError> {
        let mut subscribers = Map::new();
        for (name, s) in self.board.all() {
            let mut v = serde_json::to_value(&s).map_err(|e| {
                ScimError::new(
                    500,
                    format!("the status of subscriber {name} could not be encoded: {e}"),
                )
            })?;
            v["lag"] = json!(position.saturating_sub(s.checkpoint));
            subscribers.insert(name, v);
        }
        Ok(json!({"position": position, "subscribers": subscribers}))
    }

    /// Rebuilds projection `name` from position 0 (`fresh` empties the backend first). Answers,
    /// once the runner has reset its checkpoints (so `/status` already shows the rebuild), the log
    /// position the rebuild must reach.
    pub async fn rebuild(&self, name: &str, fresh: bool) -> Result<u64, ScimError> {
        let (accepted, answer) = oneshot::channel();
        self.send(name, Control::Rebuild { fresh, accepted })
            .await?;
        answer
            .await
            .map_err(|_| stopped(name))?
            .map_err(|e| ScimError::unavailable(format!("the rebuild could not start: {e}")))
    }

    /// Asks projection `name` to re-apply its parked changes, the AMQP publisher (`amqp`) to
    /// publish its parked messages again, or the SET pusher (`set-push`) to push its parked SETs
    /// again. Each works in the background; `/status` shows the result.
    pub async fn retry_parked(&self, name: &str) -> Result<(), ScimError> {
        if let (push::NAME, Some(pusher)) = (name, &self.pusher) {
            let pusher = pusher.clone();
            tokio::spawn(async move {
                match pusher.retry_parked().await {
                    Ok(delivered) => {
                        tracing::info!(subscriber = push::NAME, delivered, "parked SETs retried")
                    }
                    Err(e) => {
                        tracing::warn!(subscriber = push::NAME, error = %e, "retrying parked SETs failed")
                    }
                }
            });
            return Ok(());
        }
        if let (amqp::NAME, Some(publisher)) = (name, &self.publisher) {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                match publisher.retry_parked().await {
                    Ok(unparked) => {
                        tracing::info!(subscriber = amqp::NAME, unparked, "parked messages retried")
                    }
                    Err(e) => {
                        tracing::warn!(subscriber = amqp::NAME, error = %e, "retrying parked messages failed")
                    }
                }
            });
            return Ok(());
        }
        self.send(name, Control::RetryParked).await
    }

    /// Sends `control` to projection `name`: 404 if no projection of that name runs, 503 if it
    /// has stopped.
    async fn send(&self, name: &str, control: Control) -> Result<(), ScimError> {
        let sender = self.projections.get(name).ok_or_else(|| {
            ScimError::not_found(format!("no projection named {name} is running"))
        })?;
        sender.send(control).await.map_err(|_| stopped(name))
    }
}

/// The projection's runner is gone (its channel is closed).
fn stopped(name: &str) -> ScimError {
    ScimError::unavailable(format!("projection {name} has stopped"))
}
