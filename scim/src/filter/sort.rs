//! Sorting (RFC 7644 §3.4.2.3): the `sortBy` attribute, the key each resource sorts by, and that
//! key's text form for cursors.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::BoundPath;
use super::eval::{elements, parse_time};
use super::number::Decimal;
use crate::get_ci;
use crate::schema::AttributeType;

impl BoundPath {
    /// RFC 7644 §3.4.2.3: the value `doc` sorts by: for a multi-valued attribute the primary
    /// element's, else the first one's.
    pub fn sort_key(&self, doc: &Value) -> Option<SortKey> {
        let top = self.location.top(doc.as_object()?)?;
        let items = elements(top);
        let chosen = items
            .iter()
            .find(|v| v.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| items.first())?;
        let v = match &self.location.sub {
            Some(sub) => get_ci(chosen.as_object()?, sub)?,
            None => chosen,
        };
        let v = elements(v).into_iter().next()?;
        Some(match self.kind {
            AttributeType::Integer | AttributeType::Decimal => {
                SortKey::Num(Decimal::parse(&v.as_number()?.to_string())?)
            }
            AttributeType::DateTime => SortKey::Time(parse_time(v.as_str()?)?),
            AttributeType::Boolean => SortKey::Bool(v.as_bool()?),
            _ => SortKey::Str(self.norm(v.as_str()?)),
        })
    }
}

/// A value resources are sorted by, compared by the attribute's type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    /// Booleans, false first.
    Bool(bool),
    /// Numbers, numerically.
    Num(Decimal),
    /// Instants.
    Time(DateTime<Utc>),
    /// Strings, lower-cased unless case-exact.
    Str(String),
}

impl SortKey {
    /// Text that [`SortKey::decode`] reads back (for cursors).
    pub fn encode(&self) -> String {
        match self {
            SortKey::Bool(b) => format!("b{b}"),
            SortKey::Num(n) => format!("n{}", n.to_text()),
            SortKey::Time(t) => {
                format!("t{}", t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            }
            SortKey::Str(s) => format!("s{s}"),
        }
    }

    /// The key [`SortKey::encode`] wrote, if `text` is one.
    pub fn decode(text: &str) -> Option<SortKey> {
        let mut chars = text.chars();
        let tag = chars.next()?;
        let rest = chars.as_str();
        Some(match tag {
            'b' => SortKey::Bool(rest.parse().ok()?),
            'n' => SortKey::Num(Decimal::parse(rest)?),
            't' => SortKey::Time(parse_time(rest)?),
            's' => SortKey::Str(rest.to_owned()),
            _ => return None,
        })
    }
}
