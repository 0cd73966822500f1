//! SPEC §4 rules 1–9: what an order's current state entitles each beneficiary
//! to, under its stamped program version and the context frozen at first processing.
use super::ids::{AffiliateId, BuyerId};
use super::money;
use super::order::{eligible, OrderItem, OrderState};
use super::program::Program;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CommissionKind {
    Commission,
    TierBonus,
    MilestoneBonus,
    /// An operator's manual credit or debit (level 0, no order); never entitled.
    Adjustment,
}

impl CommissionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commission => "commission",
            Self::TierBonus => "tier_bonus",
            Self::MilestoneBonus => "milestone_bonus",
            Self::Adjustment => "adjustment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "commission" => Some(Self::Commission),
            "tier_bonus" => Some(Self::TierBonus),
            "milestone_bonus" => Some(Self::MilestoneBonus),
            "adjustment" => Some(Self::Adjustment),
            _ => None,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// Earned by an order (rule 8), negative when reversed.
    Points,
    FirstOrderBonus,
    /// Points held for a redemption (negative); they stay out once captured.
    Redemption,
    /// A hold's points back (released, or the hold expired).
    RedemptionReleased,
    /// Earned points past `points_expire_days` (negative).
    Expired,
    /// An operator's manual credit (a lot that does not expire) or debit.
    Adjustment,
}

impl RewardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Points => "points",
            Self::FirstOrderBonus => "first_order_bonus",
            Self::Redemption => "redemption",
            Self::RedemptionReleased => "redemption_released",
            Self::Expired => "expired",
            Self::Adjustment => "adjustment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "points" => Some(Self::Points),
            "first_order_bonus" => Some(Self::FirstOrderBonus),
            "redemption" => Some(Self::Redemption),
            "redemption_released" => Some(Self::RedemptionReleased),
            "expired" => Some(Self::Expired),
            "adjustment" => Some(Self::Adjustment),
            _ => None,
        }
    }
}

/// Why an order pays no commission (rule 2). Buyer rewards are not affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoCommissionReason {
    Unattributed,
    AffiliateSuspended,
    SelfReferral,
    BelowMinimum,
}

impl NoCommissionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unattributed => "unattributed",
            Self::AffiliateSuspended => "affiliate_suspended",
            Self::SelfReferral => "self_referral",
            Self::BelowMinimum => "below_minimum",
        }
    }
}

/// An affiliate as seen at the order's first processing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AffiliateSnapshot {
    pub id: AffiliateId,
    pub suspended: bool,
    /// The affiliate's own shopper account (self-referral rule); only used for the direct affiliate.
    pub buyer_id: Option<BuyerId>,
    /// The affiliate's e-mail hash (self-referral rule, with the order's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_hash: Option<super::affiliate::EmailHash>,
    /// An ancestor whose own sales in the order's month, before the order,
    /// were below the program's `upline_qualification` (rule 7): it earns
    /// no level on the order, as if suspended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unqualified: bool,
    /// The affiliate's own caps at the order's first processing (None: the
    /// program's); only used for the direct affiliate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<super::caps::Cap>>,
}

impl AffiliateSnapshot {
    /// Whether an ancestor may earn its level (rule 7): active and qualified.
    pub fn earns(&self) -> bool {
        !self.suspended && !self.unqualified
    }
}

/// Everything about the world outside the order that the rules need, resolved
/// once at the order's first processing and stored with the order, so later
/// events of the order pay the same people the same way (rule 7, and G5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrozenContext {
    /// The attributed affiliate, or None when the order is unattributed.
    pub direct: Option<AffiliateSnapshot>,
    /// Ancestors of the direct affiliate, nearest first (parent, grandparent, …),
    /// as many as needed to fill every level even when some are skipped.
    pub upline: Vec<AffiliateSnapshot>,
    /// Σ original eligible amount of the direct affiliate's attributed orders placed
    /// earlier in the same calendar month (program timezone; ties by order id).
    pub volume_before: Decimal,
    /// 1-based position of this order among the direct affiliate's attributed orders of that month.
    pub nth_in_month: u32,
    /// True when the buyer has no order placed before this one.
    pub buyer_first_order: bool,
    /// The e-mail hash the order carried (self-referral rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_email_hash: Option<super::affiliate::EmailHash>,
}

