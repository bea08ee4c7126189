//! `/api/v2/usergroups` and their members (v2): `REFERENCE.md` §3.

use poem::http::Method;
use serde_json::{Value, json};

use super::State;
use super::wire::{Call, Reply, error, filter_term, invalid, matches};

pub fn route(s: &mut State, call: &Call) -> Option<Reply> {
    let m = call.method;
    Some(match call.segments.as_slice() {
        ["api", "v2", "usergroups"] if m == Method::GET => list(s, call),
        ["api", "v2", "usergroups"] if m == Method::POST => create(s, call),
        ["api", "v2", "usergroups", id] if m == Method::GET => match s.groups.get(*id) {
            Some(g) => Reply::json(200, g.clone()),
            None => error(404, "group not found"),
        },
        ["api", "v2", "usergroups", id] if m == Method::PUT => replace(s, id, call),
        ["api", "v2", "usergroups", id] if m == Method::DELETE => {
            if s.groups.remove(*id).is_none() {
                return Some(error(404, "group not found"));
            }
            s.members.remove(*id);
            Reply::empty(204)
        }
        ["api", "v2", "usergroups", id, "members"] if m == Method::GET => members(s, id, call),
        ["api", "v2", "usergroups", id, "members"] if m == Method::POST => member_op(s, id, call),
        ["api", "v2", "usergroups", ..] => error(405, "Method Not Allowed"),
        _ => return None,
    })
}

fn list(s: &State, call: &Call) -> Reply {
    let (limit, skip) = match call.paging() {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let mut terms = Vec::new();
    for term in call.params("filter") {
        match filter_term(term) {
            Some(t) if matches!(t.1, "eq" | "ne") => terms.push(t),
            _ => return invalid("filter", "expected field:op:value with eq or ne"),
        }
    }
    let found: Vec<&Value> = s
        .groups
        .values()
        .filter(|g| {
            terms
                .iter()
                .all(|(f, op, v)| matches(g, f, op, v).unwrap_or(false))
        })
        .collect();
    let page = found
        .iter()
        .skip(skip)
        .take(limit)
        .map(|g| (*g).clone())
        .collect();
    Reply::page(page, found.len())
}

/// The `name` of a POST or PUT body, or the 400 / 409.
fn checked_name(s: &State, own_id: Option<&str>, call: &Call) -> Result<String, Reply> {
    let body = call.object()?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid("name", "is required"))?;
    for field in ["description", "email"] {
        if body.get(field).is_some_and(|v| !v.is_string()) {
            return Err(invalid(field, "must be a string"));
        }
    }
    let taken = s.groups.iter().any(|(id, g)| {
        Some(id.as_str()) != own_id
            && g["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    });
    if taken {
        return Err(error(
            409,
            &format!("a group named {name:?} already exists"),
        ));
    }
    Ok(name.to_owned())
}

/// The group a POST or PUT body makes (PUT is a full replace: omitted fields become empty).
fn group_of(id: &str, name: String, call: &Call) -> Value {
    let body = call.object().cloned().unwrap_or_default();
    json!({
        "id": id,
        "name": name,
        "type": "user_group",
        "description": body.get("description").cloned().unwrap_or(json!("")),
        "email": body.get("email").cloned().unwrap_or(json!("")),
        "attributes": body.get("attributes").cloned().unwrap_or(json!({})),
        "membershipMethod": "STATIC",
    })
}

fn create(s: &mut State, call: &Call) -> Reply {
    let name = match checked_name(s, None, call) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let id = s.new_id();
    let group = group_of(&id, name, call);
    s.groups.insert(id.clone(), group.clone());
    s.members.insert(id, Default::default());
    Reply::json(201, group)
}

fn replace(s: &mut State, id: &str, call: &Call) -> Reply {
    if !s.groups.contains_key(id) {
        return error(404, "group not found");
    }
    let name = match checked_name(s, Some(id), call) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let group = group_of(id, name, call);
    s.groups.insert(id.to_owned(), group.clone());
    Reply::json(200, group)
}

fn members(s: &State, id: &str, call: &Call) -> Reply {
    let (limit, skip) = match call.paging() {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let Some(members) = s.members.get(id) else {
        return error(404, "group not found");
    };
    let page = members
        .iter()
        .skip(skip)
        .take(limit)
        .map(|user| json!({"to": {"id": user, "type": "user"}}))
        .collect();
    Reply::page(page, members.len())
}

fn member_op(s: &mut State, id: &str, call: &Call) -> Reply {
    let body = match call.object() {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let op = body.get("op").and_then(Value::as_str).unwrap_or("");
    if !matches!(op, "add" | "remove" | "update") {
        return invalid("op", "must be add, remove or update");
    }
    if body.get("type").and_then(Value::as_str) != Some("user") {
        return invalid("type", "must be user");
    }
    let Some(user) = body.get("id").and_then(Value::as_str).map(str::to_owned) else {
        return invalid("id", "is required");
    };
    if !s.groups.contains_key(id) {
        return error(404, "group not found");
    }
    if !s.users.contains_key(&user) {
        return error(404, "user not found");
    }
    let members = s.members.entry(id.to_owned()).or_default();
    match op {
        "add" if !members.insert(user.clone()) => error(409, "Already Exists"),
        "remove" if !members.remove(&user) => error(404, "Not Found"),
        "update" if !members.contains(&user) => error(404, "Not Found"),
        _ => Reply::empty(204),
    }
}
