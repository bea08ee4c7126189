//! Projections: the backends scimd materialises Users and Groups into (flat files, SQL, LDAP,
//! MongoDB, JumpCloud and an upstream SCIM server).
//!
//! Every backend implements [`Projection`]. The caller (scimd's projection runner) owns the log,
//! batching, retries, parking and checkpoints; a backend only applies [`Change`]s. This crate knows
//! nothing of HTTP or of the event log.
//!
//! # Contract every backend keeps
//! - **Order per resource.** `apply` applies the changes of a batch in order. The changes to one
//!   resource always arrive in log order (within a batch and across batches); changes to different
//!   resources are independent, so a backend may apply them concurrently.
//! - **Idempotent under redelivery.** Delivery is at-least-once: after a crash, a lost connection
//!   or a backend error the runner applies a batch again, possibly extended by later events (the
//!   next batch then starts at the same place but may end further on). Applying a change that
//!   was already applied, or an older change over a newer state that is then followed by the newer
//!   changes, must end in the same state. Concretely: an upsert overwrites, a delete of what is
//!   not there succeeds, adding a member that is there and removing one that is not succeed.
//! - **Errors.** A failure that may go away (backend down, timeout) is
//!   [`ProjectionError::Unavailable`]: the runner retries the same batch with backoff. A change the
//!   backend refuses for good (a constraint, a size limit, a schema violation) is
//!   [`ProjectionError::Rejected`] with its index: the runner parks it, re-applies the rest of the
//!   batch, and `scimd projection retry` later re-applies the resource's current state.
//! - **Checkpoints.** After `apply(changes, position)` returns `Ok`, the backend reflects every
//!   event up to `position` (except parked changes). A backend that [records the
//!   position](Projection::records_position) keeps it with its data (in the same transaction where
//!   it can, else right after the batch); otherwise the runner stores it in scimd's store after the
//!   batch. Either way a crash between the data and the checkpoint only repeats work.
//! - Documents are written as given; they never hold `password` or `User.groups` (the runner strips
//!   them).
//!
//! # Whole documents or membership deltas
//! A group change reaches a backend as a whole document ([`Change::Upsert`]) unless the backend
//! says it [takes member deltas](Projection::member_deltas): then a group that changed only through
//! replaces and PATCHes in a batch arrives as [`Change::Members`], the members added and removed
//! (from the events' own deltas, never by reading the member list) plus the group without its
//! `members`. Adding one member to a 100,000-member group is then one small operation.
//! Within a batch the runner folds the deltas of one group:
//! - each member appears at most once, in `added` or `removed`, according to its last operation;
//!   an add followed by a remove becomes one remove (harmless where the add never landed, and
//!   needed where a redelivered batch starts from a state that already holds the add);
//! - a group created (or re-projected whole) in the batch arrives as one [`Change::Upsert`] as of
//!   its last event: the deltas after the upsert are folded into it;
//! - a group deleted in the batch arrives as a [`Change::Delete`].
//!
//! A backend that takes deltas stores members without their `display` (a member's rename does not
//! re-send the groups it is in).
//!
//! # Reading back
//! Each backend also has a [`source::Source`], its read side: what the backend holds, as SCIM
//! documents (`scimd import` moves an earlier server's data in with it).

pub mod file;
pub mod id_map;
pub mod jumpcloud;
pub mod ldap;
pub mod mongo;
pub mod scim;
pub mod source;
pub mod sql;

use async_trait::async_trait;
use serde_json::Value;

pub use id_map::{IdMap, MemoryIdMap};

/// The SCIM resource types, named as the backends lay them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `Users`.
    User,
    /// `Groups`.
    Group,
}

impl ResourceKind {
    /// The plural the layouts use: `Users` or `Groups`.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
}

/// A group member named by a membership delta.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// The member's id.
    pub value: String,
    /// Whether the member is a User or a Group.
    pub kind: ResourceKind,
}

