//! The event transaction: the reads the rules need and the writes the
//! engine decided, each with as few statements as possible for a whole
//! batch of events (one per kind of read or write, not one per event).
use super::month::{Between, Counted, CountedSince, MonthPlan};
use super::programs::ProgramCache;
use super::rows::{self, event_id, event_status, event_type, order_status, statuses};
use super::{Arg, Conn, PointsMoves, Sql};
use crate::domain::affiliate::Affiliate;
use crate::domain::affiliate::EmailHash;
use crate::domain::caps::{CounterKey, Used};
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::event::EventId;
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::Applied;
use crate::domain::order::OrderItem;
use crate::domain::program::Program;
use crate::store::{corrupt, ApplyTx, Fence, LockedEvent, MonthAsk, MonthFacts, Result, StoreError, Writes};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

pub struct SqlApply {
    conn: Box<dyn Conn>,
    programs: ProgramCache,
    since: CountedSince,
}

impl SqlApply {
    pub fn new(conn: Box<dyn Conn>, programs: ProgramCache, since: CountedSince) -> Self {
        Self { conn, programs, since }
    }
}

#[async_trait::async_trait]
impl ApplyTx for SqlApply {
    async fn fence(&mut self, fences: &[Fence]) -> Result<bool> {
        let d = self.conn.dialect();
        if !d.fenced || fences.is_empty() {
            // One instance, one writer: nothing can take a partition away.
            return Ok(true);
        }
        let mut q = Sql::new("SELECT part, token FROM journal_fences WHERE part IN (");
        q.list(fences.iter().map(|f| f.part)).push(")").push(d.for_share);
        let mut current = HashMap::new();
        for r in self.conn.fetch(&q).await? {
            current.insert(super::small::<u16>(r.as_ref(), "part")?, r.uint("token")?);
        }
        Ok(fences.iter().all(|f| current.get(&f.part) == Some(&f.token)))
    }

    /// The events and their orders, all locked, in one statement; with the
    /// statuses of each order's other events (the order's lock keeps them
    /// from being changed by another event's transaction meanwhile).
    async fn lock(&mut self, ids: &[EventId]) -> Result<Vec<LockedEvent>> {
        let lock = self.conn.dialect().for_update;
        let rows = self
            .conn
            .fetch_chunked(ids, 1, |chunk| {
                let mut q = Sql::new(
                    "SELECT e.id AS event_id, e.type, e.order_id, e.status AS event_status, \
                     e.created_at AS event_created_at, \
                     (SELECT group_concat(s.status) FROM events s WHERE s.order_id = e.order_id AND s.id <> e.id) \
                     AS siblings, o.buyer_id, o.affiliate_id, o.status, o.placed_at, o.program_version, o.context, o.limits, o.fx_rate, \
                     o.buyer_email_hash, o.approve_at, o.approved_at FROM events e JOIN orders o ON o.id = e.order_id WHERE e.id IN (",
                );
                q.list(chunk.iter().copied()).push(")").push(lock);
                q
            })
            .await?;
        rows::all(&rows, |row| {
            Ok(LockedEvent {
                id: event_id(&row.text("event_id")?)?,
                kind: event_type(&row.text("type")?)?,
                status: event_status(&row.text("event_status")?)?,
                siblings: statuses(row.opt_text("siblings")?)?,
                order_id: OrderId::from_trusted(row.text("order_id")?),
                created_at: row.time("event_created_at")?,
                program_version: row.uint("program_version")?,
                buyer_id: BuyerId::from_trusted(row.text("buyer_id")?),
                direct: row.opt_text("affiliate_id")?.map(AffiliateId::from_trusted),
                placed_at: row.time("placed_at")?,
                order_status: order_status(&row.text("status")?)?,
                fx_rate: rows::fx_rate(row)?,
                context: row.opt_text("context")?,
                limits: row.opt_text("limits")?,
                buyer_email_hash: row.opt_text("buyer_email_hash")?.map(EmailHash::from_trusted),
                approve_at: row.opt_time("approve_at")?,
                approved: row.opt_time("approved_at")?.is_some(),
            })
        })
    }

    async fn program(&mut self, version: u64) -> Result<Arc<Program>> {
        self.programs.get(self.conn.as_mut(), version).await
    }

