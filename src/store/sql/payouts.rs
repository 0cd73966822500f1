//! Payout batches: an entry belongs to at most one batch (one `payout_id`
//! column); completing a batch marks its entries paid.
use super::rows;
use super::{Arg, Conn, Lane, Sql, SqlStore};
use crate::domain::ids::AffiliateId;
use crate::domain::ledger::EntryStatus;
use crate::domain::payout::{AffiliatePayout, ExportLine, NewPayout, Payout, PayoutItem, PayoutSummary};
use crate::store::{PayoutTx, Payouts, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

async fn items(conn: &mut dyn Conn, id: u64) -> Result<Vec<PayoutItem>> {
    let q = Sql::new("SELECT affiliate_id, amount FROM payout_items WHERE payout_id = ? ORDER BY affiliate_id")
        .arg(super::uint(id)?);
    rows::all(&conn.fetch(&q).await?, |r| {
        Ok(PayoutItem { affiliate_id: AffiliateId::from_trusted(r.text("affiliate_id")?), amount: r.money("amount")? })
    })
}

async fn keyed(conn: &mut dyn Conn, key: &str) -> Result<Option<(u64, Decimal)>> {
    let q = Sql::new("SELECT id, min_amount FROM payouts WHERE idempotency_key = ?").arg(key);
    conn.optional(&q).await?.map(|r| Ok((r.uint("id")?, r.money("min_amount")?))).transpose()
}

#[async_trait::async_trait]
impl Payouts for SqlStore {
    async fn payout(&self, id: u64) -> Result<Option<Payout>> {
        let mut conn = self.snapshot().await?;
        let q = Sql::new("SELECT id, status, total, created_at, completed_at FROM payouts WHERE id = ?")
            .arg(super::uint(id)?);
        let Some(row) = conn.optional(&q).await? else { return Ok(None) };
        let items = items(conn.as_mut(), id).await?;
        conn.commit().await?;
        Ok(Some(Payout {
            id: row.uint("id")?,
            status: row.text("status")?,
            items,
            total: row.money("total")?,
            created_at: row.time("created_at")?,
            completed_at: row.opt_time("completed_at")?,
        }))
    }

    async fn payout_by_key(&self, key: &str) -> Result<Option<(u64, Decimal)>> {
        keyed(self.read().await?.as_mut(), key).await
    }

    async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>> {
        let q = Sql::new(
            "SELECT p.id, p.status, p.total, p.created_at, p.completed_at, \
             (SELECT COUNT(*) FROM payout_items i WHERE i.payout_id = p.id) AS items \
             FROM payouts p WHERE p.id < ? ORDER BY p.id DESC LIMIT ?",
        )
        .arg(before.map_or(Ok(Arg::Int(i64::MAX)), super::uint)?)
        .arg(limit);
        rows::all(&self.read().await?.fetch(&q).await?, |r| {
            Ok(PayoutSummary {
                id: r.uint("id")?,
                status: r.text("status")?,
                items: r.uint("items")?,
                total: r.money("total")?,
                created_at: r.time("created_at")?,
                completed_at: r.opt_time("completed_at")?,
            })
        })
    }

    /// One batch is made or completed at a time, on every instance: two
    /// requests that both lock the approved entries and then move them into
    /// a batch deadlock each other on MySQL (each one's move lands in the
    /// index gap the other holds), and the second would find nothing left
    /// to pay anyway.
    async fn begin_payout(&self) -> Result<Box<dyn PayoutTx>> {
        let mut conn = self.write(Lane::Request).await?;
        let q = format!("SELECT name FROM locks WHERE name = 'payouts'{}", conn.dialect().for_update);
        conn.one(&Sql::new(q)).await?;
        Ok(Box::new(SqlPayoutTx { conn }))
    }

    async fn affiliate_payouts(
        &self,
        id: &AffiliateId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AffiliatePayout>>> {
        let mut conn = self.snapshot().await?;
        if conn.optional(&Sql::new("SELECT id FROM affiliates WHERE id = ?").arg(id)).await?.is_none() {
            return Ok(None);
        }
        // ix_payout_items_affiliate: the affiliate's items by batch, newest first.
        let q = Sql::new(
            "SELECT i.payout_id, i.amount, p.status, p.created_at, p.completed_at \
             FROM payout_items i JOIN payouts p ON p.id = i.payout_id \
             WHERE i.affiliate_id = ? AND i.payout_id < ? ORDER BY i.payout_id DESC LIMIT ?",
        )
        .arg(id)
        .arg(before.map_or(Ok(Arg::Int(i64::MAX)), super::uint)?)
        .arg(limit);
        let page = rows::all(&conn.fetch(&q).await?, |r| {
            Ok(AffiliatePayout {
                payout_id: r.uint("payout_id")?,
                amount: r.money("amount")?,
                status: r.text("status")?,
                created_at: r.time("created_at")?,
                completed_at: r.opt_time("completed_at")?,
            })
        })?;
        conn.commit().await?;
        Ok(Some(page))
    }

    async fn payout_export(&self, id: u64) -> Result<Option<(String, Vec<ExportLine>)>> {
        let mut conn = self.snapshot().await?;
        let q = Sql::new("SELECT status FROM payouts WHERE id = ?").arg(super::uint(id)?);
        let Some(row) = conn.optional(&q).await? else { return Ok(None) };
        let q = Sql::new(
            "SELECT i.affiliate_id, a.name, i.amount FROM payout_items i \
             JOIN affiliates a ON a.id = i.affiliate_id WHERE i.payout_id = ? ORDER BY i.affiliate_id",
        )
        .arg(super::uint(id)?);
        let lines = rows::all(&conn.fetch(&q).await?, |r| {
            Ok(ExportLine {
                affiliate_id: AffiliateId::from_trusted(r.text("affiliate_id")?),
                name: r.text("name")?,
                amount: r.money("amount")?,
            })
        })?;
        conn.commit().await?;
        Ok(Some((row.text("status")?, lines)))
    }
}

struct SqlPayoutTx {
    conn: Box<dyn Conn>,
}

#[async_trait::async_trait]
impl PayoutTx for SqlPayoutTx {
    async fn keyed(&mut self, key: &str) -> Result<Option<(u64, Decimal)>> {
        keyed(self.conn.as_mut(), key).await
    }

    /// Locked: two concurrent batches cannot take the same entry.
    async fn approved_unbatched(&mut self) -> Result<Vec<(u64, AffiliateId, Decimal)>> {
        let q = format!(
            "SELECT id, affiliate_id, amount FROM ledger_entries WHERE status = 'approved' AND payout_id IS NULL \
             ORDER BY id{}",
            self.conn.dialect().for_update
        );
        rows::all(&self.conn.fetch(&Sql::new(q)).await?, |r| {
            Ok((r.uint("id")?, AffiliateId::from_trusted(r.text("affiliate_id")?), r.money("amount")?))
        })
    }

    async fn insert(&mut self, b: &NewPayout) -> Result<u64> {
        let q = Sql::new(
            "INSERT INTO payouts (idempotency_key, status, min_amount, total, created_at) VALUES (?, 'open', ?, ?, ?)",
        )
        .arg(b.key.as_deref())
        .arg(b.min_amount)
        .arg(b.total)
        .arg(b.created_at);
        let id = self.conn.execute(&q).await?.last_id;
        let payout = super::uint(id)?;
        let items: Vec<Vec<Arg>> =
            b.items.iter().map(|(a, (sum, _))| vec![payout.clone(), a.into(), (*sum).into()]).collect();
        self.conn
            .execute_chunked(&items, 3, |chunk| {
                let mut q = Sql::new("INSERT INTO payout_items (payout_id, affiliate_id, amount)");
                q.values(chunk, Clone::clone);
                q
            })
            .await?;
        let entries = b.items.values().flat_map(|(_, ids)| ids).map(|e| super::uint(*e)).collect::<Result<Vec<_>>>()?;
        self.conn
            .execute_chunked(&entries, 1, |chunk| {
                let mut q = Sql::new("UPDATE ledger_entries SET payout_id = ");
                q.bind(payout.clone()).push(" WHERE id IN (").list(chunk.iter().cloned()).push(")");
                q
            })
            .await?;
        Ok(id)
    }

    async fn lock(&mut self, id: u64) -> Result<Option<String>> {
        let q = format!("SELECT status FROM payouts WHERE id = ?{}", self.conn.dialect().for_update);
        self.conn.optional(&Sql::new(q).arg(super::uint(id)?)).await?.map(|r| r.text("status")).transpose()
    }

    async fn items(&mut self, id: u64) -> Result<Vec<PayoutItem>> {
        items(self.conn.as_mut(), id).await
    }

    async fn complete(&mut self, id: u64, items: &[PayoutItem], now: DateTime<Utc>) -> Result<()> {
        let moves = items
            .iter()
            .map(|i| {
                (
                    i.affiliate_id.clone(),
                    BTreeMap::from([(EntryStatus::Approved, -i.amount), (EntryStatus::Paid, i.amount)]),
                )
            })
            .collect();
        self.conn.move_balances(&moves).await?;
        let id = super::uint(id)?;
        self.conn
            .execute(&Sql::new("UPDATE ledger_entries SET status = 'paid' WHERE payout_id = ?").arg(id.clone()))
            .await?;
        let q = Sql::new("UPDATE payouts SET status = 'completed', completed_at = ? WHERE id = ?").arg(now).arg(id);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}

super::webhooks::notify_tx!(SqlPayoutTx);
super::audit::audit_tx!(SqlPayoutTx);
