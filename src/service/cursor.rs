//! Cursor paging (RFC 9865): an opaque, signed token naming the last resource of a page, so the next
//! page starts after it (keyset paging) whatever was written in between.
//!
//! The token is `base64url(payload) "." base64url(HMAC-SHA-256(secret, payload))`; the payload holds
//! the sort key and id of the last resource, a digest of the query it belongs to and when it was
//! issued. The secret lives in memory, so cursors do not survive a restart (they become
//! `invalidCursor`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use scim::filter::SortKey;
use scim::{ResourceType, ScimError, ScimType};

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The last resource's sort key (`None`: it had no value, or no `sortBy`).
    pub key: Option<SortKey>,
    /// Its type.
    pub rt: ResourceType,
    /// Its id.
    pub id: String,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The sort key, [`SortKey::encode`]d.
    k: Option<String>,
    /// Resource type name.
    r: String,
    /// Id.
    i: String,
    /// Digest of the query.
    q: String,
    /// Issued, seconds since the epoch.
    t: i64,
}

/// Signs and checks cursors.
pub struct Cursors {
    secret: [u8; 32],
    ttl_secs: i64,
}

impl Cursors {
    /// Cursors valid for `ttl_secs` seconds after they were issued, under a fresh random secret.
    pub fn new(ttl_secs: u64) -> Cursors {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Cursors {
            secret,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        }
    }

    /// RFC 9865 `cursorTimeout`, in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// The cursor for the page after `position`, valid only for `query` (a digest of the request).
    /// A payload that cannot be encoded is a 500: never a cursor signed over an empty payload.
    pub fn issue(&self, position: &Position, query: &str) -> Result<String, ScimError> {
        let payload = Payload {
            k: position.key.as_ref().map(SortKey::encode),
            r: position.rt.name().to_owned(),
            i: position.id.clone(),
            q: query.to_owned(),
            t: chrono::Utc::now().timestamp(),
        };
        let bytes = serde_json::to_vec(&payload).map_err(|e| {
            ScimError::new(500, format!("the next cursor could not be encoded: {e}"))
        })?;
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&bytes),
            URL_SAFE_NO_PAD.encode(self.mac(&bytes))
        ))
    }

    /// Reads a cursor this server issued for `query`: 400 `invalidCursor` if it was altered, is
    /// unknown or belongs to another query, 400 `expiredCursor` once its time is up.
    pub fn read(&self, cursor: &str, query: &str) -> Result<Position, ScimError> {
        let invalid = || {
            ScimError::typed(
                400,
                ScimType::InvalidCursor,
                "the cursor is not one this server issued for this query",
            )
        };
        let (payload, mac) = cursor.split_once('.').ok_or_else(invalid)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| invalid())?;
        let expected = self.mac(&bytes);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            mac.as_slice(),
            expected.as_slice(),
        )) {
            return Err(invalid());
        }
        let p: Payload = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if p.q != query {
            return Err(invalid());
        }
        if chrono::Utc::now().timestamp().saturating_sub(p.t) > self.ttl_secs {
            return Err(ScimError::typed(
                400,
                ScimType::ExpiredCursor,
                "the cursor has expired; start again without one",
            ));
        }
        let rt = ResourceType::from_name(&p.r).ok_or_else(invalid)?;
        let key = match p.k {
            Some(k) => Some(SortKey::decode(&k).ok_or_else(invalid)?),
            None => None,
        };
        Ok(Position { key, rt, id: p.i })
    }

    /// HMAC-SHA-256 (RFC 2104) of `message`.
    fn mac(&self, message: &[u8]) -> Vec<u8> {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, b) in self.secret.iter().enumerate() {
            ipad[i] ^= b;
            opad[i] ^= b;
        }
        let inner = Sha256::new()
            .chain_update(ipad)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize()
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        Position {
            key: Some(SortKey::Str("bjensen".into())),
            rt: ResourceType::User,
            id: "u1".into(),
        }
    }

    #[test]
    fn a_cursor_reads_back_for_its_query_only() {
        let c = Cursors::new(60);
        let token = c.issue(&position(), "q1").unwrap();
        assert_eq!(c.read(&token, "q1").unwrap(), position());
        let e = c.read(&token, "q2").unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidCursor));
    }

    #[test]
    fn altered_foreign_and_expired_cursors_are_refused() {
        let c = Cursors::new(60);
        let token = c.issue(&position(), "q").unwrap();
        let mut altered = token.clone().into_bytes();
        altered[3] ^= 1;
        let altered = String::from_utf8(altered).unwrap();
        for bad in [altered.as_str(), "", ".", "x.y", "%%%"] {
            let e = c.read(bad, "q").unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidCursor), "{bad}");
        }
        let other = Cursors::new(60);
        assert!(other.read(&token, "q").is_err());
        let expired = Cursors {
            secret: c.secret,
            ttl_secs: -1,
        };
        let e = expired.read(&token, "q").unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::ExpiredCursor));
    }
}
