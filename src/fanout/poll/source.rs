//! Where poll delivery gets its SETs: the security event core (`fanout::set`) turns each event of
//! the log into the SETs a feed carries and signs them, and makes the `misc:asyncresp` SETs of
//! finished asynchronous requests (default feed only); this is the one place poll delivery calls
//! it.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::fanout::set::claims::{ClaimsError, SetClaims};
use crate::fanout::set::{FeedId, Jti, SecurityEvents, SigningError, asyncresp, sets_of};
use crate::store::{AsyncRequest, Event, SetKey, Snapshot};

/// Why the SETs of an event could not be made or signed: the store could not be read, or the
/// signer failed (its key was proven at start-up, so this is not the client's fault either).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the store failed.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// Signing failed.
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// One SET before it is signed.
pub struct PendingSet {
    /// Its `jti`.
    pub jti: String,
    claims: Claims,
}

/// A SET's claims: a log event's, or an asyncresp one's (already a JSON object).
enum Claims {
    Event(Box<SetClaims>),
    Outcome(Map<String, Value>),
}

/// The SETs of the log, per feed.
pub struct SetSource {
    core: Arc<SecurityEvents>,
}

impl SetSource {
    /// The SETs `core` makes and signs.
    pub fn new(core: Arc<SecurityEvents>) -> SetSource {
        SetSource { core }
    }

    /// Whether each Group is a feed of its members (SET_GROUP_AS_FEED).
    pub fn group_as_feed(&self) -> bool {
        self.core.config.group_as_feed
    }

    /// The SETs `event` yields for `feed`, in their order (the index is the SET's within the event).
    pub fn sets(
        &self,
        event: &Event,
        snap: &Snapshot,
        feed: &str,
    ) -> Result<Vec<PendingSet>, SourceError> {
        let sets = sets_of(event, snap, &FeedId::parse(feed), &self.core.config)?;
        Ok(sets
            .into_iter()
            .map(|claims| PendingSet {
                jti: claims.jti.clone(),
                claims: Claims::Event(Box::new(claims)),
            })
            .collect())
    }

    /// The asyncresp SETs of the finished request `set_txn` on `feed`, in operation order: none
    /// but on the default feed (an outcome concerns its request, not a group's members).
    pub fn outcome_sets(
        &self,
        feed: &str,
        set_txn: &str,
        request: &AsyncRequest,
    ) -> Vec<PendingSet> {
        if !self.carries_outcomes(feed) {
            return Vec::new();
        }
        let feed = FeedId::default_feed();
        asyncresp::claims_of(set_txn, request, Some(&feed), Some(&self.core.config))
            .into_iter()
            .map(|(txn, claims)| PendingSet {
                jti: format!("{feed}:{txn}"),
                claims: Claims::Outcome(claims),
            })
            .collect()
    }

    /// Whether `feed` carries the asyncresp SETs: the default feed only.
    pub fn carries_outcomes(&self, feed: &str) -> bool {
        FeedId::parse(feed) == FeedId::default_feed()
    }

    /// The compact serialisation of a signed SET.
    pub fn sign(&self, set: &PendingSet) -> Result<String, SourceError> {
        Ok(match &set.claims {
            Claims::Event(claims) => self.core.signer.sign(claims)?,
            Claims::Outcome(claims) => self.core.signer.sign_claims(claims.clone())?,
        })
    }

    /// The Set-Txn of the request whose asyncresp SET `jti` on `feed` names; `None` if it does
    /// not read as one.
    pub fn locate_outcome<'a>(&self, feed: &str, jti: &'a str) -> Option<&'a str> {
        let op_txn = asyncresp::op_txn_of(&FeedId::parse(feed), jti)?;
        Some(asyncresp::set_txn_of(op_txn))
    }

    /// Where a `jti` of `feed` comes from; `None` if it does not read as one of `feed`'s.
    pub fn locate(&self, feed: &str, jti: &str) -> Option<SetKey> {
        let jti = Jti::parse(jti)?;
        let index = u32::try_from(jti.index).ok()?;
        (jti.feed.as_str() == feed).then_some((jti.position, index))
    }
}
