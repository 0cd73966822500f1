//! `GET /admin/reconcile`: checks every invariant of the ledger against the
//! record and names the ids involved in each violation.
use super::{Engine, Result};
use crate::domain::ledger::delta;
use crate::domain::money;
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
}

#[derive(Debug, Clone)]
pub struct Report {
    pub ok: bool,
    pub checked: Checked,
    pub violations: Vec<Violation>,
}

const PAGE: u32 = 500;

impl Engine {
    /// Every invariant: balances equal ledger sums, points equal reward sums,
    /// no event wrote two entries for one (beneficiary, kind), every processed
    /// order's ledger equals its entitlement, no event older than the retry
    /// horizon is still open, payout batches match their entries.
    pub async fn reconcile(&self) -> Result<Report> {
        let horizon = chrono::TimeDelta::from_std(self.config().retry_horizon).unwrap_or(chrono::TimeDelta::MAX);
        let stuck_before = Utc::now().checked_sub_signed(horizon).unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let facts = self.backend().reconcile_facts(stuck_before).await?;
        let mut checked = Checked {
            affiliates: facts.affiliates,
            buyers: facts.buyers,
            events: facts.events,
            payouts: facts.payouts,
            orders: 0,
        };
        let mut v = Vec::new();

        for (affiliate, stored, sums) in facts.balance_mismatches {
            let f = |d: [rust_decimal::Decimal; 3]| d.map(money::format).join("/");
            let mut x = Violation::new(
                "balance_mismatch",
                format!("stored pending/approved/paid {} but ledger sums {}", f(stored), f(sums)),
            );
            x.affiliate_id = Some(affiliate);
            v.push(x);
        }
        for (buyer, stored, sum) in facts.points_mismatches {
            let mut x =
                Violation::new("points_mismatch", format!("stored {stored} points but reward entries sum to {sum}"));
            x.buyer_id = Some(buyer);
            v.push(x);
        }
        for (event, affiliate, kind) in facts.duplicate_entries {
            let mut x = Violation::new("duplicate_entry", format!("two {kind} entries"));
            x.event_id = Some(event);
            x.affiliate_id = Some(affiliate);
            v.push(x);
        }

        // For every order whose events are all done, the ledger equals the entitlement.
        let mut after = String::new();
        loop {
            let ids = self.backend().processed_orders(&after, PAGE).await?;
            for order_id in &ids {
                checked.orders += 1;
                let Some((entitled, applied)) = self.entitlement_and_applied(order_id).await? else { continue };
                let off = delta(&entitled, &applied);
                for line in &off.commissions {
                    let mut x = Violation::new(
                        "ledger_differs_from_entitlement",
                        format!("{} is {} away from the entitlement", line.kind.as_str(), money::format(line.amount)),
                    );
                    x.order_id = Some(order_id.to_string());
                    x.affiliate_id = Some(line.affiliate_id.to_string());
                    v.push(x);
                }
                for line in &off.rewards {
                    let mut x = Violation::new(
                        "rewards_differ_from_entitlement",
                        format!("{} is {} points away from the entitlement", line.kind.as_str(), line.points),
                    );
                    x.order_id = Some(order_id.to_string());
                    x.buyer_id = Some(line.buyer_id.to_string());
                    v.push(x);
                }
            }
            match ids.last() {
                Some(last) if ids.len() as u32 == PAGE => after = last.to_string(),
                _ => break,
            }
        }

        for (event, order, status, attempts) in facts.stuck_events {
            let mut x = Violation::new(
                "event_stuck",
                format!("{status} after {attempts} attempts, older than the retry horizon"),
            );
            x.event_id = Some(event);
            x.order_id = Some(order);
            v.push(x);
        }
        for (payout, affiliate, amount, entries) in facts.payout_item_mismatches {
            let mut x = Violation::new(
                "payout_item_mismatch",
                format!("item {} but its entries sum to {}", money::format(amount), money::format(entries)),
            );
            x.payout_id = Some(payout);
            x.affiliate_id = Some(affiliate);
            v.push(x);
        }
        for (entry, affiliate, payout, status, batch) in facts.payout_entry_statuses {
            let mut x =
                Violation::new("payout_entry_status", format!("entry {entry} is {status} in a batch that is {batch}"));
            x.payout_id = Some(payout);
            x.affiliate_id = Some(affiliate);
            v.push(x);
        }
        Ok(Report { ok: v.is_empty(), checked, violations: v })
    }
}
