//! The query indexes (what the store keeps for each resource) and the planner that answers a bound
//! filter from them (docs/ARCHITECTURE.md, The store and its guarantees: `query_index`).
//!
//! Indexed: `userName` (User), `externalId`, `displayName`, `emails.value` (User) and
//! `meta.lastModified`, one row per value, keyed `{type}␟{name}␟{value}`. String values are stored
//! lower-cased whatever their `caseExact`, so a lookup yields a superset that the full filter then
//! narrows; dateTimes as fixed-width UTC text, which sorts as the instants do. Group membership is
//! answered from the store's `member_of` table.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{Map, Value};

use super::{Bound, BoundPath, Op, Test};
use crate::ResourceType;
use crate::resource::Meta;

/// Separates the parts of an index key.
const SEP: char = '\u{1f}';

/// The index key prefix of attribute `name` of `rt` (every row of it starts so).
pub fn prefix(rt: ResourceType, name: &str) -> String {
    format!("{}{SEP}{name}{SEP}", rt.name())
}

/// `meta.lastModified` as index text: UTC, nanoseconds, fixed width.
pub fn time_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The index rows (without the id) of one resource.
pub fn index_keys(rt: ResourceType, attributes: &Map<String, Value>, meta: &Meta) -> Vec<String> {
    let mut out = vec![format!(
        "{}{}",
        prefix(rt, "meta.lastModified"),
        // As the API shows it (milliseconds), so the index agrees with the evaluator.
        time_text(&meta.last_modified.trunc_subsecs(3))
    )];
    let mut push = |name: &str, v: Option<&Value>| {
        if let Some(Value::String(s)) = v
            && !s.is_empty()
        {
            let key = format!("{}{}", prefix(rt, name), s.to_lowercase());
            if !out.contains(&key) {
                out.push(key);
            }
        }
    };
    if rt == ResourceType::User {
        push("userName", attributes.get("userName"));
        if let Some(Value::Array(emails)) = attributes.get("emails") {
            for e in emails {
                push("emails.value", e.get("value"));
            }
        }
    }
    push("externalId", attributes.get("externalId"));
    push("displayName", attributes.get("displayName"));
    out
}

/// One read from the indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The resource with this id (the resources table is the id index).
    Id(String),
    /// Rows whose key starts with this (an exact value, a `sw` prefix, or a whole attribute for `pr`);
    /// `exact: true` means the key must equal it.
    Key {
        /// The key or key prefix.
        key: String,
        /// Whether only the whole key matches.
        exact: bool,
    },
    /// Rows of `prefix` whose value is within the bounds (`(value, inclusive)`).
    Range {
        /// The attribute's key prefix.
        prefix: String,
        /// The lower bound.
        lower: Option<(String, bool)>,
        /// The upper bound.
        upper: Option<(String, bool)>,
    },
    /// The groups a resource is a direct member of.
    MemberOf(String),
}

/// How to find the candidates of a filter from the indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No resource can match.
    Nothing,
    /// One index read.
    Read(Lookup),
    /// Candidates of every part (intersection).
    All(Vec<Plan>),
    /// Candidates of any part (union).
    Any(Vec<Plan>),
}

/// A plan for `bound` on `rt`, and whether its candidates are exactly the matches (so the filter
/// need not be evaluated on them); `None` when the whole type must be read.
pub fn plan(rt: ResourceType, bound: &Bound) -> Option<(Plan, bool)> {
    plan_in(rt, bound, None)
}

fn plan_in(rt: ResourceType, bound: &Bound, parent: Option<&BoundPath>) -> Option<(Plan, bool)> {
    match bound {
        Bound::Const(false) => Some((Plan::Nothing, true)),
        Bound::Const(true) | Bound::Not(_) => None,
        Bound::And(a, b) => match (plan_in(rt, a, parent), plan_in(rt, b, parent)) {
            (Some((pa, ea)), Some((pb, eb))) => Some((Plan::All(vec![pa, pb]), ea && eb)),
            (Some((p, _)), None) | (None, Some((p, _))) => Some((p, false)),
            (None, None) => None,
        },
        Bound::Or(a, b) => {
            let (pa, ea) = plan_in(rt, a, parent)?;
            let (pb, eb) = plan_in(rt, b, parent)?;
            Some((Plan::Any(vec![pa, pb]), ea && eb))
        }
        Bound::Any { target, filter } if parent.is_none() => plan_in(rt, filter, Some(target)),
        Bound::Any { .. } => None,
        Bound::Present(target) => {
            let name = indexed(rt, target, parent)?;
            (name != "meta.lastModified" && name != "members.value").then(|| {
                let key = prefix(rt, &name);
                (Plan::Read(Lookup::Key { key, exact: false }), false)
            })
        }
        Bound::Compare { target, op, test } => {
            if parent.is_none()
                && target.location.extension.is_none()
                && target.location.attribute == "id"
            {
                if let (Op::Eq, Test::Str { raw, .. }) = (op, test) {
                    return Some((Plan::Read(Lookup::Id(raw.clone())), false));
                }
                return None;
            }
            let name = indexed(rt, target, parent)?;
            match (name.as_str(), op, test) {
                ("members.value", Op::Eq, Test::Str { raw, .. }) => {
                    Some((Plan::Read(Lookup::MemberOf(raw.clone())), true))
                }
                ("members.value", _, _) => None,
                ("meta.lastModified", _, Test::Time(t)) => {
                    let v = time_text(t);
                    let (lower, upper) = match op {
                        Op::Eq => (Some((v.clone(), true)), Some((v, true))),
                        Op::Gt => (Some((v, false)), None),
                        Op::Ge => (Some((v, true)), None),
                        Op::Lt => (None, Some((v, false))),
                        Op::Le => (None, Some((v, true))),
                        _ => return None,
                    };
                    let prefix = prefix(rt, &name);
                    Some((
                        Plan::Read(Lookup::Range {
                            prefix,
                            lower,
                            upper,
                        }),
                        true,
                    ))
                }
                (_, Op::Eq | Op::Sw, Test::Str { raw, .. }) => {
                    let key = format!("{}{}", prefix(rt, &name), raw.to_lowercase());
                    let exact = *op == Op::Eq;
                    Some((Plan::Read(Lookup::Key { key, exact }), false))
                }
                _ => None,
            }
        }
    }
}

