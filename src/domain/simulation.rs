//! A backtest's arithmetic (docs/API.md "Simulations"): each past order's
//! lines under a baseline (what the ledger holds, or another program
//! version) and under a candidate program, summed per kind and level, per
//! affiliate and per order. Pure; memory grows with the affiliates, never
//! with the orders (the orders with the largest change are kept in a
//! bounded heap).
use super::caps::CounterKey;
use super::entitlement::CommissionKind;
use super::ids::{AffiliateId, OrderId};
use rust_decimal::Decimal;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// How many affiliates and orders the result lists by the size of their change.
pub const TOP: usize = 100;

/// One side's lines of an order: (affiliate, level, kind, amount), and points.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub commissions: Vec<(AffiliateId, u8, CommissionKind, Decimal)>,
    pub points: i64,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub orders: u64,
    /// (kind, level) → (baseline, candidate).
    by_kind_level: BTreeMap<(CommissionKind, u8), (Decimal, Decimal)>,
    points: (i64, i64),
    /// affiliate → (baseline, candidate, reaches a tier bonus it did not, reaches a milestone it did not).
    affiliates: HashMap<AffiliateId, AffiliateTotals>,
    /// The orders with the largest |delta| (a min-heap of TOP).
    orders_heap: BinaryHeap<Reverse<(Decimal, OrderId, Decimal, Decimal)>>,
    /// The candidate's caps and budgets: per window, what its lines would
    /// take before any cut, and the maximum.
    windows: HashMap<CounterKey, (Decimal, Decimal, i64, i64)>,
}

/// A cap or budget of the candidate that its window's lines would pass.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WouldBind {
    /// `affiliate` or `program`.
    pub scope: String,
    /// The affiliate (empty for a budget).
    pub subject: String,
    pub period: super::caps::Period,
    pub window_start: chrono::DateTime<chrono::Utc>,
    /// What the window's lines add up to before any cut (commission; points).
    pub entitled: Decimal,
    pub max: Option<Decimal>,
    pub entitled_points: i64,
    pub max_points: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct AffiliateTotals {
    baseline: Decimal,
    candidate: Decimal,
    tier: (bool, bool),
    milestone: (bool, bool),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Total {
    pub kind: CommissionKind,
    pub level: u8,
    pub baseline: Decimal,
    pub candidate: Decimal,
    pub delta: Decimal,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub id: String,
    pub baseline: Decimal,
    pub candidate: Decimal,
    pub delta: Decimal,
}

/// What a finished simulation found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub orders: u64,
    pub totals: Vec<Total>,
    pub baseline_total: Decimal,
    pub candidate_total: Decimal,
    pub points_baseline: i64,
    pub points_candidate: i64,
    /// The TOP affiliates by |delta|.
    pub top_affiliates: Vec<Change>,
    /// The TOP orders by |delta|.
    pub top_orders: Vec<Change>,
    /// Affiliates paid a tier bonus (a milestone bonus) under the candidate
    /// and not under the baseline, and the other way round.
    pub affiliates_reaching_a_tier: u64,
    pub affiliates_losing_a_tier: u64,
    pub affiliates_reaching_a_milestone: u64,
    pub affiliates_losing_a_milestone: u64,
    /// The candidate's caps and budgets its windows would pass, the most
    /// passed first (the TOP), and how many windows in all.
    #[serde(default)]
    pub caps_that_would_bind: Vec<WouldBind>,
    #[serde(default)]
    pub windows_that_would_bind: u64,
    /// Every affiliate with a line on either side: (id, baseline, candidate).
    pub affiliates: Vec<(AffiliateId, Decimal, Decimal)>,
}

impl Tally {
    pub fn add(&mut self, order: &OrderId, baseline: &Side, candidate: &Side) {
        self.orders += 1;
        let mut order_totals = (Decimal::ZERO, Decimal::ZERO);
        for (side, lines) in [(0, &baseline.commissions), (1, &candidate.commissions)] {
            for (affiliate, level, kind, amount) in lines {
                let slot = self.by_kind_level.entry((*kind, *level)).or_default();
                let a = self.affiliates.entry(affiliate.clone()).or_default();
                if side == 0 {
                    slot.0 += amount;
                    a.baseline += amount;
                    order_totals.0 += amount;
                } else {
                    slot.1 += amount;
                    a.candidate += amount;
                    order_totals.1 += amount;
                }
                let flag = |pair: &mut (bool, bool)| if side == 0 { pair.0 = true } else { pair.1 = true };
                if amount > &Decimal::ZERO {
                    match kind {
                        CommissionKind::TierBonus => flag(&mut a.tier),
                        CommissionKind::MilestoneBonus => flag(&mut a.milestone),
                        CommissionKind::Commission | CommissionKind::Adjustment => {}
                    }
                }
            }
        }
        self.points.0 += baseline.points;
        self.points.1 += candidate.points;
        let delta = order_totals.1 - order_totals.0;
        if !delta.is_zero() {
            self.orders_heap.push(Reverse((delta.abs(), order.clone(), order_totals.0, order_totals.1)));
            if self.orders_heap.len() > TOP {
                self.orders_heap.pop();
            }
        }
    }

    /// Adds a candidate line to a cap's or budget's window (before any cut).
    pub fn charge_window(
        &mut self,
        key: &CounterKey,
        commission: Option<(Decimal, Decimal)>,
        points: Option<(i64, i64)>,
    ) {
        let w = self.windows.entry(key.clone()).or_insert((Decimal::ZERO, Decimal::MAX, 0, i64::MAX));
        if let Some((amount, max)) = commission {
            w.0 += amount;
            w.1 = max;
        }
        if let Some((p, max)) = points {
            w.2 += p;
            w.3 = max;
        }
    }

