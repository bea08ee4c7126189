//! API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`, several keys for
//! rotation, each optionally named so events record who wrote them.

use std::path::Path;
use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured API keys. Only SHA-256 digests are kept in memory; comparison is constant-time
/// and always walks every key, so timing reveals neither which key matched nor how much of it.
pub struct ApiKeys {
    keys: Vec<([u8; 32], String)>,
}

/// Who made a request: the key's name, or `key-` and a short hash of it.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Errors reading or creating the API key configuration.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// API_KEY was set but held no usable key.
    #[error("API_KEY is set but holds no key")]
    Empty,
    /// The generated key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeys {
    /// Parses `API_KEY`: comma-separated keys, each `KEY` or `NAME=KEY`. A name is a letter followed
    /// by letters, digits, `_`, `-` or `.`; a key that itself contains `=` must therefore be named.
    pub fn parse(spec: &str) -> Result<ApiKeys, KeyError> {
        let mut keys = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, key) = match item.split_once('=') {
                Some((name, key)) if is_name(name) && !key.trim_matches('=').is_empty() => {
                    (name.to_owned(), key.to_owned())
                }
                _ => (short_hash(item), item.to_owned()),
            };
            keys.push((digest(&key), name));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(ApiKeys { keys })
    }

    /// Loads the key kept in `DATA_PATH/api-key`, generating it (mode 0600) on first start.
    /// Returns the keys and whether the key was just generated.
    pub fn load_or_generate(data_path: &Path) -> Result<(ApiKeys, bool), KeyError> {
        let path = data_path.join("api-key");
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(key) => return Ok((ApiKeys::parse(key.trim())?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir_all(data_path).map_err(io)?;
        let key = hex::encode(rand::random::<[u8; 32]>());
        write_private(&path, &key).map_err(io)?;
        Ok((ApiKeys::parse(&key)?, true))
    }

    /// The actor of a presented key, if it is one of ours.
    pub fn check(&self, presented: &str) -> Option<Actor> {
        let d = digest(presented);
        let mut found = None;
        for (key, name) in &self.keys {
            if bool::from(key.ct_eq(&d)) {
                found = Some(name);
            }
        }
        found.map(|n| Actor(n.clone()))
    }
}

impl ApiKeys {
    /// The actor of the key a request presents (`Authorization: Bearer` or `X-API-Key`), if it
    /// is one of ours: checked before the body is read, so an anonymous body is never buffered.
    pub fn presented(&self, headers: &poem::http::HeaderMap) -> Option<Actor> {
        let bearer = headers
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let header = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        bearer
            .and_then(|k| self.check(k))
            .or_else(|| header.and_then(|k| self.check(k)))
    }
}

/// The key a command-line tool presents to the local server: the first key of `API_KEY`, else the
/// generated key kept in `DATA_PATH/api-key`.
pub fn client_key(spec: Option<&str>, data_path: &Path) -> Option<String> {
    let first = |spec: &str| {
        spec.split(',')
            .map(str::trim)
            .find(|s| !s.is_empty())
            .map(|item| match item.split_once('=') {
                Some((name, key)) if is_name(name) && !key.trim_matches('=').is_empty() => {
                    key.to_owned()
                }
                _ => item.to_owned(),
            })
    };
    match spec {
        Some(spec) => first(spec),
        None => std::fs::read_to_string(data_path.join("api-key"))
            .ok()
            .and_then(|k| first(k.trim())),
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `key-` and the first 8 hex digits of the key's SHA-256: identifies an unnamed key in the log
/// without revealing it.
fn short_hash(key: &str) -> String {
    format!("key-{}", &hex::encode(digest(key))[..8])
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// `Authorization: Bearer <key>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_bearer")]
pub struct BearerKey(pub Actor);

/// `X-API-Key: <key>`.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "check_header_key"
)]
pub struct HeaderKey(pub Actor);

/// Either way of presenting an API key.
#[derive(SecurityScheme)]
pub enum ApiKeyAuth {
    /// `Authorization: Bearer <key>`.
    Bearer(BearerKey),
    /// `X-API-Key: <key>`.
    Header(HeaderKey),
}

impl ApiKeyAuth {
    /// Who presented the key.
    pub fn actor(&self) -> &Actor {
        match self {
            ApiKeyAuth::Bearer(k) => &k.0,
            ApiKeyAuth::Header(k) => &k.0,
        }
    }
}

async fn check_bearer(req: &Request, bearer: Bearer) -> Option<Actor> {
    req.data::<Arc<ApiKeys>>()?.check(&bearer.token)
}

async fn check_header_key(req: &Request, key: ApiKey) -> Option<Actor> {
    req.data::<Arc<ApiKeys>>()?.check(&key.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_unnamed_keys_identify_their_actor() {
        let keys = ApiKeys::parse("entra=s3cret, plainkey").unwrap();
        assert_eq!(keys.check("s3cret").unwrap().0, "entra");
        let unnamed = keys.check("plainkey").unwrap().0;
        assert!(unnamed.starts_with("key-") && !unnamed.contains("plainkey"));
        assert!(keys.check("nope").is_none());
    }

    #[test]
    fn base64_padding_is_not_mistaken_for_a_name() {
        let keys = ApiKeys::parse("abcd==").unwrap();
        assert!(keys.check("abcd==").is_some());
    }

    #[test]
    fn an_empty_spec_is_an_error() {
        assert!(ApiKeys::parse(" , ").is_err());
    }
}
