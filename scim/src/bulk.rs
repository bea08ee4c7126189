//! Bulk requests (RFC 7644 §3.7): parsing a BulkRequest, resolving `bulkId` references and
//! ordering the operations so that each runs after the ones it refers to. Pure code: running the
//! operations is the service's job.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::get_ci;
use super::{ResourceType, ScimError};

/// URN of the BulkRequest message.
pub const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// URN of the BulkResponse message.
pub const BULK_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// The most operations one request may carry (advertised in ServiceProviderConfig).
pub const MAX_OPERATIONS: usize = 1000;

/// The prefix of a reference to another operation's new resource.
const BULK_ID_PREFIX: &str = "bulkId:";

/// An operation's HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Create a resource (needs a `bulkId`).
    Post,
    /// Replace a resource.
    Put,
    /// Modify a resource with a PatchOp.
    Patch,
    /// Delete a resource.
    Delete,
}

impl Method {
    fn parse(s: &str) -> Option<Method> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "PATCH" => Some(Method::Patch),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    /// The method as the BulkResponse spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// The resource a Bulk operation addresses (its `path`, parsed): `/Users`, `/Groups/{id}`…
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationTarget {
    /// The resource type the path names.
    pub rt: ResourceType,
    /// The resource id (a `bulkId:` reference until [`Plan`] resolves it); `None` for POST.
    pub id: Option<String>,
}

/// One operation of a BulkRequest, as the client sent it.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `method` as sent, echoed in the response even when it is not one this server knows.
    pub method_text: String,
    /// `bulkId`, echoed in the response.
    pub bulk_id: Option<String>,
    /// `version`: acts as `If-Match`.
    pub version: Option<String>,
    /// The parsed method and target, or why the operation cannot run.
    pub parsed: Result<(Method, OperationTarget), ScimError>,
    /// `data`: the resource (POST, PUT) or PatchOp (PATCH).
    pub data: Option<Value>,
}

/// A parsed BulkRequest.
#[derive(Debug)]
pub struct BulkRequest {
    /// Stop after this many errors (RFC 7644 §3.7.3); `None` means never.
    pub fail_on_errors: Option<usize>,
    /// The operations, in request order.
    pub operations: Vec<Operation>,
}

/// What one operation produced, as a bulk-response operation reports it.
#[derive(Debug, Clone, Copy)]
pub enum OperationResult<'a> {
    /// It succeeded with this HTTP status; `version` is the resource's version after it, if any.
    Done {
        /// 200, 201 or 204.
        status: u16,
        /// The resource's version after the operation.
        version: Option<u64>,
    },
    /// It failed.
    Failed(&'a ScimError),
}

/// One operation of a BulkResponse (RFC 7644 §3.7.3): `method`, `bulkId` when given, `status` (a
/// string, as in the RFC's examples), `location` (except for a failed POST, which made nothing),
/// `version` (the ETag) and, for a failure, `response` with the SCIM error. It is also the payload
/// of RFC 9967's `misc:asyncresp` event (§2.5.1.3).
pub fn response_operation(
    method: &str,
    bulk_id: Option<&str>,
    location: Option<&str>,
    result: OperationResult<'_>,
) -> Value {
    let mut entry = Map::new();
    entry.insert("method".into(), Value::String(method.to_owned()));
    if let Some(b) = bulk_id {
        entry.insert("bulkId".into(), Value::String(b.to_owned()));
    }
    match result {
        OperationResult::Done { status, version } => {
            entry.insert("status".into(), Value::String(status.to_string()));
            if let Some(l) = location {
                entry.insert("location".into(), Value::String(l.to_owned()));
            }
            if let Some(v) = version {
                entry.insert("version".into(), Value::String(crate::etag::format(v)));
            }
        }
        OperationResult::Failed(e) => {
            entry.insert("status".into(), Value::String(e.status.to_string()));
            if let (false, Some(l)) = (method.eq_ignore_ascii_case("POST"), location) {
                entry.insert("location".into(), Value::String(l.to_owned()));
            }
            entry.insert("response".into(), e.to_body());
        }
    }
    Value::Object(entry)
}