    async fn items(&mut self, orders: &[&OrderId]) -> Result<HashMap<OrderId, Vec<OrderItem>>> {
        super::orders::load_items(self.conn.as_mut(), orders).await
    }

    async fn applied(&mut self, orders: &[&OrderId]) -> Result<HashMap<OrderId, Applied>> {
        load_applied(self.conn.as_mut(), orders).await
    }

    async fn ancestors(
        &mut self,
        firsts: &[&AffiliateId],
        count: usize,
    ) -> Result<HashMap<AffiliateId, Vec<Affiliate>>> {
        ancestors(self.conn.as_mut(), firsts, count).await
    }

    async fn month_facts(&mut self, asks: &[MonthAsk<'_>]) -> Result<HashMap<OrderId, MonthFacts>> {
        let since = self.since.get(self.conn.as_mut()).await;
        let facts = month_facts(self.conn.as_mut(), asks, since?).await;
        if let Err(StoreError::Busy(_)) = facts {
            // The months counted moved (a change of the program's time
            // zone): read it again for the retry.
            let at = self.conn.one(&Sql::new("SELECT since FROM affiliate_months_since WHERE id = 1")).await?;
            self.since.set(at.time("since")?);
        }
        facts
    }

    async fn counters(&mut self, keys: &[CounterKey], lock: bool) -> Result<HashMap<CounterKey, Used>> {
        super::caps::counters(self.conn.as_mut(), keys, lock).await
    }

    async fn write(&mut self, w: &Writes, now: DateTime<Utc>) -> Result<crate::store::apply::Approved> {
        let conn = self.conn.as_mut();
        // Buyers' rows first: a buyer's reward entries are written only under
        // the lock of its row, so their ids are in commit order (the wallet
        // replays them in that order).
        let points: PointsMoves = w.points.iter().map(|(b, p)| (b.clone(), (*p, w.expiries.get(b).copied()))).collect();
        conn.move_points(&points, now).await?;
        insert_rows(conn, w, now).await?;
        let mut approved = Vec::with_capacity(w.approve.len());
        for order_id in &w.approve {
            approved.push((order_id.clone(), super::orders::approve(conn, order_id, now).await?));
        }
        mark_done(conn, w, now).await?;
        update_orders(conn, w, now).await?;
        super::caps::write(conn, &w.counters).await?;
        // With the balances, last: an upline's day row is as contended as its balance row.
        super::reports::add(conn, &w.report).await?;
        // Last, so the most contended rows (uplines' balances) are held the shortest.
        conn.move_balances(&w.balances).await?;
        Ok(approved)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}

/// What the ledger holds for each of these orders: per (beneficiary, kind)
/// the highest level and the Σ amount.
pub async fn load_applied(conn: &mut dyn Conn, orders: &[&OrderId]) -> Result<HashMap<OrderId, Applied>> {
    let mut applied: HashMap<OrderId, Applied> = HashMap::with_capacity(orders.len());
    let sum = conn.dialect().sum;
    let ledger = conn
        .fetch_chunked(orders, 1, |chunk| {
            let mut q = Sql::new(format!(
                "SELECT order_id, affiliate_id, kind, MAX(level) AS level, {} AS amount FROM ledger_entries \
                 WHERE order_id IN (",
                sum("amount")
            ));
            q.list(chunk.iter().copied()).push(") GROUP BY order_id, affiliate_id, kind");
            q
        })
        .await?;
    for r in &ledger {
        let kind = CommissionKind::parse(&r.text("kind")?).ok_or_else(|| corrupt("ledger kind"))?;
        applied.entry(OrderId::from_trusted(r.text("order_id")?)).or_default().commissions.insert(
            (AffiliateId::from_trusted(r.text("affiliate_id")?), kind),
            (super::small(r.as_ref(), "level")?, r.sum("amount")?),
        );
    }
    let rewards = conn
        .fetch_chunked(orders, 1, |chunk| {
            let mut q = Sql::new(format!(
                "SELECT order_id, buyer_id, kind, {} AS points FROM reward_entries WHERE order_id IN (",
                sum("points")
            ));
            q.list(chunk.iter().copied()).push(") GROUP BY order_id, buyer_id, kind");
            q
        })
        .await?;
    for r in &rewards {
        let kind = RewardKind::parse(&r.text("kind")?).ok_or_else(|| corrupt("reward kind"))?;
        let points = r.sum("points")?.to_i64().ok_or_else(|| corrupt("an order's points overflow"))?;
        applied
            .entry(OrderId::from_trusted(r.text("order_id")?))
            .or_default()
            .rewards
            .insert((BuyerId::from_trusted(r.text("buyer_id")?), kind), points);
    }
    Ok(applied)
}

/// Each of `firsts` and up to `count − 1` of its ancestors, nearest first, in
/// one recursive query, keyed by the first's id.
pub async fn ancestors(
    conn: &mut dyn Conn,
    firsts: &[&AffiliateId],
    count: usize,
) -> Result<HashMap<AffiliateId, Vec<Affiliate>>> {
    let mut chains: HashMap<AffiliateId, Vec<Affiliate>> = HashMap::with_capacity(firsts.len());
    let count = i64::try_from(count).map_err(corrupt)?;
    let rows = conn
        .fetch_chunked(firsts, 1, |chunk| {
            let mut q = Sql::new(
                "WITH RECURSIVE chain (first, id, parent_id, depth) AS ( \
                   SELECT id, id, parent_id, 0 FROM affiliates WHERE id IN (",
            );
            q.list(chunk.iter().copied()).push(
                ") UNION ALL \
                   SELECT c.first, a.id, a.parent_id, c.depth + 1 FROM affiliates a JOIN chain c ON a.id = c.parent_id \
                   WHERE c.depth + 1 < ",
            );
            q.bind(count).push(
                " ) SELECT c.first, c.depth, a.id, a.name, a.parent_id, a.referral_code, a.buyer_id, a.email_hash, a.status, \
                   a.pending, a.approved, a.paid, a.created_at, a.caps FROM chain c JOIN affiliates a ON a.id = c.id \
                   ORDER BY c.first, c.depth",
            );
            q
        })
        .await?;
    for row in &rows {
        chains.entry(AffiliateId::from_trusted(row.text("first")?)).or_default().push(rows::affiliate(row.as_ref())?);
    }
    Ok(chains)
}

/// A SELECT of the month-facts statement (two for a counted month). Every
/// SELECT has the same columns, all named: kind, order_id, first_order,
/// volume, n, placed_at, id, m_volume, m_orders, since.
enum Part<'q> {
    /// An ask's buyer flag, with the aggregate of this affiliate's month
    /// before it (an uncounted month's first ask).
    Ask(&'q MonthAsk<'q>, Option<&'q AffiliateId>),
    /// The orders of an uncounted group from its first ask to its last.
    Range(&'q MonthAsk<'q>, &'q MonthAsk<'q>),
    /// An ask alone in its counted group: its buyer flag, its month's sums
    /// (with the `since` the statement sees) and the sums of the orders
    /// from it to the month's end.
    Alone(&'q MonthAsk<'q>),
    /// A counted group's month sums (with the `since` the statement sees),
    /// its orders from its first ask to its last, and the sums of those
    /// after its last in the month: one statement, so all are read at one
    /// instant.
    Counted(&'q MonthAsk<'q>, &'q MonthAsk<'q>),
}

const NO_MONTH: &str = "NULL AS m_volume, NULL AS m_orders, NULL AS since";

impl Part<'_> {
    fn push(&self, q: &mut Sql, d: &super::Dialect) {
        let sum = d.sum;
        match self {
            Part::Ask(ask, aggregate) => {
                q.push("SELECT 'f' AS kind, ").bind(ask.order_id);
                q.push(" AS order_id, NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ").bind(ask.buyer_id);
                push_placed_before(q, ask);
                q.push(&format!(") AS first_order, {} AS volume, COUNT(*) AS n, ", sum("original_eligible")));
                q.push(&format!("NULL AS placed_at, NULL AS id, {NO_MONTH} FROM orders WHERE affiliate_id = "));
                q.bind(*aggregate).push(" AND placed_at >= ").bind(Arg::Bound(ask.month_start));
                push_placed_before(q, ask);
            }
            Part::Range(first, last) => {
                q.push("SELECT 'r' AS kind, ").bind(first.order_id);
                q.push(" AS order_id, 1 AS first_order, original_eligible AS volume, 1 AS n, placed_at, id, ");
                q.push(NO_MONTH).push(" FROM orders WHERE affiliate_id = ").bind(first.direct);
                push_placed_from(q, first);
                push_placed_before(q, last);
            }
            Part::Alone(ask) => {
                q.push("SELECT 'c' AS kind, ").bind(ask.order_id);
                q.push(" AS order_id, NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ").bind(ask.buyer_id);
                push_placed_before(q, ask);
                q.push(&format!(") AS first_order, {} AS volume, COUNT(*) AS n, ", sum("original_eligible")));
                q.push("NULL AS placed_at, NULL AS id, (SELECT volume FROM affiliate_months WHERE affiliate_id = ");
                q.bind(ask.direct).push(" AND month_start = ").bind(Arg::Bound(ask.month_start));
                q.push(&format!(
                    ") AS m_volume, (SELECT {} FROM affiliate_months WHERE affiliate_id = ",
                    (d.text_cast)("orders")
                ));
                q.bind(ask.direct).push(" AND month_start = ").bind(Arg::Bound(ask.month_start));
                q.push(") AS m_orders, (SELECT since FROM affiliate_months_since WHERE id = 1) AS since ");
                q.push("FROM orders WHERE affiliate_id = ").bind(ask.direct);
                push_placed_from(q, ask);
                q.push(" AND placed_at < ").bind(Arg::Bound(ask.month_end));
            }
            Part::Counted(first, last) => {
                q.push("SELECT 'm' AS kind, ").bind(first.order_id);
                q.push(" AS order_id, 1 AS first_order, NULL AS volume, 1 AS n, NULL AS placed_at, NULL AS id, ");
                // The count as text: a UNION's column type differs by server.
                q.push(&format!("m.volume AS m_volume, {} AS m_orders, ", (d.text_cast)("m.orders")));
                q.push("s.since AS since FROM affiliate_months_since s ");
                q.push("LEFT JOIN affiliate_months m ON m.affiliate_id = ").bind(first.direct);
                q.push(" AND m.month_start = ").bind(Arg::Bound(first.month_start)).push(" WHERE s.id = 1");
                q.push(" UNION ALL SELECT 's', ").bind(first.order_id);
                q.push(", 1, original_eligible, 1, placed_at, id, NULL, NULL, NULL FROM orders WHERE affiliate_id = ");
                q.bind(first.direct);
                push_placed_from(q, first);
                q.push(" AND (placed_at < ").bind(Arg::Bound(last.placed_at));
                q.push(" OR (placed_at = ").bind(Arg::Bound(last.placed_at)).push(" AND id <= ").bind(last.order_id);
                q.push(")) UNION ALL SELECT 't', ").bind(first.order_id);
                q.push(&format!(
                    ", 1, {}, COUNT(*), NULL, NULL, NULL, NULL, NULL FROM orders WHERE affiliate_id = ",
                    sum("original_eligible")
                ));
                q.bind(first.direct);
                q.push(" AND (placed_at > ").bind(Arg::Bound(last.placed_at));
                q.push(" OR (placed_at = ").bind(Arg::Bound(last.placed_at)).push(" AND id > ").bind(last.order_id);
                q.push(")) AND placed_at < ").bind(Arg::Bound(first.month_end));
            }
        }
    }
}

/// ` AND (placed_at < ? OR (placed_at = ? AND id < ?))`: orders placed
/// before the asking order (ties by id).
fn push_placed_before(q: &mut Sql, ask: &MonthAsk<'_>) {
    q.push(" AND (placed_at < ").bind(Arg::Bound(ask.placed_at));
    q.push(" OR (placed_at = ").bind(Arg::Bound(ask.placed_at)).push(" AND id < ").bind(ask.order_id).push("))");
}

/// ` AND (placed_at > ? OR (placed_at = ? AND id >= ?))`: the asking order
/// and those placed after it.
fn push_placed_from(q: &mut Sql, ask: &MonthAsk<'_>) {
    q.push(" AND (placed_at > ").bind(Arg::Bound(ask.placed_at));
    q.push(" OR (placed_at = ").bind(Arg::Bound(ask.placed_at)).push(" AND id >= ").bind(ask.order_id).push("))");
}

/// Rules 4, 5 and 8 in few statements (see [`MonthPlan`]): per ask whether
/// the buyer ordered before; for an uncounted month the earlier eligible
/// amounts of each group's first ask ('f' rows, read from
/// ix_orders_affiliate_placed alone, which carries original_eligible) and
/// the orders from its first ask up to its last ('r' rows); for a counted
/// month its stored sums ('m'), the orders from its first ask to its last
/// ('s') and the sums of those after its last ('t').
async fn month_facts(
    conn: &mut dyn Conn,
    asks: &[MonthAsk<'_>],
    since: DateTime<Utc>,
) -> Result<HashMap<OrderId, MonthFacts>> {
    let plan = MonthPlan::new(asks, since);
    let mut parts: Vec<Part<'_>> = asks
        .iter()
        .map(|ask| if plan.counted_alone(ask) { Part::Alone(ask) } else { Part::Ask(ask, plan.aggregate_of(ask)) })
        .collect();
    parts.extend(plan.ranges().map(|(first, last)| Part::Range(first, last)));
    parts.extend(plan.counted_firsts().map(|(first, last)| Part::Counted(first, last)));
    let mut facts = HashMap::with_capacity(asks.len());
    let mut between: HashMap<String, Vec<Between>> = HashMap::new();
    let mut counted: HashMap<String, Counted> = HashMap::new();
    // A counted part is three SELECTs.
    let d = conn.dialect();
    let per_statement = (d.max_compound / 3).max(1);
    for chunk in parts.chunks(per_statement) {
        let mut q = Sql::default();
        for (i, part) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(" UNION ALL ");
            }
            part.push(&mut q, d);
        }
        for row in conn.fetch(&q).await? {
            let order_id = row.text("order_id")?;
            let kind = row.text("kind")?;
            let between_row = |row: &super::Row| -> Result<Between> {
                Ok((row.time("placed_at")?, row.text("id")?, row.sum("volume")?))
            };
            match kind.as_str() {
                "r" => between.entry(order_id).or_default().push(between_row(&row)?),
                "s" => counted.entry(order_id).or_default().rows.push(between_row(&row)?),
                "t" => counted.entry(order_id).or_default().tail = (row.sum("volume")?, row.uint("n")?),
                "c" => {
                    let c = counted.entry(order_id.clone()).or_default();
                    c.since = row.opt_time("since")?;
                    c.sums = month_sums(row.as_ref())?;
                    // The orders from it on: its own and those after it.
                    c.tail = (row.sum("volume")?, row.uint("n")?);
                    facts.insert(
                        OrderId::from_trusted(order_id),
                        MonthFacts {
                            buyer_first_order: row.flag("first_order")?,
                            volume_before: Decimal::ZERO,
                            earlier: 0,
                        },
                    );
                }
                "m" => {
                    let c = counted.entry(order_id).or_default();
                    c.since = row.opt_time("since")?;
                    c.sums = month_sums(row.as_ref())?;
                }
                _ => {
                    facts.insert(
                        OrderId::from_trusted(order_id),
                        MonthFacts {
                            buyer_first_order: row.flag("first_order")?,
                            volume_before: row.sum("volume")?,
                            earlier: row.uint("n")?,
                        },
                    );
                }
            }
        }
    }
    plan.finish(facts, between, counted)
}

