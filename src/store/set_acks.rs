//! What one poll receiver has acknowledged of one SET feed (RFC 8936 §2.4), kept in the store so
//! that a scimd restart neither re-sends what was acknowledged nor loses what was not.
//!
//! A SET is named by where it comes from: the log position of its event and its index among the
//! SETs that event yields for the feed (the same pair its `jti` is derived from). The state is a
//! low-water mark, `through` (every SET of every event up to it is acknowledged), plus the
//! acknowledged SETs above it, so it stays small while a receiver acknowledges roughly in order.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Where a SET comes from: (log position of its event, index among that event's SETs for a feed).
pub type SetKey = (u64, u32);

/// How many refusals (`setErrs`) are kept for `/status`; older ones are only counted.
const KEPT_REFUSALS: usize = 10;

/// One receiver's acknowledgements on one feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAcks {
    /// Every SET of the events at positions up to this one is acknowledged (or there was none).
    pub through: u64,
    /// Acknowledged SETs of events after `through`.
    pub acked: BTreeSet<SetKey>,
    /// How many SETs the receiver refused (RFC 8936 §2.6 `setErrs`), ever.
    pub refused: u64,
    /// The latest refusals, oldest first.
    pub refusals: Vec<Refusal>,
}

/// A SET the receiver said it will never accept (`setErrs`): acknowledged all the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The SET's `jti`.
    pub jti: String,
    /// RFC 8935 §2.4 error code (`invalid_request`, `invalid_key`, …).
    pub err: String,
    /// The receiver's words.
    pub description: String,
    /// When the refusal arrived.
    pub at: DateTime<Utc>,
}

impl SetAcks {
    /// Whether the SET `key` is acknowledged.
    pub fn is_acked(&self, key: SetKey) -> bool {
        key.0 <= self.through || self.acked.contains(&key)
    }

    /// Records an acknowledgement; `false` if it already was one.
    pub fn ack(&mut self, key: SetKey) -> bool {
        !self.is_acked(key) && self.acked.insert(key)
    }

    /// Records a refusal (which acknowledges the SET); `false` if the SET was already acknowledged.
    pub fn refuse(&mut self, key: SetKey, refusal: Refusal) -> bool {
        if !self.ack(key) {
            return false;
        }
        self.refused += 1;
        self.refusals.push(refusal);
        if self.refusals.len() > KEPT_REFUSALS {
            self.refusals.remove(0);
        }
        true
    }

    /// Moves the low-water mark up to `through` (the caller has seen that every SET up to it is
    /// acknowledged) and forgets the entries it now covers.
    pub fn advance(&mut self, through: u64) {
        if through > self.through {
            self.through = through;
            self.acked = self.acked.split_off(&(through + 1, 0));
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|source| StoreError::Encode {
            what: "a SET receiver's acknowledgements",
            source,
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| {
            StoreError::Corrupt(format!(
                "a SET receiver's acknowledgements do not decode: {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_above_the_mark_are_kept_until_the_mark_covers_them() {
        let mut acks = SetAcks::default();
        assert!(acks.ack((3, 0)));
        assert!(acks.ack((3, 1)));
        assert!(!acks.ack((3, 1)), "a repeated ack is no change");
        assert!(acks.ack((5, 0)));
        acks.advance(3);
        assert_eq!(acks.through, 3);
        assert_eq!(acks.acked, BTreeSet::from([(5, 0)]));
        assert!(acks.is_acked((2, 7)) && acks.is_acked((5, 0)) && !acks.is_acked((4, 0)));
        assert!(!acks.ack((1, 0)), "below the mark is already acknowledged");
        acks.advance(2);
        assert_eq!(acks.through, 3, "the mark never goes back");
    }

    #[test]
    fn refusals_count_as_acknowledged_and_only_the_latest_are_kept() {
        let mut acks = SetAcks::default();
        for i in 0..15u32 {
            let refusal = Refusal {
                jti: format!("j{i}"),
                err: "invalid_key".into(),
                description: "no key".into(),
                at: Utc::now(),
            };
            assert!(acks.refuse((9, i), refusal.clone()));
            assert!(!acks.refuse((9, i), refusal), "refused once");
        }
        assert_eq!(acks.refused, 15);
        assert_eq!(acks.refusals.len(), KEPT_REFUSALS);
        assert_eq!(acks.refusals[0].jti, "j5");
        assert!(acks.is_acked((9, 14)));
        let round = SetAcks::decode(&acks.encode().unwrap()).unwrap();
        assert_eq!(round, acks);
    }
}
