//! Balances moved in SQL: MySQL adds DECIMALs exactly, so a balance moves
//! by `column = column + ?` under the row lock the statement takes.
use super::classify;
use crate::domain::ledger::EntryStatus;
use crate::store::sql::{BalanceMoves, PointsMoves};
use crate::store::{corrupt, Result};
use chrono::{DateTime, Utc};
use sqlx::{MySql, MySqlConnection, QueryBuilder};

/// Moves affiliates' balances in one statement. InnoDB locks the rows in
/// primary-key order, the same order in every transaction, so transactions
/// sharing uplines queue instead of deadlocking.
pub async fn move_balances(conn: &mut MySqlConnection, moves: &BalanceMoves) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<MySql>::new("UPDATE affiliates SET ");
    let mut first = true;
    for status in [EntryStatus::Pending, EntryStatus::Approved, EntryStatus::Paid] {
        let column = status.as_str();
        let by: Vec<_> = moves.iter().filter_map(|(id, by)| by.get(&status).map(|amount| (id, *amount))).collect();
        if by.is_empty() {
            continue;
        }
        if !std::mem::take(&mut first) {
            q.push(", ");
        }
        q.push(format!("{column} = {column} + CASE id"));
        for (id, amount) in by {
            q.push(" WHEN ").push_bind(id.as_str()).push(" THEN ").push_bind(amount);
        }
        q.push(" ELSE 0 END");
    }
    q.push(" WHERE id IN (");
    let mut ids = q.separated(", ");
    for id in moves.keys() {
        ids.push_bind(id.as_str());
    }
    q.push(")");
    let done = q.build().execute(conn).await.map_err(classify)?;
    if done.rows_affected() != moves.len() as u64 {
        return Err(corrupt(format!("balance rows missing for some of {:?}", moves.keys())));
    }
    Ok(())
}

/// Moves buyers' points in one statement (creating a buyer's row at its
/// first points), and each buyer's expiry due time to its new lots' expiry
/// when that is sooner.
pub async fn move_points(conn: &mut MySqlConnection, moves: &PointsMoves, now: DateTime<Utc>) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<MySql>::new("INSERT INTO buyers (id, points, updated_at, expire_due_at) ");
    q.push_values(moves, |mut b, (buyer, (points, sooner))| {
        b.push_bind(buyer.as_str())
            .push_bind(*points)
            .push_bind(now.naive_utc())
            .push_bind(sooner.map(|t| t.naive_utc()));
    });
    q.push(
        " ON DUPLICATE KEY UPDATE points = points + VALUES(points), updated_at = VALUES(updated_at), \
         expire_due_at = CASE WHEN VALUES(expire_due_at) IS NULL THEN expire_due_at \
           WHEN expire_due_at IS NULL THEN VALUES(expire_due_at) \
           ELSE LEAST(expire_due_at, VALUES(expire_due_at)) END",
    );
    q.build().execute(conn).await.map_err(classify)?;
    Ok(())
}
