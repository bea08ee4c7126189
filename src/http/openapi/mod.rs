//! The typed OpenAPI document: poem-openapi writes the routes, their parameters, descriptions, tags
//! and security; this module gives every body and answer its SCIM schema, generated from the loaded
//! schemas (so SCHEMA_PATH extensions are in it), so that a client generator or a fuzzer driven by
//! the document sends real Users, Groups and PatchOps.
//!
//! Per operation: an `operationId`, the request body's schema (`application/scim+json` and
//! `application/json`), every status the route can answer with its body and headers (`ETag`,
//! `Location`, `WWW-Authenticate`), `links` from a created resource to reading, replacing,
//! patching and deleting it, and the enums SCIM defines (`sortOrder`).

mod events;
mod messages;
mod resources;

use serde_json::{Map, Value, json};

use messages::reference;
use resources::Direction;
use scim::ResourceType;
use scim::schema::Registry;

/// The document poem-openapi wrote (`spec`, JSON), typed for `registry`'s schemas. Parts it cannot
/// place are left as poem wrote them.
pub fn typed(spec: &str, registry: &Registry) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    let schemas = component_schemas(registry);
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        let all = components
            .entry("schemas")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(all) = all.as_object_mut() {
            all.extend(schemas);
        }
    } else {
        doc["components"] = json!({"schemas": schemas});
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if let Some(route) = route(path, method) {
                    route.apply(op);
                }
            }
        }
    }
    doc.to_string()
}

/// The explorer page: poem-openapi's Swagger UI (`poem_html`, which inlines poem's document) with
/// the typed document inlined instead, a title and the favicon. `</` is escaped so that no text of
/// a schema (SCHEMA_PATH descriptions) can close the script element.
pub fn explorer_html(poem_html: &str, typed: &str) -> String {
    const START: &str = "let spec = ";
    const END: &str = ";\n    let oauth2RedirectUrl";
    // The document follows the inlined script bundle: the last START before the first END.
    let end = poem_html.find(END);
    let start = end.and_then(|end| poem_html[..end].rfind(START));
    let (Some(start), Some(end)) = (start, end) else {
        tracing::warn!("the explorer page has an unexpected shape: it shows poem's document");
        return poem_html.to_owned();
    };
    let inlined = typed.replace("</", "<\\/");
    format!(
        "{}{START}{inlined}{}",
        &poem_html[..start],
        &poem_html[end..]
    )
    .replacen(
        "<title>Swagger UI</title>",
        "<title>scimd API</title>\n    <link rel=\"icon\" href=\"favicon.ico\">",
        1,
    )
}

/// Every schema the operations refer to.
fn component_schemas(registry: &Registry) -> Map<String, Value> {
    let mut out = Map::new();
    for rt in ResourceType::ALL {
        let name = rt.name();
        out.insert(
            name.to_owned(),
            resources::resource(registry, rt, Direction::Read),
        );
        let mut write = resources::resource(registry, rt, Direction::Write);
        write["example"] = example(rt);
        let mut partial = write.clone();
        if let Some(o) = partial.as_object_mut() {
            o.remove("required");
            o.remove("example");
        }
        // A path-less value sets what it names: a value, not `null` (remove takes a path).
        if let Some(props) = partial["properties"].as_object_mut() {
            for schema in props.values_mut() {
                if let Some(o) = schema.as_object_mut() {
                    o.remove("nullable");
                }
                // An extension's attributes, too.
                if let Some(inner) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                    for attr in inner.values_mut() {
                        if let Some(o) = attr.as_object_mut() {
                            o.remove("nullable");
                        }
                    }
                }
            }
        }
        out.insert(format!("{name}Write"), write);
        out.insert(format!("{name}Patch"), partial);
        out.insert(format!("{name}PatchOp"), messages::patch_op(registry, rt));
        out.insert(
            format!("{name}ListResponse"),
            messages::list_response(reference(name)),
        );
    }
    out.insert(
        "ListResponse".into(),
        messages::list_response(json!({"anyOf": [reference("User"), reference("Group")]})),
    );
    out.insert(
        "DiscoveryListResponse".into(),
        messages::list_response(json!({"type": "object"})),
    );
    out.insert("SearchRequest".into(), messages::search_request());
    out.insert("BulkRequest".into(), messages::bulk_request());
    out.insert("BulkResponse".into(), messages::bulk_response());
    out.insert("Error".into(), messages::error());
    out.insert("Feed".into(), events::feed());
    out.insert(
        "FeedListResponse".into(),
        messages::list_response(reference("Feed")),
    );
    out.insert("PollRequest".into(), events::poll_request());
    out.insert("PollResponse".into(), events::poll_response());
    out
}

