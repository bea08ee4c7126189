//! `GET /metrics` and `GET /status`, what operators look at. For `/metrics` the gauges that describe state are refreshed from the store and the status
//! board at scrape time, then every family is encoded (see `crate::metrics`).

use chrono::Utc;
use serde_json::json;

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

/// How many of the last events `GET /status` lists.
const RECENT_EVENTS: u64 = 20;
/// How many parked changes per subscriber `GET /status` lists (the count is always whole).
const PARKED_LISTED: usize = 100;

impl Service {
    /// The `GET /status` document: the log position, resource counts, the last events (what
    /// happened to which resource, by which key, when: never attributes, so never a password hash)
    /// each subscriber's progress with its parked changes, and each SET poll receiver's
    /// acknowledgements per feed with the SETs it refused (`setErrs`).
    pub fn status(&self, subscribers: &Subscribers) -> Result<serde_json::Value, ScimError> {
        let snapshot = self.store.snapshot()?;
        let position = snapshot.position()?;
        let mut doc = subscribers.status(position)?;
        let mut resources = serde_json::Map::new();
        for rt in [ResourceType::User, ResourceType::Group] {
            resources.insert(rt.name().to_owned(), json!(snapshot.count(rt)?));
        }
        doc["resources"] = json!(resources);
        let from = position.saturating_sub(RECENT_EVENTS - 1).max(1);
        let events = if position == 0 {
            Vec::new()
        } else {
            snapshot.events(from, RECENT_EVENTS as usize)?
        };
        doc["recentEvents"] = events
            .iter()
            .rev()
            .map(|e| {
                json!({
                    "position": e.position,
                    "kind": e.kind,
                    "resourceType": e.resource_type.name(),
                    "id": e.resource_id,
                    "actor": e.actor,
                    "time": e.timestamp,
                })
            })
            .collect();
        if let Some(subs) = doc.get_mut("subscribers").and_then(|s| s.as_object_mut()) {
            for (name, s) in subs.iter_mut() {
                let parked: Vec<_> = snapshot
                    .parked(name)?
                    .into_iter()
                    .take(PARKED_LISTED)
                    .map(|(id, p)| {
                        json!({
                            "id": id,
                            "resourceType": p.resource_type.name(),
                            "position": p.position,
                            "error": p.error,
                        })
                    })
                    .collect();
                s["parkedChanges"] = json!(parked);
            }
        }
        doc["setPoll"] = snapshot
            .all_set_acks()?
            .into_iter()
            .map(|((receiver, feed), acks)| {
                json!({
                    "receiver": receiver,
                    "feed": feed,
                    "acknowledgedThrough": acks.through,
                    "acknowledgedAbove": acks.acked.len(),
                    "refused": acks.refused,
                    "refusals": acks.refusals,
                })
            })
            .collect();
        Ok(doc)
    }
}
