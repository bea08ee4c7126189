//! Security event feeds as the API offers them: the feeds a receiver may poll, and one RFC 8936
//! poll (acknowledge, pick the SETs, and for a long poll wait on the committed position). The
//! state of each receiver's delivery is `fanout::poll`'s.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::{LIST_RESPONSE_SCHEMA, Service, unavailable};
use crate::fanout::poll::{PollError, PollRequest, Poller, Scan};
use crate::fanout::set::FeedId;
use crate::fanout::set::feed::DEFAULT_FEED;
use scim::{ResourceType, ScimError};

/// A poll's outcome is the server's problem: 503, retry (the cause is logged).
fn failed(e: PollError) -> ScimError {
    tracing::error!(error = %e, "a SET poll failed; answering 503");
    ScimError::unavailable("the SETs could not be read; retry the poll")
}

impl Service {
    /// The server is shutting down: long polls answer now (see [`Poller::close`]).
    pub fn shutting_down(&self) {
        if let Some(poller) = &self.poller {
            poller.close();
        }
    }

    /// Switches poll delivery on (the SETs are configured).
    pub fn with_poller(mut self, poller: Arc<Poller>) -> Service {
        self.poller = Some(poller);
        self
    }

    /// Poll delivery, or 404 when security events are off.
    fn poller(&self) -> Result<&Arc<Poller>, ScimError> {
        self.poller.as_ref().ok_or_else(|| {
            ScimError::not_found(
                "security events are off: set SET_SIGNING_SECRET, SET_SIGNING_KEY or SET_SIGNING=none to serve feeds",
            )
        })
    }

    /// Whether `feed` is one this server serves: `default`, and with SET_GROUP_AS_FEED
    /// `group:{id}` for each existing Group.
    fn feed_exists(&self, feed: &str) -> Result<bool, ScimError> {
        let poller = self.poller()?;
        if feed == DEFAULT_FEED {
            return Ok(true);
        }
        let feed = FeedId::parse(feed);
        let Some(group_id) = feed.group_id() else {
            return Ok(false);
        };
        if !poller.source().group_as_feed() {
            return Ok(false);
        }
        let snap = self.store.snapshot().map_err(unavailable)?;
        Ok(snap
            .get(ResourceType::Group, group_id)
            .map_err(unavailable)?
            .is_some())
    }

    /// One feed as discovery lists it.
    fn feed_doc(&self, base: &str, id: &str, group: Option<(&Value, u64)>) -> Value {
        let mut doc = json!({
            "id": id,
            "poll": format!("{base}/Events/Feeds/{id}/poll"),
        });
        match group {
            None => doc["description"] = json!("Every event of the log."),
            Some((display_name, subjects)) => {
                doc["description"] = json!("The events about this Group's direct members.");
                doc["displayName"] = display_name.clone();
                doc["subjects"] = json!(subjects);
            }
        }
        doc
    }

