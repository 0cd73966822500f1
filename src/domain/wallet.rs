//! A buyer's points as lots (RULES.md "Spending points"): every positive
//! order reward is a lot with its own expiry; points leave lots soonest
//! expiry first (oldest first while `points_expire_days` stays the same).
//! The wallet is never stored: it is derived from the buyer's reward history
//! ([`Wallet::replay`]), a pure function of the entries in the order they
//! were written, so the expiry sweep and reconcile compute the same lots.
//!
//! Entry kinds and what they do to the lots:
//! - `points` / `first_order_bonus` > 0 (earned): pays any debt first, the
//!   rest is a new lot.
//! - `points` / `first_order_bonus` < 0 (a refund or cancel reversing what an
//!   order earned): taken from that order's own lots, then soonest expiry
//!   first, and what no lot covers (points already spent) becomes a debt,
//!   netted against later earnings.
//! - `redemption` < 0 (a hold): taken soonest expiry first; the lots it took
//!   are remembered under the redemption id.
//! - `redemption_released` > 0 (a release or an expired hold): the points go
//!   back to the lots they came from, paying any debt first.
//! - `expired` < 0: the sweep's removal of every lot whose expiry has passed.
//!
//! So `spendable − debt` is always the signed sum of the history, and at most
//! one of the two is non-zero.
use super::entitlement::RewardKind;
use super::ids::{BuyerId, OrderId, RedemptionId};
use super::ledger::{BuyerRewards, RewardEntry};
use super::money::{self, Rounding};
use super::program::Program;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// Where a redemption hold stands: `held` until captured, released, or
/// expired (its hold time passed uncaptured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedemptionStatus {
    Held,
    Captured,
    Released,
    Expired,
}

impl RedemptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => Self::Held,
            "captured" => Self::Captured,
            "released" => Self::Released,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
    /// Whether the hold's points are out of the balance (held or captured).
    pub fn holds_points(self) -> bool {
        matches!(self, Self::Held | Self::Captured)
    }
}

/// Points a storefront reserved at checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub buyer_id: BuyerId,
    pub id: RedemptionId,
    pub points: i64,
    pub order_id: Option<OrderId>,
    pub status: RedemptionStatus,
    /// points × `points_value`, floored to the program scale: the discount.
    pub value: Decimal,
    pub program_version: u64,
    /// An uncaptured hold expires then.
    pub hold_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The most points one redemption may hold (a reward entry is a 64-bit integer).
pub const MAX_REDEMPTION_POINTS: i64 = 1_000_000_000_000_000;

/// One reward history entry, as the wallet needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletEntry {
    /// Write order: entries of one buyer are written under the buyer's lock,
    /// so ids order them as they happened.
    pub id: u64,
    pub kind: RewardKind,
    pub points: i64,
    pub order_id: Option<OrderId>,
    pub redemption_id: Option<String>,
    /// When the entry was written.
    pub at: DateTime<Utc>,
    /// An earned lot's expiry (None: never).
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<&RewardEntry> for WalletEntry {
    fn from(e: &RewardEntry) -> Self {
        WalletEntry {
            id: e.id,
            kind: e.kind,
            points: e.points,
            order_id: e.order_id.clone(),
            redemption_id: e.redemption_id.clone(),
            at: e.created_at,
            expires_at: e.expires_at,
        }
    }
}

/// Points earned by one entry, and what is left of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub entry: u64,
    pub order_id: Option<OrderId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub points: i64,
    pub remaining: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wallet {
    pub lots: Vec<Lot>,
    /// Points reversed after they were spent, to be netted against later earnings.
    pub debt: i128,
    /// Redemption id → (lot index, points) it holds or captured.
    pub allocations: HashMap<String, Vec<(usize, i64)>>,
    /// Entries that break a rule (a hold above the lots, a release of nothing,
    /// an expiry of lots not yet due): empty for a sound history.
    pub problems: Vec<String>,
}

