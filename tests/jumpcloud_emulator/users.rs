//! `/api/systemusers` (v1): `REFERENCE.md` §2.

use poem::http::Method;
use serde_json::{Map, Value, json};

use super::State;
use super::wire::{Call, Reply, error, filter_term, invalid, matches};

/// String fields a user has (each at most 1,024 characters).
const STRINGS: &[&str] = &[
    "username",
    "email",
    "firstname",
    "middlename",
    "lastname",
    "displayname",
    "jobTitle",
    "department",
    "company",
    "costCenter",
    "employeeType",
    "location",
    "description",
    "alternateEmail",
    "managedAppleId",
];
/// Boolean fields a user has.
const BOOLEANS: &[&str] = &[
    "account_locked",
    "sudo",
    "passwordless_sudo",
    "password_never_expires",
    "enable_user_portal_multifactor",
    "ldap_binding_user",
    "samba_service_user",
    "allow_public_key",
    "enable_managed_uid",
    "disableDeviceMaxLoginAttempts",
];

pub fn route(s: &mut State, call: &Call) -> Option<Reply> {
    let m = call.method;
    Some(match call.segments.as_slice() {
        ["api", "systemusers"] if m == Method::GET => list(s, call),
        ["api", "systemusers"] if m == Method::POST => create(s, call),
        ["api", "systemusers", id] if m == Method::GET => match s.users.get(*id) {
            Some(u) => Reply::json(200, u.clone()),
            None => error(404, "user not found"),
        },
        ["api", "systemusers", id] if m == Method::PUT => update(s, id, call),
        ["api", "systemusers", id] if m == Method::DELETE => match s.users.remove(*id) {
            Some(u) => {
                for members in s.members.values_mut() {
                    members.remove(*id);
                }
                Reply::json(200, u)
            }
            None => error(404, "user not found"),
        },
        ["api", "systemusers", id, "sshkeys"] if m == Method::GET => match s.users.get(*id) {
            Some(u) => Reply::json(200, u["ssh_keys"].clone()),
            None => error(404, "user not found"),
        },
        ["api", "systemusers", id, "sshkeys"] if m == Method::POST => add_key(s, id, call),
        ["api", "systemusers", id, "sshkeys", key] if m == Method::DELETE => {
            let Some(user) = s.users.get_mut(*id) else {
                return Some(error(404, "user not found"));
            };
            let keys = user["ssh_keys"].as_array_mut().expect("ssh_keys");
            let before = keys.len();
            keys.retain(|k| k["_id"] != *key);
            if keys.len() == before {
                error(404, "key not found")
            } else {
                Reply::json(200, json!({}))
            }
        }
        ["api", "systemusers", ..] => error(405, "Method Not Allowed"),
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
            _ => return invalid("filter", "expected field:$op:value with $eq or $ne"),
        }
    }
    let found: Vec<&Value> = s
        .users
        .values()
        .filter(|u| {
            terms
                .iter()
                .all(|(f, op, v)| matches(u, f, op, v).unwrap_or(false))
        })
        .collect();
    let fields: Vec<&str> = call
        .param("fields")
        .map(|f| f.split([' ', ',']).filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let results: Vec<Value> = found
        .iter()
        .skip(skip)
        .take(limit)
        .map(|u| project(u, &fields))
        .collect();
    Reply::json(200, json!({"totalCount": found.len(), "results": results}))
}

/// `fields`: only those (and `_id`), or everything.
fn project(user: &Value, fields: &[&str]) -> Value {
    if fields.is_empty() {
        return user.clone();
    }
    let mut out = Map::new();
    for f in fields.iter().copied().chain(["_id"]) {
        if let Some(v) = user.get(f) {
            out.insert(f.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// Checks the writable fields of `body` (POST when `create`); the first violation is the 400.
fn validate(
    s: &State,
    own_id: Option<&str>,
    body: &Map<String, Value>,
    create: bool,
) -> Result<(), Reply> {
    if create {
        for field in ["username", "email"] {
            if body
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(invalid(field, "is required"));
            }
        }
    }
    for field in STRINGS {
        match body.get(*field) {
            None => {}
            Some(Value::String(v)) if v.chars().count() <= 1024 => {}
            Some(Value::String(_)) => return Err(invalid(field, "is longer than 1024 characters")),
            Some(_) => return Err(invalid(field, "must be a string")),
        }
    }
    for field in BOOLEANS.iter().chain(&["suspended", "activated"]) {
        if body.get(*field).is_some_and(|v| !v.is_boolean()) {
            return Err(invalid(field, "must be a boolean"));
        }
    }
    if let Some(username) = body.get("username").and_then(Value::as_str) {
        let ok = username.starts_with(|c: char| c.is_ascii_alphabetic())
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && username.chars().count() <= 30;
        if !ok {
            return Err(invalid(
                "username",
                "must start with a letter and hold only letters, digits, '.', '-' and '_', at most 30 characters",
            ));
        }
    }
    if let Some(email) = body.get("email").and_then(Value::as_str)
        && !email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
    {
        return Err(invalid("email", "is not a valid email address"));
    }
    let allowed: &[&str] = if create {
        &["STAGED", "ACTIVATED", "SUSPENDED"]
    } else {
        &["ACTIVATED", "SUSPENDED"]
    };
    if let Some(state) = body.get("state") {
        let ok = state.as_str().is_some_and(|st| allowed.contains(&st));
        if !ok {
            return Err(invalid(
                "state",
                &format!("must be one of {}", allowed.join(", ")),
            ));
        }
    }
    if let (Some(state), Some(suspended)) = (
        body.get("state").and_then(Value::as_str),
        body.get("suspended").and_then(Value::as_bool),
    ) && (state == "SUSPENDED") != suspended
    {
        return Err(invalid("suspended", "contradicts state"));
    }
    if let Some(attrs) = body.get("attributes") {
        let Some(attrs) = attrs.as_array() else {
            return Err(invalid("attributes", "must be an array of {name, value}"));
        };
        let mut names: Vec<String> = Vec::new();
        for a in attrs {
            let name = a.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty()
                || name.chars().count() >= 32
                || !name.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(invalid(
                    "attributes",
                    &format!("name {name:?} must be letters and digits, under 32 characters"),
                ));
            }
            if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(invalid(
                    "attributes",
                    &format!("name {name:?} is not unique"),
                ));
            }
            names.push(name.to_owned());
            match a.get("value") {
                Some(Value::String(v)) if v.chars().count() <= 1024 => {}
                _ => {
                    return Err(invalid(
                        "attributes",
                        &format!("value of {name:?} must be a string of at most 1024 characters"),
                    ));
                }
            }
        }
    }
    let taken = |field: &str, same: fn(&str, &str) -> bool| {
        body.get(field).and_then(Value::as_str).is_some_and(|v| {
            s.users.iter().any(|(id, u)| {
                Some(id.as_str()) != own_id && u[field].as_str().is_some_and(|held| same(held, v))
            })
        })
    };
    if taken("username", |a, b| a == b) || taken("email", |a, b| a.eq_ignore_ascii_case(b)) {
        return Err(error(400, "User already exists"));
    }
    Ok(())
}

fn create(s: &mut State, call: &Call) -> Reply {
    let body = match call.object() {
        Ok(b) => b.clone(),
        Err(reply) => return reply,
    };
    if let Err(reply) = validate(s, None, &body, true) {
        return reply;
    }
    let id = s.new_id();
    let mut user = json!({
        "_id": id, "id": id,
        "state": "ACTIVATED", "suspended": false,
        "activated": body.get("password").is_some(),
        "attributes": [], "phoneNumbers": [], "addresses": [], "ssh_keys": [],
        "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "organization": "5f0000000000000000000001",
    });
    for field in STRINGS {
        user[*field] = body.get(*field).cloned().unwrap_or(json!(""));
    }
    for field in BOOLEANS {
        user[*field] = body.get(*field).cloned().unwrap_or(json!(false));
    }
    apply_writable(&mut user, &body);
    s.users.insert(id, user.clone());
    Reply::json(200, user)
}

/// Sets the writable fields `body` holds; `state` and `suspended` are kept equal.
fn apply_writable(user: &mut Value, body: &Map<String, Value>) {
    for (k, v) in body {
        let writable = STRINGS.contains(&k.as_str())
            || BOOLEANS.contains(&k.as_str())
            || matches!(
                k.as_str(),
                "attributes" | "phoneNumbers" | "addresses" | "employeeIdentifier" | "manager"
            );
        if writable {
            user[k.as_str()] = v.clone();
        }
    }
    match (
        body.get("state").and_then(Value::as_str),
        body.get("suspended").and_then(Value::as_bool),
    ) {
        (Some(state), _) => {
            user["state"] = json!(state);
            user["suspended"] = json!(state == "SUSPENDED");
        }
        (None, Some(suspended)) => {
            user["suspended"] = json!(suspended);
            user["state"] = json!(if suspended { "SUSPENDED" } else { "ACTIVATED" });
        }
        (None, None) => {}
    }
}

fn update(s: &mut State, id: &str, call: &Call) -> Reply {
    let body = match call.object() {
        Ok(b) => b.clone(),
        Err(reply) => return reply,
    };
    if !s.users.contains_key(id) {
        return error(404, "user not found");
    }
    if let Err(reply) = validate(s, Some(id), &body, false) {
        return reply;
    }
    let user = s.users.get_mut(id).expect("checked above");
    apply_writable(user, &body);
    Reply::json(200, user.clone())
}

fn add_key(s: &mut State, id: &str, call: &Call) -> Reply {
    let body = match call.object() {
        Ok(b) => b.clone(),
        Err(reply) => return reply,
    };
    for field in ["name", "public_key"] {
        if body
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return invalid(field, "is required");
        }
    }
    if !s.users.contains_key(id) {
        return error(404, "user not found");
    }
    let key_id = s.new_id();
    let key = json!({
        "_id": key_id, "name": body["name"], "public_key": body["public_key"],
        "create_date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let user = s.users.get_mut(id).expect("checked above");
    user["ssh_keys"]
        .as_array_mut()
        .expect("ssh_keys")
        .push(key.clone());
    Reply::json(200, key)
}
