//! Ledger deltas: what one event must write so the ledger equals the
//! entitlement (delta = entitlement − applied, per beneficiary and kind).
use super::entitlement::{CommissionKind, CommissionLine, Entitlement, RewardKind, RewardLine};
use super::ids::{AffiliateId, BuyerId};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

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
