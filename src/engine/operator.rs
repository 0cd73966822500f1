//! Operator actions: the program, the event log (list, inspect, replay),
//! recomputing an order against its entitlement, and payout batches.
use super::{Engine, Result};
use crate::domain::entitlement::{entitle, CommissionLine, Entitlement, FrozenContext, RewardLine};
use crate::domain::event::{EventCounts, EventDetail, EventFilter, EventId, EventRecord, EventStatus};
use crate::domain::ids::OrderId;
use crate::domain::ledger::{delta, Applied, Delta};
use crate::domain::payout::{CreatePayout, Payout, PayoutSummary};
use crate::domain::program::{Program, ProgramDoc};
use crate::domain::FieldError;
use crate::store::StoreError;
use rust_decimal::Decimal;
use std::sync::Arc;

/// One line of an entitlement, of the ledger, or of their difference.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Commission(CommissionLine),
    Reward(RewardLine),
}

fn lines(d: &Delta) -> Vec<Line> {
    d.commissions.iter().cloned().map(Line::Commission).chain(d.rewards.iter().cloned().map(Line::Reward)).collect()
}

fn applied_lines(a: &Applied) -> Vec<Line> {
    let commissions = a.commissions.iter().filter(|(_, (_, amount))| !amount.is_zero()).map(
        |((affiliate_id, kind), (level, amount))| {
            Line::Commission(CommissionLine {
                affiliate_id: affiliate_id.clone(),
                level: *level,
                kind: *kind,
                amount: *amount,
            })
        },
    );
    let rewards = a.rewards.iter().filter(|(_, p)| **p != 0).map(|((buyer_id, kind), points)| {
        Line::Reward(RewardLine { buyer_id: buyer_id.clone(), kind: *kind, points: *points })
    });
    commissions.chain(rewards).collect()
}

#[derive(Debug, Clone)]
pub struct Recompute {
    pub order_id: OrderId,
    pub dry_run: bool,
    pub entitled: Vec<Line>,
    pub applied: Vec<Line>,
    pub delta: Vec<Line>,
    /// The event that writes the delta (not a dry run, and a delta to write).
    pub event_id: Option<EventId>,
}

#[derive(Debug)]
pub enum RecomputeOutcome {
    Done(Recompute),
    NotFound,
    /// The order has never been processed: there is no frozen context to compute with.
    NotProcessed,
}

impl Engine {
    /// The version in force now and its program.
    pub async fn program(&self) -> Result<(u64, Arc<Program>)> {
        Ok(self.backend().current_program().await?)
    }

    /// Validates a program and stores it as a new immutable version. The
    /// currency cannot change: balances and open orders are kept in one.
    pub async fn put_program(&self, doc: &ProgramDoc) -> Result<std::result::Result<u64, Vec<FieldError>>> {
        let program = match Program::parse(doc) {
            Ok(p) => p,
            Err(errors) => return Ok(Err(errors)),
        };
        let (_, current) = self.backend().current_program().await?;
        if program.currency != current.currency {
            return Ok(Err(vec![FieldError::new(
                "currency",
                format!("the program currency is {} and cannot change", current.currency),
            )]));
        }
        Ok(Ok(self.backend().insert_program(&program).await?))
    }

    /// Newest first; `before` is the last id of the previous page.
    pub async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>> {
        Ok(self.backend().list_events(f, before, limit).await?)
    }

    /// How many events matching the filter (its status ignored) are in each status.
    pub async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts> {
        Ok(self.backend().event_counts(f).await?)
    }

    pub async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>> {
        Ok(self.backend().event_detail(id).await?)
    }

    /// Replays one event: a failed or dead one gets a fresh attempt budget; a
    /// done one is journaled again and its processing is a recorded no-op.
    /// Returns its status after, or None when there is no such event.
    pub async fn replay_one(&self, id: EventId) -> Result<Option<EventStatus>> {
        // A wallet event is recorded as replayed but not journaled: it was
        // applied when it was recorded (and an unknown id is neither).
        let refs = self.backend().replay(&[id]).await?;
        self.committed(refs).await;
        Ok(self.backend().event_detail(id).await?.map(|d| d.event.status))
    }

