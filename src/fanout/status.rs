//! The state of every log subscriber, for `GET /status` and the logs.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a subscriber is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SubscriberState {
    /// Starting or connecting.
    Starting,
    /// Caught up or working through the log.
    Running,
    /// Its backend is unreachable; it retries with backoff.
    Retrying,
    /// Rebuilding from position 0.
    Rebuilding,
}

/// One subscriber's progress.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberStatus {
    /// The last log position it has fully handled.
    pub checkpoint: u64,
    /// What it is doing.
    pub state: SubscriberState,
    /// The last error, until the next success.
    pub last_error: Option<String>,
    /// Changes its backend rejected for good, waiting for `scimd projection retry`.
    pub parked: u64,
    /// When this status last changed.
    pub since: DateTime<Utc>,
}

/// Shared board every subscriber reports to.
#[derive(Default)]
pub struct StatusBoard {
    subscribers: Mutex<BTreeMap<String, SubscriberStatus>>,
}

impl StatusBoard {
    /// The board's entries. A thread that panicked while holding the lock cannot have left them
    /// half-written (each change is one insert or one assignment), so a poisoned lock still yields
    /// them: `/status` never shows an empty board, nor drops a report, because of an unrelated panic.
    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, SubscriberStatus>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a subscriber's progress; state changes and new errors are also logged.
    pub fn report(
        &self,
        name: &str,
        checkpoint: u64,
        state: SubscriberState,
        error: Option<String>,
    ) {
        let mut subscribers = self.entries();
        let previous = subscribers.get(name).cloned();
        let parked = previous.as_ref().map_or(0, |p| p.parked);
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.state != state || p.last_error != error);
        if changed {
            match &error {
                Some(e) => {
                    tracing::warn!(subscriber = name, checkpoint, ?state, error = %e, "subscriber")
                }
                None => tracing::info!(subscriber = name, checkpoint, ?state, "subscriber"),
            }
        }
        subscribers.insert(
            name.to_owned(),
            SubscriberStatus {
                checkpoint,
                state,
                last_error: error,
                parked,
                since: if changed {
                    Utc::now()
                } else {
                    previous.map_or_else(Utc::now, |p| p.since)
                },
            },
        );
    }

    /// Records how many changes a subscriber has parked.
    pub fn set_parked(&self, name: &str, parked: u64) {
        if let Some(s) = self.entries().get_mut(name) {
            s.parked = parked;
        }
    }

    /// Every subscriber's status.
    pub fn all(&self) -> BTreeMap<String, SubscriberStatus> {
        self.entries().clone()
    }
}