/// One change to apply to a backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create or overwrite a resource with its full document (after-image).
    Upsert {
        /// User or Group.
        kind: ResourceKind,
        /// The resource id.
        id: String,
        /// The resource version the document shows.
        version: u64,
        /// The full SCIM document, as a GET with every attribute requested returns it.
        document: Value,
    },
    /// Remove a resource.
    Delete {
        /// User or Group.
        kind: ResourceKind,
        /// The resource id.
        id: String,
    },
    /// A group's membership changed, and perhaps its other attributes: only sent to backends whose
    /// [`Projection::member_deltas`] is true (see the [crate documentation](crate)).
    Members {
        /// The group id.
        id: String,
        /// The group version after the change.
        version: u64,
        /// The group as of `version` without `members`: every other attribute and `meta`.
        document: Value,
        /// Whether attributes other than `members` and `meta` changed, so that a backend that
        /// keeps them apart from the members must rewrite them.
        attributes_changed: bool,
        /// Members the group gained (none of them is also in `removed`).
        added: Vec<Member>,
        /// Members the group lost.
        removed: Vec<Member>,
    },
}

impl Change {
    /// The id of the resource this change is about.
    pub fn id(&self) -> &str {
        match self {
            Change::Upsert { id, .. } | Change::Delete { id, .. } | Change::Members { id, .. } => {
                id
            }
        }
    }

    /// Whether the change is about a User or a Group.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Change::Upsert { kind, .. } | Change::Delete { kind, .. } => *kind,
            Change::Members { .. } => ResourceKind::Group,
        }
    }
}

/// The indexes of `changes` per resource, each list in batch order, the lists in the order of
/// each resource's first change: what a backend applying different resources concurrently needs.
pub fn by_resource(changes: &[Change]) -> Vec<Vec<usize>> {
    let mut slots: std::collections::HashMap<(ResourceKind, &str), usize> =
        std::collections::HashMap::with_capacity(changes.len());
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let slot = *slots
            .entry((change.kind(), change.id()))
            .or_insert_with(|| {
                out.push(Vec::new());
                out.len() - 1
            });
        out[slot].push(index);
    }
    out
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The backend is unreachable or failed in a way that may pass; retry the batch later.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refuses change `index` of the batch for good. Changes before it may or may not
    /// have been applied; re-applying them is safe.
    #[error("change {index} rejected: {reason}")]
    Rejected {
        /// Index into the batch.
        index: usize,
        /// The backend's reason.
        reason: String,
    },
    /// The backend's configuration is wrong (bad URL, unwritable directory); scimd reports it at start-up.
    #[error("misconfigured: {0}")]
    Config(String),
}

/// A backend that materialises Users and Groups.
#[async_trait]
pub trait Projection: Send + Sync {
    /// A short name: `file`, `sql` …; used for the checkpoint and in `/status`.
    fn name(&self) -> &str;

    /// Applies `changes` in order. `position` is the log position the batch ends at: backends that
    /// can (SQL) record it in the same transaction as the data, so that data and checkpoint never
    /// disagree.
    async fn apply(&mut self, changes: &[Change], position: u64) -> Result<(), ProjectionError>;

    /// Whether the backend takes a group's membership changes as [`Change::Members`] deltas instead
    /// of whole documents. Such a backend never shows members' `display`.
    fn member_deltas(&self) -> bool {
        false
    }

    /// Whether the backend records the log position with its data. Then [`stored_position`] is the
    /// truth about what it holds, and `None` there means it holds nothing yet (a new database).
    ///
    /// [`stored_position`]: Projection::stored_position
    fn records_position(&self) -> bool {
        false
    }

    /// The position the backend itself recorded with its data, if it keeps one.
    async fn stored_position(&mut self) -> Result<Option<u64>, ProjectionError>;

    /// Removes everything this projection wrote, before a rebuild from position 0.
    async fn reset(&mut self) -> Result<(), ProjectionError>;
}