/// The index name of an attribute, if it is indexed for `rt`.
fn indexed(rt: ResourceType, target: &BoundPath, parent: Option<&BoundPath>) -> Option<String> {
    let (attr, sub) = match parent {
        Some(p)
            if p.location.extension.is_none()
                && p.location.sub.is_none()
                && target.location.sub.is_none() =>
        {
            (
                p.location.attribute.as_str(),
                Some(target.location.attribute.as_str()),
            )
        }
        Some(_) => return None,
        None if target.location.extension.is_none() => (
            target.location.attribute.as_str(),
            target.location.sub.as_deref(),
        ),
        None => return None,
    };
    let name = match (rt, attr, sub) {
        (ResourceType::User, "userName", None) => "userName",
        (ResourceType::User, "emails", Some("value")) => "emails.value",
        (ResourceType::Group, "members", Some("value")) => "members.value",
        (_, "externalId", None) => "externalId",
        (_, "displayName", None) => "displayName",
        (_, "meta", Some("lastModified")) => "meta.lastModified",
        _ => return None,
    };
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Limits, parse};
    use crate::schema::{Registry, SchemaMode};

    fn planned(rt: ResourceType, filter: &str) -> Option<(Plan, bool)> {
        let registry = Registry::built_in(SchemaMode::Strict).unwrap();
        let bound = parse(filter, &Limits::default())
            .unwrap()
            .bind(registry.schemas(rt))
            .unwrap();
        plan(rt, &bound)
    }

    fn key(rt: ResourceType, name: &str, value: &str, exact: bool) -> Plan {
        Plan::Read(Lookup::Key {
            key: format!("{}{value}", prefix(rt, name)),
            exact,
        })
    }

    #[test]
    fn indexed_equalities_prefixes_and_presence_read_the_index() {
        let u = ResourceType::User;
        assert_eq!(
            planned(u, r#"userName eq "BJensen""#),
            Some((key(u, "userName", "bjensen", true), false))
        );
        assert_eq!(
            planned(u, r#"emails[type eq "work" and value sw "B"]"#),
            Some((key(u, "emails.value", "b", false), false))
        );
        assert_eq!(
            planned(u, r#"externalId pr"#),
            Some((key(u, "externalId", "", false), false))
        );
        assert_eq!(planned(u, r#"nickName eq "x""#), None);
        assert_eq!(planned(u, r#"not (userName eq "x")"#), None);
        assert_eq!(planned(u, r#"userName eq "x" or nickName eq "y""#), None);
        assert_eq!(
            planned(u, r#"userName eq "x" and nickName eq "y""#),
            Some((key(u, "userName", "x", true), false))
        );
        assert_eq!(
            planned(u, r#"undefined eq "x""#),
            Some((Plan::Nothing, true))
        );
    }

    #[test]
    fn last_modified_ranges_and_membership_are_exact() {
        let g = ResourceType::Group;
        let (p, exact) = planned(g, r#"meta.lastModified gt "2020-01-01T01:00:00+01:00""#).unwrap();
        assert!(exact);
        assert_eq!(
            p,
            Plan::Read(Lookup::Range {
                prefix: prefix(g, "meta.lastModified"),
                lower: Some(("2020-01-01T00:00:00.000000000Z".into(), false)),
                upper: None,
            })
        );
        assert_eq!(
            planned(g, r#"members[value eq "abc"]"#),
            Some((Plan::Read(Lookup::MemberOf("abc".into())), true))
        );
        assert_eq!(
            planned(g, r#"members.value eq "abc" or displayName eq "x""#).map(|(_, e)| e),
            Some(false)
        );
    }
}
