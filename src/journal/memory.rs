//! The embedded journal for single-instance mode: a queue in this process's
//! memory. The SQLite file is the record and already holds everything a
//! journal would: an event committed and not yet applied is an open event
//! row, with the time it is due for recovery. So the journal keeps nothing
//! durable, and writes nothing: publishing, delivering and acknowledging are
//! a lock and a few map operations, not statements queued on the file's one
//! writer connection.
//!
//! What a kill loses is only the queue: at start recovery journals every
//! open event again (it does at every start, for every partition it takes),
//! and an event the queue dropped (see `capacity`) is journaled by recovery
//! once its lease passes. The one-live-entry rule of the `Journal` trait
//! holds as in the other journals: an event has at most one entry, queued or
//! delivered, until it is acknowledged.
use super::{Delivery, Journal, JournalError};
use crate::domain::event::{EventId, EventRef};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Default)]
struct Entries {
    /// Entry ids are never reused, so acking an old copy cannot remove an
    /// event's newer entry.
    next: u64,
    /// Queued entries, oldest first.
    queued: VecDeque<(u64, EventRef)>,
    /// Delivered and not acknowledged, by entry id (oldest first).
    delivered: BTreeMap<u64, (EventRef, Instant)>,
    /// The id of every live entry (queued or delivered), by event.
    live: HashMap<EventId, u64>,
}

impl Entries {
    fn deliver(&mut self, entry: u64, event: EventRef, at: Instant) -> Delivery {
        self.delivered.insert(entry, (event.clone(), at));
        Delivery { event, entry_id: entry.to_string() }
    }
}

pub struct MemoryJournal {
    consumer: String,
    /// Live entries kept at most: past it a publish journals nothing more
    /// (the events wait in the record for recovery), so a backlog of
    /// millions does not live in memory.
    capacity: usize,
    entries: Mutex<Entries>,
    /// Wakes blocked readers when entries are published.
    published: Notify,
}

impl MemoryJournal {
    pub fn new(consumer: String, capacity: usize) -> Self {
        Self { consumer, capacity, entries: Mutex::new(Entries::default()), published: Notify::new() }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves maps that are each
        // consistent: go on with them.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, max: usize) -> Vec<Delivery> {
        let mut e = self.entries();
        let now = Instant::now();
        let n = max.min(e.queued.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let Some((entry, event)) = e.queued.pop_front() else { break };
            out.push(e.deliver(entry, event, now));
        }
        out
    }
}

#[async_trait::async_trait]
impl Journal for MemoryJournal {
    fn instance(&self) -> &str {
        &self.consumer
    }

    /// One partition: `parts` is always `[0]`. Nothing is ever reported
    /// created: the queue is new at every start by design, not lost, and
    /// recovery journals the open events again at every start anyway (a
    /// restart of the embedded mode with open events used to log that the
    /// journal's data had been lost).
    async fn ensure(&self, _parts: &[u16]) -> Result<Vec<u16>, JournalError> {
        Ok(Vec::new())
    }

    async fn publish(&self, events: &[EventRef]) -> Result<usize, JournalError> {
        let mut added = 0;
        {
            let mut e = self.entries();
            for event in events {
                if e.live.len() >= self.capacity {
                    break;
                }
                if e.live.contains_key(&event.id) {
                    continue;
                }
                let entry = e.next;
                e.next += 1;
                e.live.insert(event.id, entry);
                e.queued.push_back((entry, event.clone()));
                added += 1;
            }
        }
        if added > 0 {
            self.published.notify_waiters();
        }
        Ok(added)
    }

    async fn read(&self, parts: &[u16], max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError> {
        // Nothing is delivered before the partition is owned (as in the
        // other journals: the actor would leave it unapplied).
        if parts.is_empty() {
            tokio::time::sleep(block).await;
            return Ok(Vec::new());
        }
        // Listen before looking, so a publish between the empty take and
        // the wait still wakes this reader.
        let published = self.published.notified();
        tokio::pin!(published);
        published.as_mut().enable();
        let entries = self.take(max);
        if !entries.is_empty() || max == 0 || block.is_zero() {
            return Ok(entries);
        }
        let _ = tokio::time::timeout(block, published).await;
        Ok(self.take(max))
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), JournalError> {
        let mut e = self.entries();
        for d in deliveries {
            // An id this journal never gave out, or one already acked,
            // matches nothing.
            let Ok(entry) = d.entry_id.parse::<u64>() else { continue };
            if e.delivered.remove(&entry).is_some() && e.live.get(&d.event.id) == Some(&entry) {
                e.live.remove(&d.event.id);
            }
        }
        Ok(())
    }

    async fn claim_idle(&self, _parts: &[u16], min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let mut e = self.entries();
        let now = Instant::now();
        let idle: Vec<u64> = e
            .delivered
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= min_idle)
            .map(|(id, _)| *id)
            .take(max)
            .collect();
        let mut out = Vec::with_capacity(idle.len());
        for entry in idle {
            if let Some((event, _)) = e.delivered.remove(&entry) {
                out.push(e.deliver(entry, event, now));
            }
        }
        Ok(out)
    }

