//! Input validation and normalisation against the schemas (RFC 7643 §2, §7; RFC 7644 §3.3, §3.5.1).
//!
//! - Names match case-insensitively (§2.1); the stored document uses the schema's spelling.
//! - Values are type-checked (§2.3); `"True"`/`"False"` strings become booleans (Entra ID sends them).
//! - `null` and empty arrays are "no value" (§2.5) and are dropped.
//! - readOnly attributes in input are ignored; required ones must be present.
//! - Extension attributes live under their schema URN; `schemas` lists the core URN and the
//!   extensions present.
//! - Unknown attributes and undeclared extension URNs are rejected, or kept verbatim in
//!   [`SchemaMode::Lenient`].
//! - `USER_MAPPING` / `GROUP_MAPPING` targets are set from their sources before `required` is checked.

use base64::Engine;
use serde_json::{Map, Value};

use super::{Attribute, AttributeType, Mutability, Registry, ResourceSchemas, SchemaMode};
use crate::{ResourceType, ScimError, ScimType};

/// Validates a create or replace body and returns the attributes to store (everything but `id` and
/// `meta`), with canonical names and `schemas` filled in.
pub fn normalise(
    registry: &Registry,
    rt: ResourceType,
    body: Value,
) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(input) = body else {
        return Err(ScimError::invalid_syntax(format!(
            "the request body must be a JSON object representing a {}",
            rt.name()
        )));
    };
    let s = registry.schemas(rt);
    let lenient = registry.mode() == SchemaMode::Lenient;
    no_case_duplicates(&input, "")?;
    let mut out = Map::new();
    let mut listed: Option<Value> = None;
    for (key, value) in input {
        if key.eq_ignore_ascii_case("schemas") {
            listed = Some(value);
            continue;
        }
        // RFC 7643 §3.1: `id` and `meta` are assigned by the service provider.
        if super::path::server_assigned(&key) || value.is_null() {
            continue;
        }
        if key.eq_ignore_ascii_case("externalId") {
            match value {
                Value::String(v) => {
                    out.insert("externalId".into(), Value::String(v));
                }
                other => return Err(wrong_type("externalId", "a string", &other)),
            }
            continue;
        }
        if let Some(attr) = s.core.attribute(&key) {
            if let Some(v) = attribute_value(attr, &attr.name, value, lenient)? {
                out.insert(attr.name.clone(), v);
            }
            continue;
        }
        if let Some(ext) = s.extension(&key) {
            let id = &ext.schema.id;
            let Value::Object(fields) = value else {
                return Err(wrong_type(id, "an object", &value));
            };
            no_case_duplicates(&fields, &format!("{id}:"))?;
            let mut stored = Map::new();
            for (name, v) in fields {
                if v.is_null() {
                    continue;
                }
                match ext.schema.attribute(&name) {
                    Some(attr) => {
                        let label = format!("{id}:{}", attr.name);
                        if let Some(v) = attribute_value(attr, &label, v, lenient)? {
                            stored.insert(attr.name.clone(), v);
                        }
                    }
                    None if lenient => {
                        stored.insert(name, v);
                    }
                    None => return Err(unknown(&format!("{id}:{name}"))),
                }
            }
            if !stored.is_empty() {
                out.insert(id.clone(), Value::Object(stored));
            }
            continue;
        }
        if lenient {
            out.insert(key, value);
        } else {
            return Err(unknown(&key));
        }
    }
    s.mapping.apply(&mut out);
    let extra = check_listed(s, listed, lenient)?;
    check_required(s, &out)?;
    let mut schemas: Vec<Value> = vec![Value::String(s.core.id.clone())];
    for e in &s.extensions {
        if out.contains_key(&e.schema.id) {
            schemas.push(Value::String(e.schema.id.clone()));
        }
    }
    schemas.extend(extra.into_iter().map(Value::String));
    out.insert("schemas".into(), Value::Array(schemas));
    Ok(out)
}

