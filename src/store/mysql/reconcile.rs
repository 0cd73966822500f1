//! What reconcile reads: the rows that break a stored-balance invariant, and
//! pages of processed orders (whose ledgers the engine recomputes).
use super::MySqlStore;
use crate::domain::ids::OrderId;
use crate::store::{points_of, ReconcileFacts, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;

impl MySqlStore {
    pub async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts> {
        let count = |table: &'static str| async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await
                .map(|n| n.max(0) as u64)
        };
        let mut f = ReconcileFacts {
            affiliates: count("affiliates").await?,
            buyers: count("buyers").await?,
            events: count("events").await?,
            payouts: count("payouts").await?,
            ..ReconcileFacts::default()
        };
        for r in sqlx::query(
            "SELECT a.id, a.pending, a.approved, a.paid, COALESCE(l.p, 0) AS lp, COALESCE(l.ap, 0) AS lap, COALESCE(l.pd, 0) AS lpd \
             FROM affiliates a LEFT JOIN (SELECT affiliate_id, \
               SUM(CASE WHEN status = 'pending' THEN amount ELSE 0 END) AS p, \
               SUM(CASE WHEN status = 'approved' THEN amount ELSE 0 END) AS ap, \
               SUM(CASE WHEN status = 'paid' THEN amount ELSE 0 END) AS pd \
               FROM ledger_entries GROUP BY affiliate_id) l ON l.affiliate_id = a.id \
             WHERE a.pending <> COALESCE(l.p, 0) OR a.approved <> COALESCE(l.ap, 0) OR a.paid <> COALESCE(l.pd, 0)",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let d = |c: &str| r.try_get::<Decimal, _>(c);
            f.balance_mismatches.push((
                r.try_get("id")?,
                [d("pending")?, d("approved")?, d("paid")?],
                [d("lp")?, d("lap")?, d("lpd")?],
            ));
        }
        for r in sqlx::query(
            "SELECT b.id, b.points, COALESCE(r.s, 0) AS s FROM buyers b \
             LEFT JOIN (SELECT buyer_id, SUM(points) AS s FROM reward_entries GROUP BY buyer_id) r ON r.buyer_id = b.id \
             WHERE b.points <> COALESCE(r.s, 0)",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let points = |c: &str| r.try_get::<Decimal, _>(c).map_err(Into::into).and_then(points_of);
            f.points_mismatches.push((r.try_get("id")?, points("points")?, points("s")?));
        }
        for r in sqlx::query(
            "SELECT event_id, affiliate_id, kind FROM ledger_entries GROUP BY event_id, affiliate_id, kind HAVING COUNT(*) > 1",
        )
        .fetch_all(&self.pool)
        .await?
        {
            f.duplicate_entries.push((r.try_get("event_id")?, r.try_get("affiliate_id")?, r.try_get("kind")?));
        }
        for r in sqlx::query(
            "SELECT id, order_id, status, attempts FROM events \
             WHERE status IN ('pending', 'processing', 'failed') AND created_at < ? ORDER BY created_at LIMIT 1000",
        )
        .bind(stuck_before)
        .fetch_all(&self.pool)
        .await?
        {
            f.stuck_events.push((
                r.try_get("id")?,
                r.try_get("order_id")?,
                r.try_get("status")?,
                r.try_get("attempts")?,
            ));
        }
        for r in sqlx::query(
            "SELECT i.payout_id, i.affiliate_id, i.amount, COALESCE(SUM(l.amount), 0) AS entries FROM payout_items i \
             LEFT JOIN ledger_entries l ON l.payout_id = i.payout_id AND l.affiliate_id = i.affiliate_id \
             GROUP BY i.payout_id, i.affiliate_id, i.amount HAVING i.amount <> COALESCE(SUM(l.amount), 0)",
        )
        .fetch_all(&self.pool)
        .await?
        {
            f.payout_item_mismatches.push((
                r.try_get("payout_id")?,
                r.try_get("affiliate_id")?,
                r.try_get("amount")?,
                r.try_get("entries")?,
            ));
        }
        for r in sqlx::query(
            "SELECT l.id, l.affiliate_id, l.payout_id, l.status, p.status AS batch FROM ledger_entries l \
             JOIN payouts p ON p.id = l.payout_id \
             WHERE (p.status = 'completed' AND l.status <> 'paid') OR (p.status = 'open' AND l.status <> 'approved') LIMIT 1000",
        )
        .fetch_all(&self.pool)
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
        Ok(f)
    }

    pub async fn processed_orders(&self, after: &str, limit: u32) -> Result<Vec<OrderId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE commission_status = 'processed' AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(OrderId::from_trusted).collect())
    }
}
