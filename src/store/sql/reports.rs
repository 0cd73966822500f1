//! The report aggregates' rows (see `store::reports`).
use super::{Arg, Conn, Sql, SqlStore};
use crate::domain::ids::AffiliateId;
use crate::domain::report::{AffiliateDay, Figures};
use crate::store::{corrupt, ReportAdds, Reports, Result};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use std::collections::HashMap;

const BUCKET_KEY: &str = "bucket_start, shard";
const BUCKET_VALUES: [&str; 9] = [
    "orders",
    "eligible_sales",
    "commission",
    "tier_bonus",
    "milestone_bonus",
    "reversals",
    "adjustments",
    "points_earned",
    "points_spent",
];
const DAY_KEY: &str = "day_start, affiliate_id";
const DAY_VALUES: [&str; 3] = ["orders", "sales", "commission"];

fn figures_args(f: &Figures) -> Vec<Arg> {
    vec![
        Arg::Int(f.orders),
        Arg::Money(f.eligible_sales),
        Arg::Money(f.commission),
        Arg::Money(f.tier_bonus),
        Arg::Money(f.milestone_bonus),
        Arg::Money(f.reversals),
        Arg::Money(f.adjustments),
        Arg::Int(f.points_earned),
        Arg::Int(f.points_spent),
    ]
}

fn int(r: &dyn super::Cols, column: &str) -> Result<i64> {
    r.sum(column)?.to_i64().ok_or_else(|| corrupt(format!("{column} overflows")))
}

/// Sums of the bucket columns, as `figures` reads them.
fn sums(d: &super::Dialect) -> String {
    BUCKET_VALUES.iter().map(|c| format!("{} AS {c}", (d.sum)(c))).collect::<Vec<_>>().join(", ")
}

fn figures(r: &dyn super::Cols) -> Result<Figures> {
    Ok(Figures {
        orders: int(r, "orders")?,
        eligible_sales: r.sum("eligible_sales")?,
        commission: r.sum("commission")?,
        tier_bonus: r.sum("tier_bonus")?,
        milestone_bonus: r.sum("milestone_bonus")?,
        reversals: r.sum("reversals")?,
        adjustments: r.sum("adjustments")?,
        points_earned: int(r, "points_earned")?,
        points_spent: int(r, "points_spent")?,
    })
}