    /// The feeds (a ListResponse): `default`, then each Group's feed with SET_GROUP_AS_FEED, in
    /// id order; `start_index` is 1-based, `count` at most PAGE_SIZE.
    pub fn feeds(
        &self,
        base: &str,
        start_index: Option<i64>,
        count: Option<i64>,
    ) -> Result<Value, ScimError> {
        let poller = self.poller()?;
        let start = u64::try_from(start_index.unwrap_or(1).max(1)).unwrap_or(1);
        let count = usize::try_from(count.unwrap_or(self.page_size as i64).max(0))
            .unwrap_or(self.page_size)
            .min(self.page_size);
        let snap = self.store.snapshot().map_err(unavailable)?;
        let groups = if poller.source().group_as_feed() {
            snap.count(ResourceType::Group).map_err(unavailable)?
        } else {
            0
        };
        let mut resources = Vec::new();
        let mut skip = start - 1;
        if skip == 0 {
            if count > 0 {
                resources.push(self.feed_doc(base, DEFAULT_FEED, None));
            }
        } else {
            skip -= 1;
        }
        if groups > 0 && resources.len() < count {
            let page = snap
                .list(ResourceType::Group, skip, count - resources.len())
                .map_err(unavailable)?;
            for (id, group) in page {
                let subjects = snap.member_count(&id).map_err(unavailable)?;
                let name = group.attributes.get("displayName").unwrap_or(&Value::Null);
                let feed = FeedId::group(&id);
                resources.push(self.feed_doc(base, feed.as_str(), Some((name, subjects))));
            }
        }
        Ok(json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": 1 + groups,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }))
    }

    /// One feed, or 404.
    pub fn feed(&self, base: &str, id: &str) -> Result<Value, ScimError> {
        if !self.feed_exists(id)? {
            return Err(no_feed(id));
        }
        let feed = FeedId::parse(id);
        let Some(group_id) = feed.group_id() else {
            return Ok(self.feed_doc(base, id, None));
        };
        let snap = self.store.snapshot().map_err(unavailable)?;
        let group = snap
            .get(ResourceType::Group, group_id)
            .map_err(unavailable)?
            .ok_or_else(|| no_feed(id))?;
        let subjects = snap.member_count(group_id).map_err(unavailable)?;
        let name = group.attributes.get("displayName").unwrap_or(&Value::Null);
        Ok(self.feed_doc(base, id, Some((name, subjects))))
    }

    /// RFC 8936 §2: one poll of `feed` by `receiver` (the API key's name). The acknowledgements
    /// it carries are durable before it is answered; then it answers the SETs the receiver has
    /// neither acknowledged nor been sent within SET_POLL_REDELIVER_SECONDS, or, for a long poll
    /// with none, waits up to SET_POLL_WAIT_SECONDS for one. Store reads run on the read pool.
    pub async fn poll(
        self: &Arc<Self>,
        receiver: &str,
        feed: &str,
        body: &Value,
    ) -> Result<Value, ScimError> {
        let poller = self.poller()?.clone();
        let request = PollRequest::parse(body)
            .map_err(|e| ScimError::invalid_syntax(format!("not a valid poll request: {e}")))?;
        let feed_id = feed.to_owned();
        if !self.read(move |s| s.feed_exists(&feed_id)).await? {
            return Err(no_feed(feed));
        }
        let deadline = Instant::now() + poller.wait;
        let stream = poller.stream(receiver, feed);
        let mut guard = stream.clone().lock_owned().await;
        let (this_poll, latest_poll) = guard.begin_poll();
        let (p, r) = (poller.clone(), request.clone());
        let (mut guard, acks) = self
            .read(move |_| {
                let mut guard = guard;
                let acks = p.acknowledge(&mut guard, &r).map_err(failed)?;
                Ok((guard, acks))
            })
            .await?;
        if let Some(acks) = acks {
            poller.save(&mut guard, acks).await?;
        }
        loop {
            // Taken before the scan, so that a commit during the scan wakes the wait below.
            let mut committed = self.store.committed();
            let p = poller.clone();
            let max = request.max_events;
            let (held, scan): (_, Scan) = self
                .read(move |_| {
                    let mut guard = guard;
                    let scan = p.scan(&mut guard, max).map_err(failed)?;
                    Ok((guard, scan))
                })
                .await?;
            let now = Instant::now();
            let mut closing = poller.closing();
            let closed = *closing.borrow_and_update();
            if !scan.sets.is_empty()
                || scan.more
                || request.return_immediately
                || now >= deadline
                || closed
            {
                let sets: Map<String, Value> = scan
                    .sets
                    .into_iter()
                    .map(|(jti, token)| (jti, Value::String(token)))
                    .collect();
                return Ok(json!({"sets": sets, "moreAvailable": scan.more}));
            }
            // Nothing to send: wait, without holding the stream, for a later commit, for a
            // delivered SET to fall due again, or for the long poll's end.
            drop(held);
            let wake = scan.next_due.map_or(deadline, |due| due.min(deadline));
            let head = scan.head;
            // An asynchronous outcome decided without a write commits without moving the log's
            // position: on the feed that carries them, any commit wakes the poll.
            let any_commit = poller.source().carries_outcomes(feed);
            let later_commit = async {
                while committed.changed().await.is_ok() {
                    if any_commit || *committed.borrow_and_update() > head {
                        return;
                    }
                }
                // The store is closing: nothing more will be committed.
                std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = tokio::time::timeout_at(wake.into(), later_commit) => {}
                _ = closing.changed() => {}
            }
            guard = stream.clone().lock_owned().await;
            // A newer poll of this receiver is numbered under the lock: this one (perhaps of a
            // connection that is gone) takes no SET and ends with nothing when its wait does.
            // Not at once: two live pollers sharing a key would end each other's polls in a loop.
            if *latest_poll.borrow() != this_poll {
                drop(guard);
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = closing.changed() => {}
                }
                return Ok(json!({"sets": {}, "moreAvailable": false}));
            }
        }
    }
}

/// 404 for a feed this server does not serve.
fn no_feed(id: &str) -> ScimError {
    ScimError::not_found(format!(
        "no feed {id:?}: the feeds are \"default\" and, with SET_GROUP_AS_FEED=true, \"group:\" and each Group's id (GET /Events/Feeds lists them)"
    ))
}