/// The explorer's example body of a create.
fn example(rt: ResourceType) -> Value {
    match rt {
        ResourceType::User => json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bjensen",
            "externalId": "701984",
            "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Barbara Jensen"},
            "displayName": "Babs Jensen",
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "active": true
        }),
        ResourceType::Group => json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Tour Guides",
            "members": [{"value": "2819c223-7f76-453a-919d-413861904646", "type": "User"}]
        }),
    }
}

/// What the document says of one operation.
struct Route {
    id: String,
    body: Option<Value>,
    responses: Vec<(&'static str, Value)>,
}

impl Route {
    /// Writes the operation's id, body and answers into poem's operation object.
    fn apply(self, op: &mut Value) {
        op["operationId"] = json!(self.id);
        if let Some(schema) = self.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {
                    "application/scim+json": {"schema": schema},
                    "application/json": {"schema": schema},
                },
            });
        }
        op["responses"] = Value::Object(
            self.responses
                .into_iter()
                .map(|(status, answer)| (status.to_owned(), answer))
                .collect(),
        );
        if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
            for p in params {
                describe_parameter(p);
            }
        }
    }
}

/// Enums and descriptions poem-openapi cannot infer from a `String` parameter.
fn describe_parameter(p: &mut Value) {
    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
    match name {
        "sortOrder" => p["schema"] = messages::sort_order(),
        "If-Match" => {
            p["description"] = json!(
                "Apply only if the resource is at this version (its ETag, `W/\"n\"`); else 412."
            );
        }
        "If-None-Match" => {
            p["description"] =
                json!("Answer 304 without a body if the resource is at this version (its ETag).");
        }
        _ => {}
    }
}

/// A SCIM body answer.
fn body(description: &str, schema: Value, headers: &[&str]) -> Value {
    let mut answer = json!({
        "description": description,
        "content": {"application/scim+json": {"schema": schema}},
    });
    with_headers(&mut answer, headers);
    answer
}

/// An answer without a body.
fn empty(description: &str, headers: &[&str]) -> Value {
    let mut answer = json!({"description": description});
    with_headers(&mut answer, headers);
    answer
}

fn with_headers(answer: &mut Value, headers: &[&str]) {
    if headers.is_empty() {
        return;
    }
    let mut all = Map::new();
    for h in headers {
        let header = match *h {
            "ETag" => json!({"description": "The resource's version (RFC 7644 §3.14).",
                              "required": true,
                              "schema": {"type": "string", "pattern": "^W/\"[0-9]+\"$"}}),
            "Location" => json!({"description": "The new resource's URL.", "required": true,
                                  "schema": {"type": "string"}}),
            "WWW-Authenticate" => json!({"description": "The scheme to use (RFC 6750 §3).",
                                          "required": true,
                                          "schema": {"type": "string", "enum": ["Bearer"]}}),
            _ => continue,
        };
        all.insert((*h).to_owned(), header);
    }
    answer["headers"] = Value::Object(all);
}

/// A SCIM error answer.
fn failure(description: &str) -> Value {
    body(description, reference("Error"), &[])
}

/// The errors every authenticated route can answer.
fn unauthorised() -> (&'static str, Value) {
    let mut answer = failure("No API key, or one that is not valid.");
    with_headers(&mut answer, &["WWW-Authenticate"]);
    ("401", answer)
}

/// The errors of a route that reads a body.
fn body_errors() -> Vec<(&'static str, Value)> {
    vec![
        ("413", failure("The body is larger than 1 MiB.")),
        ("415", failure("The body is not JSON.")),
    ]
}

/// The store could not answer or confirm: retry.
fn unavailable() -> (&'static str, Value) {
    (
        "503",
        failure("The store could not be read, or could not confirm a write: retry."),
    )
}

