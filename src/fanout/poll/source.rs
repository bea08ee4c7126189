//! Where poll delivery gets its SETs: the security event core (`fanout::set`) turns each event of
//! the log into the SETs a feed carries and signs them; this is the one place poll delivery
//! calls it.

use std::sync::Arc;

use crate::fanout::set::claims::{ClaimsError, SetClaims};
use crate::fanout::set::{FeedId, Jti, SecurityEvents, SigningError, sets_of};
use crate::store::{Event, SetKey, Snapshot};

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
    claims: SetClaims,
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
                claims,
            })
            .collect())
    }

    /// The compact serialisation of a signed SET.
    pub fn sign(&self, set: &PendingSet) -> Result<String, SourceError> {
        Ok(self.core.signer.sign(&set.claims)?)
    }

    /// Where a `jti` of `feed` comes from; `None` if it does not read as one of `feed`'s.
    pub fn locate(&self, feed: &str, jti: &str) -> Option<SetKey> {
        let jti = Jti::parse(jti)?;
        let index = u32::try_from(jti.index).ok()?;
        (jti.feed.as_str() == feed).then_some((jti.position, index))
    }
}
