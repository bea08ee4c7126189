//! Queries answered from the read model: filtered, sorted and paged lists of Users and Groups
//! (RFC 7644 §3.4.2, §3.4.3), with cursor paging (RFC 9865).

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

use serde_json::{Value, json};

use super::cursor::Position;
use super::unavailable;
use super::{LIST_RESPONSE_SCHEMA, Related, Service, represent};
use crate::store::{Snapshot, StoreError, StoredResource};
use scim::filter::plan::{self, Plan};
use scim::filter::{self, Bound, BoundPath, Filter, SortKey};
use scim::schema::View;
use scim::search::ListQuery;
use scim::{ResourceType, ScimError};

impl Service {
    /// RFC 7644 §3.4.2 and §3.4.3: a page of the resources of `types` that match `query.filter`,
    /// sorted by `query.sort_by` (then by id). `start_index` is 1-based (values < 1 count as 1);
    /// `count` is capped at the page size; `count` 0 returns only `totalResults`, which is exact.
    pub fn list(
        &self,
        types: &[ResourceType],
        query: &ListQuery,
        base: &str,
        view: &View,
    ) -> Result<Value, ScimError> {
        let start = query.start_index.unwrap_or(1).max(1);
        let count = query
            .count
            .map_or(self.page_size, |c| {
                usize::try_from(c.max(0)).unwrap_or(usize::MAX)
            })
            .min(self.page_size);
        let descending = match query.sort_order.as_deref() {
            None => false,
            Some(o) if o.eq_ignore_ascii_case("ascending") => false,
            Some(o) if o.eq_ignore_ascii_case("descending") => true,
            Some(o) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder must be \"ascending\" or \"descending\", not \"{o}\""
                )));
            }
        };
        let filter = match query.filter.as_deref() {
            Some(f) => Some(filter::parse(f, &self.limits)?),
            None => None,
        };
        let paging_by_cursor = query.cursor.is_some();
        if paging_by_cursor && query.start_index.is_some() {
            return Err(ScimError::invalid_value(
                "use either cursor or startIndex, not both (RFC 9865)",
            ));
        }
        let digest = query_digest(types, query, descending);
        let after = match query.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(self.cursors.read(c, &digest)?),
        };
        let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
        let snapshot = self.store.snapshot().map_err(unavailable)?;
        let (total, page, more) = match (types, &filter, &query.sort_by) {
            // Unfiltered and unsorted: straight from the table, in id order.
            ([rt], None, None) => {
                let total = snapshot.count(*rt).map_err(unavailable)?;
                let total = usize::try_from(total).unwrap_or(usize::MAX);
                let mut page: Vec<Hit> = if count == 0 {
                    Vec::new()
                } else {
                    let rows = match &after {
                        Some(p) => snapshot.list_after(*rt, &p.id, count.saturating_add(1)),
                        None => snapshot.list(*rt, skip as u64, count.saturating_add(1)),
                    };
                    let rows = rows.map_err(unavailable)?;
                    rows.into_iter()
                        .map(|(id, stored)| Hit {
                            key: None,
                            rt: *rt,
                            id,
                            stored: Some(stored),
                        })
                        .collect()
                };
                let more = page.len() > count;
                page.truncate(count);
                (total, page, more)
            }
            _ => {
                // Every match is counted, but only the hits the page needs are kept: memory follows
                // `startIndex + count`, not the number of matches.
                let mut window = Window::new(skip, count, after.as_ref(), descending);
                for rt in types {
                    self.matching(&snapshot, *rt, filter.as_ref(), query, base, &mut |hit| {
                        window.offer(hit);
                    })?;
                }
                let (total, hits, more) = window.finish();
                let mut page = Vec::with_capacity(hits.len());
                for mut hit in hits {
                    if hit.stored.is_none() {
                        hit.stored = snapshot.get(hit.rt, &hit.id).map_err(unavailable)?;
                    }
                    page.push(hit);
                }
                (total, page, more)
            }
        };
        let next = match page.last() {
            Some(last) if paging_by_cursor && more => Some(
                self.cursors
                    .issue(
                        &Position {
                            key: last.key.clone(),
                            rt: last.rt,
                            id: last.id.clone(),
                        },
                        &digest,
                    )
                    .inspect_err(|e| tracing::error!(error = %e, "list: no next cursor"))?,
            ),
            _ => None,
        };
        let page: Vec<(ResourceType, String, StoredResource)> = page
            .into_iter()
            .filter_map(|h| h.stored.map(|s| (h.rt, h.id, s)))
            .collect();
        let mut resources = Vec::with_capacity(page.len());
        for (rt, id, stored) in page {
            let (members, groups) = self
                .related(&snapshot, rt, &id, view)
                .map_err(unavailable)?;
            let related = Related {
                members: members.as_deref(),
                groups: groups.as_deref(),
            };
            resources.push(self.doc(rt, &id, stored, related, base, view).doc);
        }
        let mut body = json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": total,
            "itemsPerPage": resources.len(),
        });
        if !paging_by_cursor {
            body["startIndex"] = json!(start);
        }
        if let Some(next) = next {
            body["nextCursor"] = json!(next);
        }
        if count > 0 {
            body["Resources"] = Value::Array(resources);
        }
        Ok(body)
    }

    /// RFC 9865 `cursorTimeout`: how long a cursor stays valid, in seconds.
    pub fn cursor_timeout(&self) -> i64 {
        self.cursors.ttl_secs()
    }

    /// Hands `hit` every resource of `rt` that matches `filter`, with its sort key (and without
    /// its stored state, which is read again only for the page). An equality on `id` or on an
    /// attribute in the uniqueness index (`userName`, `externalId`, …) reads only that resource;
    /// an exact index plan without `sortBy` reads no resource at all; anything else reads every
    /// resource of the type, one at a time.
    fn matching(
        &self,
        snapshot: &Snapshot,
        rt: ResourceType,
        filter: Option<&Filter>,
        query: &ListQuery,
        base: &str,
        hit: &mut dyn FnMut(Hit),
    ) -> Result<(), ScimError> {
        let schemas = self.registry.schemas(rt);
        let bound = filter.map(|f| f.bind(schemas)).transpose()?;
        let sort = query
            .sort_by
            .as_deref()
            .and_then(|p| BoundPath::for_sort(schemas, p));
        let mentions = |name: &str| {
            filter.is_some_and(|f| f.mentions(name))
                || sort
                    .as_ref()
                    .is_some_and(|t| t.location.extension.is_none() && t.location.attribute == name)
        };
        let planned = bound.as_ref().and_then(|b| plan::plan(rt, b));
        // An exact plan's candidates all match: the filter need not be evaluated (nor member lists read).
        let evaluate = !planned.as_ref().is_some_and(|(_, exact)| *exact);
        let sorts_by = |name: &str| {
            sort.as_ref()
                .is_some_and(|t| t.location.extension.is_none() && t.location.attribute == name)
        };
        let needs = |name: &str| sorts_by(name) || (evaluate && mentions(name));
        let with_members = rt == ResourceType::Group && needs("members");
        let with_groups = rt == ResourceType::User && needs("groups");
        // `None`: a candidate of an exact plan, taken unread (it matches, and without `sortBy`
        // nothing of it is needed until it lands on the page).
        let mut visit = |id: &str, stored: Option<StoredResource>| -> Result<(), StoreError> {
            let Some(stored) = stored else {
                hit(Hit {
                    key: None,
                    rt,
                    id: id.to_owned(),
                    stored: None,
                });
                return Ok(());
            };
            let members = if with_members {
                Some(snapshot.members(id)?)
            } else {
                None
            };
            let groups = if with_groups {
                Some(snapshot.groups_of(id)?)
            } else {
                None
            };
            let related = Related {
                members: members.as_deref(),
                groups: groups.as_deref(),
            };
            let doc = represent(rt, id, stored, related, base);
            if !evaluate || bound.as_ref().is_none_or(|b| b.matches(&doc)) {
                hit(Hit {
                    key: sort.as_ref().and_then(|t| t.sort_key(&doc)),
                    rt,
                    id: id.to_owned(),
                    stored: None,
                });
            }
            Ok(())
        };
        // The candidates of an exact plan all match; unsorted, nothing of them needs reading.
        let unread = !evaluate && sort.is_none();
        let mut read = || -> Result<(), StoreError> {
            let candidates = match (&planned, &bound) {
                (Some((p, _)), _) => Some(run(snapshot, rt, p)?),
                (None, Some(b)) => self.candidates(snapshot, rt, b)?,
                (None, None) => None,
            };
            match candidates {
                Some(ids) if unread => {
                    for id in ids {
                        visit(&id, None)?;
                    }
                    Ok(())
                }
                Some(ids) => {
                    for id in ids {
                        if let Some(stored) = snapshot.get(rt, &id)? {
                            visit(&id, Some(stored))?;
                        }
                    }
                    Ok(())
                }
                None => snapshot.scan(rt, |id, stored| visit(id, Some(stored))),
            }
        };
        read().map_err(unavailable)
    }

    /// The only ids that can match `bound`, when one of its required equalities is on an attribute
    /// the uniqueness index holds (extension attributes declared unique, for instance); `None` when
    /// the whole type must be read.
    fn candidates(
        &self,
        snapshot: &Snapshot,
        rt: ResourceType,
        bound: &Bound,
    ) -> Result<Option<BTreeSet<String>>, StoreError> {
        for (target, value) in bound.required_equalities() {
            let at = &target.location;
            if at.sub.is_some() {
                continue;
            }
            let mut attributes = serde_json::Map::new();
            at.set(&mut attributes, json!(value));
            let label = at.to_string();
            let keys = self.registry.unique_keys(rt, &attributes);
            if let Some(key) = keys.into_iter().find(|k| k.attribute == label) {
                let owner = snapshot.unique_owner(&key.index_key(rt))?;
                return Ok(Some(owner.into_iter().collect()));
            }
        }
        Ok(None)
    }
}

