//! After intake: refunds, cancellation and completion. Each commits the
//! order's new state and its event in one transaction that holds the
//! order's lock; the event then recomputes the order's entitlement like any
//! other (SPEC §4), so only the delta is written. Whether a change may
//! happen, and what the order becomes, is `domain::lifecycle`.
use super::{retrying, Engine, Result};
use crate::domain::attribution;
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::entitlement::month_window;
use crate::domain::event::{EventId, EventRef, EventType};
use crate::domain::ids::{AffiliateId, OrderId};
use crate::domain::lifecycle::{self, OrderHead};
use crate::domain::order::{LifecycleOutcome, OrderStatus, RefundRequest};
use crate::domain::payload;
use crate::store::{OrderChange, OrderTx, Reattribution};
use chrono::{DateTime, Utc};
use serde_json::json;

/// What a reassignment did.
#[derive(Debug)]
pub enum Reassign {
    Accepted(EventRef),
    /// The order is attributed to that affiliate already.
    Unchanged,
    NotFound,
    NoAffiliate,
    /// Its commissions are approved (or paid): too late to move them.
    Approved,
}

/// A change decided on a locked order: its kind, payload and what it sets.
struct Change<'a> {
    kind: EventType,
    payload: String,
    status: Option<OrderStatus>,
    refund: Option<&'a RefundRequest>,
    approve_at: Option<DateTime<Utc>>,
    /// An operator's change: its audit entry, written in the same transaction.
    audit: Option<AuditEntry>,
}

impl Engine {
    pub async fn refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome> {
        retrying(|| self.try_refund(req)).await
    }

    async fn try_refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome> {
        let mut tx = self.store().begin_order().await?;
        let Some(order) = tx.lock_order(&req.order_id).await? else { return Ok(LifecycleOutcome::NotFound) };
        let earlier = tx.refund(&req.order_id, &req.refund_id).await?;
        let items = tx.items(&req.order_id).await?;
        let status = match lifecycle::refund(&order, earlier.as_ref().map(|(h, e)| (h.as_slice(), *e)), &items, req) {
            Ok(status) => status,
            Err(outcome) => return Ok(outcome),
        };
        let change = Change {
            kind: EventType::OrderRefunded,
            payload: req.payload.clone(),
            status: Some(status),
            refund: Some(req),
            approve_at: None,
            audit: None,
        };
        self.change(tx, &req.order_id, &order, change).await
    }

    pub async fn cancel(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        retrying(|| self.try_cancel(id)).await
    }

    async fn try_cancel(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        let mut tx = self.store().begin_order().await?;
        let Some(order) = tx.lock_order(id).await? else { return Ok(LifecycleOutcome::NotFound) };
        let earlier = tx.event_of(id, EventType::OrderCancelled).await?;
        let status = match lifecycle::cancel(&order, earlier) {
            Ok(status) => status,
            Err(outcome) => return Ok(outcome),
        };
        let payload = payload::cancelled(id);
        let change = Change {
            kind: EventType::OrderCancelled,
            payload,
            status: Some(status),
            refund: None,
            approve_at: None,
            audit: None,
        };
        self.change(tx, id, &order, change).await
    }

    /// The return window is over: entries become approved `holding_days` after now.
    pub async fn complete(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        retrying(|| self.try_complete(id)).await
    }

    async fn try_complete(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        let mut tx = self.store().begin_order().await?;
        let Some(order) = tx.lock_order(id).await? else { return Ok(LifecycleOutcome::NotFound) };
        let earlier = tx.event_of(id, EventType::OrderCompleted).await?;
        let program = tx.program(order.program_version).await?;
        let (status, approve_at) = match lifecycle::complete(&order, earlier, program.holding_days, Utc::now()) {
            Ok(decided) => decided,
            Err(outcome) => return Ok(outcome),
        };
        let payload = payload::completed(id, approve_at);
        let change = Change {
            kind: EventType::OrderCompleted,
            payload,
            status: Some(status),
            refund: None,
            approve_at: Some(approve_at),
            audit: None,
        };
        self.change(tx, id, &order, change).await
    }

