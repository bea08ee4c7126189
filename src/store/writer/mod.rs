//! The writer thread: group commit of every change to the store.
//!
//! It drains every pending command (up to [`MAX_BATCH`]), validates and applies each in one write
//! transaction, commits once (fsync), and only then answers. A command the client got wrong
//! (uniqueness, missing member, version mismatch) is rejected on its own and changes nothing; the
//! others in its batch go on. Each command does all its checks before its first write, so a rejected
//! command never leaves partial changes in the shared transaction (docs/ARCHITECTURE.md, "The flow
//! of one write").
//!
//! `commands` applies each [`Write`] (`import` the one of `scimd import`), `txn` holds the tables of the batch's transaction, `reindex`
//! prepares the tables at start-up, `async_requests`
//! persists and runs the asynchronous requests.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use redb::{Database, ReadableDatabase};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};

use super::tables::{self, COUNTERS, POSITION};
use super::{DbFile, Outcome, Shared, StoreError, Write, WriteContext, fault};
use crate::metrics::METRICS;
use scim::ScimError;
use scim::schema::Registry;

mod async_requests;
mod commands;
mod health;
mod import;
mod reindex;
mod remote_ids;
mod txn;

use commands::apply;
pub use health::WriterStatus;
pub(crate) use health::{Health, watch as watch_health};
pub(crate) use reindex::initialise;
use txn::TxnTables;

/// How many requests may wait for the writer before senders are slowed down.
pub(crate) const QUEUE_DEPTH: usize = 8192;
/// The most commands applied in one transaction.
const MAX_BATCH: usize = 2048;
/// A writer that panics more often than this within [`RESTART_WINDOW`] is not restarted again.
const MAX_RESTARTS: usize = 5;
/// See [`MAX_RESTARTS`].
const RESTART_WINDOW: Duration = Duration::from_secs(600);

/// Where the writer sends a command's answer.
type Reply = oneshot::Sender<Result<Outcome, ScimError>>;

/// What [`Store`](super::Store) sends the writer thread.
pub(crate) enum Request {
    /// Apply a write and answer once it is durable (or rejected).
    Write {
        write: Write,
        ctx: WriteContext,
        reply: Reply,
    },
    /// Finish what is queued before this, then stop.
    Stop(oneshot::Sender<()>),
}

/// The writer thread's state: the store it shares with readers and where it announces commits.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) file: DbFile,
    pub(crate) committed: watch::Sender<u64>,
}

/// How the writer's loop ended.
enum Exit {
    /// `Store::close` asked for it; answer once stopped.
    Stop(oneshot::Sender<()>),
    /// Every sender is gone.
    Disconnected,
    /// The store is closing while it could not be reopened.
    Closing,
}

/// Whether the store could be reopened.
enum Reopened {
    Yes,
    No(Exit),
}

/// Starts the writer thread: it takes requests from `rx` until a [`Request::Stop`] or until every
/// sender is gone, announcing each committed position on `committed`.
///
/// The thread is supervised: a panic answers the batch it was on 503 (outcome unknown), is logged
/// at ERROR, and the writer goes on with a reopened store, unless it has panicked more than
/// [`MAX_RESTARTS`] times within [`RESTART_WINDOW`]: then it answers every write 503 and reports
/// itself dead, so that `/health` fails and the process gets restarted.
pub(crate) fn spawn(writer: Writer, rx: mpsc::Receiver<Request>) {
    let health = writer.shared.health.clone();
    let body = move || writer.supervise(rx);
    // The writer blocks on fsync, so it gets its own OS thread rather than a runtime worker.
    match std::thread::Builder::new()
        .name("scimd-writer".into())
        .spawn(body)
    {
        Ok(_) => watch_health(health),
        Err(e) => {
            health.dead();
            tracing::error!(error = %e, "cannot start the store writer thread; every write will fail");
        }
    }
}

impl Writer {
    fn supervise(self, mut rx: mpsc::Receiver<Request>) {
        let mut panics: Vec<Instant> = Vec::new();
        let exit = loop {
            let run = std::panic::catch_unwind(AssertUnwindSafe(|| self.run(&mut rx)));
            let payload = match run {
                Ok(exit) => break exit,
                Err(payload) => payload,
            };
            // Unwinding dropped the batch's reply channels: its commands were answered 503.
            self.shared.health.idle();
            let message = panic_message(payload.as_ref());
            let now = Instant::now();
            panics.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
            panics.push(now);
            if panics.len() > MAX_RESTARTS {
                tracing::error!(panic = %message, restarts = MAX_RESTARTS,
                    "the store writer panicked again; not restarting it: writes are answered 503 and /health fails until scimd is restarted");
                self.shared.health.dead();
                break self.refuse_until_stopped(&mut rx);
            }
            tracing::error!(panic = %message,
                "the store writer panicked; its batch was answered 503; reopening the store and restarting the writer");
            match self.reopen(&mut rx) {
                Reopened::Yes => tracing::warn!("the store writer restarted"),
                Reopened::No(exit) => break exit,
            }
        };
        self.shared.health.stopped();
        if let Exit::Stop(done) = exit {
            let _ = done.send(());
        }
    }

