//! `GET /admin/reconcile`: checks every invariant of the ledger against the
//! record and names the ids involved in each violation.
use super::{Engine, Result};
use crate::domain::entitlement::RewardKind;
use crate::domain::ledger::delta;
use crate::domain::money;
use crate::domain::wallet::{RedemptionStatus, Wallet, WalletEntry};
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

impl Engine {
    /// Every invariant: balances equal ledger sums, points equal reward sums,
    /// no event wrote two entries for one (beneficiary, kind), every processed
    /// order's ledger equals its entitlement, no event older than the retry
    /// horizon is still open, payout batches match their entries.
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
            let ids = self.store().processed_orders(&after, PAGE).await?;
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

        self.check_wallets(stuck_before, &mut checked, &mut v).await?;

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

impl Engine {
    /// Every buyer with a wallet to check: its history replays as lots with
    /// no problem (no hold above the spendable points, no lot spent twice, no
    /// release of nothing, no expiry of points not due); balance = earned −
    /// reversed − expired − captured − held, spendable and debt never
    /// negative; each redemption's entries agree with its status; no hold
    /// and no lot is left past its due time longer than the retry horizon.
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
                let mut flag = |kind: &'static str, detail: String| {
                    let mut x = Violation::new(kind, detail);
                    x.buyer_id = Some(buyer.to_string());
                    v.push(x);
                };
                let entries: Vec<_> = rewards.history.iter().map(WalletEntry::from).collect();
                let wallet = Wallet::replay(&entries);
                for problem in &wallet.problems {
                    flag("wallet_entry_invalid", problem.clone());
                }
                let sum = |kind: RewardKind, sign: i64| -> i128 {
                    entries
                        .iter()
                        .filter(|e| e.kind == kind && e.points.signum() == sign)
                        .map(|e| i128::from(e.points.abs()))
                        .sum()
                };
                let order_kinds = [RewardKind::Points, RewardKind::FirstOrderBonus];
                let earned: i128 = order_kinds.iter().map(|k| sum(*k, 1)).sum();
                let reversed: i128 = order_kinds.iter().map(|k| sum(*k, -1)).sum();
                let expired = sum(RewardKind::Expired, -1);
                let of = |status: RedemptionStatus| -> i128 {
                    redemptions.iter().filter(|r| r.status == status).map(|r| i128::from(r.points)).sum()
                };
                let (captured, held) = (of(RedemptionStatus::Captured), of(RedemptionStatus::Held));
                if earned - reversed - expired - captured - held != rewards.points {
                    flag(
                        "wallet_balance_mismatch",
                        format!(
                            "balance {} but earned {earned} - reversed {reversed} - expired {expired} - captured \
                             {captured} - held {held}",
                            rewards.points
                        ),
                    );
                }
                if wallet.spendable() < 0 || wallet.debt < 0 || (wallet.spendable() > 0 && wallet.debt > 0) {
                    flag("wallet_negative", format!("spendable {} and debt {}", wallet.spendable(), wallet.debt));
                }
                for r in &redemptions {
                    let of_r = |kind: RewardKind| -> Vec<i64> {
                        entries
                            .iter()
                            .filter(|e| e.kind == kind && e.redemption_id.as_deref() == Some(r.id.as_str()))
                            .map(|e| e.points)
                            .collect()
                    };
                    let (taken, back) = (of_r(RewardKind::Redemption), of_r(RewardKind::RedemptionReleased));
                    let expect_back: &[i64] = if r.status.holds_points() { &[] } else { &[r.points] };
                    if taken != [-r.points] || back != expect_back {
                        flag(
                            "redemption_entries_mismatch",
                            format!(
                                "redemption {} is {} for {} points but its entries are {taken:?} / {back:?}",
                                r.id,
                                r.status.as_str(),
                                r.points
                            ),
                        );
                    }
                    if r.status == RedemptionStatus::Held && r.hold_until < stuck_before {
                        flag("redemption_hold_stuck", format!("redemption {} held past its hold time", r.id));
                    }
                }
                let known: std::collections::HashSet<&str> = redemptions.iter().map(|r| r.id.as_str()).collect();
                for e in entries.iter().filter_map(|e| e.redemption_id.as_deref()) {
                    if !known.contains(e) {
                        flag("redemption_entries_mismatch", format!("entries of redemption {e}, which does not exist"));
                    }
                }
                let overdue = wallet.due(stuck_before);
                if overdue > 0 {
                    flag("points_expiry_stuck", format!("{overdue} points past their expiry are not expired"));
                }
            }
            match ids.last() {
                Some(last) if ids.len() as u32 == PAGE => after = last.to_string(),
                _ => break,
            }
        }
        Ok(())
    }
}
