//! The event transaction on SQLite: the reads the rules need and the writes
//! the engine decided. It runs on the single writer (`BEGIN IMMEDIATE`), so
//! nothing else writes meanwhile and no row needs a lock. Money is read as
//! text and added here, in `Decimal`s: never in SQL.
use super::codec::{add_money, decode_points, encode_money, encode_points, encode_time, money, time};
use super::orders::load_items;
use super::{
    int, parse_event_id, parse_event_status, parse_event_type, parse_order_status, parse_statuses, push_list,
    rows_per_insert, SqliteStore, IN_CHUNK,
};
use crate::domain::affiliate::Affiliate;
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::event::EventId;
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{Applied, EntryStatus};
use crate::domain::order::OrderItem;
use crate::domain::program::Program;
use crate::store::month::{Between, MonthPlan};
use crate::store::{corrupt, ApplyTx, LockedEvent, MonthAsk, MonthFacts, Result, Writes};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(super) struct SqliteApply {
    pub(super) store: SqliteStore,
    pub(super) tx: Transaction<'static, Sqlite>,
}

#[async_trait::async_trait]
impl ApplyTx for SqliteApply {
    /// One instance, one writer: nothing can take a partition away.
    async fn fence(&mut self, _fences: &[crate::store::Fence]) -> Result<bool> {
        Ok(true)
    }

    async fn lock(&mut self, ids: &[EventId]) -> Result<Vec<LockedEvent>> {
        // The write transaction is the lock: the events and their orders, with
        // the statuses of each order's other events, read in one statement.
        let mut locked = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT e.id AS event_id, e.type, e.order_id, e.status AS event_status, \
                 e.created_at AS event_created_at, \
                 (SELECT group_concat(s.status) FROM events s WHERE s.order_id = e.order_id AND s.id <> e.id) \
                 AS siblings, \
                 o.buyer_id, o.affiliate_id, o.status, o.placed_at, o.program_version, o.context, o.approve_at, \
                 o.approved_at FROM events e JOIN orders o ON o.id = e.order_id WHERE e.id IN (",
            );
            push_list(&mut q, chunk.iter().map(|id| id.to_string()));
            q.push(")");
            for row in q.build().fetch_all(&mut *self.tx).await? {
                locked.push(LockedEvent {
                    id: parse_event_id(row.try_get("event_id")?)?,
                    kind: parse_event_type(row.try_get("type")?)?,
                    status: parse_event_status(row.try_get("event_status")?)?,
                    siblings: parse_statuses(row.try_get("siblings")?)?,
                    order_id: OrderId::from_trusted(row.try_get("order_id")?),
                    created_at: time(&row, "event_created_at")?,
                    program_version: row.try_get("program_version")?,
                    buyer_id: BuyerId::from_trusted(row.try_get("buyer_id")?),
                    direct: row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted),
                    placed_at: time(&row, "placed_at")?,
                    order_status: parse_order_status(row.try_get("status")?)?,
                    context: row.try_get("context")?,
                    approve_at: super::codec::opt_time(&row, "approve_at")?,
                    approved: row.try_get::<Option<&str>, _>("approved_at")?.is_some(),
                });
            }
        }
        Ok(locked)
    }

    async fn program(&mut self, version: u64) -> Result<Arc<Program>> {
        self.store.program_in(&mut self.tx, version).await
    }

    async fn items(&mut self, orders: &[&OrderId]) -> Result<HashMap<OrderId, Vec<OrderItem>>> {
        load_items(&mut self.tx, orders).await
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
        // Rules 4, 5 and 8 as on MySQL (see `MonthPlan`: a run of one
        // affiliate's orders costs one scan of its month), in few statements:
        // per ask whether the buyer ordered before, with the month's earlier
        // eligible amounts for the first ask of each group ('f' rows: joined
        // by group_concat, added here — SQLite would add TEXT in floating
        // point), and per group of several asks the orders from its first
        // ask up to its last ('r' rows).
        let plan = MonthPlan::new(asks);
        let mut parts: Vec<Part<'_>> = asks.iter().map(|ask| Part::Ask(ask, plan.aggregate_of(ask))).collect();
        parts.extend(plan.ranges().map(|(first, last)| Part::Range(first, last)));
        let mut facts = HashMap::with_capacity(asks.len());
        let mut between: HashMap<String, Vec<Between>> = HashMap::new();
        for chunk in parts.chunks(MONTH_PARTS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("");
            for (i, part) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                part.push(&mut q)?;
            }
            for row in q.build().fetch_all(&mut *self.tx).await? {
                let order_id: String = row.try_get("order_id")?;
                if row.try_get::<String, _>("kind")? == "r" {
                    let amount: String = row.try_get("amounts")?;
                    between.entry(order_id).or_default().push((
                        time(&row, "placed_at")?,
                        row.try_get("id")?,
                        super::codec::decode_money(&amount)?,
                    ));
                    continue;
                }
                let mut volume = Decimal::ZERO;
                let amounts: Option<String> = row.try_get("amounts")?;
                for amount in amounts.iter().flat_map(|a| a.split(',')) {
                    volume = add_money(volume, super::codec::decode_money(amount)?)?;
                }
                let earlier: i64 = row.try_get("n")?;
                facts.insert(
                    OrderId::from_trusted(order_id),
                    MonthFacts {
                        buyer_first_order: row.try_get::<i64, _>("first_order")? != 0,
                        volume_before: volume,
                        earlier: u64::try_from(earlier).map_err(corrupt)?,
                    },
                );
            }
        }
        plan.finish(facts, between)
    }

    async fn write(&mut self, w: &Writes, now: DateTime<Utc>) -> Result<()> {
        let stamp = encode_time(now)?;
        insert_rows(&mut self.tx, w, &stamp).await?;
        for order_id in &w.approve {
            approve_in(&mut self.tx, order_id, &stamp).await?;
        }
        for chunk in w.done.chunks(IN_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE events SET status = 'done', attempts = attempts + 1, applied_at = ",
            );
            q.push_bind(stamp.as_str()).push(", updated_at = ").push_bind(stamp.as_str());
            if let Some(by) = &w.applied_by {
                q.push(", applied_by = ").push_bind(by.to_string());
            }
            q.push(" WHERE id IN (");
            push_list(&mut q, chunk.iter().map(|id| id.to_string()));
            q.push(")");
            q.build().execute(&mut *self.tx).await?;
        }
        update_orders(&mut self.tx, w, &stamp).await?;
        move_balances(&mut self.tx, w, &stamp).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// SELECTs per compound statement in `month_facts` (SQLite allows 500).
