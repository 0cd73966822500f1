//! The event log's use cases: failed attempts (classified, retried with
//! backoff or dead), replays, recovery's sweeps, approval after the holding
//! period, and the operator's reads.
use super::retry::Failure;
use super::webhooks::dead_notice;
use super::{Engine, EngineError, Result};
use crate::domain::audit::{Action, Actor, AuditEntry};
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
    pub async fn replay_one(&self, id: EventId, actor: &Actor) -> Result<Option<EventStatus>> {
        let refs = self.replay(&[id], actor).await?;
        self.committed(refs).await;
        Ok(self.store().event_detail(id).await?.map(|d| d.event.status))
    }

    /// Replays every failed or dead event matching the filter; returns how many.
    pub async fn replay_matching(&self, f: &EventFilter, actor: &Actor) -> Result<usize> {
        let ids = self.store().select_for_replay(f).await?;
        let refs = self.replay(&ids, actor).await?;
        let n = refs.len();
        self.committed(refs).await;
        Ok(n)
    }

    /// Puts failed and dead events back to pending with a fresh attempt
    /// budget (their history stays), records every replay, and returns what
    /// to journal: a wallet event was applied when it was recorded, so it is
    /// recorded as replayed but not journaled. Each transaction's events are
    /// one audit entry (their statuses before the replay).
    async fn replay(&self, ids: &[EventId], actor: &Actor) -> Result<Vec<EventRef>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(REPLAY_CHUNK) {
            let mut tx = self.store().begin_events(Lane::Request).await?;
            let now = Utc::now();
            let mut orders = BTreeSet::new();
            let mut before = serde_json::Map::new();
            for event in tx.lock_events(chunk).await? {
                before.insert(event.id.to_string(), event.status.as_str().into());
                let reopen = event.status.reopens_on_replay();
                tx.record_replay(&event, reopen.then(|| self.next_attempt_at(now)), now).await?;
                let Some(order_id) = event.order_id.clone() else { continue };
                if reopen {
                    orders.insert(order_id.clone());
                }
                out.push(EventRef { id: event.id, partition: event.partition, order_id });
            }
            reopened_orders(tx.as_mut(), orders, now).await?;
            if !before.is_empty() {
                let subject = match chunk {
                    [one] => format!("event:{one}"),
                    _ => "events".to_owned(),
                };
                let after = serde_json::json!({ "replayed": before.len() });
                let audit = AuditEntry::new(actor, Action::EventReplay, subject).before(before.into()).after(after);
                tx.audit(&audit, now).await?;
            }
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

/// What `GET /admin/events/{id}/bundle` finds.
pub enum BundleOutcome {
    Bundle(Box<crate::domain::bundle::Bundle>),
    NotFound,
    /// A buyer's wallet event: no order, no commission rules to reproduce.
    NoOrder,
}

impl Engine {
    /// An event taken out for offline reproduction (`komisi reproduce`):
    /// its order, the program version's document, the frozen context (or,
    /// for an order never processed, the context a processing would resolve
    /// now, read as a quote reads it) and what the order's ledger holds.
    pub async fn event_bundle(&self, id: EventId) -> Result<BundleOutcome> {
        use crate::domain::bundle::{AppliedLine, AppliedPoints, Bundle, BundleEvent, BundleItem, BundleOrder};
        let Some(detail) = self.store().event_detail(id).await? else { return Ok(BundleOutcome::NotFound) };
        let Some(order_id) = detail.event.order_id.clone() else { return Ok(BundleOutcome::NoOrder) };
        let record =
            self.store().order(&order_id).await?.ok_or_else(|| super::corrupt("the event's order vanished"))?;
        let program = self.store().program(record.program_version).await?;
        let (context, context_frozen) = match &record.context {
            Some(json) => (serde_json::from_str(json).map_err(super::corrupt)?, true),
            None => {
                let ask = super::apply::ContextAsk {
                    order_id: &record.id,
                    buyer_id: &record.state.buyer_id,
                    direct: record.affiliate_id.as_ref(),
                    placed_at: record.placed_at,
                    buyer_email_hash: record.buyer_email_hash.as_ref(),
                };
                let mut view = self.store().begin_read().await?;
                let mut resolved = super::apply::resolve_contexts(view.as_mut(), &[(ask, program.as_ref())]).await?;
                (resolved.remove(&record.id).ok_or_else(|| super::corrupt("context not resolved"))?, false)
            }
        };
        let limits = match &record.limits {
            Some(json) => serde_json::from_str(json).map_err(super::corrupt)?,
            None => Default::default(),
        };
        // Σ per (affiliate, kind), as the event transaction reads the ledger.
        let mut applied: Vec<AppliedLine> = Vec::new();
        for c in &record.commissions {
            match applied.iter_mut().find(|a| a.affiliate_id == c.affiliate_id && a.kind == c.kind) {
                Some(a) => {
                    a.amount += c.amount;
                    a.level = a.level.max(c.level);
                }
                None => applied.push(AppliedLine {
                    affiliate_id: c.affiliate_id.clone(),
                    kind: c.kind,
                    level: c.level,
                    amount: c.amount,
                }),
            }
        }
        let mut applied_points: Vec<AppliedPoints> = Vec::new();
        for r in &record.rewards {
            match applied_points.iter_mut().find(|a| a.buyer_id == r.buyer_id && a.kind == r.kind) {
                Some(a) => a.points += r.points,
                None => {
                    applied_points.push(AppliedPoints { buyer_id: r.buyer_id.clone(), kind: r.kind, points: r.points })
                }
            }
        }
        let e = &detail.event;
        Ok(BundleOutcome::Bundle(Box::new(Bundle {
            format: crate::domain::bundle::FORMAT,
            komisi_version: env!("CARGO_PKG_VERSION").to_owned(),
            event: BundleEvent {
                id: e.id.to_string(),
                kind: e.kind,
                status: e.status,
                attempts: e.attempts,
                last_error: e.last_error.clone(),
                created_at: e.created_at,
                attempt_history: detail.attempt_history.iter().map(|a| (a.at, a.error.clone())).collect(),
            },
            order: BundleOrder {
                id: record.id.clone(),
                buyer_id: record.state.buyer_id.clone(),
                placed_at: record.placed_at,
                cancelled: record.state.cancelled,
                fx_rate: record.state.fx_rate,
                items: record
                    .state
                    .items
                    .iter()
                    .map(|i| BundleItem {
                        sku: i.sku.clone(),
                        category: i.category.clone(),
                        quantity: i.quantity,
                        refunded: i.refunded,
                        unit_price: i.unit_price,
                    })
                    .collect(),
            },
            program_version: record.program_version,
            program: program.to_doc(),
            context,
            context_frozen,
            limits,
            applied,
            applied_points,
        })))
    }
}
