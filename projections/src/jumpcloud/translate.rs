//! SCIM → JumpCloud: what a User or a Group becomes in JumpCloud's API, as pure functions.
//!
//! JumpCloud refuses what SCIM allows, so a User is checked here before anything is sent:
//! - `username`: JumpCloud's naming convention is a letter first, then letters, digits, `.`, `-`
//!   or `_`, at most [`USERNAME_MAX`] characters, no `@`. The rule: a `userName` with an `@` (a UPN
//!   or an address, `alice@corp.example`) is sent as its local part (`alice`); any `userName`
//!   that still breaks the convention is refused with a reason that names the broken part.
//! - `email` is required: the primary of `emails`, else the first `emails` value that is an
//!   address, else `userName` when it is an address; a User with none of these is refused.
//!
//! Everything else is named in [`user`]'s documentation.

use base64::Engine;
use serde_json::{Map, Value, json};

/// The longest `username` JumpCloud accepts (its naming convention; the API's schema says 1,024).
pub const USERNAME_MAX: usize = 30;
/// Custom attribute names are letters and digits, shorter than 32 characters.
pub const ATTRIBUTE_NAME_MAX: usize = 31;
/// The longest value JumpCloud keeps in a string field or a custom attribute.
pub const VALUE_MAX: usize = 1024;
/// The name prefix of the SSH keys scimd manages; keys named otherwise are left alone.
pub const SSH_KEY_PREFIX: &str = "scimd:";

/// Attributes of a SCIM User that have a field of their own in JumpCloud (or are never sent).
const USER_FIELDS: &[&str] = &[
    "schemas",
    "id",
    "meta",
    "userName",
    "name",
    "displayName",
    "active",
    "emails",
    "x509Certificates",
    "password",
    "groups",
];

/// Why a resource cannot be sent to JumpCloud as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untranslatable {
    /// The `userName` breaks JumpCloud's naming convention even after the local-part rule.
    #[error("userName {user_name:?} cannot be a JumpCloud username ({username:?} {why})")]
    Username {
        /// The SCIM `userName`.
        user_name: String,
        /// What it became.
        username: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// No address to send as the required `email`.
    #[error(
        "JumpCloud requires an email, and this User has none: no `emails` value is an address and userName {0:?} is not one either"
    )]
    NoEmail(String),
    /// A Group without a `displayName`.
    #[error("a JumpCloud user group needs a name, and this Group has no displayName")]
    NoGroupName,
}

/// A SCIM User as JumpCloud's `/api/systemusers` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemUser {
    /// The JumpCloud `username` (the lookup key before a create).
    pub username: String,
    /// The JumpCloud `email`.
    pub email: String,
    /// The whole body of a create or an update (it holds `username` and `email` too).
    pub body: Value,
    /// The OpenSSH keys the user must have.
    pub ssh_keys: Vec<SshKey>,
}

/// An SSH key of a system user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// `scimd:` and the key's comment (or its position).
    pub name: String,
    /// The OpenSSH line: type, key and comment.
    pub public_key: String,
}

/// The JumpCloud `username` of a SCIM `userName`, by the rule of the [module documentation](self).
pub fn username(user_name: &str) -> Result<String, Untranslatable> {
    let trimmed = user_name.trim();
    let candidate = trimmed.split('@').next().unwrap_or_default().to_owned();
    let why = if candidate.is_empty() {
        Some("is empty")
    } else if !candidate.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("does not start with a letter")
    } else if !candidate
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        Some("holds a character other than letters, digits, '.', '-' and '_'")
    } else if candidate.chars().count() > USERNAME_MAX {
        Some("is longer than 30 characters")
    } else {
        None
    };
    match why {
        Some(why) => Err(Untranslatable::Username {
            user_name: user_name.to_owned(),
            username: candidate,
            why,
        }),
        None => Ok(candidate),
    }
}

