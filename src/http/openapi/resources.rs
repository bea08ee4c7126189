//! User and Group as OpenAPI 3.0 schemas, generated from the loaded SCIM schemas (RFC 7643 §7), so
//! the document describes this deployment: SCHEMA_PATH extensions, SCHEMA_MODE and all.
//!
//! Two forms per type: what a write takes (`UserWrite`: required attributes required, readOnly
//! ones marked and ignored, unknown ones refused unless lenient) and what a read returns (`User`:
//! nothing but `id` and `schemas` guaranteed, since `attributes=` may leave the rest out).
//! The schema says what the server accepts, not more: `null` is "no value" (RFC 7643 §2.5), a
//! multi-valued attribute takes a lone value as a one-element array.

use serde_json::{Map, Value, json};

use scim::ResourceType;
use scim::schema::{Attribute, AttributeType, Mutability, Registry, Returned, SchemaMode};

/// Which way a schema describes a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A POST or PUT body.
    Write,
    /// A representation the server returns.
    Read,
}

/// Characters Rust's `str::trim` removes (Unicode White_Space): a required string must hold one
/// other character. Spelled out because `\s` differs between regex dialects.
const NOT_BLANK: &str =
    "[^\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// The schema of `rt`'s resources in `direction`.
pub fn resource(registry: &Registry, rt: ResourceType, direction: Direction) -> Value {
    let s = registry.schemas(rt);
    let open = registry.mode() == SchemaMode::Lenient;
    let mut properties = Map::new();
    let mut urns = vec![json!(s.core.id)];
    urns.extend(s.extensions.iter().map(|e| json!(e.schema.id)));
    properties.insert(
        "schemas".into(),
        json!({
            "type": "array",
            "items": {"type": "string", "enum": urns},
            "description": format!(
                "The schemas the resource uses: {} first, then the extensions present. \
                 Filled in by the server when absent.", s.core.id),
        }),
    );
    properties.insert(
        "id".into(),
        json!({"type": "string", "readOnly": true,
               "description": "Assigned by the server (a UUID); ignored in input."}),
    );
    properties.insert(
        "externalId".into(),
        json!({"type": "string", "nullable": true,
               "description": "The provisioning client's identifier (RFC 7643 §3.1); not unique unless EXTERNAL_ID_UNIQUE=true."}),
    );
    properties.insert("meta".into(), meta(rt));
    let mut required = Vec::new();
    for a in &s.core.attributes {
        if let Some(schema) = attribute(a, direction, open, true) {
            properties.insert(a.name.clone(), schema);
            if is_required(a, direction) {
                required.push(json!(a.name));
            }
        }
    }
    for e in &s.extensions {
        let mut inner = Map::new();
        let mut inner_required = Vec::new();
        for a in &e.schema.attributes {
            if let Some(schema) = attribute(a, direction, open, true) {
                inner.insert(a.name.clone(), schema);
                if is_required(a, direction) {
                    inner_required.push(json!(a.name));
                }
            }
        }
        let mut ext = json!({
            "type": "object",
            "description": format!("{} ({})", e.schema.name, e.schema.description).trim().to_owned(),
            "properties": inner,
            "additionalProperties": open,
        });
        if !inner_required.is_empty() {
            ext["required"] = Value::Array(inner_required);
        }
        if !(e.required && direction == Direction::Write) {
            ext["nullable"] = json!(true);
        } else {
            required.push(json!(e.schema.id));
        }
        properties.insert(e.schema.id.clone(), ext);
    }
    let mut doc = json!({
        "type": "object",
        "description": s.description,
        "properties": properties,
        "additionalProperties": open,
    });
    match direction {
        Direction::Write if !required.is_empty() => doc["required"] = Value::Array(required),
        Direction::Write => {}
        // `returned: always` (RFC 7643 §7): present whatever `attributes` asks for.
        Direction::Read => doc["required"] = json!(["schemas", "id"]),
    }
    doc
}

/// Whether a write must carry `a`.
fn is_required(a: &Attribute, direction: Direction) -> bool {
    direction == Direction::Write && a.required && a.mutability != Mutability::ReadOnly
}

/// `meta` (RFC 7643 §3.1), always the server's.
fn meta(rt: ResourceType) -> Value {
    json!({
        "type": "object",
        "readOnly": true,
        "description": "Assigned by the server; ignored in input.",
        "properties": {
            "resourceType": {"type": "string", "enum": [rt.name()]},
            "created": {"type": "string", "format": "date-time"},
            "lastModified": {"type": "string", "format": "date-time"},
            "version": {"type": "string", "pattern": "^W/\"[0-9]+\"$"},
            "location": {"type": "string"},
        },
    })
}