const MONTH_PARTS_PER_STATEMENT: usize = 100;

/// One SELECT of the month-facts statement.
enum Part<'q> {
    /// An ask's buyer flag, with the aggregate of this affiliate's month.
    Ask(&'q MonthAsk<'q>, Option<&'q AffiliateId>),
    /// The orders of a group from its first ask to its last.
    Range(&'q MonthAsk<'q>, &'q MonthAsk<'q>),
}

impl<'q> Part<'q> {
    fn push(&self, q: &mut QueryBuilder<'q, Sqlite>) -> Result<()> {
        match self {
            Part::Ask(ask, aggregate) => {
                q.push("SELECT 'f' AS kind, ").push_bind(ask.order_id.as_str());
                q.push(" AS order_id, NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ");
                q.push_bind(ask.buyer_id.as_str());
                push_placed_before(q, ask)?;
                q.push(") AS first_order, group_concat(original_eligible) AS amounts, COUNT(*) AS n, ");
                q.push("NULL AS placed_at, NULL AS id FROM orders WHERE affiliate_id = ");
                q.push_bind(aggregate.map(|a| a.as_str()));
                q.push(" AND placed_at >= ").push_bind(encode_time(ask.month_start)?);
                push_placed_before(q, ask)
            }
            Part::Range(first, last) => {
                let at = encode_time(first.placed_at)?;
                q.push("SELECT 'r', ").push_bind(first.order_id.as_str());
                q.push(", NULL, original_eligible, 1, placed_at, id FROM orders WHERE affiliate_id = ");
                q.push_bind(first.direct.map(|a| a.as_str()));
                // From the first ask (included) to the last (excluded).
                q.push(" AND (placed_at > ").push_bind(at.clone());
                q.push(" OR (placed_at = ").push_bind(at).push(" AND id >= ").push_bind(first.order_id.as_str());
                q.push("))");
                push_placed_before(q, last)
            }
        }
    }
}

/// `AND` placed before `ask` (ties by id).
fn push_placed_before<'q>(q: &mut QueryBuilder<'q, Sqlite>, ask: &MonthAsk<'q>) -> Result<()> {
    let at = encode_time(ask.placed_at)?;
    q.push(" AND (placed_at < ").push_bind(at.clone());
    q.push(" OR (placed_at = ").push_bind(at).push(" AND id < ").push_bind(ask.order_id.as_str());
    q.push("))");
    Ok(())
}

