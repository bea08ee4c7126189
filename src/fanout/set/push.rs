//! RFC 8935 push delivery: a log subscriber that POSTs each SET of the default feed to
//! SET_PUSH_URL, in log order, one at a time, and advances its own checkpoint past what the
//! receiver accepted (202).
//!
//! Progress is the pair (position, index of the SET within that event): the checkpoint
//! [`NAME`] is the last event whose SETs were all delivered, [`WITHIN`] how many SETs of the next
//! event were. A crash repeats SETs (with the same `jti`, so the receiver de-duplicates), never
//! skips one. A SET the receiver refuses for good (an RFC 8935 error about the SET itself) is
//! parked under its `jti`, shown in `/status` and sent again by `scimd projection retry set-push`;
//! the SETs after it go on. A receiver that is down, overloaded or refusing the credentials is
//! retried with capped backoff (its `Retry-After` honoured) from where it stopped.
//!
//! The `misc:asyncresp` SETs of finished asynchronous requests come from the store's second
//! sequence (completion order), with a checkpoint of their own, [`OUTCOMES`]: the completion
//! sequence of the last outcome whose SETs were all delivered (a Bulk's SETs after a failure or a
//! crash are sent again from its first). The two sequences take turns by batch, so an outcome's
//! SET may come before or after the provisioning SETs of what its request wrote.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::receiver::{Answer, Receiver};
use super::{FeedId, Jti, SecurityEvents, asyncresp, sets_of};
use crate::fanout::status::{StatusBoard, SubscriberState};
use crate::metrics::METRICS;
use crate::store::{AsyncRequest, Event, Parked, Snapshot, Store, StoreError, Write, WriteContext};

/// The subscriber's name: its checkpoint key, its parked SETs' owner and its entry in `/status`.
pub const NAME: &str = "set-push";
/// The checkpoint holding how many SETs of the event after [`NAME`]'s position were delivered.
pub const WITHIN: &str = "set-push.within";
/// The checkpoint holding the completion sequence of the last asynchronous outcome delivered.
pub const OUTCOMES: &str = "set-push.async";
/// Events read from the log at a time.
const BATCH: usize = 256;
/// Backoff bounds after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why pushing stopped for now.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The receiver could not take a SET; it is sent again after the backoff.
    #[error("{reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
        /// How long the receiver asked to wait.
        retry_after: Option<Duration>,
    },
    /// Reading the log failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The SETs of an event could not be made or signed (a bug: the key was proven at start-up).
    #[error("the SET for position {position} could not be made: {reason}")]
    Make {
        /// The event's position.
        position: u64,
        /// Why.
        reason: String,
    },
    /// The asyncresp SET of an operation could not be signed (a bug: the key was proven at
    /// start-up).
    #[error("the asyncresp SET of txn {txn} could not be made: {reason}")]
    MakeOutcome {
        /// The operation's `txn`.
        txn: String,
        /// Why.
        reason: String,
    },
    /// The log holds no event at a position a parked SET names.
    #[error("the log holds no event at position {0}, which a parked SET names")]
    Missing(u64),
    /// Saving the checkpoint or a parked SET failed.
    #[error("saving the push progress failed: {0}")]
    Checkpoint(String),
    /// The log's writer stopped (shutting down).
    #[error("the log stopped (shutting down)")]
    Closed,
}

impl PushError {
    /// The `kind` label of `scimd_subscriber_errors_total`.
    fn kind(&self) -> &'static str {
        match self {
            PushError::Unavailable { .. } => "unavailable",
            PushError::Store(_) | PushError::Missing(_) => "store",
            PushError::Make { .. } | PushError::MakeOutcome { .. } => "encode",
            PushError::Checkpoint(_) => "checkpoint",
            PushError::Closed => "closed",
        }
    }
}

/// How long to wait after `e` with the backoff at `backoff`: the receiver's `Retry-After` when it
/// asks for longer, never less than the backoff, so a receiver answering `Retry-After: 0` forever
/// is not hammered in a busy loop.
fn wait_after(e: &PushError, backoff: Duration) -> Duration {
    match e {
        PushError::Unavailable {
            retry_after: Some(after),
            ..
        } => (*after).max(backoff),
        _ => backoff,
    }
}

/// Where delivery stands: every SET of the events up to `position`, and the first `within` SETs
/// of the event after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    position: u64,
    within: usize,
}

/// Pushes the default feed to one receiver.
pub struct Pusher {
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    core: Arc<SecurityEvents>,
    receiver: Receiver,
}

