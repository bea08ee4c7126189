//! SET poll delivery (RFC 8936): each receiver (an API key's name) polls a feed, acknowledges
//! what it kept and is sent what it has not acknowledged yet.
//!
//! Nothing is stored twice: the SETs are made from the log at each poll (`source`), so the log is
//! the retention. What is stored is each receiver's acknowledgements per feed
//! ([`SetAcks`](crate::store::SetAcks)), through the writer like a checkpoint, before the poll that
//! carried them is answered. What was delivered and not yet acknowledged is kept in memory
//! (`stream`): it is left out of later polls until SET_POLL_REDELIVER_SECONDS have passed, and a
//! restart forgets it, which redelivers it (RFC 8936 §2.4 lets the transmitter).
//!
//! `request` reads a poll request, `stream` is one receiver's state on one feed and the scan that
//! picks its SETs, `source` is where SETs come from. The service (`service/events.rs`) runs the
//! steps: acknowledge, scan, and wait on the committed position for a long poll.

mod request;
mod source;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use request::PollRequest;
pub use source::{SetSource, SourceError};
pub use stream::{Scan, Stream};

use crate::store::{SetAcks, Store, StoreError, Write, WriteContext};

/// The actor recorded for acknowledgement writes (they append no event, so it is never seen).
const ACTOR: &str = "set-poll";

/// Why a poll could not be answered (the receiver is not at fault: 503, retry).
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Reading the store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The SETs could not be made or signed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Poll delivery of a serving scimd: every receiver's state on every feed it polled.
pub struct Poller {
    store: Arc<Store>,
    source: SetSource,
    /// SET_POLL_WAIT_SECONDS: the longest a long poll waits.
    pub wait: Duration,
    /// SET_POLL_REDELIVER_SECONDS.
    redeliver: Duration,
    streams: Mutex<HashMap<(String, String), SharedStream>>,
    /// `true` once the server is shutting down: long polls answer at once then.
    closing: tokio::sync::watch::Sender<bool>,
}

/// One receiver's state on one feed, which its polls take turns with.
type SharedStream = Arc<tokio::sync::Mutex<Stream>>;

impl Poller {
    /// Poll delivery over `store` of the SETs `source` makes; a long poll waits up to `wait`, and
    /// a SET not acknowledged is delivered again after `redeliver`.
    pub fn new(
        store: Arc<Store>,
        source: SetSource,
        wait: Duration,
        redeliver: Duration,
    ) -> Poller {
        Poller {
            store,
            source,
            wait,
            redeliver,
            streams: Mutex::new(HashMap::new()),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends every long poll (each answers what it has, nothing) and every later one at once: the
    /// server is shutting down, and a poll waiting SET_POLL_WAIT_SECONDS would hold it up.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Whether [`close`](Self::close) was called, to wait on.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// The SETs' source (which feeds exist).
    pub fn source(&self) -> &SetSource {
        &self.source
    }

    /// `receiver`'s state on `feed`: one per pair, so that its polls take turns (a lock held
    /// across a scan, never across a long poll's wait).
    pub fn stream(&self, receiver: &str, feed: &str) -> SharedStream {
        // Each change is one insert: a panic elsewhere cannot leave the map half-written.
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams
            .entry((receiver.to_owned(), feed.to_owned()))
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Stream::new(
                    receiver.to_owned(),
                    feed.to_owned(),
                )))
            })
            .clone()
    }

    /// Applies a poll's `ack` and `setErrs` to `stream` (a store read: run it off the async
    /// runtime) and answers the state to save, if any of them is news.
    pub fn acknowledge(
        &self,
        stream: &mut Stream,
        request: &PollRequest,
    ) -> Result<Option<SetAcks>, PollError> {
        stream.acknowledge(&self.store, &self.source, request)
    }

    /// Saves `acks` as `stream`'s state once it is durable: the poll is answered only after this.
    pub async fn save(&self, stream: &mut Stream, acks: SetAcks) -> Result<(), scim::ScimError> {
        let write = Write::SetAcks {
            receiver: stream.receiver().to_owned(),
            feed: stream.feed().to_owned(),
            acks: acks.clone(),
        };
        let ctx = WriteContext {
            actor: ACTOR.into(),
            txn_id: uuid::Uuid::new_v4().to_string(),
        };
        self.store.write(write, ctx).await?;
        stream.saved(acks);
        Ok(())
    }

    /// Picks up to `max` SETs for `stream` (store reads and signing: run it off the async
    /// runtime) and records them as delivered.
    pub fn scan(&self, stream: &mut Stream, max: usize) -> Result<Scan, PollError> {
        stream.scan(&self.store, &self.source, max, self.redeliver)
    }
}
