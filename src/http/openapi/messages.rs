//! The SCIM messages (RFC 7644 §3) as OpenAPI 3.0 schemas: PatchOp, SearchRequest, BulkRequest and
//! BulkResponse, ListResponse, Error, each with the enums SCIM defines.

use serde_json::{Value, json};

use scim::ResourceType;
use scim::bulk::{BULK_REQUEST_SCHEMA, BULK_RESPONSE_SCHEMA, MAX_OPERATIONS as MAX_BULK};
use scim::patch::{MAX_OPERATIONS as MAX_PATCH, PATCH_OP_SCHEMA};
use scim::schema::{Mutability, Registry};

use crate::service::LIST_RESPONSE_SCHEMA;

/// URN of the Error message (RFC 7644 §3.12).
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// URN of the SearchRequest message (RFC 7644 §3.4.3).
const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// `#/components/schemas/{name}`.
pub fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// RFC 7644 §3.12: the error body of every failure.
pub fn error() -> Value {
    json!({
        "type": "object",
        "description": "A SCIM error (RFC 7644 §3.12). Nothing was changed.",
        "required": ["schemas", "status"],
        "properties": {
            "schemas": {"type": "array", "items": {"type": "string", "enum": [ERROR_SCHEMA]}},
            "status": {"type": "string", "pattern": "^[1-5][0-9][0-9]$",
                       "description": "The HTTP status, as a string."},
            "scimType": {"type": "string", "enum": [
                "invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax",
                "invalidPath", "noTarget", "invalidValue", "invalidVers", "sensitive",
                "invalidCursor", "expiredCursor"]},
            "detail": {"type": "string", "description": "What was wrong, for a person."},
        },
    })
}

/// RFC 7644 §3.4.2: a page of `item`s.
pub fn list_response(item: Value) -> Value {
    json!({
        "type": "object",
        "required": ["schemas", "totalResults"],
        "properties": {
            "schemas": {"type": "array", "items": {"type": "string", "enum": [LIST_RESPONSE_SCHEMA]}},
            "totalResults": {"type": "integer", "minimum": 0},
            "startIndex": {"type": "integer", "minimum": 1},
            "itemsPerPage": {"type": "integer", "minimum": 0},
            "nextCursor": {"type": "string", "description": "RFC 9865: the cursor of the next page."},
            "Resources": {"type": "array", "items": item},
        },
    })
}

/// `sortOrder` (RFC 7644 §3.4.2.3).
pub fn sort_order() -> Value {
    json!({"type": "string", "enum": ["ascending", "descending"]})
}

/// `schema` that also takes `null`.
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// An integer the server reads as a 64-bit one.
fn whole_number() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX})
}

/// RFC 7644 §3.4.3: the body of `POST …/.search`.
pub fn search_request() -> Value {
    let paths = json!({"anyOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "string", "description": "Comma-separated attribute paths."},
    ]});
    json!({
        "type": "object",
        "description": format!(
            "A search (RFC 7644 §3.4.3); members as the query parameters of GET /Users. \
             `schemas` ([\"{SEARCH_REQUEST_SCHEMA}\"]) and other members are not read."),
        // `null` counts as absent, as for any SCIM attribute (RFC 7643 §2.5).
        "properties": {
            "filter": {"type": "string", "nullable": true, "description": "RFC 7644 §3.4.2.2 filter."},
            "sortBy": {"type": "string", "nullable": true},
            "sortOrder": {"type": "string", "nullable": true,
                          "enum": ["ascending", "descending", null]},
            "startIndex": nullable(whole_number()),
            "count": nullable(whole_number()),
            "cursor": {"type": "string", "nullable": true,
                       "description": "RFC 9865: empty for the first page, else a nextCursor."},
            "attributes": nullable(paths.clone()),
            "excludedAttributes": nullable(paths),
        },
        "example": {
            "schemas": [SEARCH_REQUEST_SCHEMA],
            "filter": "userName sw \"b\"",
            "sortBy": "userName",
            "sortOrder": "ascending",
            "count": 10,
        },
    })
}

