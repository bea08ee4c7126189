//! Event feeds (RFC 9967 §1.3: a logical series of events for one receiver) and the `jti` each
//! SET of a feed carries.
//!
//! scimd serves the default feed (every event) and, with SET_GROUP_AS_FEED, one feed per Group
//! whose subjects are its direct members. RFC 9967 §2.7 leaves feeds undefined, so both the ids
//! and the group rule are this server's choice (README, "Security events"). A group's feed is
//! `group:{id}`, not the bare id: ids can be imported, and a group whose id is `default` would
//! otherwise share the default feed's id and `jti`s.

use std::fmt;

/// The id of the feed of every event.
pub const DEFAULT_FEED: &str = "default";

/// What a group feed's id starts with, before the Group's id.
const GROUP_FEED_PREFIX: &str = "group:";

/// A feed's id: `default`, or `group:` and a Group's id for that group's feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeedId(String);

impl FeedId {
    /// The default feed: every event of the log.
    pub fn default_feed() -> FeedId {
        FeedId(DEFAULT_FEED.to_owned())
    }

    /// The feed of group `group_id`'s members.
    pub fn group(group_id: &str) -> FeedId {
        FeedId(format!("{GROUP_FEED_PREFIX}{group_id}"))
    }

    /// A feed id as a client names it (a poll URL's segment).
    pub fn parse(id: &str) -> FeedId {
        FeedId(id.to_owned())
    }

    /// The group whose members this feed follows; `None` for the default feed (and for an id
    /// a client made up that names neither).
    pub fn group_id(&self) -> Option<&str> {
        self.0.strip_prefix(GROUP_FEED_PREFIX)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SET's `jti`: `{feed}:{position}:{index}`, the feed, the log position of the event and the
/// index of the SET among those the event yields for that feed. Deterministic, so a redelivery or
/// a replay carries the same `jti`; readable, so a receiver's `ack` (RFC 8936) names the place in
/// the log it acknowledges without a look-up table. Unique within a feed, as RFC 8417 §2.2 asks;
/// receivers of several issuers key it with `iss`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jti {
    /// The feed the SET belongs to.
    pub feed: FeedId,
    /// The log position of the event the SET describes.
    pub position: u64,
    /// The SET's index among those the event yields for the feed.
    pub index: usize,
}

impl Jti {
    /// Reads a `jti` this server issued; `None` for any other text. Group ids may hold `:`
    /// (imported ids are kept as they were), so the numbers are read from the right.
    pub fn parse(text: &str) -> Option<Jti> {
        let mut parts = text.rsplitn(3, ':');
        let index = parts.next()?.parse().ok()?;
        let position = parts.next()?.parse().ok()?;
        let feed = parts.next().filter(|f| !f.is_empty())?;
        Some(Jti {
            feed: FeedId::parse(feed),
            position,
            index,
        })
    }
}

impl fmt::Display for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.feed, self.position, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_reads_back_to_its_feed_position_and_index() {
        let jti = Jti {
            feed: FeedId::group("a:b"),
            position: 42,
            index: 3,
        };
        assert_eq!(jti.to_string(), "group:a:b:42:3");
        assert_eq!(Jti::parse("group:a:b:42:3"), Some(jti));
        assert_eq!(
            Jti::parse("default:7:0").map(|j| j.feed),
            Some(FeedId::default_feed())
        );
        assert_eq!(Jti::parse("7:0"), None);
        assert_eq!(Jti::parse("default:x:0"), None);
        // An asyncresp SET's jti (`{feed}:{txn}`) is not a log event's.
        assert_eq!(
            Jti::parse("default:5e0c6a1e-8b1f-4a0e-9c7d-2b1d0f3a4c5e:0"),
            None
        );
    }

    #[test]
    fn a_group_whose_id_is_default_has_a_feed_of_its_own() {
        let group = FeedId::group(DEFAULT_FEED);
        assert_ne!(group, FeedId::default_feed());
        assert_eq!(group.group_id(), Some(DEFAULT_FEED));
        assert_eq!(FeedId::default_feed().group_id(), None);
        assert_eq!(FeedId::parse("e9e30dba").group_id(), None);
        let jti = Jti::parse("group:default:7:0").map(|j| j.feed);
        assert_eq!(jti, Some(group));
    }
}
