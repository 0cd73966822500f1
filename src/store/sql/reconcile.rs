//! What reconcile reads: the rows that break a stored-balance invariant.
//! Every check reads one snapshot; sums are exact (see [`super::Dialect::sum`])
//! and compared as `Decimal`s (`"1.5000"` equals `"1.5"`), never as text.
use super::{Arg, Sql, SqlStore};
use crate::store::{corrupt, Reconcile, ReconcileFacts, Result};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;

#[async_trait::async_trait]
impl Reconcile for SqlStore {
    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts> {
        let mut conn = self.snapshot().await?;
        let sum = conn.dialect().sum;
        let mut f = ReconcileFacts::default();
        for (table, slot) in [
            ("affiliates", &mut f.affiliates),
            ("buyers", &mut f.buyers),
            ("events", &mut f.events),
            ("payouts", &mut f.payouts),
        ] {
            *slot = conn.one(&Sql::new(format!("SELECT COUNT(*) AS n FROM {table}"))).await?.uint("n")?;
        }

        // Balances against ledger sums per status.
        let balances = format!(
            "SELECT a.id, a.pending, a.approved, a.paid, l.p, l.ap, l.pd FROM affiliates a LEFT JOIN \
             (SELECT affiliate_id, {}, {}, {} FROM ledger_entries GROUP BY affiliate_id) l ON l.affiliate_id = a.id \
             ORDER BY a.id",
            format_args!("{} AS p", sum("CASE WHEN status = 'pending' THEN amount END")),
            format_args!("{} AS ap", sum("CASE WHEN status = 'approved' THEN amount END")),
            format_args!("{} AS pd", sum("CASE WHEN status = 'paid' THEN amount END")),
        );
        for r in conn.fetch(&Sql::new(balances)).await? {
            let stored = [r.money("pending")?, r.money("approved")?, r.money("paid")?];
            let ledger = [r.sum("p")?, r.sum("ap")?, r.sum("pd")?];
            if stored != ledger {
                f.balance_mismatches.push((r.text("id")?, stored, ledger));
            }
        }

        // Points balances against reward sums (exact: a balance may pass i64).
        let points = format!(
            "SELECT b.id, b.points, r.s FROM buyers b LEFT JOIN \
             (SELECT buyer_id, {} AS s FROM reward_entries GROUP BY buyer_id) r ON r.buyer_id = b.id ORDER BY b.id",
            sum("points")
        );
        for r in conn.fetch(&Sql::new(points)).await? {
            let stored = r.points("points")?;
            let entries = r.sum("s")?.to_i128().ok_or_else(|| corrupt("a points sum is not whole"))?;
            if stored != entries {
                f.points_mismatches.push((r.text("id")?, stored, entries));
            }
        }

        let q = Sql::new(
            "SELECT event_id, affiliate_id, kind FROM ledger_entries GROUP BY event_id, affiliate_id, kind \
             HAVING COUNT(*) > 1",
        );
        for r in conn.fetch(&q).await? {
            f.duplicate_entries.push((r.text("event_id")?, r.text("affiliate_id")?, r.text("kind")?));
        }

        let q = Sql::new(
            "SELECT id, order_id, status, attempts FROM events \
             WHERE status IN ('pending', 'processing', 'failed') AND created_at < ? ORDER BY created_at LIMIT 1000",
        )
        .arg(Arg::Bound(stuck_before));
        for r in conn.fetch(&q).await? {
            f.stuck_events.push((
                r.text("id")?,
                r.text("order_id")?,
                r.text("status")?,
                super::small(r.as_ref(), "attempts")?,
            ));
        }

        // Each payout item against the Σ of its entries.
        let items = format!(
            "SELECT i.payout_id, i.affiliate_id, i.amount, {} AS entries FROM payout_items i \
             LEFT JOIN ledger_entries l ON l.payout_id = i.payout_id AND l.affiliate_id = i.affiliate_id \
             GROUP BY i.payout_id, i.affiliate_id, i.amount ORDER BY i.payout_id, i.affiliate_id",
            sum("l.amount")
        );
        for r in conn.fetch(&Sql::new(items)).await? {
            let (amount, entries) = (r.money("amount")?, r.sum("entries")?);
            if amount != entries {
                f.payout_item_mismatches.push((r.uint("payout_id")?, r.text("affiliate_id")?, amount, entries));
            }
        }

        let q = Sql::new(
            "SELECT l.id, l.affiliate_id, l.payout_id, l.status, p.status AS batch FROM ledger_entries l \
             JOIN payouts p ON p.id = l.payout_id \
             WHERE (p.status = 'completed' AND l.status <> 'paid') OR (p.status = 'open' AND l.status <> 'approved') \
             LIMIT 1000",
        );
        for r in conn.fetch(&q).await? {
            f.payout_entry_statuses.push((
                r.uint("id")?,
                r.text("affiliate_id")?,
                r.uint("payout_id")?,
                r.text("status")?,
                r.text("batch")?,
            ));
        }
        conn.commit().await?;
        Ok(f)
    }
}
