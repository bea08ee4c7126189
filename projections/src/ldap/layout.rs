//! How SCIM documents become LDAP entries, in the two layouts (see the module documentation of
//! [`super`]).

use base64::Engine;
use serde_json::{Map, Value};

use crate::ResourceKind;

/// How Users and Groups are laid out in the directory (`LDAP_LAYOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The earlier server's layout (the default): `device` + `extensibleObject` entries with
    /// `uid`, `displayName`, `email`, `sshPublicKey`, `member` and the rest of the resource as JSON
    /// in `info`.
    Device,
    /// Standard object classes: `inetOrgPerson` Users, `groupOfNames` Groups.
    InetOrgPerson,
}

impl Layout {
    /// The layout named by `LDAP_LAYOUT`: `device` (also `default`) or `inetorgperson`.
    ///
    /// # Errors
    /// The name, when it is neither.
    pub fn parse(name: &str) -> Result<Layout, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "device" | "default" => Ok(Layout::Device),
            "inetorgperson" => Ok(Layout::InetOrgPerson),
            other => Err(format!(
                "LDAP_LAYOUT {other:?} is not a layout (device, inetorgperson)"
            )),
        }
    }

    /// Every attribute this layout writes on entries of `kind`, other than `objectClass`, `cn` and
    /// `member`: a rewrite replaces each (an empty value list removes it).
    fn managed(self, kind: ResourceKind) -> &'static [&'static str] {
        match (self, kind) {
            (Layout::Device, ResourceKind::User) => {
                &["uid", "displayName", "email", "sshPublicKey", "info"]
            }
            (Layout::Device, ResourceKind::Group) => &["displayName", "info"],
            (Layout::InetOrgPerson, ResourceKind::User) => &[
                "sn",
                "givenName",
                "displayName",
                "mail",
                "uid",
                "employeeNumber",
                "title",
                "sshPublicKey",
            ],
            (Layout::InetOrgPerson, ResourceKind::Group) => &[],
        }
    }
}

/// The value that stands in for "no member" in a `groupOfNames` group, which must have at least
/// one `member`: the empty DN, which names no entry, so `(member=<dn>)` queries never match it.
pub const NO_MEMBER: &str = "";