/// Parses a BulkRequest body. The whole request is refused only when it is not a BulkRequest at all
/// (400 `invalidSyntax`) or has more than [`MAX_OPERATIONS`] operations (413); a malformed operation
/// fails on its own.
pub fn parse(body: Value) -> Result<BulkRequest, ScimError> {
    let Value::Object(mut body) = body else {
        return Err(ScimError::invalid_syntax(
            "a BulkRequest must be a JSON object",
        ));
    };
    let is_bulk = get_ci(&body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST_SCHEMA))
            })
        });
    if !is_bulk {
        return Err(ScimError::invalid_syntax(format!(
            "a BulkRequest must list {BULK_REQUEST_SCHEMA} in schemas"
        )));
    }
    let fail_on_errors = match get_ci(&body, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                return Err(ScimError::invalid_value(
                    "failOnErrors must be an integer of at least 1",
                ));
            }
        },
    };
    let key = body
        .keys()
        .find(|k| k.eq_ignore_ascii_case("Operations"))
        .cloned();
    let operations = match key.and_then(|k| body.remove(&k)) {
        Some(Value::Array(ops)) => ops,
        _ => {
            return Err(ScimError::invalid_syntax(
                "a BulkRequest needs an Operations array",
            ));
        }
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::new(
            413,
            format!(
                "the request has {} operations; at most {MAX_OPERATIONS} are allowed (maxOperations)",
                operations.len()
            ),
        ));
    }
    Ok(BulkRequest {
        fail_on_errors,
        operations: operations.into_iter().map(operation).collect(),
    })
}

fn operation(op: Value) -> Operation {
    let Value::Object(mut op) = op else {
        return Operation {
            method_text: String::new(),
            bulk_id: None,
            version: None,
            parsed: Err(ScimError::invalid_syntax(
                "each operation must be a JSON object",
            )),
            data: None,
        };
    };
    let text = |op: &Map<String, Value>, key: &str| {
        get_ci(op, key).and_then(Value::as_str).map(str::to_owned)
    };
    let method_text = text(&op, "method").unwrap_or_default();
    let bulk_id = text(&op, "bulkId");
    let version = text(&op, "version");
    let data_key = op.keys().find(|k| k.eq_ignore_ascii_case("data")).cloned();
    let data = data_key.and_then(|k| op.remove(&k));
    let parsed = method_and_target(&method_text, text(&op, "path").as_deref(), &bulk_id);
    Operation {
        method_text,
        bulk_id,
        version,
        parsed,
        data,
    }
}

fn method_and_target(
    method: &str,
    path: Option<&str>,
    bulk_id: &Option<String>,
) -> Result<(Method, OperationTarget), ScimError> {
    let method = Method::parse(method).ok_or_else(|| {
        ScimError::invalid_value(format!(
            "method {method:?} is not one of POST, PUT, PATCH, DELETE"
        ))
    })?;
    let path = path.ok_or_else(|| ScimError::invalid_value("the operation has no path"))?;
    let mut segments = path.trim_start_matches('/').split('/');
    let endpoint = segments.next().unwrap_or_default();
    let rt = ResourceType::ALL
        .into_iter()
        .find(|rt| rt.endpoint().eq_ignore_ascii_case(endpoint))
        .ok_or_else(|| {
            ScimError::invalid_value(format!(
                "path {path:?} names no resource type (/Users or /Groups)"
            ))
        })?;
    let id = segments.next().filter(|s| !s.is_empty()).map(str::to_owned);
    if segments.next().is_some() {
        return Err(ScimError::invalid_value(format!(
            "path {path:?} is not /{0} or /{0}/{{id}}",
            rt.endpoint()
        )));
    }
    match (method, &id) {
        (Method::Post, None) => {
            if bulk_id.as_deref().is_none_or(str::is_empty) {
                return Err(ScimError::invalid_value("a POST operation needs a bulkId"));
            }
        }
        (Method::Post, Some(_)) => {
            return Err(ScimError::invalid_value(format!(
                "a POST goes to /{}, without an id",
                rt.endpoint()
            )));
        }
        (_, None) => {
            return Err(ScimError::invalid_value(format!(
                "a {} needs a path with the resource id, /{}/{{id}}",
                method.as_str(),
                rt.endpoint()
            )));
        }
        (_, Some(_)) => {}
    }
    Ok((method, OperationTarget { rt, id }))
}

