//! Ledger deltas: what one event must write so the ledger equals the
//! entitlement (delta = entitlement − applied, per beneficiary and kind).
use super::entitlement::{CommissionKind, CommissionLine, Entitlement, RewardKind, RewardLine};
use super::ids::{AffiliateId, BuyerId, OrderId};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Where a ledger entry stands in the payout lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    Pending,
    Approved,
    Paid,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Paid => "paid",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "paid" => Self::Paid,
            _ => return None,
        })
    }
}

/// One stored commission ledger entry.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub id: u64,
    pub affiliate_id: AffiliateId,
    pub order_id: OrderId,
    pub event_id: String,
    pub level: u8,
    pub kind: CommissionKind,
    pub amount: Decimal,
    pub status: EntryStatus,
    pub rule_version: u64,
    pub created_at: DateTime<Utc>,
    /// What a cap or budget cut from the line (docs/RULES.md "Caps and budgets").
    pub cut: Option<super::caps::Cut<Decimal>>,
}

/// One stored buyer reward entry.
#[derive(Debug, Clone)]
pub struct RewardEntry {
    pub id: u64,
    pub buyer_id: BuyerId,
    /// The order that earned or reversed the points (None: a wallet entry).
    pub order_id: Option<OrderId>,
    pub event_id: String,
    pub kind: RewardKind,
    pub points: i64,
    pub created_at: DateTime<Utc>,
    /// The redemption of a `redemption` / `redemption_released` entry.
    pub redemption_id: Option<String>,
    /// When an earned entry's points expire (None: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// What a points budget cut from the line.
    pub cut: Option<super::caps::Cut<i64>>,
}

/// A buyer's points and reward history.
#[derive(Debug, Clone)]
pub struct BuyerRewards {
    pub buyer_id: BuyerId,
    /// The stored balance: the signed sum of the history (negative: a debt).
    pub points: i128,
    pub history: Vec<RewardEntry>,
}

/// What the ledger already holds for one order, summed per (beneficiary, kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// (affiliate, kind) → (level, Σ amount)
    pub commissions: BTreeMap<(AffiliateId, CommissionKind), (u8, Decimal)>,
    /// (buyer, kind) → Σ points
    pub rewards: BTreeMap<(BuyerId, RewardKind), i64>,
}

/// The rows one event writes: at most one per (beneficiary, kind), never a zero amount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub commissions: Vec<CommissionLine>,
    pub rewards: Vec<RewardLine>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.commissions.is_empty() && self.rewards.is_empty()
    }
}

/// entitlement − applied, per key, zero differences dropped; deterministic order
/// (sorted by beneficiary then kind). A key only in `applied` yields its negation.
pub fn delta(entitled: &Entitlement, applied: &Applied) -> Delta {
    let mut commissions: BTreeMap<(AffiliateId, CommissionKind), (u8, Decimal)> = BTreeMap::new();
    for line in &entitled.commissions {
        let e = commissions.entry((line.affiliate_id.clone(), line.kind)).or_insert((line.level, Decimal::ZERO));
        e.0 = line.level;
        e.1 += line.amount;
    }
    for ((affiliate, kind), (level, amount)) in &applied.commissions {
        let e = commissions.entry((affiliate.clone(), *kind)).or_insert((*level, Decimal::ZERO));
        e.1 -= *amount;
    }
    let mut rewards: BTreeMap<(BuyerId, RewardKind), i64> = BTreeMap::new();
    for line in &entitled.rewards {
        *rewards.entry((line.buyer_id.clone(), line.kind)).or_default() += line.points;
    }
    for ((buyer, kind), points) in &applied.rewards {
        *rewards.entry((buyer.clone(), *kind)).or_default() -= *points;
    }
    Delta {
        commissions: commissions
            .into_iter()
            .filter(|(_, (_, amount))| !amount.is_zero())
            .map(|((affiliate_id, kind), (level, amount))| CommissionLine { affiliate_id, level, kind, amount })
            .collect(),
        rewards: rewards
            .into_iter()
            .filter(|(_, points)| *points != 0)
            .map(|((buyer_id, kind), points)| RewardLine { buyer_id, kind, points })
            .collect(),
    }
}