impl FrozenContext {
    /// Whether the order is the direct affiliate's own purchase: its buyer
    /// account, or its e-mail (when both the order and the affiliate carry one).
    pub fn self_referral(&self, buyer: &BuyerId) -> bool {
        self.direct.as_ref().is_some_and(|d| {
            d.buyer_id.as_ref() == Some(buyer) || (d.email_hash.is_some() && d.email_hash == self.buyer_email_hash)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommissionLine {
    pub affiliate_id: AffiliateId,
    /// 1 for the direct affiliate (commission, tier_bonus, milestone_bonus), k for the k-th level.
    pub level: u8,
    pub kind: CommissionKind,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardLine {
    pub buyer_id: BuyerId,
    pub kind: RewardKind,
    pub points: i64,
}

/// What the order's current state is entitled to. Lines with a zero amount are omitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// Σ quantity × unit_price over non-excluded items, net of refunds (0 when cancelled).
    pub eligible_amount: Decimal,
    /// The same, as bought (rule 2's minimum uses this).
    pub original_eligible_amount: Decimal,
    pub no_commission_reason: Option<NoCommissionReason>,
    pub commissions: Vec<CommissionLine>,
    pub rewards: Vec<RewardLine>,
}

/// Applies SPEC §4 rules 1–9. Pure and deterministic.
pub fn entitle(order: &OrderState, program: &Program, ctx: &FrozenContext) -> Entitlement {
    let original_eligible_amount: Decimal =
        eligible_items(order, program).map(|i| order.line_amount(i, i.quantity, program)).sum();
    let eligible_amount = eligible(order, program);
    let no_commission_reason = match &ctx.direct {
        None => Some(NoCommissionReason::Unattributed),
        Some(d) if d.suspended => Some(NoCommissionReason::AffiliateSuspended),
        Some(_) if program.attribution.block_self_referral && ctx.self_referral(&order.buyer_id) => {
            Some(NoCommissionReason::SelfReferral)
        }
        Some(_) if original_eligible_amount < program.min_order_amount => Some(NoCommissionReason::BelowMinimum),
        Some(_) => None,
    };
    let mut entitlement = Entitlement {
        eligible_amount,
        original_eligible_amount,
        no_commission_reason,
        commissions: Vec::new(),
        rewards: Vec::new(),
    };
    if order.voided() {
        return entitlement;
    }
    if let (None, Some(direct)) = (no_commission_reason, &ctx.direct) {
        entitlement.commissions = direct_lines(order, program, ctx, direct, eligible_amount);
        entitlement.commissions.extend(upline_lines(program, ctx, eligible_amount));
    }
    entitlement.rewards = reward_lines(order, program, ctx, eligible_amount);
    entitlement
}

/// The items rule 1 counts: those of a category the program does not exclude.
fn eligible_items<'a>(order: &'a OrderState, program: &'a Program) -> impl Iterator<Item = &'a OrderItem> + 'a {
    order.items.iter().filter(|i| !program.is_excluded(i.category.as_str()))
}

/// Rules 3–6: the direct affiliate's commission (category rates), its tier
/// bonus (by the month's volume before the order), both capped per order,
/// and its milestone bonus (by the order's position in the month).
fn direct_lines(
    order: &OrderState,
    program: &Program,
    ctx: &FrozenContext,
    direct: &AffiliateSnapshot,
    eligible_amount: Decimal,
) -> Vec<CommissionLine> {
    let calc = DirectCalc::of(order, program, ctx, eligible_amount);
    [
        (CommissionKind::Commission, calc.commission),
        (CommissionKind::TierBonus, calc.tier_bonus),
        (CommissionKind::MilestoneBonus, calc.milestone.map_or(Decimal::ZERO, |m| m.1)),
    ]
    .into_iter()
    .filter(|(_, amount)| !amount.is_zero())
    .map(|(kind, amount)| CommissionLine { affiliate_id: direct.id.clone(), level: 1, kind, amount })
    .collect()
}

/// Rules 3–6 for the direct affiliate, with every intermediate value: the
/// entitlement takes the results, the explanation shows the steps (one
/// computation for both).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectCalc {
    /// Per eligible item: (its index, its net amount in the program
    /// currency, its level-1 rate, whether the rate is its category's).
    pub items: Vec<(usize, Decimal, Decimal, bool)>,
    /// Σ amount × rate, before rounding.
    pub raw: Decimal,
    pub commission_rounded: Decimal,
    /// The tier reached by the month's volume before the order: (from, rate).
    pub tier: Option<(Decimal, Decimal)>,
    pub tier_raw: Decimal,
    pub tier_rounded: Decimal,
    /// After rule 6's cap per order.
    pub commission: Decimal,
    pub tier_bonus: Decimal,
    /// Rule 5: (n, bonus) when the order is the n-th of a milestone.
    pub milestone: Option<(u32, Decimal)>,
}

impl DirectCalc {
    pub fn of(order: &OrderState, program: &Program, ctx: &FrozenContext, eligible_amount: Decimal) -> Self {
        let round = |x: Decimal| money::round(x, program.scale, program.rounding);
        let items: Vec<(usize, Decimal, Decimal, bool)> = order
            .items
            .iter()
            .enumerate()
            .filter(|(_, i)| !program.is_excluded(i.category.as_str()))
            .map(|(n, i)| {
                let own = program.category_rates.contains_key(i.category.as_str());
                (n, order.line_amount(i, i.net_quantity(), program), program.level1_rate(i.category.as_str()), own)
            })
            .collect();
        let raw: Decimal = items.iter().map(|(_, amount, rate, _)| amount * rate).sum();
        let commission_rounded = round(raw);
        let tier = program
            .tiers
            .iter()
            .filter(|t| t.monthly_sales_from <= ctx.volume_before)
            .map(|t| (t.monthly_sales_from, t.bonus_rate))
            .next_back();
        let tier_raw = eligible_amount * tier.map_or(Decimal::ZERO, |t| t.1);
        let tier_rounded = round(tier_raw);
        let (commission, tier_bonus) = if commission_rounded > program.max_commission_per_order {
            (program.max_commission_per_order, Decimal::ZERO)
        } else {
            (commission_rounded, tier_rounded.min(program.max_commission_per_order - commission_rounded))
        };
        let milestone = program
            .milestones
            .iter()
            .find(|m| m.nth_order_in_month == ctx.nth_in_month)
            .map(|m| (m.nth_order_in_month, m.bonus));
        Self { items, raw, commission_rounded, tier, tier_raw, tier_rounded, commission, tier_bonus, milestone }
    }
}

/// What rule 7 made of one ancestor of the frozen chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UplineStep {
    pub affiliate_id: AffiliateId,
    /// The level it earns, or (when `earns` is false) the level it was
    /// passed over for.
    pub level: u8,
    pub earns: bool,
    /// Why it earns nothing: `suspended` or `unqualified` (below
    /// `upline_qualification`); with `skip_inactive_upline` the next
    /// ancestor takes the level, without it the level is forfeited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed_over: Option<&'static str>,
}

/// Rule 7's walk up the frozen chain, as far as the program's levels go:
/// which ancestor earns which level, and which were passed over and why.
pub fn upline_steps(program: &Program, ctx: &FrozenContext) -> Vec<UplineStep> {
    let why = |a: &AffiliateSnapshot| if a.suspended { "suspended" } else { "unqualified" };
    let mut steps = Vec::new();
    let mut ancestors = ctx.upline.iter();
    let last = program.levels.len();
    let mut level = 2;
    while level <= last {
        let Some(a) = ancestors.next() else { break };
        let earns = a.earns();
        steps.push(UplineStep {
            affiliate_id: a.id.clone(),
            level: level as u8,
            earns,
            passed_over: (!earns).then(|| why(a)),
        });
        // Skipped: the next ancestor is considered for the same level.
        if earns || !program.skip_inactive_upline {
            level += 1;
        }
    }
    steps
}

/// Rule 7: levels 2..n up the frozen chain (a suspended or unqualified
/// ancestor is skipped or forfeits its level, as the program says).
fn upline_lines(program: &Program, ctx: &FrozenContext, eligible_amount: Decimal) -> Vec<CommissionLine> {
    let round = |x: Decimal| money::round(x, program.scale, program.rounding);
    upline_steps(program, ctx)
        .into_iter()
        .filter(|s| s.earns)
        .filter_map(|s| {
            let amount = round(eligible_amount * program.levels[usize::from(s.level) - 1]);
            (!amount.is_zero()).then_some(CommissionLine {
                affiliate_id: s.affiliate_id,
                level: s.level,
                kind: CommissionKind::Commission,
                amount,
            })
        })
        .collect()
}

/// Rule 8: buyer rewards, whole points, always floored; the first order's bonus.
fn reward_lines(
    order: &OrderState,
    program: &Program,
    ctx: &FrozenContext,
    eligible_amount: Decimal,
) -> Vec<RewardLine> {
    let mut lines = Vec::new();
    let points = (eligible_amount * program.points_rate).floor().to_i64().unwrap_or(i64::MAX);
    if points != 0 {
        lines.push(RewardLine { buyer_id: order.buyer_id.clone(), kind: RewardKind::Points, points });
    }
    if ctx.buyer_first_order && program.first_order_bonus != 0 {
        lines.push(RewardLine {
            buyer_id: order.buyer_id.clone(),
            kind: RewardKind::FirstOrderBonus,
            points: program.first_order_bonus,
        });
    }
    lines
}

/// The calendar month (in `tz`) containing `at`, as a half-open UTC interval [start, end).
pub fn month_window(at: DateTime<Utc>, tz: chrono_tz::Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = at.with_timezone(&tz);
    let (y, m) = (local.year(), local.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let start_of = |year: i32, month: u32| -> Option<DateTime<Utc>> {
        let midnight = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
        // Midnight repeated by a DST fall-back: the month starts at the first one.
        // Midnight skipped by a DST jump (an hour long in practice, e.g.
        // America/Asuncion 2017-10-01): the month starts at the jump, an hour later.
        let start = tz
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(midnight + chrono::TimeDelta::hours(1))).earliest())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| midnight.and_utc());
        Some(start)
    };
    // `at`'s own month always has a first day; the fallbacks only matter at the
    // edges of chrono's calendar (year ±262143), where a panic would be worse.
    (start_of(y, m).unwrap_or(DateTime::<Utc>::MIN_UTC), start_of(ny, nm).unwrap_or(DateTime::<Utc>::MAX_UTC))
}

#[cfg(test)]
#[path = "entitlement_tests.rs"]
mod tests;
