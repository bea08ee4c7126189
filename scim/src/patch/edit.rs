//! The edits one operation makes on the values of one attribute (RFC 7644 §3.5.2.1–3): adding to
//! and replacing single- and multi-valued attributes, value-path selections, removal, `primary`.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::apply::OpPath;
use super::{OpKind, invalid_path};
use crate::filter::Bound;
use crate::schema::{Attribute, validate};
use crate::{ScimError, ScimType};

/// `remove` of `attr` (in `container`) at `path`; `value` names the values to remove (Entra).
pub(super) fn remove_at(
    container: &mut Map<String, Value>,
    attr: &Attribute,
    path: &OpPath<'_>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    match (&path.filter, path.at.sub) {
        (None, None) => {
            if attr.required {
                return Err(ScimError::invalid_value(format!(
                    "{} is required: it cannot be removed",
                    path.text
                )));
            }
            match (value, container.get_mut(&attr.name)) {
                // Entra's form for any multi-valued attribute: remove just the values given.
                (Some(v), Some(Value::Array(items))) if attr.multi_valued && !v.is_null() => {
                    let drop = as_array(v);
                    let drop = drop.as_array().map(Vec::as_slice).unwrap_or_default();
                    items.retain(|item| !drop.iter().any(|d| same_value(item, d)));
                    if items.is_empty() {
                        container.remove(&attr.name);
                    }
                }
                _ => {
                    container.remove(&attr.name);
                }
            }
        }
        (None, Some(sub)) => {
            if sub.required {
                return Err(ScimError::invalid_value(format!(
                    "{} is required: it cannot be removed",
                    path.text
                )));
            }
            match container.get_mut(&attr.name) {
                Some(Value::Object(o)) => {
                    o.remove(&sub.name);
                    if o.is_empty() {
                        container.remove(&attr.name);
                    }
                }
                Some(Value::Array(items)) => {
                    for item in items.iter_mut() {
                        if let Value::Object(o) = item {
                            o.remove(&sub.name);
                        }
                    }
                }
                _ => {}
            }
        }
        (Some(filter), sub) => {
            if let Some(Value::Array(items)) = container.get_mut(&attr.name) {
                match sub {
                    None => items.retain(|i| !filter.matches(i)),
                    Some(sub) => {
                        for item in items.iter_mut().filter(|i| filter.matches(i)) {
                            if let Value::Object(o) = item {
                                o.remove(&sub.name);
                            }
                        }
                    }
                }
                if items.is_empty() {
                    container.remove(&attr.name);
                }
            }
        }
    }
    Ok(())
}

