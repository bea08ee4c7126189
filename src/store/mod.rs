//! The event log and the read model, in one redb file under `DATA_PATH`.
//!
//! # Guarantees
//! - **A 2xx means durable.** Writes go through one writer task ([`writer`]) that applies a batch
//!   of commands in one write transaction and commits it with fsync (redb's default
//!   `Durability::Immediate`) before any command of the batch is answered.
//! - **Atomic.** The events of a command, the read model, the uniqueness index, group membership and
//!   its reverse index change in the same transaction: all of it is visible, or none.
//! - **Unknown outcome is reported as such.** If a commit fails, the write may or may not be on disk
//!   (redb: "applied fully or not at all, but may already be durable"). Every command of that batch
//!   is answered 503 (retry), never "not written" (a 4xx stands only if it was decided before
//!   anything of the batch was written), and the database is reopened before the next batch.
//! - **Faults heal.** After a failed commit or a panic of the writer, the store is reopened and
//!   reads and writes come back on their own as soon as it opens; meanwhile both are answered 503
//!   and `/ready` fails. A writer that keeps panicking, or one stalled on a batch for longer than
//!   `WRITER_STALL_TIMEOUT`, makes `/health` fail too ([`WriterStatus`]).
//! - **Reads do not pin old pages.** The read transaction readers share is let go at every commit,
//!   so redb can reuse the pages a commit frees.
//! - **One writer process.** `scimd serve` holds an exclusive lock on `DATA_PATH/scimd.lock`;
//!   other processes (`scimd log …`) may open the database read-only beside it and read committed
//!   snapshots (redb `ConcurrencyMode::SingleWriter`).
//! - **Gap-free log.** Positions start at 1 and increase by one per event, in commit order.

mod as_of;
mod async_request;
mod event;
pub(crate) mod fault;
mod set_acks;
mod snapshot;
mod tables;
pub mod verify;
mod write;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redb::{ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase};
use tokio::sync::{mpsc, oneshot, watch};

pub use as_of::Members;
pub use async_request::{AsyncOperation, AsyncOutcome, AsyncRequest};
pub use event::{Cause, Event, EventKind, MemberRef};
pub use set_acks::{Refusal, SetAcks, SetId, SetKey};
pub use snapshot::Snapshot;
pub use tables::{Parked, StoredResource};
pub use write::{AsyncEcho, BulkWrite, Outcome, Write, WriteContext};
pub use writer::WriterStatus;

use scim::ScimError;
use scim::schema::Registry;

/// Errors of the storage layer. None of them is the client's fault: the API answers 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds `DATA_PATH`.
    #[error(
        "another scimd is already serving {0} (it holds the lock on scimd.lock); only one `scimd serve` may use a DATA_PATH"
    )]
    Locked(PathBuf),
    /// The database file could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// A file-system operation on DATA_PATH failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// redb reported an error.
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    /// Stored bytes do not decode.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// A value did not serialise for storage. serde_json fails only on a map with non-string keys
    /// or a `Serialize` impl that errs, which the stored types do not have; should one ever fail,
    /// the write fails with it (its batch is abandoned and answered 503) rather than storing empty
    /// bytes.
    #[error("cannot serialise {what} for the store: {source}")]
    Encode {
        /// What was being serialised (an event, a resource, a parked change).
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The store is being reopened after a failed commit, or is shut down.
    #[error("the store is not available right now")]
    Unavailable,
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(redb::Error::from(e))
            }
        }
    )*};
}
storage_error_from!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// What a client is told of a store failure: 503, retry. The conversion only converts: whoever
/// answers the client logs the cause, which the response does not carry.
impl From<StoreError> for ScimError {
    fn from(_: StoreError) -> Self {
        ScimError::unavailable("the store is temporarily unavailable; retry the request")
    }
}

/// The database file name under `DATA_PATH`.
const DB_FILE: &str = "scimd.redb";
/// The lock file that keeps a second `scimd serve` off the same `DATA_PATH`.
const LOCK_FILE: &str = "scimd.lock";

/// What the writer thread shares with readers.
pub(crate) struct Shared {
    /// The database; `None` while it is being reopened.
    db: RwLock<Option<Arc<Database>>>,
    /// The read transaction shared by readers, with the commit count it was opened at (or after).
    read: Mutex<Option<(u64, Arc<ReadTransaction>)>>,
    /// How many transactions the writer has committed (checkpoints included), plus reopens.
    commits: AtomicU64,
    health: Arc<writer::Health>,
}