/// Whether `s` looks like an email address: one `@` between a local part and a dotted domain.
fn is_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// The addresses of a User in order of preference: the primary email, the other emails, then
/// `userName`; only values that are addresses, each once.
fn addresses(doc: &Map<String, Value>) -> Vec<String> {
    let emails: Vec<&Value> = doc
        .get("emails")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let primary = emails
        .iter()
        .filter(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
    let others = emails
        .iter()
        .filter(|e| e.get("primary").and_then(Value::as_bool) != Some(true));
    let mut out: Vec<String> = Vec::new();
    let values = primary
        .chain(others)
        .filter_map(|e| e.get("value").and_then(Value::as_str))
        .chain(doc.get("userName").and_then(Value::as_str));
    for value in values.map(str::trim) {
        if is_address(value) && !out.iter().any(|o| o.eq_ignore_ascii_case(value)) {
            out.push(value.to_owned());
        }
    }
    out
}

/// `s` cut to [`VALUE_MAX`] characters.
pub fn cut(s: &str) -> String {
    s.chars().take(VALUE_MAX).collect()
}

fn string_at<'a>(doc: &'a Map<String, Value>, key: &str, sub: Option<&str>) -> &'a str {
    let value = doc.get(key);
    let value = match sub {
        Some(sub) => value.and_then(|v| v.get(sub)),
        None => value,
    };
    value.and_then(Value::as_str).unwrap_or_default()
}

/// The system user a SCIM User becomes:
/// - `username`, `email` by the rules of the [module documentation](self); `alternateEmail` =
///   the next address of `emails`;
/// - `firstname`, `middlename`, `lastname` = `name.givenName`, `name.middleName`,
///   `name.familyName`; `displayname` = `displayName`. These are always sent, `""` when the User
///   has none, because JumpCloud's update is partial and would otherwise keep an old value;
/// - `state` = `ACTIVATED` when `active` is true or absent, `SUSPENDED` when false, and `suspended`
///   equal to it (`activated` is JumpCloud's password status, never sent);
/// - SSH keys from `x509Certificates` whose value decodes (base64) to an OpenSSH key line;
/// - every other attribute under `attributes` (see [`attributes`]).
///
/// String values are cut to [`VALUE_MAX`] characters.
pub fn user(doc: &Value) -> Result<SystemUser, Untranslatable> {
    let empty = Map::new();
    let doc = doc.as_object().unwrap_or(&empty);
    let user_name = string_at(doc, "userName", None);
    let username = username(user_name)?;
    let mut addresses = addresses(doc).into_iter();
    let email = addresses
        .next()
        .ok_or_else(|| Untranslatable::NoEmail(user_name.to_owned()))?;
    let alternate = addresses.next().unwrap_or_default();
    let active = doc.get("active").and_then(Value::as_bool).unwrap_or(true);
    let body = json!({
        "username": username,
        "email": cut(&email),
        "alternateEmail": cut(&alternate),
        "firstname": cut(string_at(doc, "name", Some("givenName"))),
        "middlename": cut(string_at(doc, "name", Some("middleName"))),
        "lastname": cut(string_at(doc, "name", Some("familyName"))),
        "displayname": cut(string_at(doc, "displayName", None)),
        "state": if active { "ACTIVATED" } else { "SUSPENDED" },
        "suspended": !active,
        "attributes": attributes(doc),
    });
    Ok(SystemUser {
        username,
        email,
        body,
        ssh_keys: ssh_keys(doc),
    })
}

/// The custom attributes of a User: every attribute without a JumpCloud field of its own, core
/// ones first, then each extension's (by URN); the `name` sub-attributes other than given,
/// middle and family name too. A complex value gives one attribute per sub-attribute
/// (`manager.value` → `managerValue`), a multi-valued one its compact JSON. Names keep only
/// letters and digits and are cut to [`ATTRIBUTE_NAME_MAX`] characters; a name already taken
/// gets a number (`title2`). Values are cut to [`VALUE_MAX`] characters; nulls are left out.
pub fn attributes(doc: &Map<String, Value>) -> Vec<Value> {
    let mut flat: Vec<(String, String)> = Vec::new();
    let mut core: Vec<(&String, &Value)> = doc
        .iter()
        .filter(|(k, _)| !USER_FIELDS.contains(&k.as_str()) && !k.starts_with("urn:"))
        .collect();
    core.sort_by(|a, b| a.0.cmp(b.0));
    if let Some(name) = doc.get("name").and_then(Value::as_object) {
        let mut rest: Vec<(&String, &Value)> = name
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "givenName" | "middleName" | "familyName"))
            .collect();
        rest.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in rest {
            flatten(&format!("name.{k}"), v, &mut flat);
        }
    }
    for (k, v) in core {
        flatten(k, v, &mut flat);
    }
    let mut extensions: Vec<(&String, &Value)> = doc
        .iter()
        .filter(|(k, v)| k.starts_with("urn:") && v.is_object())
        .collect();
    extensions.sort_by(|a, b| a.0.cmp(b.0));
    for (_, extension) in extensions {
        let mut attrs: Vec<(&String, &Value)> =
            extension.as_object().into_iter().flatten().collect();
        attrs.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in attrs {
            flatten(k, v, &mut flat);
        }
    }
    let mut taken: Vec<String> = Vec::with_capacity(flat.len());
    let mut out = Vec::with_capacity(flat.len());
    for (path, value) in flat {
        let Some(name) = attribute_name(&path, &taken) else {
            continue;
        };
        taken.push(name.clone());
        out.push(json!({"name": name, "value": cut(&value)}));
    }
    out
}