/// RFC 7643 §3: `schemas` must name the core schema and may name only declared extensions.
/// A body without `schemas` is given the core schema, as the earlier server did. Returns the
/// undeclared URNs a lenient registry keeps.
fn check_listed(
    s: &ResourceSchemas,
    listed: Option<Value>,
    lenient: bool,
) -> Result<Vec<String>, ScimError> {
    let list = match listed {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(wrong_type("schemas", "an array of URN strings", &other)),
    };
    let mut urns = Vec::with_capacity(list.len());
    for urn in list {
        let Value::String(urn) = urn else {
            return Err(ScimError::invalid_value(
                "schemas must be an array of URN strings",
            ));
        };
        urns.push(urn);
    }
    if !urns.iter().any(|u| u.eq_ignore_ascii_case(&s.core.id)) {
        return Err(ScimError::invalid_value(format!(
            "schemas must include {}",
            s.core.id
        )));
    }
    let mut extra = Vec::new();
    for urn in urns {
        if urn.eq_ignore_ascii_case(&s.core.id) || s.extension(&urn).is_some() {
            continue;
        }
        if !lenient {
            return Err(ScimError::invalid_value(format!(
                "schemas names {urn}, which is not an extension of {}",
                s.rt.name()
            )));
        }
        if !extra.contains(&urn) {
            extra.push(urn);
        }
    }
    Ok(extra)
}

