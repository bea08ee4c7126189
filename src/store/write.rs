//! The store's write vocabulary: what the service layer may ask of the store ([`Write`]), who asked
//! ([`WriteContext`]) and what a durable write produced ([`Outcome`]).
//!
//! Every [`Write`] is applied by the writer thread (`store/writer/`) in a batch that commits once
//! with fsync. A write is answered only after that commit: an `Ok` [`Outcome`] means the change is
//! durable, a 4xx means it changed nothing, and a 503 means its outcome is unknown (see the store's
//! Guarantees and docs/ARCHITECTURE.md, "The flow of one write").

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::tables::Parked;
use super::{AsyncOperation, AsyncRequest, StoredResource};
use scim::filter::Limits;
use scim::patch;
use scim::resource::{MemberInput, MemberView};
use scim::{ResourceType, ScimError};

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
    /// The writer applies it to the state its transaction holds, so two concurrent PATCHes of one
    /// resource never lose each other's changes. `with_members` asks for the Group's member list
    /// in the outcome (read only then). `time_limit` is the most writer time it may take: beyond
    /// it the PATCH is refused (413) and nothing is applied, so one request cannot hold up every
    /// other client's writes.
    Patch {
        rt: ResourceType,
        id: String,
        if_match: Option<String>,
        operations: Vec<patch::Operation>,
        limits: Limits,
        with_members: bool,
        time_limit: Duration,
    },
    /// The operations of one Bulk request (RFC 7644 §3.7), in order, in the same transaction as
    /// the rest of the batch: each succeeds or fails on its own, one that refers to an operation
    /// that failed fails too, and after `fail_on_errors` failures the rest are not attempted.
    Bulk {
        operations: Vec<BulkWrite>,
        fail_on_errors: Option<usize>,
    },
    /// Delete a resource and remove it from every group it belongs to: each such group gets its
    /// own event, in the same transaction as the delete.
    Delete {
        rt: ResourceType,
        id: String,
        if_match: Option<String>,
    },
    /// `scimd import`: create resource `id` (version 1, `created` kept from the earlier server) or
    /// replace it whole (the next version), as one event of kind `import`. Uniqueness holds as for
    /// any write. Members that do not exist (or name the group itself) are left out and named in
    /// [`Outcome::Imported`], so that a stale reference the earlier server kept does not keep the
    /// whole group out.
    Import {
        rt: ResourceType,
        id: String,
        attributes: Map<String, Value>,
        members: Option<Vec<MemberInput>>,
        created: Option<DateTime<Utc>>,
    },
    /// Save a log subscriber's checkpoint (no event). It commits like any write, so a checkpoint
    /// is as durable as the events it follows.
    Checkpoint { name: String, position: u64 },
    /// Record a change a projection refused for good (no event).
    Park {
        subscriber: String,
        id: String,
        parked: Parked,
    },
    /// Forget a parked change once it has been applied (no event).
    Unpark { subscriber: String, id: String },
    /// Change a remote projection's id map (no event): each `(id, Some(remote))` records that the
    /// remote backend knows the resource `id` as `remote` (replacing an earlier entry), each
    /// `(id, None)` drops the entry. See [`projections::IdMap`].
    RemoteIds {
        projection: String,
        rt: ResourceType,
        entries: Vec<(String, Option<String>)>,
    },
    /// Drop a remote projection's whole id map (no event), after `replay --fresh` emptied it.
    ClearRemoteIds { projection: String },
    /// Persist an asynchronous request under its Set-Txn `txn` before it is answered 202 (no
    /// event). Refused with 503 when `max_pending` requests already wait to run.
    AsyncAccept {
        txn: String,
        request: Box<AsyncRequest>,
        max_pending: u64,
    },
    /// Run the write of the accepted asynchronous request `txn` and record its outcome (one
    /// bulk-response operation per entry of `echoes`) in the same transaction as the write's
    /// events, so that a request runs at most once: a request already done is not run again and
    /// answers [`Outcome::Checkpointed`]. The write's own answer comes back in [`Outcome::Async`].
    AsyncRun {
        txn: String,
        write: Box<Write>,
        echoes: Vec<AsyncEcho>,
    },
    /// Record the outcome of the asynchronous request `txn` that failed before it reached a
    /// write (no event).
    AsyncFinish {
        txn: String,
        operations: Vec<AsyncOperation>,
    },
    /// Drop the finished asynchronous requests decided before `before` (no event).
    AsyncForget { before: DateTime<Utc> },
}

/// What the outcome of an asynchronous request's operation echoes of it. For a Bulk, one per
/// operation in the order the writer applies them (the order of [`Outcome::Bulk`]).
#[derive(Debug, Clone)]
pub struct AsyncEcho {
    /// The operation's index in the Bulk request; `None` for a single request.
    pub index: Option<usize>,
    /// The method, as sent.
    pub method: String,
    /// The resource's URL, once known.
    pub location: Option<String>,
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

/// What a durable write produced: the writer answers with an `Outcome` only after the batch that
/// holds the write has committed with fsync.
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
    /// An import was written; `left_out` are the members that did not exist.
    Imported { left_out: Vec<String> },
    /// Subscriber bookkeeping (checkpoint, parked change) is saved.
    Checkpointed,
    /// Each Bulk operation's outcome, in the order given; `None` for those not attempted once
    /// `fail_on_errors` was reached.
    Bulk(Vec<Option<Result<Outcome, ScimError>>>),
    /// An asynchronous request ran: its write's own answer (its outcome is recorded).
    Async(Box<Result<Outcome, ScimError>>),
}

impl Outcome {
    /// The HTTP status and resource version a bulk-response operation (RFC 7644 §3.7.3) reports
    /// for this successful outcome of a `method` request.
    pub fn bulk_status(&self, method: &str) -> (u16, Option<u64>) {
        let version = match self {
            Outcome::Resource { resource, .. } => Some(resource.meta.version),
            _ => None,
        };
        let status = match self {
            Outcome::Deleted => 204,
            _ if method.eq_ignore_ascii_case("POST") => 201,
            _ => 200,
        };
        (status, version)
    }
}
