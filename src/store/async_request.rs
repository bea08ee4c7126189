//! Asynchronous requests (RFC 9967 §3, RFC 7240 `Prefer: respond-async`) as the store keeps them:
//! the request as it arrived, persisted before its 202, and once it has run, its outcome.
//!
//! Tables (see `tables.rs`): `async_requests` (Set-Txn → [`AsyncRequest`]), `async_pending`
//! (arrival sequence → Set-Txn: what is still to run, in arrival order) and `async_outcomes`
//! (completion sequence → Set-Txn: the outcomes in the order they were decided, the second durable
//! sequence the SET feeds read beside the log).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use scim::ResourceType;

/// A request accepted with `Prefer: respond-async`, as it arrived (its shape already validated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncRequest {
    /// The API key's actor: only it may fetch the outcome.
    pub actor: String,
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The resource type addressed; `None` for `/Bulk`.
    pub resource_type: Option<ResourceType>,
    /// The resource id (PUT, PATCH, DELETE).
    pub id: Option<String>,
    /// `If-Match`, as sent.
    pub if_match: Option<String>,
    /// The JSON body, until the request has run (it is dropped then: it may carry a password).
    pub body: Option<Value>,
    /// The URL prefix of the locations the outcome names.
    pub base: String,
    /// When the request was accepted.
    pub received: DateTime<Utc>,
    /// Its place in arrival order (the key of `async_pending` while it waits).
    pub arrival: u64,
    /// What it produced, once it has run.
    pub outcome: Option<AsyncOutcome>,
}

/// What an asynchronous request produced: one bulk-response operation (RFC 7644 §3.7.3) per
/// operation, the payload of its `misc:asyncresp` SET.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncOutcome {
    /// Its place in completion order (the key of `async_outcomes`).
    pub completion: u64,
    /// When it was decided.
    pub completed: DateTime<Utc>,
    /// The operations' responses; a Bulk's in request order, without those never attempted.
    pub operations: Vec<AsyncOperation>,
}

/// The outcome of one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncOperation {
    /// The operation's zero-based index in a Bulk's `Operations`; `None` for a single request.
    pub index: Option<usize>,
    /// The bulk-response operation: `method`, `status`, `location`, `version`, `response`.
    pub response: Value,
}

impl AsyncOperation {
    /// The SET `txn` of this operation (RFC 9967 §2.5.1.2): the request's `Set-Txn`, followed for
    /// a Bulk operation by `:` and its index.
    pub fn txn(&self, set_txn: &str) -> String {
        match self.index {
            Some(i) => format!("{set_txn}:{i}"),
            None => set_txn.to_owned(),
        }
    }
}

impl AsyncRequest {
    /// Serialises the request for the `async_requests` table.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|source| StoreError::Encode {
            what: "an asynchronous request",
            source,
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| {
            StoreError::Corrupt(format!("an asynchronous request does not decode: {e}"))
        })
    }
}
