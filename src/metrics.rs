//! Prometheus metrics: every family scimd exposes on `GET /metrics`, in one process-wide
//! [`METRICS`] (the `prometheus` crate's collectors registered in a registry of our own, not the
//! crate's default one).
//!
//! Counters and histograms are recorded where the thing happens (the HTTP middleware, the store
//! writer, the subscribers, password hashing); gauges that describe state (log position, the
//! subscribers' checkpoints and lags, resource counts) are refreshed when `/metrics` is scraped
//! (`service::metrics`). Like `config`, this module is a leaf every other module may import.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric of the process.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The metric families (see the README for what each means).
pub struct Metrics {
    registry: Registry,
    /// `scimd_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `scimd_http_request_duration_seconds{route,method}`.
    pub http_duration: HistogramVec,
    /// `scimd_writer_batch_size`: commands per writer transaction.
    pub batch_size: Histogram,
    /// `scimd_writer_commit_seconds`: time of one commit (fsync) of the writer.
    pub commit_seconds: Histogram,
    /// `scimd_log_position`: the last committed log position.
    pub log_position: IntGauge,
    /// `scimd_store_file_bytes`: size of `DATA_PATH/scimd.redb`.
    pub store_file_bytes: IntGauge,
    /// `scimd_resources{resource_type}`: Users and Groups in the read model.
    pub resources: IntGaugeVec,
    /// `scimd_subscriber_checkpoint{subscriber}`.
    pub checkpoint: IntGaugeVec,
    /// `scimd_subscriber_lag_events{subscriber}`.
    pub lag_events: IntGaugeVec,
    /// `scimd_subscriber_lag_seconds{subscriber}`: age of the oldest event not yet handled.
    pub lag_seconds: prometheus::GaugeVec,
    /// `scimd_subscriber_parked{subscriber}`.
    pub parked: IntGaugeVec,
    /// `scimd_subscriber_errors_total{subscriber,kind}`.
    pub subscriber_errors: IntCounterVec,
    /// `scimd_subscriber_reconnects_total{subscriber}`.
    pub reconnects: IntCounterVec,
    /// `scimd_set_push_total{outcome}`: SETs pushed to SET_PUSH_URL, `delivered` or `parked`.
    pub sets_pushed: IntCounterVec,
    /// `scimd_argon2_queue_depth`: password hashes waiting for a hashing slot.
    pub argon2_queue: IntGauge,
    /// `scimd_argon2_in_flight`: password hashes running.
    pub argon2_running: IntGauge,
}

/// Latency buckets (seconds) for requests and commits: 0.5 ms … 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch size buckets (commands per commit), up to the writer's 2,048.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            http_requests: IntCounterVec::new(
                Opts::new("scimd_http_requests_total", "HTTP requests by route template, method and status"),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
            http_duration: HistogramVec::new(
                HistogramOpts::new("scimd_http_request_duration_seconds", "HTTP request latency by route template and method")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "method"],
            )
            .expect("valid metric"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("scimd_writer_batch_size", "Commands applied per writer transaction (group commit)")
                    .buckets(BATCH_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new("scimd_writer_commit_seconds", "Duration of one writer commit, fsync included")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            log_position: IntGauge::new("scimd_log_position", "Last committed position of the event log")
                .expect("valid metric"),
            store_file_bytes: IntGauge::new("scimd_store_file_bytes", "Size of the store file DATA_PATH/scimd.redb")
                .expect("valid metric"),
            resources: IntGaugeVec::new(
                Opts::new("scimd_resources", "Resources in the read model by type"),
                &["resource_type"],
            )
            .expect("valid metric"),
            checkpoint: IntGaugeVec::new(
                Opts::new("scimd_subscriber_checkpoint", "Last log position a subscriber has fully handled"),
                &["subscriber"],
            )
            .expect("valid metric"),
            lag_events: IntGaugeVec::new(
                Opts::new("scimd_subscriber_lag_events", "Events committed but not yet handled by a subscriber"),
                &["subscriber"],
            )
            .expect("valid metric"),
            lag_seconds: prometheus::GaugeVec::new(
                Opts::new("scimd_subscriber_lag_seconds", "Age of the oldest event a subscriber has not handled (0 when caught up)"),
                &["subscriber"],
            )
            .expect("valid metric"),
            parked: IntGaugeVec::new(
                Opts::new("scimd_subscriber_parked", "Changes a subscriber's backend refused for good, waiting for a retry"),
                &["subscriber"],
            )
            .expect("valid metric"),
            subscriber_errors: IntCounterVec::new(
                Opts::new("scimd_subscriber_errors_total", "Subscriber failures by kind (unavailable: backend or broker down; refused: a change parked)"),
                &["subscriber", "kind"],
            )
            .expect("valid metric"),
            reconnects: IntCounterVec::new(
                Opts::new("scimd_subscriber_reconnects_total", "Connections a subscriber opened again after a failure"),
                &["subscriber"],
            )
            .expect("valid metric"),
            sets_pushed: IntCounterVec::new(
                Opts::new("scimd_set_push_total", "Security event tokens pushed to SET_PUSH_URL by outcome (delivered: 2xx; parked: refused for good)"),
                &["outcome"],
            )
            .expect("valid metric"),
            argon2_queue: IntGauge::new("scimd_argon2_queue_depth", "Password hashes waiting for a hashing slot")
                .expect("valid metric"),
            argon2_running: IntGauge::new("scimd_argon2_in_flight", "Password hashes running")
                .expect("valid metric"),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(m.http_requests.clone()),
            Box::new(m.http_duration.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.commit_seconds.clone()),
            Box::new(m.log_position.clone()),
            Box::new(m.store_file_bytes.clone()),
            Box::new(m.resources.clone()),
            Box::new(m.checkpoint.clone()),
            Box::new(m.lag_events.clone()),
            Box::new(m.lag_seconds.clone()),
            Box::new(m.parked.clone()),
            Box::new(m.subscriber_errors.clone()),
            Box::new(m.reconnects.clone()),
            Box::new(m.sets_pushed.clone()),
            Box::new(m.argon2_queue.clone()),
            Box::new(m.argon2_running.clone()),
        ];
        for c in collectors {
            // Names are distinct constants: registration cannot collide.
            let _ = m.registry.register(c);
        }
        m
    }

    /// Every family in the Prometheus text exposition format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Counts a subscriber failure of `kind` (`unavailable`, `refused`).
    pub fn subscriber_error(&self, subscriber: &str, kind: &str) {
        self.subscriber_errors
            .with_label_values(&[subscriber, kind])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_and_encodes() {
        // A registry of its own: the process-wide one is set by the store tests running beside this.
        let metrics = Metrics::new();
        metrics.log_position.set(3);
        metrics.subscriber_error("file", "refused");
        let text = metrics.encode();
        assert!(text.contains("scimd_log_position 3"), "{text}");
        assert!(text.contains("scimd_writer_batch_size_bucket"), "{text}");
        assert!(
            text.contains(r#"scimd_subscriber_errors_total{kind="refused",subscriber="file"} 1"#),
            "{text}"
        );
    }
}
