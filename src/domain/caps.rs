//! Period caps and program budgets (docs/RULES.md "Caps and budgets"): which
//! counters an order's ledger lines move, how a line is cut when one of
//! them would pass its maximum, and what a cut line may pay for the rest of
//! the order's life. Pure: the event transaction reads the counters (locked)
//! and writes what this decides, in the same transaction as the lines.
use super::entitlement::{CommissionKind, Entitlement, RewardKind};
use super::ids::{AffiliateId, BuyerId};
use super::{money, FieldError};
use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::ops::{Add, Sub};

/// The window a cap or budget counts in: a calendar day or month in the
/// program's time zone, or the program's whole life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
    Total,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "day" => Self::Day,
            "month" => Self::Month,
            "total" => Self::Total,
            _ => return None,
        })
    }

    /// The start, in UTC, of the window holding `at`; `Total` starts at the epoch.
    pub fn start(self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
        match self {
            Self::Total => DateTime::<Utc>::UNIX_EPOCH,
            Self::Month => super::entitlement::month_window(at, tz).0,
            Self::Day => {
                let midnight = at.with_timezone(&tz).date_naive().and_time(NaiveTime::MIN);
                // As for months: the first of a repeated midnight, the jump
                // of a skipped one.
                tz.from_local_datetime(&midnight)
                    .earliest()
                    .or_else(|| tz.from_local_datetime(&(midnight + chrono::TimeDelta::hours(1))).earliest())
                    .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
            }
        }
    }

    /// The start of the window after the one starting at `start`.
    pub fn end(self, start: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
        match self {
            Self::Total => DateTime::<Utc>::MAX_UTC,
            Self::Month => super::entitlement::month_window(start, tz).1,
            // A day is 23-25 hours: the start of the day 26 hours on is the next one.
            Self::Day => self.start(start + chrono::TimeDelta::hours(26), tz),
        }
    }
}

/// What a line that would pass a maximum gets (per program).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// Cut to what remains.
    #[default]
    Clip,
    /// Pays nothing.
    Zero,
}

/// A maximum on what one affiliate earns as direct affiliate in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cap {
    pub period: Period,
    pub max_commission: Decimal,
}

/// A maximum on what the whole program pays in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub period: Period,
    pub max_commission: Option<Decimal>,
    pub max_points: Option<i64>,
}

/// `affiliate_caps[]` in the program document and the body of
/// `PUT /admin/affiliates/{id}/caps`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapDoc {
    /// `day` or `month` (program time zone).
    pub period: String,
    /// Above 0, at most the program scale's decimals.
    pub max_commission: String,
}

/// `budgets[]` in the program document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetDoc {
    /// `month` (program time zone) or `total`.
    pub period: String,
    /// Σ commissions of every affiliate and level; above 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_commission: Option<String>,
    /// Σ points earned by buyers (whole points as a string, 1-1000000000000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_points: Option<String>,
}

/// The most points a budget may hold.
const MAX_POINTS: i64 = 1_000_000_000_000;

fn positive_amount(field: &str, s: &str, scale: u32, errors: &mut Vec<FieldError>) -> Decimal {
    match money::parse_amount(s) {
        Ok(a) if a.normalize().scale() > scale => {
            errors
                .push(FieldError::new(field, format!("must have at most {scale} decimal places (the program scale)")));
            a
        }
        Ok(a) if a <= Decimal::ZERO => {
            errors.push(FieldError::new(field, "must be above 0"));
            a
        }
        Ok(a) => a,
        Err(e) => {
            errors.push(FieldError::new(field, e.to_string()));
            Decimal::ZERO
        }
    }
}