    /// Takes batches until stopped. A failed commit reopens the store here.
    fn run(&self, rx: &mut mpsc::Receiver<Request>) -> Exit {
        let mut batch: Vec<(Write, WriteContext, Reply)> = Vec::new();
        loop {
            let Some(first) = rx.blocking_recv() else {
                return Exit::Disconnected;
            };
            self.shared.health.busy();
            while fault::fails(fault::BATCH_STALL) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut stop = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Write { write, ctx, reply } => batch.push((write, ctx, reply)),
                    Request::Stop(done) => {
                        stop = Some(done);
                        break;
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let reopened = if !batch.is_empty() && !self.commit_batch(std::mem::take(&mut batch)) {
                self.reopen(rx)
            } else {
                Reopened::Yes
            };
            self.shared.health.idle();
            match (stop, reopened) {
                (Some(done), _) => return Exit::Stop(done),
                (None, Reopened::No(exit)) => return exit,
                (None, Reopened::Yes) => {}
            }
        }
    }

    /// Applies and commits one batch, then answers each of its commands; `false` if the commit
    /// failed (the store must be reopened).
    ///
    /// Guarantees kept here:
    /// - **A 2xx means durable**: no command is answered before the commit (fsync) returns.
    /// - **Announced before answered**: the committed position and the commit count move before
    ///   any reply, so whatever a client does after its 2xx (a read, a subscriber's wake-up) sees
    ///   the commit.
    /// - **Unknown outcome is said as such**: if the commit fails, redb may or may not have made it
    ///   durable; every command is answered 503 ("may or may not have been applied"), never "not
    ///   written". A command rejected as the client's fault keeps its 4xx only if nothing of the
    ///   batch was written before it was decided: a 409 or 404 decided against an earlier command
    ///   of the same batch would depend on a write that may never have reached the disk.
    fn commit_batch(&self, batch: Vec<(Write, WriteContext, Reply)>) -> bool {
        let handle = self.shared.db.read().ok().and_then(|slot| slot.clone());
        let Some(handle) = handle else {
            tracing::warn!(
                commands = batch.len(),
                "the store is being reopened; answering the batch 503"
            );
            for (_, _, reply) in batch {
                let _ = reply.send(Err(StoreError::Unavailable.into()));
            }
            return true;
        };
        let mut results = Vec::with_capacity(batch.len());
        METRICS.batch_size.observe(batch.len() as f64);
        let outcome = apply_batch(&handle, &self.registry, batch, &mut results);
        drop(handle);
        match outcome {
            Ok(position) => {
                // Announce before answering: anything a client does after its 2xx sees this
                // commit. `commits` also counts commits that append no event (checkpoints). The
                // shared read transaction is let go, so that it does not keep redb from reusing
                // the pages this commit freed.
                self.shared.commits.fetch_add(1, Ordering::Release);
                self.shared.forget_reads();
                self.committed.send_replace(position);
                METRICS
                    .log_position
                    .set(i64::try_from(position).unwrap_or(i64::MAX));
                if let Ok(meta) = std::fs::metadata(&self.file.path) {
                    METRICS
                        .store_file_bytes
                        .set(i64::try_from(meta.len()).unwrap_or(i64::MAX));
                }
                for (reply, result, _) in results {
                    let _ = reply.send(result);
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the batch's outcome is unknown, reopening the store");
                for (reply, result, on_committed_state) in results {
                    let answer = match result {
                        Err(rejected) if rejected.status < 500 && on_committed_state => {
                            Err(rejected)
                        }
                        _ => Err(ScimError::unavailable(
                            "the store could not confirm this write; it may or may not have been applied, retry the request",
                        )),
                    };
                    let _ = reply.send(answer);
                }
                false
            }
        }
    }

    /// Reopens the database after a failed commit or a panic, as redb requires, retrying with
    /// capped backoff. Meanwhile writes are answered 503 and reads too (the old handle is let go),
    /// and a `Store::close` ends the attempts. Once open, the position it holds is announced: the
    /// failed batch may have reached the disk after all, and readers and subscribers must see it.
    fn reopen(&self, rx: &mut mpsc::Receiver<Request>) -> Reopened {
        self.shared.health.restarting();
        if let Ok(mut slot) = self.shared.db.write() {
            slot.take();
        }
        self.shared.forget_reads();
        let mut delay = Duration::from_millis(50);
        loop {
            if self.shared.health.closing() {
                return Reopened::No(Exit::Closing);
            }
            let opened = self
                .file
                .open_writable()
                .and_then(|db| committed_position(&db).map(|position| (db, position)));
            match opened {
                Ok((fresh, position)) => {
                    if let Ok(mut slot) = self.shared.db.write() {
                        *slot = Some(Arc::new(fresh));
                    }
                    self.shared.commits.fetch_add(1, Ordering::Release);
                    self.shared.forget_reads();
                    self.committed.send_replace(position);
                    self.shared.health.running();
                    tracing::warn!(position, "store reopened");
                    return Reopened::Yes;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_ms = delay.as_millis() as u64,
                        "cannot reopen the store; writes and reads are answered 503 until it opens");
                    if let Some(exit) = self.refuse_for(rx, delay) {
                        return Reopened::No(exit);
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Answers writes 503 for `period`, or until a stop: nothing can be written while the store
    /// is closed, and a client must not wait on a store that may not come back.
    fn refuse_for(&self, rx: &mut mpsc::Receiver<Request>, period: Duration) -> Option<Exit> {
        let until = Instant::now() + period;
        loop {
            match rx.try_recv() {
                Ok(Request::Write { reply, .. }) => {
                    let _ = reply.send(Err(StoreError::Unavailable.into()));
                }
                Ok(Request::Stop(done)) => return Some(Exit::Stop(done)),
                Err(TryRecvError::Disconnected) => return Some(Exit::Disconnected),
                Err(TryRecvError::Empty) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || self.shared.health.closing() {
                        return None;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(20)));
                }
            }
        }
    }

    /// A writer given up on answers every write 503 until it is stopped.
    fn refuse_until_stopped(&self, rx: &mut mpsc::Receiver<Request>) -> Exit {
        loop {
            match rx.blocking_recv() {
                Some(Request::Write { reply, .. }) => {
                    let _ = reply.send(Err(StoreError::Unavailable.into()));
                }
                Some(Request::Stop(done)) => return Exit::Stop(done),
                None => return Exit::Disconnected,
            }
        }
    }
}

/// The text of a panic, for the log.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The last committed position of a freshly opened database.
fn committed_position(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read()?;
    let counters = txn.open_table(COUNTERS)?;
    tables::counter(&counters, POSITION)
}

/// A command's answer, and whether it was decided on committed state alone (nothing of its batch
/// was written before it): only such a rejection stands when the commit fails.
type Decided = (Reply, Result<Outcome, ScimError>, bool);

/// Applies a batch in one transaction and commits it. `results` receives every command's answer,
/// valid only if this returns `Ok`.
fn apply_batch(
    db: &Database,
    registry: &Registry,
    batch: Vec<(Write, WriteContext, Reply)>,
    results: &mut Vec<Decided>,
) -> Result<u64, StoreError> {
    let txn = db.begin_write()?;
    let position = {
        let mut t = TxnTables::open(&txn)?;
        let mut storage_error = None;
        // Whether a command of this batch has written anything yet.
        let mut written = false;
        for (write, ctx, reply) in batch {
            if storage_error.is_some() {
                results.push((reply, Err(StoreError::Unavailable.into()), false));
                continue;
            }
            t.now = Utc::now();
            match apply(&mut t, registry, write, &ctx) {
                Ok(outcome) => {
                    results.push((reply, Ok(outcome), !written));
                    written = true;
                }
                Err(Rejection::Client(e)) => results.push((reply, Err(e), !written)),
                Err(Rejection::Storage(e)) => {
                    results.push((reply, Err(StoreError::Unavailable.into()), false));
                    storage_error = Some(e);
                }
            }
        }
        if let Some(e) = storage_error {
            return Err(e);
        }
        t.finish()?;
        if fault::fails(fault::BATCH_PANIC) {
            panic!("fault point {} is on", fault::BATCH_PANIC.to_string_lossy());
        }
        t.position
    };
    let started = Instant::now();
    txn.commit()?;
    METRICS
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(position)
}

/// Why a command was not applied.
enum Rejection {
    /// The client's request conflicts with the current state; nothing was written.
    Client(ScimError),
    /// The storage failed; the whole batch is abandoned.
    Storage(StoreError),
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        Rejection::Storage(e)
    }
}

impl From<redb::StorageError> for Rejection {
    fn from(e: redb::StorageError) -> Self {
        Rejection::Storage(e.into())
    }
}

impl From<ScimError> for Rejection {
    fn from(e: ScimError) -> Self {
        Rejection::Client(e)
    }
}
