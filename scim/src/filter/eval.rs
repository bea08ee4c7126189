//! Evaluating a bound filter on a resource's JSON representation (RFC 7644 §3.4.2.2).

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::number::Decimal;
use super::{Bound, BoundPath, Op, Test};
use crate::get_ci;

/// The values of `v`: an array's non-null elements, nothing for `null`, else `v` itself.
pub(super) fn elements(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().filter(|v| !v.is_null()).collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

impl BoundPath {
    /// Every value of the attribute in `doc`, arrays flattened, nulls left out.
    fn values<'a>(&self, doc: &'a Map<String, Value>) -> Vec<&'a Value> {
        let Some(top) = self.location.top(doc) else {
            return Vec::new();
        };
        match &self.location.sub {
            None => elements(top),
            Some(sub) => elements(top)
                .into_iter()
                .filter_map(Value::as_object)
                .filter_map(|o| get_ci(o, sub))
                .flat_map(elements)
                .collect(),
        }
    }

    /// `s` as compared: lower-cased unless the attribute is caseExact.
    pub(super) fn norm(&self, s: &str) -> String {
        if self.case_exact {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    }
}

/// An RFC 3339 dateTime as an instant.
pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn pr(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(pr),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

impl Test {
    /// `value op self`, for one value; a value of another type never matches.
    fn holds(&self, op: Op, value: &Value, target: &BoundPath) -> bool {
        let ord: Option<Ordering> = match self {
            Test::Null => return false,
            Test::Bool(b) => return value.as_bool() == Some(*b),
            Test::Str { lit, .. } => {
                let Some(s) = value.as_str() else {
                    return false;
                };
                let s = target.norm(s);
                match op {
                    Op::Co => return s.contains(lit.as_str()),
                    Op::Sw => return s.starts_with(lit.as_str()),
                    Op::Ew => return s.ends_with(lit.as_str()),
                    _ => Some(s.as_str().cmp(lit.as_str())),
                }
            }
            Test::Num(n) => value
                .as_number()
                .and_then(|v| Decimal::parse(&v.to_string()))
                .map(|v| v.cmp(n)),
            Test::Time(t) => value.as_str().and_then(parse_time).map(|v| v.cmp(t)),
        };
        let Some(ord) = ord else { return false };
        match op {
            Op::Eq | Op::Ne => ord == Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Co | Op::Sw | Op::Ew => false,
        }
    }
}

impl Bound {
    /// Whether the resource `doc` (its full JSON representation) matches.
    pub fn matches(&self, doc: &Value) -> bool {
        match doc {
            Value::Object(map) => self.eval(map),
            _ => false,
        }
    }

    fn eval(&self, doc: &Map<String, Value>) -> bool {
        match self {
            Bound::Const(b) => *b,
            Bound::And(a, b) => a.eval(doc) && b.eval(doc),
            Bound::Or(a, b) => a.eval(doc) || b.eval(doc),
            Bound::Not(a) => !a.eval(doc),
            Bound::Present(t) => t.values(doc).into_iter().any(pr),
            Bound::Compare { target, op, test } => {
                let values = target.values(doc);
                match (test, op) {
                    (Test::Null, Op::Eq) => !values.into_iter().any(pr),
                    (Test::Null, _) => values.into_iter().any(pr),
                    (_, Op::Ne) => !values.iter().any(|v| test.holds(Op::Eq, v, target)),
                    _ => values.iter().any(|v| test.holds(*op, v, target)),
                }
            }
            Bound::Any { target, filter } => target
                .values(doc)
                .into_iter()
                .filter_map(Value::as_object)
                .any(|element| filter.eval(element)),
        }
    }

    /// The `attr eq "string"` tests that must all hold (the top-level `and` chain), for an index
    /// lookup: each with its attribute and the string as written.
    pub fn required_equalities(&self) -> Vec<(&BoundPath, &str)> {
        match self {
            Bound::And(a, b) => {
                let mut out = a.required_equalities();
                out.extend(b.required_equalities());
                out
            }
            Bound::Compare {
                target,
                op: Op::Eq,
                test: Test::Str { raw, .. },
            } => vec![(target, raw.as_str())],
            _ => Vec::new(),
        }
    }
}