/// Validates caps (`prefix[i].…`): periods `day` or `month`, each at most
/// once, maxima above 0 at the program scale.
pub fn parse_caps(docs: &[CapDoc], prefix: &str, scale: u32, errors: &mut Vec<FieldError>) -> Vec<Cap> {
    let mut caps: Vec<Cap> = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let max_commission =
            positive_amount(&format!("{prefix}[{i}].max_commission"), &doc.max_commission, scale, errors);
        match Period::parse(&doc.period) {
            Some(period @ (Period::Day | Period::Month)) if caps.iter().all(|c| c.period != period) => {
                caps.push(Cap { period, max_commission });
            }
            Some(Period::Day | Period::Month) => {
                errors.push(FieldError::new(format!("{prefix}[{i}].period"), "is listed twice"));
            }
            _ => errors.push(FieldError::new(format!("{prefix}[{i}].period"), "must be day or month")),
        }
    }
    caps
}

/// Validates budgets (`budgets[i].…`): periods `month` or `total`, each at
/// most once, each with a `max_commission`, a `max_points` or both.
pub fn parse_budgets(docs: &[BudgetDoc], scale: u32, errors: &mut Vec<FieldError>) -> Vec<Budget> {
    let mut budgets: Vec<Budget> = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let field = |f: &str| format!("budgets[{i}].{f}");
        let max_commission =
            doc.max_commission.as_deref().map(|s| positive_amount(&field("max_commission"), s, scale, errors));
        let max_points = doc.max_points.as_deref().map(|s| match s.parse::<i64>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_POINTS).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(field("max_points"), "must be whole points, 1-1000000000000, as a string"));
                0
            }
        });
        if max_commission.is_none() && max_points.is_none() {
            errors.push(FieldError::new(format!("budgets[{i}]"), "must have max_commission, max_points or both"));
        }
        match Period::parse(&doc.period) {
            Some(period @ (Period::Month | Period::Total)) if budgets.iter().all(|b| b.period != period) => {
                budgets.push(Budget { period, max_commission, max_points });
            }
            Some(Period::Month | Period::Total) => {
                errors.push(FieldError::new(field("period"), "is listed twice"));
            }
            _ => errors.push(FieldError::new(field("period"), "must be month or total")),
        }
    }
    budgets
}

pub fn cap_docs(caps: &[Cap]) -> Vec<CapDoc> {
    caps.iter()
        .map(|c| CapDoc { period: c.period.as_str().into(), max_commission: money::format(c.max_commission) })
        .collect()
}

pub fn budget_docs(budgets: &[Budget]) -> Vec<BudgetDoc> {
    budgets
        .iter()
        .map(|b| BudgetDoc {
            period: b.period.as_str().into(),
            max_commission: b.max_commission.map(money::format),
            max_points: b.max_points.map(|p| p.to_string()),
        })
        .collect()
}

/// Whose counter: the program's (a budget) or one affiliate's (its caps).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Program,
    Affiliate(AffiliateId),
}

impl Scope {
    /// `program` / `affiliate`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Program => "program",
            Self::Affiliate(_) => "affiliate",
        }
    }
    /// The affiliate's id, or "" for the program.
    pub fn subject(&self) -> &str {
        match self {
            Self::Program => "",
            Self::Affiliate(a) => a.as_str(),
        }
    }
}

/// One consumption counter: a scope's period window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterKey {
    pub scope: Scope,
    pub period: Period,
    pub start: DateTime<Utc>,
}

impl CounterKey {
    /// What binds when this counter is the one without room.
    pub fn bound(&self) -> Bound {
        Bound { budget: self.scope == Scope::Program, period: self.period }
    }
}

/// A counter's consumption: Σ commission and Σ points of the lines it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub commission: Decimal,
    pub points: i64,
}

/// The cap or budget that cut a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bound {
    pub budget: bool,
    pub period: Period,
}

impl Bound {
    /// `affiliate_day`, `affiliate_month`, `budget_month`, `budget_total`.
    pub fn as_str(self) -> &'static str {
        match (self.budget, self.period) {
            (false, Period::Day) => "affiliate_day",
            (false, _) => "affiliate_month",
            (true, Period::Total) => "budget_total",
            (true, _) => "budget_month",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        let (budget, period) = match s {
            "affiliate_day" => (false, Period::Day),
            "affiliate_month" => (false, Period::Month),
            "budget_month" => (true, Period::Month),
            "budget_total" => (true, Period::Total),
            _ => return None,
        };
        Some(Self { budget, period })
    }
}

