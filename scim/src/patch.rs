//! PATCH (RFC 7644 §3.5.2), pure: [`parse`] reads a PatchOp message, [`apply`] applies its
//! operations to a resource's stored attributes and returns the new attributes (validated exactly as
//! a replace would be) and, for Groups, the membership changes as [`MemberOp`]s, so that the store
//! can apply them without reading the whole member list.
//!
//! The RFC's rules: `add` to a single-valued attribute replaces it, to a multi-valued one appends
//! (values equal to an existing one are not duplicated); `replace` on a value path matching nothing
//! is `noTarget`; `remove` needs a path (`noTarget`); required, readOnly and immutable attributes
//! cannot be removed or changed (`invalidValue`, `mutability`); a value with `primary: true` clears
//! the others' primary. Bad paths are `invalidPath`, bad values `invalidValue`.
//!
//! Client habits accepted, each named in a unit test:
//! - `op` in any case (`"Add"`, `"Replace"`);
//! - booleans as strings (`"False"`), as in create and replace;
//! - Entra's `{"op":"remove","path":"members","value":[{"value":"id"}]}` removes only those members;
//! - path-less `add`/`replace` whose value's keys are paths (`{"name.givenName":"x"}`,
//!   `{"urn:…:enterprise:2.0:User:employeeNumber":"1"}`, `{"active":false}`);
//! - the enterprise `manager` (any complex attribute with a `value`) given as a bare string id;
//! - `add` on a value path that matches nothing creates the element from the filter's equalities
//!   (Entra's `emails[type eq "work"].value`);
//! - `replace` of `members` with an empty array empties the group.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::filter::{self, Bound, Limits, Test};
use super::get_ci;
use super::resource::{self, MemberInput};
use super::schema::validate;
use super::schema::{Attribute, Mutability, Registry, ResourceSchemas, Schema, SchemaMode};
use super::{ResourceType, ScimError, ScimType};

/// URN of the PatchOp message (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 10_000;

/// What an operation does (RFC 7644 §3.5.2.1–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// §3.5.2.1.
    Add,
    /// §3.5.2.2.
    Remove,
    /// §3.5.2.3.
    Replace,
}

/// One element of `Operations`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `op`, matched case-insensitively.
    pub op: OpKind,
    /// `path`, if given and not empty.
    pub path: Option<String>,
    /// `value`, if given.
    pub value: Option<Value>,
}

/// A change to a Group's membership, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Make these resources members (those already members stay as they are).
    Add(Vec<MemberInput>),
    /// Remove these ids (those not members are ignored).
    Remove(Vec<String>),
    /// Remove every member whose representation (`value`, `type`, `display`) matches.
    RemoveWhere(Bound),
    /// Make exactly these resources the members.
    Replace(Vec<MemberInput>),
}

/// The outcome of [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    /// The attributes to store, normalised as for a replace.
    pub attributes: Map<String, Value>,
    /// Membership changes (Groups only), in request order.
    pub members: Vec<MemberOp>,
}

/// Reads a PatchOp body (RFC 7644 §3.5.2): `schemas` must name [`PATCH_OP_SCHEMA`], and
/// `Operations` must be a non-empty array of objects with `op`, optional `path` and `value`.
pub fn parse(body: Value) -> Result<Vec<Operation>, ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax(
            "the request body must be a PatchOp JSON object",
        ));
    };
    let listed = get_ci(&body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
            })
        });
    if !listed {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must be [\"{PATCH_OP_SCHEMA}\"]"
        )));
    }
    let Some(Value::Array(list)) = get_ci(&body, "Operations") else {
        return Err(ScimError::invalid_syntax(
            "Operations must be an array of operations",
        ));
    };
    if list.is_empty() {
        return Err(ScimError::invalid_syntax(
            "Operations must hold at least one operation",
        ));
    }
    if list.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH request may carry at most {MAX_OPERATIONS} operations"
        )));
    }
    list.iter().map(operation).collect()
}

fn operation(item: &Value) -> Result<Operation, ScimError> {
    let Value::Object(item) = item else {
        return Err(ScimError::invalid_syntax(
            "each operation must be an object with op, path and value",
        ));
    };
    let op = match get_ci(item, "op").and_then(Value::as_str) {
        Some(o) if o.eq_ignore_ascii_case("add") => OpKind::Add,
        Some(o) if o.eq_ignore_ascii_case("remove") => OpKind::Remove,
        Some(o) if o.eq_ignore_ascii_case("replace") => OpKind::Replace,
        _ => {
            return Err(ScimError::invalid_syntax(
                "op must be \"add\", \"remove\" or \"replace\"",
            ));
        }
    };
    let path = match get_ci(item, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.trim().to_owned()),
        Some(_) => return Err(invalid_path("path must be a string")),
    };
    let value = get_ci(item, "value").cloned();
    Ok(Operation { op, path, value })
}

