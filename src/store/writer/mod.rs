//! The single writer task: group commit of every change to the store.
//!
//! It drains every pending command (up to [`MAX_BATCH`]), validates and applies each in one write
//! transaction, commits once (fsync), and only then answers. A command the client got wrong
//! (uniqueness, missing member, version mismatch) is rejected on its own and changes nothing; the
//! others in its batch go on. Each command does all its checks before its first write, so a rejected
//! command never leaves partial changes in the shared transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use redb::{Database, ReadableTable};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::tables::Parked;
use super::tables::{self, POSITION, QUERY_INDEX_LAYOUT, QUERY_INDEX_VERSION};
use super::{DbFile, SharedDb, StoreError, StoredResource};
use scim::filter::{Limits, plan};
use scim::patch;
use scim::resource::{MemberInput, MemberView};
use scim::schema::Registry;
use scim::{ResourceType, ScimError};

mod commands;
mod txn;

use commands::apply;
use txn::Tables;

/// How many requests may wait for the writer before senders are slowed down.
pub(crate) const QUEUE_DEPTH: usize = 8192;
/// The most commands applied in one transaction.
const MAX_BATCH: usize = 2048;

/// A change to the store, as the service layer asks for it. Inputs are already validated and
/// normalised; the writer checks what needs the current state (existence, versions, immutable
/// attributes, uniqueness, member references).
#[derive(Debug)]
pub enum Write {
    /// Create a resource with a server-assigned id.
    Create {
        rt: ResourceType,
        id: String,
        attributes: Map<String, Value>,
        members: Option<Vec<MemberInput>>,
    },
    /// Replace every attribute of a resource (RFC 7644 §3.5.1).
    Replace {
        rt: ResourceType,
        id: String,
        if_match: Option<String>,
        attributes: Map<String, Value>,
        members: Option<Vec<MemberInput>>,
    },
    /// Apply a PATCH (RFC 7644 §3.5.2) to the current state: all operations or none, one event.
    /// `with_members` asks for the Group's member list in the outcome (read only then).
    Patch {
        rt: ResourceType,
        id: String,
        if_match: Option<String>,
        operations: Vec<patch::Operation>,
        limits: Limits,
        with_members: bool,
    },
    /// The operations of one Bulk request (RFC 7644 §3.7), in order, in the same transaction as
    /// the rest of the batch: each succeeds or fails on its own, one that refers to an operation
    /// that failed fails too, and after `fail_on_errors` failures the rest are not attempted.
    Bulk {
        operations: Vec<BulkWrite>,
        fail_on_errors: Option<usize>,
    },
    /// Delete a resource and remove it from every group it belongs to.
    Delete {
        rt: ResourceType,
        id: String,
        if_match: Option<String>,
    },
    /// Save a log subscriber's checkpoint (no event).
    Checkpoint { name: String, position: u64 },
    /// Record a change a projection refused for good (no event).
    Park {
        subscriber: String,
        id: String,
        parked: Parked,
    },
    /// Forget a parked change once it has been applied (no event).
    Unpark { subscriber: String, id: String },
}

/// One operation of a [`Write::Bulk`].
#[derive(Debug)]
pub struct BulkWrite {
    /// The write, or why the service already refused it (a failure in its turn all the same).
    pub write: Result<Write, ScimError>,
    /// Earlier operations of the same Bulk (indices into its list) whose new resources this one
    /// refers to by bulkId: if any of them failed, so does this one.
    pub after: Vec<usize>,
}

/// Who asked for a write, recorded on every event it produces.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// The API key's name, or a short hash of it.
    pub actor: String,
    /// The request id.
    pub txn_id: String,
}

/// What a durable write produced.
#[derive(Debug)]
pub enum Outcome {
    /// The resource as stored after a create or replace.
    Resource {
        id: String,
        resource: StoredResource,
        members: Option<Vec<MemberView>>,
    },
    /// The resource is gone.
    Deleted,
    /// Subscriber bookkeeping (checkpoint, parked change) is saved.
    Checkpointed,
    /// Each Bulk operation's outcome, in the order given; `None` for those not attempted once
    /// `fail_on_errors` was reached.
    Bulk(Vec<Option<Result<Outcome, ScimError>>>),
}

type Reply = oneshot::Sender<Result<Outcome, ScimError>>;

pub(crate) enum Request {
    Write {
        write: Write,
        ctx: WriteContext,
        reply: Reply,
    },
    /// Finish what is queued before this, then stop.
    Stop(oneshot::Sender<()>),
}

/// The counter holding [`Registry::uniqueness_fingerprint`] of the schemas the index was built with.
const UNIQUE_SCHEMA: &str = "unique-schema";