    /// Moves an order to another affiliate by hand, before its commissions
    /// are approved: one `order.reattributed` event, which reverses the old
    /// affiliate's (and its upline's) lines and credits the new one's, as
    /// any event does — by recomputing the order's entitlement.
    pub async fn reattribute(&self, id: &OrderId, to: &AffiliateId, reason: &str, actor: &Actor) -> Result<Reassign> {
        retrying(|| self.try_reattribute(id, to, reason, actor)).await
    }

    async fn try_reattribute(&self, id: &OrderId, to: &AffiliateId, reason: &str, actor: &Actor) -> Result<Reassign> {
        let mut tx = self.store().begin_order().await?;
        let Some(mut order) = tx.lock_order(id).await? else { return Ok(Reassign::NotFound) };
        // `order.partition()` stays the order's first event's: its events are applied one after the other.
        let current = tx.attribution(id).await?;
        if current.approved {
            return Ok(Reassign::Approved);
        }
        if order.affiliate_id.as_ref() == Some(to) {
            return Ok(Reassign::Unchanged);
        }
        if !tx.affiliate_exists(to).await? {
            return Ok(Reassign::NoAffiliate);
        }
        let program = tx.program(order.program_version).await?;
        let now = Utc::now();
        let decision = attribution::reassigned(&current.decision, to, reason, now);
        let from = order.affiliate_id.clone();
        let r = Reattribution {
            from: from.as_ref(),
            to,
            decision: &decision,
            month_start: month_window(current.placed_at, program.timezone).0,
            original_eligible: current.original_eligible,
            now,
        };
        tx.reattribute(id, &r).await?;
        tracing::info!(order = %id, from = ?from.as_ref().map(|a| a.as_str()), to = %to, reason, "order moved to another affiliate");
        order.affiliate_id = Some(to.clone());
        let payload = payload::reattributed(id, from.as_ref(), to, reason);
        let audit = AuditEntry::new(actor, Action::OrderReattribute, format!("order:{id}"))
            .before(json!({ "affiliate_id": from }))
            .after(json!({ "affiliate_id": to, "reason": reason }));
        let change = Change {
            kind: EventType::OrderReattributed,
            payload,
            status: None,
            refund: None,
            approve_at: None,
            audit: Some(audit),
        };
        match self.change(tx, id, &order, change).await? {
            LifecycleOutcome::Accepted(event) => Ok(Reassign::Accepted(event)),
            _ => Err(super::corrupt("a reassignment was not accepted")),
        }
    }

    /// Stores an `order.recomputed` event carrying `payload` (the order's
    /// commission status becomes pending with it) and journals it; None
    /// when there is no such order.
    pub(super) async fn add_recompute_event(
        &self,
        id: &OrderId,
        payload: String,
        audit: AuditEntry,
    ) -> Result<Option<EventId>> {
        let mut tx = self.store().begin_order().await?;
        let Some(order) = tx.lock_order(id).await? else { return Ok(None) };
        let change = Change {
            kind: EventType::OrderRecomputed,
            payload,
            status: None,
            refund: None,
            approve_at: None,
            audit: Some(audit),
        };
        match self.change(tx, id, &order, change).await? {
            LifecycleOutcome::Accepted(event) => Ok(Some(event.id)),
            _ => Ok(None),
        }
    }

    /// Writes the change and its event, commits, then journals the event.
    async fn change(
        &self,
        mut tx: Box<dyn OrderTx>,
        id: &OrderId,
        order: &OrderHead,
        c: Change<'_>,
    ) -> Result<LifecycleOutcome> {
        let now = Utc::now();
        let event = EventRef { id: EventId::new(), partition: order.partition(), order_id: id.clone() };
        let write = OrderChange {
            event: &event,
            kind: c.kind,
            payload: &c.payload,
            now,
            next_attempt_at: self.next_attempt_at(now),
            status: c.status,
            commission_status: order.status_with_new_event(),
            refunded: c.refund.map_or(&[], |r| r.items.as_slice()),
            refund: c.refund.map(|r| (&r.refund_id, &r.request_hash[..])),
            approve_at: c.approve_at,
        };
        tx.write(id, &write).await?;
        if let Some(audit) = &c.audit {
            tx.audit(&audit.with("event_id", event.id.to_string()), now).await?;
        }
        tx.commit().await?;
        self.committed(vec![event.clone()]).await;
        Ok(LifecycleOutcome::Accepted(event))
    }
}
