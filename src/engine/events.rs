//! The event log's use cases: failed attempts (classified, retried with
//! backoff or dead), replays, recovery's sweeps, approval after the holding
//! period, and the operator's reads.
use super::retry::Failure;
use super::webhooks::dead_notice;
use super::{Engine, EngineError, Result};
use crate::domain::event::{
    Backlog, EventCounts, EventDetail, EventFilter, EventId, EventRecord, EventRef, EventStatus, EventType, Parts,
};
use crate::domain::order::CommissionStatus;
use crate::store::{EventTx, Lane};
use chrono::Utc;
use std::collections::{BTreeSet, HashSet};

/// Errors are kept readable in the history (a whole SQL message can be long).
const ERROR_CHARS: usize = 2000;

/// Events replayed per transaction.
const REPLAY_CHUNK: usize = 500;

impl Engine {
    /// Records a failed attempt: classified, then retried with backoff or
    /// dead. A done or dead event is left as it is. Returns the event's
    /// status after, and its type.
    pub async fn record_failure(&self, id: EventId, error: &EngineError) -> Result<(EventStatus, EventType)> {
        let failure = Failure::of(error);
        let mut tx = self.store().begin_events(Lane::Work).await?;
        let mut event = tx.lock_events(&[id]).await?.pop().ok_or_else(|| super::corrupt(format!("no event {id}")))?;
        if event.status.settled() {
            return Ok((event.status, event.kind));
        }
        let now = Utc::now();
        event.attempts += 1;
        let (status, retry_at) = self.inner.config.retry.decide(failure, event.attempts, now);
        event.status = status;
        let error: String = error.to_string().chars().take(ERROR_CHARS).collect();
        tx.record_failure(&event, &error, retry_at, now).await?;
        if let Some(order) = &event.order_id {
            let status = CommissionStatus::of(tx.order_events(order).await?);
            tx.set_commission_status(order, status, now).await?;
        }
        let published = if event.status == EventStatus::Dead {
            let dead = || vec![dead_notice(event.id, event.kind, event.order_id.as_ref(), event.attempts, &error)];
            super::webhooks::publish(tx.as_mut(), now, dead).await?
        } else {
            super::webhooks::Published::default()
        };
        tx.commit().await?;
        published.committed();
        Ok((event.status, event.kind))
    }

    /// Replays one event: a failed or dead one gets a fresh attempt budget; a
    /// done one is journaled again and its processing is a recorded no-op.
    /// Returns its status after, or None when there is no such event.
    pub async fn replay_one(&self, id: EventId) -> Result<Option<EventStatus>> {
        let refs = self.replay(&[id]).await?;
        self.committed(refs).await;
        Ok(self.store().event_detail(id).await?.map(|d| d.event.status))
    }

    /// Replays every failed or dead event matching the filter; returns how many.
    pub async fn replay_matching(&self, f: &EventFilter) -> Result<usize> {
        let ids = self.store().select_for_replay(f).await?;
        let refs = self.replay(&ids).await?;
        let n = refs.len();
        self.committed(refs).await;
        Ok(n)
    }

    /// Puts failed and dead events back to pending with a fresh attempt
    /// budget (their history stays), records every replay, and returns what
    /// to journal: a wallet event was applied when it was recorded, so it is
    /// recorded as replayed but not journaled.
    async fn replay(&self, ids: &[EventId]) -> Result<Vec<EventRef>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(REPLAY_CHUNK) {
            let mut tx = self.store().begin_events(Lane::Request).await?;
            let now = Utc::now();
            let mut orders = BTreeSet::new();
            for event in tx.lock_events(chunk).await? {
                let reopen = event.status.reopens_on_replay();
                tx.record_replay(&event, reopen.then(|| self.next_attempt_at(now)), now).await?;
                let Some(order_id) = event.order_id.clone() else { continue };
                if reopen {
                    orders.insert(order_id.clone());
                }
                out.push(EventRef { id: event.id, partition: event.partition, order_id });
            }
            reopened_orders(tx.as_mut(), orders, now).await?;
            tx.commit().await?;
        }
        Ok(out)
    }

    /// Open events of the partitions `parts` whose lease or retry time has
    /// passed, oldest due first; their lease moves one period ahead.
    pub async fn take_due_events(&self, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>> {
        let now = Utc::now();
        Ok(self.store().take_due_events(limit, parts, now, self.next_attempt_at(now)).await?)
    }

    /// One page of every open event (keyset on id) of the partitions `parts`.
    pub async fn open_events(&self, after: Option<EventId>, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>> {
        Ok(self.store().open_events(after, limit, parts).await?)
    }

    /// Counts the open and dead events (and remembers the open count for
    /// backpressure).
    pub async fn backlog(&self) -> Result<Backlog> {
        let backlog = self.store().backlog().await?;
        self.inner.open_events.store(backlog.open, std::sync::atomic::Ordering::Relaxed);
        Ok(backlog)
    }

    /// Which of these events are settled (done or dead): a journal entry of
    /// one is stale and needs no transaction.
    pub async fn settled(&self, ids: &[EventId]) -> Result<HashSet<EventId>> {
        let statuses = self.store().event_statuses(ids).await?;
        Ok(statuses.into_iter().filter(|(_, s)| s.settled()).map(|(id, _)| id).collect())
    }

    /// Approves orders past their holding period, each in its own
    /// transaction; returns how many were approved.
    pub async fn approve_due(&self, limit: u32) -> Result<usize> {
        let now = Utc::now();
        let mut approved = 0;
        let due = self.store().due_approvals(now, limit).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let currency = self.currency().await?;
        for id in due {
            let mut tx = self.store().begin_approval().await?;
            let mut published = super::webhooks::Published::default();
            if tx.still_due(&id, now).await? {
                let sums = tx.approve(&id, now).await?;
                let notices = || super::webhooks::approval_notices(&id, &sums, &currency);
                published = super::webhooks::publish(tx.as_mut(), now, notices).await?;
                approved += 1;
            }
            tx.commit().await?;
            published.committed();
        }
        Ok(approved)
    }

    /// Moves a journal partition's fencing token on, for this instance
    /// taking it over; returns the new token and the previous owner.
    pub async fn take_partition(&self, part: u16, owner: &str) -> Result<(u64, Option<String>)> {
        Ok(self.store().take_fence(part, owner).await?)
    }

    /// Newest first; `before` is the last id of the previous page.
    pub async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>> {
        Ok(self.store().list_events(f, before, limit).await?)
    }

    /// How many events matching the filter (its status ignored) are in each status.
    pub async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts> {
        Ok(self.store().event_counts(f).await?)
    }

    pub async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>> {
        Ok(self.store().event_detail(id).await?)
    }
}

/// The commission status of each order whose events were reopened.
async fn reopened_orders(
    tx: &mut dyn EventTx,
    orders: BTreeSet<crate::domain::ids::OrderId>,
    now: chrono::DateTime<Utc>,
) -> Result<()> {
    for order in orders {
        let status = CommissionStatus::of(tx.order_events(&order).await?);
        tx.set_commission_status(&order, status, now).await?;
    }
    Ok(())
}
