//! `scimd log verify`: checks that the log is whole and that the read model is exactly what
//! folding the log gives.

use std::collections::{BTreeMap, BTreeSet};

use super::tables::{self, COUNTERS, EVENTS, MEMBER_OF, MEMBERS, QUERY_INDEX, RESOURCES, UNIQUE};
use super::{Event, EventKind, Snapshot, StoreError, StoredResource};
use scim::ResourceType;
use scim::filter::plan;
use scim::resource::Meta;
use scim::schema::Registry;

/// What verification found. `problems` is empty for a healthy store.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Number of events read.
    pub events: u64,
    /// The last position.
    pub position: u64,
    /// Resources per type after the fold.
    pub users: u64,
    /// Groups after the fold.
    pub groups: u64,
    /// Membership rows after the fold.
    pub memberships: u64,
    /// Every inconsistency found, in words.
    pub problems: Vec<String>,
}

type Key = (ResourceType, String);

/// Folds every event of the snapshot and compares the result with its read model; `registry` says
/// which values the uniqueness index must hold.
pub fn verify(snapshot: &Snapshot, registry: &Registry) -> Result<Report, StoreError> {
    let txn = snapshot.txn();
    let mut report = Report::default();
    let mut resources: BTreeMap<Key, StoredResource> = BTreeMap::new();
    let mut members: BTreeSet<(String, String, ResourceType)> = BTreeSet::new();

    let events = txn.open_table(EVENTS)?;
    let mut expected = 1u64;
    for row in events.range(0u64..)? {
        let (k, v) = row?;
        let position = k.value();
        if position != expected {
            report.problems.push(format!(
                "gap in the log: expected position {expected}, found {position}"
            ));
        }
        expected = position + 1;
        report.events += 1;
        report.position = position;
        match Event::decode(v.value()) {
            Ok(event) => {
                if event.position != position {
                    report.problems.push(format!(
                        "event at {position} claims position {}",
                        event.position
                    ));
                }
                fold(&mut resources, &mut members, event, &mut report.problems);
            }
            Err(e) => report.problems.push(format!("event {position}: {e}")),
        }
    }

    let counters = txn.open_table(COUNTERS)?;
    let recorded = tables::counter(&counters, tables::POSITION)?;
    if recorded != report.position {
        report.problems.push(format!(
            "recorded position {recorded} differs from the last event {}",
            report.position
        ));
    }

    compare_resources(snapshot, &resources, &mut report)?;
    compare_members(snapshot, &members, &mut report)?;
    compare_unique(snapshot, registry, &resources, &mut report)?;
    compare_query_index(snapshot, &resources, &mut report)?;
    for rt in ResourceType::ALL {
        let folded = resources.keys().filter(|(t, _)| *t == rt).count() as u64;
        let counted = tables::counter(&counters, tables::count_key(rt))?;
        if folded != counted {
            report.problems.push(format!(
                "{} count is {counted} but the log holds {folded}",
                rt.name()
            ));
        }
        match rt {
            ResourceType::User => report.users = folded,
            ResourceType::Group => report.groups = folded,
        }
    }
    report.memberships = members.len() as u64;
    Ok(report)
}

fn fold(
    resources: &mut BTreeMap<Key, StoredResource>,
    members: &mut BTreeSet<(String, String, ResourceType)>,
    event: Event,
    problems: &mut Vec<String>,
) {
    let key = (event.resource_type, event.resource_id.clone());
    let meta = Meta {
        created: event.created,
        last_modified: event.timestamp,
        version: event.version,
    };
    match event.kind {
        EventKind::Delete => {
            if resources.remove(&key).is_none() {
                problems.push(format!(
                    "event {} deletes {} {}, which does not exist",
                    event.position,
                    event.resource_type.name(),
                    event.resource_id
                ));
            }
        }
        EventKind::Create | EventKind::Replace | EventKind::Patch | EventKind::Import => {
            let attributes = match (event.attributes, resources.get(&key)) {
                (Some(a), _) => a,
                (None, Some(prev)) => prev.attributes.clone(),
                (None, None) => {
                    problems.push(format!(
                        "event {} changes {} {} before it exists",
                        event.position,
                        event.resource_type.name(),
                        event.resource_id
                    ));
                    return;
                }
            };
            resources.insert(key, StoredResource { meta, attributes });
        }
    }
    for m in event.members_removed {
        members.remove(&(event.resource_id.clone(), m.value, m.member_type));
    }
    for m in event.members_added {
        members.insert((event.resource_id.clone(), m.value, m.member_type));
    }
}