/// RFC 7644 §3.5.2: a PatchOp on `rt`. A path-less `add`/`replace` takes a partial resource (the
/// `{rt}Patch` schema); `remove` names an attribute a resource can do without.
pub fn patch_op(registry: &Registry, rt: ResourceType) -> Value {
    let s = registry.schemas(rt);
    let removable = |a: &scim::schema::Attribute| {
        !a.required && a.mutability == Mutability::ReadWrite
            || a.mutability == Mutability::WriteOnly
    };
    let mut paths: Vec<String> = vec!["externalId".into()];
    paths.extend(
        s.core
            .attributes
            .iter()
            .filter(|a| removable(a))
            .map(|a| a.name.clone()),
    );
    for e in &s.extensions {
        paths.extend(
            e.schema
                .attributes
                .iter()
                .filter(|a| removable(a))
                .map(|a| format!("{}:{}", e.schema.id, a.name)),
        );
    }
    let example = match rt {
        ResourceType::User => json!({
            "schemas": [PATCH_OP_SCHEMA],
            "Operations": [
                {"op": "replace", "value": {"displayName": "Babs Jensen", "active": true}},
                {"op": "add", "path": "emails", "value": [{"value": "babs@example.com", "type": "home"}]},
            ],
        }),
        ResourceType::Group => json!({
            "schemas": [PATCH_OP_SCHEMA],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": "2819c223-7f76-453a-919d-413861904646"}]},
            ],
        }),
    };
    json!({
        "type": "object",
        "description": format!(
            "A PatchOp (RFC 7644 §3.5.2): 1 to {MAX_PATCH} operations, applied all or none. Any \
             attribute path works (`emails[type eq \"work\"].value`, `members[value eq \"<id>\"]`); \
             this schema lists the simplest forms."),
        "required": ["schemas", "Operations"],
        "properties": {
            // Must name PATCH_OP_SCHEMA; other URNs beside it are tolerated (OpenAPI 3.0 has no
            // `contains` to say "includes").
            "schemas": {"type": "array", "minItems": 1, "items": {"type": "string"},
                        "description": format!("Must include \"{PATCH_OP_SCHEMA}\".")},
            "Operations": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_PATCH,
                "items": {"anyOf": [
                    {
                        "type": "object",
                        "required": ["op", "value"],
                        "properties": {
                            "op": {"type": "string", "enum": ["add", "replace"]},
                            "value": reference(&format!("{}Patch", rt.name())),
                        },
                        "additionalProperties": false,
                    },
                    {
                        "type": "object",
                        "required": ["op", "path"],
                        "properties": {
                            "op": {"type": "string", "enum": ["remove"]},
                            "path": {"type": "string", "enum": paths},
                        },
                        "additionalProperties": false,
                    },
                ]},
            },
        },
        "example": example,
    })
}

/// RFC 7644 §3.7: the body of `POST /Bulk`.
pub fn bulk_request() -> Value {
    json!({
        "type": "object",
        "required": ["schemas", "Operations"],
        "properties": {
            "schemas": {"type": "array", "minItems": 1,
                        "items": {"type": "string", "enum": [BULK_REQUEST_SCHEMA]}},
            "failOnErrors": {"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX},
            "Operations": {
                "type": "array",
                "maxItems": MAX_BULK,
                "items": {
                    "type": "object",
                    "required": ["method", "path"],
                    "properties": {
                        "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
                        "path": {"type": "string", "description": "/Users, /Groups, /Users/{id} or /Groups/{id} (`bulkId:<name>` for an id)."},
                        "bulkId": {"type": "string"},
                        "version": {"type": "string", "description": "As If-Match."},
                        "data": {"type": "object", "description": "The resource (POST, PUT) or PatchOp (PATCH)."},
                    },
                },
            },
        },
        "example": {
            "schemas": [BULK_REQUEST_SCHEMA],
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "alice",
                 "data": {"userName": "alice"}},
                {"method": "POST", "path": "/Groups", "bulkId": "team",
                 "data": {"displayName": "Team", "members": [{"value": "bulkId:alice"}]}},
            ],
        },
    })
}

/// RFC 7644 §3.7: the answer of `POST /Bulk`.
pub fn bulk_response() -> Value {
    json!({
        "type": "object",
        "required": ["schemas", "Operations"],
        "properties": {
            "schemas": {"type": "array", "items": {"type": "string", "enum": [BULK_RESPONSE_SCHEMA]}},
            "Operations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["method", "status"],
                    "properties": {
                        "method": {"type": "string"},
                        "bulkId": {"type": "string"},
                        "version": {"type": "string"},
                        "location": {"type": "string"},
                        "status": {"type": "string"},
                        "response": reference("Error"),
                    },
                },
            },
        },
    })
}
