//! A batch as the SQL dialects write it: reduced to the last change per resource ([`Plan`]), and
//! cut into multi-row statements of a few sizes ([`pieces`], [`RowStatements`], [`write_rows`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};

use super::TableNames;
use super::dialect::Dialect;
use crate::{Change, ResourceKind};

/// Index of a kind's table in [`TableNames`] and [`Plan`]: 0 for Users, 1 for Groups.
pub(super) fn slot(kind: ResourceKind) -> usize {
    match kind {
        ResourceKind::User => 0,
        ResourceKind::Group => 1,
    }
}

/// What a batch amounts to: the last change to each resource, sorted by table and operation.
/// Rows are distinct within a plan, so the order of its statements does not matter.
#[derive(Debug, Default)]
pub(super) struct Plan<'a> {
    /// Per slot: `(id, document)` to insert or overwrite, in batch order.
    pub(super) upserts: [Vec<(&'a str, &'a Value)>; 2],
    /// Per slot: ids to delete, in batch order.
    pub(super) deletes: [Vec<&'a str>; 2],
}

impl<'a> Plan<'a> {
    /// The plan of `changes`.
    pub(super) fn new(changes: &'a [Change]) -> Self {
        let mut last: HashMap<(ResourceKind, &str), usize> = HashMap::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            last.insert((change.kind(), change.id()), index);
        }
        let mut plan = Plan::default();
        for (index, change) in changes.iter().enumerate() {
            match change {
                Change::Upsert {
                    kind, id, document, ..
                } if last[&(*kind, id.as_str())] == index => {
                    plan.upserts[slot(*kind)].push((id, document));
                }
                Change::Delete { kind, id } if last[&(*kind, id.as_str())] == index => {
                    plan.deletes[slot(*kind)].push(id);
                }
                _ => {}
            }
        }
        plan
    }
}

/// Splits items of the given sizes into consecutive ranges for multi-row statements: each range
/// holds a power of two of items, at most `max_rows`, and at most `max_bytes` in total unless a
/// single item is larger. Powers of two keep the number of distinct statements (and prepared
/// statements cached per connection) small.
pub(super) fn pieces(sizes: &[usize], max_rows: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut end = start;
        let mut bytes = 0usize;
        while end < sizes.len()
            && end - start < max_rows
            && (end == start || bytes.saturating_add(sizes[end]) <= max_bytes)
        {
            bytes = bytes.saturating_add(sizes[end]);
            end += 1;
        }
        let n = end - start;
        let power = 1usize << (usize::BITS - 1 - n.leading_zeros());
        ranges.push(start..start + power);
        start += power;
    }
    ranges
}

/// `(?, ?), (?, ?), …` with `rows` groups of `per_row` placeholders.
fn placeholders(rows: usize, per_row: usize) -> String {
    let row = format!("({})", vec!["?"; per_row].join(", "));
    vec![row; rows].join(", ")
}

/// Most rows in one multi-row statement of the dialects that bind a parameter per value
/// (MySQL/MariaDB, SQLite); a power of two.
const MAX_ROWS: usize = 256;

/// The multi-row upsert and delete statements of one table for the dialects that bind a parameter
/// per value, written once for each statement size [`pieces`] produces: 1, 2, 4 … [`MAX_ROWS`].
#[derive(Debug)]
pub(super) struct RowStatements {
    /// `INSERT … ON CONFLICT`, indexed by log2 of the number of rows.
    upsert: Vec<Arc<str>>,
    /// `DELETE … IN (…)`, indexed likewise.
    delete: Vec<Arc<str>>,
}

impl RowStatements {
    /// The statements of `table` (already quoted); `on_conflict` follows
    /// `INSERT INTO table (id, details) VALUES …` to update a row that exists.
    pub(super) fn new(table: &str, on_conflict: &str) -> RowStatements {
        let sizes = (0..=MAX_ROWS.trailing_zeros()).map(|log| 1usize << log);
        RowStatements {
            upsert: sizes
                .clone()
                .map(|n| {
                    format!(
                        "INSERT INTO {table} (id, details) VALUES {} {on_conflict}",
                        placeholders(n, 2)
                    )
                    .into()
                })
                .collect(),
            delete: sizes
                .map(|n| {
                    format!(
                        "DELETE FROM {table} WHERE id IN ({})",
                        vec!["?"; n].join(", ")
                    )
                    .into()
                })
                .collect(),
        }
    }