impl Wallet {
    /// The wallet after these entries, in id order.
    pub fn replay(entries: &[WalletEntry]) -> Wallet {
        let mut wallet = Wallet::default();
        for e in entries {
            wallet.apply(e);
        }
        wallet
    }

    /// Points that may be held now.
    pub fn spendable(&self) -> i128 {
        self.lots.iter().map(|l| i128::from(l.remaining)).sum()
    }

    /// Spendable minus debt: the signed sum of the history.
    pub fn net(&self) -> i128 {
        self.spendable() - self.debt
    }

    /// Points whose lots expire at or before `now`.
    pub fn due(&self, now: DateTime<Utc>) -> i64 {
        self.lots.iter().filter(|l| l.expires_at.is_some_and(|at| at <= now)).map(|l| l.remaining).sum()
    }

    /// When the next points expire (the sweep's due time), if any will.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.lots.iter().filter(|l| l.remaining > 0).filter_map(|l| l.expires_at).min()
    }

    /// Lot indices in spending order: soonest expiry first (never-expiring
    /// last), then oldest.
    fn spending_order(&self, only: impl Fn(&Lot) -> bool) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.lots.len()).filter(|&i| only(&self.lots[i])).collect();
        order.sort_by_key(|&i| (self.lots[i].expires_at.is_none(), self.lots[i].expires_at, self.lots[i].entry));
        order
    }

    /// Takes up to `want` points from these lots in turn; returns what each gave.
    fn take(&mut self, order: &[usize], want: i64) -> Vec<(usize, i64)> {
        let mut left = want;
        let mut taken = Vec::new();
        for &i in order {
            if left == 0 {
                break;
            }
            let n = self.lots[i].remaining.min(left);
            if n > 0 {
                self.lots[i].remaining -= n;
                left -= n;
                taken.push((i, n));
            }
        }
        taken
    }

    fn pay_debt_from(&mut self, order: &[usize]) {
        let owed = i64::try_from(self.debt).unwrap_or(i64::MAX);
        if owed > 0 {
            let paid: i64 = self.take(order, owed).iter().map(|(_, n)| n).sum();
            self.debt -= i128::from(paid);
        }
    }

    pub fn apply(&mut self, e: &WalletEntry) {
        let want = e.points.unsigned_abs().min(i64::MAX as u64) as i64;
        match e.kind {
            RewardKind::Points | RewardKind::FirstOrderBonus | RewardKind::Adjustment if e.points > 0 => {
                let paid = i64::try_from(self.debt).unwrap_or(i64::MAX).min(e.points);
                self.debt -= i128::from(paid);
                self.lots.push(Lot {
                    entry: e.id,
                    order_id: e.order_id.clone(),
                    expires_at: e.expires_at,
                    points: e.points,
                    remaining: e.points - paid,
                });
            }
            RewardKind::Points | RewardKind::FirstOrderBonus => {
                let own = self.spending_order(|l| l.order_id.is_some() && l.order_id == e.order_id);
                let mut got: i64 = self.take(&own, want).iter().map(|(_, n)| n).sum();
                if got < want {
                    let any = self.spending_order(|_| true);
                    got += self.take(&any, want - got).iter().map(|(_, n)| n).sum::<i64>();
                }
                self.debt += i128::from(want - got);
            }
            RewardKind::Adjustment => {
                // A debit takes from the lots in spending order; one past
                // them (never accepted: `adjustment::check_points`) is a debt.
                let any = self.spending_order(|_| true);
                let got: i64 = self.take(&any, want).iter().map(|(_, n)| n).sum();
                self.debt += i128::from(want - got);
            }
            RewardKind::Redemption => {
                let rid = e.redemption_id.clone().unwrap_or_default();
                let any = self.spending_order(|_| true);
                let taken = self.take(&any, want);
                let got: i64 = taken.iter().map(|(_, n)| n).sum();
                if got < want {
                    self.problems.push(format!("redemption {rid} holds {want} points with {got} spendable"));
                    self.debt += i128::from(want - got);
                }
                if self.allocations.insert(rid.clone(), taken).is_some() {
                    self.problems.push(format!("redemption {rid} held twice"));
                }
            }
            RewardKind::RedemptionReleased => {
                let rid = e.redemption_id.clone().unwrap_or_default();
                let Some(taken) = self.allocations.remove(&rid) else {
                    self.problems.push(format!("redemption {rid} released without a hold"));
                    return;
                };
                let back: i64 = taken.iter().map(|(_, n)| n).sum();
                if back != want {
                    self.problems.push(format!("redemption {rid} released {want} points of {back} held"));
                }
                let mut lots: Vec<usize> = Vec::with_capacity(taken.len());
                for (i, n) in taken {
                    self.lots[i].remaining += n;
                    lots.push(i);
                }
                lots.sort_by_key(|&i| (self.lots[i].expires_at.is_none(), self.lots[i].expires_at, self.lots[i].entry));
                self.pay_debt_from(&lots);
            }
            RewardKind::Expired => {
                let due = self.spending_order(|l| l.expires_at.is_some_and(|at| at <= e.at));
                let got: i64 = self.take(&due, want).iter().map(|(_, n)| n).sum();
                if got < want {
                    self.problems.push(format!("expiry {} removes {want} points of {got} due", e.id));
                }
            }
        }
    }
}

