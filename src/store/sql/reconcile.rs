//! What reconcile reads: the rows that break a stored-balance invariant.
//! Every check reads one snapshot; sums are exact (see [`super::Dialect::sum`])
//! and compared as `Decimal`s (`"1.5000"` equals `"1.5"`), never as text.
use super::{rows, Arg, Conn, Sql, SqlStore};
use crate::store::{corrupt, Reconcile, ReconcileFacts, Result};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

#[async_trait::async_trait]
impl Reconcile for SqlStore {
    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts> {
        let mut conn = self.snapshot().await?;
        let c = conn.as_mut();
        let mut f = ReconcileFacts::default();
        for (table, slot) in [
            ("affiliates", &mut f.affiliates),
            ("buyers", &mut f.buyers),
            ("events", &mut f.events),
            ("payouts", &mut f.payouts),
        ] {
            *slot = c.one(&Sql::new(format!("SELECT COUNT(*) AS n FROM {table}"))).await?.uint("n")?;
        }
        f.balance_mismatches = balance_mismatches(c).await?;
        f.points_mismatches = points_mismatches(c).await?;
        let q = Sql::new(
            "SELECT event_id, affiliate_id, kind FROM ledger_entries GROUP BY event_id, affiliate_id, kind \
             HAVING COUNT(*) > 1",
        );
        for r in c.fetch(&q).await? {
            f.duplicate_entries.push((r.text("event_id")?, r.text("affiliate_id")?, r.text("kind")?));
        }
        let q = Sql::new(
            "SELECT id, order_id, status, attempts FROM events \
             WHERE status IN ('pending', 'processing', 'failed') AND created_at < ? ORDER BY created_at LIMIT 1000",
        )
        .arg(Arg::Bound(stuck_before));
        for r in c.fetch(&q).await? {
            f.stuck_events.push((
                r.text("id")?,
                r.text("order_id")?,
                r.text("status")?,
                super::small(r.as_ref(), "attempts")?,
            ));
        }
        f.payout_item_mismatches = payout_item_mismatches(c).await?;
        f.payout_entry_statuses = payout_entry_statuses(c).await?;
        conn.commit().await?;
        Ok(f)
    }
}

/// Balances against ledger sums per status.
async fn balance_mismatches(c: &mut dyn Conn) -> Result<Vec<(String, [Decimal; 3], [Decimal; 3])>> {
    let sum = c.dialect().sum;
    let q = format!(
        "SELECT a.id, a.pending, a.approved, a.paid, l.p, l.ap, l.pd FROM affiliates a LEFT JOIN \
         (SELECT affiliate_id, {} AS p, {} AS ap, {} AS pd FROM ledger_entries GROUP BY affiliate_id) l \
         ON l.affiliate_id = a.id ORDER BY a.id",
        sum("CASE WHEN status = 'pending' THEN amount END"),
        sum("CASE WHEN status = 'approved' THEN amount END"),
        sum("CASE WHEN status = 'paid' THEN amount END"),
    );
    let mut found = Vec::new();
    for r in c.fetch(&Sql::new(q)).await? {
        let stored = [r.money("pending")?, r.money("approved")?, r.money("paid")?];
        let ledger = [r.sum("p")?, r.sum("ap")?, r.sum("pd")?];
        if stored != ledger {
            found.push((r.text("id")?, stored, ledger));
        }
    }
    Ok(found)
}

/// Points balances against reward sums (exact: a balance may pass i64).
async fn points_mismatches(c: &mut dyn Conn) -> Result<Vec<(String, i128, i128)>> {
    let q = format!(
        "SELECT b.id, b.points, r.s FROM buyers b LEFT JOIN \
         (SELECT buyer_id, {} AS s FROM reward_entries GROUP BY buyer_id) r ON r.buyer_id = b.id ORDER BY b.id",
        (c.dialect().sum)("points")
    );
    let mut found = Vec::new();
    for r in c.fetch(&Sql::new(q)).await? {
        let stored = r.points("points")?;
        let entries = r.sum("s")?.to_i128().ok_or_else(|| corrupt("a points sum is not whole"))?;
        if stored != entries {
            found.push((r.text("id")?, stored, entries));
        }
    }
    Ok(found)
}

/// Each payout item against the Σ of its entries.
async fn payout_item_mismatches(c: &mut dyn Conn) -> Result<Vec<(u64, String, Decimal, Decimal)>> {
    let q = format!(
        "SELECT i.payout_id, i.affiliate_id, i.amount, {} AS entries FROM payout_items i \
         LEFT JOIN ledger_entries l ON l.payout_id = i.payout_id AND l.affiliate_id = i.affiliate_id \
         GROUP BY i.payout_id, i.affiliate_id, i.amount ORDER BY i.payout_id, i.affiliate_id",
        (c.dialect().sum)("l.amount")
    );
    let mut found = Vec::new();
    for r in c.fetch(&Sql::new(q)).await? {
        let (amount, entries) = (r.money("amount")?, r.sum("entries")?);
        if amount != entries {
            found.push((r.uint("payout_id")?, r.text("affiliate_id")?, amount, entries));
        }
    }
    Ok(found)
}

/// Entries whose status disagrees with their batch's (paid in a completed
/// batch, approved in an open one).
async fn payout_entry_statuses(c: &mut dyn Conn) -> Result<Vec<(u64, String, u64, String, String)>> {
    let q = Sql::new(
        "SELECT l.id, l.affiliate_id, l.payout_id, l.status, p.status AS batch FROM ledger_entries l \
         JOIN payouts p ON p.id = l.payout_id \
         WHERE (p.status = 'completed' AND l.status <> 'paid') OR (p.status = 'open' AND l.status <> 'approved') \
         LIMIT 1000",
    );
    rows::all(&c.fetch(&q).await?, |r| {
        Ok((r.uint("id")?, r.text("affiliate_id")?, r.uint("payout_id")?, r.text("status")?, r.text("batch")?))
    })
}