/// What a cut line could not pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut<T> {
    pub by: Bound,
    pub amount: T,
}

/// The most a line cut once may pay for the rest of its order's life (a
/// refund lowers it further; nothing raises it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Grant {
    Commission { affiliate_id: AffiliateId, kind: CommissionKind, amount: Decimal },
    Points { buyer_id: BuyerId, kind: RewardKind, points: i64 },
}

/// An order's caps, kept with the order for its whole life (a
/// reattribution keeps them): the caps each affiliate's level-1 lines were
/// counted against, frozen at its first line, and the grants of cut lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderLimits {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caps: BTreeMap<AffiliateId, Vec<Cap>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

impl OrderLimits {
    /// Counts `direct`'s lines against `caps` from now on, unless it already
    /// counts (its first caps stay). True when this changed the limits.
    pub fn count_direct(&mut self, direct: &AffiliateId, caps: &[Cap]) -> bool {
        if caps.is_empty() || self.caps.contains_key(direct) {
            return false;
        }
        self.caps.insert(direct.clone(), caps.to_vec());
        true
    }

    /// Lowers every granted line of `e` to its grant.
    pub fn clamp(&self, e: &mut Entitlement) {
        for grant in &self.grants {
            match grant {
                Grant::Commission { affiliate_id, kind, amount } => {
                    for line in e.commissions.iter_mut().filter(|l| &l.affiliate_id == affiliate_id && l.kind == *kind)
                    {
                        line.amount = line.amount.min(*amount);
                    }
                }
                Grant::Points { buyer_id, kind, points } => {
                    for line in e.rewards.iter_mut().filter(|l| &l.buyer_id == buyer_id && l.kind == *kind) {
                        line.points = line.points.min(*points);
                    }
                }
            }
        }
    }

    /// Records the grant of a line cut now (replacing an earlier one).
    pub fn grant(&mut self, grant: Grant) {
        self.grants.retain(|g| !same_line(g, &grant));
        self.grants.push(grant);
    }