/// `add` or `replace` of `attr` (in `container`) at `path`.
#[allow(clippy::too_many_arguments)] // one operation's parts, each used once
pub(super) fn set_at(
    container: &mut Map<String, Value>,
    attr: &Attribute,
    path: &OpPath<'_>,
    label: &str,
    kind: OpKind,
    value: Value,
    lenient: bool,
) -> Result<(), ScimError> {
    match (&path.filter, path.at.sub) {
        (None, None) if attr.multi_valued => {
            let new = match validate::attribute_value(attr, label, bare(attr, value), lenient)? {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let mut items = match (kind, container.remove(&attr.name)) {
                (OpKind::Add, Some(Value::Array(old))) => old,
                _ => Vec::new(),
            };
            // Values already there are skipped before `primary` is cleared, so re-adding the
            // primary value (an IdP's retry) changes nothing.
            let fresh = without_present(&items, new);
            if fresh.iter().any(is_primary) {
                clear_primary(&mut items);
            }
            items.extend(fresh);
            if !items.is_empty() {
                container.insert(attr.name.clone(), Value::Array(items));
            }
        }
        (None, None) => {
            let value = validate::attribute_value(attr, label, bare(attr, value), lenient)?;
            match (value, container.get_mut(&attr.name)) {
                // §3.5.2.3: sub-attributes not given are left unchanged.
                (Some(Value::Object(new)), Some(Value::Object(old))) => old.extend(new),
                (Some(v), _) => {
                    container.insert(attr.name.clone(), v);
                }
                (None, _) => {
                    container.remove(&attr.name);
                }
            }
        }
        (None, Some(sub)) if !attr.multi_valued => {
            let v = validate::attribute_value(sub, label, value, lenient)?;
            let slot = container
                .entry(attr.name.clone())
                .or_insert_with(|| json!({}));
            if !slot.is_object() {
                *slot = json!({});
            }
            if let Value::Object(o) = slot {
                match v {
                    Some(v) => o.insert(sub.name.clone(), v),
                    None => o.remove(&sub.name),
                };
            }
            if slot.as_object().is_some_and(Map::is_empty) {
                container.remove(&attr.name);
            }
        }
        (None, Some(_)) => {
            return Err(invalid_path(format!(
                "{label}: name the values to change with a filter, as {}[type eq \"work\"].{}",
                attr.name,
                path.at.sub.map_or("", |s| s.name.as_str())
            )));
        }
        (Some(filter), sub) => {
            let mut items = match container.remove(&attr.name) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let result = set_matching(attr, label, filter, sub, kind, value, lenient, &mut items);
            if !items.is_empty() {
                container.insert(attr.name.clone(), Value::Array(items));
            }
            result?;
        }
    }
    Ok(())
}

/// The values of `new` not already in `items` (nor earlier in `new`). A few values are compared
/// directly; many are looked up by their JSON text, so a large add costs O(n), not O(n²).
fn without_present(items: &[Value], new: Vec<Value>) -> Vec<Value> {
    if new.len() <= 8 {
        let mut fresh: Vec<Value> = Vec::with_capacity(new.len());
        for v in new {
            if !items.contains(&v) && !fresh.contains(&v) {
                fresh.push(v);
            }
        }
        return fresh;
    }
    let mut seen: HashSet<String> = items.iter().map(Value::to_string).collect();
    new.into_iter()
        .filter(|v| seen.insert(v.to_string()))
        .collect()
}

/// `add`/`replace` on `attr[filter]` or `attr[filter].sub`.
#[allow(clippy::too_many_arguments)] // one value-path operation's parts, each used once
fn set_matching(
    attr: &Attribute,
    label: &str,
    filter: &Bound,
    sub: Option<&Attribute>,
    kind: OpKind,
    value: Value,
    lenient: bool,
    items: &mut Vec<Value>,
) -> Result<(), ScimError> {
    let matching: Vec<usize> = (0..items.len())
        .filter(|i| items.get(*i).is_some_and(|v| filter.matches(v)))
        .collect();
    // The new element, or the fields to set in each matching one.
    let fields: Map<String, Value> = match sub {
        Some(sub) => {
            let mut m = Map::new();
            if let Some(v) = validate::attribute_value(sub, label, value, lenient)? {
                m.insert(sub.name.clone(), v);
            }
            m
        }
        None => match validate::attribute_value(attr, label, value, lenient)? {
            Some(Value::Array(mut list)) if list.len() == 1 => match list.pop() {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            },
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "{label}: the value must be one object"
                )));
            }
        },
    };
    if fields.get("primary") == Some(&Value::Bool(true)) {
        clear_primary(items);
    }
    if matching.is_empty() {
        if kind == OpKind::Replace {
            return Err(ScimError::typed(
                400,
                ScimType::NoTarget,
                format!("{label} matches no value"),
            ));
        }
        // Entra ID: `add` on emails[type eq "work"].value creates the work email.
        let mut element = equalities(filter);
        element.extend(fields);
        items.push(Value::Object(element));
        return Ok(());
    }
    for i in matching {
        let Some(item) = items.get_mut(i) else {
            continue;
        };
        match (sub, kind, item) {
            // `add` sets the sub-attributes it is given; `replace` of `attr[filter]` replaces
            // the matching values whole (§3.5.2.3).
            (Some(_), _, Value::Object(o)) | (None, OpKind::Add, Value::Object(o)) => {
                o.extend(fields.clone());
            }
            (_, _, item) => *item = Value::Object(fields.clone()),
        }
    }
    Ok(())
}

/// The `sub eq "text"` terms a value filter requires, as the fields of a new element.
fn equalities(filter: &Bound) -> Map<String, Value> {
    let mut out = Map::new();
    for (target, raw) in filter.required_equalities() {
        out.insert(
            target.location.attribute.clone(),
            Value::String(raw.to_owned()),
        );
    }
    out
}

/// A complex attribute with a `value` sub-attribute given as a bare string (Entra's enterprise
/// `manager`) means `{"value": …}`.
fn bare(attr: &Attribute, value: Value) -> Value {
    let wrap = |v: Value| match v {
        Value::String(s) if attr.sub_attribute("value").is_some() => json!({"value": s}),
        other => other,
    };
    if attr.sub_attributes.is_empty() {
        return value;
    }
    match value {
        Value::Array(items) if attr.multi_valued => {
            Value::Array(items.into_iter().map(wrap).collect())
        }
        other => wrap(other),
    }
}

/// `value` as a list: an array as it is, `null` as empty, anything else as one element.
pub(super) fn as_array(value: Value) -> Value {
    match value {
        v @ Value::Array(_) => v,
        Value::Null => Value::Array(Vec::new()),
        other => Value::Array(vec![other]),
    }
}

fn is_primary(v: &Value) -> bool {
    v.get("primary") == Some(&Value::Bool(true))
}

/// RFC 7643 §2.4: only one value may be primary; a new primary clears the others.
fn clear_primary(items: &mut [Value]) {
    for item in items {
        if let Value::Object(o) = item
            && o.get("primary") == Some(&Value::Bool(true))
        {
            o.insert("primary".into(), Value::Bool(false));
        }
    }
}

/// A value named for removal: equal, or with the same `value` sub-attribute.
fn same_value(item: &Value, named: &Value) -> bool {
    item == named
        || match (item.get("value"), named.get("value")) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
}
