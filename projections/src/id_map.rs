//! The id map of a remote backend: scimd id ↔ the id the remote service assigned.
//!
//! Remote APIs (an upstream SCIM server, JumpCloud) assign their own ids, so a backend that writes
//! to one must remember, per resource type, which remote resource stands for which scimd
//! resource, and must translate member values. The map is durable: scimd keeps it in its store
//! (written through the store's writer, like checkpoints) and hands each remote backend an
//! [`IdMap`] of its own when it connects. This crate knows nothing of that store.
//!
//! # How a backend uses it
//! - Before an update or delete: [`IdMap::remote_id`]. `None` means the resource was never created
//!   remotely (or the map was dropped by `scimd replay --fresh`): create it.
//! - Right after a remote create answered with the new id: [`IdMap::record`]. When
//!   [`record`](IdMap::record) returns `Ok`, the entry is on disk.
//! - After a remote delete (or a 404 that says it is gone): [`IdMap::forget`].
//! - Members: [`IdMap::remote_ids`] translates many at once (one store read); [`IdMap::local_ids`]
//!   goes the other way, for what the remote service returns.
//! - [`Projection::reset`](crate::Projection::reset) may list the map ([`IdMap::entries`]) to delete
//!   what it wrote; scimd drops the whole map itself right after a successful `reset`, so a backend
//!   never clears it.
//!
//! # A crash between the remote create and `record`
//! The remote resource then exists but the map does not know it, and the runner applies the change
//! again (delivery is at-least-once). A backend must therefore find the resource before or after
//! creating it again: look it up by its unique name before the create (JumpCloud: `username`,
//! group `name`) or on the create's conflict (SCIM: 409 → `userName eq` / `displayName eq` →
//! adopt exactly one match), and [`record`](IdMap::record) what it found.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::{ProjectionError, ResourceKind};

/// One projection's durable map of scimd ids to remote ids, per resource type.
///
/// Every method may fail with [`ProjectionError::Unavailable`] when scimd's store cannot be read or
/// written; the runner then retries the batch, which is safe (see the crate's contract).
#[async_trait]
pub trait IdMap: Send + Sync {
    /// The remote id of each of `ids` (scimd ids of `kind`), in the same order; `None` where
    /// there is no entry.
    async fn remote_ids(
        &self,
        kind: ResourceKind,
        ids: &[String],
    ) -> Result<Vec<Option<String>>, ProjectionError>;

    /// The scimd id of each of `remote_ids` (remote ids of `kind`), in the same order; `None`
    /// where no scimd resource maps to it.
    async fn local_ids(
        &self,
        kind: ResourceKind,
        remote_ids: &[String],
    ) -> Result<Vec<Option<String>>, ProjectionError>;

    /// Durably records `(scimd id, remote id)` pairs of `kind`, replacing an earlier entry of the
    /// same scimd id. Returns once the entries are on disk.
    async fn record(
        &self,
        kind: ResourceKind,
        pairs: Vec<(String, String)>,
    ) -> Result<(), ProjectionError>;

    /// Durably drops the entries of these scimd ids of `kind` (absent ones are ignored).
    async fn forget(&self, kind: ResourceKind, ids: Vec<String>) -> Result<(), ProjectionError>;

    /// Every `(scimd id, remote id)` pair of `kind`, in scimd id order.
    async fn entries(&self, kind: ResourceKind) -> Result<Vec<(String, String)>, ProjectionError>;

    /// The remote id of one scimd resource.
    async fn remote_id(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<String>, ProjectionError> {
        let mut found = self.remote_ids(kind, &[id.to_owned()]).await?;
        Ok(found.pop().flatten())
    }
}

/// An [`IdMap`] held in memory only: for tests of a backend without scimd's store, and for tools.
/// It forgets everything when dropped, so never use it for a real deployment.
#[derive(Debug, Default)]
pub struct MemoryIdMap {
    entries: Mutex<Entries>,
}

/// (kind, scimd id) → remote id.
type Entries = HashMap<(ResourceKind, String), String>;

impl MemoryIdMap {
    /// An empty map.
    pub fn new() -> MemoryIdMap {
        MemoryIdMap::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Entries>, ProjectionError> {
        self.entries
            .lock()
            .map_err(|_| ProjectionError::Unavailable("the in-memory id map is poisoned".into()))
    }
}

#[async_trait]
impl IdMap for MemoryIdMap {
    async fn remote_ids(
        &self,
        kind: ResourceKind,
        ids: &[String],
    ) -> Result<Vec<Option<String>>, ProjectionError> {
        let entries = self.lock()?;
        Ok(ids
            .iter()
            .map(|id| entries.get(&(kind, id.clone())).cloned())
            .collect())
    }

    async fn local_ids(
        &self,
        kind: ResourceKind,
        remote_ids: &[String],
    ) -> Result<Vec<Option<String>>, ProjectionError> {
        let entries = self.lock()?;
        Ok(remote_ids
            .iter()
            .map(|remote| {
                entries
                    .iter()
                    .find(|((k, _), r)| *k == kind && *r == remote)
                    .map(|((_, id), _)| id.clone())
            })
            .collect())
    }

    async fn record(
        &self,
        kind: ResourceKind,
        pairs: Vec<(String, String)>,
    ) -> Result<(), ProjectionError> {
        let mut entries = self.lock()?;
        for (id, remote) in pairs {
            entries.insert((kind, id), remote);
        }
        Ok(())
    }

    async fn forget(&self, kind: ResourceKind, ids: Vec<String>) -> Result<(), ProjectionError> {
        let mut entries = self.lock()?;
        for id in ids {
            entries.remove(&(kind, id));
        }
        Ok(())
    }

    async fn entries(&self, kind: ResourceKind) -> Result<Vec<(String, String)>, ProjectionError> {
        let entries = self.lock()?;
        let mut out: Vec<(String, String)> = entries
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, id), remote)| (id.clone(), remote.clone()))
            .collect();
        out.sort();
        Ok(out)
    }
}
