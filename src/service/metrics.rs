//! `GET /metrics`: the gauges that describe state are refreshed from the store and the status
//! board at scrape time, then every family is encoded (see `crate::metrics`).

use chrono::Utc;

use super::{Service, Subscribers};
use crate::metrics::METRICS;
use scim::{ResourceType, ScimError};

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Service {
    /// The Prometheus text exposition of every metric, with the log position, resource counts
    /// and each subscriber's checkpoint, lag (events and seconds) and parked count as of now.
    pub fn metrics(&self, subscribers: &Subscribers) -> Result<String, ScimError> {
        let snapshot = self.store.snapshot()?;
        let position = snapshot.position()?;
        METRICS.log_position.set(gauge(position));
        for rt in [ResourceType::User, ResourceType::Group] {
            METRICS
                .resources
                .with_label_values(&[rt.name()])
                .set(gauge(snapshot.count(rt)?));
        }
        let now = Utc::now();
        for (name, s) in subscribers.board.all() {
            let lag = position.saturating_sub(s.checkpoint);
            // The age of the oldest event it has not handled: the one just after its checkpoint.
            let lag_seconds = if lag == 0 {
                0.0
            } else {
                snapshot.event(s.checkpoint + 1)?.map_or(0.0, |e| {
                    (now - e.timestamp).num_milliseconds().max(0) as f64 / 1e3
                })
            };
            let label = [name.as_str()];
            METRICS
                .checkpoint
                .with_label_values(&label)
                .set(gauge(s.checkpoint));
            METRICS.lag_events.with_label_values(&label).set(gauge(lag));
            METRICS
                .lag_seconds
                .with_label_values(&label)
                .set(lag_seconds);
            METRICS
                .parked
                .with_label_values(&label)
                .set(gauge(s.parked));
        }
        Ok(METRICS.encode())
    }
}