/// The order to run a request's operations in and the ids their `bulkId` references stand for.
#[derive(Debug)]
pub struct Plan {
    /// Operation indices, each after every operation it refers to; in request order otherwise.
    pub order: Vec<usize>,
    /// For each operation, the operations it refers to.
    pub refers_to: Vec<Vec<usize>>,
    /// For each operation, why it cannot run, if the references make that clear before running.
    pub refused: Vec<Option<ScimError>>,
}

/// Orders the operations and checks their `bulkId` references. `new_ids[i]` is the id the POST at
/// `i` will create its resource with. An operation that refers to an unknown bulkId gets 400
/// `invalidValue`; one that is part of a reference cycle (or waits on one) gets 409.
pub fn plan(ops: &[Operation], new_ids: &[Option<String>]) -> Plan {
    let n = ops.len();
    let mut refused: Vec<Option<ScimError>> = ops
        .iter()
        .map(|op| op.parsed.as_ref().err().cloned())
        .collect();
    let mut defined: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let is_post = matches!(op.parsed, Ok((Method::Post, _)));
        if let (true, Some(b)) = (is_post, op.bulk_id.as_deref()) {
            if defined.contains_key(b) {
                refused[i].get_or_insert_with(|| {
                    ScimError::invalid_value(format!("bulkId {b:?} is used by an earlier POST"))
                });
            } else if new_ids[i].is_some() {
                defined.insert(b, i);
            }
        }
    }
    let mut refers_to = vec![Vec::new(); n];
    for (i, op) in ops.iter().enumerate() {
        let mut names = BTreeSet::new();
        if let Ok((_, OperationTarget { id: Some(id), .. })) = &op.parsed {
            collect_string_refs(id, &mut names);
        }
        if let Some(data) = &op.data {
            collect_refs(data, &mut names);
        }
        for name in names {
            match defined.get(name.as_str()) {
                Some(&j) => refers_to[i].push(j),
                None => {
                    refused[i].get_or_insert_with(|| {
                        ScimError::invalid_value(format!(
                            "bulkId {name:?} is not the bulkId of a POST in this request"
                        ))
                    });
                }
            }
        }
    }
    // Kahn's algorithm, always taking the lowest ready index, so independent operations keep the
    // order the client gave.
    let mut waiting: Vec<usize> = refers_to.iter().map(Vec::len).collect();
    let mut needed_by = vec![Vec::new(); n];
    for (i, deps) in refers_to.iter().enumerate() {
        for &j in deps {
            needed_by[j].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in &needed_by[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.insert(k);
            }
        }
    }
    for i in 0..n {
        if waiting[i] > 0 {
            refused[i] = Some(ScimError::new(
                409,
                "the operation's bulkId references form a cycle (or wait on one), so it cannot run",
            ));
            order.push(i);
        }
    }
    Plan {
        order,
        refers_to,
        refused,
    }
}

/// Every bulkId referenced anywhere in `value`.
fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => collect_string_refs(s, out),
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn collect_string_refs(s: &str, out: &mut BTreeSet<String>) {
    if let Some(name) = s.strip_prefix(BULK_ID_PREFIX) {
        out.insert(name.to_owned());
    }
}

/// Replaces every `bulkId:` reference in `value` with the id it stands for.
pub fn resolve(value: &mut Value, ids: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = resolve_str(s, ids) {
                *s = id;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve(v, ids)),
        Value::Object(fields) => fields.values_mut().for_each(|v| resolve(v, ids)),
        _ => {}
    }
}

/// The id a `bulkId:` reference stands for, if `s` is one.
pub fn resolve_str(s: &str, ids: &HashMap<String, String>) -> Option<String> {
    s.strip_prefix(BULK_ID_PREFIX)
        .and_then(|name| ids.get(name))
        .cloned()
}

#[cfg(test)]
mod tests;
