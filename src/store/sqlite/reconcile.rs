//! What reconcile reads: the rows that break a stored-balance invariant, and
//! pages of processed orders (whose ledgers the engine recomputes). Every
//! check reads one snapshot (one read transaction); money sums are added in
//! Rust and compared as `Decimal`s (`"1.5000"` equals `"1.5"`), never as text.
use super::codec::{add_money, decode_points, money};
use super::SqliteStore;
use crate::domain::ids::OrderId;
use crate::store::{corrupt, ReconcileFacts, Result};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::Row;
use std::collections::BTreeMap;

impl SqliteStore {
    pub async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts> {
        let mut tx = self.readers.begin().await?;
        let mut f = ReconcileFacts::default();
        for (table, slot) in [
            ("affiliates", &mut f.affiliates),
            ("buyers", &mut f.buyers),
            ("events", &mut f.events),
            ("payouts", &mut f.payouts),
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *tx).await?;
            *slot = n.max(0) as u64;
        }

        // Balances against ledger sums per status, summed row by row.
        let mut sums: BTreeMap<String, [Decimal; 3]> = BTreeMap::new();
        {
            let mut rows = sqlx::query("SELECT affiliate_id, status, amount FROM ledger_entries").fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let column = match r.try_get::<&str, _>("status")? {
                    "pending" => 0,
                    "approved" => 1,
                    "paid" => 2,
                    _ => continue, // not a balance status: counted in none, as in MySQL's CASE
                };
                let slot = sums.entry(r.try_get("affiliate_id")?).or_default();
                slot[column] = add_money(slot[column], money(&r, "amount")?)?;
            }
        }
        {
            let mut rows =
                sqlx::query("SELECT id, pending, approved, paid FROM affiliates ORDER BY id").fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let id: String = r.try_get("id")?;
                let stored = [money(&r, "pending")?, money(&r, "approved")?, money(&r, "paid")?];
                let ledger = sums.get(&id).copied().unwrap_or_default();
                if stored != ledger {
                    f.balance_mismatches.push((id, stored, ledger));
                }
            }
        }

        // Points balances against reward sums, added in i128 (a balance may
        // pass i64, where SQLite's SUM would fail).
        let mut earned: BTreeMap<String, i128> = BTreeMap::new();
        {
            let mut rows = sqlx::query("SELECT buyer_id, points FROM reward_entries").fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                *earned.entry(r.try_get("buyer_id")?).or_default() += i128::from(r.try_get::<i64, _>("points")?);
            }
        }
        {
            let mut rows = sqlx::query("SELECT id, points FROM buyers ORDER BY id").fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let id: String = r.try_get("id")?;
                let stored = decode_points(r.try_get("points")?)?;
                let sum = earned.get(&id).copied().unwrap_or(0);
                if stored != sum {
                    f.points_mismatches.push((id, stored, sum));
                }
            }
        }
        for r in sqlx::query(
            "SELECT event_id, affiliate_id, kind FROM ledger_entries GROUP BY event_id, affiliate_id, kind HAVING COUNT(*) > 1",
        )
        .fetch_all(&mut *tx)
        .await?
        {
            f.duplicate_entries.push((r.try_get("event_id")?, r.try_get("affiliate_id")?, r.try_get("kind")?));
        }
        for r in sqlx::query(
            "SELECT id, order_id, status, attempts FROM events \
             WHERE status IN ('pending', 'processing', 'failed') AND created_at < ? ORDER BY created_at LIMIT 1000",
        )
        .bind(super::codec::bound_time(stuck_before))
        .fetch_all(&mut *tx)
        .await?
        {
            f.stuck_events.push((
                r.try_get("id")?,
                r.try_get("order_id")?,
                r.try_get("status")?,
                r.try_get("attempts")?,
            ));
        }

        // Each payout item against the Σ of its entries.
        let mut batched: BTreeMap<(i64, String), Decimal> = BTreeMap::new();
        {
            let mut rows =
                sqlx::query("SELECT payout_id, affiliate_id, amount FROM ledger_entries WHERE payout_id IS NOT NULL")
                    .fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let slot = batched.entry((r.try_get("payout_id")?, r.try_get("affiliate_id")?)).or_default();
                *slot = add_money(*slot, money(&r, "amount")?)?;
            }
        }
        for r in
            sqlx::query("SELECT payout_id, affiliate_id, amount FROM payout_items ORDER BY payout_id, affiliate_id")
                .fetch_all(&mut *tx)
                .await?
        {
            let payout: i64 = r.try_get("payout_id")?;
            let affiliate: String = r.try_get("affiliate_id")?;
            let amount = money(&r, "amount")?;
            let entries = batched.get(&(payout, affiliate.clone())).copied().unwrap_or_default();
            if amount != entries {
                f.payout_item_mismatches.push((u64::try_from(payout).map_err(corrupt)?, affiliate, amount, entries));
            }
        }
        for r in sqlx::query(
            "SELECT l.id, l.affiliate_id, l.payout_id, l.status, p.status AS batch FROM ledger_entries l \
             JOIN payouts p ON p.id = l.payout_id \
             WHERE (p.status = 'completed' AND l.status <> 'paid') OR (p.status = 'open' AND l.status <> 'approved') LIMIT 1000",
        )
        .fetch_all(&mut *tx)
        .await?
        {
            f.payout_entry_statuses.push((
                r.try_get("id")?,
                r.try_get("affiliate_id")?,
                r.try_get("payout_id")?,
                r.try_get("status")?,
                r.try_get("batch")?,
            ));
        }
        tx.commit().await?;
        Ok(f)
    }

    pub async fn processed_orders(&self, after: &str, limit: u32) -> Result<Vec<OrderId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE commission_status = 'processed' AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        Ok(ids.into_iter().map(OrderId::from_trusted).collect())
    }
}