/// Adds `adds` to the aggregates, in the caller's transaction: one upsert
/// per table where the database adds money exactly (MySQL), else the rows
/// read, added in Rust and written back (SQLite, whose single writer is
/// the lock).
pub async fn add(conn: &mut dyn Conn, adds: &ReportAdds) -> Result<()> {
    let d = conn.dialect();
    let mut buckets: Vec<((DateTime<Utc>, u16), Figures)> =
        adds.buckets.iter().filter(|(_, f)| !f.is_zero()).map(|(k, f)| (*k, f.clone())).collect();
    let mut days: Vec<((DateTime<Utc>, AffiliateId), AffiliateDay)> =
        adds.days.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if buckets.is_empty() && days.is_empty() {
        return Ok(());
    }
    if !d.adds_money {
        for chunk in buckets.chunks_mut(200) {
            let mut q = Sql::new(format!("SELECT bucket_start, shard, {} FROM report_buckets WHERE ", sums(d)));
            for (i, ((at, shard), _)) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { " OR (" });
                q.push("bucket_start = ").bind(Arg::Time(*at)).push(" AND shard = ").bind(i64::from(*shard)).push(")");
            }
            q.push(" GROUP BY bucket_start, shard");
            let mut stored: HashMap<(DateTime<Utc>, u16), Figures> = HashMap::new();
            for r in conn.fetch(&q).await? {
                let shard = u16::try_from(r.int("shard")?).map_err(corrupt)?;
                stored.insert((r.time("bucket_start")?, shard), figures(r.as_ref())?);
            }
            for (key, f) in chunk.iter_mut() {
                if let Some(s) = stored.get(key) {
                    f.add(s);
                }
            }
        }
        for chunk in days.chunks_mut(200) {
            let mut q = Sql::new(format!(
                "SELECT day_start, affiliate_id, orders, {}, {} FROM report_affiliate_days WHERE ",
                "sales", "commission"
            ));
            for (i, ((at, affiliate), _)) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { " OR (" });
                q.push("day_start = ").bind(Arg::Time(*at)).push(" AND affiliate_id = ").bind(affiliate).push(")");
            }
            let mut stored: HashMap<(DateTime<Utc>, String), AffiliateDay> = HashMap::new();
            for r in conn.fetch(&q).await? {
                let day = AffiliateDay {
                    orders: r.int("orders")?,
                    sales: r.money("sales")?,
                    commission: r.money("commission")?,
                };
                stored.insert((r.time("day_start")?, r.text("affiliate_id")?), day);
            }
            for ((at, affiliate), v) in chunk.iter_mut() {
                if let Some(s) = stored.get(&(*at, affiliate.as_str().to_owned())) {
                    v.add(s);
                }
            }
        }
    }
    let on_conflict = |key: &str, columns: &[&str]| {
        if d.adds_money {
            (d.add_on_conflict)(key, columns)
        } else {
            (d.set_on_conflict)(key, columns)
        }
    };
    let rows: Vec<Vec<Arg>> = buckets
        .iter()
        .map(|((at, shard), f)| {
            let mut row = vec![Arg::Time(*at), Arg::Int(i64::from(*shard))];
            row.extend(figures_args(f));
            row
        })
        .collect();
    conn.execute_chunked(&rows, 11, |chunk| {
        let mut q = Sql::new(format!("INSERT INTO report_buckets ({BUCKET_KEY}, {})", BUCKET_VALUES.join(", ")));
        q.values(chunk, Clone::clone);
        q.push(&on_conflict(BUCKET_KEY, &BUCKET_VALUES));
        q
    })
    .await?;
    let rows: Vec<Vec<Arg>> = days
        .iter()
        .map(|((at, affiliate), v)| {
            vec![Arg::Time(*at), affiliate.into(), Arg::Int(v.orders), Arg::Money(v.sales), Arg::Money(v.commission)]
        })
        .collect();
    conn.execute_chunked(&rows, 5, |chunk| {
        let mut q = Sql::new(format!("INSERT INTO report_affiliate_days ({DAY_KEY}, {})", DAY_VALUES.join(", ")));
        q.values(chunk, Clone::clone);
        q.push(&on_conflict(DAY_KEY, &DAY_VALUES));
        q
    })
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Reports for SqlStore {
    async fn report_buckets(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, Figures)>> {
        let mut conn = self.read().await?;
        let d = conn.dialect();
        let mut q = Sql::new(format!("SELECT bucket_start, {} FROM report_buckets WHERE bucket_start >= ", sums(d)));
        q.bind(Arg::Bound(from)).push(" AND bucket_start < ").bind(Arg::Bound(to));
        q.push(" GROUP BY bucket_start ORDER BY bucket_start");
        super::rows::all(&conn.fetch(&q).await?, |r| Ok((r.time("bucket_start")?, figures(r)?)))
    }

    async fn affiliate_days(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(AffiliateId, AffiliateDay)>> {
        let mut conn = self.read().await?;
        let d = conn.dialect();
        let mut q = Sql::new(format!(
            "SELECT affiliate_id, {} AS orders, {} AS sales, {} AS commission FROM report_affiliate_days \
             WHERE day_start >= ",
            (d.sum)("orders"),
            (d.sum)("sales"),
            (d.sum)("commission")
        ));
        q.bind(Arg::Bound(from)).push(" AND day_start < ").bind(Arg::Bound(to)).push(" GROUP BY affiliate_id");
        super::rows::all(&conn.fetch(&q).await?, |r| {
            Ok((
                AffiliateId::from_trusted(r.text("affiliate_id")?),
                AffiliateDay { orders: int(r, "orders")?, sales: r.sum("sales")?, commission: r.sum("commission")? },
            ))
        })
    }
}

/// [`crate::store::ReportTx`] for a transaction type holding its connection in `conn`.
macro_rules! report_tx {
    ($($t:ty),*) => {$(
        #[async_trait::async_trait]
        impl crate::store::ReportTx for $t {
            async fn add_report(&mut self, adds: &crate::store::ReportAdds) -> crate::store::Result<()> {
                crate::store::sql::reports::add(self.conn.as_mut(), adds).await
            }
        }
    )*};
}
pub(crate) use report_tx;
