//! The single writer task: group commit of every change to the store.
//!
//! It drains every pending command (up to [`MAX_BATCH`]), validates and applies each in one write
//! transaction, commits once (fsync), and only then answers. A command the client got wrong
//! (uniqueness, missing member, version mismatch) is rejected on its own and changes nothing; the
//! others in its batch go on. Each command does all its checks before its first write, so a rejected
//! command never leaves partial changes in the shared transaction.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::event::{ENVELOPE_VERSION, MemberRef};
use super::tables::Parked;
use super::tables::{
    self, CHECKPOINTS, COUNTERS, EVENTS, MEMBER_OF, MEMBERS, PARKED, POSITION, QUERY_INDEX,
    QUERY_INDEX_LAYOUT, QUERY_INDEX_VERSION, RESOURCES, STREAMS, UNIQUE,
};
use super::{Cause, Event, EventKind, SharedDb, StoreError, StoredResource};
use crate::scim::filter::{Limits, plan};
use crate::scim::patch::{self, MemberOp};
use crate::scim::resource::{self, MemberInput, MemberView, Meta, UniqueKey};
use crate::scim::schema::{Registry, validate};
use crate::scim::{ResourceType, ScimError, etag};

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
    path: PathBuf,
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
                    &path,
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
    path: &Path,
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
            reopen(db, path);
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
fn reopen(db: &SharedDb, path: &Path) {
    if let Ok(mut slot) = db.write() {
        slot.take();
    }
    let mut delay = Duration::from_millis(50);
    loop {
        match super::open_writable(path) {
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

/// The tables of one write transaction, opened once per batch.
struct Tables<'txn> {
    events: Table<'txn, u64, &'static [u8]>,
    resources: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    members: Table<'txn, (&'static str, &'static str), &'static str>,
    member_of: Table<'txn, (&'static str, &'static str), ()>,
    streams: Table<'txn, (&'static str, u64), u64>,
    unique: Table<'txn, &'static str, &'static str>,
    query_index: Table<'txn, (&'static str, &'static str), ()>,
    counters: Table<'txn, &'static str, u64>,
    checkpoints: Table<'txn, &'static str, u64>,
    parked: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    position: u64,
    now: DateTime<Utc>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        let counters = txn.open_table(COUNTERS)?;
        let position = tables::counter(&counters, POSITION)?;
        Ok(Tables {
            events: txn.open_table(EVENTS)?,
            resources: txn.open_table(RESOURCES)?,
            members: txn.open_table(MEMBERS)?,
            member_of: txn.open_table(MEMBER_OF)?,
            streams: txn.open_table(STREAMS)?,
            unique: txn.open_table(UNIQUE)?,
            query_index: txn.open_table(QUERY_INDEX)?,
            counters,
            checkpoints: txn.open_table(CHECKPOINTS)?,
            parked: txn.open_table(PARKED)?,
            position,
            now: Utc::now(),
        })
    }

    /// Appends an event at the next position and returns that position.
    fn append(&mut self, mut event: Event) -> Result<u64, StoreError> {
        self.position += 1;
        event.position = self.position;
        self.events
            .insert(self.position, event.encode().as_slice())?;
        self.streams
            .insert((event.resource_id.as_str(), event.version), self.position)?;
        Ok(self.position)
    }

    /// Writes a resource and keeps its query index rows in step.
    fn put_resource(
        &mut self,
        rt: ResourceType,
        id: &str,
        r: &StoredResource,
    ) -> Result<(), StoreError> {
        self.unindex(rt, id)?;
        self.resources
            .insert((rt.name(), id), r.encode().as_slice())?;
        for key in plan::index_keys(rt, &r.attributes, &r.meta) {
            self.query_index.insert((key.as_str(), id), ())?;
        }
        Ok(())
    }

    /// Removes a resource and its query index rows.
    fn remove_resource(&mut self, rt: ResourceType, id: &str) -> Result<(), StoreError> {
        self.unindex(rt, id)?;
        self.resources.remove((rt.name(), id))?;
        Ok(())
    }

    /// Removes the query index rows of the stored version of a resource.
    fn unindex(&mut self, rt: ResourceType, id: &str) -> Result<(), StoreError> {
        if let Some(old) = tables::get_resource(&self.resources, rt, id)? {
            for key in plan::index_keys(rt, &old.attributes, &old.meta) {
                self.query_index.remove((key.as_str(), id))?;
            }
        }
        Ok(())
    }

    /// Removes a uniqueness index row if `id` owns it. A value shared since before it was declared
    /// unique (see [`reindex_unique`]) belongs to another resource, whose row must stay.
    fn release(&mut self, rt: ResourceType, key: &UniqueKey, id: &str) -> Result<(), StoreError> {
        let index_key = key.index_key(rt);
        let owned = self
            .unique
            .get(index_key.as_str())?
            .is_some_and(|owner| owner.value() == id);
        if owned {
            self.unique.remove(index_key.as_str())?;
        }
        Ok(())
    }

    fn bump_count(&mut self, rt: ResourceType, delta: i64) -> Result<(), StoreError> {
        let key = tables::count_key(rt);
        let n = tables::counter(&self.counters, key)?;
        self.counters.insert(key, n.saturating_add_signed(delta))?;
        Ok(())
    }

    fn add_member(&mut self, group: &str, m: &MemberRef) -> Result<(), StoreError> {
        self.members
            .insert((group, m.value.as_str()), m.member_type.name())?;
        self.member_of.insert((m.value.as_str(), group), ())?;
        Ok(())
    }

    fn remove_member(&mut self, group: &str, member: &str) -> Result<(), StoreError> {
        self.members.remove((group, member))?;
        self.member_of.remove((member, group))?;
        Ok(())
    }
}

