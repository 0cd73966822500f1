//! Applying one event: in ONE transaction lock the event and its order, resolve
//! (once) the order's context, compute the entitlement, write only the delta,
//! update balances, mark the event done (G3). A failed attempt rolls back whole.
use super::affiliates::{AffiliateStatus, MAX_TREE_DEPTH};
use super::ledger::EntryStatus;
use super::orders::{load_state, CommissionStatus};
use super::{corrupt, Result, Store};
use crate::domain::entitlement::{
    entitle, month_window, AffiliateSnapshot, CommissionKind, Entitlement, FrozenContext, RewardKind,
};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{delta, Applied, Delta};
use crate::domain::program::Program;
use crate::event::{EventId, EventStatus, EventType};
use crate::faults::Faults;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{MySql, QueryBuilder, Row, Transaction};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// What processing one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The event's delta was written (possibly empty) and it is now done.
    Applied {
        kind: EventType,
        /// Order commit → applied.
        lag: Duration,
        /// Σ written amount per commission kind (negative for reversals).
        amounts: Vec<(CommissionKind, Decimal)>,
        rows_written: usize,
    },
    /// Already done: a duplicate delivery or a replay; nothing written.
    AlreadyDone { kind: EventType },
    /// Dead or unknown: left alone.
    Skipped(&'static str),
}

impl Store {
    /// Applies one event exactly once. Safe to call any number of times, in any
    /// order, concurrently: the event and order rows are locked, and a done event
    /// is a no-op.
    pub async fn process_event(&self, id: EventId, faults: &Faults) -> Result<Outcome> {
        let mut tx = self.work.begin().await?;
        // The event and its order, both locked, in one statement.
        let Some(order) = sqlx::query(
            "SELECT e.type, e.order_id, e.status AS event_status, e.created_at AS event_created_at, \
             o.buyer_id, o.affiliate_id, o.status, o.placed_at, o.program_version, o.context, o.approve_at, o.approved_at \
             FROM events e JOIN orders o ON o.id = e.order_id WHERE e.id = ? FOR UPDATE",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Outcome::Skipped("unknown event"));
        };
        let kind = EventType::parse(order.try_get("type")?).ok_or_else(|| corrupt("event type"))?;
        match EventStatus::parse(order.try_get("event_status")?).ok_or_else(|| corrupt("event status"))? {
            EventStatus::Done => return Ok(Outcome::AlreadyDone { kind }),
            EventStatus::Dead => return Ok(Outcome::Skipped("dead event")),
            EventStatus::Pending | EventStatus::Processing | EventStatus::Failed => {}
        }
        let order_id = OrderId::from_trusted(order.try_get("order_id")?);
        tracing::Span::current().record("order_id", order_id.as_str());
        let created_at: DateTime<Utc> = order.try_get("event_created_at")?;

        let version: u64 = order.try_get("program_version")?;
        let program = self.program(version).await?;
        let buyer_id = BuyerId::from_trusted(order.try_get("buyer_id")?);
        let state = load_state(&mut tx, &order_id, buyer_id.clone(), &order).await?;