/// What the ledger holds for each of these orders: per (beneficiary, kind)
/// the highest level and the Σ amount, added here from the rows.
pub(super) async fn load_applied(
    conn: &mut SqliteConnection,
    orders: &[&OrderId],
) -> Result<HashMap<OrderId, Applied>> {
    let mut applied: HashMap<OrderId, Applied> = HashMap::with_capacity(orders.len());
    for chunk in orders.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT order_id, affiliate_id, kind, level, amount FROM ledger_entries WHERE order_id IN (",
        );
        push_list(&mut q, chunk.iter().map(|o| o.as_str()));
        q.push(")");
        for r in q.build().fetch_all(&mut *conn).await? {
            let kind = CommissionKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("ledger kind"))?;
            let level: u8 = r.try_get("level")?;
            let amount = money(&r, "amount")?;
            let slot = applied
                .entry(OrderId::from_trusted(r.try_get("order_id")?))
                .or_default()
                .commissions
                .entry((AffiliateId::from_trusted(r.try_get("affiliate_id")?), kind))
                .or_insert((level, Decimal::ZERO));
            slot.0 = slot.0.max(level);
            slot.1 = add_money(slot.1, amount)?;
        }
        // Points are integers: SQLite sums them exactly.
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT order_id, buyer_id, kind, SUM(points) AS points FROM reward_entries WHERE order_id IN (",
        );
        push_list(&mut q, chunk.iter().map(|o| o.as_str()));
        q.push(") GROUP BY order_id, buyer_id, kind");
        for r in q.build().fetch_all(&mut *conn).await? {
            let kind = RewardKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("reward kind"))?;
            applied
                .entry(OrderId::from_trusted(r.try_get("order_id")?))
                .or_default()
                .rewards
                .insert((BuyerId::from_trusted(r.try_get("buyer_id")?), kind), r.try_get("points")?);
        }
    }
    Ok(applied)
}

/// Each of `firsts` and up to `count − 1` of its ancestors, nearest first, in
/// one recursive query, keyed by the first's id.
async fn ancestors(
    conn: &mut SqliteConnection,
    firsts: &[&AffiliateId],
    count: usize,
) -> Result<HashMap<AffiliateId, Vec<Affiliate>>> {
    let mut chains: HashMap<AffiliateId, Vec<Affiliate>> = HashMap::with_capacity(firsts.len());
    for chunk in firsts.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "WITH RECURSIVE chain (first, id, parent_id, depth) AS ( \
               SELECT id, id, parent_id, 0 FROM affiliates WHERE id IN (",
        );
        push_list(&mut q, chunk.iter().map(|a| a.as_str()));
        q.push(
            ") UNION ALL \
               SELECT c.first, a.id, a.parent_id, c.depth + 1 FROM affiliates a JOIN chain c ON a.id = c.parent_id \
               WHERE c.depth + 1 < ",
        );
        q.push_bind(i64::try_from(count).map_err(corrupt)?);
        q.push(
            " ) SELECT c.first, c.depth, a.id, a.name, a.parent_id, a.referral_code, a.buyer_id, a.status, \
               a.pending, a.approved, a.paid, a.created_at FROM chain c JOIN affiliates a ON a.id = c.id \
               ORDER BY c.first, c.depth",
        );
        for row in q.build().fetch_all(&mut *conn).await? {
            chains
                .entry(AffiliateId::from_trusted(row.try_get("first")?))
                .or_default()
                .push(super::affiliates::from_row(&row)?);
        }
    }
    Ok(chains)
}