/// The fields of an event that vary per command.
struct EventBody {
    rt: ResourceType,
    id: String,
    version: u64,
    kind: EventKind,
    cause: Option<Cause>,
    changed: Vec<String>,
    created: DateTime<Utc>,
    attributes: Option<Map<String, Value>>,
    members_added: Vec<MemberRef>,
    members_removed: Vec<MemberRef>,
}

fn event(t: &Tables<'_>, ctx: &WriteContext, body: EventBody) -> Event {
    Event {
        v: ENVELOPE_VERSION,
        position: 0,
        event_id: Uuid::new_v4(),
        txn_id: ctx.txn_id.clone(),
        timestamp: t.now,
        actor: ctx.actor.clone(),
        resource_type: body.rt,
        resource_id: body.id,
        version: body.version,
        kind: body.kind,
        cause: body.cause,
        changed: body.changed,
        created: body.created,
        attributes: body.attributes,
        members_added: body.members_added,
        members_removed: body.members_removed,
    }
}

fn apply(
    t: &mut Tables<'_>,
    registry: &Registry,
    write: Write,
    ctx: &WriteContext,
) -> Result<Outcome, Rejection> {
    match write {
        Write::Create {
            rt,
            id,
            attributes,
            members,
        } => {
            let unique = registry.unique_keys(rt, &attributes);
            create(t, ctx, rt, id, attributes, members, &unique)
        }
        Write::Replace {
            rt,
            id,
            if_match,
            attributes,
            members,
        } => replace(
            t,
            registry,
            ctx,
            Target {
                rt,
                id,
                if_match: if_match.as_deref(),
            },
            attributes,
            members,
        ),
        Write::Patch {
            rt,
            id,
            if_match,
            operations,
            limits,
            with_members,
        } => patch(
            t,
            registry,
            ctx,
            Target {
                rt,
                id,
                if_match: if_match.as_deref(),
            },
            (operations, &limits),
            with_members,
        ),
        Write::Bulk {
            operations,
            fail_on_errors,
        } => bulk(t, registry, ctx, operations, fail_on_errors),
        Write::Delete { rt, id, if_match } => {
            delete(t, registry, ctx, rt, &id, if_match.as_deref())
        }
        Write::Checkpoint { name, position } => {
            t.checkpoints.insert(name.as_str(), position)?;
            Ok(Outcome::Checkpointed)
        }
        Write::Park {
            subscriber,
            id,
            parked,
        } => {
            let bytes = serde_json::to_vec(&parked).unwrap_or_default();
            t.parked
                .insert((subscriber.as_str(), id.as_str()), bytes.as_slice())?;
            Ok(Outcome::Checkpointed)
        }
        Write::Unpark { subscriber, id } => {
            t.parked.remove((subscriber.as_str(), id.as_str()))?;
            Ok(Outcome::Checkpointed)
        }
    }
}