/// The clear-text passwords `ops` set, for the caller to hash before [`apply`] stores them: path
/// `password`, a `password` key of a path-less value, and either inside the core schema's URN (path
/// `urn:…:core:2.0:User` with an object value, or that URN as a key of a path-less value).
pub fn passwords(ops: &mut [Operation]) -> Vec<&mut String> {
    let mut out = Vec::new();
    for Operation { op, path, value } in ops.iter_mut() {
        if *op == OpKind::Remove {
            continue;
        }
        let named = path.as_deref().is_some_and(is_password);
        let core = path
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(CORE_USER));
        let pathless = path.is_none();
        match value {
            Some(Value::String(secret)) if named => out.push(secret),
            Some(Value::Object(fields)) if core || pathless => {
                password_fields(fields, pathless, &mut out);
            }
            _ => {}
        }
    }
    out
}

const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn is_password(p: &str) -> bool {
    p.eq_ignore_ascii_case("password")
        || p.eq_ignore_ascii_case("urn:ietf:params:scim:schemas:core:2.0:User:password")
}

/// The `password` keys of `fields` (and, `wrapped` allowing, of an object under the core URN).
fn password_fields<'v>(
    fields: &'v mut Map<String, Value>,
    wrapped: bool,
    out: &mut Vec<&'v mut String>,
) {
    for (k, v) in fields.iter_mut() {
        match v {
            Value::String(secret) if is_password(k) => out.push(secret),
            Value::Object(inner) if wrapped && k.eq_ignore_ascii_case(CORE_USER) => {
                password_fields(inner, false, out);
            }
            _ => {}
        }
    }
}

