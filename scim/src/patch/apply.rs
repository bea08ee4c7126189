//! The PATCH engine: applies operations in order to a copy of the stored attributes, resolving each
//! path against the schemas and deciding what it means (members, extensions, mutability).

use serde_json::{Map, Value};

use super::edit::{as_array, remove_at, set_at};
use super::{MemberOp, OpKind, Operation, Patched, invalid_path};
use crate::filter::{self, Bound, Limits, Test};
use crate::resource;
use crate::schema::path::server_assigned;
use crate::schema::validate;
use crate::schema::{AttrPath, Mutability, Registry, ResourceSchemas, Schema, SchemaMode};
use crate::{ResourceType, ScimError, ScimType};

/// Applies `ops` in order to `current` (a resource's stored attributes) and validates the result as
/// a replace is validated. All or nothing: an error leaves nothing applied.
pub fn apply(
    registry: &Registry,
    rt: ResourceType,
    current: &Map<String, Value>,
    ops: Vec<Operation>,
    limits: &Limits,
) -> Result<Patched, ScimError> {
    apply_within(registry, rt, current, ops, limits, &mut || Ok(()))
}

/// [`apply()`], asking `budget` before each operation whether the request may go on: its error
/// (a request that would take too long, say) ends the PATCH, and nothing is applied.
pub fn apply_within(
    registry: &Registry,
    rt: ResourceType,
    current: &Map<String, Value>,
    ops: Vec<Operation>,
    limits: &Limits,
    budget: &mut dyn FnMut() -> Result<(), ScimError>,
) -> Result<Patched, ScimError> {
    let mut engine = Engine {
        s: registry.schemas(rt),
        lenient: registry.mode() == SchemaMode::Lenient,
        limits,
        current,
        doc: current.clone(),
        members: Vec::new(),
    };
    for op in ops {
        budget()?;
        engine.operation(op)?;
    }
    let mut attributes = validate::normalise(registry, rt, Value::Object(engine.doc))?;
    validate::check_replace(registry, rt, current, &mut attributes)?;
    // The last line of defence for [`passwords`]: a new password that is not a hash was reached
    // by a form it does not know, and must not be stored.
    let password = attributes.get("password");
    if password != current.get("password")
        && password.is_some_and(|p| !p.as_str().is_some_and(|p| p.starts_with("$argon2")))
    {
        return Err(ScimError::invalid_value(
            "password: set it with path \"password\" or a path-less value's \"password\" key",
        ));
    }
    Ok(Patched {
        attributes,
        members: engine.members,
    })
}

/// What an operation's `path` addresses: an attribute path resolved against the schemas, narrowed
/// by a value filter (`emails[type eq "work"].value`).
pub(super) struct OpPath<'s> {
    /// The path as written, for messages.
    pub(super) text: String,
    /// The attribute (or extension) it names.
    pub(super) at: AttrPath<'s>,
    /// The value filter's test on each element.
    pub(super) filter: Option<Bound>,
}

struct Engine<'a> {
    s: &'a ResourceSchemas,
    lenient: bool,
    limits: &'a Limits,
    current: &'a Map<String, Value>,
    doc: Map<String, Value>,
    members: Vec<MemberOp>,
}

impl<'a> Engine<'a> {
    fn operation(&mut self, op: Operation) -> Result<(), ScimError> {
        match (op.op, op.path) {
            (OpKind::Remove, None) => Err(ScimError::typed(
                400,
                ScimType::NoTarget,
                "remove needs a path naming what to remove",
            )),
            (OpKind::Remove, Some(path)) => {
                let path = self.path(&path)?;
                self.remove(&path, op.value)
            }
            (kind, None) => {
                let Some(Value::Object(fields)) = op.value else {
                    return Err(ScimError::invalid_value(
                        "an add or replace without path needs an object value",
                    ));
                };
                self.pathless(kind, fields)
            }
            (kind, Some(path)) => {
                let value = op.value.ok_or_else(|| {
                    ScimError::invalid_value(format!("{path}: add and replace need a value"))
                })?;
                let path = self.path(&path)?;
                self.set(kind, &path, value)
            }
        }
    }

