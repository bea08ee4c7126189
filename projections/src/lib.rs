//! Projections: the backends scimd materialises Users and Groups into (flat files, SQL, and later
//! MongoDB, LDAP, JumpCloud, an upstream SCIM server).
//!
//! Every backend implements [`Projection`]. The caller (scimd's projection runner) owns the log,
//! batching, retries, parking and checkpoints; a backend only applies [`Change`]s. This crate knows
//! nothing of HTTP or of the event log.
//!
//! # Contract every backend keeps
//! - `apply` applies the changes in order. Applying the same batch twice gives the same result
//!   (the runner re-applies after a crash: at-least-once delivery).
//! - A failure that may go away (backend down, timeout) is [`ProjectionError::Unavailable`]: the runner
//!   retries the same batch with backoff. A change the backend refuses for good (a constraint, a size
//!   limit) is [`ProjectionError::Rejected`] with its index: the runner parks it and goes on.
//! - Documents are written as given; they never hold `password` or `User.groups` (the runner strips them).

pub mod file;
pub mod sql;

use async_trait::async_trait;
use serde_json::Value;

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
}

impl Change {
    /// The id of the resource this change is about.
    pub fn id(&self) -> &str {
        match self {
            Change::Upsert { id, .. } | Change::Delete { id, .. } => id,
        }
    }
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
