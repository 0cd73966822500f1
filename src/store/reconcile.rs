//! `GET /admin/reconcile`: checks every SPEC §5 invariant against the record
//! and names the ids involved in each violation.
use super::{Result, Store};
use crate::domain::ids::OrderId;
use crate::domain::ledger::delta;
use crate::domain::money;
use chrono::Utc;
use rust_decimal::Decimal;
use sqlx::Row;
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Violation {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<u64>,
    pub detail: String,
}

impl Violation {
    fn new(kind: &'static str, detail: String) -> Self {
        Self { kind, affiliate_id: None, buyer_id: None, order_id: None, event_id: None, payout_id: None, detail }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Checked {
    pub affiliates: u64,
    pub buyers: u64,
    pub orders: u64,
    pub events: u64,
    pub payouts: u64,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Report {
    pub ok: bool,
    pub checked: Checked,
    pub violations: Vec<Violation>,
}

const PAGE: u32 = 500;

impl Store {
    /// `horizon`: how long an event may take, retries included, before being
    /// neither done nor dead counts as stuck.
    pub async fn reconcile(&self, horizon: Duration) -> Result<Report> {
        let mut checked = Checked::default();
        let mut v = Vec::new();

        // 1. Balances equal ledger sums by status.
        checked.affiliates =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM affiliates").fetch_one(&self.pool).await? as u64;
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
            let f = |c: &str| r.try_get::<Decimal, _>(c).map(money::format);
            let mut x = Violation::new(
                "balance_mismatch",
                format!(
                    "stored pending/approved/paid {}/{}/{} but ledger sums {}/{}/{}",
                    f("pending")?, f("approved")?, f("paid")?, f("lp")?, f("lap")?, f("lpd")?
                ),
            );
            x.affiliate_id = Some(r.try_get("id")?);
            v.push(x);
        }

        // 2. Buyer points equal reward sums.
        checked.buyers =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM buyers").fetch_one(&self.pool).await? as u64;
        for r in sqlx::query(
            "SELECT b.id, b.points, CAST(COALESCE(r.s, 0) AS SIGNED) AS s FROM buyers b \
             LEFT JOIN (SELECT buyer_id, SUM(points) AS s FROM reward_entries GROUP BY buyer_id) r ON r.buyer_id = b.id \
             WHERE b.points <> COALESCE(r.s, 0)",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let mut x = Violation::new(
                "points_mismatch",
                format!("stored {} points but reward entries sum to {}", r.try_get::<i64, _>("points")?, r.try_get::<i64, _>("s")?),
            );
            x.buyer_id = Some(r.try_get("id")?);
            v.push(x);
        }

        // 3. No event wrote two entries for one (beneficiary, kind) (also a unique key).
        for r in sqlx::query(
            "SELECT event_id, affiliate_id, kind FROM ledger_entries GROUP BY event_id, affiliate_id, kind HAVING COUNT(*) > 1",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let mut x = Violation::new("duplicate_entry", format!("two {} entries", r.try_get::<String, _>("kind")?));
            x.event_id = Some(r.try_get("event_id")?);
            x.affiliate_id = Some(r.try_get("affiliate_id")?);
            v.push(x);
        }

        // 4. For every order whose events are all done, the ledger equals the entitlement.
        let mut after = String::new();
        loop {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM orders WHERE commission_status = 'processed' AND id > ? ORDER BY id LIMIT ?",
            )
            .bind(&after)
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await?;
            for id in &ids {
                checked.orders += 1;
                let order_id = OrderId::from_trusted(id.clone());
                let Some((entitled, applied)) = self.entitlement_and_applied(&order_id).await? else { continue };
                let off = delta(&entitled, &applied);
                for line in &off.commissions {
                    let mut x = Violation::new(
                        "ledger_differs_from_entitlement",
                        format!("{} is {} away from the entitlement", line.kind.as_str(), money::format(line.amount)),
                    );
                    x.order_id = Some(id.clone());
                    x.affiliate_id = Some(line.affiliate_id.to_string());
                    v.push(x);
                }
                for line in &off.rewards {
                    let mut x = Violation::new(
                        "rewards_differ_from_entitlement",
                        format!("{} is {} points away from the entitlement", line.kind.as_str(), line.points),
                    );
                    x.order_id = Some(id.clone());
                    x.buyer_id = Some(line.buyer_id.to_string());
                    v.push(x);
                }
            }
            match ids.last() {
                Some(last) if ids.len() as u32 == PAGE => after = last.clone(),
                _ => break,
            }
        }

        // 5. No event older than the retry horizon is still open.
        checked.events =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events").fetch_one(&self.pool).await? as u64;
        let cutoff = Utc::now() - chrono::TimeDelta::from_std(horizon).unwrap_or(chrono::TimeDelta::MAX);
        for r in sqlx::query(
            "SELECT id, order_id, status, attempts FROM events \
             WHERE status IN ('pending', 'processing', 'failed') AND created_at < ? ORDER BY created_at LIMIT 1000",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?
        {
            let mut x = Violation::new(
                "event_stuck",
                format!(
                    "{} after {} attempts, older than the retry horizon",
                    r.try_get::<String, _>("status")?,
                    r.try_get::<u32, _>("attempts")?
                ),
            );
            x.event_id = Some(r.try_get("id")?);
            x.order_id = Some(r.try_get("order_id")?);
            v.push(x);
        }

        // 6. Payout batches: items equal their entries; entries' status matches the batch.
        checked.payouts =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM payouts").fetch_one(&self.pool).await? as u64;
        for r in sqlx::query(
            "SELECT i.payout_id, i.affiliate_id, i.amount, COALESCE(SUM(l.amount), 0) AS entries FROM payout_items i \
             LEFT JOIN ledger_entries l ON l.payout_id = i.payout_id AND l.affiliate_id = i.affiliate_id \
             GROUP BY i.payout_id, i.affiliate_id, i.amount HAVING i.amount <> COALESCE(SUM(l.amount), 0)",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let mut x = Violation::new(
                "payout_item_mismatch",
                format!(
                    "item {} but its entries sum to {}",
                    money::format(r.try_get("amount")?),
                    money::format(r.try_get("entries")?)
                ),
            );
            x.payout_id = Some(r.try_get("payout_id")?);
            x.affiliate_id = Some(r.try_get("affiliate_id")?);
            v.push(x);
        }
        for r in sqlx::query(
            "SELECT l.id, l.affiliate_id, l.payout_id, l.status, p.status AS batch FROM ledger_entries l \
             JOIN payouts p ON p.id = l.payout_id \
             WHERE (p.status = 'completed' AND l.status <> 'paid') OR (p.status = 'open' AND l.status <> 'approved') LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let mut x = Violation::new(
                "payout_entry_status",
                format!(
                    "entry {} is {} in a batch that is {}",
                    r.try_get::<u64, _>("id")?,
                    r.try_get::<String, _>("status")?,
                    r.try_get::<String, _>("batch")?
                ),
            );
            x.payout_id = Some(r.try_get("payout_id")?);
            x.affiliate_id = Some(r.try_get("affiliate_id")?);
            v.push(x);
        }

        Ok(Report { ok: v.is_empty(), checked, violations: v })
    }
}
