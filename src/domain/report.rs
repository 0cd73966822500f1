//! Reports over time: what komisi booked, summed as it is booked. Every
//! transaction that moves money adds its figures to two maintained
//! aggregates — per quarter-hour of UTC time (in shards), and per affiliate
//! and day of the program's time zone — so a report reads a window's rows,
//! never the ledger. A figure is booked when its transaction commits (an
//! order counts when its `order.placed` event is applied, normally within a
//! second of its placement).
use super::entitlement::{CommissionKind, RewardKind};
use super::FieldError;
use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, TimeZone, Utc};
use rust_decimal::Decimal;

/// Minutes of one bucket: every time zone's days start on a quarter-hour.
pub const BUCKET_MINUTES: i64 = 15;
/// Rows per bucket: concurrent transactions add to different rows.
pub const SHARDS: u16 = 8;
/// The longest window a report covers, in days.
pub const MAX_DAYS: i64 = 366;

/// What was booked in a bucket (or a day).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Orders whose `order.placed` event was applied.
    pub orders: i64,
    /// Their eligible amount as placed.
    pub eligible_sales: Decimal,
    /// Credits booked, by kind (a line that raised what an order pays).
    pub commission: Decimal,
    pub tier_bonus: Decimal,
    pub milestone_bonus: Decimal,
    /// Debits booked (refunds, cancels, reattributions, clawbacks): ≤ 0.
    pub reversals: Decimal,
    /// Manual commission adjustments, net.
    pub adjustments: Decimal,
    /// Points earned by orders (reversals of points are not subtracted).
    pub points_earned: i64,
    /// Points spent: redemptions captured.
    pub points_spent: i64,
}

impl Figures {
    pub fn add(&mut self, o: &Figures) {
        self.orders += o.orders;
        self.eligible_sales += o.eligible_sales;
        self.commission += o.commission;
        self.tier_bonus += o.tier_bonus;
        self.milestone_bonus += o.milestone_bonus;
        self.reversals += o.reversals;
        self.adjustments += o.adjustments;
        self.points_earned += o.points_earned;
        self.points_spent += o.points_spent;
    }

    pub fn is_zero(&self) -> bool {
        *self == Figures::default()
    }

    /// A ledger line booked.
    pub fn line(&mut self, kind: CommissionKind, amount: Decimal) {
        match kind {
            CommissionKind::Adjustment => self.adjustments += amount,
            _ if amount < Decimal::ZERO => self.reversals += amount,
            CommissionKind::Commission => self.commission += amount,
            CommissionKind::TierBonus => self.tier_bonus += amount,
            CommissionKind::MilestoneBonus => self.milestone_bonus += amount,
        }
    }

    /// A reward entry booked by an order.
    pub fn reward(&mut self, kind: RewardKind, points: i64) {
        if matches!(kind, RewardKind::Points | RewardKind::FirstOrderBonus) && points > 0 {
            self.points_earned += points;
        }
    }
}

/// One affiliate's day: the orders it referred as direct affiliate, their
/// eligible sales, and the net commission it booked at every level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AffiliateDay {
    pub orders: i64,
    pub sales: Decimal,
    pub commission: Decimal,
}

impl AffiliateDay {
    pub fn add(&mut self, o: &AffiliateDay) {
        self.orders += o.orders;
        self.sales += o.sales;
        self.commission += o.commission;
    }
}

/// The quarter-hour `at` falls in.
pub fn bucket(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(BUCKET_MINUTES)).unwrap_or(at)
}

/// When the local `date` starts in `tz` (a midnight skipped by a DST jump:
/// the day starts at the jump; one repeated: at the first).
pub fn day_start_of(date: NaiveDate, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(midnight + TimeDelta::hours(1))).earliest())
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

/// The start of `at`'s day in `tz`.
pub fn day_start(at: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
    day_start_of(at.with_timezone(&tz).date_naive(), tz)
}

/// A report day: its local date, start and end.
pub type ReportDay = (NaiveDate, DateTime<Utc>, DateTime<Utc>);

/// A report's days: each local date from `since` to before `until`, with
/// its start and end; at most [`MAX_DAYS`].
pub fn days(since: NaiveDate, until: NaiveDate, tz: chrono_tz::Tz) -> Result<Vec<ReportDay>, FieldError> {
    let n = (until - since).num_days();
    if n <= 0 {
        return Err(FieldError::new("until", "must be after since"));
    }
    if n > MAX_DAYS {
        return Err(FieldError::new("until", format!("a report covers at most {MAX_DAYS} days")));
    }
    Ok(since
        .iter_days()
        .take(n as usize)
        .map(|d| (d, day_start_of(d, tz), day_start_of(d + TimeDelta::days(1), tz)))
        .collect())
}