/// What the buyer sees: spendable points and debt from the signed sum of
/// the history (the stored balance).
pub fn spendable_of(net: i128) -> i128 {
    net.max(0)
}

pub fn debt_of(net: i128) -> i128 {
    (-net).max(0)
}

/// A storefront's hold of points for a redemption.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub buyer_id: BuyerId,
    pub id: RedemptionId,
    pub points: i64,
    pub order_id: Option<OrderId>,
}

/// Whether a hold may be taken, given the redemption stored under its id
/// and the buyer's stored balance (None: the buyer never earned anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldCheck {
    /// The same redemption id and body again: answered with the stored one.
    Existing,
    /// The redemption id is taken by another body.
    Conflict,
    /// More than is spendable.
    Insufficient {
        spendable: i128,
    },
    Allowed,
}

/// The hold rule: a redemption id answers its first body again; a hold
/// takes at most the spendable points (a debt leaves nothing spendable).
pub fn check_hold(earlier: Option<&Redemption>, req: &HoldRequest, balance: Option<i128>) -> HoldCheck {
    if let Some(r) = earlier {
        let same = r.points == req.points && r.order_id == req.order_id;
        return if same { HoldCheck::Existing } else { HoldCheck::Conflict };
    }
    let spendable = spendable_of(balance.unwrap_or(0));
    if i128::from(req.points) > spendable {
        return HoldCheck::Insufficient { spendable };
    }
    HoldCheck::Allowed
}

/// A new hold: its value is the points at the program's value of a point,
/// floored to the program scale; it expires `redemption_hold_minutes` from now.
pub fn new_hold(req: &HoldRequest, program: &Program, version: u64, now: DateTime<Utc>) -> Redemption {
    let value = money::round(Decimal::from(req.points) * program.points_value, program.scale, Rounding::Floor);
    Redemption {
        buyer_id: req.buyer_id.clone(),
        id: req.id.clone(),
        points: req.points,
        order_id: req.order_id.clone(),
        status: RedemptionStatus::Held,
        value,
        program_version: version,
        hold_until: now + chrono::TimeDelta::minutes(i64::from(program.redemption_hold_minutes)),
        created_at: now,
        updated_at: now,
    }
}

/// What a capture or release of a held redemption writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The points stay spent (for `order`, when the hold named none).
    Capture,
    /// The points come back (the storefront released the hold).
    Release,
    /// The points come back: the hold time has passed.
    Expire,
}