/// What the document says of `method` on `path` (relative to BASE_PATH); `None` leaves poem's.
fn route(path: &str, method: &str) -> Option<Route> {
    let typed = |rt: ResourceType| (rt, rt.name());
    let resource_type = match path.split('/').nth(1) {
        Some("Users") => Some(typed(ResourceType::User)),
        Some("Groups") => Some(typed(ResourceType::Group)),
        _ => None,
    };
    let bad = |what: &str| ("400", failure(what));
    let mut responses: Vec<(&'static str, Value)> = Vec::new();
    let mut body_schema = None;
    let id: String;
    match (resource_type, path.matches('/').count(), method) {
        (Some((_, name)), 1, "post") => {
            id = format!("create{name}");
            body_schema = Some(reference(&format!("{name}Write")));
            responses.push((
                "201",
                body(
                    &format!("The new {name}."),
                    reference(name),
                    &["ETag", "Location"],
                ),
            ));
            responses.push(bad("Not a valid resource (invalidValue, invalidSyntax)."));
            responses.push(("409", failure("A unique value is taken (uniqueness).")));
            responses.extend(body_errors());
        }
        (Some((_, name)), 1, "get") => {
            id = format!("list{name}s");
            responses.push((
                "200",
                body(
                    "A page of resources.",
                    reference(&format!("{name}ListResponse")),
                    &[],
                ),
            ));
            responses.push(bad("A malformed filter, sortOrder, count or cursor."));
        }
        (Some((_, name)), 2, "post") if path.ends_with("/.search") => {
            id = format!("search{name}s");
            body_schema = Some(reference("SearchRequest"));
            responses.push((
                "200",
                body(
                    "A page of resources.",
                    reference(&format!("{name}ListResponse")),
                    &[],
                ),
            ));
            responses.push(bad("A malformed SearchRequest or filter."));
            responses.extend(body_errors());
        }
        (Some((_, name)), 2, "get") => {
            id = format!("get{name}");
            responses.push((
                "200",
                body(&format!("The {name}."), reference(name), &["ETag"]),
            ));
            responses.push((
                "304",
                empty("If-None-Match names the current version.", &["ETag"]),
            ));
            responses.push(("404", failure(&format!("No such {name}."))));
        }
        (Some((_, name)), 2, "put") => {
            id = format!("replace{name}");
            body_schema = Some(reference(&format!("{name}Write")));
            responses.push((
                "200",
                body(
                    &format!("The {name} as replaced."),
                    reference(name),
                    &["ETag"],
                ),
            ));
            responses.push(bad(
                "Not a valid resource, or an immutable attribute changed.",
            ));
            responses.push(("404", failure(&format!("No such {name}."))));
            responses.push(("409", failure("A unique value is taken (uniqueness).")));
            responses.push(("412", failure("If-Match names another version.")));
            responses.extend(body_errors());
        }
        (Some((rt, name)), 2, "patch") => {
            id = format!("patch{name}");
            body_schema = Some(reference(&format!("{name}PatchOp")));
            responses.push((
                "200",
                body(
                    &format!("The {name} as modified."),
                    reference(name),
                    &["ETag"],
                ),
            ));
            if rt == ResourceType::Group {
                responses.push((
                    "204",
                    empty("Modified; no representation asked for.", &["ETag"]),
                ));
            }
            responses.push(bad("Not a valid PatchOp (invalidSyntax, invalidPath, noTarget, invalidValue, mutability)."));
            responses.push(("404", failure(&format!("No such {name}."))));
            responses.push(("409", failure("A unique value is taken (uniqueness).")));
            responses.push(("412", failure("If-Match names another version.")));
            responses.extend(body_errors());
        }
        (Some((_, name)), 2, "delete") => {
            id = format!("delete{name}");
            responses.push(("204", empty("Deleted.", &[])));
            responses.push(("404", failure(&format!("No such {name}."))));
            responses.push(("412", failure("If-Match names another version.")));
        }
        (None, 1, "post") if path == "/.search" => {
            id = "search".into();
            body_schema = Some(reference("SearchRequest"));
            responses.push((
                "200",
                body(
                    "A page of Users and Groups.",
                    reference("ListResponse"),
                    &[],
                ),
            ));
            responses.push(bad("A malformed SearchRequest or filter."));
            responses.extend(body_errors());
        }
        (None, 1, "post") if path == "/Bulk" => {
            id = "bulk".into();
            body_schema = Some(reference("BulkRequest"));
            responses.push((
                "200",
                body(
                    "Each operation's answer, in request order.",
                    reference("BulkResponse"),
                    &[],
                ),
            ));
            responses.push(bad("Not a BulkRequest (invalidSyntax, invalidValue)."));
            responses.push((
                "413",
                failure("More than 1,000 operations, or a body over 1 MiB."),
            ));
            responses.push(("415", failure("The body is not JSON.")));
        }
        (None, 1, m) if path == "/Me" => {
            id = format!("{m}Me");
            responses.push((
                "501",
                failure("RFC 7644 §3.11: an API key authenticates a client, not a User."),
            ));
            responses.push(unauthorised());
            return Some(Route {
                id,
                body: None,
                responses,
            });
        }
        (None, 1, "get") if path == "/Schemas" || path == "/ResourceTypes" => {
            id = format!("list{}", &path[1..]);
            responses.push((
                "200",
                body(
                    "Every one, as a ListResponse.",
                    reference("DiscoveryListResponse"),
                    &[],
                ),
            ));
            return Some(Route {
                id,
                body: None,
                responses,
            });
        }
        (None, 2, "get")
            if path.starts_with("/Schemas/") || path.starts_with("/ResourceTypes/") =>
        {
            id = format!("get{}", path[1..].split('/').next().unwrap_or_default());
            responses.push(("200", body("It.", json!({"type": "object"}), &[])));
            responses.push(("404", failure("No such one.")));
            return Some(Route {
                id,
                body: None,
                responses,
            });
        }
        (None, 1, "get") if path == "/ServiceProviderConfig" => {
            id = "getServiceProviderConfig".into();
            responses.push((
                "200",
                body("What this server supports.", json!({"type": "object"}), &[]),
            ));
            return Some(Route {
                id,
                body: None,
                responses,
            });
        }
        (None, 1, "get") if path == "/status" => {
            id = "getStatus".into();
            responses.push((
                "200",
                body(
                    "Log position and subscribers.",
                    json!({"type": "object"}),
                    &[],
                ),
            ));
        }
        (None, 2, "get") if path == "/Events/Feeds" => {
            id = "listFeeds".into();
            responses.push((
                "200",
                body("The feeds.", reference("FeedListResponse"), &[]),
            ));
            responses.push(bad("startIndex or count is not an integer."));
            responses.push(("404", failure("Security events are off.")));
        }
        (None, 3, "get") if path.starts_with("/Events/Feeds/") => {
            id = "getFeed".into();
            responses.push(("200", body("The feed.", reference("Feed"), &[])));
            responses.push(("404", failure("No such feed, or security events are off.")));
        }
        (None, 4, "post") if path.starts_with("/Events/Feeds/") => {
            id = "pollFeed".into();
            body_schema = Some(reference("PollRequest"));
            responses.push((
                "200",
                json!({
                    "description": "The SETs not acknowledged yet (RFC 8936 §2.3); `sets` is empty when a long poll found none.",
                    "content": {"application/json": {"schema": reference("PollResponse")}},
                }),
            ));
            responses.push(bad(
                "Not a valid poll request (RFC 8936 §2.5.1); nothing was acknowledged.",
            ));
            responses.push(("404", failure("No such feed, or security events are off.")));
            responses.extend(body_errors());
        }
        (None, 4, "post") if path.starts_with("/admin/projections/") => {
            id = if path.ends_with("/rebuild") {
                "rebuildProjection".into()
            } else {
                "retryProjection".into()
            };
            responses.push(("200", body("Started.", json!({"type": "object"}), &[])));
            responses.push((
                "400",
                failure("A parameter is not valid (`fresh` is true or false)."),
            ));
            responses.push(("404", failure("No such projection.")));
            responses.push(("409", failure("A rebuild is already running.")));
        }
        _ => return None,
    }
    responses.push(unauthorised());
    responses.push(unavailable());
    Some(Route {
        id,
        body: body_schema,
        responses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scim::schema::SchemaMode;

    #[test]
    fn every_body_and_answer_of_the_user_routes_is_typed() {
        let spec = json!({
            "openapi": "3.0.0",
            "paths": {
                "/Users": {"post": {"responses": {}}, "get": {"parameters": [
                    {"name": "sortOrder", "in": "query", "schema": {"type": "string"}}
                ], "responses": {}}},
                "/Users/{id}": {"patch": {"responses": {}}},
            },
            "components": {},
        });
        let r = Registry::built_in(SchemaMode::Strict).unwrap();
        let doc: Value = serde_json::from_str(&typed(&spec.to_string(), &r)).unwrap();
        let create = &doc["paths"]["/Users"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/scim+json"]["schema"]["$ref"],
            "#/components/schemas/UserWrite"
        );
        assert!(create["responses"]["201"]["headers"]["ETag"].is_object());
        assert_eq!(
            doc["paths"]["/Users"]["get"]["parameters"][0]["schema"]["enum"],
            json!(["ascending", "descending"])
        );
        assert!(doc["components"]["schemas"]["UserPatchOp"].is_object());
        assert!(doc["paths"]["/Users/{id}"]["patch"]["responses"]["412"].is_object());
    }
}