fn bulk(
    t: &mut Tables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    operations: Vec<BulkWrite>,
    fail_on_errors: Option<usize>,
) -> Result<Outcome, Rejection> {
    let mut results: Vec<Option<Result<Outcome, ScimError>>> = Vec::with_capacity(operations.len());
    let mut failures = 0;
    for op in operations {
        if fail_on_errors.is_some_and(|limit| failures >= limit) {
            results.push(None);
            continue;
        }
        let failed_reference = op
            .after
            .iter()
            .any(|&j| !matches!(results.get(j), Some(Some(Ok(_)))));
        let result = match op.write {
            Err(refused) => Err(refused),
            Ok(_) if failed_reference => Err(ScimError::new(
                409,
                "the operation refers by bulkId to an operation of this request that failed",
            )),
            Ok(write) => {
                t.now = Utc::now();
                match apply(t, registry, write, ctx) {
                    Ok(outcome) => Ok(outcome),
                    Err(Rejection::Client(e)) => Err(e),
                    Err(storage) => return Err(storage),
                }
            }
        };
        failures += usize::from(result.is_err());
        results.push(Some(result));
    }
    Ok(Outcome::Bulk(results))
}

fn create(
    t: &mut Tables<'_>,
    ctx: &WriteContext,
    rt: ResourceType,
    id: String,
    attributes: Map<String, Value>,
    members: Option<Vec<MemberInput>>,
    unique: &[UniqueKey],
) -> Result<Outcome, Rejection> {
    check_unique(t, rt, &id, unique)?;
    let members = match members {
        Some(list) => Some(resolve_members(t, &id, &list)?),
        None => None,
    };
    let resource = StoredResource {
        meta: Meta {
            created: t.now,
            last_modified: t.now,
            version: 1,
        },
        attributes,
    };
    t.put_resource(rt, &id, &resource)?;
    for key in unique {
        t.unique.insert(key.index_key(rt).as_str(), id.as_str())?;
    }
    let added = member_refs(members.as_deref());
    for m in &added {
        t.add_member(&id, m)?;
    }
    t.bump_count(rt, 1)?;
    let mut changed: Vec<String> = resource.attributes.keys().cloned().collect();
    if !added.is_empty() {
        changed.push("members".into());
    }
    let e = event(
        t,
        ctx,
        EventBody {
            rt,
            id: id.clone(),
            version: 1,
            kind: EventKind::Create,
            cause: None,
            changed,
            created: t.now,
            attributes: Some(resource.attributes.clone()),
            members_added: added,
            members_removed: Vec::new(),
        },
    );
    t.append(e)?;
    Ok(Outcome::Resource {
        id,
        resource,
        members,
    })
}

/// The resource a replace addresses.
struct Target<'a> {
    rt: ResourceType,
    id: String,
    if_match: Option<&'a str>,
}