        // The context is resolved once, at first processing; before that no event
        // of this order has written anything, so there is nothing applied to read.
        let (ctx, new_context, applied) = match order.try_get::<Option<String>, _>("context")? {
            Some(json) => {
                let ctx = serde_json::from_str::<FrozenContext>(&json).map_err(corrupt)?;
                (ctx, None, load_applied(&mut tx, &order_id).await?)
            }
            None => {
                let direct = order.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted);
                let placed_at: DateTime<Utc> = order.try_get("placed_at")?;
                let ctx = resolve_context(&mut tx, &program, &order_id, &buyer_id, direct.as_ref(), placed_at).await?;
                let json = serde_json::to_string(&ctx).map_err(corrupt)?;
                (ctx, Some(json), Applied::default())
            }
        };

        let entitled = entitle(&state, &program, &ctx);
        let delta = delta(&entitled, &applied);
        let now = Utc::now();
        // Once approved, an order's entries (clawbacks included) land approved.
        let approved = order.try_get::<Option<DateTime<Utc>>, _>("approved_at")?.is_some();
        let status = if approved { EntryStatus::Approved } else { EntryStatus::Pending };
        let rows_written = write_delta(&mut tx, &delta, &order_id, id, version, status, now).await?;
        let approve_at: Option<DateTime<Utc>> = order.try_get("approve_at")?;
        if !approved && approve_at.is_some_and(|at| at <= now) {
            approve_in(&mut tx, &order_id, now).await?;
        }

        if faults.take_db_error() {
            // A genuine database error in the middle of the transaction, after the
            // ledger rows are written: G3 says none of them may survive.
            sqlx::query("SELECT * FROM komisi_injected_fault_table").execute(&mut *tx).await?;
        }

        sqlx::query(
            "UPDATE events SET status = 'done', attempts = attempts + 1, applied_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        // The commission status from every event of the order, this one now done.
        sqlx::query(&format!(
            "UPDATE orders SET commission_status = ({COMMISSION_STATUS_OF_EVENTS}), no_commission_reason = ?, \
             context = COALESCE(?, context), updated_at = ? WHERE id = ?"
        ))
        .bind(order_id.as_str())
        .bind(entitled.no_commission_reason.map(|r| r.as_str()))
        .bind(new_context)
        .bind(now)
        .bind(order_id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut amounts: BTreeMap<CommissionKind, Decimal> = BTreeMap::new();
        for line in &delta.commissions {
            *amounts.entry(line.kind).or_default() += line.amount;
        }
        Ok(Outcome::Applied {
            kind,
            lag: (Utc::now() - created_at).to_std().unwrap_or_default(),
            amounts: amounts.into_iter().collect(),
            rows_written,
        })
    }
}

impl Store {
    /// Approves the orders whose holding period has passed (the durable
    /// schedule is `orders.approve_at`), each in its own transaction. Returns
    /// how many were approved.
    pub async fn approve_due(&self, limit: u32) -> Result<usize> {
        let now = Utc::now();
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE approved_at IS NULL AND approve_at <= ? ORDER BY approve_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.work)
        .await?;
        let mut approved = 0;
        for id in due {
            let mut tx = self.work.begin().await?;
            let still_due: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM orders WHERE id = ? AND approved_at IS NULL AND approve_at <= ? FOR UPDATE",
            )
            .bind(&id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if still_due.is_some() {
                approve_in(&mut tx, &OrderId::from_trusted(id), now).await?;
                approved += 1;
            }
            tx.commit().await?;
        }
        Ok(approved)
    }
}

