//! The event transaction on MySQL: the reads the rules need and the writes
//! the engine decided, each with as few statements as possible for a whole
//! batch of events (one per kind of read or write, not one per event).
use super::lifecycle::parse_statuses;
use super::orders::load_items;
use super::{parse_event_id, parse_event_status, parse_event_type, parse_order_status, push_list, MySqlStore};
use crate::domain::affiliate::Affiliate;
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::event::EventId;
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{Applied, EntryStatus};
use crate::domain::order::OrderItem;
use crate::domain::program::Program;
use crate::store::month::{Between, MonthPlan};
use crate::store::{corrupt, ApplyTx, Fence, LockedEvent, MonthAsk, MonthFacts, Result, Writes};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{MySql, QueryBuilder, Row, Transaction};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) struct MySqlApply {
    pub(super) store: MySqlStore,
    pub(super) tx: Transaction<'static, MySql>,
}

#[async_trait::async_trait]
impl ApplyTx for MySqlApply {
    async fn fence(&mut self, fences: &[Fence]) -> Result<bool> {
        if fences.is_empty() {
            return Ok(true);
        }
        let mut q = QueryBuilder::<MySql>::new("SELECT part, token FROM journal_fences WHERE part IN (");
        push_list(&mut q, fences.iter().map(|f| f.part));
        q.push(") LOCK IN SHARE MODE");
        let current: HashMap<u16, u64> =
            q.build_query_as::<(u16, u64)>().fetch_all(&mut *self.tx).await?.into_iter().collect();
        Ok(fences.iter().all(|f| current.get(&f.part) == Some(&f.token)))
    }