/// A month's stored (volume, orders), if its row exists.
fn month_sums(row: &dyn super::Cols) -> Result<Option<(Decimal, u64)>> {
    Ok(match (row.opt_money("m_volume")?, row.opt_text("m_orders")?) {
        (Some(v), Some(n)) => Some((v, n.parse().map_err(corrupt)?)),
        _ => None,
    })
}

/// Inserts the ledger and reward rows (multi-row, chunked).
async fn insert_rows(conn: &mut dyn Conn, w: &Writes, now: DateTime<Utc>) -> Result<()> {
    let ledger = w
        .ledger
        .iter()
        .map(|row| {
            Ok(vec![
                (&row.affiliate_id).into(),
                (&row.order_id).into(),
                row.event_id.into(),
                row.level.into(),
                row.kind.as_str().into(),
                row.amount.into(),
                row.status.as_str().into(),
                super::uint(row.rule_version)?,
                now.into(),
                row.cut.map(|c| c.by.as_str()).into(),
                row.cut.map_or(Arg::Null, |c| Arg::Money(c.amount)),
            ])
        })
        .collect::<Result<Vec<Vec<Arg>>>>()?;
    conn.execute_chunked(&ledger, 11, |chunk| {
        let mut q = Sql::new(
            "INSERT INTO ledger_entries (affiliate_id, order_id, event_id, level, kind, amount, status, rule_version, \
             created_at, capped_by, cut)",
        );
        q.values(chunk, Clone::clone);
        q
    })
    .await?;
    let rewards: Vec<Vec<Arg>> = w
        .rewards
        .iter()
        .map(|row| {
            vec![
                (&row.buyer_id).into(),
                (&row.order_id).into(),
                row.event_id.into(),
                row.kind.as_str().into(),
                row.points.into(),
                now.into(),
                row.expires_at.into(),
                row.cut.map(|c| c.by.as_str()).into(),
                row.cut.map_or(Arg::Null, |c| Arg::Int(c.amount)),
            ]
        })
        .collect();
    conn.execute_chunked(&rewards, 9, |chunk| {
        let mut q = Sql::new(
            "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at, expires_at, \
             capped_by, cut)",
        );
        q.values(chunk, Clone::clone);
        q
    })
    .await?;
    Ok(())
}