/// One attribute and its values, in order (the first `email`/`mail` is the primary one).
pub type Attribute = (&'static str, Vec<Vec<u8>>);

/// The attributes of the entry of a resource of `kind` with `document`; for groups, `members` are
/// the member DNs (`None`: leave `member` out, for a rewrite that keeps the members).
pub fn attributes(
    layout: Layout,
    kind: ResourceKind,
    id: &str,
    document: &Value,
    members: Option<Vec<String>>,
) -> Vec<Attribute> {
    let empty = Map::new();
    let doc = document.as_object().unwrap_or(&empty);
    let text = |key: &str| -> Vec<Vec<u8>> {
        doc.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| vec![s.as_bytes().to_vec()])
            .unwrap_or_default()
    };
    let mut out: Vec<Attribute> = Vec::new();
    match (layout, kind) {
        (Layout::Device, ResourceKind::User) => {
            out.push(("objectClass", values(&["device", "extensibleObject"])));
            out.push(("cn", values(&[id])));
            out.push(("uid", text("userName")));
            out.push(("displayName", text("displayName")));
            out.push(("email", emails(doc)));
            out.push(("sshPublicKey", ssh_keys(doc)));
            out.push(("info", info(doc, &["id", "userName", "displayName"])));
        }
        (Layout::Device, ResourceKind::Group) => {
            out.push(("objectClass", values(&["device", "extensibleObject"])));
            out.push(("cn", values(&[id])));
            out.push(("displayName", text("displayName")));
            out.push(("info", info(doc, &["id", "displayName", "members"])));
            if let Some(members) = members {
                out.push((
                    "member",
                    members.into_iter().map(String::into_bytes).collect(),
                ));
            }
        }
        (Layout::InetOrgPerson, ResourceKind::User) => {
            let keys = ssh_keys(doc);
            let mut classes = vec!["inetOrgPerson"];
            if !keys.is_empty() {
                classes.push("ldapPublicKey");
            }
            out.push(("objectClass", values(&classes)));
            out.push(("cn", with_name(id, doc.get("displayName"))));
            let family = doc.pointer_str("/name/familyName");
            let user_name = doc.get("userName").and_then(Value::as_str);
            out.push((
                "sn",
                family
                    .or(user_name)
                    .map(|s| vec![s.as_bytes().to_vec()])
                    .unwrap_or_else(|| values(&[id])),
            ));
            out.push((
                "givenName",
                doc.pointer_str("/name/givenName")
                    .map(|s| values(&[s]))
                    .unwrap_or_default(),
            ));
            out.push(("displayName", text("displayName")));
            out.push(("mail", emails(doc)));
            out.push(("uid", text("userName")));
            out.push((
                "employeeNumber",
                doc.pointer_str(
                    "/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User/employeeNumber",
                )
                .map(|s| values(&[s]))
                .unwrap_or_default(),
            ));
            out.push(("title", text("title")));
            out.push(("sshPublicKey", keys));
        }
        (Layout::InetOrgPerson, ResourceKind::Group) => {
            out.push(("objectClass", values(&["groupOfNames"])));
            out.push(("cn", with_name(id, doc.get("displayName"))));
            if let Some(members) = members {
                let mut dns: Vec<Vec<u8>> = members.into_iter().map(String::into_bytes).collect();
                if dns.is_empty() {
                    dns.push(NO_MEMBER.as_bytes().to_vec());
                }
                out.push(("member", dns));
            }
        }
    }
    out
}

/// The attributes a rewrite of an existing entry replaces: `objectClass`, `cn`, every managed
/// attribute (empty when the document has no value, which removes it) and `member` when given.
pub fn rewrite(
    layout: Layout,
    kind: ResourceKind,
    id: &str,
    document: &Value,
    members: Option<Vec<String>>,
) -> Vec<Attribute> {
    let mut attrs = attributes(layout, kind, id, document, members);
    for name in layout.managed(kind) {
        if !attrs.iter().any(|(n, _)| n == name) {
            attrs.push((name, Vec::new()));
        }
    }
    attrs
}

/// `document` as JSON without `skip` (what `info` holds).
fn info(doc: &Map<String, Value>, skip: &[&str]) -> Vec<Vec<u8>> {
    let rest: Map<String, Value> = doc
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vec![Value::Object(rest).to_string().into_bytes()]
}

fn values(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// `cn`: the id (the RDN), then the display name when there is one.
fn with_name(id: &str, name: Option<&Value>) -> Vec<Vec<u8>> {
    let mut out = values(&[id]);
    if let Some(name) = name
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && *n != id)
    {
        out.push(name.as_bytes().to_vec());
    }
    out
}

