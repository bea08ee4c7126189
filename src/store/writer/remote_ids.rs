//! The writer's side of the remote projections' id maps (see [`projections::IdMap`]): the forward
//! table and its reverse index change together, in the batch's transaction.

use super::txn::TxnTables;
use crate::store::StoreError;
use scim::ResourceType;

/// Records (`Some`) or drops (`None`) entries of one projection's map, keeping the reverse index
/// in step: a replaced entry's old remote id no longer points back.
pub(super) fn update(
    t: &mut TxnTables<'_>,
    projection: &str,
    rt: ResourceType,
    entries: Vec<(String, Option<String>)>,
) -> Result<(), StoreError> {
    let kind = rt.name();
    for (id, remote) in entries {
        let old = t
            .remote_ids
            .remove((projection, kind, id.as_str()))?
            .map(|v| v.value().to_owned());
        if let Some(old) = old {
            t.remote_ids_reverse
                .remove((projection, kind, old.as_str()))?;
        }
        if let Some(remote) = remote {
            t.remote_ids
                .insert((projection, kind, id.as_str()), remote.as_str())?;
            t.remote_ids_reverse
                .insert((projection, kind, remote.as_str()), id.as_str())?;
        }
    }
    Ok(())
}

/// Drops every entry of one projection's map, both directions.
pub(super) fn clear(t: &mut TxnTables<'_>, projection: &str) -> Result<(), StoreError> {
    // Keys sort by projection first: start at this projection's first key; the predicate keeps
    // the later projections' rows the range also covers.
    t.remote_ids
        .retain_in((projection, "", "").., |k, _| k.0 != projection)?;
    t.remote_ids_reverse
        .retain_in((projection, "", "").., |k, _| k.0 != projection)?;
    Ok(())
}
