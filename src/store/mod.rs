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
//!   is answered 503 (retry), never "not written", and the database is reopened before the next batch.
//! - **One writer process.** `scimd serve` holds an exclusive lock on `DATA_PATH/scimd.lock`;
//!   other processes (`scimd log …`) may open the database read-only beside it and read committed
//!   snapshots (redb `ConcurrencyMode::SingleWriter`).
//! - **Gap-free log.** Positions start at 1 and increase by one per event, in commit order.

mod as_of;
mod event;
mod snapshot;
mod tables;
pub mod verify;
mod write;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redb::{ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase};
use tokio::sync::{mpsc, oneshot, watch};

pub use as_of::Members;
pub use event::{Cause, Event, EventKind, MemberRef};
pub use snapshot::Snapshot;
pub use tables::{Parked, StoredResource};
pub use write::{BulkWrite, Outcome, Write, WriteContext};

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

/// The database handle shared by the writer task and readers; `None` while it is being reopened.
type SharedDb = Arc<RwLock<Option<Arc<Database>>>>;

/// The open store of a serving scimd: a writer task for changes, snapshots for reads.
pub struct Store {
    db: SharedDb,
    writer: mpsc::Sender<writer::Request>,
    committed: watch::Receiver<u64>,
    /// How many transactions the writer has committed (checkpoints included).
    commits: Arc<AtomicU64>,
    /// The read transaction shared by readers, with the commit count it was opened at (or after).
    shared_read: Mutex<Option<(u64, Arc<ReadTransaction>)>>,
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
        let db: SharedDb = Arc::new(RwLock::new(Some(Arc::new(db))));
        let (tx, rx) = mpsc::channel(writer::QUEUE_DEPTH);
        let (committed_tx, committed) = watch::channel(position);
        let commits = Arc::new(AtomicU64::new(0));
        writer::spawn(
            db.clone(),
            registry,
            file,
            rx,
            committed_tx,
            commits.clone(),
        );
        Ok(Store {
            db,
            writer: tx,
            committed,
            commits,
            shared_read: Mutex::new(None),
            _lock: lock,
        })
    }

    /// Sends a command to the writer task and waits until it is durable (or rejected).
    pub async fn write(&self, write: Write, ctx: WriteContext) -> Result<Outcome, ScimError> {
        let (reply, answer) = oneshot::channel();
        let request = writer::Request::Write { write, ctx, reply };
        // Either error means the writer thread is gone (shut down, or never started).
        let stopped = || {
            tracing::warn!("the store writer has stopped; answering the write 503");
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
    /// counted before any write of it is answered, so a reader always sees acknowledged writes.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let position = self.commits.load(Ordering::Acquire);
        if let Ok(cached) = self.shared_read.lock()
            && let Some((at, txn)) = cached.as_ref()
            && *at == position
        {
            return Ok(Snapshot::new(txn.clone()));
        }
        let txn = {
            let guard = self.db.read().map_err(|_| StoreError::Unavailable)?;
            let db = guard.as_ref().ok_or(StoreError::Unavailable)?;
            Arc::new(db.begin_read()?)
        };
        if let Ok(mut cached) = self.shared_read.lock() {
            *cached = Some((position, txn.clone()));
        }
        Ok(Snapshot::new(txn))
    }

    /// The last committed log position, updated after every commit; subscribers wait on it.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Finishes the writes already queued, stops the writer task and closes the database.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.writer.send(writer::Request::Stop(reply)).await.is_ok() {
            let _ = done.await;
        }
        if let Ok(mut cached) = self.shared_read.lock() {
            cached.take();
        }
        if let Ok(mut slot) = self.db.write() {
            slot.take();
        }
    }
}

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

/// The cache ceiling of a store opened only to be repaired (redb's own default).
const DEFAULT_CACHE_BYTES: usize = 1024 * 1024 * 1024;

/// A read-only handle on a store, for `scimd log …`: works whether or not a `scimd serve` is running
/// on the same `DATA_PATH`, and sees what it has committed.
pub struct StoreReader {
    db: ReadOnlyDatabase,
}

impl StoreReader {
    /// Opens the store under `data_path` read-only. A store left by a crash needs redb's repair
    /// before it can be read; if no server holds it, the repair is run first (as `scimd serve`
    /// would on start), under the same lock a server takes.
    pub fn open(data_path: &Path) -> Result<StoreReader, StoreError> {
        let path = data_path.join(DB_FILE);
        let open = || {
            redb::Builder::new()
                .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                .open_read_only(&path)
        };
        let db = match open() {
            Err(redb::DatabaseError::RepairAborted) => {
                let lock = lock(data_path)?;
                let file = DbFile {
                    path: path.clone(),
                    cache_bytes: DEFAULT_CACHE_BYTES,
                };
                drop(file.open_writable()?);
                drop(lock);
                open()
            }
            other => other,
        }
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(StoreReader { db })
    }

    /// A consistent view of everything committed so far.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::new(Arc::new(self.db.begin_read()?)))
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