    async fn lock(&mut self, ids: &[EventId]) -> Result<Vec<LockedEvent>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The events and their orders, all locked, in one statement; with the
        // statuses of each order's other events (the order's lock keeps them
        // from being changed by another event's transaction meanwhile).
        let mut q = QueryBuilder::<MySql>::new(
            "SELECT e.id AS event_id, e.type, e.order_id, e.status AS event_status, e.created_at AS event_created_at, \
             (SELECT GROUP_CONCAT(s.status) FROM events s WHERE s.order_id = e.order_id AND s.id <> e.id) AS siblings, \
             o.buyer_id, o.affiliate_id, o.status, o.placed_at, o.program_version, o.context, o.approve_at, \
             o.approved_at FROM events e JOIN orders o ON o.id = e.order_id WHERE e.id IN (",
        );
        push_list(&mut q, ids.iter().map(|id| id.to_string()));
        q.push(") FOR UPDATE");
        let mut locked = Vec::with_capacity(ids.len());
        for row in q.build().fetch_all(&mut *self.tx).await? {
            locked.push(LockedEvent {
                id: parse_event_id(row.try_get("event_id")?)?,
                kind: parse_event_type(row.try_get("type")?)?,
                status: parse_event_status(row.try_get("event_status")?)?,
                siblings: parse_statuses(row.try_get("siblings")?)?,
                order_id: OrderId::from_trusted(row.try_get("order_id")?),
                created_at: row.try_get("event_created_at")?,
                program_version: row.try_get("program_version")?,
                buyer_id: BuyerId::from_trusted(row.try_get("buyer_id")?),
                direct: row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted),
                placed_at: row.try_get("placed_at")?,
                order_status: parse_order_status(row.try_get("status")?)?,
                context: row.try_get("context")?,
                approve_at: row.try_get("approve_at")?,
                approved: row.try_get::<Option<DateTime<Utc>>, _>("approved_at")?.is_some(),
            });
        }
        Ok(locked)
    }

    async fn program(&mut self, version: u64) -> Result<Arc<Program>> {
        self.store.program_in(&mut self.tx, version).await
    }

    async fn items(&mut self, orders: &[&OrderId]) -> Result<HashMap<OrderId, Vec<OrderItem>>> {
        load_items(&mut *self.tx, orders).await
    }

    async fn applied(&mut self, orders: &[&OrderId]) -> Result<HashMap<OrderId, Applied>> {
        load_applied(&mut self.tx, orders).await
    }

    async fn ancestors(
        &mut self,
        firsts: &[&AffiliateId],
        count: usize,
    ) -> Result<HashMap<AffiliateId, Vec<Affiliate>>> {
        ancestors(&mut self.tx, firsts, count).await
    }

    async fn month_facts(&mut self, asks: &[MonthAsk<'_>]) -> Result<HashMap<OrderId, MonthFacts>> {
        let mut facts = HashMap::with_capacity(asks.len());
        if asks.is_empty() {
            return Ok(facts);
        }
        // Asks of one affiliate and month (a hot affiliate's run) share one
        // aggregate (see `MonthPlan`): a run costs one scan of the month.
        let plan = MonthPlan::new(asks);
        // Rules 4, 5 and 8 in one round trip: per ask whether the buyer ordered
        // before ('f' rows; with the month aggregate for the first ask of its
        // group, read from ix_orders_affiliate_placed alone, which carries
        // original_eligible), and per group of several asks the orders placed
        // from its first ask up to its last ('r' rows).
        let mut q = QueryBuilder::<MySql>::new("");
        for (i, ask) in asks.iter().enumerate() {
            if i > 0 {
                q.push(" UNION ALL ");
            }
            q.push("SELECT 'f' AS kind, ").push_bind(ask.order_id.as_str());
            q.push(" AS order_id, NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ").push_bind(ask.buyer_id.as_str());
            push_placed_before(&mut q, ask);
            q.push(") AS first_order, COALESCE(SUM(original_eligible), 0) AS volume, COUNT(*) AS n, ");
            q.push("NULL AS placed_at, NULL AS id FROM orders WHERE affiliate_id = ");
            q.push_bind(plan.aggregate_of(ask).map(|a| a.as_str()))
                .push(" AND placed_at >= ")
                .push_bind(ask.month_start);
            push_placed_before(&mut q, ask);
        }
        for (first, last) in plan.ranges() {
            q.push(" UNION ALL SELECT 'r', ").push_bind(first.order_id.as_str());
            q.push(", NULL, original_eligible, 1, placed_at, id FROM orders WHERE affiliate_id = ");
            q.push_bind(first.direct.map(|a| a.as_str()));
            // From the first ask (included) to the last (excluded).
            q.push(" AND (placed_at > ").push_bind(first.placed_at);
            q.push(" OR (placed_at = ")
                .push_bind(first.placed_at)
                .push(" AND id >= ")
                .push_bind(first.order_id.as_str());
            q.push("))");
            push_placed_before(&mut q, last);
        }
        let mut between: HashMap<String, Vec<Between>> = HashMap::new();
        for row in q.build().fetch_all(&mut *self.tx).await? {
            let order_id: String = row.try_get("order_id")?;
            if row.try_get::<String, _>("kind")? == "r" {
                between.entry(order_id).or_default().push((
                    row.try_get("placed_at")?,
                    row.try_get("id")?,
                    row.try_get("volume")?,
                ));
                continue;
            }
            let earlier: i64 = row.try_get("n")?;
            facts.insert(
                OrderId::from_trusted(order_id),
                MonthFacts {
                    buyer_first_order: row.try_get("first_order")?,
                    volume_before: row.try_get("volume")?,
                    earlier: u64::try_from(earlier).map_err(corrupt)?,
                },
            );
        }
        plan.finish(facts, between)
    }

    async fn write(&mut self, w: &Writes, now: DateTime<Utc>) -> Result<()> {
        // Buyers' rows first: a buyer's reward entries are written only under
        // the lock of its row, so their ids are in commit order (the wallet
        // replays them in that order).
        move_points(&mut self.tx, w, now).await?;
        insert_rows(&mut self.tx, w, now).await?;
        for order_id in &w.approve {
            approve_in(&mut self.tx, order_id, now).await?;
        }
        if !w.done.is_empty() {
            let mut q =
                QueryBuilder::<MySql>::new("UPDATE events SET status = 'done', attempts = attempts + 1, applied_at = ");
            q.push_bind(now).push(", updated_at = ").push_bind(now);
            if let Some(by) = &w.applied_by {
                q.push(", applied_by = ").push_bind(by.to_string());
            }
            if !w.fences.is_empty() {
                // Each event's own token: a batch spans partitions.
                q.push(", applied_fence = CASE id");
                for (id, token) in &w.fences {
                    q.push(" WHEN ").push_bind(id.to_string()).push(" THEN ").push_bind(*token);
                }
                q.push(" END");
            }
            q.push(" WHERE id IN (");
            push_list(&mut q, w.done.iter().map(|id| id.to_string()));
            q.push(")");
            q.build().execute(&mut *self.tx).await?;
        }
        update_orders(&mut self.tx, w, now).await?;
        // Last, so the most contended rows (uplines' balances) are held the shortest.
        move_balances(&mut self.tx, w).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// ` AND (placed_at < ? OR (placed_at = ? AND id < ?))`: orders placed before
/// the asking order (ties by id).
fn push_placed_before<'a>(q: &mut QueryBuilder<'a, MySql>, ask: &MonthAsk<'a>) {
    q.push(" AND (placed_at < ").push_bind(ask.placed_at);
    q.push(" OR (placed_at = ").push_bind(ask.placed_at).push(" AND id < ").push_bind(ask.order_id.as_str());
    q.push("))");
}

/// What the ledger holds for each of these orders (none: nothing read).
pub(super) async fn load_applied(
    tx: &mut Transaction<'_, MySql>,
    orders: &[&OrderId],
) -> Result<HashMap<OrderId, Applied>> {
    let mut applied: HashMap<OrderId, Applied> = HashMap::with_capacity(orders.len());
    if orders.is_empty() {
        return Ok(applied);
    }
    let mut q = QueryBuilder::<MySql>::new(
        "SELECT order_id, affiliate_id, kind, MAX(level) AS level, SUM(amount) AS amount FROM ledger_entries \
         WHERE order_id IN (",
    );
    push_list(&mut q, orders.iter().map(|o| o.as_str()));
    q.push(") GROUP BY order_id, affiliate_id, kind");
    for r in q.build().fetch_all(&mut **tx).await? {
        let kind = CommissionKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("ledger kind"))?;
        applied.entry(OrderId::from_trusted(r.try_get("order_id")?)).or_default().commissions.insert(
            (AffiliateId::from_trusted(r.try_get("affiliate_id")?), kind),
            (r.try_get("level")?, r.try_get("amount")?),
        );
    }
    let mut q = QueryBuilder::<MySql>::new(
        "SELECT order_id, buyer_id, kind, CAST(SUM(points) AS SIGNED) AS points FROM reward_entries \
         WHERE order_id IN (",
    );
    push_list(&mut q, orders.iter().map(|o| o.as_str()));
    q.push(") GROUP BY order_id, buyer_id, kind");
    for r in q.build().fetch_all(&mut **tx).await? {
        let kind = RewardKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("reward kind"))?;
        applied
            .entry(OrderId::from_trusted(r.try_get("order_id")?))
            .or_default()
            .rewards
            .insert((BuyerId::from_trusted(r.try_get("buyer_id")?), kind), r.try_get("points")?);
    }
    Ok(applied)
}