/// `required` attributes (RFC 7643 §7) and required extensions (§6) must be present.
fn check_required(s: &ResourceSchemas, out: &Map<String, Value>) -> Result<(), ScimError> {
    for attr in &s.core.attributes {
        required_present(attr, &attr.name, out.get(&attr.name))?;
    }
    for e in &s.extensions {
        match out.get(&e.schema.id) {
            Some(Value::Object(fields)) => {
                for attr in &e.schema.attributes {
                    let label = format!("{}:{}", e.schema.id, attr.name);
                    required_present(attr, &label, fields.get(&attr.name))?;
                }
            }
            _ if e.required => {
                return Err(ScimError::invalid_value(format!(
                    "the extension {} is required",
                    e.schema.id
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn required_present(attr: &Attribute, label: &str, value: Option<&Value>) -> Result<(), ScimError> {
    // A readOnly attribute is the server's to set, even when the schema calls it required.
    if !attr.required || attr.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    match value {
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(_) => return Ok(()),
        None => {}
    }
    Err(ScimError::invalid_value(format!(
        "{label} is required and must not be empty"
    )))
}

/// One attribute's value, checked and normalised; `None` when it carries no value or is readOnly.
pub(crate) fn attribute_value(
    attr: &Attribute,
    label: &str,
    value: Value,
    lenient: bool,
) -> Result<Option<Value>, ScimError> {
    if attr.mutability == Mutability::ReadOnly {
        return Ok(None);
    }
    if !attr.multi_valued {
        if value.is_array() {
            return Err(wrong_type(label, expected(attr.kind), &value));
        }
        return single_value(attr, label, value, lenient);
    }
    // A lone value where an array is expected is taken as a one-element array.
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if item.is_null() {
            continue;
        }
        if let Some(v) = single_value(attr, label, item, lenient)? {
            out.push(v);
        }
    }
    // RFC 7643 §2.4: the primary value "true" MUST appear no more than once.
    let primaries = out
        .iter()
        .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "{label} has {primaries} values with primary true; at most one may be primary"
        )));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn single_value(
    attr: &Attribute,
    label: &str,
    value: Value,
    lenient: bool,
) -> Result<Option<Value>, ScimError> {
    let bad = |v: &Value| wrong_type(label, expected(attr.kind), v);
    let v = match (attr.kind, value) {
        (AttributeType::String, v @ Value::String(_)) => v,
        (AttributeType::Boolean, v @ Value::Bool(_)) => v,
        (AttributeType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Value::Bool(true)
        }
        (AttributeType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Value::Bool(false)
        }
        (AttributeType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Value::Number(n),
        (AttributeType::Decimal, v @ Value::Number(_)) => v,
        (AttributeType::DateTime, Value::String(s)) => {
            if chrono::DateTime::parse_from_rfc3339(&s).is_err() {
                return Err(ScimError::invalid_value(format!(
                    "{label} must be an xsd:dateTime (RFC 3339, e.g. 2024-05-01T12:00:00Z)"
                )));
            }
            Value::String(s)
        }
        (AttributeType::Binary, Value::String(s)) => {
            if base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .is_err()
            {
                return Err(ScimError::invalid_value(format!(
                    "{label} must be base64-encoded binary"
                )));
            }
            Value::String(s)
        }
        (AttributeType::Reference, Value::String(s)) => {
            let uri = attr
                .reference_types
                .iter()
                .any(|t| t == "external" || t == "uri");
            if uri && !is_absolute_uri(&s) {
                return Err(ScimError::invalid_value(format!(
                    "{label} must be an absolute URI"
                )));
            }
            Value::String(s)
        }
        (AttributeType::Complex, Value::Object(fields)) => {
            return complex_value(attr, label, fields, lenient);
        }
        (_, other) => return Err(bad(&other)),
    };
    Ok(Some(v))
}

fn complex_value(
    attr: &Attribute,
    label: &str,
    fields: Map<String, Value>,
    lenient: bool,
) -> Result<Option<Value>, ScimError> {
    no_case_duplicates(&fields, &format!("{label}."))?;
    let mut out = Map::new();
    for (name, v) in fields {
        if v.is_null() {
            continue;
        }
        match attr.sub_attribute(&name) {
            Some(sub) => {
                let sub_label = format!("{label}.{}", sub.name);
                if let Some(v) = attribute_value(sub, &sub_label, v, lenient)? {
                    out.insert(sub.name.clone(), v);
                }
            }
            None if lenient => {
                out.insert(name, v);
            }
            None => return Err(unknown(&format!("{label}.{name}"))),
        }
    }
    if out.is_empty() {
        // An element of a multi-valued attribute that says nothing is a client error, not "no value".
        if attr.multi_valued {
            return Err(ScimError::invalid_value(format!(
                "each element of {label} must have at least one writable sub-attribute"
            )));
        }
        return Ok(None);
    }
    for sub in &attr.sub_attributes {
        required_present(sub, &format!("{label}.{}", sub.name), out.get(&sub.name))?;
    }
    Ok(Some(Value::Object(out)))
}

/// RFC 7643 §2.1: names are case-insensitive, so `userName` and `USERNAME` in one object are the
/// same attribute given twice; which one to keep would be a guess.
fn no_case_duplicates(fields: &Map<String, Value>, prefix: &str) -> Result<(), ScimError> {
    let mut seen = std::collections::HashSet::with_capacity(fields.len());
    for name in fields.keys() {
        if !seen.insert(name.to_lowercase()) {
            return Err(ScimError::invalid_value(format!(
                "{prefix}{name} is given more than once (attribute names are case-insensitive)"
            )));
        }
    }
    Ok(())
}

/// RFC 3986 §3.1: a scheme, then `:`.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
}

fn expected(kind: AttributeType) -> &'static str {
    match kind {
        AttributeType::String | AttributeType::DateTime | AttributeType::Reference => "a string",
        AttributeType::Binary => "a base64 string",
        AttributeType::Boolean => "a boolean",
        AttributeType::Decimal => "a number",
        AttributeType::Integer => "an integer",
        AttributeType::Complex => "an object",
    }
}

fn unknown(name: &str) -> ScimError {
    ScimError::invalid_value(format!(
        "{name} is not an attribute of any schema this resource type uses (see /Schemas)"
    ))
}

/// The 400 `invalidValue` for a value of the wrong JSON type.
pub fn wrong_type(name: &str, expected: &str, got: &Value) -> ScimError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ScimError::invalid_value(format!("{name} must be {expected}, not {got}"))
}

/// RFC 7644 §3.5.1: on replace, an immutable attribute that already has a value must keep it
/// (400 `mutability` otherwise); one the body leaves out keeps its current value, since a client
/// cannot be expected to send back what may not be returned to it.
pub fn check_replace(
    registry: &Registry,
    rt: ResourceType,
    current: &Map<String, Value>,
    new: &mut Map<String, Value>,
) -> Result<(), ScimError> {
    let s = registry.schemas(rt);
    for attr in &s.core.attributes {
        keep_immutable(attr, &attr.name, current.get(&attr.name), new)?;
    }
    for e in &s.extensions {
        let id = &e.schema.id;
        let Some(Value::Object(before)) = current.get(id) else {
            continue;
        };
        let mut after = match new.remove(id) {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        for attr in &e.schema.attributes {
            keep_immutable(
                attr,
                &format!("{id}:{}", attr.name),
                before.get(&attr.name),
                &mut after,
            )?;
        }
        if !after.is_empty() {
            new.insert(id.clone(), Value::Object(after));
            if let Some(Value::Array(schemas)) = new.get_mut("schemas")
                && !schemas.iter().any(|v| v.as_str() == Some(id))
            {
                schemas.push(Value::String(id.clone()));
            }
        }
    }
    Ok(())
}

fn keep_immutable(
    attr: &Attribute,
    label: &str,
    before: Option<&Value>,
    after: &mut Map<String, Value>,
) -> Result<(), ScimError> {
    if attr.mutability != Mutability::Immutable {
        return Ok(());
    }
    match (before, after.get(&attr.name)) {
        (Some(b), None) => {
            after.insert(attr.name.clone(), b.clone());
            Ok(())
        }
        (Some(b), Some(a)) if !same(b, a) => Err(ScimError::typed(
            400,
            ScimType::Mutability,
            format!("{label} is immutable: it cannot be changed once set"),
        )),
        _ => Ok(()),
    }
}

/// Equal values; arrays compare as multisets (the order of a multi-valued attribute is not significant).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().all(|v| y.contains(v)) && y.iter().all(|v| x.contains(v))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const VO: &str = "urn:temporaryNamespace:scim:schemas:voPerson:User";

    fn registry(mode: SchemaMode) -> Registry {
        Registry::built_in(mode).unwrap()
    }

    fn user(body: Value) -> Result<Map<String, Value>, ScimError> {
        normalise(&registry(SchemaMode::Strict), ResourceType::User, body)
    }

    #[test]
    fn names_are_case_insensitive_and_stored_in_the_schema_spelling() {
        let out =
            user(json!({"USERNAME": "b", "Name": {"GivenName": "Barbara"}, "EXTERNALID": "x"}))
                .unwrap();
        assert_eq!(out["userName"], "b");
        assert_eq!(out["name"]["givenName"], "Barbara");
        assert_eq!(out["externalId"], "x");
        assert_eq!(
            out["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
        );
    }

    #[test]
    fn boolean_strings_become_booleans() {
        let out = user(json!({"userName": "b", "active": "False", "emails": [{"value": "a@b", "primary": "True"}]}))
            .unwrap();
        assert_eq!(out["active"], json!(false));
        assert_eq!(out["emails"][0]["primary"], json!(true));
    }

    #[test]
    fn types_are_checked() {
        for (body, needle) in [
            (
                json!({"userName": "b", "active": 1}),
                "active must be a boolean",
            ),
            (
                json!({"userName": "b", "displayName": 5}),
                "displayName must be a string",
            ),
            (
                json!({"userName": "b", "name": "x"}),
                "name must be an object",
            ),
            (
                json!({"userName": "b", "profileUrl": "not a uri"}),
                "absolute URI",
            ),
            (
                json!({"userName": "b", "x509Certificates": [{"value": "***"}]}),
                "base64",
            ),
            (
                json!({"userName": "b", "urn:mace:surf.nl:sram:scim:extension:User": {"sramInactiveDays": 1.5}}),
                "sramInactiveDays must be an integer",
            ),
        ] {
            let err = user(body).unwrap_err();
            assert_eq!(err.scim_type, Some(ScimType::InvalidValue));
            assert!(err.detail.contains(needle), "{} lacks {needle}", err.detail);
        }
    }

    #[test]
    fn required_attributes_and_sub_attributes_are_enforced() {
        let err = user(json!({"displayName": "x"})).unwrap_err();
        assert!(
            err.detail.contains("userName is required"),
            "{}",
            err.detail
        );
        let err =
            user(json!({"userName": "b", VO: {"voPersonStatus": [{"type": "x"}]}})).unwrap_err();
        assert!(
            err.detail.contains("voPersonStatus.value is required"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn read_only_input_is_ignored() {
        let out = user(json!({"userName": "b", "groups": [{"value": "g"}], "id": "x", "meta": {}}))
            .unwrap();
        assert!(!out.contains_key("groups"));
        assert!(!out.contains_key("id"));
    }

    #[test]
    fn extensions_live_under_their_urn_and_are_listed_in_schemas() {
        let out = user(json!({
            "userName": "b",
            ENTERPRISE.to_uppercase(): {"EMPLOYEENUMBER": "42"}
        }))
        .unwrap();
        assert_eq!(out[ENTERPRISE]["employeeNumber"], "42");
        assert_eq!(out["schemas"][1], ENTERPRISE);
    }

    #[test]
    fn unknown_attributes_are_rejected_unless_lenient() {
        let err = user(json!({"userName": "b", "favouriteColour": "red"})).unwrap_err();
        assert!(err.detail.contains("favouriteColour"));
        let err = user(json!({"userName": "b", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:x:y"]}))
            .unwrap_err();
        assert!(err.detail.contains("urn:x:y"));
        let err =
            user(json!({"userName": "b", "emails": [{"value": "a", "colour": "x"}]})).unwrap_err();
        assert!(err.detail.contains("emails.colour"));
        let out = normalise(
            &registry(SchemaMode::Lenient),
            ResourceType::User,
            json!({"userName": "b", "favouriteColour": "red", "urn:x:y": {"a": 1},
                   "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:x:y"]}),
        )
        .unwrap();
        assert_eq!(out["favouriteColour"], "red");
        assert_eq!(out["urn:x:y"], json!({"a": 1}));
        assert!(
            out["schemas"]
                .as_array()
                .unwrap()
                .contains(&json!("urn:x:y"))
        );
    }

    #[test]
    fn the_same_name_in_two_spellings_is_refused() {
        let err = user(json!({"userName": "a", "USERNAME": "b"})).unwrap_err();
        assert!(err.detail.contains("more than once"), "{}", err.detail);
        let err = user(json!({"userName": "a", "name": {"givenName": "x", "GIVENNAME": "y"}}))
            .unwrap_err();
        assert!(err.detail.contains("name."), "{}", err.detail);
    }

    #[test]
    fn at_most_one_primary() {
        let err = user(json!({"userName": "b", "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}))
            .unwrap_err();
        assert!(err.detail.contains("primary"));
    }

    #[test]
    fn immutable_attributes_are_kept_and_cannot_change() {
        let r = registry(SchemaMode::Strict);
        let current =
            user(json!({"userName": "b", VO: {"voPersonID": [{"value": "id1"}]}})).unwrap();
        let mut same = user(json!({"userName": "c"})).unwrap();
        check_replace(&r, ResourceType::User, &current, &mut same).unwrap();
        assert_eq!(same[VO]["voPersonID"][0]["value"], "id1");
        assert!(same["schemas"].as_array().unwrap().contains(&json!(VO)));
        let mut changed =
            user(json!({"userName": "b", VO: {"voPersonID": [{"value": "id2"}]}})).unwrap();
        let err = check_replace(&r, ResourceType::User, &current, &mut changed).unwrap_err();
        assert_eq!(err.scim_type, Some(ScimType::Mutability));
    }
}