/// Applies `ops` in order to `current` (a resource's stored attributes) and validates the result as
/// a replace is validated. All or nothing: an error leaves nothing applied.
pub fn apply(
    registry: &Registry,
    rt: ResourceType,
    current: &Map<String, Value>,
    ops: Vec<Operation>,
    limits: &Limits,
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

/// A path resolved against the schemas.
struct Path<'s> {
    /// The path as written, for messages.
    text: String,
    /// The extension holding the attribute (`None`: core).
    ext: Option<&'s Schema>,
    /// The attribute (`None`: the whole extension).
    attr: Option<&'s Attribute>,
    /// The value filter's test on each element.
    filter: Option<Bound>,
    /// The sub-attribute.
    sub: Option<&'s Attribute>,
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
            if server_key(&key) {
                continue;
            }
            if let Some(ext) = self.s.extension(&key) {
                let Value::Object(inner) = value else {
                    return Err(validate::wrong_type(&ext.schema.id, "an object", &value));
                };
                let id = ext.schema.id.clone();
                for (name, v) in inner.into_iter().filter(|(k, _)| !server_key(k)) {
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
    fn path(&self, text: &str) -> Result<Path<'a>, ScimError> {
        let unknown = || {
            invalid_path(format!(
                "{text} is not an attribute path of this resource type"
            ))
        };
        let lower = text.to_ascii_lowercase();
        if lower == "id" || lower == "meta" || lower.starts_with("meta.") {
            return Err(ScimError::typed(
                400,
                ScimType::Mutability,
                format!("{text} is readOnly: only the server sets it"),
            ));
        }
        let Some(open) = text.find('[') else {
            if text.eq_ignore_ascii_case("externalId") {
                return Ok(Path {
                    text: text.to_owned(),
                    ext: None,
                    attr: Some(external_id()),
                    filter: None,
                    sub: None,
                });
            }
            let r = self.s.resolve(text).ok_or_else(unknown)?;
            return Ok(Path {
                text: text.to_owned(),
                ext: r.extension,
                attr: r.attribute,
                filter: None,
                sub: r.sub,
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
        Ok(Path {
            text: text.to_owned(),
            ext: r.extension,
            attr: Some(attr),
            filter: Some(*filter),
            sub,
        })
    }

    fn is_members(&self, path: &Path<'_>) -> bool {
        self.s.rt == ResourceType::Group
            && path.ext.is_none()
            && path.attr.is_some_and(|a| a.name == "members")
    }

    /// `add` or `replace` at a path.
    fn set(&mut self, kind: OpKind, path: &Path<'a>, value: Value) -> Result<(), ScimError> {
        writable(path)?;
        if self.is_members(path) {
            if path.filter.is_some() || path.sub.is_some() {
                return Err(invalid_path(format!(
                    "{}: members are added or replaced as a list; remove takes a filter",
                    path.text
                )));
            }
            let list = resource::parse_members(Some(as_array(value)))?;
            self.members.push(match kind {
                OpKind::Replace => MemberOp::Replace(list),
                _ => MemberOp::Add(list),
            });
            return Ok(());
        }
        let Some(attr) = path.attr else {
            // A whole extension: each of its attributes in turn.
            let Value::Object(fields) = value else {
                return Err(validate::wrong_type(&path.text, "an object", &value));
            };
            let id = path.ext.map(|e| e.id.clone()).unwrap_or_default();
            for (name, v) in fields.into_iter().filter(|(k, _)| !server_key(k)) {
                let inner = self.path(&format!("{id}:{name}"))?;
                self.set(kind, &inner, v)?;
            }
            return Ok(());
        };
        let lenient = self.lenient;
        let label = path.text.clone();
        with_container(&mut self.doc, path.ext, |container| {
            set_at(container, attr, path, &label, kind, value, lenient)
        })
    }

    /// RFC 7644 §3.5.2.2.
    fn remove(&mut self, path: &Path<'a>, value: Option<Value>) -> Result<(), ScimError> {
        writable(path)?;
        if self.is_members(path) {
            let op = match (&path.filter, path.sub, value) {
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
        let Some(attr) = path.attr else {
            // A whole extension, unless it holds a set immutable attribute. The core schema is
            // not an extension: its required attributes cannot go.
            if path
                .ext
                .is_some_and(|e| e.id.eq_ignore_ascii_case(&self.s.core.id))
            {
                return Err(invalid_path(format!(
                    "{}: the core schema cannot be removed; name its attributes",
                    path.text
                )));
            }
            if let Some(ext) = path.ext {
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
        let before = match path.ext {
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
        with_container(&mut self.doc, path.ext, |container| {
            remove_at(container, attr, path, value)
        })
    }
}

/// `remove` of `attr` (in `container`) at `path`; `value` names the values to remove (Entra).
fn remove_at(
    container: &mut Map<String, Value>,
    attr: &Attribute,
    path: &Path<'_>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    match (&path.filter, path.sub) {
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
fn set_at(
    container: &mut Map<String, Value>,
    attr: &Attribute,
    path: &Path<'_>,
    label: &str,
    kind: OpKind,
    value: Value,
    lenient: bool,
) -> Result<(), ScimError> {
    match (&path.filter, path.sub) {
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
                path.sub.map_or("", |s| s.name.as_str())
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
        out.insert(target.attr.clone(), Value::String(raw.to_owned()));
    }
    out
}

/// The ids a members filter names, when it is `value eq "id"` or an `or` of those: removed
/// without reading the member list.
fn value_ids(filter: &Bound) -> Option<Vec<String>> {
    match filter {
        Bound::Compare {
            target,
            op: filter::Op::Eq,
            test: Test::Str { raw, .. },
        } if target.attr == "value" && target.sub.is_none() => {
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
fn writable(path: &Path<'_>) -> Result<(), ScimError> {
    let read_only = [path.attr, path.sub]
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

fn as_array(value: Value) -> Value {
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

/// `externalId` (RFC 7643 §3.1) is common to every resource and in no schema.
fn external_id() -> &'static Attribute {
    static ATTR: OnceLock<Attribute> = OnceLock::new();
    ATTR.get_or_init(|| Attribute {
        name: "externalId".into(),
        kind: Default::default(),
        multi_valued: false,
        description: String::new(),
        required: false,
        case_exact: true,
        mutability: Mutability::ReadWrite,
        returned: Default::default(),
        uniqueness: Default::default(),
        sub_attributes: Vec::new(),
        reference_types: Vec::new(),
        canonical_values: Vec::new(),
    })
}

/// Keys a client may echo from a representation but never sets: `schemas`, `id`, `meta`.
fn server_key(key: &str) -> bool {
    ["schemas", "id", "meta"]
        .iter()
        .any(|k| key.eq_ignore_ascii_case(k))
}

/// The attributes `ops` name (paths without their filters, and the keys of path-less values), so
/// that `returned: request` ones appear in the response (RFC 7643 §7).
pub fn named_attributes(ops: &[Operation]) -> Vec<String> {
    let mut out = Vec::new();
    for op in ops {
        match (&op.path, &op.value) {
            (Some(p), _) => {
                let head = p.split('[').next().unwrap_or_default();
                out.push(head.to_owned());
            }
            (None, Some(Value::Object(fields))) => out.extend(fields.keys().cloned()),
            _ => {}
        }
    }
    out
}

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::typed(400, ScimType::InvalidPath, detail)
}

#[cfg(test)]
mod tests;