/// Why a capture or release writes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Already so: an idempotent repeat.
    Unchanged,
    /// Not possible in the redemption's state.
    Conflict(String),
}

/// The capture rule: a held redemption is captured, once, for its order
/// (or the one the capture names); a hold whose time has passed expires
/// instead (and the capture is refused once it has); released or expired
/// points are back and cannot be captured.
pub fn capture(r: &Redemption, order: Option<&OrderId>, now: DateTime<Utc>) -> Result<Action, Refusal> {
    let other_order = matches!((order, &r.order_id), (Some(a), Some(b)) if a != b);
    match r.status {
        RedemptionStatus::Captured if other_order => {
            Err(Refusal::Conflict("the redemption was captured for another order".into()))
        }
        RedemptionStatus::Captured => Err(Refusal::Unchanged),
        RedemptionStatus::Released | RedemptionStatus::Expired => {
            Err(Refusal::Conflict(format!("the redemption was {}: its points are back", r.status.as_str())))
        }
        RedemptionStatus::Held if r.hold_until <= now => Ok(Action::Expire),
        RedemptionStatus::Held if other_order => Err(Refusal::Conflict("the points are held for another order".into())),
        RedemptionStatus::Held => Ok(Action::Capture),
    }
}

/// The release rule: a held redemption's points come back; releasing a
/// released or expired one again changes nothing; captured points are spent.
pub fn release(r: &Redemption) -> Result<Action, Refusal> {
    match r.status {
        RedemptionStatus::Released | RedemptionStatus::Expired => Err(Refusal::Unchanged),
        RedemptionStatus::Captured => {
            Err(Refusal::Conflict("the redemption was captured: its points are spent".into()))
        }
        RedemptionStatus::Held => Ok(Action::Release),
    }
}

/// The wallet rules reconcile checks for one buyer, each problem as
/// (violation kind, detail): its history replays as lots with no problem
/// (no hold above the spendable points, no lot spent twice, no release of
/// nothing, no expiry of points not due); balance = earned − reversed +
/// adjusted − expired − captured − held; spendable and debt never negative nor both
/// positive; each redemption's entries agree with its status; no hold and
/// no lot is left past its due time before `stuck_before`.
pub fn audit(
    rewards: &BuyerRewards,
    redemptions: &[Redemption],
    stuck_before: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let entries: Vec<WalletEntry> = rewards.history.iter().map(WalletEntry::from).collect();
    let wallet = Wallet::replay(&entries);
    for problem in &wallet.problems {
        found.push(("wallet_entry_invalid", problem.clone()));
    }
    let sum = |kind: RewardKind, sign: i64| -> i128 {
        entries.iter().filter(|e| e.kind == kind && e.points.signum() == sign).map(|e| i128::from(e.points.abs())).sum()
    };
    let order_kinds = [RewardKind::Points, RewardKind::FirstOrderBonus];
    let earned: i128 = order_kinds.iter().map(|k| sum(*k, 1)).sum();
    let reversed: i128 = order_kinds.iter().map(|k| sum(*k, -1)).sum();
    let expired = sum(RewardKind::Expired, -1);
    let adjusted = sum(RewardKind::Adjustment, 1) - sum(RewardKind::Adjustment, -1);
    let of = |status: RedemptionStatus| -> i128 {
        redemptions.iter().filter(|r| r.status == status).map(|r| i128::from(r.points)).sum()
    };
    let (captured, held) = (of(RedemptionStatus::Captured), of(RedemptionStatus::Held));
    if earned - reversed + adjusted - expired - captured - held != rewards.points {
        found.push((
            "wallet_balance_mismatch",
            format!(
                "balance {} but earned {earned} - reversed {reversed} + adjusted {adjusted} - expired {expired} - \
                 captured {captured} - held {held}",
                rewards.points
            ),
        ));
    }
    if wallet.spendable() < 0 || wallet.debt < 0 || (wallet.spendable() > 0 && wallet.debt > 0) {
        found.push(("wallet_negative", format!("spendable {} and debt {}", wallet.spendable(), wallet.debt)));
    }
    audit_redemptions(&entries, redemptions, stuck_before, &mut found);
    let overdue = wallet.due(stuck_before);
    if overdue > 0 {
        found.push(("points_expiry_stuck", format!("{overdue} points past their expiry are not expired")));
    }
    found
}

