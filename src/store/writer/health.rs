//! What the writer thread is doing, for `/ready`, `/health` and the watchdog that logs a stall.
//!
//! The writer marks when it starts a batch and when it has answered it; a batch that has run longer
//! than the stall timeout means a wedged writer (an fsync that does not return, a commit stuck on
//! the disk). A wedged writer cannot be restarted in the process (it holds redb's write lock), so
//! both `/ready` and `/health` fail until it moves again; a writer that panicked is restarted on
//! a reopened store, and one that keeps panicking is given up on (docs/ARCHITECTURE.md, "The store
//! and its guarantees").

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUNNING: u8 = 0;
const RESTARTING: u8 = 1;
const DEAD: u8 = 2;
const STOPPED: u8 = 3;

/// The writer's state, shared by the writer thread, the store and the watchdog.
#[derive(Debug)]
pub(crate) struct Health {
    state: AtomicU8,
    /// Milliseconds after `epoch` at which the current batch started, plus one; 0 when idle.
    busy_since: AtomicU64,
    epoch: Instant,
    stall_after_ms: AtomicU64,
    /// Set by `Store::close`: a writer reopening the store gives up instead of retrying.
    closing: AtomicBool,
}

/// What `/ready` and `/health` are told about the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStatus {
    /// Taking commands.
    Running,
    /// Reopening the store after a failed commit or a panic; writes are answered 503 meanwhile.
    Restarting,
    /// One batch has run longer than the stall timeout.
    Stalled(Duration),
    /// Panicked too often to be restarted: the process must be restarted.
    Dead,
    /// Shut down.
    Stopped,
}

impl WriterStatus {
    /// Whether writes can be served now (`/ready`).
    pub fn ready(self) -> bool {
        self == WriterStatus::Running
    }

    /// Whether the writer can still serve writes without restarting the process (`/health`).
    pub fn alive(self) -> bool {
        matches!(self, WriterStatus::Running | WriterStatus::Restarting)
    }
}

impl Health {
    pub(crate) fn new(stall_after: Duration) -> Health {
        Health {
            state: AtomicU8::new(RUNNING),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
            stall_after_ms: AtomicU64::new(millis(stall_after)),
            closing: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_stall_after(&self, after: Duration) {
        self.stall_after_ms.store(millis(after), Ordering::Relaxed);
    }

    pub(crate) fn stall_after(&self) -> Duration {
        Duration::from_millis(self.stall_after_ms.load(Ordering::Relaxed))
    }

    /// A batch starts.
    pub(crate) fn busy(&self) {
        let now = millis(self.epoch.elapsed()).saturating_add(1);
        self.busy_since.store(now, Ordering::Release);
    }

    /// The batch is answered.
    pub(crate) fn idle(&self) {
        self.busy_since.store(0, Ordering::Release);
    }

    /// How long the current batch has run, if there is one.
    pub(crate) fn busy_for(&self) -> Option<Duration> {
        match self.busy_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }

    pub(crate) fn running(&self) {
        self.state.store(RUNNING, Ordering::Release);
    }

    pub(crate) fn restarting(&self) {
        self.state.store(RESTARTING, Ordering::Release);
    }

    pub(crate) fn dead(&self) {
        self.state.store(DEAD, Ordering::Release);
    }

    pub(crate) fn stopped(&self) {
        self.state.store(STOPPED, Ordering::Release);
    }

    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The writer's state as the probes see it.
    pub(crate) fn status(&self) -> WriterStatus {
        match self.state.load(Ordering::Acquire) {
            RESTARTING => WriterStatus::Restarting,
            DEAD => WriterStatus::Dead,
            STOPPED => WriterStatus::Stopped,
            _ => match self.busy_for() {
                Some(busy) if busy > self.stall_after() => WriterStatus::Stalled(busy),
                _ => WriterStatus::Running,
            },
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Logs at ERROR when the writer stalls (once per stall) and when it moves again; checks once a
/// second until the store closes.
pub(crate) fn watch(health: std::sync::Arc<Health>) {
    let body = move || {
        let mut reported = false;
        while !health.closing() {
            std::thread::sleep(Duration::from_secs(1));
            match health.status() {
                WriterStatus::Stalled(busy) if !reported => {
                    tracing::error!(
                        busy_seconds = busy.as_secs(),
                        "the store writer has been on one batch longer than WRITER_STALL_TIMEOUT; /ready and /health fail until it moves"
                    );
                    reported = true;
                }
                WriterStatus::Stalled(_) => {}
                _ if reported => {
                    tracing::warn!("the store writer is moving again");
                    reported = false;
                }
                _ => {}
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("scimd-writer-watch".into())
        .spawn(body)
    {
        tracing::error!(error = %e, "cannot start the writer watchdog; a stalled writer will not be logged");
    }
}