impl Pusher {
    /// A pusher of `core`'s SETs to `receiver`, reporting to `board`.
    pub fn new(
        store: Arc<Store>,
        board: Arc<StatusBoard>,
        core: Arc<SecurityEvents>,
        receiver: Receiver,
    ) -> Pusher {
        Pusher {
            store,
            board,
            core,
            receiver,
        }
    }

    /// Runs until the process ends: push, and after any failure wait (backoff or the receiver's
    /// `Retry-After`) and go on from the saved progress.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        let start = self.progress().map(|p| p.position).unwrap_or(0);
        self.board
            .report(NAME, start, SubscriberState::Starting, None);
        self.report_parked();
        loop {
            let started = std::time::Instant::now();
            let Err(e) = self.push_from_checkpoint().await;
            if matches!(e, PushError::Closed) {
                return;
            }
            METRICS.subscriber_error(NAME, e.kind());
            self.board.report(
                NAME,
                self.progress().map(|p| p.position).unwrap_or(0),
                SubscriberState::Retrying,
                Some(e.to_string()),
            );
            if started.elapsed() > MAX_BACKOFF {
                backoff = MIN_BACKOFF;
            }
            tokio::time::sleep(wait_after(&e, backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The saved progress.
    fn progress(&self) -> Result<Progress, StoreError> {
        let snapshot = self.store.snapshot()?;
        Ok(Progress {
            position: snapshot.checkpoint(NAME)?,
            within: usize::try_from(snapshot.checkpoint(WITHIN)?).unwrap_or(usize::MAX),
        })
    }

    async fn write(&self, write: Write) -> Result<(), PushError> {
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
            .map_err(|e| PushError::Checkpoint(e.detail))
    }

    /// Saves `to` over `from`. The two numbers are two checkpoints, written one at a time, so
    /// every state a crash can leave between the writes must be behind `to`, never ahead: when
    /// the position moves, `within` is first cleared (the event after the old position is sent
    /// again from its first SET), then the position saved, then the new `within`.
    async fn save(&self, from: Progress, to: Progress) -> Result<(), PushError> {
        if to.position != from.position {
            if from.within != 0 {
                self.set_within(0).await?;
            }
            self.write(Write::Checkpoint {
                name: NAME.into(),
                position: to.position,
            })
            .await?;
            if to.within != 0 {
                self.set_within(to.within).await?;
            }
        } else if to.within != from.within {
            self.set_within(to.within).await?;
        }
        Ok(())
    }

    async fn set_within(&self, within: usize) -> Result<(), PushError> {
        self.write(Write::Checkpoint {
            name: WITHIN.into(),
            position: within as u64,
        })
        .await
    }

    /// Shows on the board how many SETs are parked.
    fn report_parked(&self) {
        if let Ok(parked) = self.store.snapshot().and_then(|s| s.parked(NAME)) {
            self.board.set_parked(NAME, parked.len() as u64);
        }
    }

    /// The default feed's SETs of `event`, signed, in order.
    fn signed_sets(&self, snapshot: &Snapshot, event: &Event) -> Result<Vec<String>, PushError> {
        let make = |reason: String| PushError::Make {
            position: event.position,
            reason,
        };
        sets_of(event, snapshot, &FeedId::default_feed(), &self.core.config)
            .map_err(|e| make(e.to_string()))?
            .iter()
            .map(|set| self.core.signer.sign(set).map_err(|e| make(e.to_string())))
            .collect()
    }

    /// Pushes everything after the saved progress, then waits for more; returns only on a failure.
    async fn push_from_checkpoint(&self) -> Result<std::convert::Infallible, PushError> {
        let mut saved = self.progress()?;
        let mut at = saved;
        self.board
            .report(NAME, at.position, SubscriberState::Running, None);
        let mut outcomes_saved = self.store.snapshot()?.checkpoint(OUTCOMES)?;
        let mut outcomes_at = outcomes_saved;
        let mut committed = self.store.committed();
        loop {
            let log_behind = *committed.borrow_and_update() > at.position;
            if log_behind {
                let outcome = self.push_batch(&mut at).await;
                // What was delivered is saved even when a SET after it failed.
                if at != saved {
                    self.save(saved, at).await?;
                    saved = at;
                }
                outcome?;
            }
            let outcome = self.push_outcomes(&mut outcomes_at).await;
            if outcomes_at != outcomes_saved {
                self.write(Write::Checkpoint {
                    name: OUTCOMES.into(),
                    position: outcomes_at,
                })
                .await?;
                outcomes_saved = outcomes_at;
            }
            let outcomes_behind = outcome?;
            self.board
                .report(NAME, at.position, SubscriberState::Running, None);
            // An outcome decided without a write commits alone: the watch moves then too.
            if !log_behind && !outcomes_behind && committed.changed().await.is_err() {
                return Err(PushError::Closed);
            }
        }
    }

    /// The asyncresp SETs of the finished request `set_txn`, each with its `jti`, signed.
    fn signed_outcome(
        &self,
        set_txn: &str,
        request: &AsyncRequest,
    ) -> Result<Vec<(String, String)>, PushError> {
        let feed = FeedId::default_feed();
        asyncresp::claims_of(set_txn, request, Some(&feed), Some(&self.core.config))
            .into_iter()
            .map(|(txn, claims)| {
                let set = self.sign(claims).map_err(|reason| PushError::MakeOutcome {
                    txn: txn.clone(),
                    reason,
                })?;
                Ok((format!("{feed}:{txn}"), set))
            })
            .collect()
    }

    fn sign(&self, claims: Map<String, Value>) -> Result<String, String> {
        self.core
            .signer
            .sign_claims(claims)
            .map_err(|e| e.to_string())
    }

    /// Pushes the asyncresp SETs of up to [`BATCH`] outcomes after `at` (a completion
    /// sequence), moving `at` past each outcome whose SETs the receiver took or that were
    /// parked. Answers whether more outcomes may follow.
    async fn push_outcomes(&self, at: &mut u64) -> Result<bool, PushError> {
        let outcomes = self.store.snapshot()?.async_outcomes_after(*at, BATCH)?;
        let more = outcomes.len() == BATCH;
        for (set_txn, request) in outcomes {
            let Some(completion) = request.outcome.as_ref().map(|o| o.completion) else {
                continue;
            };
            let sets = self.signed_outcome(&set_txn, &request)?;
            for ((jti, set), op) in sets
                .into_iter()
                .zip(request.outcome.iter().flat_map(|o| o.operations.iter()))
            {
                match self.receiver.push(&set).await {
                    Answer::Delivered => {
                        METRICS.sets_pushed.with_label_values(&["delivered"]).inc();
                    }
                    Answer::Refused { err, description } => {
                        let parked = Parked {
                            resource_type: asyncresp::resource_type_of(&request, op),
                            position: completion,
                            error: format!("{err}: {description}"),
                        };
                        self.park_as(jti, parked).await?;
                    }
                    Answer::Unavailable {
                        reason,
                        retry_after,
                    } => {
                        return Err(PushError::Unavailable {
                            reason,
                            retry_after,
                        });
                    }
                }
            }
            *at = completion;
        }
        Ok(more)
    }

    /// Pushes the SETs of up to [`BATCH`] events after `at`, moving `at` past each one the
    /// receiver took or that was parked.
    async fn push_batch(&self, at: &mut Progress) -> Result<(), PushError> {
        let events = self.store.snapshot()?.events(at.position + 1, BATCH)?;
        for event in events {
            // The snapshot is let go before the POSTs: a read transaction must not outlive the
            // commits made meanwhile (docs/ARCHITECTURE.md, "The store and its guarantees").
            let sets = self.signed_sets(&self.store.snapshot()?, &event)?;
            for (index, set) in sets.iter().enumerate().skip(at.within) {
                match self.receiver.push(set).await {
                    Answer::Delivered => {
                        METRICS.sets_pushed.with_label_values(&["delivered"]).inc();
                    }
                    Answer::Refused { err, description } => {
                        self.park(&event, index, format!("{err}: {description}"))
                            .await?;
                    }
                    Answer::Unavailable {
                        reason,
                        retry_after,
                    } => {
                        return Err(PushError::Unavailable {
                            reason,
                            retry_after,
                        });
                    }
                }
                at.within = index + 1;
            }
            *at = Progress {
                position: event.position,
                within: 0,
            };
        }
        Ok(())
    }

    /// Parks SET `index` of `event` under its `jti`; the SETs after it go on.
    async fn park(&self, event: &Event, index: usize, error: String) -> Result<(), PushError> {
        let jti = Jti {
            feed: FeedId::default_feed(),
            position: event.position,
            index,
        }
        .to_string();
        let parked = Parked {
            resource_type: event.resource_type,
            position: event.position,
            error,
        };
        self.park_as(jti, parked).await
    }

    /// Parks the SET `jti` (a log event's or an asyncresp one); the SETs after it go on.
    async fn park_as(&self, jti: String, parked: Parked) -> Result<(), PushError> {
        tracing::error!(
            subscriber = NAME,
            jti,
            error = parked.error,
            "the receiver refused a SET for good: parked until `scimd projection retry set-push`"
        );
        METRICS.sets_pushed.with_label_values(&["parked"]).inc();
        self.write(Write::Park {
            subscriber: NAME.into(),
            id: jti,
            parked,
        })
        .await?;
        self.report_parked();
        Ok(())
    }

    /// The SET a parked `jti` names, signed again; `None` when there is none to send any more
    /// (the event no longer yields it, or its asynchronous outcome was dropped by retention).
    fn parked_set(&self, jti: &str, p: &Parked) -> Result<Option<String>, PushError> {
        let feed = FeedId::default_feed();
        let snapshot = self.store.snapshot()?;
        if let Some(op_txn) = asyncresp::op_txn_of(&feed, jti) {
            let set_txn = asyncresp::set_txn_of(op_txn);
            let Some(request) = snapshot.async_request(set_txn)? else {
                return Ok(None);
            };
            let set = self
                .signed_outcome(set_txn, &request)?
                .into_iter()
                .find(|(j, _)| j == jti)
                .map(|(_, set)| set);
            return Ok(set);
        }
        let index = Jti::parse(jti).map_or(0, |j| j.index);
        let event = snapshot
            .event(p.position)?
            .ok_or(PushError::Missing(p.position))?;
        Ok(self.signed_sets(&snapshot, &event)?.into_iter().nth(index))
    }

    /// Pushes each parked SET again (same `jti`, new `iat`): those the receiver takes are
    /// unparked, those it refuses again stay parked with its new reason. Answers how many were
    /// delivered. A receiver that cannot take them now is an error and leaves the rest parked.
    pub async fn retry_parked(&self) -> Result<usize, PushError> {
        let parked = self.store.snapshot()?.parked(NAME)?;
        let mut delivered = 0;
        for (jti, p) in parked {
            let set = self.parked_set(&jti, &p)?;
            let answer = match &set {
                Some(set) => self.receiver.push(set).await,
                // Nothing to send any more (settings changed, or retention dropped the outcome).
                None => Answer::Delivered,
            };
            match answer {
                Answer::Delivered => {
                    self.write(Write::Unpark {
                        subscriber: NAME.into(),
                        id: jti,
                    })
                    .await?;
                    delivered += 1;
                }
                Answer::Refused { err, description } => {
                    self.write(Write::Park {
                        subscriber: NAME.into(),
                        id: jti,
                        parked: Parked {
                            error: format!("{err}: {description}"),
                            ..p
                        },
                    })
                    .await?;
                }
                Answer::Unavailable {
                    reason,
                    retry_after,
                } => {
                    self.report_parked();
                    return Err(PushError::Unavailable {
                        reason,
                        retry_after,
                    });
                }
            }
        }
        self.report_parked();
        Ok(delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventMode;
    use crate::fanout::set::{SetConfig, Signer};
    use scim::schema::{Registry, SchemaMode};

    #[test]
    fn a_retry_after_shorter_than_the_backoff_does_not_shorten_the_wait() {
        let unavailable = |after: u64| PushError::Unavailable {
            reason: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(after)),
        };
        assert_eq!(wait_after(&unavailable(0), MIN_BACKOFF), MIN_BACKOFF);
        assert_eq!(wait_after(&unavailable(0), MAX_BACKOFF), MAX_BACKOFF);
        assert_eq!(
            wait_after(&unavailable(120), MAX_BACKOFF),
            Duration::from_secs(120)
        );
        assert_eq!(wait_after(&PushError::Closed, MIN_BACKOFF), MIN_BACKOFF);
    }

    #[tokio::test]
    async fn progress_within_an_event_is_saved_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Arc::new(Registry::built_in(SchemaMode::Strict).expect("registry"));
        let store = Arc::new(Store::open(dir.path(), registry, 1 << 20).expect("store"));
        let core = Arc::new(SecurityEvents {
            config: SetConfig {
                issuer: "https://idm.example.org".into(),
                audience: Vec::new(),
                mode: EventMode::Notice,
                group_as_feed: false,
                base: String::new(),
            },
            signer: Signer::unsigned(),
        });
        let receiver =
            Receiver::new("https://rp.example.org/events", None, false).expect("receiver");
        let pusher = Pusher::new(store.clone(), Arc::default(), core, receiver);
        let start = Progress {
            position: 0,
            within: 0,
        };
        assert_eq!(pusher.progress().expect("read"), start);
        let steps = [
            Progress {
                position: 0,
                within: 2,
            },
            Progress {
                position: 4,
                within: 1,
            },
            Progress {
                position: 5,
                within: 0,
            },
        ];
        let mut from = start;
        for to in steps {
            pusher.save(from, to).await.expect("saved");
            assert_eq!(pusher.progress().expect("read"), to);
            from = to;
        }
        store.close().await;
    }
}