/// The candidate ids of `plan` on `rt`, in id order.
fn run(snapshot: &Snapshot, rt: ResourceType, plan: &Plan) -> Result<BTreeSet<String>, StoreError> {
    Ok(match plan {
        Plan::Nothing => BTreeSet::new(),
        Plan::Read(lookup) => snapshot.lookup(rt, lookup)?,
        Plan::All(parts) => {
            let mut sets = parts
                .iter()
                .map(|p| run(snapshot, rt, p))
                .collect::<Result<Vec<_>, _>>()?;
            sets.sort_by_key(BTreeSet::len);
            let mut iter = sets.into_iter();
            let first = iter.next().unwrap_or_default();
            iter.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
        }
        Plan::Any(parts) => {
            let mut out = BTreeSet::new();
            for p in parts {
                out.extend(run(snapshot, rt, p)?);
            }
            out
        }
    })
}

/// A resource that matched, with the value it sorts by (and, once on a page, its stored state).
struct Hit {
    key: Option<SortKey>,
    rt: ResourceType,
    id: String,
    stored: Option<StoredResource>,
}

/// The hits of one page, chosen while the matches stream past: all are counted, and a bounded
/// heap keeps the first `skip + count` in list order (or, after a cursor, the first `count + 1`
/// past it), so a list of a million matches holds a page's worth of them, not a million.
struct Window<'a> {
    skip: usize,
    count: usize,
    after: Option<&'a Position>,
    descending: bool,
    /// How many hits the heap keeps.
    keep: usize,
    /// The kept hits, the last in list order on top.
    heap: BinaryHeap<Ranked>,
    /// Every match.
    total: usize,
    /// The matches past the cursor.
    past: usize,
}