/// Marks the events done, with the instance that applied them and (where
/// several instances share the database) the fencing token each was
/// applied under.
async fn mark_done(conn: &mut dyn Conn, w: &Writes, now: DateTime<Utc>) -> Result<()> {
    let fenced = conn.dialect().fenced && !w.fences.is_empty();
    conn.execute_chunked(&w.done, 3, |chunk| {
        let mut q = Sql::new("UPDATE events SET status = 'done', attempts = attempts + 1, applied_at = ");
        q.bind(now).push(", updated_at = ").bind(now);
        if let Some(by) = &w.applied_by {
            q.push(", applied_by = ").bind(by.to_string());
        }
        if fenced {
            // Each event's own token: a batch spans partitions.
            q.push(", applied_fence = CASE id");
            for id in chunk {
                if let Some(token) = w.fences.get(id) {
                    q.push(" WHEN ").bind(*id).push(" THEN ").bind(i64::try_from(*token).unwrap_or(i64::MAX));
                }
            }
            q.push(" END");
        }
        q.push(" WHERE id IN (").list(chunk.iter().copied()).push(")");
        q
    })
    .await?;
    Ok(())
}

/// Updates the orders: commission status, reason, and the context resolved
/// now (each order once: a batch holds distinct orders).
async fn update_orders(conn: &mut dyn Conn, w: &Writes, now: DateTime<Utc>) -> Result<()> {
    conn.execute_chunked(&w.orders, 9, |chunk| {
        let mut q = Sql::new("UPDATE orders SET commission_status = CASE id");
        for u in chunk {
            q.push(" WHEN ").bind(&u.order_id).push(" THEN ").bind(u.commission_status.as_str());
        }
        q.push(" END, no_commission_reason = CASE id");
        for u in chunk {
            q.push(" WHEN ").bind(&u.order_id).push(" THEN ").bind(u.no_commission_reason);
        }
        q.push(" END, context = COALESCE(CASE id");
        for u in chunk {
            q.push(" WHEN ").bind(&u.order_id).push(" THEN ").bind(u.context.as_deref());
        }
        q.push(" END, context), limits = COALESCE(CASE id");
        for u in chunk {
            q.push(" WHEN ").bind(&u.order_id).push(" THEN ").bind(u.limits.as_deref());
        }
        q.push(" END, limits), updated_at = ").bind(now).push(" WHERE id IN (");
        q.list(chunk.iter().map(|u| &u.order_id)).push(")");
        q
    })
    .await?;
    Ok(())
}

super::webhooks::notify_tx!(SqlApply);