fn replace(
    t: &mut Tables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    target: Target<'_>,
    mut attributes: Map<String, Value>,
    members: Option<Vec<MemberInput>>,
) -> Result<Outcome, Rejection> {
    let Target { rt, id, if_match } = target;
    let current = current(t, rt, &id, if_match)?;
    // RFC 7644 §3.5.1: immutable attributes keep their value (checked against the state this
    // transaction sees, so a concurrent write cannot slip a change past the check).
    validate::check_replace(registry, rt, &current.attributes, &mut attributes)?;
    let unique = &registry.unique_keys(rt, &attributes);
    check_unique(t, rt, &id, unique)?;
    let members = match members {
        Some(list) => Some(resolve_members(t, &id, &list)?),
        None => None,
    };
    // A replace that leaves out `password` keeps it: the attribute is never returned, so a client
    // doing GET-modify-PUT cannot send it back (RFC 7643 §4.1.1: returned "never").
    if let Some(p) = current.attributes.get("password") {
        attributes.entry("password").or_insert_with(|| p.clone());
    }
    reindex(t, registry, rt, &id, &current.attributes, unique)?;
    let (added, removed) = match &members {
        Some(new) => {
            let before: HashSet<String> = tables::member_refs(&t.members, &id)?
                .into_iter()
                .map(|(m, _)| m)
                .collect();
            let after: HashSet<&str> = new.iter().map(|m| m.value.as_str()).collect();
            let added: Vec<MemberRef> = member_refs(Some(new))
                .into_iter()
                .filter(|m| !before.contains(&m.value))
                .collect();
            let mut removed = Vec::new();
            for (m, mt) in tables::member_refs(&t.members, &id)? {
                if !after.contains(m.as_str()) {
                    removed.push(MemberRef {
                        value: m,
                        member_type: mt,
                    });
                }
            }
            (added, removed)
        }
        None => (Vec::new(), Vec::new()),
    };
    for m in &added {
        t.add_member(&id, m)?;
    }
    for m in &removed {
        t.remove_member(&id, &m.value)?;
    }
    let mut changed = changed_attributes(&current.attributes, &attributes);
    if !added.is_empty() || !removed.is_empty() {
        changed.push("members".into());
    }
    let version = current.meta.version + 1;
    let resource = StoredResource {
        meta: Meta {
            created: current.meta.created,
            last_modified: t.now,
            version,
        },
        attributes,
    };
    t.put_resource(rt, &id, &resource)?;
    let e = event(
        t,
        ctx,
        EventBody {
            rt,
            id: id.clone(),
            version,
            kind: EventKind::Replace,
            cause: None,
            changed,
            created: current.meta.created,
            attributes: Some(resource.attributes.clone()),
            members_added: added,
            members_removed: removed,
        },
    );
    t.append(e)?;
    let members = match members {
        Some(_) => Some(tables::member_views(&t.members, &t.resources, &id)?),
        None => None,
    };
    Ok(Outcome::Resource {
        id,
        resource,
        members,
    })
}

/// Moves a resource's uniqueness index rows from its `before` attributes to `unique`.
fn reindex(
    t: &mut Tables<'_>,
    registry: &Registry,
    rt: ResourceType,
    id: &str,
    before: &Map<String, Value>,
    unique: &[UniqueKey],
) -> Result<(), StoreError> {
    for old in registry.unique_keys(rt, before) {
        if !unique.contains(&old) {
            t.release(rt, &old, id)?;
        }
    }
    for key in unique {
        t.unique.insert(key.index_key(rt).as_str(), id)?;
    }
    Ok(())
}

/// RFC 7644 §3.5.2: applies the operations to the state this transaction sees, so concurrent
/// PATCHes cannot lose each other's changes. Membership changes touch only the members named
/// (one members-table lookup each) and the event carries only the delta.
fn patch(
    t: &mut Tables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    target: Target<'_>,
    (operations, limits): (Vec<patch::Operation>, &Limits),
    with_members: bool,
) -> Result<Outcome, Rejection> {
    let Target { rt, id, if_match } = target;
    let current = current(t, rt, &id, if_match)?;
    let patched = patch::apply(registry, rt, &current.attributes, operations, limits)?;
    let attributes = patched.attributes;
    let unique = &registry.unique_keys(rt, &attributes);
    check_unique(t, rt, &id, unique)?;
    let (added, removed) = member_changes(t, &id, patched.members)?;
    reindex(t, registry, rt, &id, &current.attributes, unique)?;
    for m in &added {
        t.add_member(&id, m)?;
    }
    for m in &removed {
        t.remove_member(&id, &m.value)?;
    }
    let mut changed = changed_attributes(&current.attributes, &attributes);
    if !added.is_empty() || !removed.is_empty() {
        changed.push("members".into());
    }
    let version = current.meta.version + 1;
    let resource = StoredResource {
        meta: Meta {
            created: current.meta.created,
            last_modified: t.now,
            version,
        },
        attributes,
    };
    t.put_resource(rt, &id, &resource)?;
    let e = event(
        t,
        ctx,
        EventBody {
            rt,
            id: id.clone(),
            version,
            kind: EventKind::Patch,
            cause: None,
            changed,
            created: current.meta.created,
            attributes: Some(resource.attributes.clone()),
            members_added: added,
            members_removed: removed,
        },
    );
    t.append(e)?;
    let members = if with_members && rt == ResourceType::Group {
        Some(tables::member_views(&t.members, &t.resources, &id)?)
    } else {
        None
    };
    Ok(Outcome::Resource {
        id,
        resource,
        members,
    })
}