impl Shared {
    /// Lets go of the shared read transaction: after a commit, so that it does not keep redb from
    /// reusing freed pages; after a reopen, because it belongs to the closed database.
    fn forget_reads(&self) {
        if let Ok(mut cached) = self.read.lock() {
            cached.take();
        }
    }
}

/// How long `close` waits for the writer to finish what is queued before it gives up on a wedged
/// one (the next start repairs the store, as after a crash).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The open store of a serving scimd: a writer task for changes, snapshots for reads.
pub struct Store {
    shared: Arc<Shared>,
    writer: mpsc::Sender<writer::Request>,
    committed: watch::Receiver<u64>,
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store under `data_path`, takes the exclusive lock and starts
    /// the writer task.
    /// `registry` decides which values the uniqueness index holds and which attributes are immutable.
    /// redb caches up to `cache_bytes` of its pages.
    pub fn open(
        data_path: &Path,
        registry: Arc<Registry>,
        cache_bytes: usize,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_path).map_err(|source| StoreError::Io {
            path: data_path.to_owned(),
            source,
        })?;
        let lock = lock(data_path)?;
        let file = DbFile {
            path: data_path.join(DB_FILE),
            cache_bytes,
        };
        let db = file.open_writable()?;
        let position = writer::initialise(&db, &registry)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            read: Mutex::new(None),
            commits: AtomicU64::new(0),
            health: Arc::new(writer::Health::new(DEFAULT_STALL_TIMEOUT)),
        });
        let (tx, rx) = mpsc::channel(writer::QUEUE_DEPTH);
        let (committed_tx, committed) = watch::channel(position);
        writer::spawn(
            writer::Writer {
                shared: shared.clone(),
                registry,
                file,
                committed: committed_tx,
            },
            rx,
        );
        Ok(Store {
            shared,
            writer: tx,
            committed,
            _lock: lock,
        })
    }

    /// How long one batch may keep the writer before it counts as stalled (`WRITER_STALL_TIMEOUT`).
    pub fn set_stall_timeout(&self, after: Duration) {
        self.shared.health.set_stall_after(after);
    }

    /// What the writer is doing, for `/ready` and `/health`.
    pub fn writer_status(&self) -> WriterStatus {
        self.shared.health.status()
    }

    /// Sends a command to the writer task and waits until it is durable (or rejected).
    pub async fn write(&self, write: Write, ctx: WriteContext) -> Result<Outcome, ScimError> {
        let (reply, answer) = oneshot::channel();
        let request = writer::Request::Write { write, ctx, reply };
        // Either error means the writer dropped the command: it stopped, or it panicked on the
        // batch (the outcome is unknown then, which a 503 says).
        let stopped = || {
            tracing::warn!("the store writer did not answer this write; answering it 503");
            Err(StoreError::Unavailable.into())
        };
        if self.writer.send(request).await.is_err() {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }

    /// A consistent read-only view of everything committed so far.
    ///
    /// Read transactions are shared until the next commit: under a read-heavy load most requests
    /// reuse one instead of each registering its own with redb (which, in the multi-process mode
    /// the log tools need, costs file-lock system calls). Every commit, checkpoints included, is
    /// counted before any write of it is answered, so a reader always sees acknowledged writes;
    /// the writer lets the shared one go at every commit and reopen, so none outlives the commit
    /// after it (an older one would keep redb from reusing the pages later commits free).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let position = self.shared.commits.load(Ordering::Acquire);
        if let Ok(cached) = self.shared.read.lock()
            && let Some((at, txn)) = cached.as_ref()
            && *at == position
        {
            return Ok(Snapshot::new(txn.clone()));
        }
        let txn = {
            let guard = self.shared.db.read().map_err(|_| StoreError::Unavailable)?;
            let db = guard.as_ref().ok_or(StoreError::Unavailable)?;
            Arc::new(db.begin_read()?)
        };
        if let Ok(mut cached) = self.shared.read.lock() {
            *cached = Some((position, txn.clone()));
        }
        Ok(Snapshot::new(txn))
    }

    /// The last committed log position, updated after every commit; subscribers wait on it.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Finishes the writes already queued, stops the writer task and closes the database. Never
    /// hangs: a writer that cannot reopen the store stops trying, and one wedged on a batch is
    /// given up on after [`CLOSE_TIMEOUT`]; `false` then (the store was not closed cleanly, and
    /// the next start repairs it, as after a crash).
    pub async fn close(&self) -> bool {
        self.shared.health.close();
        let (reply, done) = oneshot::channel();
        let stopped = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if self.writer.send(writer::Request::Stop(reply)).await.is_ok() {
                let _ = done.await;
            }
        })
        .await
        .is_ok();
        if !stopped {
            tracing::error!(
                timeout_seconds = CLOSE_TIMEOUT.as_secs(),
                "the store writer did not stop; exiting without closing the store (the next start repairs it)"
            );
        }
        self.shared.forget_reads();
        if let Ok(mut slot) = self.shared.db.write() {
            slot.take();
        }
        stopped
    }
}

