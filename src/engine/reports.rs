//! Reports over time (`domain::report`): a window's days folded from the
//! maintained buckets, and the affiliates who booked most in it.
use super::{Engine, Result};
use crate::domain::affiliate::Affiliate;
use crate::domain::ids::AffiliateId;
use crate::domain::report::{self, AffiliateDay, Figures};
use crate::domain::FieldError;
use chrono::{DateTime, NaiveDate, Utc};

/// One day of a daily report.
#[derive(Debug, Clone)]
pub struct Day {
    pub date: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub figures: Figures,
}

/// What ranks the top affiliates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBy {
    Commission,
    Sales,
    Orders,
}

impl Engine {
    /// The days from `since` to before `until` (local dates of `tz`), each
    /// with what was booked in it; a window longer than
    /// [`report::MAX_DAYS`] is refused.
    pub async fn daily_report(
        &self,
        since: NaiveDate,
        until: NaiveDate,
        tz: chrono_tz::Tz,
    ) -> Result<std::result::Result<Vec<Day>, FieldError>> {
        let days = match report::days(since, until, tz) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let (from, to) = (days[0].1, days[days.len() - 1].2);
        let buckets = self.store().report_buckets(from, to).await?;
        let folded = report::fold(&days, &buckets);
        Ok(Ok(days
            .into_iter()
            .zip(folded)
            .map(|((date, start, end), figures)| Day { date, start, end, figures })
            .collect()))
    }

    /// The affiliates that booked most in the days from `since` to before
    /// `until` (local dates of the program's time zone), best first, with
    /// their affiliate records (None: deleted since).
    pub async fn top_affiliates(
        &self,
        since: NaiveDate,
        until: NaiveDate,
        by: RankBy,
        limit: usize,
    ) -> Result<std::result::Result<Vec<(AffiliateId, AffiliateDay, Option<Affiliate>)>, FieldError>> {
        let (_, program) = self.program().await?;
        let days = match report::days(since, until, program.timezone) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let (from, to) = (days[0].1, days[days.len() - 1].2);
        let mut all = self.store().affiliate_days(from, to).await?;
        all.sort_by(|(a, x), (b, y)| {
            let rank = match by {
                RankBy::Commission => y.commission.cmp(&x.commission),
                RankBy::Sales => y.sales.cmp(&x.sales),
                RankBy::Orders => y.orders.cmp(&x.orders),
            };
            rank.then_with(|| a.cmp(b))
        });
        all.truncate(limit);
        let mut out = Vec::with_capacity(all.len());
        for (id, day) in all {
            let affiliate = self.store().affiliate(&id).await?;
            out.push((id, day, affiliate));
        }
        Ok(Ok(out))
    }
}