impl Applied {
    /// Adds written rows (used after a delta is committed, and by tests).
    pub fn add(&mut self, delta: &Delta) {
        for line in &delta.commissions {
            let e =
                self.commissions.entry((line.affiliate_id.clone(), line.kind)).or_insert((line.level, Decimal::ZERO));
            e.0 = line.level;
            e.1 += line.amount;
        }
        for line in &delta.rewards {
            *self.rewards.entry((line.buyer_id.clone(), line.kind)).or_default() += line.points;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn line(affiliate: &str, level: u8, kind: CommissionKind, amount: &str) -> CommissionLine {
        CommissionLine { affiliate_id: AffiliateId::parse(affiliate).unwrap(), level, kind, amount: d(amount) }
    }

    fn reward(kind: RewardKind, points: i64) -> RewardLine {
        RewardLine { buyer_id: BuyerId::parse("x").unwrap(), kind, points }
    }

    fn entitlement(commissions: Vec<CommissionLine>, rewards: Vec<RewardLine>) -> Entitlement {
        Entitlement {
            eligible_amount: Decimal::ZERO,
            original_eligible_amount: Decimal::ZERO,
            no_commission_reason: None,
            commissions,
            rewards,
        }
    }

    #[test]
    fn delta_is_entitled_minus_applied_per_key_sorted_and_without_zeros() {
        use CommissionKind::*;
        let mut applied = Applied::default();
        applied.add(&Delta {
            commissions: vec![
                line("C", 1, Commission, "95000"),
                line("C", 1, TierBonus, "1000"),
                line("B", 2, Commission, "64500"),
            ],
            rewards: vec![reward(RewardKind::Points, 21500), reward(RewardKind::FirstOrderBonus, 5000)],
        });
        let entitled = entitlement(
            vec![
                line("C", 1, MilestoneBonus, "25000"),
                line("C", 1, Commission, "15000"),
                line("B", 2, Commission, "64500"),
            ],
            vec![reward(RewardKind::FirstOrderBonus, 5000), reward(RewardKind::Points, 1500)],
        );
        let change = delta(&entitled, &applied);
        assert_eq!(
            change.commissions,
            vec![
                line("C", 1, Commission, "-80000"),
                // Only in the ledger: taken back whole, at the level it was paid at.
                line("C", 1, TierBonus, "-1000"),
                line("C", 1, MilestoneBonus, "25000"),
            ]
        );
        assert_eq!(change.rewards, vec![reward(RewardKind::Points, -20000)]);
        applied.add(&change);
        assert!(delta(&entitled, &applied).is_empty());
        // A fully clawed-back key stays in `applied` at zero and needs nothing more.
        assert_eq!(applied.commissions[&(AffiliateId::parse("C").unwrap(), TierBonus)], (1, d("0")));
        assert!(delta(&entitlement(vec![], vec![]), &Applied::default()).is_empty());
    }

    #[test]
    fn an_empty_entitlement_reverses_everything() {
        let mut applied = Applied::default();
        let first = Delta {
            commissions: vec![line("A", 3, CommissionKind::Commission, "21500")],
            rewards: vec![reward(RewardKind::Points, 26500)],
        };
        applied.add(&first);
        applied.add(&first);
        assert_eq!(
            applied.commissions[&(AffiliateId::parse("A").unwrap(), CommissionKind::Commission)],
            (3, d("43000"))
        );
        let change = delta(&entitlement(vec![], vec![]), &applied);
        assert_eq!(change.commissions, vec![line("A", 3, CommissionKind::Commission, "-43000")]);
        assert_eq!(change.rewards, vec![reward(RewardKind::Points, -53000)]);
    }

    #[test]
    fn the_entitled_level_wins_over_the_applied_one() {
        let mut applied = Applied::default();
        applied.add(&Delta { commissions: vec![line("A", 2, CommissionKind::Commission, "10")], rewards: vec![] });
        let change = delta(&entitlement(vec![line("A", 3, CommissionKind::Commission, "4")], vec![]), &applied);
        assert_eq!(change.commissions, vec![line("A", 3, CommissionKind::Commission, "-6")]);
        applied.add(&change);
        assert_eq!(applied.commissions[&(AffiliateId::parse("A").unwrap(), CommissionKind::Commission)], (3, d("4")));
    }
}