/// Sums each bucket into the day its start falls in (buckets outside the
/// days are left out).
pub fn fold(days: &[ReportDay], buckets: &[(DateTime<Utc>, Figures)]) -> Vec<Figures> {
    let mut out = vec![Figures::default(); days.len()];
    for (at, f) in buckets {
        let i = days.partition_point(|(_, _, end)| end <= at);
        if let Some((_, start, end)) = days.get(i) {
            if start <= at && at < end {
                out[i].add(f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn lines_are_booked_as_credits_by_kind_debits_and_adjustments() {
        let mut f = Figures::default();
        f.line(CommissionKind::Commission, d("95000"));
        f.line(CommissionKind::TierBonus, d("100"));
        f.line(CommissionKind::MilestoneBonus, d("25000"));
        f.line(CommissionKind::Commission, d("-3000"));
        f.line(CommissionKind::TierBonus, d("-10"));
        f.line(CommissionKind::Adjustment, d("-500"));
        f.reward(RewardKind::Points, 21500);
        f.reward(RewardKind::FirstOrderBonus, 5000);
        f.reward(RewardKind::Points, -700);
        f.reward(RewardKind::Adjustment, 9);
        assert_eq!(
            (f.commission, f.tier_bonus, f.milestone_bonus, f.reversals, f.adjustments),
            (d("95000"), d("100"), d("25000"), d("-3010"), d("-500"))
        );
        assert_eq!(f.points_earned, 26500);
    }

    #[test]
    fn a_day_of_a_half_hour_zone_gets_exactly_its_quarter_hours() {
        let tz: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let days = days(date, date + TimeDelta::days(2), tz).unwrap();
        assert_eq!(days[0].1, t("2026-11-30T18:30:00Z"));
        assert_eq!(days[0].2, t("2026-12-01T18:30:00Z"));
        let one = Figures { orders: 1, ..Figures::default() };
        let buckets = vec![
            (bucket(t("2026-11-30T18:29:59Z")), one.clone()), // the day before
            (bucket(t("2026-11-30T18:30:00Z")), one.clone()),
            (bucket(t("2026-12-01T18:29:00Z")), one.clone()),
            (bucket(t("2026-12-01T18:30:00Z")), one.clone()),
            (bucket(t("2026-12-05T00:00:00Z")), one.clone()), // after
        ];
        let folded = fold(&days, &buckets);
        assert_eq!(folded.iter().map(|f| f.orders).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn a_dst_day_is_23_or_25_hours_and_windows_are_bounded() {
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let d = days(spring, spring + TimeDelta::days(1), tz).unwrap();
        assert_eq!(d[0].2 - d[0].1, TimeDelta::hours(23));
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        let d = days(autumn, autumn + TimeDelta::days(1), tz).unwrap();
        assert_eq!(d[0].2 - d[0].1, TimeDelta::hours(25));
        assert_eq!(days(spring, spring, tz).unwrap_err().field, "until");
        assert!(days(spring, spring + TimeDelta::days(MAX_DAYS), tz).is_ok());
        assert_eq!(days(spring, spring + TimeDelta::days(MAX_DAYS + 1), tz).unwrap_err().field, "until");
    }

    proptest! {
        /// Folding loses nothing inside the window and counts nothing twice:
        /// every bucket's figures land in exactly one day.
        #[test]
        fn every_bucket_of_the_window_lands_in_exactly_one_day(
            offsets in prop::collection::vec(0i64..(10 * 96), 1..200), zone in 0usize..4,
        ) {
            let tz: chrono_tz::Tz = ["UTC", "Asia/Kolkata", "America/New_York", "Asia/Kathmandu"][zone].parse().unwrap();
            let since = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
            let days = days(since, since + TimeDelta::days(10), tz).unwrap();
            let (start, end) = (days[0].1, days[days.len() - 1].2);
            let buckets: Vec<(DateTime<Utc>, Figures)> = offsets
                .iter()
                .map(|q| (bucket(start - TimeDelta::hours(12) + TimeDelta::minutes(q * BUCKET_MINUTES)),
                    Figures { orders: 1, ..Figures::default() }))
                .collect();
            let inside = buckets.iter().filter(|(at, _)| start <= *at && *at < end).count() as i64;
            let folded: i64 = fold(&days, &buckets).iter().map(|f| f.orders).sum();
            prop_assert_eq!(folded, inside);
        }
    }
}