/// The default of `WRITER_STALL_TIMEOUT`.
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The store's database file and how much memory redb may use to cache its pages.
#[derive(Debug, Clone)]
pub(crate) struct DbFile {
    path: PathBuf,
    /// A ceiling, not a reservation: pages are cached as they are read. Reads of a store larger
    /// than the cache go to the OS for their pages, which costs more the larger the store.
    cache_bytes: usize,
}

impl DbFile {
    /// Opens the database for writing, creating it if needed (and repairing it after a crash).
    fn open_writable(&self) -> Result<Database, StoreError> {
        redb::Builder::new()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .set_cache_size(self.cache_bytes)
            .create(&self.path)
            .map_err(|source| StoreError::Open {
                path: self.path.clone(),
                source,
            })
    }
}

/// A read-only handle on a store, for `scimd log …`: works whether or not a `scimd serve` is running
/// on the same `DATA_PATH`, sees what it has committed, and never writes to it.
pub struct StoreReader {
    db: ReadOnlyDatabase,
    /// Where a copy was repaired, when the store needed it; removed with the reader.
    repaired_copy: Option<PathBuf>,
}

impl StoreReader {
    /// Opens the store under `data_path` read-only, caching up to `cache_bytes` of its pages.
    ///
    /// A store left by a crash needs redb's repair before it can be read, and the repair writes.
    /// The store itself is never touched then: it is copied (under the lock a server takes, so
    /// none starts meanwhile) into a directory under `TMPDIR`, the copy is repaired and read, and
    /// removed when the reader is dropped. That needs as much free space there as the store.
    pub fn open(data_path: &Path, cache_bytes: usize) -> Result<StoreReader, StoreError> {
        let path = data_path.join(DB_FILE);
        let open = |path: &Path| {
            redb::Builder::new()
                .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                .set_cache_size(cache_bytes)
                .open_read_only(path)
                .map_err(|source| StoreError::Open {
                    path: path.to_owned(),
                    source,
                })
        };
        match open(&path) {
            Err(StoreError::Open {
                source: redb::DatabaseError::RepairAborted,
                ..
            }) => {}
            other => {
                return other.map(|db| StoreReader {
                    db,
                    repaired_copy: None,
                });
            }
        }
        let lock = lock_read_only(data_path)?;
        let dir = std::env::temp_dir().join(format!("scimd-repaired-{}", std::process::id()));
        let io = |source| StoreError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let copy = dir.join(DB_FILE);
        tracing::warn!(store = %path.display(), copy = %copy.display(),
            "the store needs redb's repair (a crash left it so); repairing and reading a copy, the store itself is not touched");
        std::fs::copy(&path, &copy).map_err(io)?;
        drop(lock);
        let repaired = DbFile {
            path: copy.clone(),
            cache_bytes,
        }
        .open_writable()
        .and_then(|db| {
            drop(db);
            open(&copy)
        });
        match repaired {
            Ok(db) => Ok(StoreReader {
                db,
                repaired_copy: Some(dir),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Whether what this reader sees is a repaired copy of a store a crash left unrepaired.
    pub fn repaired_copy(&self) -> bool {
        self.repaired_copy.is_some()
    }

    /// A consistent view of everything committed so far.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::new(Arc::new(self.db.begin_read()?)))
    }
}

impl Drop for StoreReader {
    fn drop(&mut self) {
        if let Some(dir) = self.repaired_copy.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Takes the server's lock through a read-only handle (a reader creates nothing in `DATA_PATH`).
fn lock_read_only(data_path: &Path) -> Result<File, StoreError> {
    let lock_path = data_path.join(LOCK_FILE);
    let lock = File::open(&lock_path).map_err(|source| StoreError::Io {
        path: lock_path.clone(),
        source,
    })?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data_path.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
            path: lock_path,
            source,
        }),
    }
}

/// Takes the exclusive lock on `DATA_PATH/scimd.lock` that one serving process holds.
fn lock(data_path: &Path) -> Result<File, StoreError> {
    let lock_path = data_path.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::Io {
            path: lock_path.clone(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data_path.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
            path: lock_path,
            source,
        }),
    }
}
