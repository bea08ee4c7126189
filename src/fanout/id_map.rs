//! The durable id map of one remote projection ([`projections::IdMap`]), kept in scimd's store:
//! reads come from a snapshot, changes go through the writer like checkpoints, so `record`
//! returning `Ok` means the entry is on disk.

use std::sync::Arc;

use async_trait::async_trait;
use projections::{IdMap, ProjectionError, ResourceKind};
use scim::ResourceType;

use crate::store::{Store, StoreError, Write, WriteContext};

/// The id map of the projection called `projection`, in `store`.
pub struct StoreIdMap {
    store: Arc<Store>,
    projection: &'static str,
}

impl StoreIdMap {
    /// The map of `projection` (its name is the key, like its checkpoint's).
    pub fn new(store: Arc<Store>, projection: &'static str) -> StoreIdMap {
        StoreIdMap { store, projection }
    }

    async fn write(
        &self,
        kind: ResourceKind,
        entries: Vec<(String, Option<String>)>,
    ) -> Result<(), ProjectionError> {
        if entries.is_empty() {
            return Ok(());
        }
        let write = Write::RemoteIds {
            projection: self.projection.into(),
            rt: resource_type(kind),
            entries,
        };
        let ctx = WriteContext {
            actor: "server".into(),
            txn_id: format!("projection-{}", self.projection),
        };
        self.store
            .write(write, ctx)
            .await
            .map(|_| ())
            .map_err(|e| unavailable(format!("saving the id map failed: {}", e.detail)))
    }
}

#[async_trait]
impl IdMap for StoreIdMap {
    async fn remote_ids(
        &self,
        kind: ResourceKind,
        ids: &[String],
    ) -> Result<Vec<Option<String>>, ProjectionError> {
        self.store
            .snapshot()
            .and_then(|s| s.remote_ids(self.projection, resource_type(kind), ids))
            .map_err(store_error)
    }

    async fn local_ids(
        &self,
        kind: ResourceKind,
        remote_ids: &[String],
    ) -> Result<Vec<Option<String>>, ProjectionError> {
        self.store
            .snapshot()
            .and_then(|s| s.local_ids(self.projection, resource_type(kind), remote_ids))
            .map_err(store_error)
    }

    async fn record(
        &self,
        kind: ResourceKind,
        pairs: Vec<(String, String)>,
    ) -> Result<(), ProjectionError> {
        let entries = pairs.into_iter().map(|(id, r)| (id, Some(r))).collect();
        self.write(kind, entries).await
    }

    async fn forget(&self, kind: ResourceKind, ids: Vec<String>) -> Result<(), ProjectionError> {
        let entries = ids.into_iter().map(|id| (id, None)).collect();
        self.write(kind, entries).await
    }

    async fn entries(&self, kind: ResourceKind) -> Result<Vec<(String, String)>, ProjectionError> {
        self.store
            .snapshot()
            .and_then(|s| s.remote_id_entries(self.projection, resource_type(kind)))
            .map_err(store_error)
    }
}

fn resource_type(kind: ResourceKind) -> ResourceType {
    match kind {
        ResourceKind::User => ResourceType::User,
        ResourceKind::Group => ResourceType::Group,
    }
}

fn store_error(e: StoreError) -> ProjectionError {
    unavailable(format!("reading the id map failed: {e}"))
}

fn unavailable(detail: String) -> ProjectionError {
    ProjectionError::Unavailable(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scim::schema::{Registry, SchemaMode};

    fn store(dir: &std::path::Path) -> Arc<Store> {
        let registry = Arc::new(Registry::built_in(SchemaMode::Strict).expect("registry"));
        Arc::new(Store::open(dir, registry, 1 << 20).expect("store"))
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn entries_are_kept_per_projection_and_type_both_ways_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = store(dir.path());
            let scim = StoreIdMap::new(store.clone(), "scim");
            let other = StoreIdMap::new(store.clone(), "jumpcloud");
            scim.record(
                ResourceKind::User,
                vec![("u1".into(), "r1".into()), ("u2".into(), "r2".into())],
            )
            .await
            .expect("record");
            scim.record(ResourceKind::Group, vec![("g1".into(), "rg1".into())])
                .await
                .expect("record");
            other
                .record(ResourceKind::User, vec![("u1".into(), "jc1".into())])
                .await
                .expect("record");
            // A new remote id for u2 replaces the entry, and the old one no longer points back.
            scim.record(ResourceKind::User, vec![("u2".into(), "r2b".into())])
                .await
                .expect("re-record");
            store.close().await;
        }
        let store = store(dir.path());
        let scim = StoreIdMap::new(store.clone(), "scim");
        let other = StoreIdMap::new(store.clone(), "jumpcloud");
        assert_eq!(
            scim.remote_ids(ResourceKind::User, &ids(&["u1", "u2", "u3", "g1"]))
                .await
                .expect("read"),
            vec![Some("r1".into()), Some("r2b".into()), None, None]
        );
        assert_eq!(
            scim.local_ids(ResourceKind::User, &ids(&["r1", "r2", "r2b", "rg1"]))
                .await
                .expect("read"),
            vec![Some("u1".into()), None, Some("u2".into()), None]
        );
        assert_eq!(
            scim.remote_id(ResourceKind::Group, "g1")
                .await
                .expect("read"),
            Some("rg1".into())
        );
        assert_eq!(
            other
                .remote_id(ResourceKind::User, "u1")
                .await
                .expect("read"),
            Some("jc1".into())
        );
        assert_eq!(
            scim.entries(ResourceKind::User).await.expect("list"),
            vec![("u1".into(), "r1".into()), ("u2".into(), "r2b".into())]
        );

        scim.forget(ResourceKind::User, ids(&["u1", "never-mapped"]))
            .await
            .expect("forget");
        assert_eq!(
            scim.remote_id(ResourceKind::User, "u1")
                .await
                .expect("read"),
            None
        );
        assert_eq!(
            scim.local_ids(ResourceKind::User, &ids(&["r1"]))
                .await
                .expect("read"),
            vec![None]
        );
    }

    #[tokio::test]
    async fn clearing_one_projections_map_leaves_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        for name in ["jumpcloud", "scim", "scimx"] {
            let map = StoreIdMap::new(store.clone(), name);
            map.record(ResourceKind::User, vec![("u".into(), format!("{name}-u"))])
                .await
                .expect("record");
            map.record(ResourceKind::Group, vec![("g".into(), format!("{name}-g"))])
                .await
                .expect("record");
        }
        let ctx = WriteContext {
            actor: "test".into(),
            txn_id: "test".into(),
        };
        store
            .write(
                Write::ClearRemoteIds {
                    projection: "scim".into(),
                },
                ctx,
            )
            .await
            .expect("clear");
        let scim = StoreIdMap::new(store.clone(), "scim");
        assert!(
            scim.entries(ResourceKind::User)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(
            scim.entries(ResourceKind::Group)
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(
            scim.local_ids(ResourceKind::Group, &ids(&["scim-g"]))
                .await
                .expect("read"),
            vec![None]
        );
        for name in ["jumpcloud", "scimx"] {
            let map = StoreIdMap::new(store.clone(), name);
            assert_eq!(
                map.entries(ResourceKind::Group).await.expect("list"),
                vec![("g".into(), format!("{name}-g"))]
            );
            assert_eq!(
                map.local_ids(ResourceKind::User, &[format!("{name}-u")])
                    .await
                    .expect("read"),
                vec![Some("u".into())]
            );
        }
    }
}