/// One attribute's schema, or `None` when it never appears in `direction` (`returned: never` in a
/// read). `enforced`: whether `required` is checked where it stands (top level, or in an element
/// of a multi-valued attribute), so that `null` is refused there.
fn attribute(a: &Attribute, direction: Direction, open: bool, enforced: bool) -> Option<Value> {
    if direction == Direction::Read && a.returned == Returned::Never {
        return None;
    }
    let one = single(a, direction, open);
    let mut schema = if a.multi_valued {
        let items = nullable(one.clone());
        match direction {
            // A lone value where an array is expected is taken as a one-element array.
            Direction::Write => json!({"anyOf": [{"type": "array", "items": items}, one]}),
            Direction::Read => json!({"type": "array", "items": one}),
        }
    } else {
        one
    };
    let mut description = a.description.clone();
    if !a.canonical_values.is_empty() {
        let values: Vec<String> = a
            .canonical_values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        description = format!("{description} Canonical values: {}.", values.join(", "));
    }
    match a.mutability {
        Mutability::ReadOnly => {
            schema["readOnly"] = json!(true);
            description = format!("{description} Read-only: ignored in input.");
        }
        Mutability::WriteOnly => schema["writeOnly"] = json!(true),
        Mutability::Immutable => {
            description = format!("{description} Immutable: set once, never changed.");
        }
        Mutability::ReadWrite => {}
    }
    if a.returned == Returned::Never {
        schema["writeOnly"] = json!(true);
    }
    if !(enforced && a.required && direction == Direction::Write) {
        schema["nullable"] = json!(true);
    }
    schema["description"] = json!(description.trim());
    Some(schema)
}

/// `schema` that also takes `null` (no value, RFC 7643 §2.5).
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// The schema of one value of `a`.
fn single(a: &Attribute, direction: Direction, open: bool) -> Value {
    match a.kind {
        AttributeType::String if a.required && direction == Direction::Write => {
            json!({"type": "string", "pattern": NOT_BLANK})
        }
        AttributeType::String => json!({"type": "string"}),
        AttributeType::Boolean => json!({"type": "boolean"}),
        AttributeType::Decimal => json!({"type": "number"}),
        AttributeType::Integer => json!({"type": "integer", "format": "int64",
                                         "minimum": i64::MIN, "maximum": i64::MAX}),
        AttributeType::DateTime => json!({"type": "string", "format": "date-time"}),
        AttributeType::Binary => json!({
            "type": "string",
            "format": "byte",
            "pattern": "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        }),
        AttributeType::Reference
            if a.reference_types
                .iter()
                .any(|t| t == "external" || t == "uri") =>
        {
            json!({"type": "string", "format": "uri", "pattern": "^[A-Za-z][A-Za-z0-9+.-]*:[\\s\\S]+$"})
        }
        AttributeType::Reference => json!({"type": "string"}),
        AttributeType::Complex => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for sub in &a.sub_attributes {
                // In an element of a multi-valued attribute, a `null` sub-attribute would leave
                // the element saying nothing, which is refused.
                if let Some(mut schema) = attribute(sub, direction, open, a.multi_valued) {
                    if a.multi_valued
                        && direction == Direction::Write
                        && let Some(o) = schema.as_object_mut()
                    {
                        o.remove("nullable");
                    }
                    properties.insert(sub.name.clone(), schema);
                    if is_required(sub, direction) {
                        required.push(json!(sub.name));
                    }
                }
            }
            // A member's type is checked (RFC 7643 §4.2), unlike other canonical values.
            // And every member names its id.
            if a.name == "members"
                && let Some(t) = properties.get_mut("type")
            {
                t["enum"] = json!(["User", "Group", null]);
                if let Some(v) = properties.get_mut("value") {
                    v["minLength"] = json!(1);
                }
                required.push(json!("value"));
            }
            let mut schema = json!({
                "type": "object",
                "properties": properties,
                "additionalProperties": open,
            });
            // An element of a multi-valued attribute must say something (a writable sub-attribute).
            if a.multi_valued && direction == Direction::Write {
                schema["minProperties"] = json!(1);
            }
            if !required.is_empty() {
                schema["required"] = Value::Array(required);
            }
            schema
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_requires_user_name_and_a_read_only_id_and_schemas() {
        let r = Registry::built_in(SchemaMode::Strict).unwrap();
        let write = resource(&r, ResourceType::User, Direction::Write);
        assert_eq!(write["required"], json!(["userName"]));
        assert_eq!(write["properties"]["password"]["writeOnly"], true);
        assert_eq!(write["additionalProperties"], false);
        let read = resource(&r, ResourceType::User, Direction::Read);
        assert_eq!(read["required"], json!(["schemas", "id"]));
        assert!(read["properties"].get("password").is_none());
        let group = resource(&r, ResourceType::Group, Direction::Write);
        let member = &group["properties"]["members"]["anyOf"][1];
        assert_eq!(
            member["properties"]["type"]["enum"],
            json!(["User", "Group", null])
        );
        assert_eq!(member["required"], json!(["value"]));
        assert_eq!(member["properties"]["display"]["readOnly"], true);
    }
}
