//! Start-up of the writer: every table created, and the two indexes derived from the read model
//! (uniqueness, query) rebuilt when the rules they were built under have changed.
//!
//! Guarantee kept here: when the writer takes its first command, the uniqueness index holds exactly
//! the values the current schemas declare unique (a changed `SCHEMAS_PATH` is picked up at the next
//! start) and the query index has the layout this build reads. Both rebuilds run in one write
//! transaction with the table creation: a crash during start-up leaves the previous state.

use redb::{Database, ReadableTable};

use super::txn::TxnTables;
use crate::store::tables::{
    self, POSITION, QUERY_INDEX_LAYOUT, QUERY_INDEX_VERSION, UNIQUE_SCHEMA,
};
use crate::store::{StoreError, StoredResource};
use scim::ResourceType;
use scim::filter::plan;
use scim::schema::Registry;

/// Creates every table, so readers never meet a missing one, rebuilds the uniqueness index if the
/// schemas' uniqueness rules changed since it was built, and returns the last position.
pub(crate) fn initialise(db: &Database, registry: &Registry) -> Result<u64, StoreError> {
    let txn = db.begin_write()?;
    let position = {
        let mut t = TxnTables::open(&txn)?;
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
fn reindex_queries(t: &mut TxnTables<'_>) -> Result<(), StoreError> {
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
    // A new store has nothing to index: a line at INFO would read like a repair.
    if !rows.is_empty() {
        tracing::info!(rows = rows.len(), "query index rebuilt");
    }
    Ok(())
}

/// Rebuilds the uniqueness index from the read model under the current schemas. Values that two
/// resources already share (stored before the attribute was declared unique) cannot both be
/// indexed: the first keeps it, and a warning names the attribute (not the value: personal data).
fn reindex_unique(t: &mut TxnTables<'_>, registry: &Registry) -> Result<(), StoreError> {
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
    if resources > 0 {
        tracing::info!(
            resources,
            duplicates,
            "uniqueness index rebuilt for the current schemas"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;
    use crate::store::tables::{COUNTERS, QUERY_INDEX, RESOURCES};
    use chrono::Utc;
    use scim::resource::Meta;
    use scim::schema::SchemaMode;

    #[test]
    fn a_store_written_before_the_query_index_gets_it_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("store.redb")).unwrap();
        let registry = Registry::built_in(SchemaMode::Strict).unwrap();
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
                .insert(("User", "u1"), r.encode().unwrap().as_slice())
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