/// Moves an order's pending entries to approved, balances with them, and marks
/// the order approved. The caller holds the order row lock.
async fn approve_in(tx: &mut Transaction<'_, MySql>, order_id: &OrderId, now: DateTime<Utc>) -> Result<()> {
    let sums = sqlx::query(
        "SELECT affiliate_id, SUM(amount) AS amount FROM ledger_entries WHERE order_id = ? AND status = 'pending' \
         GROUP BY affiliate_id ORDER BY affiliate_id",
    )
    .bind(order_id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("UPDATE ledger_entries SET status = 'approved' WHERE order_id = ? AND status = 'pending'")
        .bind(order_id.as_str())
        .execute(&mut **tx)
        .await?;
    for r in sums {
        let amount: Decimal = r.try_get("amount")?;
        let affiliate: String = r.try_get("affiliate_id")?;
        sqlx::query("UPDATE affiliates SET pending = pending - ?, approved = approved + ? WHERE id = ?")
            .bind(amount)
            .bind(amount)
            .bind(affiliate)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE orders SET approved_at = ?, updated_at = ? WHERE id = ?")
        .bind(now)
        .bind(now)
        .bind(order_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// SQL for an order's commission status from its events' statuses (one bind:
/// the order id); the same rule as `CommissionStatus::of`.
const COMMISSION_STATUS_OF_EVENTS: &str = "SELECT CASE WHEN SUM(status = 'dead') > 0 THEN 'dead' \
     WHEN SUM(status = 'failed') > 0 THEN 'failed' \
     WHEN SUM(status IN ('pending', 'processing')) > 0 THEN 'pending' ELSE 'processed' END \
     FROM events WHERE order_id = ?";

/// The order's commission status from the statuses of all its events (this
/// transaction's own update included).
pub(super) async fn order_commission_status(
    tx: &mut Transaction<'_, MySql>,
    order_id: &OrderId,
) -> Result<CommissionStatus> {
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM events WHERE order_id = ?")
        .bind(order_id.as_str())
        .fetch_all(&mut **tx)
        .await?;
    let parsed = statuses
        .iter()
        .map(|s| EventStatus::parse(s).ok_or_else(|| corrupt("event status")))
        .collect::<Result<Vec<_>>>()?;
    Ok(CommissionStatus::of(parsed))
}

/// Resolves what the rules need from outside the order, once, at first processing.
async fn resolve_context(
    tx: &mut Transaction<'_, MySql>,
    program: &Program,
    order_id: &OrderId,
    buyer_id: &BuyerId,
    direct: Option<&AffiliateId>,
    placed_at: DateTime<Utc>,
) -> Result<FrozenContext> {
    let direct = match direct {
        // The direct affiliate and its ancestors, nearest first, in one query: a
        // few more than the levels, in case some are suspended and skipped.
        Some(id) => ancestors(tx, id, program.levels.len() + 4).await?,
        None => Vec::new(),
    };
    let mut chain = direct.into_iter();
    let Some(direct) = chain.next() else {
        let buyer_first_order: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ? AND (placed_at < ? OR (placed_at = ? AND id < ?)))",
        )
        .bind(buyer_id.as_str())
        .bind(placed_at)
        .bind(placed_at)
        .bind(order_id.as_str())
        .fetch_one(&mut **tx)
        .await?;
        return Ok(FrozenContext {
            direct: None,
            upline: Vec::new(),
            volume_before: Decimal::ZERO,
            nth_in_month: 0,
            buyer_first_order,
        });
    };

    // Walk up until every level 2..n can be filled (skipping suspended
    // ancestors when the program says so), or the root is reached.
    let wanted = program.levels.len().saturating_sub(1);
    let mut upline = Vec::new();
    let mut seen = HashSet::from([direct.id.clone()]);
    let mut filled = 0;
    let mut fetched: Vec<_> = chain.collect();
    let mut asked = program.levels.len() + 3;
    let mut cursor = direct.parent_id.clone();
    loop {
        // Fewer rows than asked for: the walk reached the root.
        let reached_end = fetched.len() < asked;
        for ancestor in fetched.drain(..) {
            if filled >= wanted || upline.len() >= MAX_TREE_DEPTH || !seen.insert(ancestor.id.clone()) {
                cursor = None;
                break;
            }
            let suspended = ancestor.status == AffiliateStatus::Suspended;
            if !suspended || !program.skip_inactive_upline {
                filled += 1;
            }
            cursor = ancestor.parent_id.clone();
            upline.push(AffiliateSnapshot { id: ancestor.id, suspended, buyer_id: ancestor.buyer_id });
        }
        match &cursor {
            // Many suspended ancestors in a row: fetch the next stretch.
            Some(next) if !reached_end && filled < wanted => {
                asked = wanted - filled + 4;
                fetched = ancestors(tx, next, asked).await?;
            }
            _ => break,
        }
    }

    // Rules 4, 5 and 8 in one round trip: the affiliate's earlier orders this
    // month (program timezone; ties by id), and whether the buyer ordered before.
    let (start, _end) = month_window(placed_at, program.timezone);
    let earlier = "affiliate_id = ? AND placed_at >= ? AND (placed_at < ? OR (placed_at = ? AND id < ?))";
    let month = sqlx::query(&format!(
        "SELECT NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ? AND (placed_at < ? OR (placed_at = ? AND id < ?))) \
           AS first_order, \
         (SELECT COALESCE(SUM(original_eligible), 0) FROM orders WHERE {earlier}) AS volume, \
         (SELECT COUNT(*) FROM orders WHERE {earlier}) AS n"
    ))
    .bind(buyer_id.as_str())
    .bind(placed_at)
    .bind(placed_at)
    .bind(order_id.as_str())
    .bind(direct.id.as_str())
    .bind(start)
    .bind(placed_at)
    .bind(placed_at)
    .bind(order_id.as_str())
    .bind(direct.id.as_str())
    .bind(start)
    .bind(placed_at)
    .bind(placed_at)
    .bind(order_id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let earlier: i64 = month.try_get("n")?;
    let buyer_first_order: bool = month.try_get("first_order")?;

    Ok(FrozenContext {
        direct: Some(AffiliateSnapshot {
            suspended: direct.status == AffiliateStatus::Suspended,
            id: direct.id,
            buyer_id: direct.buyer_id,
        }),
        upline,
        volume_before: month.try_get("volume")?,
        nth_in_month: u32::try_from(earlier + 1).map_err(corrupt)?,
        buyer_first_order,
    })
}

/// `first` and up to `count − 1` of its ancestors, nearest first, in one query.
async fn ancestors(
    tx: &mut Transaction<'_, MySql>,
    first: &AffiliateId,
    count: usize,
) -> Result<Vec<super::affiliates::Affiliate>> {
    let rows = sqlx::query(
        "WITH RECURSIVE chain (id, parent_id, depth) AS ( \
           SELECT id, parent_id, 0 FROM affiliates WHERE id = ? \
           UNION ALL \
           SELECT a.id, a.parent_id, c.depth + 1 FROM affiliates a JOIN chain c ON a.id = c.parent_id WHERE c.depth + 1 < ? \
         ) SELECT c.depth, a.id, a.name, a.parent_id, a.referral_code, a.buyer_id, a.status, a.pending, a.approved, \
           a.paid, a.created_at FROM chain c JOIN affiliates a ON a.id = c.id ORDER BY c.depth",
    )
    .bind(first.as_str())
    .bind(count as u64)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(super::affiliates::from_row).collect()
}

async fn load_applied(tx: &mut Transaction<'_, MySql>, order_id: &OrderId) -> Result<Applied> {
    let mut applied = Applied::default();
    let rows = sqlx::query(
        "SELECT affiliate_id, kind, MAX(level) AS level, SUM(amount) AS amount FROM ledger_entries \
         WHERE order_id = ? GROUP BY affiliate_id, kind",
    )
    .bind(order_id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let kind = CommissionKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("ledger kind"))?;
        applied.commissions.insert(
            (AffiliateId::from_trusted(r.try_get("affiliate_id")?), kind),
            (r.try_get("level")?, r.try_get("amount")?),
        );
    }
    let rows = sqlx::query(
        "SELECT buyer_id, kind, CAST(SUM(points) AS SIGNED) AS points FROM reward_entries \
         WHERE order_id = ? GROUP BY buyer_id, kind",
    )
    .bind(order_id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let kind = RewardKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("reward kind"))?;
        applied.rewards.insert((BuyerId::from_trusted(r.try_get("buyer_id")?), kind), r.try_get("points")?);
    }
    Ok(applied)
}

/// Writes a delta's rows and moves balances by the same amounts. Balance rows
/// are locked in id order, so concurrent events sharing uplines cannot deadlock.
async fn write_delta(
    tx: &mut Transaction<'_, MySql>,
    delta: &Delta,
    order_id: &OrderId,
    event_id: EventId,
    version: u64,
    status: EntryStatus,
    now: DateTime<Utc>,
) -> Result<usize> {
    let event_id = event_id.to_string();
    if !delta.commissions.is_empty() {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO ledger_entries (affiliate_id, order_id, event_id, level, kind, amount, status, rule_version, created_at) ",
        );
        q.push_values(&delta.commissions, |mut b, line| {
            b.push_bind(line.affiliate_id.as_str())
                .push_bind(order_id.as_str())
                .push_bind(&event_id)
                .push_bind(line.level)
                .push_bind(line.kind.as_str())
                .push_bind(line.amount)
                .push_bind(status.as_str())
                .push_bind(version)
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;

        let mut by_affiliate: BTreeMap<&str, Decimal> = BTreeMap::new();
        for line in &delta.commissions {
            *by_affiliate.entry(line.affiliate_id.as_str()).or_default() += line.amount;
        }
        let column = match status {
            EntryStatus::Pending => "pending",
            EntryStatus::Approved => "approved",
            EntryStatus::Paid => "paid",
        };
        // One statement for every balance; InnoDB locks the rows in primary-key
        // order, the same order for every event, so events sharing uplines queue
        // instead of deadlocking.
        let mut q = QueryBuilder::<MySql>::new(format!("UPDATE affiliates SET {column} = {column} + CASE id"));
        for (affiliate, amount) in &by_affiliate {
            q.push(" WHEN ").push_bind(*affiliate).push(" THEN ").push_bind(*amount);
        }
        q.push(" END WHERE id IN (");
        let mut ids = q.separated(", ");
        for affiliate in by_affiliate.keys() {
            ids.push_bind(*affiliate);
        }
        q.push(")");
        let done = q.build().execute(&mut **tx).await?;
        if done.rows_affected() != by_affiliate.len() as u64 {
            return Err(corrupt(format!("balance rows missing for some of {:?}", by_affiliate.keys())));
        }
    }
    if !delta.rewards.is_empty() {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at) ",
        );
        q.push_values(&delta.rewards, |mut b, line| {
            b.push_bind(line.buyer_id.as_str())
                .push_bind(order_id.as_str())
                .push_bind(&event_id)
                .push_bind(line.kind.as_str())
                .push_bind(line.points)
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
        let mut by_buyer: BTreeMap<&str, i64> = BTreeMap::new();
        for line in &delta.rewards {
            *by_buyer.entry(line.buyer_id.as_str()).or_default() += line.points;
        }
        for (buyer, points) in by_buyer {
            sqlx::query(
                "INSERT INTO buyers (id, points, updated_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE points = points + VALUES(points), updated_at = VALUES(updated_at)",
            )
            .bind(buyer)
            .bind(points)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(delta.commissions.len() + delta.rewards.len())
}

impl Store {
    /// The entitlement of an order's current state and what its ledger holds,
    /// read under a shared lock on the order; None when the order has not been
    /// processed yet (its context is not resolved).
    pub async fn entitlement_and_applied(&self, order_id: &OrderId) -> Result<Option<(Entitlement, Applied)>> {
        let mut tx = self.pool.begin().await?;
        let Some(order) = sqlx::query(
            "SELECT buyer_id, status, program_version, context FROM orders WHERE id = ? LOCK IN SHARE MODE",
        )
        .bind(order_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let Some(context) = order.try_get::<Option<String>, _>("context")? else {
            return Ok(None);
        };
        let ctx: FrozenContext = serde_json::from_str(&context).map_err(corrupt)?;
        let program = self.program(order.try_get("program_version")?).await?;
        let state = load_state(&mut tx, order_id, BuyerId::from_trusted(order.try_get("buyer_id")?), &order).await?;
        let applied = load_applied(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(Some((entitle(&state, &program, &ctx), applied)))
    }
}