    /// RFC 7644 §3.5.2.1/3 without a path: each key of the value is an attribute, an extension URN
    /// or (a client habit) any attribute path.
    fn pathless(&mut self, kind: OpKind, fields: Map<String, Value>) -> Result<(), ScimError> {
        for (key, value) in fields {
            if server_assigned(&key) {
                continue;
            }
            if let Some(ext) = self.s.extension(&key) {
                let Value::Object(inner) = value else {
                    return Err(validate::wrong_type(&ext.schema.id, "an object", &value));
                };
                let id = ext.schema.id.clone();
                for (name, v) in inner.into_iter().filter(|(k, _)| !server_assigned(k)) {
                    let path = self.path(&format!("{id}:{name}"))?;
                    self.set(kind, &path, v)?;
                }
                continue;
            }
            match self.path(&key) {
                Ok(path) => self.set(kind, &path, value)?,
                // Never stored verbatim: a Group password would be kept in clear text.
                Err(_)
                    if self.lenient
                        && !["password", "members"]
                            .iter()
                            .any(|k| key.eq_ignore_ascii_case(k)) =>
                {
                    self.doc.insert(key, value);
                }
                Err(_) => {
                    return Err(ScimError::invalid_value(format!(
                        "{key} is not an attribute of any schema this resource type uses (see /Schemas)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Resolves `text`: `attr`, `attr.sub`, `attr[filter]`, `attr[filter].sub`, each optionally
    /// behind a schema URN, or an extension URN alone.
    fn path(&self, text: &str) -> Result<OpPath<'a>, ScimError> {
        let unknown = || {
            invalid_path(format!(
                "{text} is not an attribute path of this resource type"
            ))
        };
        let Some(open) = text.find('[') else {
            return Ok(OpPath {
                text: text.to_owned(),
                at: self.s.resolve(text).ok_or_else(unknown)?,
                filter: None,
            });
        };
        let close = text.rfind(']').ok_or_else(unknown)?;
        let (Some(head), Some(tail)) = (text.get(..open), text.get(close + 1..)) else {
            return Err(unknown());
        };
        let r = self.s.resolve(head).ok_or_else(unknown)?;
        let attr = match (r.attribute, r.sub) {
            (Some(a), None) if a.multi_valued && !a.sub_attributes.is_empty() => a,
            _ => {
                return Err(invalid_path(format!(
                    "{text}: a value filter [ ] needs a multi-valued complex attribute"
                )));
            }
        };
        let sub = match tail {
            "" => None,
            t => {
                let name = t.strip_prefix('.').ok_or_else(unknown)?;
                Some(attr.sub_attribute(name).ok_or_else(unknown)?)
            }
        };
        let whole = text.get(..=close).ok_or_else(unknown)?;
        let parsed =
            filter::parse(whole, self.limits).map_err(|e| invalid_path(format!("{text}: {e}")))?;
        let bound = parsed
            .bind(self.s)
            .map_err(|e| invalid_path(format!("{text}: {e}")))?;
        let Bound::Any { filter, .. } = bound else {
            return Err(invalid_path(format!("{text}: not a value filter")));
        };
        Ok(OpPath {
            text: text.to_owned(),
            at: AttrPath {
                sub,
                attribute: Some(attr),
                ..r
            },
            filter: Some(*filter),
        })
    }

    fn is_members(&self, path: &OpPath<'_>) -> bool {
        self.s.rt == ResourceType::Group
            && path.at.extension.is_none()
            && path.at.attribute.is_some_and(|a| a.name == "members")
    }

    /// `add` or `replace` at a path.
    fn set(&mut self, kind: OpKind, path: &OpPath<'a>, value: Value) -> Result<(), ScimError> {
        writable(path)?;
        if self.is_members(path) {
            if path.filter.is_some() || path.at.sub.is_some() {
                return Err(invalid_path(format!(
                    "{}: members are added or replaced as a list; remove takes a filter",
                    path.text
                )));
            }
            // Checked as a PUT checks `members` (types, unknown sub-attributes), never dropped.
            let checked = match path.at.attribute {
                Some(attr) => {
                    validate::attribute_value(attr, &attr.name, as_array(value), self.lenient)?
                }
                None => Some(as_array(value)),
            };
            let list = resource::parse_members(checked)?;
            self.members.push(match kind {
                OpKind::Replace => MemberOp::Replace(list),
                _ => MemberOp::Add(list),
            });
            return Ok(());
        }
        let Some(attr) = path.at.attribute else {
            // A whole extension: each of its attributes in turn.
            let Value::Object(fields) = value else {
                return Err(validate::wrong_type(&path.text, "an object", &value));
            };
            let id = path.at.extension.map(|e| e.id.clone()).unwrap_or_default();
            for (name, v) in fields.into_iter().filter(|(k, _)| !server_assigned(k)) {
                let inner = self.path(&format!("{id}:{name}"))?;
                self.set(kind, &inner, v)?;
            }
            return Ok(());
        };
        let lenient = self.lenient;
        let label = path.text.clone();
        with_container(&mut self.doc, path.at.extension, |container| {
            set_at(container, attr, path, &label, kind, value, lenient)
        })
    }

    /// RFC 7644 §3.5.2.2.
    fn remove(&mut self, path: &OpPath<'a>, value: Option<Value>) -> Result<(), ScimError> {
        writable(path)?;
        if self.is_members(path) {
            let op = match (&path.filter, path.at.sub, value) {
                (None, None, Some(v)) if !v.is_null() => {
                    // Entra ID: the value lists the members to remove.
                    let list = resource::parse_members(Some(as_array(v)))?;
                    MemberOp::Remove(list.into_iter().map(|m| m.value).collect())
                }
                (None, None, _) => MemberOp::Replace(Vec::new()),
                (Some(f), None, _) => match value_ids(f) {
                    Some(ids) => MemberOp::Remove(ids),
                    None => MemberOp::RemoveWhere(f.clone()),
                },
                _ => {
                    return Err(invalid_path(format!(
                        "{}: members are removed whole, never by sub-attribute",
                        path.text
                    )));
                }
            };
            self.members.push(op);
            return Ok(());
        }
        let Some(attr) = path.at.attribute else {
            // A whole extension, unless it holds a set immutable attribute. The core schema is
            // not an extension: its required attributes cannot go.
            if path
                .at
                .extension
                .is_some_and(|e| e.id.eq_ignore_ascii_case(&self.s.core.id))
            {
                return Err(invalid_path(format!(
                    "{}: the core schema cannot be removed; name its attributes",
                    path.text
                )));
            }
            if let Some(ext) = path.at.extension {
                let before = self.current.get(&ext.id).and_then(Value::as_object);
                let fixed = ext.attributes.iter().find(|a| {
                    a.mutability == Mutability::Immutable
                        && before.is_some_and(|b| b.contains_key(&a.name))
                });
                if let Some(a) = fixed {
                    return Err(ScimError::typed(
                        400,
                        ScimType::Mutability,
                        format!(
                            "{}:{} is immutable: it cannot be removed once set",
                            ext.id, a.name
                        ),
                    ));
                }
                self.doc.remove(&ext.id);
            }
            return Ok(());
        };
        let before = match path.at.extension {
            Some(e) => self.current.get(&e.id).and_then(|o| o.get(&attr.name)),
            None => self.current.get(&attr.name),
        };
        if attr.mutability == Mutability::Immutable && before.is_some() {
            return Err(ScimError::typed(
                400,
                ScimType::Mutability,
                format!("{} is immutable: it cannot be removed once set", path.text),
            ));
        }
        with_container(&mut self.doc, path.at.extension, |container| {
            remove_at(container, attr, path, value)
        })
    }
}

/// The ids a members filter names, when it is `value eq "id"` or an `or` of those: removed
/// without reading the member list.
fn value_ids(filter: &Bound) -> Option<Vec<String>> {
    match filter {
        Bound::Compare {
            target,
            op: filter::Op::Eq,
            test: Test::Str { raw, .. },
        } if target.location.attribute == "value" && target.location.sub.is_none() => {
            // Ids are lowercase UUIDs and `members.value` is not caseExact: the filter matches
            // whatever case the client used, as it does in a query.
            Some(vec![raw.to_ascii_lowercase()])
        }
        Bound::Or(a, b) => {
            let mut ids = value_ids(a)?;
            ids.extend(value_ids(b)?);
            Some(ids)
        }
        _ => None,
    }
}

/// readOnly attributes cannot be the target of any operation (RFC 7643 §7).
fn writable(path: &OpPath<'_>) -> Result<(), ScimError> {
    let read_only = [path.at.attribute, path.at.sub]
        .into_iter()
        .flatten()
        .any(|a| a.mutability == Mutability::ReadOnly);
    if read_only {
        return Err(ScimError::typed(
            400,
            ScimType::Mutability,
            format!("{} is readOnly: only the server sets it", path.text),
        ));
    }
    Ok(())
}

/// Runs `f` on the object holding the attributes of `ext` (the resource itself for the core
/// schema); an extension left empty is dropped.
fn with_container<R>(
    doc: &mut Map<String, Value>,
    ext: Option<&Schema>,
    f: impl FnOnce(&mut Map<String, Value>) -> R,
) -> R {
    let Some(ext) = ext else { return f(doc) };
    let mut inner = match doc.remove(&ext.id) {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    let result = f(&mut inner);
    if !inner.is_empty() {
        doc.insert(ext.id.clone(), Value::Object(inner));
    }
    result
}