/// Each of `firsts` and up to `count − 1` of its ancestors, nearest first, in
/// one query, keyed by the first's id.
async fn ancestors(
    tx: &mut Transaction<'_, MySql>,
    firsts: &[&AffiliateId],
    count: usize,
) -> Result<HashMap<AffiliateId, Vec<Affiliate>>> {
    let mut chains: HashMap<AffiliateId, Vec<Affiliate>> = HashMap::with_capacity(firsts.len());
    if firsts.is_empty() {
        return Ok(chains);
    }
    let mut q = QueryBuilder::<MySql>::new(
        "WITH RECURSIVE chain (first, id, parent_id, depth) AS ( \
           SELECT id, id, parent_id, 0 FROM affiliates WHERE id IN (",
    );
    push_list(&mut q, firsts.iter().map(|a| a.as_str()));
    q.push(
        ") UNION ALL \
           SELECT c.first, a.id, a.parent_id, c.depth + 1 FROM affiliates a JOIN chain c ON a.id = c.parent_id \
           WHERE c.depth + 1 < ",
    );
    q.push_bind(count as u64);
    q.push(
        " ) SELECT c.first, c.depth, a.id, a.name, a.parent_id, a.referral_code, a.buyer_id, a.status, a.pending, \
           a.approved, a.paid, a.created_at FROM chain c JOIN affiliates a ON a.id = c.id ORDER BY c.first, c.depth",
    );
    for row in q.build().fetch_all(&mut **tx).await? {
        chains
            .entry(AffiliateId::from_trusted(row.try_get("first")?))
            .or_default()
            .push(super::affiliates::from_row(&row)?);
    }
    Ok(chains)
}

