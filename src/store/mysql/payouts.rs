//! Payout batches: approved, not yet batched entries of every affiliate whose
//! sum reaches the minimum are put in one batch; completing it marks them paid.
//! An entry belongs to at most one batch (one `payout_id` column).
use super::MySqlStore;
use crate::domain::ids::AffiliateId;
use crate::domain::payout::{CreatePayout, Payout, PayoutItem, PayoutSummary};
use crate::store::{corrupt, Result};
use chrono::Utc;
use rust_decimal::Decimal;
use sqlx::{MySql, QueryBuilder, Row};
use std::collections::BTreeMap;

impl MySqlStore {
    /// Newest first, ids below `before`; each with its number of items.
    pub(super) async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>> {
        sqlx::query(
            "SELECT p.id, p.status, p.total, p.created_at, p.completed_at, \
             (SELECT COUNT(*) FROM payout_items i WHERE i.payout_id = p.id) AS items \
             FROM payouts p WHERE p.id < ? ORDER BY p.id DESC LIMIT ?",
        )
        .bind(before.unwrap_or(u64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(PayoutSummary {
                id: r.try_get("id")?,
                status: r.try_get("status")?,
                items: u64::try_from(r.try_get::<i64, _>("items")?).map_err(corrupt)?,
                total: r.try_get("total")?,
                created_at: r.try_get("created_at")?,
                completed_at: r.try_get("completed_at")?,
            })
        })
        .collect()
    }

    pub(super) async fn payout(&self, id: u64) -> Result<Option<Payout>> {
        let Some(row) = sqlx::query("SELECT id, status, total, created_at, completed_at FROM payouts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let items =
            sqlx::query("SELECT affiliate_id, amount FROM payout_items WHERE payout_id = ? ORDER BY affiliate_id")
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    Ok(PayoutItem {
                        affiliate_id: AffiliateId::from_trusted(r.try_get("affiliate_id")?),
                        amount: r.try_get("amount")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        Ok(Some(Payout {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
            items,
            total: row.try_get("total")?,
            created_at: row.try_get("created_at")?,
            completed_at: row.try_get("completed_at")?,
        }))
    }

    /// The batch built under this idempotency key, judged against a new
    /// request's `min_amount`; None if the key is new.
    async fn keyed(&self, key: &str, min_amount: Decimal) -> Result<Option<CreatePayout>> {
        let Some(row) = sqlx::query("SELECT id, min_amount FROM payouts WHERE idempotency_key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let first: Decimal = row.try_get("min_amount")?;
        if first != min_amount {
            return Ok(Some(CreatePayout::KeyReused { min_amount: first }));
        }
        let payout = self.payout(row.try_get("id")?).await?.ok_or_else(|| corrupt("payout vanished"))?;
        Ok(Some(CreatePayout::Repeated(payout)))
    }

    /// Builds a batch. With an idempotency key, a repeated request returns the
    /// batch the first one built (also when both run at once: the loser of
    /// the unique key reads the winner's), and a key reused with another
    /// `min_amount` is refused. No batch is stored when nothing reaches the
    /// minimum. A negative or small approved sum stays and nets against later
    /// entries.
    pub async fn create_payout(&self, min_amount: Decimal, key: Option<&str>) -> Result<CreatePayout> {
        if let Some(key) = key {
            if let Some(earlier) = self.keyed(key, min_amount).await? {
                return Ok(earlier);
            }
        }
        let mut tx = self.pool.begin().await?;
        // Lock every approved, unbatched entry: two concurrent batches cannot take the same one.
        let entries = sqlx::query(
            "SELECT id, affiliate_id, amount FROM ledger_entries WHERE status = 'approved' AND payout_id IS NULL \
             ORDER BY id FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut sums: BTreeMap<String, (Decimal, Vec<u64>)> = BTreeMap::new();
        for e in &entries {
            let slot = sums.entry(e.try_get("affiliate_id")?).or_default();
            slot.0 += e.try_get::<Decimal, _>("amount")?;
            slot.1.push(e.try_get("id")?);
        }
        sums.retain(|_, (sum, _)| *sum >= min_amount && *sum > Decimal::ZERO);
        if sums.is_empty() {
            drop(tx);
            // A concurrent request with this key may have built one meanwhile.
            if let Some(key) = key {
                if let Some(earlier) = self.keyed(key, min_amount).await? {
                    return Ok(earlier);
                }
            }
            return Ok(CreatePayout::NothingToPay);
        }
        let total: Decimal = sums.values().map(|(s, _)| *s).sum();
        let now = Utc::now();
        let inserted = sqlx::query(
            "INSERT INTO payouts (idempotency_key, status, min_amount, total, created_at) VALUES (?, 'open', ?, ?, ?)",
        )
        .bind(key)
        .bind(min_amount)
        .bind(total)
        .bind(now)
        .execute(&mut *tx)
        .await;
        let id = match inserted {
            Ok(done) => done.last_insert_id(),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && key.is_some() => {
                // Another request with this key won: answer with its batch.
                drop(tx);
                let key = key.unwrap_or_default();
                return self.keyed(key, min_amount).await?.ok_or_else(|| corrupt("keyed payout vanished"));
            }
            Err(e) => return Err(e.into()),
        };
        let mut items = QueryBuilder::<MySql>::new("INSERT INTO payout_items (payout_id, affiliate_id, amount) ");
        items.push_values(&sums, |mut b, (affiliate, (sum, _))| {
            b.push_bind(id).push_bind(affiliate).push_bind(*sum);
        });
        items.build().execute(&mut *tx).await?;
        let mut mark = QueryBuilder::<MySql>::new("UPDATE ledger_entries SET payout_id = ");
        mark.push_bind(id).push(" WHERE id IN (");
        let mut ids = mark.separated(", ");
        for entry in sums.values().flat_map(|(_, ids)| ids) {
            ids.push_bind(*entry);
        }
        mark.push(")");
        mark.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(CreatePayout::Created(self.payout(id).await?.ok_or_else(|| corrupt("payout vanished"))?))
    }

    /// Marks a batch paid: its entries move approved → paid with the balances.
    /// Completing a completed batch changes nothing. None if there is no such batch.
    pub async fn complete_payout(&self, id: u64) -> Result<Option<Payout>> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM payouts WHERE id = ? FOR UPDATE")
            .bind(id)
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
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        for item in &items {
            let amount: Decimal = item.try_get("amount")?;
            let affiliate: String = item.try_get("affiliate_id")?;
            sqlx::query("UPDATE affiliates SET approved = approved - ?, paid = paid + ? WHERE id = ?")
                .bind(amount)
                .bind(amount)
                .bind(affiliate)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE ledger_entries SET status = 'paid' WHERE payout_id = ?").bind(id).execute(&mut *tx).await?;
        let now = Utc::now();
        sqlx::query("UPDATE payouts SET status = 'completed', completed_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.payout(id).await
    }
}