    /// Replays every failed or dead event matching the filter; returns how many.
    pub async fn replay_matching(&self, f: &EventFilter) -> Result<usize> {
        let ids = self.backend().select_for_replay(f).await?;
        let refs = self.backend().replay(&ids).await?;
        let n = refs.len();
        self.committed(refs).await;
        Ok(n)
    }

    /// The entitlement of an order's current state and what its ledger
    /// holds; None when the order has not been processed yet.
    pub async fn entitlement_and_applied(&self, order_id: &OrderId) -> Result<Option<(Entitlement, Applied)>> {
        let Some(inputs) = self.backend().entitlement_inputs(order_id).await? else { return Ok(None) };
        let ctx: FrozenContext = serde_json::from_str(&inputs.context)
            .map_err(|e| StoreError::Corrupt(format!("frozen context of order {order_id}: {e}")))?;
        let program = self.backend().program(inputs.program_version).await?;
        Ok(Some((entitle(&inputs.state, &program, &ctx), inputs.applied)))
    }

    /// What the order is entitled to, what its ledger holds, and the difference.
    /// Unless `dry_run`, a non-empty difference is written by a new
    /// `order.recomputed` event, processed like any other (exactly once too).
    pub async fn recompute(&self, order_id: &OrderId, dry_run: bool) -> Result<RecomputeOutcome> {
        if !self.backend().order_exists(order_id).await? {
            return Ok(RecomputeOutcome::NotFound);
        }
        let Some((entitled, applied)) = self.entitlement_and_applied(order_id).await? else {
            return Ok(RecomputeOutcome::NotProcessed);
        };
        let difference = delta(&entitled, &applied);
        let mut event_id = None;
        if !dry_run && !difference.is_empty() {
            let payload = serde_json::json!({"order_id": order_id, "delta": delta_json(&difference)}).to_string();
            let event = self.backend().add_recompute_event(order_id, &payload).await?;
            event_id = Some(event.id);
            self.committed(vec![event]).await;
        }
        Ok(RecomputeOutcome::Done(Recompute {
            order_id: order_id.clone(),
            dry_run,
            entitled: lines(&delta(&entitled, &Applied::default())),
            applied: applied_lines(&applied),
            delta: lines(&difference),
            event_id,
        }))
    }

    /// Builds a batch from approved balances ≥ `min_amount`; with an
    /// idempotency key, a repeated request returns the first batch.
    pub async fn create_payout(&self, min_amount: Decimal, key: Option<&str>) -> Result<CreatePayout> {
        Ok(self.backend().create_payout(min_amount, key).await?)
    }

    /// Marks a batch paid (idempotent); None when there is no such batch.
    pub async fn complete_payout(&self, id: u64) -> Result<Option<Payout>> {
        Ok(self.backend().complete_payout(id).await?)
    }

    pub async fn payout(&self, id: u64) -> Result<Option<Payout>> {
        Ok(self.backend().payout(id).await?)
    }

    /// Batches newest first, ids below `before`.
    pub async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>> {
        Ok(self.backend().list_payouts(before, limit).await?)
    }
}

/// The delta as the recompute event's payload records it.
fn delta_json(d: &Delta) -> serde_json::Value {
    let money = crate::domain::money::format;
    let commissions = d.commissions.iter().map(|l| {
        serde_json::json!({"affiliate_id": l.affiliate_id, "level": l.level, "kind": l.kind.as_str(), "amount": money(l.amount)})
    });
    let rewards = d
        .rewards
        .iter()
        .map(|l| serde_json::json!({"buyer_id": l.buyer_id, "kind": l.kind.as_str(), "points": l.points}));
    serde_json::Value::Array(commissions.chain(rewards).collect())
}
