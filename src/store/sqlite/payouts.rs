//! Payout batches: approved, not yet batched entries of every affiliate whose
//! sum reaches the minimum are put in one batch; completing it marks them paid.
//! An entry belongs to at most one batch (one `payout_id` column). Sums are
//! added in Rust; balances move through `apply::move_by`.
use super::apply::move_by;
use super::codec::{add_money, encode_money, encode_time, money, opt_time, time};
use super::{int, push_list, rows_per_insert, SqliteStore, IN_CHUNK};
use crate::domain::ids::AffiliateId;
use crate::domain::ledger::EntryStatus;
use crate::domain::payout::{CreatePayout, Payout, PayoutItem, PayoutSummary};
use crate::store::{corrupt, Result};
use chrono::Utc;
use rust_decimal::Decimal;
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::BTreeMap;

impl SqliteStore {
    /// Newest first, ids below `before`; each with its number of items.
    pub(super) async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>> {
        let before = before.map_or(Ok(i64::MAX), int)?;
        sqlx::query(
            "SELECT p.id, p.status, p.total, p.created_at, p.completed_at, \
             (SELECT COUNT(*) FROM payout_items i WHERE i.payout_id = p.id) AS items \
             FROM payouts p WHERE p.id < ? ORDER BY p.id DESC LIMIT ?",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| {
            Ok(PayoutSummary {
                id: r.try_get("id")?,
                status: r.try_get("status")?,
                items: u64::try_from(r.try_get::<i64, _>("items")?).map_err(corrupt)?,
                total: money(r, "total")?,
                created_at: time(r, "created_at")?,
                completed_at: opt_time(r, "completed_at")?,
            })
        })
        .collect()
    }

    /// A batch and its items, in one read snapshot.
    pub(super) async fn payout(&self, id: u64) -> Result<Option<Payout>> {
        let mut tx = self.readers.begin().await?;
        let Some(row) = sqlx::query("SELECT id, status, total, created_at, completed_at FROM payouts WHERE id = ?")
            .bind(int(id)?)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let items =
            sqlx::query("SELECT affiliate_id, amount FROM payout_items WHERE payout_id = ? ORDER BY affiliate_id")
                .bind(int(id)?)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok(PayoutItem {
                        affiliate_id: AffiliateId::from_trusted(r.try_get("affiliate_id")?),
                        amount: money(r, "amount")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some(Payout {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
            items,
            total: money(&row, "total")?,
            created_at: time(&row, "created_at")?,
            completed_at: opt_time(&row, "completed_at")?,
        }))
    }

    /// Builds a batch. With an idempotency key, a repeated request returns the
    /// batch the first one built (the key is looked up inside the write
    /// transaction, so two concurrent requests with one key build one batch),
    /// and a key reused with another `min_amount` is refused. No batch is
    /// stored when nothing reaches the minimum. A negative or small approved
    /// sum stays and nets against later entries.
    pub async fn create_payout(&self, min_amount: Decimal, key: Option<&str>) -> Result<CreatePayout> {
        let mut tx = self.begin_write().await?;
        if let Some(key) = key {
            let existing = sqlx::query("SELECT id, min_amount FROM payouts WHERE idempotency_key = ?")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                drop(tx);
                let first = money(&row, "min_amount")?;
                if first != min_amount {
                    return Ok(CreatePayout::KeyReused { min_amount: first });
                }
                let id = u64::try_from(row.try_get::<i64, _>("id")?).map_err(corrupt)?;
                let payout = self.payout(id).await?.ok_or_else(|| corrupt("payout vanished"))?;
                return Ok(CreatePayout::Repeated(payout));
            }
        }
        // The writer is the lock: no other batch can take these entries meanwhile.
        let entries = sqlx::query(
            "SELECT id, affiliate_id, amount FROM ledger_entries WHERE status = 'approved' AND payout_id IS NULL \
             ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut sums: BTreeMap<String, (Decimal, Vec<i64>)> = BTreeMap::new();
        for e in &entries {
            let slot = sums.entry(e.try_get("affiliate_id")?).or_default();
            slot.0 = add_money(slot.0, money(e, "amount")?)?;
            slot.1.push(e.try_get("id")?);
        }
        sums.retain(|_, (sum, _)| *sum >= min_amount && *sum > Decimal::ZERO);
        if sums.is_empty() {
            return Ok(CreatePayout::NothingToPay);
        }
        let mut total = Decimal::ZERO;
        for (sum, _) in sums.values() {
            total = add_money(total, *sum)?;
        }
        let inserted = sqlx::query(
            "INSERT INTO payouts (idempotency_key, status, min_amount, total, created_at) VALUES (?, 'open', ?, ?, ?)",
        )
        .bind(key)
        .bind(encode_money(min_amount)?)
        .bind(encode_money(total)?)
        .bind(encode_time(Utc::now())?)
        .execute(&mut *tx)
        .await?;
        let id = inserted.last_insert_rowid();
        let items = sums
            .iter()
            .map(|(affiliate, (sum, _))| Ok((affiliate.as_str(), encode_money(*sum)?)))
            .collect::<Result<Vec<_>>>()?;
        for chunk in items.chunks(rows_per_insert(3)) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO payout_items (payout_id, affiliate_id, amount) ");
            q.push_values(chunk, |mut b, (affiliate, amount)| {
                b.push_bind(id).push_bind(*affiliate).push_bind(amount.as_str());
            });
            q.build().execute(&mut *tx).await?;
        }
        let entry_ids: Vec<i64> = sums.values().flat_map(|(_, ids)| ids.iter().copied()).collect();
        for chunk in entry_ids.chunks(IN_CHUNK) {
            let mut mark = QueryBuilder::<Sqlite>::new("UPDATE ledger_entries SET payout_id = ");
            mark.push_bind(id).push(" WHERE id IN (");
            push_list(&mut mark, chunk.iter().copied());
            mark.push(")");
            mark.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let id = u64::try_from(id).map_err(corrupt)?;
        Ok(CreatePayout::Created(self.payout(id).await?.ok_or_else(|| corrupt("payout vanished"))?))
    }

    /// Marks a batch paid: its entries move approved → paid with the balances.
    /// Completing a completed batch changes nothing. None if there is no such batch.
    pub async fn complete_payout(&self, id: u64) -> Result<Option<Payout>> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM payouts WHERE id = ?")
            .bind(int(id)?)
            .fetch_optional(&mut *tx)
            .await?;
        match status.as_deref() {
            None => return Ok(None),
            Some("completed") => {
                drop(tx);
                return self.payout(id).await;
            }
            Some(_) => {}
        }
        let items =
            sqlx::query("SELECT affiliate_id, amount FROM payout_items WHERE payout_id = ? ORDER BY affiliate_id")
                .bind(int(id)?)
                .fetch_all(&mut *tx)
                .await?;
        let mut moves: BTreeMap<String, Vec<(EntryStatus, Decimal)>> = BTreeMap::new();
        for item in &items {
            let amount = money(item, "amount")?;
            moves
                .entry(item.try_get("affiliate_id")?)
                .or_default()
                .extend([(EntryStatus::Approved, -amount), (EntryStatus::Paid, amount)]);
        }
        move_by(&mut tx, &moves).await?;
        sqlx::query("UPDATE ledger_entries SET status = 'paid' WHERE payout_id = ?")
            .bind(int(id)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE payouts SET status = 'completed', completed_at = ? WHERE id = ?")
            .bind(encode_time(Utc::now())?)
            .bind(int(id)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.payout(id).await
    }
}
