//! `GET /admin/reconcile`: checks every invariant of the ledger against the
//! record and names the ids involved in each violation.
use super::{Engine, Result};
use crate::domain::ledger::delta;
use crate::domain::money;
use crate::domain::wallet::audit;
use crate::store::ReconcileFacts;
use chrono::Utc;

#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: &'static str,
    pub affiliate_id: Option<String>,
    pub buyer_id: Option<String>,
    pub order_id: Option<String>,
    pub event_id: Option<String>,
    pub payout_id: Option<u64>,
    pub detail: String,
}

impl Violation {
    fn new(kind: &'static str, detail: String) -> Self {
        Self { kind, affiliate_id: None, buyer_id: None, order_id: None, event_id: None, payout_id: None, detail }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub affiliates: u64,
    pub buyers: u64,
    pub orders: u64,
    pub events: u64,
    pub payouts: u64,
    pub wallets: u64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub ok: bool,
    pub checked: Checked,
    pub violations: Vec<Violation>,
}

const PAGE: u32 = 500;

impl Violation {
    fn affiliate(mut self, id: impl ToString) -> Self {
        self.affiliate_id = Some(id.to_string());
        self
    }
    fn buyer(mut self, id: impl ToString) -> Self {
        self.buyer_id = Some(id.to_string());
        self
    }
    fn order(mut self, id: impl ToString) -> Self {
        self.order_id = Some(id.to_string());
        self
    }
    fn event(mut self, id: impl ToString) -> Self {
        self.event_id = Some(id.to_string());
        self
    }
    fn payout(mut self, id: u64) -> Self {
        self.payout_id = Some(id);
        self
    }
}

impl Engine {
    /// Every invariant: balances equal ledger sums, points equal reward sums,
    /// no event wrote two entries for one (beneficiary, kind), every processed
    /// order's ledger equals its entitlement, every wallet replays exactly,
    /// no event older than the retry horizon is still open, payout batches
    /// match their entries.
    pub async fn reconcile(&self) -> Result<Report> {
        let horizon = chrono::TimeDelta::from_std(self.inner.config.retry_horizon).unwrap_or(chrono::TimeDelta::MAX);
        let stuck_before = Utc::now().checked_sub_signed(horizon).unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let facts = self.store().reconcile_facts(stuck_before).await?;
        let mut checked = Checked {
            affiliates: facts.affiliates,
            buyers: facts.buyers,
            events: facts.events,
            payouts: facts.payouts,
            orders: 0,
            wallets: 0,
        };
        let mut v = stored_violations(facts);
        self.check_orders(&mut checked, &mut v).await?;
        self.check_wallets(stuck_before, &mut checked, &mut v).await?;
        Ok(Report { ok: v.is_empty(), checked, violations: v })
    }

    /// For every order whose events are all done, the ledger equals the entitlement.
    async fn check_orders(&self, checked: &mut Checked, v: &mut Vec<Violation>) -> Result<()> {
        let mut after = String::new();
        loop {
            let ids = self.store().processed_orders(&after, PAGE).await?;
            for order_id in &ids {
                checked.orders += 1;
                let Some((entitled, applied)) = self.entitlement_and_applied(order_id).await? else { continue };
                let off = delta(&entitled, &applied);
                for line in &off.commissions {
                    let detail =
                        format!("{} is {} away from the entitlement", line.kind.as_str(), money::format(line.amount));
                    v.push(
                        Violation::new("ledger_differs_from_entitlement", detail)
                            .order(order_id)
                            .affiliate(&line.affiliate_id),
                    );
                }
                for line in &off.rewards {
                    let detail = format!("{} is {} points away from the entitlement", line.kind.as_str(), line.points);
                    v.push(
                        Violation::new("rewards_differ_from_entitlement", detail).order(order_id).buyer(&line.buyer_id),
                    );
                }
            }
            match ids.last() {
                Some(last) if ids.len() as u32 == PAGE => after = last.to_string(),
                _ => return Ok(()),
            }
        }
    }

    /// Every buyer with a wallet to check (see `domain::wallet::audit`).
    async fn check_wallets(
        &self,
        stuck_before: chrono::DateTime<Utc>,
        checked: &mut Checked,
        v: &mut Vec<Violation>,
    ) -> Result<()> {
        let mut after = String::new();
        loop {
            let ids = self.store().wallet_buyers(&after, PAGE).await?;
            for buyer in &ids {
                checked.wallets += 1;
                let (rewards, redemptions) = self.store().buyer_wallet(buyer).await?;
                for (kind, detail) in audit(&rewards, &redemptions, stuck_before) {
                    v.push(Violation::new(kind, detail).buyer(buyer));
                }
            }
            match ids.last() {
                Some(last) if ids.len() as u32 == PAGE => after = last.to_string(),
                _ => return Ok(()),
            }
        }
    }
}

/// The violations among the stored invariants the store read.
fn stored_violations(facts: ReconcileFacts) -> Vec<Violation> {
    let mut v = Vec::new();
    for (affiliate, stored, sums) in facts.balance_mismatches {
        let f = |d: [rust_decimal::Decimal; 3]| d.map(money::format).join("/");
        let detail = format!("stored pending/approved/paid {} but ledger sums {}", f(stored), f(sums));
        v.push(Violation::new("balance_mismatch", detail).affiliate(affiliate));
    }
    for (buyer, stored, sum) in facts.points_mismatches {
        let detail = format!("stored {stored} points but reward entries sum to {sum}");
        v.push(Violation::new("points_mismatch", detail).buyer(buyer));
    }
    for (event, affiliate, kind) in facts.duplicate_entries {
        v.push(Violation::new("duplicate_entry", format!("two {kind} entries")).event(event).affiliate(affiliate));
    }
    for (event, order, status, attempts) in facts.stuck_events {
        let detail = format!("{status} after {attempts} attempts, older than the retry horizon");
        v.push(Violation::new("event_stuck", detail).event(event).order(order));
    }
    for (payout, affiliate, amount, entries) in facts.payout_item_mismatches {
        let detail = format!("item {} but its entries sum to {}", money::format(amount), money::format(entries));
        v.push(Violation::new("payout_item_mismatch", detail).payout(payout).affiliate(affiliate));
    }
    for (entry, affiliate, payout, status, batch) in facts.payout_entry_statuses {
        let detail = format!("entry {entry} is {status} in a batch that is {batch}");
        v.push(Violation::new("payout_entry_status", detail).payout(payout).affiliate(affiliate));
    }
    v
}
