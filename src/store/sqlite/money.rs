//! Balances moved in Rust: SQLite would add TEXT amounts in floating point,
//! so they are read, added as `Decimal`s (points as i128: a balance may pass
//! i64) and written back, inside the writer's transaction (the lock).
use super::classify;
use super::codec::{add_money, decode_points, encode_money, encode_points, encode_time, money};
use crate::domain::ledger::EntryStatus;
use crate::store::sql::{BalanceMoves, PointsMoves};
use crate::store::{corrupt, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::collections::BTreeMap;

/// Ids per `IN (…)` list.
const IN_CHUNK: usize = 1_000;
/// Rows per multi-row statement of four values (within 32 766 parameters).
const ROWS: usize = 8_000;

fn column(status: EntryStatus) -> usize {
    match status {
        EntryStatus::Pending => 0,
        EntryStatus::Approved => 1,
        EntryStatus::Paid => 2,
    }
}

/// Reads the affiliates' balances (all must exist), moves them, writes
/// them back with one `UPDATE … FROM (VALUES …)` per chunk.
pub async fn move_balances(conn: &mut SqliteConnection, moves: &BalanceMoves) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = moves.keys().map(|a| a.as_str()).collect();
    let mut balances: BTreeMap<String, [Decimal; 3]> = BTreeMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, pending, approved, paid FROM affiliates WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        for r in q.build().fetch_all(&mut *conn).await.map_err(classify)? {
            balances.insert(
                r.try_get("id").map_err(classify)?,
                [money(&r, "pending")?, money(&r, "approved")?, money(&r, "paid")?],
            );
        }
    }
    if balances.len() != ids.len() {
        return Err(corrupt(format!("balance rows missing for some of {ids:?}")));
    }
    for (id, by) in moves {
        let stored = balances.get_mut(id.as_str()).ok_or_else(|| corrupt(format!("no balance row for {id}")))?;
        for (status, amount) in by {
            let c = column(*status);
            stored[c] = add_money(stored[c], *amount)?;
        }
    }
    let rows = balances
        .iter()
        .map(|(id, [pending, approved, paid])| {
            Ok((id.as_str(), encode_money(*pending)?, encode_money(*approved)?, encode_money(*paid)?))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(classify)?;
    for chunk in rows.chunks(ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE affiliates SET pending = v.column2, approved = v.column3, paid = v.column4 FROM (VALUES ",
        );
        for (i, (id, pending, approved, paid)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.push_bind(*id).push(", ").push_bind(pending.as_str()).push(", ");
            q.push_bind(approved.as_str()).push(", ").push_bind(paid.as_str()).push(")");
        }
        q.push(") AS v WHERE affiliates.id = v.column1");
        q.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
}

/// Reads the buyers' points and expiry due times, moves them, and writes
/// them back (a buyer's row is created at its first points).
pub async fn move_points(conn: &mut SqliteConnection, moves: &PointsMoves, now: DateTime<Utc>) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = moves.keys().map(|b| b.as_str()).collect();
    let mut stored: BTreeMap<String, (i128, Option<String>)> = BTreeMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, points, expire_due_at FROM buyers WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        for r in q.build().fetch_all(&mut *conn).await.map_err(classify)? {
            let points = decode_points(r.try_get("points").map_err(classify)?)?;
            stored.insert(r.try_get("id").map_err(classify)?, (points, r.try_get("expire_due_at").map_err(classify)?));
        }
    }
    let stamp = encode_time(now).map_err(classify)?;
    let mut rows = Vec::with_capacity(moves.len());
    for (buyer, (by, sooner)) in moves {
        let (before, due) = stored.remove(buyer.as_str()).unwrap_or((0, None));
        let after =
            before.checked_add(i128::from(*by)).ok_or_else(|| corrupt(format!("points of {buyer} overflow")))?;
        // The expiry due time moves to the new lots' expiry when that is
        // sooner (encoded times sort as text).
        let new = sooner.map(encode_time).transpose().map_err(classify)?;
        let due = match (due, new) {
            (Some(d), Some(n)) => Some(d.min(n)),
            (d, n) => d.or(n),
        };
        rows.push((buyer.as_str(), encode_points(after).map_err(classify)?, due));
    }
    for chunk in rows.chunks(ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO buyers (id, points, updated_at, expire_due_at) ");
        q.push_values(chunk, |mut b, (buyer, points, due)| {
            b.push_bind(*buyer).push_bind(points.as_str()).push_bind(stamp.as_str()).push_bind(due.clone());
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET points = excluded.points, updated_at = excluded.updated_at, \
             expire_due_at = excluded.expire_due_at",
        );
        q.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
}