    /// The counters a commission line moves, with their maxima: its
    /// affiliate's caps for a level-1 line of an affiliate that counts, and
    /// the program's commission budgets.
    pub fn commission_counters(
        &self,
        affiliate: &AffiliateId,
        level: u8,
        budgets: &[Budget],
        at: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Vec<(CounterKey, Decimal)> {
        let mut keys = Vec::new();
        if level == 1 {
            for cap in self.caps.get(affiliate).into_iter().flatten() {
                let key = CounterKey {
                    scope: Scope::Affiliate(affiliate.clone()),
                    period: cap.period,
                    start: cap.period.start(at, tz),
                };
                keys.push((key, cap.max_commission));
            }
        }
        for b in budgets {
            if let Some(max) = b.max_commission {
                keys.push((CounterKey { scope: Scope::Program, period: b.period, start: b.period.start(at, tz) }, max));
            }
        }
        keys
    }
}

fn same_line(a: &Grant, b: &Grant) -> bool {
    match (a, b) {
        (Grant::Commission { affiliate_id: x, kind: k, .. }, Grant::Commission { affiliate_id: y, kind: l, .. }) => {
            x == y && k == l
        }
        (Grant::Points { buyer_id: x, kind: k, .. }, Grant::Points { buyer_id: y, kind: l, .. }) => x == y && k == l,
        _ => false,
    }
}

/// The counters a reward line moves: the program's points budgets, for
/// points earned by an order (not a wallet's movements).
pub fn points_counters(
    kind: RewardKind,
    budgets: &[Budget],
    at: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Vec<(CounterKey, i64)> {
    if !matches!(kind, RewardKind::Points | RewardKind::FirstOrderBonus) {
        return Vec::new();
    }
    budgets
        .iter()
        .filter_map(|b| {
            let max = b.max_points?;
            Some((CounterKey { scope: Scope::Program, period: b.period, start: b.period.start(at, tz) }, max))
        })
        .collect()
}

/// Charges one delta line to its counters: a reversal (≤ 0) gives its
/// amount back to them; an increase pays what every counter has room for
/// (`Clip`) or, when one has too little, nothing (`Zero`), and the counters
/// take what it pays. Returns the amount to write and the cut, if any (the
/// counter with the least room bound; ties: the first listed).
pub fn charge<T>(
    amount: T,
    counters: &[(CounterKey, T)],
    used: &mut HashMap<CounterKey, Used>,
    field: fn(&mut Used) -> &mut T,
    mode: OnExhausted,
) -> (T, Option<Cut<T>>)
where
    T: Copy + Ord + Default + Add<Output = T> + Sub<Output = T>,
{
    let zero = T::default();
    let mut pays = amount;
    let mut cut = None;
    if amount > zero {
        let mut least: Option<(T, Bound)> = None;
        for (key, max) in counters {
            let now = *field(used.entry(key.clone()).or_default());
            let room = if *max > now { *max - now } else { zero };
            if least.is_none_or(|(r, _)| room < r) {
                least = Some((room, key.bound()));
            }
        }
        if let Some((room, by)) = least.filter(|(room, _)| *room < amount) {
            pays = match mode {
                OnExhausted::Clip => room,
                OnExhausted::Zero => zero,
            };
            cut = Some(Cut { by, amount: amount - pays });
        }
    }
    for (key, _) in counters {
        let slot = field(used.entry(key.clone()).or_default());
        *slot = *slot + pays;
    }
    (pays, cut)
}

/// [`charge`]'s field for commissions.
pub fn commission(u: &mut Used) -> &mut Decimal {
    &mut u.commission
}

/// [`charge`]'s field for points.
pub fn points(u: &mut Used) -> &mut i64 {
    &mut u.points
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn key(period: Period) -> CounterKey {
        CounterKey { scope: Scope::Program, period, start: DateTime::<Utc>::UNIX_EPOCH }
    }

    #[test]
    fn a_line_past_the_room_is_clipped_or_zeroed_and_the_tightest_counter_binds() {
        let limits = [(key(Period::Month), d("100")), (key(Period::Total), d("1000"))];
        let mut used = HashMap::from([(key(Period::Month), Used { commission: d("70"), points: 0 })]);
        let (pays, cut) = charge(d("50"), &limits, &mut used, commission, OnExhausted::Clip);
        assert_eq!((pays, cut.map(|c| (c.by.as_str(), c.amount))), (d("30"), Some(("budget_month", d("20")))));
        assert_eq!(used[&key(Period::Month)].commission, d("100"));
        assert_eq!(used[&key(Period::Total)].commission, d("30"));
        // Nothing left: both modes pay nothing.
        let (pays, cut) = charge(d("1"), &limits, &mut used, commission, OnExhausted::Clip);
        assert_eq!((pays, cut.unwrap().amount), (d("0"), d("1")));
        // A refund gives room back; zero pays nothing when the line does not fit whole.
        let (pays, _) = charge(d("-40"), &limits, &mut used, commission, OnExhausted::Zero);
        assert_eq!((pays, used[&key(Period::Month)].commission), (d("-40"), d("60")));
        let (pays, cut) = charge(d("41"), &limits, &mut used, commission, OnExhausted::Zero);
        assert_eq!((pays, cut.unwrap().amount), (d("0"), d("41")));
        let (pays, cut) = charge(d("40"), &limits, &mut used, commission, OnExhausted::Zero);
        assert_eq!((pays, cut), (d("40"), None));
        assert_eq!(used[&key(Period::Month)].commission, d("100"));
    }

    #[test]
    fn days_and_months_start_at_local_midnight() {
        let tz: chrono_tz::Tz = "Asia/Jakarta".parse().unwrap();
        let at = DateTime::parse_from_rfc3339("2026-03-31T18:30:00Z").unwrap().with_timezone(&Utc);
        // 01:30 on 1 April in Jakarta (UTC+7).
        assert_eq!(Period::Day.start(at, tz).to_rfc3339(), "2026-03-31T17:00:00+00:00");
        assert_eq!(Period::Month.start(at, tz).to_rfc3339(), "2026-03-31T17:00:00+00:00");
        assert_eq!(Period::Day.end(Period::Day.start(at, tz), tz).to_rfc3339(), "2026-04-01T17:00:00+00:00");
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        // The day of a DST jump is 23 hours long.
        let jump = DateTime::parse_from_rfc3339("2026-03-08T12:00:00Z").unwrap().with_timezone(&Utc);
        let start = Period::Day.start(jump, ny);
        assert_eq!((Period::Day.end(start, ny) - start).num_hours(), 23);
    }

    #[test]
    fn caps_and_budgets_are_validated() {
        let mut errors = Vec::new();
        let caps = parse_caps(
            &[
                CapDoc { period: "day".into(), max_commission: "0".into() },
                CapDoc { period: "year".into(), max_commission: "5".into() },
                CapDoc { period: "month".into(), max_commission: "5.5".into() },
                CapDoc { period: "month".into(), max_commission: "7".into() },
            ],
            "affiliate_caps",
            0,
            &mut errors,
        );
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "affiliate_caps[0].max_commission",
                "affiliate_caps[1].period",
                "affiliate_caps[2].max_commission",
                "affiliate_caps[3].period"
            ]
        );
        assert_eq!(caps.len(), 2);
        let mut errors = Vec::new();
        parse_budgets(
            &[
                BudgetDoc { period: "total".into(), max_commission: None, max_points: None },
                BudgetDoc { period: "day".into(), max_commission: Some("-1".into()), max_points: Some("1e3".into()) },
            ],
            2,
            &mut errors,
        );
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["budgets[0]", "budgets[1].max_commission", "budgets[1].max_points", "budgets[1].period"]);
    }

    proptest! {
        /// Whatever lines come, in any order, with reversals of what was
        /// paid: a counter never passes its maximum, `Clip` leaves no room
        /// unused while a line is cut, and every line is paid + cut.
        #[test]
        fn counters_never_pass_their_maximum(
            max in 1i64..10_000,
            lines in proptest::collection::vec((1i64..3_000, any::<bool>(), any::<bool>()), 1..60),
        ) {
            let limits = [(key(Period::Month), Decimal::from(max))];
            let mut used = HashMap::new();
            let mut paid: Vec<Decimal> = Vec::new();
            for (amount, reverse, zero) in lines {
                let mode = if zero { OnExhausted::Zero } else { OnExhausted::Clip };
                if reverse && !paid.is_empty() {
                    let back = paid.swap_remove(0);
                    let (pays, cut) = charge(-back, &limits, &mut used, commission, mode);
                    prop_assert_eq!((pays, cut), (-back, None));
                } else {
                    let before = used.get(&key(Period::Month)).map_or(Decimal::ZERO, |u: &Used| u.commission);
                    let amount = Decimal::from(amount);
                    let (pays, cut) = charge(amount, &limits, &mut used, commission, mode);
                    prop_assert_eq!(pays + cut.map_or(Decimal::ZERO, |c| c.amount), amount);
                    prop_assert!(pays >= Decimal::ZERO);
                    if cut.is_some() && mode == OnExhausted::Clip {
                        prop_assert_eq!(before + pays, Decimal::from(max), "a clipped line fills the room");
                    }
                    paid.push(pays);
                }
                let now = used[&key(Period::Month)].commission;
                prop_assert!(now <= Decimal::from(max));
                prop_assert_eq!(now, paid.iter().copied().sum::<Decimal>(), "the counter is what the lines hold");
            }
        }
    }
}
