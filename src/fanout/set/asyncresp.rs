//! The `misc:asyncresp` SETs (RFC 9967 §2.5.1.3) of a finished asynchronous request: one per
//! operation (a Bulk's: `txn` = Set-Txn + `:` + the operation's index, §2.5.1.2), the event's
//! payload the operation's bulk-response entry (RFC 7644 §3.7.3), without `bulkId`.
//!
//! Read at the request's `Location` (`http/api/async_outcomes.rs`). The feeds do not carry them yet;
//! they would read the store's second durable sequence, the `async_outcomes` table (completion
//! order), beside the log.

use serde_json::{Map, Value, json};

use super::SetConfig;
use super::claims::{audience, uri};
use super::feed::FeedId;
use crate::store::{AsyncOperation, AsyncRequest};

/// The claims (all but `iat`, which signing adds) of each SET of the finished request `set_txn`,
/// with its `txn`, in operation order; none while it is pending. `cfg` gives `iss` and `aud`
/// (without it, SETs are off, and the claims carry neither). `jti` is deterministic: the
/// operation's `txn` at the Location (`feed` `None`), `{feed}:{txn}` on a feed; it never parses as
/// a log event's `{feed}:{position}:{index}` (a UUID is not a position). `toe` is when the
/// outcome was decided. `sub_id` names the resource the operation addressed when there is one
/// (a failed POST made none).
pub fn claims_of(
    set_txn: &str,
    request: &AsyncRequest,
    feed: Option<&FeedId>,
    cfg: Option<&SetConfig>,
) -> Vec<(String, Map<String, Value>)> {
    let Some(outcome) = &request.outcome else {
        return Vec::new();
    };
    outcome
        .operations
        .iter()
        .map(|op| {
            let txn = op.txn(set_txn);
            let mut claims = Map::new();
            if let Some(cfg) = cfg {
                claims.insert("iss".into(), json!(cfg.issuer));
                if let Some(aud) = audience(&cfg.audience) {
                    claims.insert("aud".into(), aud);
                }
            }
            let jti = match feed {
                Some(feed) => format!("{}:{txn}", feed.as_str()),
                None => txn.clone(),
            };
            claims.insert("jti".into(), json!(jti));
            claims.insert("txn".into(), json!(txn));
            claims.insert("toe".into(), json!(outcome.completed.timestamp()));
            if let Some(sub_id) = subject(&request.base, op) {
                claims.insert("sub_id".into(), sub_id);
            }
            let mut events = Map::new();
            events.insert(uri::ASYNC_RESPONSE.into(), op.response.clone());
            claims.insert("events".into(), Value::Object(events));
            (txn, claims)
        })
        .collect()
}

/// The `sub_id` (format `scim`, RFC 9967 §2.1) of the resource at the operation's `location`.
fn subject(base: &str, op: &AsyncOperation) -> Option<Value> {
    let location = op.response.get("location")?.as_str()?;
    let path = location.strip_prefix(base)?;
    let id = path.rsplit('/').next()?;
    Some(json!({"format": "scim", "uri": path, "id": id}))
}