impl<'a> Window<'a> {
    fn new(skip: usize, count: usize, after: Option<&'a Position>, descending: bool) -> Self {
        let keep = match after {
            Some(_) => count.saturating_add(1),
            None => skip.saturating_add(count),
        };
        Window {
            skip,
            count,
            after,
            descending,
            keep: if count == 0 { 0 } else { keep },
            heap: BinaryHeap::new(),
            total: 0,
            past: 0,
        }
    }

    fn offer(&mut self, hit: Hit) {
        self.total += 1;
        if let Some(p) = self.after {
            // Keyset paging: the next page starts after the cursor's resource, wherever it is now.
            if order(&hit.key, &hit.id, &p.key, &p.id, self.descending) != Ordering::Greater {
                return;
            }
            self.past += 1;
        }
        if self.keep == 0 {
            return;
        }
        let ranked = Ranked {
            hit,
            descending: self.descending,
        };
        if self.heap.len() < self.keep {
            self.heap.push(ranked);
        } else if self.heap.peek().is_some_and(|last| ranked < *last) {
            self.heap.pop();
            self.heap.push(ranked);
        }
    }

    /// The total, the page's hits in list order, and whether more follow.
    fn finish(self) -> (usize, Vec<Hit>, bool) {
        let sorted = self.heap.into_sorted_vec();
        let (from, more) = match self.after {
            Some(_) => (0, self.past > self.count),
            None => (self.skip, self.skip.saturating_add(self.count) < self.total),
        };
        let page = sorted
            .into_iter()
            .skip(from)
            .take(self.count)
            .map(|r| r.hit)
            .collect();
        (self.total, page, more)
    }
}

/// A hit ordered as the list is.
struct Ranked {
    hit: Hit,
    descending: bool,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        order(
            &self.hit.key,
            &self.hit.id,
            &other.hit.key,
            &other.hit.id,
            self.descending,
        )
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The list order: by sort key (RFC 7644 §3.4.2.3: no value sorts last ascending, first
/// descending), then by id.
fn order(
    a_key: &Option<SortKey>,
    a_id: &str,
    b_key: &Option<SortKey>,
    b_id: &str,
    descending: bool,
) -> Ordering {
    let by_key = match (a_key, b_key) {
        (Some(x), Some(y)) if descending => y.cmp(x),
        (Some(x), Some(y)) => x.cmp(y),
        (None, Some(_)) if descending => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) if descending => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (None, None) => Ordering::Equal,
    };
    by_key.then_with(|| a_id.cmp(b_id))
}

/// What a cursor is bound to: the types, filter and order of the request that issued it.
fn query_digest(types: &[ResourceType], query: &ListQuery, descending: bool) -> String {
    use sha2::{Digest, Sha256};
    let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
    let text = format!(
        "{names:?}\u{1f}{:?}\u{1f}{:?}\u{1f}{descending}",
        query.filter, query.sort_by
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}