/// The members a PATCH adds and removes: each touched member is looked up in the members table,
/// so the cost follows the operations, not the group's size. Only `replace` of the whole list and
/// a `remove` filter on something other than `value` read every member.
fn member_changes(
    t: &Tables<'_>,
    group: &str,
    ops: Vec<MemberOp>,
) -> Result<(Vec<MemberRef>, Vec<MemberRef>), Rejection> {
    let mut touched = Touched::default();
    for op in ops {
        match op {
            MemberOp::Add(list) => {
                for v in resolve_members(t, group, &list)? {
                    touched.set(v.value.clone(), Some(v));
                }
            }
            MemberOp::Remove(ids) => {
                for id in ids {
                    touched.set(id, None);
                }
            }
            MemberOp::Replace(list) => {
                for (m, _) in tables::member_refs(&t.members, group)? {
                    touched.set(m, None);
                }
                for v in touched.state.values_mut() {
                    *v = None;
                }
                for v in resolve_members(t, group, &list)? {
                    touched.set(v.value.clone(), Some(v));
                }
            }
            MemberOp::RemoveWhere(filter) => {
                let mut current = tables::member_views(&t.members, &t.resources, group)?;
                current.retain(|m| !touched.state.contains_key(&m.value));
                current.extend(touched.state.values().flatten().cloned());
                for m in current {
                    let doc = serde_json::json!({
                        "value": m.value,
                        "type": m.member_type.name(),
                        "display": m.display,
                    });
                    if filter.matches(&doc) {
                        touched.set(m.value, None);
                    }
                }
            }
        }
    }
    let Touched { order, mut state } = touched;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for id in order {
        let before =
            match t.members.get((group, id.as_str()))? {
                Some(v) => Some(ResourceType::from_name(v.value()).ok_or_else(|| {
                    StoreError::Corrupt(format!("member {id} has an unknown type"))
                })?),
                None => None,
            };
        match (before, state.remove(&id).flatten()) {
            (None, Some(v)) => added.push(v.member_ref()),
            (Some(member_type), None) => removed.push(MemberRef {
                value: id,
                member_type,
            }),
            _ => {}
        }
    }
    Ok((added, removed))
}

/// The final state of each member a PATCH touched (`None`: not a member), in touch order.
#[derive(Default)]
struct Touched {
    order: Vec<String>,
    state: HashMap<String, Option<MemberView>>,
}

impl Touched {
    fn set(&mut self, id: String, v: Option<MemberView>) {
        if !self.state.contains_key(&id) {
            self.order.push(id.clone());
        }
        self.state.insert(id, v);
    }
}

fn delete(
    t: &mut Tables<'_>,
    registry: &Registry,
    ctx: &WriteContext,
    rt: ResourceType,
    id: &str,
    if_match: Option<&str>,
) -> Result<Outcome, Rejection> {
    let current = current(t, rt, id, if_match)?;
    for key in registry.unique_keys(rt, &current.attributes) {
        t.release(rt, &key, id)?;
    }
    t.remove_resource(rt, id)?;
    t.bump_count(rt, -1)?;
    let mut removed = Vec::new();
    if rt == ResourceType::Group {
        for (m, member_type) in tables::member_refs(&t.members, id)? {
            t.remove_member(id, &m)?;
            removed.push(MemberRef {
                value: m,
                member_type,
            });
        }
    }
    let e = event(
        t,
        ctx,
        EventBody {
            rt,
            id: id.to_owned(),
            version: current.meta.version + 1,
            kind: EventKind::Delete,
            cause: None,
            changed: Vec::new(),
            created: current.meta.created,
            attributes: Some(current.attributes),
            members_added: Vec::new(),
            members_removed: removed,
        },
    );
    t.append(e)?;
    // Cascade (DESIGN.md): the deleted resource leaves every group it was in, and each of those
    // groups gets a new version, in this same transaction.
    for group_id in tables::groups_of(&t.member_of, id)? {
        t.remove_member(&group_id, id)?;
        let Some(mut group) = tables::get_resource(&t.resources, ResourceType::Group, &group_id)?
        else {
            return Err(StoreError::Corrupt(format!(
                "membership row names group {group_id}, which does not exist"
            ))
            .into());
        };
        group.meta.version += 1;
        group.meta.last_modified = t.now;
        t.put_resource(ResourceType::Group, &group_id, &group)?;
        let e = event(
            t,
            ctx,
            EventBody {
                rt: ResourceType::Group,
                id: group_id,
                version: group.meta.version,
                kind: EventKind::Patch,
                cause: Some(Cause::MemberDeleted {
                    resource_type: rt,
                    id: id.to_owned(),
                }),
                changed: vec!["members".into()],
                created: group.meta.created,
                attributes: None,
                members_added: Vec::new(),
                members_removed: vec![MemberRef {
                    value: id.to_owned(),
                    member_type: rt,
                }],
            },
        );
        t.append(e)?;
    }
    Ok(Outcome::Deleted)
}