    pub fn finish(self) -> Outcome {
        let totals: Vec<Total> = self
            .by_kind_level
            .iter()
            .map(|((kind, level), (b, c))| Total {
                kind: *kind,
                level: *level,
                baseline: b.normalize(),
                candidate: c.normalize(),
                delta: (c - b).normalize(),
            })
            .collect();
        let mut affiliates: Vec<(AffiliateId, Decimal, Decimal)> = self
            .affiliates
            .iter()
            .map(|(id, t)| (id.clone(), t.baseline.normalize(), t.candidate.normalize()))
            .collect();
        affiliates.sort_by(|a, b| a.0.cmp(&b.0));
        let mut by_change: Vec<&(AffiliateId, Decimal, Decimal)> =
            affiliates.iter().filter(|(_, b, c)| b != c).collect();
        by_change.sort_by(|x, y| (y.2 - y.1).abs().cmp(&(x.2 - x.1).abs()).then_with(|| x.0.cmp(&y.0)));
        let change = |id: String, b: Decimal, c: Decimal| Change {
            id,
            baseline: b.normalize(),
            candidate: c.normalize(),
            delta: (c - b).normalize(),
        };
        let top_affiliates =
            by_change.iter().take(TOP).map(|(id, b, c)| change(id.as_str().to_owned(), *b, *c)).collect();
        let mut top_orders: Vec<Change> =
            self.orders_heap.into_iter().map(|Reverse((_, id, b, c))| change(id.as_str().to_owned(), b, c)).collect();
        top_orders.sort_by(|x, y| y.delta.abs().cmp(&x.delta.abs()).then_with(|| x.id.cmp(&y.id)));
        let count = |f: &dyn Fn(&AffiliateTotals) -> bool| self.affiliates.values().filter(|t| f(t)).count() as u64;
        let mut binding: Vec<WouldBind> = self
            .windows
            .iter()
            .filter(|(_, w)| w.0 > w.1 || w.2 > w.3)
            .map(|(k, w)| WouldBind {
                scope: k.scope.kind().to_owned(),
                subject: k.scope.subject().to_owned(),
                period: k.period,
                window_start: k.start,
                entitled: w.0.normalize(),
                max: (w.1 != Decimal::MAX).then(|| w.1.normalize()),
                entitled_points: w.2,
                max_points: (w.3 != i64::MAX).then_some(w.3),
            })
            .collect();
        let windows_that_would_bind = binding.len() as u64;
        let over = |b: &WouldBind| b.max.map_or(Decimal::ZERO, |m| b.entitled - m);
        binding.sort_by(|x, y| {
            over(y).cmp(&over(x)).then_with(|| (&x.subject, x.window_start).cmp(&(&y.subject, y.window_start)))
        });
        binding.truncate(TOP);
        Outcome {
            orders: self.orders,
            baseline_total: totals.iter().map(|t| t.baseline).sum::<Decimal>().normalize(),
            candidate_total: totals.iter().map(|t| t.candidate).sum::<Decimal>().normalize(),
            totals,
            points_baseline: self.points.0,
            points_candidate: self.points.1,
            top_affiliates,
            top_orders,
            affiliates_reaching_a_tier: count(&|t| t.tier == (false, true)),
            affiliates_losing_a_tier: count(&|t| t.tier == (true, false)),
            affiliates_reaching_a_milestone: count(&|t| t.milestone == (false, true)),
            affiliates_losing_a_milestone: count(&|t| t.milestone == (true, false)),
            caps_that_would_bind: binding,
            windows_that_would_bind,
            affiliates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: &str) -> AffiliateId {
        AffiliateId::parse(id).unwrap()
    }

    #[test]
    fn totals_per_kind_and_level_affiliates_and_the_largest_orders() {
        let mut t = Tally::default();
        for n in 0..150u32 {
            let base = Side {
                commissions: vec![
                    (a("C"), 1, CommissionKind::Commission, Decimal::from(100)),
                    (a("B"), 2, CommissionKind::Commission, Decimal::from(30)),
                ],
                points: 10,
            };
            let mut cand = base.clone();
            cand.commissions[0].3 = Decimal::from(200 + n);
            cand.commissions.push((a("C"), 1, CommissionKind::TierBonus, Decimal::from(5)));
            t.add(&OrderId::parse(&format!("o-{n:03}")).unwrap(), &base, &cand);
        }
        let out = t.finish();
        assert_eq!(out.orders, 150);
        let c1 = out.totals.iter().find(|x| x.kind == CommissionKind::Commission && x.level == 1).unwrap();
        assert_eq!((c1.baseline, c1.candidate), (Decimal::from(15_000), Decimal::from(30_000 + 149 * 150 / 2)));
        let b2 = out.totals.iter().find(|x| x.level == 2).unwrap();
        assert_eq!(b2.delta, Decimal::ZERO);
        assert_eq!((out.points_baseline, out.points_candidate), (1500, 1500));
        assert_eq!(out.top_affiliates.len(), 1, "B does not change");
        assert_eq!(out.top_orders.len(), TOP);
        assert_eq!(out.top_orders[0].id, "o-149", "the largest change first");
        assert_eq!(out.affiliates_reaching_a_tier, 1);
        assert_eq!(out.affiliates.len(), 2);
    }
}
