//! Manual adjustments: support credits or debits an affiliate's approved
//! commission or a buyer's points, with a reason (`domain::adjustment`).
//! Each is one transaction on its subject's locked row: the request (kept
//! for idempotency), its event (stored done), its entry, the balance, and
//! the audit entry commit together — or nothing does.
use super::rewards::{commit as commit_wallet, now_micros, pending_entry, record};
use super::{corrupt, retrying, Engine, EngineError, Result};
use crate::domain::adjustment::{
    check_commission, check_points, repeated, AdjustOutcome, Adjusted, Adjustment, AdjustmentRequest,
};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::entitlement::RewardKind;
use crate::domain::event::{EventId, EventType};
use crate::domain::money;
use crate::domain::payload;
use crate::domain::report::{day_start, AffiliateDay, Figures};
use crate::domain::wallet::{spendable_of, Wallet, WalletEntry};
use crate::store::{ReportAdds, StoreError, WalletWrite};
use serde_json::json;

impl Engine {
    /// Credits (amount > 0) or debits an affiliate's approved balance: an
    /// approved ledger entry of kind `adjustment` (level 0, no order), paid
    /// with the next payout batch. A debit may take the approved balance to
    /// zero, not below (part of it may already be in an open batch: the
    /// debit is then taken from the next batch).
    pub async fn adjust_commission(&self, req: AdjustmentRequest, actor: &Actor) -> Result<AdjustOutcome> {
        retrying(|| self.try_adjust_commission(&req, actor)).await
    }

    async fn try_adjust_commission(&self, req: &AdjustmentRequest, actor: &Actor) -> Result<AdjustOutcome> {
        let Adjusted::Commission { affiliate_id, amount } = &req.adjusted else {
            return Err(corrupt("not a commission adjustment"));
        };
        let (version, program) = self.program().await?;
        let now = now_micros();
        let event_id = EventId::new();
        let mut tx = self.store().begin_affiliates().await?;
        // The report rows first, as the event transaction takes them before
        // the affiliates' rows: the two never wait on each other in a cycle.
        // A refusal below rolls them back with the rest.
        let mut report = ReportAdds::of(now, event_id, Figures { adjustments: *amount, ..Figures::default() });
        let day = AffiliateDay { commission: *amount, ..AffiliateDay::default() };
        report.days.insert((day_start(now, program.timezone), affiliate_id.clone()), day);
        tx.add_report(&report).await?;
        let Some(affiliate) = tx.affiliate(affiliate_id, true).await? else { return Ok(AdjustOutcome::NotFound) };
        if let Some(earlier) = tx.adjustment(&req.id).await? {
            return Ok(repeated(earlier, req));
        }
        let approved = affiliate.balances.approved;
        if let Err(e) = check_commission(approved, *amount) {
            return Ok(AdjustOutcome::Overdraw(e));
        }
        let adjustment = Adjustment { request: req.clone(), event_id, actor: actor.key.clone(), created_at: now };
        match tx.adjust_commission(&adjustment, &payload::adjustment(&adjustment), version, now).await {
            Err(StoreError::Duplicate(_)) => {
                drop(tx);
                return self.adjustment_taken(req).await;
            }
            done => done?,
        }
        let audit = AuditEntry::new(actor, Action::CommissionAdjustment, format!("affiliate:{affiliate_id}"))
            .before(json!({ "approved": money::format(approved) }))
            .after(json!({
                "approved": money::format(approved + amount),
                "adjustment_id": req.id,
                "amount": money::format(*amount),
                "reason": req.reason,
            }));
        tx.audit(&audit, now).await?;
        if self.faults().take_wallet_error() {
            return Err(EngineError::Injected("database error in the middle of an adjustment transaction"));
        }
        tx.commit().await?;
        tracing::info!(affiliate = %affiliate_id, adjustment = %req.id, amount = %amount, actor = %actor.key, "commission adjusted");
        Ok(AdjustOutcome::Created(adjustment))
    }

    /// Credits (points > 0) or debits a buyer's points: a reward entry of
    /// kind `adjustment`. A credit is a lot that never expires; a debit
    /// takes from the buyer's lots in spending order (soonest expiry
    /// first), at most what the buyer can spend (points held by open
    /// redemptions excluded). A buyer komisi has never seen is 404.
    pub async fn adjust_points(&self, req: AdjustmentRequest, actor: &Actor) -> Result<AdjustOutcome> {
        retrying(|| self.try_adjust_points(&req, actor)).await
    }

    async fn try_adjust_points(&self, req: &AdjustmentRequest, actor: &Actor) -> Result<AdjustOutcome> {
        let Adjusted::Points { buyer_id, points } = &req.adjusted else {
            return Err(corrupt("not a points adjustment"));
        };
        let mut tx = self.store().begin_wallet(buyer_id).await?;
        let Some(balance) = tx.balance().await? else { return Ok(AdjustOutcome::NotFound) };
        if let Some(earlier) = tx.adjustment(&req.id).await? {
            return Ok(repeated(earlier, req));
        }
        let spendable = spendable_of(balance.points);
        if let Err(e) = check_points(spendable, *points) {
            return Ok(AdjustOutcome::Overdraw(e));
        }
        let now = now_micros();
        let adjustment =
            Adjustment { request: req.clone(), event_id: EventId::new(), actor: actor.key.clone(), created_at: now };
        match tx.insert_adjustment(&adjustment).await {
            Err(StoreError::Duplicate(_)) => {
                drop(tx);
                return self.adjustment_taken(req).await;
            }
            done => done?,
        }
        // A debit may empty the lot that expires next: the due time follows the lots.
        let due = if *points < 0 {
            let history: Vec<WalletEntry> = tx.history().await?.iter().map(WalletEntry::from).collect();
            let mut wallet = Wallet::replay(&history);
            wallet.apply(&pending_entry(RewardKind::Adjustment, *points, None, now));
            Some(wallet.next_expiry())
        } else {
            None
        };
        let write = WalletWrite {
            event: Some((adjustment.event_id, EventType::PointsAdjusted, payload::adjustment(&adjustment))),
            entries: vec![(RewardKind::Adjustment, *points, None)],
            due,
        };
        let published = record(tx.as_mut(), buyer_id, &write, now).await?;
        let audit = AuditEntry::new(actor, Action::PointsAdjustment, format!("buyer:{buyer_id}"))
            .before(json!({ "points": balance.points.to_string() }))
            .after(json!({
                "points": (balance.points + i128::from(*points)).to_string(),
                "adjustment_id": req.id,
                "adjusted": points.to_string(),
                "reason": req.reason,
            }));
        tx.audit(&audit, now).await?;
        commit_wallet(self.faults(), tx, published).await?;
        tracing::info!(buyer = %buyer_id, adjustment = %req.id, points, actor = %actor.key, "points adjusted");
        Ok(AdjustOutcome::Created(adjustment))
    }

    /// A concurrent request took the id first (of another subject, or it
    /// committed in between): answered from what it stored.
    async fn adjustment_taken(&self, req: &AdjustmentRequest) -> Result<AdjustOutcome> {
        let earlier = self.store().adjustment(&req.id).await?.ok_or_else(|| corrupt("an adjustment vanished"))?;
        Ok(repeated(earlier, req))
    }
}
