//! One receiver's state on one feed: what it has acknowledged (durable, [`SetAcks`]) and what was
//! delivered to it and not acknowledged yet (in memory), and the scan of the log that picks the
//! SETs of its next poll. On the default feed the scan then reads the asynchronous outcomes
//! (completion order) for their asyncresp SETs: the log's SETs come first in a poll, so an
//! outcome's SET may come before or after the provisioning SETs of what its request wrote.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::PollError;
use super::request::PollRequest;
use super::source::{PendingSet, SetSource};
use crate::store::{Refusal, SetAcks, SetId, Snapshot, Store};

/// Events read from the store at a time.
const CHUNK: usize = 256;

/// The most events one scan reads: a feed whose SETs are rare (a small group's) in a long log is
/// read a bounded stretch per poll, which then answers `moreAvailable` so the receiver polls on.
const SCAN_BUDGET: u64 = 10_000;

/// A receiver's text as it is logged, stored and shown: at most `max` characters, no control
/// characters (a receiver decides what it sends; the log and `/status` must stay readable).
fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// One receiver's state on one feed.
pub struct Stream {
    receiver: String,
    feed: String,
    /// The durable acknowledgements, once read from the store.
    acks: Option<SetAcks>,
    /// SETs delivered and not acknowledged yet: their `jti` and when they were delivered.
    outstanding: BTreeMap<SetId, (String, Instant)>,
    /// The same SETs by `jti`, for the acknowledgements that name them.
    by_jti: HashMap<String, SetId>,
    /// How many SETs the feed has at each position after the low-water mark that has any, as
    /// far as scans have read (`sized_through`): what lets an acknowledgement move the mark.
    sizes: BTreeMap<u64, u32>,
    /// Every position up to this one has been read by a scan (its SETs are in `sizes`).
    sized_through: u64,
    /// The number of the receiver's latest poll of this feed: an older long poll still waiting
    /// takes no SET once a newer one comes (see [`Stream::begin_poll`]).
    latest_poll: tokio::sync::watch::Sender<u64>,
}

/// What one scan picked.
pub struct Scan {
    /// `jti` and compact SET of each SET picked, in log order.
    pub sets: Vec<(String, String)>,
    /// Whether more SETs wait than were picked (RFC 8936 §2.3 `moreAvailable`).
    pub more: bool,
    /// The committed log position the scan read up to: a long poll waits for a later one.
    pub head: u64,
    /// When the first SET delivered and still not acknowledged may be delivered again.
    pub next_due: Option<Instant>,
}