/// Each redemption's entries: its points taken once, given back once unless
/// it still holds them; no entries of a redemption that does not exist; no
/// hold past its time.
fn audit_redemptions(
    entries: &[WalletEntry],
    redemptions: &[Redemption],
    stuck_before: DateTime<Utc>,
    found: &mut Vec<(&'static str, String)>,
) {
    for r in redemptions {
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
            found.push((
                "redemption_entries_mismatch",
                format!(
                    "redemption {} is {} for {} points but its entries are {taken:?} / {back:?}",
                    r.id,
                    r.status.as_str(),
                    r.points
                ),
            ));
        }
        if r.status == RedemptionStatus::Held && r.hold_until < stuck_before {
            found.push(("redemption_hold_stuck", format!("redemption {} held past its hold time", r.id)));
        }
    }
    let known: std::collections::HashSet<&str> = redemptions.iter().map(|r| r.id.as_str()).collect();
    for e in entries.iter().filter_map(|e| e.redemption_id.as_deref()) {
        if !known.contains(e) {
            found.push(("redemption_entries_mismatch", format!("entries of redemption {e}, which does not exist")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(day: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::days(day)
    }

    struct History {
        entries: Vec<WalletEntry>,
    }

    impl History {
        fn push(
            &mut self,
            kind: RewardKind,
            points: i64,
            order: Option<&str>,
            rid: Option<&str>,
            at: i64,
            exp: Option<i64>,
        ) {
            let id = self.entries.len() as u64 + 1;
            self.entries.push(WalletEntry {
                id,
                kind,
                points,
                order_id: order.map(|o| OrderId::from_trusted(o.to_owned())),
                redemption_id: rid.map(str::to_owned),
                at: t(at),
                expires_at: exp.map(t),
            });
        }
        fn wallet(&self) -> Wallet {
            Wallet::replay(&self.entries)
        }
    }

    #[test]
    fn points_leave_the_lots_soonest_expiry_first_and_expire_oldest_first() {
        let mut h = History { entries: vec![] };
        h.push(RewardKind::Points, 100, Some("o1"), None, 0, Some(30));
        h.push(RewardKind::Points, 50, Some("o2"), None, 10, Some(40));
        h.push(RewardKind::Redemption, -120, None, Some("r1"), 11, None);
        let w = h.wallet();
        assert_eq!(w.lots.iter().map(|l| l.remaining).collect::<Vec<_>>(), vec![0, 30]);
        assert_eq!(w.due(t(35)), 0);
        assert_eq!(w.due(t(40)), 30);
        assert_eq!(w.next_expiry(), Some(t(40)));
        // Released after the first lot expired: its 100 points are due at once.
        h.push(RewardKind::RedemptionReleased, 120, None, Some("r1"), 31, None);
        let w = h.wallet();
        assert_eq!(w.due(t(31)), 100);
        h.push(RewardKind::Expired, -100, None, None, 31, None);
        let w = h.wallet();
        assert_eq!((w.spendable(), w.debt, w.problems.len()), (50, 0, 0));
    }

    #[test]
    fn a_reversal_of_spent_points_is_a_debt_paid_by_the_next_earnings() {
        let mut h = History { entries: vec![] };
        h.push(RewardKind::Points, 100, Some("o1"), None, 0, None);
        h.push(RewardKind::Redemption, -80, None, Some("r1"), 1, None);
        h.push(RewardKind::Points, -100, Some("o1"), None, 2, None);
        let w = h.wallet();
        assert_eq!((w.spendable(), w.debt, w.net()), (0, 80, -80));
        h.push(RewardKind::Points, 50, Some("o2"), None, 3, None);
        assert_eq!((h.wallet().spendable(), h.wallet().debt), (0, 30));
        // The hold is released: its 80 points pay the rest of the debt.
        h.push(RewardKind::RedemptionReleased, 80, None, Some("r1"), 4, None);
        let w = h.wallet();
        assert_eq!((w.spendable(), w.debt, w.problems.len()), (50, 0, 0));
    }

    #[test]
    fn a_reversal_takes_its_own_orders_lot_first() {
        let mut h = History { entries: vec![] };
        h.push(RewardKind::Points, 100, Some("o1"), None, 0, Some(10));
        h.push(RewardKind::Points, 60, Some("o2"), None, 1, Some(20));
        h.push(RewardKind::Points, -60, Some("o2"), None, 2, None);
        assert_eq!(h.wallet().lots.iter().map(|l| l.remaining).collect::<Vec<_>>(), vec![100, 0]);
    }

    #[test]
    fn a_hold_above_the_lots_or_a_release_of_nothing_is_a_problem() {
        let mut h = History { entries: vec![] };
        h.push(RewardKind::Points, 10, Some("o1"), None, 0, None);
        h.push(RewardKind::Redemption, -11, None, Some("r1"), 1, None);
        h.push(RewardKind::RedemptionReleased, 5, None, Some("r2"), 2, None);
        assert_eq!(h.wallet().problems.len(), 2);
    }

    /// One step of a buyer's life, as the engine would write it.
    #[derive(Debug, Clone)]
    enum Step {
        Earn {
            order: u8,
            points: i64,
            expire_days: Option<i64>,
        },
        /// Reverse this share (per mille) of what the order holds now.
        Refund {
            order: u8,
            per_mille: i64,
        },
        Hold {
            points: i64,
        },
        Capture {
            which: u8,
        },
        Release {
            which: u8,
        },
        /// Time passes; the sweep expires what is due.
        Sweep {
            days: i64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..6, 1i64..5_000, prop::option::of(1i64..60)).prop_map(|(order, points, expire_days)| Step::Earn {
                order,
                points,
                expire_days
            }),
            (0u8..6, 1i64..=1000).prop_map(|(order, per_mille)| Step::Refund { order, per_mille }),
            (1i64..8_000).prop_map(|points| Step::Hold { points }),
            (0u8..8).prop_map(|which| Step::Capture { which }),
            (0u8..8).prop_map(|which| Step::Release { which }),
            (0i64..40).prop_map(|days| Step::Sweep { days }),
        ]
    }

    proptest! {
        /// For any sequence of earn / refund / hold / capture / release /
        /// expire, written as the engine writes them: the balance is the sum
        /// of the history, spendable points and debt are never negative and
        /// never both positive, a hold never takes more than is spendable,
        /// no lot gives more than it holds, and nothing due stays unexpired
        /// after a sweep.
        #[test]
        fn the_balance_is_the_sum_of_the_history_and_never_negative(steps in prop::collection::vec(step(), 1..60)) {
            let mut h = History { entries: vec![] };
            let mut day = 0i64;
            let mut earned: HashMap<u8, i64> = HashMap::new();
            // (redemption id, points, open)
            let mut holds: Vec<(String, i64, bool)> = Vec::new();
            for s in steps {
                let w = h.wallet();
                let spendable = spendable_of(w.net());
                match s {
                    Step::Earn { order, points, expire_days } => {
                        let o = format!("o{order}");
                        h.push(RewardKind::Points, points, Some(&o), None, day, expire_days.map(|d| day + d));
                        *earned.entry(order).or_default() += points;
                    }
                    Step::Refund { order, per_mille } => {
                        let held = earned.get(&order).copied().unwrap_or(0);
                        let n = held * per_mille / 1000;
                        if n > 0 {
                            let o = format!("o{order}");
                            h.push(RewardKind::Points, -n, Some(&o), None, day, None);
                            *earned.entry(order).or_default() -= n;
                        }
                    }
                    Step::Hold { points } => {
                        // The engine's check: the stored balance, not the lots.
                        if i128::from(points) <= spendable {
                            let rid = format!("r{}", holds.len());
                            h.push(RewardKind::Redemption, -points, None, Some(&rid), day, None);
                            holds.push((rid, points, true));
                        }
                    }
                    Step::Capture { which } => {
                        if let Some(hold) = holds.get_mut(usize::from(which)) {
                            hold.2 = false;
                        }
                    }
                    Step::Release { which } => {
                        if let Some((rid, points, open)) = holds.get_mut(usize::from(which)) {
                            if *open {
                                h.push(RewardKind::RedemptionReleased, *points, None, Some(&rid.clone()), day, None);
                                *open = false;
                            }
                        }
                    }
                    Step::Sweep { days } => {
                        day += days;
                        let due = h.wallet().due(t(day));
                        if due > 0 {
                            h.push(RewardKind::Expired, -due, None, None, day, None);
                        }
                        prop_assert_eq!(h.wallet().due(t(day)), 0);
                    }
                }
                let w = h.wallet();
                let sum: i128 = h.entries.iter().map(|e| i128::from(e.points)).sum();
                prop_assert_eq!(w.net(), sum);
                prop_assert!(w.spendable() >= 0 && w.debt >= 0);
                prop_assert!(w.spendable() == 0 || w.debt == 0, "spendable {} and debt {}", w.spendable(), w.debt);
                prop_assert_eq!(w.spendable(), spendable_of(sum));
                prop_assert!(w.problems.is_empty(), "{:?}", w.problems);
                for (i, lot) in w.lots.iter().enumerate() {
                    let allocated: i64 = w.allocations.values().flatten().filter(|(l, _)| *l == i).map(|(_, n)| n).sum();
                    prop_assert!(lot.remaining >= 0 && lot.remaining + allocated <= lot.points);
                }
            }
        }
    }

    fn reward(id: u64, kind: RewardKind, points: i64, rid: Option<&str>) -> RewardEntry {
        RewardEntry {
            id,
            buyer_id: BuyerId::parse("x").unwrap(),
            order_id: rid.is_none().then(|| OrderId::parse("o1").unwrap()),
            event_id: format!("e{id}"),
            kind,
            points,
            created_at: t(id as i64),
            redemption_id: rid.map(str::to_owned),
            expires_at: None,
            cut: None,
        }
    }

    fn redemption(status: RedemptionStatus, points: i64) -> Redemption {
        Redemption {
            buyer_id: BuyerId::parse("x").unwrap(),
            id: RedemptionId::parse("r1").unwrap(),
            points,
            order_id: None,
            status,
            value: rust_decimal::Decimal::ZERO,
            program_version: 1,
            hold_until: t(5),
            created_at: t(2),
            updated_at: t(2),
        }
    }

    #[test]
    fn an_exact_wallet_passes_the_audit_and_each_tampering_is_named() {
        let history =
            vec![reward(1, RewardKind::Points, 100, None), reward(2, RewardKind::Redemption, -30, Some("r1"))];
        let rewards = BuyerRewards { buyer_id: BuyerId::parse("x").unwrap(), points: 70, history: history.clone() };
        let held = [redemption(RedemptionStatus::Held, 30)];
        assert!(audit(&rewards, &held, t(0)).is_empty());
        let kinds = |found: Vec<(&'static str, String)>| found.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        // Released without its points back.
        let released = [redemption(RedemptionStatus::Released, 30)];
        assert_eq!(kinds(audit(&rewards, &released, t(0))), ["wallet_balance_mismatch", "redemption_entries_mismatch"]);
        // A balance that is not the history's.
        let off = BuyerRewards { points: 71, ..rewards.clone() };
        assert_eq!(kinds(audit(&off, &held, t(0))), ["wallet_balance_mismatch"]);
        // Entries of a redemption that does not exist, and a hold left past its time.
        assert_eq!(kinds(audit(&rewards, &[], t(0))), ["wallet_balance_mismatch", "redemption_entries_mismatch"]);
        assert_eq!(kinds(audit(&rewards, &held, t(6))), ["redemption_hold_stuck"]);
    }

    fn request(points: i64, order: Option<&str>) -> HoldRequest {
        HoldRequest {
            buyer_id: BuyerId::parse("x").unwrap(),
            id: RedemptionId::parse("r1").unwrap(),
            points,
            order_id: order.map(|o| OrderId::parse(o).unwrap()),
        }
    }

    #[test]
    fn a_hold_takes_at_most_the_spendable_points_and_an_id_answers_its_first_body() {
        assert_eq!(check_hold(None, &request(70, None), Some(70)), HoldCheck::Allowed);
        assert_eq!(check_hold(None, &request(71, None), Some(70)), HoldCheck::Insufficient { spendable: 70 });
        assert_eq!(check_hold(None, &request(1, None), None), HoldCheck::Insufficient { spendable: 0 });
        assert_eq!(check_hold(None, &request(1, None), Some(-5)), HoldCheck::Insufficient { spendable: 0 }, "a debt");
        let stored = redemption(RedemptionStatus::Held, 30);
        assert_eq!(check_hold(Some(&stored), &request(30, None), Some(0)), HoldCheck::Existing);
        assert_eq!(check_hold(Some(&stored), &request(31, None), Some(100)), HoldCheck::Conflict);
        assert_eq!(check_hold(Some(&stored), &request(30, Some("o9")), Some(100)), HoldCheck::Conflict);
    }

    #[test]
    fn a_new_hold_is_valued_floored_at_the_program_scale_and_held_for_its_minutes() {
        let mut doc = Program::default_doc();
        doc.scale = 0;
        doc.buyer_rewards.points_value = "0.75".into();
        doc.buyer_rewards.redemption_hold_minutes = 15;
        let program = Program::parse(&doc).unwrap();
        let r = new_hold(&request(3, Some("o1")), &program, 4, t(0));
        assert_eq!((r.value, r.program_version, r.status), (Decimal::TWO, 4, RedemptionStatus::Held));
        assert_eq!(r.hold_until, t(0) + chrono::TimeDelta::minutes(15));
    }

    #[test]
    fn capture_and_release_follow_the_redemption_state() {
        let held = redemption(RedemptionStatus::Held, 30); // hold_until: t(5)
        let o1 = OrderId::parse("o1").unwrap();
        assert_eq!(capture(&held, None, t(1)), Ok(Action::Capture));
        assert_eq!(capture(&held, Some(&o1), t(1)), Ok(Action::Capture), "the hold named no order");
        assert_eq!(capture(&held, None, t(5)), Ok(Action::Expire), "its time has passed");
        let for_o2 = Redemption { order_id: Some(OrderId::parse("o2").unwrap()), ..held.clone() };
        assert!(matches!(capture(&for_o2, Some(&o1), t(1)), Err(Refusal::Conflict(_))));
        let captured = Redemption { status: RedemptionStatus::Captured, ..for_o2.clone() };
        assert_eq!(capture(&captured, None, t(9)), Err(Refusal::Unchanged));
        assert!(matches!(capture(&captured, Some(&o1), t(1)), Err(Refusal::Conflict(_))));
        assert!(matches!(release(&captured), Err(Refusal::Conflict(_))));
        for back in [RedemptionStatus::Released, RedemptionStatus::Expired] {
            let r = Redemption { status: back, ..held.clone() };
            assert!(matches!(capture(&r, None, t(1)), Err(Refusal::Conflict(_))));
            assert_eq!(release(&r), Err(Refusal::Unchanged));
        }
        assert_eq!(release(&held), Ok(Action::Release));
    }
}