fn compare_resources(
    snapshot: &Snapshot,
    folded: &BTreeMap<Key, StoredResource>,
    report: &mut Report,
) -> Result<(), StoreError> {
    let table = snapshot.txn().open_table(RESOURCES)?;
    let mut seen = 0usize;
    for row in table.range(("", "")..)? {
        let (k, v) = row?;
        let (t, id) = k.value();
        seen += 1;
        let Some(rt) = ResourceType::from_name(t) else {
            report
                .problems
                .push(format!("read model has a resource of unknown type {t}"));
            continue;
        };
        let stored = StoredResource::decode(v.value())?;
        match folded.get(&(rt, id.to_owned())) {
            Some(f) if *f == stored => {}
            Some(_) => report
                .problems
                .push(format!("{t} {id} in the read model differs from the log")),
            None => report
                .problems
                .push(format!("{t} {id} is in the read model but not in the log")),
        }
    }
    if seen != folded.len() {
        report.problems.push(format!(
            "the read model holds {seen} resources, the log {}",
            folded.len()
        ));
    }
    Ok(())
}

fn compare_members(
    snapshot: &Snapshot,
    folded: &BTreeSet<(String, String, ResourceType)>,
    report: &mut Report,
) -> Result<(), StoreError> {
    let txn = snapshot.txn();
    let table = txn.open_table(MEMBERS)?;
    let mut actual = BTreeSet::new();
    for row in table.range(("", "")..)? {
        let (k, v) = row?;
        let (g, m) = k.value();
        match ResourceType::from_name(v.value()) {
            Some(rt) => {
                actual.insert((g.to_owned(), m.to_owned(), rt));
            }
            None => report
                .problems
                .push(format!("member {m} of {g} has an unknown type")),
        }
    }
    if actual != *folded {
        report.problems.push(format!(
            "group membership differs from the log: {} rows in the read model, {} from the log",
            actual.len(),
            folded.len()
        ));
    }
    let reverse = txn.open_table(MEMBER_OF)?;
    let mut reverse_rows = BTreeSet::new();
    for row in reverse.range(("", "")..)? {
        let (k, _) = row?;
        let (m, g) = k.value();
        reverse_rows.insert((g.to_owned(), m.to_owned()));
    }
    let forward: BTreeSet<(String, String)> = actual.into_iter().map(|(g, m, _)| (g, m)).collect();
    if reverse_rows != forward {
        report
            .problems
            .push("the member → groups index differs from group membership".into());
    }
    Ok(())
}

fn compare_unique(
    snapshot: &Snapshot,
    registry: &Registry,
    folded: &BTreeMap<Key, StoredResource>,
    report: &mut Report,
) -> Result<(), StoreError> {
    let mut expected = BTreeMap::new();
    for ((rt, id), r) in folded {
        for key in registry.unique_keys(*rt, &r.attributes) {
            if let Some(other) = expected.insert(key.index_key(*rt), id.clone()) {
                report.problems.push(format!(
                    "{} {} and {other} share the unique {}",
                    rt.name(),
                    id,
                    key.attribute
                ));
            }
        }
    }
    let table = snapshot.txn().open_table(UNIQUE)?;
    let mut actual = BTreeMap::new();
    for row in table.range("".."\u{10ffff}")? {
        let (k, v) = row?;
        actual.insert(k.value().to_owned(), v.value().to_owned());
    }
    if actual != expected {
        report.problems.push(format!(
            "the uniqueness index differs from the log: {} keys in the index, {} expected",
            actual.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// The query index must hold exactly the rows [`plan::index_keys`] gives for each resource.
fn compare_query_index(
    snapshot: &Snapshot,
    folded: &BTreeMap<Key, StoredResource>,
    report: &mut Report,
) -> Result<(), StoreError> {
    let mut expected = BTreeSet::new();
    for ((rt, id), r) in folded {
        for key in plan::index_keys(*rt, &r.attributes, &r.meta) {
            expected.insert((key, id.clone()));
        }
    }
    let table = snapshot.txn().open_table(QUERY_INDEX)?;
    let mut actual = BTreeSet::new();
    for row in table.range::<(&str, &str)>(..)? {
        let (k, _) = row?;
        let (key, id) = k.value();
        actual.insert((key.to_owned(), id.to_owned()));
    }
    if actual != expected {
        report.problems.push(format!(
            "the query index differs from the log: {} rows in the index, {} expected, {} missing, {} extra",
            actual.len(),
            expected.len(),
            expected.difference(&actual).count(),
            actual.difference(&expected).count()
        ));
    }
    Ok(())
}
