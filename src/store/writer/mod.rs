//! The writer thread: group commit of every change to the store.
//!
//! It drains every pending command (up to [`MAX_BATCH`]), validates and applies each in one write
//! transaction, commits once (fsync), and only then answers. A command the client got wrong
//! (uniqueness, missing member, version mismatch) is rejected on its own and changes nothing; the
//! others in its batch go on. Each command does all its checks before its first write, so a rejected
//! command never leaves partial changes in the shared transaction (docs/ARCHITECTURE.md, "The flow
//! of one write").
//!
//! `commands` applies each [`Write`], `txn` holds the tables of the batch's transaction, `reindex`
//! prepares the tables at start-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use redb::Database;
use tokio::sync::{mpsc, oneshot, watch};

use super::tables::POSITION;
use super::{DbFile, Outcome, SharedDb, StoreError, Write, WriteContext};
use crate::metrics::METRICS;
use scim::ScimError;
use scim::schema::Registry;

mod commands;
mod reindex;
mod remote_ids;
mod txn;

use commands::apply;
pub(crate) use reindex::initialise;
use txn::TxnTables;

/// How many requests may wait for the writer before senders are slowed down.
pub(crate) const QUEUE_DEPTH: usize = 8192;
/// The most commands applied in one transaction.
const MAX_BATCH: usize = 2048;

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

/// Starts the writer thread: it takes requests from `rx` until a [`Request::Stop`] or until every
/// sender is gone, announcing each committed position on `committed`.
pub(crate) fn spawn(
    db: SharedDb,
    registry: Arc<Registry>,
    file: DbFile,
    mut rx: mpsc::Receiver<Request>,
    committed: watch::Sender<u64>,
    commits: Arc<AtomicU64>,
) {
    let body = move || {
        let mut batch: Vec<(Write, WriteContext, Reply)> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
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
            if !batch.is_empty() {
                commit_batch(
                    &db,
                    &registry,
                    &file,
                    std::mem::take(&mut batch),
                    &committed,
                    &commits,
                );
            }
            if let Some(done) = stop {
                let _ = done.send(());
                return;
            }
        }
    };
    // The writer blocks on fsync, so it gets its own OS thread rather than a runtime worker.
    if let Err(e) = std::thread::Builder::new()
        .name("scimd-writer".into())
        .spawn(body)
    {
        tracing::error!(error = %e, "cannot start the store writer thread; every write will fail");
    }
}

/// Applies and commits one batch, then answers each of its commands.
///
/// Guarantees kept here:
/// - **A 2xx means durable**: no command is answered before the commit (fsync) returns.
/// - **Announced before answered**: the committed position and the commit count move before any
///   reply, so whatever a client does after its 2xx (a read, a subscriber's wake-up) sees the commit.
/// - **Unknown outcome is said as such**: if the commit fails, redb may or may not have made it
///   durable; every command that was not already rejected as the client's fault is answered 503
///   ("may or may not have been applied"), never "not written", and the database is reopened, as
///   redb requires, before the next batch.
fn commit_batch(
    db: &SharedDb,
    registry: &Registry,
    file: &DbFile,
    batch: Vec<(Write, WriteContext, Reply)>,
    committed: &watch::Sender<u64>,
    commits: &AtomicU64,
) {
    let handle = db.read().ok().and_then(|slot| slot.clone());
    let Some(handle) = handle else {
        tracing::warn!(
            commands = batch.len(),
            "the store is being reopened; answering the batch 503"
        );
        for (_, _, reply) in batch {
            let _ = reply.send(Err(StoreError::Unavailable.into()));
        }
        return;
    };
    let mut results = Vec::with_capacity(batch.len());
    METRICS.batch_size.observe(batch.len() as f64);
    let outcome = apply_batch(&handle, registry, batch, &mut results);
    drop(handle);
    match outcome {
        Ok(position) => {
            // Announce before answering: anything a client does after its 2xx sees this commit.
            // `commits` also counts commits that append no event (checkpoints).
            commits.fetch_add(1, Ordering::Release);
            committed.send_replace(position);
            METRICS
                .log_position
                .set(i64::try_from(position).unwrap_or(i64::MAX));
            if let Ok(meta) = std::fs::metadata(&file.path) {
                METRICS
                    .store_file_bytes
                    .set(i64::try_from(meta.len()).unwrap_or(i64::MAX));
            }
            for (reply, result) in results {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; the batch's outcome is unknown, reopening the store");
            for (reply, result) in results {
                let answer = match result {
                    Err(rejected) if rejected.status < 500 => Err(rejected),
                    _ => Err(ScimError::unavailable(
                        "the store could not confirm this write; it may or may not have been applied, retry the request",
                    )),
                };
                let _ = reply.send(answer);
            }
            reopen(db, file);
        }
    }
}

/// Applies a batch in one transaction and commits it. `results` receives every command's answer,
/// valid only if this returns `Ok`.
fn apply_batch(
    db: &Database,
    registry: &Registry,
    batch: Vec<(Write, WriteContext, Reply)>,
    results: &mut Vec<(Reply, Result<Outcome, ScimError>)>,
) -> Result<u64, StoreError> {
    let txn = db.begin_write()?;
    let position = {
        let mut t = TxnTables::open(&txn)?;
        let mut storage_error = None;
        for (write, ctx, reply) in batch {
            if storage_error.is_some() {
                results.push((reply, Err(StoreError::Unavailable.into())));
                continue;
            }
            t.now = Utc::now();
            match apply(&mut t, registry, write, &ctx) {
                Ok(outcome) => results.push((reply, Ok(outcome))),
                Err(Rejection::Client(e)) => results.push((reply, Err(e))),
                Err(Rejection::Storage(e)) => {
                    results.push((reply, Err(StoreError::Unavailable.into())));
                    storage_error = Some(e);
                }
            }
        }
        if let Some(e) = storage_error {
            return Err(e);
        }
        t.counters.insert(POSITION, t.position)?;
        t.position
    };
    let started = Instant::now();
    txn.commit()?;
    METRICS
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(position)
}

/// Reopens the database after a failed commit, as redb requires; retries with capped backoff.
/// Writes wait meanwhile and reads answer 503.
fn reopen(db: &SharedDb, file: &DbFile) {
    if let Ok(mut slot) = db.write() {
        slot.take();
    }
    let mut delay = Duration::from_millis(50);
    loop {
        match file.open_writable() {
            Ok(fresh) => {
                if let Ok(mut slot) = db.write() {
                    *slot = Some(Arc::new(fresh));
                }
                tracing::info!("store reopened");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the store; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
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