/// The current state of a resource that must exist and, if `If-Match` was sent, match it.
fn current(
    t: &Tables<'_>,
    rt: ResourceType,
    id: &str,
    if_match: Option<&str>,
) -> Result<StoredResource, Rejection> {
    let Some(current) = tables::get_resource(&t.resources, rt, id)? else {
        return Err(ScimError::not_found(format!("{} {id} not found", rt.name())).into());
    };
    if let Some(header) = if_match
        && !etag::matches(header, current.meta.version)
    {
        return Err(ScimError::precondition_failed(current.meta.version).into());
    }
    Ok(current)
}

fn check_unique(
    t: &Tables<'_>,
    rt: ResourceType,
    id: &str,
    unique: &[UniqueKey],
) -> Result<(), Rejection> {
    for key in unique {
        if let Some(owner) = t.unique.get(key.index_key(rt).as_str())?
            && owner.value() != id
        {
            let other = if key.global { "resource" } else { rt.name() };
            return Err(ScimError::uniqueness(format!(
                "{} \"{}\" is already used by another {other}",
                key.attribute, key.normalised
            ))
            .into());
        }
    }
    Ok(())
}

/// Checks that every member exists and returns them with their types and display names.
fn resolve_members(
    t: &Tables<'_>,
    group_id: &str,
    members: &[MemberInput],
) -> Result<Vec<MemberView>, Rejection> {
    let mut missing = Vec::new();
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        if m.value == group_id {
            return Err(ScimError::invalid_value("a group cannot be a member of itself").into());
        }
        let candidates: &[ResourceType] = match m.member_type {
            Some(ResourceType::User) => &[ResourceType::User],
            Some(ResourceType::Group) => &[ResourceType::Group],
            None => &ResourceType::ALL,
        };
        let mut found = None;
        for rt in candidates {
            if let Some(r) = tables::get_resource(&t.resources, *rt, &m.value)? {
                found = Some((*rt, r));
                break;
            }
        }
        match found {
            Some((member_type, r)) => out.push(MemberView {
                value: m.value.clone(),
                member_type,
                display: resource::display_name(&r.attributes),
            }),
            None => missing.push(m.value.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(ScimError::invalid_value(format!(
            "members refer to resources that do not exist: {}",
            missing.join(", ")
        ))
        .into());
    }
    Ok(out)
}

fn member_refs<M: AsMemberRef>(members: Option<&[M]>) -> Vec<MemberRef> {
    members
        .unwrap_or_default()
        .iter()
        .map(AsMemberRef::member_ref)
        .collect()
}

trait AsMemberRef {
    fn member_ref(&self) -> MemberRef;
}

impl AsMemberRef for MemberView {
    fn member_ref(&self) -> MemberRef {
        MemberRef {
            value: self.value.clone(),
            member_type: self.member_type,
        }
    }
}

/// Top-level attribute names whose values differ between two versions.
fn changed_attributes(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    changed
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;
    use crate::scim::schema::SchemaMode;

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