/// `path` (`a.b` parts) as a custom attribute name: camel case of its parts, letters and digits
/// only, cut to fit, numbered when `taken` holds it; `None` when nothing is left.
pub fn attribute_name(path: &str, taken: &[String]) -> Option<String> {
    let mut base = String::new();
    for (i, part) in path.split('.').enumerate() {
        let clean: String = part.chars().filter(char::is_ascii_alphanumeric).collect();
        let mut chars = clean.chars();
        if let Some(first) = chars.next() {
            if i == 0 || base.is_empty() {
                base.push(first);
            } else {
                base.push(first.to_ascii_uppercase());
            }
            base.extend(chars);
        }
    }
    if base.is_empty() {
        return None;
    }
    let fits = |s: &str, room: usize| s.chars().take(room).collect::<String>();
    let first = fits(&base, ATTRIBUTE_NAME_MAX);
    if !taken.iter().any(|t| t.eq_ignore_ascii_case(&first)) {
        return Some(first);
    }
    (2..).find_map(|n: usize| {
        let suffix = n.to_string();
        let name = fits(&base, ATTRIBUTE_NAME_MAX - suffix.len()) + &suffix;
        (!taken.iter().any(|t| t.eq_ignore_ascii_case(&name))).then_some(name)
    })
}

fn flatten(path: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push((path.to_owned(), s.clone())),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) => {
            out.push((path.to_owned(), value.to_string()))
        }
        Value::Object(map) => {
            let mut subs: Vec<(&String, &Value)> = map.iter().collect();
            subs.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in subs {
                flatten(&format!("{path}.{k}"), v, out);
            }
        }
    }
}

/// The OpenSSH keys of a User: each `x509Certificates[].value` that decodes (base64) to an
/// OpenSSH key line; real certificates are left out. Each key is named `scimd:` and its comment
/// (or `key` and its position when it has none).
pub fn ssh_keys(doc: &Map<String, Value>) -> Vec<SshKey> {
    let mut out: Vec<SshKey> = Vec::new();
    let values = doc
        .get("x509Certificates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("value").and_then(Value::as_str));
    for b64 in values {
        let line = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some(line) = line.map(|l| l.trim().to_owned()) else {
            continue;
        };
        let ssh = ["ssh-", "ecdsa-", "sk-"]
            .iter()
            .any(|p| line.starts_with(p));
        if !ssh || line.contains('\n') || out.iter().any(|k| k.public_key == line) {
            continue;
        }
        let comment = line.split_whitespace().nth(2).map(str::to_owned);
        let label = comment.unwrap_or_else(|| format!("key{}", out.len() + 1));
        out.push(SshKey {
            name: cut(&format!("{SSH_KEY_PREFIX}{label}")),
            public_key: line,
        });
    }
    out
}

/// The user group a SCIM Group becomes: `{"name": displayName}`. JumpCloud's update of a group is
/// a full replace, so this is the whole body of both (no description, no attributes).
pub fn group(doc: &Value) -> Result<Value, Untranslatable> {
    let name = doc
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(Untranslatable::NoGroupName)?;
    Ok(json!({"name": cut(name)}))
}

#[cfg(test)]
mod tests;