    /// The statements of both tables of `names` (Users, Groups) in dialect `D`.
    pub(super) fn of<D: Dialect>(names: &TableNames) -> [RowStatements; 2] {
        [0, 1].map(|slot| {
            RowStatements::new(
                &D::quote(names.name(slot)),
                &D::on_conflict("id", "details"),
            )
        })
    }

    /// The upsert of `rows` rows (a power of two, at most [`MAX_ROWS`], as [`pieces`] cuts them).
    pub(super) fn upsert(&self, rows: usize) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.upsert[rows.trailing_zeros() as usize].clone())
    }

    /// The delete of `rows` ids, sized as for [`RowStatements::upsert`].
    pub(super) fn delete(&self, rows: usize) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.delete[rows.trailing_zeros() as usize].clone())
    }
}

/// Writes `plan` with [`RowStatements`] (MySQL/MariaDB, SQLite: one parameter per value): deletes,
/// then upserts, of each table, in statements of at most [`MAX_ROWS`] rows and `max_bytes` of ids
/// and documents unless one row alone is larger. Rows are distinct within a plan, so cutting it
/// changes nothing but the number of round trips; the upserts overwrite, so writing a plan twice
/// leaves the same rows.
pub(super) async fn write_rows<DB>(
    conn: &mut DB::Connection,
    statements: &[RowStatements; 2],
    plan: &Plan<'_>,
    max_bytes: usize,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    for (slot, sql) in statements.iter().enumerate() {
        let ids = &plan.deletes[slot];
        let sizes: Vec<usize> = ids.iter().map(|id| id.len()).collect();
        for range in pieces(&sizes, MAX_ROWS, max_bytes) {
            let mut query = sqlx::query(sql.delete(range.len()));
            for id in &ids[range] {
                query = query.bind(*id);
            }
            query.execute(&mut *conn).await?;
        }

        let rows = &plan.upserts[slot];
        let documents: Vec<String> = rows.iter().map(|(_, d)| d.to_string()).collect();
        let sizes: Vec<usize> = rows
            .iter()
            .zip(&documents)
            .map(|((id, _), d)| id.len() + d.len())
            .collect();
        for range in pieces(&sizes, MAX_ROWS, max_bytes) {
            let mut query = sqlx::query(sql.upsert(range.len()));
            for ((id, _), document) in rows[range.clone()].iter().zip(&documents[range]) {
                query = query.bind(*id).bind(document.as_str());
            }
            query.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_the_last_change_per_resource() {
        let upsert = |kind, id: &str, n: i64| Change::Upsert {
            kind,
            id: id.into(),
            version: 1,
            document: serde_json::json!({ "n": n }),
        };
        let delete = |kind, id: &str| Change::Delete {
            kind,
            id: id.into(),
        };
        let changes = vec![
            upsert(ResourceKind::User, "a", 1),
            upsert(ResourceKind::User, "b", 1),
            delete(ResourceKind::User, "a"),
            upsert(ResourceKind::Group, "a", 2),
            upsert(ResourceKind::User, "b", 3),
            delete(ResourceKind::Group, "c"),
        ];
        let plan = Plan::new(&changes);
        assert_eq!(plan.deletes, [vec!["a"], vec!["c"]]);
        let ids = |slot: usize| {
            plan.upserts[slot]
                .iter()
                .map(|(id, d)| (*id, d["n"].clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0), vec![("b", serde_json::json!(3))]);
        assert_eq!(ids(1), vec![("a", serde_json::json!(2))]);
    }

    #[test]
    fn pieces_are_powers_of_two_within_the_limits() {
        let sizes = vec![10; 500];
        let ranges = pieces(&sizes, 256, usize::MAX);
        let lengths: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
        assert_eq!(lengths, vec![256, 128, 64, 32, 16, 4]);
        assert_eq!(ranges.last().map(|r| r.end), Some(500));

        let ranges = pieces(&[600, 600, 600, 5000, 1], 256, 1000);
        assert_eq!(ranges, vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert!(pieces(&[], 256, 1000).is_empty());
    }
}