/// Inserts the ledger and reward rows (multi-row, chunked).
async fn insert_rows(conn: &mut SqliteConnection, w: &Writes, stamp: &str) -> Result<()> {
    let ledger = w
        .ledger
        .iter()
        .map(|row| Ok((row, encode_money(row.amount)?, int(row.rule_version)?)))
        .collect::<Result<Vec<_>>>()?;
    for chunk in ledger.chunks(rows_per_insert(9)) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO ledger_entries (affiliate_id, order_id, event_id, level, kind, amount, status, \
             rule_version, created_at) ",
        );
        q.push_values(chunk, |mut b, (row, amount, rule_version)| {
            b.push_bind(row.affiliate_id.as_str())
                .push_bind(row.order_id.as_str())
                .push_bind(row.event_id.to_string())
                .push_bind(row.level)
                .push_bind(row.kind.as_str())
                .push_bind(amount.as_str())
                .push_bind(row.status.as_str())
                .push_bind(*rule_version)
                .push_bind(stamp);
        });
        q.build().execute(&mut *conn).await?;
    }
    let expiries =
        w.rewards.iter().map(|row| row.expires_at.map(encode_time).transpose()).collect::<Result<Vec<_>, _>>()?;
    let rows: Vec<_> = w.rewards.iter().zip(expiries).collect();
    for chunk in rows.chunks(rows_per_insert(7)) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at, expires_at) ",
        );
        q.push_values(chunk, |mut b, (row, expires_at)| {
            b.push_bind(row.buyer_id.as_str())
                .push_bind(row.order_id.as_str())
                .push_bind(row.event_id.to_string())
                .push_bind(row.kind.as_str())
                .push_bind(row.points)
                .push_bind(stamp)
                .push_bind(expires_at.clone());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// An affiliate's three balances as stored.
type Stored = [Decimal; 3];

/// Reads these affiliates' balances (all must exist).
async fn read_balances<'a>(
    conn: &mut SqliteConnection,
    ids: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, Stored>> {
    let wanted: Vec<&str> = ids.collect();
    let mut found = BTreeMap::new();
    for chunk in wanted.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, pending, approved, paid FROM affiliates WHERE id IN (");
        push_list(&mut q, chunk.iter().copied());
        q.push(")");
        for r in q.build().fetch_all(&mut *conn).await? {
            found.insert(
                r.try_get::<String, _>("id")?,
                [money(&r, "pending")?, money(&r, "approved")?, money(&r, "paid")?],
            );
        }
    }
    if found.len() != wanted.len() {
        return Err(corrupt(format!("balance rows missing for some of {wanted:?}")));
    }
    Ok(found)
}

/// Writes balances computed in Rust (the caller holds the writer): one
/// `UPDATE … FROM (VALUES …)` per chunk of affiliates.
async fn write_balances(conn: &mut SqliteConnection, balances: &BTreeMap<String, Stored>) -> Result<()> {
    let rows = balances
        .iter()
        .map(|(id, [pending, approved, paid])| {
            Ok((id.as_str(), encode_money(*pending)?, encode_money(*approved)?, encode_money(*paid)?))
        })
        .collect::<Result<Vec<_>>>()?;
    for chunk in rows.chunks(rows_per_insert(4)) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE affiliates SET pending = v.column2, approved = v.column3, paid = v.column4 FROM (",
        );
        push_values(&mut q, chunk, |b, (id, pending, approved, paid)| {
            b.push_bind(*id).push(", ").push_bind(pending.as_str()).push(", ");
            b.push_bind(approved.as_str()).push(", ").push_bind(paid.as_str());
        });
        q.push(") AS v WHERE affiliates.id = v.column1");
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// `VALUES (…), (…)`: one parenthesised row per item, written by `row`.
fn push_values<'q, T>(
    q: &mut QueryBuilder<'q, Sqlite>,
    items: &'q [T],
    mut row: impl FnMut(&mut QueryBuilder<'q, Sqlite>, &'q T),
) {
    q.push("VALUES ");
    for (i, item) in items.iter().enumerate() {
        q.push(if i == 0 { "(" } else { ", (" });
        row(q, item);
        q.push(")");
    }
}

fn column(status: EntryStatus) -> usize {
    match status {
        EntryStatus::Pending => 0,
        EntryStatus::Approved => 1,
        EntryStatus::Paid => 2,
    }
}

/// Moves balances by `moves` (affiliate → [(status, amount)]): read, added in
/// `Decimal`s, written back.
pub(super) async fn move_by(
    conn: &mut SqliteConnection,
    moves: &BTreeMap<String, Vec<(EntryStatus, Decimal)>>,
) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let mut balances = read_balances(conn, moves.keys().map(String::as_str)).await?;
    for (id, by) in moves {
        let stored = balances.get_mut(id).ok_or_else(|| corrupt(format!("no balance row for {id}")))?;
        for (status, amount) in by {
            let c = column(*status);
            stored[c] = add_money(stored[c], *amount)?;
        }
    }
    write_balances(conn, &balances).await
}

/// Moves buyers' points and affiliates' balances by the queued amounts: both
/// read, added in Rust (points in i128: a balance may pass i64) and written back.
async fn move_balances(conn: &mut SqliteConnection, w: &Writes, stamp: &str) -> Result<()> {
    let ids: Vec<&str> = w.points.keys().map(BuyerId::as_str).collect();
    let mut stored: BTreeMap<String, (i128, Option<String>)> = BTreeMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, points, expire_due_at FROM buyers WHERE id IN (");
        push_list(&mut q, chunk.iter().copied());
        q.push(")");
        for r in q.build().fetch_all(&mut *conn).await? {
            stored.insert(r.try_get("id")?, (decode_points(r.try_get("points")?)?, r.try_get("expire_due_at")?));
        }
    }
    let mut balances = Vec::with_capacity(w.points.len());
    for (buyer, by) in &w.points {
        let (before, due) = stored.remove(buyer.as_str()).unwrap_or((0, None));
        let after =
            before.checked_add(i128::from(*by)).ok_or_else(|| corrupt(format!("points of {buyer} overflow")))?;
        // The expiry due time moves to the new lots' expiry when that is sooner
        // (encoded times sort as text).
        let new = w.expiries.get(buyer).map(|t| encode_time(*t)).transpose()?;
        let due = match (due, new) {
            (Some(d), Some(n)) => Some(d.min(n)),
            (d, n) => d.or(n),
        };
        balances.push((buyer.as_str(), encode_points(after)?, due));
    }
    for chunk in balances.chunks(rows_per_insert(4)) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO buyers (id, points, updated_at, expire_due_at) ");
        q.push_values(chunk, |mut b, (buyer, points, due)| {
            b.push_bind(*buyer).push_bind(points.as_str()).push_bind(stamp).push_bind(due.clone());
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET points = excluded.points, updated_at = excluded.updated_at, \
             expire_due_at = excluded.expire_due_at",
        );
        q.build().execute(&mut *conn).await?;
    }
    let moves: BTreeMap<String, Vec<(EntryStatus, Decimal)>> = w
        .balances
        .iter()
        .map(|(id, by)| (id.as_str().to_owned(), by.iter().map(|(s, a)| (*s, *a)).collect()))
        .collect();
    move_by(conn, &moves).await
}

/// Updates the orders: commission status, reason, and the context resolved
/// now; one `UPDATE … FROM (VALUES …)` per chunk of orders (each order once:
/// a batch holds distinct orders).
async fn update_orders(conn: &mut SqliteConnection, w: &Writes, stamp: &str) -> Result<()> {
    for chunk in w.orders.chunks(rows_per_insert(4)) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE orders SET commission_status = v.column2, no_commission_reason = v.column3, \
             context = COALESCE(v.column4, orders.context), updated_at = ",
        );
        q.push_bind(stamp).push(" FROM (");
        push_values(&mut q, chunk, |b, u| {
            b.push_bind(u.order_id.as_str()).push(", ").push_bind(u.commission_status.as_str()).push(", ");
            b.push_bind(u.no_commission_reason).push(", ").push_bind(u.context.as_deref());
        });
        q.push(") AS v WHERE orders.id = v.column1");
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

impl SqliteStore {
    /// Approves the orders whose holding period has passed (the durable
    /// schedule is `orders.approve_at`), each in its own write transaction.
    /// Returns how many were approved.
    pub async fn approve_due(&self, limit: u32) -> Result<usize> {
        let now = encode_time(Utc::now())?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE approved_at IS NULL AND approve_at <= ? ORDER BY approve_at LIMIT ?",
        )
        .bind(&now)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        let mut approved = 0;
        for id in due {
            let mut tx = self.begin_write().await?;
            let still_due: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM orders WHERE id = ? AND approved_at IS NULL AND approve_at <= ?")
                    .bind(&id)
                    .bind(&now)
                    .fetch_optional(&mut *tx)
                    .await?;
            if still_due.is_some() {
                approve_in(&mut tx, &OrderId::from_trusted(id), &now).await?;
                approved += 1;
            }
            tx.commit().await?;
        }
        Ok(approved)
    }
}

/// Moves an order's pending entries to approved, balances with them, and
/// marks the order approved. The caller holds the writer.
async fn approve_in(conn: &mut SqliteConnection, order_id: &OrderId, stamp: &str) -> Result<()> {
    let rows = sqlx::query("SELECT affiliate_id, amount FROM ledger_entries WHERE order_id = ? AND status = 'pending'")
        .bind(order_id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in &rows {
        let slot = sums.entry(r.try_get("affiliate_id")?).or_default();
        *slot = add_money(*slot, money(r, "amount")?)?;
    }
    sqlx::query("UPDATE ledger_entries SET status = 'approved' WHERE order_id = ? AND status = 'pending'")
        .bind(order_id.as_str())
        .execute(&mut *conn)
        .await?;
    let moves: BTreeMap<String, Vec<(EntryStatus, Decimal)>> = sums
        .into_iter()
        .map(|(id, amount)| (id, vec![(EntryStatus::Pending, -amount), (EntryStatus::Approved, amount)]))
        .collect();
    move_by(conn, &moves).await?;
    sqlx::query("UPDATE orders SET approved_at = ?, updated_at = ? WHERE id = ?")
        .bind(stamp)
        .bind(stamp)
        .bind(order_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