/// Creates every table, so readers never meet a missing one, rebuilds the uniqueness index if the
/// schemas' uniqueness rules changed since it was built, and returns the last position.
pub(crate) fn initialise(db: &Database, registry: &Registry) -> Result<u64, StoreError> {
    let txn = db.begin_write()?;
    let position = {
        let mut t = Tables::open(&txn)?;
        let fingerprint = registry.uniqueness_fingerprint();
        if tables::counter(&t.counters, UNIQUE_SCHEMA)? != fingerprint {
            reindex_unique(&mut t, registry)?;
            t.counters.insert(UNIQUE_SCHEMA, fingerprint)?;
        }
        if tables::counter(&t.counters, QUERY_INDEX_VERSION)? != QUERY_INDEX_LAYOUT {
            reindex_queries(&mut t)?;
            t.counters.insert(QUERY_INDEX_VERSION, QUERY_INDEX_LAYOUT)?;
        }
        tables::counter(&t.counters, POSITION)?
    };
    txn.commit()?;
    Ok(position)
}

/// Rebuilds the query index from the read model (a store written before it existed, or with
/// another layout).
fn reindex_queries(t: &mut Tables<'_>) -> Result<(), StoreError> {
    t.query_index.retain(|_, _| false)?;
    let mut rows = Vec::new();
    for row in t.resources.range::<(&str, &str)>(..)? {
        let (k, v) = row?;
        let (rt, id) = k.value();
        let rt = ResourceType::from_name(rt)
            .ok_or_else(|| StoreError::Corrupt(format!("resource {id} has an unknown type")))?;
        let r = StoredResource::decode(v.value())?;
        for key in plan::index_keys(rt, &r.attributes, &r.meta) {
            rows.push((key, id.to_owned()));
        }
    }
    for (key, id) in &rows {
        t.query_index.insert((key.as_str(), id.as_str()), ())?;
    }
    tracing::info!(rows = rows.len(), "query index rebuilt");
    Ok(())
}

/// Rebuilds the uniqueness index from the read model under the current schemas. Values that two
/// resources already share (stored before the attribute was declared unique) cannot both be
/// indexed: the first keeps it, and a warning names the attribute (not the value: personal data).
fn reindex_unique(t: &mut Tables<'_>, registry: &Registry) -> Result<(), StoreError> {
    t.unique.retain(|_, _| false)?;
    let (mut resources, mut duplicates) = (0usize, 0usize);
    for row in t.resources.range::<(&str, &str)>(..)? {
        let (k, v) = row?;
        let (rt, id) = k.value();
        let rt = ResourceType::from_name(rt)
            .ok_or_else(|| StoreError::Corrupt(format!("resource {id} has an unknown type")))?;
        let r = StoredResource::decode(v.value())?;
        resources += 1;
        for key in registry.unique_keys(rt, &r.attributes) {
            let index_key = key.index_key(rt);
            if t.unique.get(index_key.as_str())?.is_some() {
                duplicates += 1;
                tracing::warn!(resource_type = rt.name(), id, attribute = %key.attribute,
                    "a unique value is shared with another resource; only the first keeps it");
                continue;
            }
            t.unique.insert(index_key.as_str(), id)?;
        }
    }
    tracing::info!(
        resources,
        duplicates,
        "uniqueness index rebuilt for the current schemas"
    );
    Ok(())
}

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
        for (_, _, reply) in batch {
            let _ = reply.send(Err(StoreError::Unavailable.into()));
        }
        return;
    };
    let mut results = Vec::with_capacity(batch.len());
    let outcome = apply_batch(&handle, registry, batch, &mut results);
    drop(handle);
    match outcome {
        Ok(position) => {
            // Announce before answering: anything a client does after its 2xx sees this commit.
            // `commits` also counts commits that append no event (checkpoints).
            commits.fetch_add(1, Ordering::Release);
            committed.send_replace(position);
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
        let mut t = Tables::open(&txn)?;
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
    txn.commit()?;
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

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;
    use crate::store::tables::{COUNTERS, QUERY_INDEX, RESOURCES};
    use scim::resource::Meta;
    use scim::schema::SchemaMode;

    #[test]
    fn a_store_written_before_the_query_index_gets_it_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("store.redb")).unwrap();
        let registry = Registry::load(None, SchemaMode::Strict).unwrap();
        initialise(&db, &registry).unwrap();
        // A resource stored without index rows, as an older scimd left it.
        let r = StoredResource {
            meta: Meta {
                created: Utc::now(),
                last_modified: Utc::now(),
                version: 1,
            },
            attributes: serde_json::from_value(serde_json::json!({"userName": "Old"})).unwrap(),
        };
        let txn = db.begin_write().unwrap();
        {
            let mut resources = txn.open_table(RESOURCES).unwrap();
            resources
                .insert(("User", "u1"), r.encode().as_slice())
                .unwrap();
            let mut counters = txn.open_table(COUNTERS).unwrap();
            counters.remove(QUERY_INDEX_VERSION).unwrap();
        }
        txn.commit().unwrap();
        initialise(&db, &registry).unwrap();
        let txn = db.begin_read().unwrap();
        let index = txn.open_table(QUERY_INDEX).unwrap();
        let key = format!("{}old", plan::prefix(ResourceType::User, "userName"));
        assert!(index.get((key.as_str(), "u1")).unwrap().is_some());
        let counters = txn.open_table(COUNTERS).unwrap();
        assert_eq!(
            tables::counter(&counters, QUERY_INDEX_VERSION).unwrap(),
            QUERY_INDEX_LAYOUT
        );
    }
}