/// Every `emails[].value`, the primary one first, without duplicates.
fn emails(doc: &Map<String, Value>) -> Vec<Vec<u8>> {
    let Some(list) = doc.get("emails").and_then(Value::as_array) else {
        return Vec::new();
    };
    let primary = |e: &&Value| e.get("primary").and_then(Value::as_bool) == Some(true);
    let mut out: Vec<Vec<u8>> = Vec::new();
    for e in list
        .iter()
        .filter(primary)
        .chain(list.iter().filter(|e| !primary(e)))
    {
        if let Some(v) = e
            .get("value")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            let v = v.as_bytes().to_vec();
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// The voPerson extension of Users.
const VO_PERSON: &str = "urn:temporaryNamespace:scim:schemas:voPerson:User";

/// OpenSSH public keys: each `x509Certificates[].value` (binary, so base64) that decodes to an
/// OpenSSH key line, and each voPerson `voPersonSshPublicKey`. Values that are no SSH key (a real
/// X.509 certificate) are left out.
fn ssh_keys(doc: &Map<String, Value>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut push = |key: &str| {
        let key = key.trim();
        let looks_like_ssh = ["ssh-", "ecdsa-", "sk-"].iter().any(|p| key.starts_with(p));
        if looks_like_ssh && !out.iter().any(|k| k == key.as_bytes()) {
            out.push(key.as_bytes().to_vec());
        }
    };
    for cert in doc
        .get("x509Certificates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let decoded = cert
            .get("value")
            .and_then(Value::as_str)
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some(line) = decoded {
            push(&line);
        }
    }
    for key in doc
        .get(VO_PERSON)
        .and_then(|v| v.get("voPersonSshPublicKey"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        push(key);
    }
    out
}

/// `Map::pointer` for strings.
trait PointerStr {
    fn pointer_str(&self, pointer: &str) -> Option<&str>;
}

impl PointerStr for Map<String, Value> {
    fn pointer_str(&self, pointer: &str) -> Option<&str> {
        let mut parts = pointer.trim_start_matches('/').split('/');
        let first = self.get(parts.next()?)?;
        parts
            .try_fold(first, |v, p| v.get(p))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get<'a>(attrs: &'a [Attribute], name: &str) -> Vec<&'a str> {
        attrs
            .iter()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, v)| v.iter().map(|b| std::str::from_utf8(b).unwrap_or("?")))
            .collect()
    }

    #[test]
    fn a_device_user_carries_the_earlier_servers_attributes() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0 alice@host";
        let doc = json!({
            "id": "u1", "userName": "alice", "displayName": "Alice",
            "emails": [{"value": "b@example.org"}, {"value": "a@example.org", "primary": true}],
            "x509Certificates": [
                {"value": base64::engine::general_purpose::STANDARD.encode(key)},
                {"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAw"}
            ],
            VO_PERSON: {"voPersonSshPublicKey": ["ssh-rsa AAAAB3 other", key]},
            "meta": {"version": "W/\"1\""}
        });
        let attrs = attributes(Layout::Device, ResourceKind::User, "u1", &doc, None);
        assert_eq!(get(&attrs, "objectClass"), ["device", "extensibleObject"]);
        assert_eq!(get(&attrs, "cn"), ["u1"]);
        assert_eq!(get(&attrs, "uid"), ["alice"]);
        assert_eq!(get(&attrs, "email"), ["a@example.org", "b@example.org"]);
        assert_eq!(get(&attrs, "sshPublicKey"), [key, "ssh-rsa AAAAB3 other"]);
        let info: Value = serde_json::from_str(get(&attrs, "info")[0]).unwrap_or_default();
        assert!(info.get("userName").is_none() && info.get("id").is_none());
        assert_eq!(info["emails"], doc["emails"]);
    }

    #[test]
    fn an_empty_group_of_names_gets_the_placeholder_member() {
        let doc = json!({"id": "g1", "displayName": "Team", "members": []});
        let attrs = attributes(
            Layout::InetOrgPerson,
            ResourceKind::Group,
            "g1",
            &doc,
            Some(Vec::new()),
        );
        assert_eq!(get(&attrs, "member"), [NO_MEMBER]);
        assert_eq!(get(&attrs, "cn"), ["g1", "Team"]);
        let device = rewrite(Layout::Device, ResourceKind::Group, "g1", &doc, None);
        assert!(
            get(&device, "member").is_empty(),
            "a rewrite without members keeps them"
        );
        assert_eq!(get(&device, "displayName"), ["Team"]);
    }

    #[test]
    fn layouts_are_named_in_any_case() {
        assert_eq!(Layout::parse("InetOrgPerson"), Ok(Layout::InetOrgPerson));
        assert_eq!(Layout::parse("device"), Ok(Layout::Device));
        assert!(Layout::parse("posix").is_err());
    }
}