impl Stream {
    pub(super) fn new(receiver: String, feed: String) -> Stream {
        Stream {
            receiver,
            feed,
            acks: None,
            outstanding: BTreeMap::new(),
            by_jti: HashMap::new(),
            sizes: BTreeMap::new(),
            sized_through: 0,
            latest_poll: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Numbers a new poll of this stream and answers its number and a watch on the latest one.
    /// A receiver whose connection dropped during a long poll polls again; the old poll, which
    /// the server may not see is dead, must then not take the next SETs (they would wait out
    /// SET_POLL_REDELIVER_SECONDS), so once a newer poll is numbered it takes none.
    pub fn begin_poll(&mut self) -> (u64, tokio::sync::watch::Receiver<u64>) {
        let mut number = 0;
        self.latest_poll.send_modify(|latest| {
            *latest += 1;
            number = *latest;
        });
        (number, self.latest_poll.subscribe())
    }

    /// The receiver: the name of the API key that polls.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// The feed polled.
    pub fn feed(&self) -> &str {
        &self.feed
    }

    /// The acknowledgements, read from the store the first time.
    fn loaded(&mut self, snap: &Snapshot) -> Result<&mut SetAcks, PollError> {
        if self.acks.is_none() {
            self.acks = Some(snap.set_acks(&self.receiver, &self.feed)?);
        }
        Ok(self.acks.get_or_insert_with(SetAcks::default))
    }

    /// The state with `request`'s acknowledgements and refusals added, if any of them is news.
    /// A `jti` that names no SET of this feed is ignored (RFC 8936 §2.4 does not make it an
    /// error); a refusal is logged at WARN and kept for `/status`.
    pub(super) fn acknowledge(
        &mut self,
        store: &Store,
        source: &SetSource,
        request: &PollRequest,
    ) -> Result<Option<SetAcks>, PollError> {
        if request.ack.is_empty() && request.set_errs.is_empty() {
            return Ok(None);
        }
        let snap = store.snapshot()?;
        let mut acks = self.loaded(&snap)?.clone();
        let mut changed = false;
        for jti in &request.ack {
            if let Some(key) = self.resolve(&snap, source, &acks, jti)? {
                changed |= acks.ack(key);
            }
        }
        for (jti, (err, description)) in &request.set_errs {
            let Some(key) = self.resolve(&snap, source, &acks, jti)? else {
                continue;
            };
            let refusal = Refusal {
                jti: jti.clone(),
                err: bounded(err, 64),
                description: bounded(description, 300),
                at: Utc::now(),
            };
            if acks.refuse(key, refusal.clone()) {
                changed = true;
                let (err, description) = (&refusal.err, &refusal.description);
                tracing::warn!(receiver = %self.receiver, feed = %self.feed, jti, err, description,
                    "a poll receiver refused a SET (setErrs); it counts as acknowledged and is not sent again");
            }
        }
        if changed {
            self.settle(&mut acks);
            settle_outcomes(&snap, &mut acks)?;
        }
        Ok(changed.then_some(acks))
    }

    /// Moves `acks`' low-water mark over the positions scans have read whose SETs are all
    /// acknowledged (positions without SETs for this feed included), so that what is saved
    /// stays a mark and a short list.
    fn settle(&mut self, acks: &mut SetAcks) {
        let mut through = acks.through.max(self.sized_through);
        for (&position, &count) in self.sizes.range(acks.through + 1..) {
            if !(0..count).all(|index| acks.is_acked((position, index))) {
                through = position - 1;
                break;
            }
        }
        acks.advance(through);
        self.sizes = self.sizes.split_off(&(acks.through + 1));
    }

    /// Where the SET named `jti` comes from, if it is a SET of this feed not yet acknowledged:
    /// one delivered since this server started, or one whose `jti` reads as this feed's and
    /// which the log yields (a SET delivered before a restart).
    fn resolve(
        &self,
        snap: &Snapshot,
        source: &SetSource,
        acks: &SetAcks,
        jti: &str,
    ) -> Result<Option<SetId>, PollError> {
        if let Some(key) = self.by_jti.get(jti) {
            return Ok(Some(*key));
        }
        if let Some(set_txn) = source.locate_outcome(&self.feed, jti) {
            return self.resolve_outcome(snap, source, acks, set_txn, jti);
        }
        let Some(key) = source.locate(&self.feed, jti) else {
            return Ok(None);
        };
        if acks.is_acked(key) {
            return Ok(None);
        }
        let Some(event) = snap.event(key.0)? else {
            return Ok(None);
        };
        let sets = source.sets(&event, snap, &self.feed)?;
        let index = usize::try_from(key.1).unwrap_or(usize::MAX);
        Ok(sets
            .get(index)
            .filter(|s| s.jti == jti)
            .map(|_| SetId::Event(key)))
    }

    /// The asyncresp SET `jti` of request `set_txn`, if the store still keeps its outcome and it
    /// is not acknowledged yet.
    fn resolve_outcome(
        &self,
        snap: &Snapshot,
        source: &SetSource,
        acks: &SetAcks,
        set_txn: &str,
        jti: &str,
    ) -> Result<Option<SetId>, PollError> {
        let Some(request) = snap.async_request(set_txn)? else {
            return Ok(None);
        };
        let Some(completion) = request.outcome.as_ref().map(|o| o.completion) else {
            return Ok(None);
        };
        let sets = source.outcome_sets(&self.feed, set_txn, &request);
        let Some(index) = sets.iter().position(|s| s.jti == jti) else {
            return Ok(None);
        };
        let id = SetId::Outcome((completion, u32::try_from(index).unwrap_or(u32::MAX)));
        Ok((!acks.is_set_acked(id)).then_some(id))
    }

    /// Takes `acks` as the durable state (it was just saved) and forgets the deliveries it
    /// acknowledges.
    pub(super) fn saved(&mut self, acks: SetAcks) {
        self.outstanding.retain(|key, (jti, _)| {
            let keep = !acks.is_set_acked(*key);
            if !keep {
                self.by_jti.remove(jti.as_str());
            }
            keep
        });
        self.acks = Some(acks);
    }

    /// Picks, in log order, up to `max` SETs neither acknowledged nor delivered within the last
    /// `redeliver`, signs them and records them as delivered. Moves the low-water mark over the
    /// events whose SETs are all acknowledged (in memory; it is saved with the next
    /// acknowledgement, and a restart only finds it again).
    pub(super) fn scan(
        &mut self,
        store: &Store,
        source: &SetSource,
        max: usize,
        redeliver: Duration,
    ) -> Result<Scan, PollError> {
        let snap = store.snapshot()?;
        let head = snap.position()?;
        let acks = self.loaded(&snap)?.clone();
        self.sized_through = self.sized_through.max(acks.through);
        let now = Instant::now();
        let mut picking = Picking {
            sets: Vec::new(),
            max,
            now,
            redeliver,
            next_due: None,
        };
        let mut more = false;
        let mut from = acks.through + 1;
        let mut scanned = 0u64;
        'log: while from <= head {
            let events = snap.events(from, CHUNK)?;
            if events.is_empty() {
                break;
            }
            for event in events {
                from = event.position + 1;
                let sets = source.sets(&event, &snap, &self.feed)?;
                if !sets.is_empty() {
                    let count = u32::try_from(sets.len()).unwrap_or(u32::MAX);
                    self.sizes.insert(event.position, count);
                }
                self.sized_through = self.sized_through.max(event.position);
                for (index, set) in sets.into_iter().enumerate() {
                    let key =
                        SetId::Event((event.position, u32::try_from(index).unwrap_or(u32::MAX)));
                    if picking.offer(&self.outstanding, &acks, key, set) == Offer::Full {
                        more = true;
                        break 'log;
                    }
                }
                scanned += 1;
                if scanned >= SCAN_BUDGET && from <= head {
                    more = true;
                    break 'log;
                }
            }
        }
        if !more {
            more = self.scan_outcomes(&snap, source, &acks, &mut picking)?;
        }
        if let Some(mut stored) = self.acks.take() {
            self.settle(&mut stored);
            self.acks = Some(stored);
        }
        let next_due = picking.next_due;
        let mut sets = Vec::with_capacity(picking.sets.len());
        for (key, set) in picking.sets {
            let token = source.sign(&set)?;
            if let Some((old, _)) = self.outstanding.insert(key, (set.jti.clone(), now)) {
                self.by_jti.remove(&old);
            }
            self.by_jti.insert(set.jti.clone(), key);
            sets.push((set.jti, token));
        }
        Ok(Scan {
            sets,
            more,
            head,
            next_due,
        })
    }

    /// Offers `picking` the asyncresp SETs of the outcomes after the
    /// receiver's mark (completion order); answers whether more wait. Outcomes retention dropped
    /// are not in the store any more, so a receiver further behind skips them.
    fn scan_outcomes(
        &self,
        snap: &Snapshot,
        source: &SetSource,
        acks: &SetAcks,
        picking: &mut Picking,
    ) -> Result<bool, PollError> {
        if !source.carries_outcomes(&self.feed) {
            return Ok(false);
        }
        let mut after = acks.outcomes_through;
        let mut scanned = 0u64;
        loop {
            let outcomes = snap.async_outcomes_after(after, CHUNK)?;
            if outcomes.is_empty() {
                return Ok(false);
            }
            for (set_txn, request) in outcomes {
                let Some(completion) = request.outcome.as_ref().map(|o| o.completion) else {
                    continue;
                };
                after = completion;
                let sets = source.outcome_sets(&self.feed, &set_txn, &request);
                for (index, set) in sets.into_iter().enumerate() {
                    let key =
                        SetId::Outcome((completion, u32::try_from(index).unwrap_or(u32::MAX)));
                    if picking.offer(&self.outstanding, acks, key, set) == Offer::Full {
                        return Ok(true);
                    }
                }
                scanned += 1;
                if scanned >= SCAN_BUDGET {
                    return Ok(true);
                }
            }
        }
    }
}

/// The SETs one scan picks, up to `max`, and when the first one held back falls due again.
struct Picking {
    sets: Vec<(SetId, PendingSet)>,
    max: usize,
    now: Instant,
    redeliver: Duration,
    next_due: Option<Instant>,
}

/// What became of a SET offered to a scan.
#[derive(PartialEq, Eq)]
enum Offer {
    /// Taken, or passed over (acknowledged, or delivered within the last `redeliver`).
    Done,
    /// Not taken: the scan has `max` SETs already.
    Full,
}

impl Picking {
    /// Takes SET `key` unless it is acknowledged or was delivered (`outstanding`) within the
    /// last `redeliver` (then `next_due` learns when it falls due).
    fn offer(
        &mut self,
        outstanding: &BTreeMap<SetId, (String, Instant)>,
        acks: &SetAcks,
        key: SetId,
        set: PendingSet,
    ) -> Offer {
        if acks.is_set_acked(key) {
            return Offer::Done;
        }
        if let Some((_, at)) = outstanding.get(&key) {
            let due = *at + self.redeliver;
            if due > self.now {
                self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
                return Offer::Done;
            }
        }
        if self.sets.len() >= self.max {
            return Offer::Full;
        }
        self.sets.push((key, set));
        Offer::Done
    }
}

/// Moves `acks`' asyncresp mark over the outcomes after it whose SETs are all acknowledged (read
/// a chunk at a time; the rest moves on the next acknowledgement).
fn settle_outcomes(snap: &Snapshot, acks: &mut SetAcks) -> Result<(), PollError> {
    let mut through = acks.outcomes_through;
    for (_, request) in snap.async_outcomes_after(through, CHUNK)? {
        let Some(outcome) = &request.outcome else {
            continue;
        };
        let count = u32::try_from(outcome.operations.len()).unwrap_or(u32::MAX);
        if !(0..count).all(|i| acks.is_set_acked(SetId::Outcome((outcome.completion, i)))) {
            break;
        }
        through = outcome.completion;
    }
    acks.advance_outcomes(through);
    Ok(())
}