/// Inserts the ledger and reward rows.
async fn insert_rows(tx: &mut Transaction<'_, MySql>, w: &Writes, now: DateTime<Utc>) -> Result<()> {
    if !w.ledger.is_empty() {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO ledger_entries (affiliate_id, order_id, event_id, level, kind, amount, status, \
             rule_version, created_at) ",
        );
        q.push_values(&w.ledger, |mut b, row| {
            b.push_bind(row.affiliate_id.as_str())
                .push_bind(row.order_id.as_str())
                .push_bind(row.event_id.to_string())
                .push_bind(row.level)
                .push_bind(row.kind.as_str())
                .push_bind(row.amount)
                .push_bind(row.status.as_str())
                .push_bind(row.rule_version)
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
    }
    if !w.rewards.is_empty() {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at, expires_at) ",
        );
        q.push_values(&w.rewards, |mut b, row| {
            b.push_bind(row.buyer_id.as_str())
                .push_bind(row.order_id.as_str())
                .push_bind(row.event_id.to_string())
                .push_bind(row.kind.as_str())
                .push_bind(row.points)
                .push_bind(now)
                .push_bind(row.expires_at);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Moves buyers' points by the queued amounts in one statement, and moves
/// each buyer's expiry due time to its new lots' expiry when that is sooner.
async fn move_points(tx: &mut Transaction<'_, MySql>, w: &Writes, now: DateTime<Utc>) -> Result<()> {
    if w.points.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<MySql>::new("INSERT INTO buyers (id, points, updated_at, expire_due_at) ");
    q.push_values(&w.points, |mut b, (buyer, points)| {
        b.push_bind(buyer.as_str()).push_bind(*points).push_bind(now).push_bind(w.expiries.get(buyer).copied());
    });
    q.push(
        " ON DUPLICATE KEY UPDATE points = points + VALUES(points), updated_at = VALUES(updated_at),          expire_due_at = CASE WHEN VALUES(expire_due_at) IS NULL THEN expire_due_at            WHEN expire_due_at IS NULL THEN VALUES(expire_due_at)            ELSE LEAST(expire_due_at, VALUES(expire_due_at)) END",
    );
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// Moves affiliates' balances by the queued amounts, in one statement.
/// InnoDB locks the rows in primary-key order, the same order in every
/// transaction, so transactions sharing uplines queue instead of deadlocking.
async fn move_balances(tx: &mut Transaction<'_, MySql>, w: &Writes) -> Result<()> {
    if w.balances.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<MySql>::new("UPDATE affiliates SET ");
    let mut first = true;
    for status in [EntryStatus::Pending, EntryStatus::Approved, EntryStatus::Paid] {
        let column = status.as_str();
        let moves: Vec<_> =
            w.balances.iter().filter_map(|(id, by)| by.get(&status).map(|amount| (id, *amount))).collect();
        if moves.is_empty() {
            continue;
        }
        if !std::mem::take(&mut first) {
            q.push(", ");
        }
        q.push(format!("{column} = {column} + CASE id"));
        for (id, amount) in moves {
            q.push(" WHEN ").push_bind(id.as_str()).push(" THEN ").push_bind(amount);
        }
        q.push(" ELSE 0 END");
    }
    q.push(" WHERE id IN (");
    push_list(&mut q, w.balances.keys().map(|id| id.as_str()));
    q.push(")");
    let done = q.build().execute(&mut **tx).await?;
    if done.rows_affected() != w.balances.len() as u64 {
        return Err(corrupt(format!("balance rows missing for some of {:?}", w.balances.keys())));
    }
    Ok(())
}

/// Updates the orders in one statement: commission status, reason, and the
/// context resolved now.
async fn update_orders(tx: &mut Transaction<'_, MySql>, w: &Writes, now: DateTime<Utc>) -> Result<()> {
    if w.orders.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<MySql>::new("UPDATE orders SET commission_status = CASE id");
    for u in &w.orders {
        q.push(" WHEN ").push_bind(u.order_id.as_str()).push(" THEN ").push_bind(u.commission_status.as_str());
    }
    q.push(" END, no_commission_reason = CASE id");
    for u in &w.orders {
        q.push(" WHEN ").push_bind(u.order_id.as_str()).push(" THEN ").push_bind(u.no_commission_reason);
    }
    q.push(" END, context = COALESCE(CASE id");
    for u in &w.orders {
        q.push(" WHEN ").push_bind(u.order_id.as_str()).push(" THEN ").push_bind(u.context.as_deref());
    }
    q.push(" END, context), updated_at = ").push_bind(now).push(" WHERE id IN (");
    push_list(&mut q, w.orders.iter().map(|u| u.order_id.as_str()));
    q.push(")");
    q.build().execute(&mut **tx).await?;
    Ok(())
}

impl MySqlStore {
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
