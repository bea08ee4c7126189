//! What one poll receiver has acknowledged of one SET feed (RFC 8936 §2.4), kept in the store so
//! that a scimd restart neither re-sends what was acknowledged nor loses what was not.
//!
//! A SET is named by where it comes from: the log position of its event and its index among the
//! SETs that event yields for the feed (the same pair its `jti` is derived from). The state is a
//! low-water mark, `through` (every SET of every event up to it is acknowledged), plus the
//! acknowledged SETs above it, so it stays small while a receiver acknowledges roughly in order.
//! The `misc:asyncresp` SETs of asynchronous outcomes are kept the same way beside them, named by
//! the outcome's completion sequence and the operation's index in it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Where a SET comes from: (log position of its event, index among that event's SETs for a feed).
pub type SetKey = (u64, u32);

/// A SET of a feed: one an event of the log yields, or the asyncresp SET of an operation of a
/// finished asynchronous request (its completion sequence, the operation's index in its outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetId {
    /// A SET of the log.
    Event(SetKey),
    /// An asyncresp SET.
    Outcome((u64, u32)),
}

/// How many refusals (`setErrs`) are kept for `/status`; older ones are only counted.
const KEPT_REFUSALS: usize = 10;

/// One receiver's acknowledgements on one feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAcks {
    /// Every SET of the events at positions up to this one is acknowledged (or there was none).
    pub through: u64,
    /// Acknowledged SETs of events after `through`.
    pub acked: BTreeSet<SetKey>,
    /// Every asyncresp SET of the outcomes up to this completion sequence is acknowledged.
    #[serde(default)]
    pub outcomes_through: u64,
    /// Acknowledged asyncresp SETs of outcomes after `outcomes_through`.
    #[serde(default)]
    pub outcomes_acked: BTreeSet<(u64, u32)>,
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

    /// Whether the SET `id` (of either kind) is acknowledged.
    pub fn is_set_acked(&self, id: SetId) -> bool {
        match id {
            SetId::Event(key) => self.is_acked(key),
            SetId::Outcome(key) => {
                key.0 <= self.outcomes_through || self.outcomes_acked.contains(&key)
            }
        }
    }

    /// Records an acknowledgement; `false` if it already was one.
    pub fn ack(&mut self, id: SetId) -> bool {
        if self.is_set_acked(id) {
            return false;
        }
        match id {
            SetId::Event(key) => self.acked.insert(key),
            SetId::Outcome(key) => self.outcomes_acked.insert(key),
        }
    }

    /// Records a refusal (which acknowledges the SET); `false` if the SET was already acknowledged.
    pub fn refuse(&mut self, key: SetId, refusal: Refusal) -> bool {
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

    /// Moves the asyncresp low-water mark up to completion sequence `through`.
    pub fn advance_outcomes(&mut self, through: u64) {
        if through > self.outcomes_through {
            self.outcomes_through = through;
            self.outcomes_acked = self.outcomes_acked.split_off(&(through + 1, 0));
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
        assert!(acks.ack(SetId::Event((3, 0))));
        assert!(acks.ack(SetId::Event((3, 1))));
        assert!(
            !acks.ack(SetId::Event((3, 1))),
            "a repeated ack is no change"
        );
        assert!(acks.ack(SetId::Event((5, 0))));
        acks.advance(3);
        assert_eq!(acks.through, 3);
        assert_eq!(acks.acked, BTreeSet::from([(5, 0)]));
        assert!(acks.is_acked((2, 7)) && acks.is_acked((5, 0)) && !acks.is_acked((4, 0)));
        assert!(
            !acks.ack(SetId::Event((1, 0))),
            "below the mark is already acknowledged"
        );
        acks.advance(2);
        assert_eq!(acks.through, 3, "the mark never goes back");
        // The asyncresp SETs have a mark of their own.
        assert!(!acks.is_set_acked(SetId::Outcome((1, 0))));
        assert!(acks.ack(SetId::Outcome((2, 1))));
        acks.advance_outcomes(1);
        assert!(acks.is_set_acked(SetId::Outcome((1, 0))));
        assert!(!acks.is_set_acked(SetId::Outcome((2, 0))));
        assert!(acks.is_set_acked(SetId::Outcome((2, 1))));
        // Acknowledgements saved before asyncresp SETs existed still read.
        let old = SetAcks::decode(br#"{"through":4,"acked":[],"refused":0,"refusals":[]}"#);
        assert_eq!(old.map(|a| a.outcomes_through).ok(), Some(0));
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
            assert!(acks.refuse(SetId::Event((9, i)), refusal.clone()));
            assert!(!acks.refuse(SetId::Event((9, i)), refusal), "refused once");
        }
        assert_eq!(acks.refused, 15);
        assert_eq!(acks.refusals.len(), KEPT_REFUSALS);
        assert_eq!(acks.refusals[0].jti, "j5");
        assert!(acks.is_acked((9, 14)));
        let round = SetAcks::decode(&acks.encode().unwrap()).unwrap();
        assert_eq!(round, acks);
    }
}
