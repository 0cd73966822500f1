//! Cap and budget counters (docs/RULES.md "Caps and budgets"): read and
//! locked by the event transaction before it writes, moved in it.
use super::{Arg, Conn, Sql};
use crate::domain::caps::{CounterKey, Period, Scope, Used};
use crate::domain::ids::AffiliateId;
use crate::store::{corrupt, Result};
use std::collections::{BTreeMap, HashMap};

const KEY: &str = "scope, subject, period, period_start";

fn key_args(k: &CounterKey) -> Vec<Arg> {
    vec![k.scope.kind().into(), k.scope.subject().into(), k.period.as_str().into(), Arg::Time(k.start)]
}

/// The counters of `keys`, a missing one at 0. `lock`: first creates every
/// missing row and locks every row for update, in key order, in one
/// statement (an upsert that changes nothing: an exclusive lock at once, so
/// two transactions never both hold a row shared and wait to upgrade).
pub async fn counters(conn: &mut dyn Conn, keys: &[CounterKey], lock: bool) -> Result<HashMap<CounterKey, Used>> {
    let mut used = HashMap::with_capacity(keys.len());
    if keys.is_empty() {
        return Ok(used);
    }
    let d = conn.dialect();
    if lock {
        conn.execute_chunked(keys, 6, |chunk| {
            let mut q = Sql::new(format!("INSERT INTO cap_counters ({KEY}, used_commission, used_points)"));
            q.values(chunk, |k| {
                let mut row = key_args(k);
                row.extend([Arg::Money(rust_decimal::Decimal::ZERO), Arg::Int(0)]);
                row
            });
            q.push(&(d.add_on_conflict)(KEY, &["used_points"]));
            q
        })
        .await?;
    }
    let rows = conn
        .fetch_chunked(keys, 4, |chunk| {
            let mut q = Sql::new(format!("SELECT {KEY}, used_commission, used_points FROM cap_counters WHERE "));
            for (i, k) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { " OR (" });
                q.push("scope = ").bind(k.scope.kind()).push(" AND subject = ").bind(k.scope.subject());
                q.push(" AND period = ").bind(k.period.as_str()).push(" AND period_start = ").bind(Arg::Time(k.start));
                q.push(")");
            }
            q
        })
        .await?;
    for row in &rows {
        used.insert(counter_key(row.as_ref())?, counter_used(row.as_ref())?);
    }
    Ok(used)
}

/// Writes the counters' new values (their rows are locked).
pub async fn write(conn: &mut dyn Conn, counters: &BTreeMap<CounterKey, Used>) -> Result<()> {
    if counters.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<Arg>> = counters
        .iter()
        .map(|(k, u)| {
            let mut row = key_args(k);
            row.extend([Arg::Money(u.commission), Arg::Int(u.points)]);
            row
        })
        .collect();
    let d = conn.dialect();
    conn.execute_chunked(&rows, 6, |chunk| {
        let mut q = Sql::new(format!("INSERT INTO cap_counters ({KEY}, used_commission, used_points)"));
        q.values(chunk, Clone::clone);
        q.push(&(d.set_on_conflict)(KEY, &["used_commission", "used_points"]));
        q
    })
    .await?;
    Ok(())
}

pub fn counter_key(r: &dyn super::Cols) -> Result<CounterKey> {
    let period = r.text("period")?;
    let scope = match r.text("scope")?.as_str() {
        "program" => Scope::Program,
        "affiliate" => Scope::Affiliate(AffiliateId::from_trusted(r.text("subject")?)),
        other => return Err(corrupt(format!("counter scope {other:?}"))),
    };
    Ok(CounterKey {
        scope,
        period: Period::parse(&period).ok_or_else(|| corrupt(format!("counter period {period:?}")))?,
        start: r.time("period_start")?,
    })
}

pub fn counter_used(r: &dyn super::Cols) -> Result<Used> {
    Ok(Used { commission: r.money("used_commission")?, points: r.int("used_points")? })
}
