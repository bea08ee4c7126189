//! Reading a PatchOp message (RFC 7644 §3.5.2), and what the caller needs of it before the engine
//! runs: the passwords to hash and the attributes a response must show.

use serde_json::{Map, Value};

use super::{MAX_OPERATIONS, OpKind, Operation, PATCH_OP_SCHEMA, invalid_path};
use crate::{ScimError, get_ci};

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

/// The clear-text passwords `ops` set, for the caller to hash before [`apply`](super::apply()) stores them: path
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
