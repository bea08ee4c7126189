//! When a message the broker will not take is refused *for good*, so the AMQP publisher parks it
//! instead of retrying it forever (which would hold back every later message).
//!
//! A refusal is a return (no queue bound to take the message) or the broker closing the channel
//! with PRECONDITION_FAILED (a message over its `max_message_size`). Nacks are not refusals: a
//! full queue that rejects publishes drains again. After a refusal, the publisher reconnects
//! (declaring and binding its queue again, so a deleted queue comes back) and publishes one
//! message at a time up to the end of the window that failed, so the message at fault is known
//! exactly: a channel error does not say which message caused it. A message refused
//! [`PARK_AFTER`] times in a row while published alone is refused for good.

/// How many times in a row a message published alone must be refused to be parked.
pub const PARK_AFTER: u32 = 3;

/// The publisher's memory of recent refusals.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Publish one message at a time while the checkpoint is below this position.
    alone_until: u64,
    /// The message last refused while published alone, and how many times in a row.
    position: u64,
    strikes: u32,
}

impl Refusals {
    /// How many messages to publish after `checkpoint`: one while a refusal is being pinned down,
    /// else `window`.
    pub fn window(&self, checkpoint: u64, window: usize) -> usize {
        if checkpoint < self.alone_until {
            1
        } else {
            window
        }
    }

    /// Records that the message at `position` was refused in a window of `published` messages
    /// ending at `last`; true when it is now refused for good (and should be parked).
    pub fn refused(&mut self, position: u64, published: usize, last: u64) -> bool {
        self.alone_until = self.alone_until.max(last);
        if published != 1 {
            return false;
        }
        if self.position == position {
            self.strikes += 1;
        } else {
            self.position = position;
            self.strikes = 1;
        }
        if self.strikes >= PARK_AFTER {
            self.strikes = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_in_a_window_only_narrows_the_window() {
        let mut r = Refusals::default();
        assert_eq!(r.window(10, 512), 512);
        assert!(!r.refused(12, 40, 50));
        assert_eq!(r.window(10, 512), 1);
        assert_eq!(r.window(49, 512), 1);
        assert_eq!(r.window(50, 512), 512);
    }

    #[test]
    fn only_refusals_in_a_row_of_the_same_message_alone_park_it() {
        let mut r = Refusals::default();
        assert!(!r.refused(12, 40, 50));
        assert!(!r.refused(12, 1, 12));
        assert!(!r.refused(12, 1, 12));
        assert!(!r.refused(13, 1, 13), "another message starts a new count");
        assert!(!r.refused(13, 1, 13));
        assert!(r.refused(13, 1, 13));
        assert!(!r.refused(13, 1, 13), "the count starts over once parked");
    }
}