    /// No other consumer shares this queue, and a dead process's queue died
    /// with it (recovery journals its open events at start).
    async fn claim_dead(&self, _max: usize) -> Result<Vec<Delivery>, JournalError> {
        Ok(Vec::new())
    }

    async fn heartbeat(&self, _ttl: Duration) -> Result<usize, JournalError> {
        Ok(1)
    }

    async fn live(&self, events: &[EventRef]) -> Result<Vec<bool>, JournalError> {
        let e = self.entries();
        Ok(events.iter().map(|ev| e.live.contains_key(&ev.id)).collect())
    }

    async fn live_count(&self) -> Result<u64, JournalError> {
        Ok(u64::try_from(self.entries().live.len()).unwrap_or(u64::MAX))
    }

    async fn ping(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::PartitionKey;
    use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
    use std::sync::Arc;

    fn refs(n: usize) -> Vec<EventRef> {
        (0..n)
            .map(|i| EventRef {
                id: EventId::new(),
                order_id: OrderId::parse(&format!("o{i}")).unwrap(),
                partition: PartitionKey::of(
                    Some(&AffiliateId::parse(&format!("a{i}")).unwrap()),
                    &BuyerId::parse("b").unwrap(),
                ),
            })
            .collect()
    }

    fn events(deliveries: &[Delivery]) -> Vec<EventRef> {
        deliveries.iter().map(|d| d.event.clone()).collect()
    }

    fn journal() -> MemoryJournal {
        MemoryJournal::new("c".into(), 10_000)
    }

    #[tokio::test]
    async fn a_new_queue_is_not_reported_as_lost() {
        let j = journal();
        assert!(j.ensure(&[0]).await.unwrap().is_empty(), "new at every start by design");
        assert!(j.ensure(&[0]).await.unwrap().is_empty());
        assert!(j.ping().await);
        assert_eq!(j.heartbeat(Duration::from_secs(1)).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn each_event_has_one_live_entry_until_it_is_acked() {
        let j = journal();
        let evs = refs(3);
        assert_eq!(j.live(&evs).await.unwrap(), vec![false, false, false]);
        assert_eq!(j.publish(&evs).await.unwrap(), 3);
        // Queued, not yet read: live, and journaling them again adds nothing.
        assert_eq!(j.publish(&evs).await.unwrap(), 0);
        assert_eq!(j.live(&evs).await.unwrap(), vec![true, true, true]);
        assert_eq!(j.live_count().await.unwrap(), 3);
        let taken = j.read(&[0], 10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(events(&taken), evs);
        // Delivered, not acked: still live; acked: not.
        j.ack(&taken[..1]).await.unwrap();
        assert_eq!(j.live(&evs).await.unwrap(), vec![false, true, true]);
        assert_eq!(j.live_count().await.unwrap(), 2);
        // Delivered and unacked is live too: no second copy. Once acked (say
        // its attempt failed and is due again), the event is journaled anew.
        assert_eq!(j.publish(&evs[1..2]).await.unwrap(), 0);
        j.ack(&taken[1..2]).await.unwrap();
        assert_eq!(j.live(&evs).await.unwrap(), vec![false, false, true]);
        assert_eq!(j.publish(&evs[..2]).await.unwrap(), 2);
        assert_eq!(j.live(&evs).await.unwrap(), vec![true, true, true]);
        // Acking a copy that is no longer the live one leaves the live one
        // alone, and so does an entry id this journal never gave out.
        j.ack(&taken[1..2]).await.unwrap();
        let mut stranger = taken[2].clone();
        stranger.entry_id = "not-an-entry".into();
        j.ack(&[stranger]).await.unwrap();
        assert_eq!(j.live(&evs).await.unwrap(), vec![true, true, true]);
        // The new entries are new deliveries, with new entry ids.
        let again = j.read(&[0], 10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(events(&again), evs[..2].to_vec());
        assert!(again.iter().all(|d| taken.iter().all(|t| t.entry_id != d.entry_id)));
        // Duplicates within one publish journal the event once.
        let one = refs(1);
        assert_eq!(j.publish(&[one[0].clone(), one[0].clone()]).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn entries_come_in_the_order_they_were_journaled_at_most_max_at_a_time() {
        let j = journal();
        let evs = refs(1_234);
        assert_eq!(j.publish(&evs).await.unwrap(), 1_234);
        let mut taken = Vec::new();
        while taken.len() < evs.len() {
            let got = j.read(&[0], 300, Duration::from_millis(50)).await.unwrap();
            assert!(!got.is_empty() && got.len() <= 300);
            taken.extend(got);
        }
        assert_eq!(events(&taken), evs);
        j.ack(&taken).await.unwrap();
        assert_eq!(j.live_count().await.unwrap(), 0);
        assert!(j.live(&evs).await.unwrap().into_iter().all(|l| !l));
    }

    #[tokio::test]
    async fn nothing_is_delivered_before_the_partition_is_owned() {
        let j = journal();
        j.publish(&refs(2)).await.unwrap();
        assert!(j.read(&[], 10, Duration::from_millis(10)).await.unwrap().is_empty());
        assert_eq!(j.read(&[0], 10, Duration::ZERO).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn entries_left_unacknowledged_are_delivered_again_once_idle() {
        let j = journal();
        let evs = refs(5);
        j.publish(&evs).await.unwrap();
        let taken = j.read(&[0], 10, Duration::ZERO).await.unwrap();
        j.ack(&taken[..2]).await.unwrap();
        assert!(j.read(&[0], 10, Duration::from_millis(20)).await.unwrap().is_empty(), "delivered entries are not new");
        assert!(j.claim_idle(&[0], Duration::from_secs(60), 10).await.unwrap().is_empty(), "not idle long enough");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let claimed = j.claim_idle(&[0], Duration::from_millis(20), 2).await.unwrap();
        assert_eq!(events(&claimed), evs[2..4].to_vec(), "oldest first, at most max");
        let rest = j.claim_idle(&[0], Duration::from_millis(20), 10).await.unwrap();
        assert_eq!(events(&rest), evs[4..].to_vec(), "a claimed entry is delivered anew: not idle any more");
        // The same entries, delivered again: acking the claimed copies
        // empties the queue.
        assert_eq!(claimed[0].entry_id, taken[2].entry_id);
        j.ack(&claimed).await.unwrap();
        j.ack(&rest).await.unwrap();
        assert_eq!(j.live_count().await.unwrap(), 0);
        assert!(j.claim_dead(10).await.unwrap().is_empty(), "no other consumer shares the queue");
    }

    #[tokio::test]
    async fn past_its_capacity_a_publish_journals_nothing_more() {
        let j = MemoryJournal::new("c".into(), 3);
        let evs = refs(5);
        assert_eq!(j.publish(&evs).await.unwrap(), 3, "the rest wait in the record for recovery");
        assert_eq!(j.live(&evs).await.unwrap(), vec![true, true, true, false, false]);
        let taken = j.read(&[0], 10, Duration::ZERO).await.unwrap();
        // Delivered entries count: still full.
        assert_eq!(j.publish(&evs[3..]).await.unwrap(), 0);
        j.ack(&taken[..2]).await.unwrap();
        assert_eq!(j.publish(&evs[3..]).await.unwrap(), 2);
        assert_eq!(j.live_count().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_blocked_read_wakes_on_publish() {
        let j = Arc::new(journal());
        let block = Duration::from_secs(10);
        let reader = {
            let j = j.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let got = j.read(&[0], 10, block).await.unwrap();
                (got, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!reader.is_finished(), "nothing journaled yet: the read waits");
        let evs = refs(2);
        j.publish(&evs).await.unwrap();
        let (got, waited) = tokio::time::timeout(Duration::from_secs(3), reader)
            .await
            .expect("the publish wakes the reader well before its block timeout")
            .unwrap();
        assert_eq!(events(&got), evs, "the woken read returns the new entries");
        assert!(waited < Duration::from_secs(3), "woken after {waited:?}");
    }
}
