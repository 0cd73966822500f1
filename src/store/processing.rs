//! Applying events. One event, or a batch of events of different orders, is
//! applied in ONE transaction: lock the events and their orders, resolve (once)
//! each order's context, compute each entitlement, write only the deltas, move
//! balances, mark the events done. A failed transaction rolls back whole (G3);
//! the caller then applies the events of a failed batch one by one, so a
//! failing event only ever fails alone.
use super::affiliates::{Affiliate, AffiliateStatus, MAX_TREE_DEPTH};
use super::ledger::EntryStatus;
use super::orders::{load_items, load_state, CommissionStatus, OrderStatus};
use super::{corrupt, Result, Store};
use crate::domain::entitlement::{
    entitle, month_window, AffiliateSnapshot, CommissionKind, Entitlement, FrozenContext, RewardKind,
};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{delta, Applied, Delta};
use crate::domain::order::OrderState;
use crate::domain::program::Program;
use crate::event::{EventId, EventStatus, EventType};
use crate::faults::Faults;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Row, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
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
        let mut outcomes = self.process_events(&[id], faults).await?;
        outcomes.pop().ok_or_else(|| corrupt("no outcome for the event"))
    }

    /// Applies several events in one transaction, all or nothing: one outcome
    /// per id, in order. The events must belong to different orders (two events
    /// of one order must be applied in sequence); a batch that breaks this is
    /// refused whole, and so is a batch where any event fails — the caller
    /// applies its events one by one instead. Commits, round trips and balance
    /// updates are shared by the batch; every rule is still applied per event.
    pub async fn process_events(&self, ids: &[EventId], faults: &Faults) -> Result<Vec<Outcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.work.begin().await?;
        // The events and their orders, all locked, in one statement.
        let mut q = QueryBuilder::<MySql>::new(
            "SELECT e.id AS event_id, e.type, e.order_id, e.status AS event_status, e.created_at AS event_created_at, \
             o.buyer_id, o.affiliate_id, o.status, o.placed_at, o.program_version, o.context, o.approve_at, \
             o.approved_at FROM events e JOIN orders o ON o.id = e.order_id WHERE e.id IN (",
        );
        push_list(&mut q, ids.iter().map(|id| id.to_string()));
        q.push(") FOR UPDATE");
        let rows = q.build().fetch_all(&mut *tx).await?;
        let mut by_id: HashMap<String, MySqlRow> = HashMap::with_capacity(rows.len());
        for row in rows {
            by_id.insert(row.try_get("event_id")?, row);
        }

        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(ids.len());
        let mut open: Vec<(usize, Locked)> = Vec::new();
        let mut orders = HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            match by_id.get(&id.to_string()).map(triage).transpose()? {
                None => outcomes.push(Some(Outcome::Skipped("unknown event"))),
                Some(Triage::Settled(outcome)) => outcomes.push(Some(outcome)),
                Some(Triage::Open(ev)) => {
                    if !orders.insert(ev.order_id.clone()) {
                        return Err(corrupt(format!("a batch holds two events of order {}", ev.order_id)));
                    }
                    outcomes.push(None);
                    open.push((i, *ev));
                }
            }
        }
        if open.is_empty() {
            tx.commit().await?;
            return outcomes.into_iter().map(|o| o.ok_or_else(|| corrupt("missing outcome"))).collect();
        }

        // What the rules read, for every open event at once.
        let mut programs = Vec::with_capacity(open.len());
        for (_, ev) in &open {
            programs.push(self.program_in(&mut tx, ev.version).await?);
        }
        let order_ids: Vec<&OrderId> = open.iter().map(|(_, ev)| &ev.order_id).collect();
        let mut items = load_items(&mut *tx, &order_ids).await?;
        let frozen: Vec<&OrderId> =
            open.iter().filter(|(_, ev)| ev.context.is_some()).map(|(_, ev)| &ev.order_id).collect();
        let mut applied = load_applied(&mut tx, &frozen).await?;
        let fresh: Vec<(&Locked, &Program)> = open
            .iter()
            .zip(&programs)
            .filter(|((_, ev), _)| ev.context.is_none())
            .map(|((_, ev), p)| (ev, p.as_ref()))
            .collect();
        let mut contexts = resolve_contexts(&mut tx, &fresh).await?;

        let now = Utc::now();
        let mut writes = Writes::default();
        let mut updates = Vec::with_capacity(open.len());
        let mut approve = Vec::new();
        for ((i, ev), program) in open.iter().zip(&programs) {
            let state = OrderState {
                buyer_id: ev.buyer_id.clone(),
                items: items.remove(ev.order_id.as_str()).unwrap_or_default(),
                cancelled: ev.cancelled,
            };
            let (ctx, new_context, applied) = match &ev.context {
                Some(json) => (
                    serde_json::from_str::<FrozenContext>(json).map_err(corrupt)?,
                    None,
                    applied.remove(ev.order_id.as_str()).unwrap_or_default(),
                ),
                None => {
                    let ctx = contexts.remove(ev.order_id.as_str()).ok_or_else(|| corrupt("context not resolved"))?;
                    let json = serde_json::to_string(&ctx).map_err(corrupt)?;
                    // Before the first processing nothing of the order is written.
                    (ctx, Some(json), Applied::default())
                }
            };
            let entitled = entitle(&state, program, &ctx);
            let delta = delta(&entitled, &applied);
            // Once approved, an order's entries (clawbacks included) land approved.
            let status = if ev.approved { EntryStatus::Approved } else { EntryStatus::Pending };
            let rows_written = writes.add(&delta, ev, status);
            if !ev.approved && ev.approve_at.is_some_and(|at| at <= now) {
                approve.push(&ev.order_id);
            }
            updates.push(OrderUpdate {
                order_id: &ev.order_id,
                reason: entitled.no_commission_reason.map(|r| r.as_str()),
                context: new_context,
            });
            let mut amounts: BTreeMap<CommissionKind, Decimal> = BTreeMap::new();
            for line in &delta.commissions {
                *amounts.entry(line.kind).or_default() += line.amount;
            }
            outcomes[*i] = Some(Outcome::Applied {
                kind: ev.kind,
                lag: (now - ev.created_at).to_std().unwrap_or_default(),
                amounts: amounts.into_iter().collect(),
                rows_written,
            });
        }

        writes.insert_rows(&mut tx, now).await?;
        for order_id in approve {
            approve_in(&mut tx, order_id, now).await?;
        }
        if faults.take_db_error() {
            // A genuine database error in the middle of the transaction, after the
            // ledger rows are written: G3 says none of them may survive.
            sqlx::query("SELECT * FROM komisi_injected_fault_table").execute(&mut *tx).await?;
        }
        let mut q =
            QueryBuilder::<MySql>::new("UPDATE events SET status = 'done', attempts = attempts + 1, applied_at = ");
        q.push_bind(now).push(", updated_at = ").push_bind(now).push(" WHERE id IN (");
        push_list(&mut q, open.iter().map(|(_, ev)| ev.id.to_string()));
        q.push(")");
        q.build().execute(&mut *tx).await?;
        update_orders(&mut tx, &updates, now).await?;
        // Last, so the most contended rows (uplines' balances) are held the shortest.
        writes.move_balances(&mut tx, now).await?;
        tx.commit().await?;

        // The lag is measured to the commit.
        let committed = Utc::now();
        outcomes
            .into_iter()
            .map(|o| match o {
                Some(Outcome::Applied { kind, lag, amounts, rows_written }) => Ok(Outcome::Applied {
                    kind,
                    lag: lag + (committed - now).to_std().unwrap_or_default(),
                    amounts,
                    rows_written,
                }),
                Some(other) => Ok(other),
                None => Err(corrupt("missing outcome")),
            })
            .collect()
    }
}

/// Pushes `?, ?, …` bound to `values`.
fn push_list<'a, T>(q: &mut QueryBuilder<'a, MySql>, values: impl IntoIterator<Item = T>)
where
    T: 'a + sqlx::Encode<'a, MySql> + sqlx::Type<MySql> + Send,
{
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v);
    }
}

/// An open event and its order, as locked.
struct Locked {
    id: EventId,
    kind: EventType,
    order_id: OrderId,
    created_at: DateTime<Utc>,
    version: u64,
    buyer_id: BuyerId,
    direct: Option<AffiliateId>,
    placed_at: DateTime<Utc>,
    cancelled: bool,
    context: Option<String>,
    approve_at: Option<DateTime<Utc>>,
    approved: bool,
}

enum Triage {
    Open(Box<Locked>),
    /// Nothing to do: done already, or dead.
    Settled(Outcome),
}

fn triage(row: &MySqlRow) -> Result<Triage> {
    let kind = EventType::parse(row.try_get("type")?).ok_or_else(|| corrupt("event type"))?;
    match EventStatus::parse(row.try_get("event_status")?).ok_or_else(|| corrupt("event status"))? {
        EventStatus::Done => return Ok(Triage::Settled(Outcome::AlreadyDone { kind })),
        EventStatus::Dead => return Ok(Triage::Settled(Outcome::Skipped("dead event"))),
        EventStatus::Pending | EventStatus::Processing | EventStatus::Failed => {}
    }
    let status: String = row.try_get("status")?;
    Ok(Triage::Open(Box::new(Locked {
        id: EventId::parse(row.try_get("event_id")?).ok_or_else(|| corrupt("event id"))?,
        kind,
        order_id: OrderId::from_trusted(row.try_get("order_id")?),
        created_at: row.try_get("event_created_at")?,
        version: row.try_get("program_version")?,
        buyer_id: BuyerId::from_trusted(row.try_get("buyer_id")?),
        direct: row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted),
        placed_at: row.try_get("placed_at")?,
        cancelled: status == OrderStatus::Cancelled.as_str(),
        context: row.try_get("context")?,
        approve_at: row.try_get("approve_at")?,
        approved: row.try_get::<Option<DateTime<Utc>>, _>("approved_at")?.is_some(),
    })))
}

/// What the ledger holds for each of these orders (none: nothing read).
async fn load_applied(tx: &mut Transaction<'_, MySql>, orders: &[&OrderId]) -> Result<HashMap<String, Applied>> {
    let mut applied: HashMap<String, Applied> = HashMap::with_capacity(orders.len());
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
        applied.entry(r.try_get("order_id")?).or_default().commissions.insert(
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
            .entry(r.try_get("order_id")?)
            .or_default()
            .rewards
            .insert((BuyerId::from_trusted(r.try_get("buyer_id")?), kind), r.try_get("points")?);
    }
    Ok(applied)
}

/// Resolves what the rules need from outside each order, once, at its first
/// processing: the direct affiliate and upline (one query for all orders), the
/// month volume and position and the buyer's first order (one query for all).
async fn resolve_contexts(
    tx: &mut Transaction<'_, MySql>,
    fresh: &[(&Locked, &Program)],
) -> Result<HashMap<String, FrozenContext>> {
    let mut contexts = HashMap::with_capacity(fresh.len());
    if fresh.is_empty() {
        return Ok(contexts);
    }
    // Each direct affiliate and its ancestors, nearest first: a few more than
    // the levels, in case some are suspended and skipped.
    let directs: Vec<&AffiliateId> = fresh.iter().filter_map(|(ev, _)| ev.direct.as_ref()).collect();
    let most = fresh.iter().map(|(_, p)| p.levels.len()).max().unwrap_or(0) + 4;
    let chains = ancestors(tx, &directs, most).await?;

    let mut walked = Vec::with_capacity(fresh.len());
    for (ev, program) in fresh {
        let chain = match &ev.direct {
            Some(id) => {
                // Several orders may share a direct affiliate: each gets its own copy.
                let chain = chains.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
                chain[..chain.len().min(program.levels.len() + 4)].to_vec()
            }
            None => Vec::new(),
        };
        walked.push(walk_upline(tx, program, chain).await?);
    }

    // Rules 4, 5 and 8 in one round trip for all orders: the affiliate's
    // earlier orders this month (program timezone; ties by id), and whether the
    // buyer ordered before.
    let mut q = QueryBuilder::<MySql>::new("");
    for (i, ((ev, program), walk)) in fresh.iter().zip(&walked).enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        let direct = walk.as_ref().map(|(d, _)| d.id.as_str());
        let (start, _end) = month_window(ev.placed_at, program.timezone);
        // One aggregate over the affiliate's month (always one row, zeros when
        // there is no direct affiliate), read from ix_orders_affiliate_placed
        // alone, which carries original_eligible.
        q.push("SELECT ").push_bind(ev.order_id.as_str());
        q.push(" AS order_id, NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ").push_bind(ev.buyer_id.as_str());
        push_placed_before(&mut q, ev);
        q.push(") AS first_order, COALESCE(SUM(original_eligible), 0) AS volume, COUNT(*) AS n FROM orders");
        q.push(" WHERE affiliate_id = ").push_bind(direct).push(" AND placed_at >= ").push_bind(start);
        push_placed_before(&mut q, ev);
    }
    let mut facts: HashMap<String, MySqlRow> = HashMap::with_capacity(fresh.len());
    for row in q.build().fetch_all(&mut **tx).await? {
        facts.insert(row.try_get("order_id")?, row);
    }

    for ((ev, _), walk) in fresh.iter().zip(walked) {
        let row = facts.get(ev.order_id.as_str()).ok_or_else(|| corrupt("month facts missing"))?;
        let buyer_first_order: bool = row.try_get("first_order")?;
        let ctx = match walk {
            None => FrozenContext {
                direct: None,
                upline: Vec::new(),
                volume_before: Decimal::ZERO,
                nth_in_month: 0,
                buyer_first_order,
            },
            Some((direct, upline)) => {
                let earlier: i64 = row.try_get("n")?;
                FrozenContext {
                    direct: Some(AffiliateSnapshot {
                        suspended: direct.status == AffiliateStatus::Suspended,
                        id: direct.id,
                        buyer_id: direct.buyer_id,
                    }),
                    upline,
                    volume_before: row.try_get("volume")?,
                    nth_in_month: u32::try_from(earlier + 1).map_err(corrupt)?,
                    buyer_first_order,
                }
            }
        };
        contexts.insert(ev.order_id.as_str().to_owned(), ctx);
    }
    Ok(contexts)
}

/// From `chain` (the direct affiliate and its nearest ancestors, nearest
/// first), the direct affiliate and the upline the levels are paid from:
/// walking up until every level 2..n can be filled (skipping suspended
/// ancestors when the program says so) or the root is reached, fetching
/// further ancestors when the chain ran out. None when `chain` is empty.
async fn walk_upline(
    tx: &mut Transaction<'_, MySql>,
    program: &Program,
    chain: Vec<Affiliate>,
) -> Result<Option<(Affiliate, Vec<AffiliateSnapshot>)>> {
    let mut chain = chain.into_iter();
    let Some(direct) = chain.next() else {
        return Ok(None);
    };
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
                // `next` itself first, which the walk has not seen yet.
                fetched = ancestors(tx, &[next], asked).await?.remove(next.as_str()).unwrap_or_default();
            }
            _ => break,
        }
    }
    Ok(Some((direct, upline)))
}

/// ` AND (placed_at < ? OR (placed_at = ? AND id < ?))`: orders placed before
/// this event's order (ties by id).
fn push_placed_before<'a>(q: &mut QueryBuilder<'a, MySql>, ev: &'a Locked) {
    q.push(" AND (placed_at < ").push_bind(ev.placed_at);
    q.push(" OR (placed_at = ").push_bind(ev.placed_at).push(" AND id < ").push_bind(ev.order_id.as_str());
    q.push("))");
}

/// Each of `firsts` and up to `count − 1` of its ancestors, nearest first, in
/// one query, keyed by the first's id.
async fn ancestors(
    tx: &mut Transaction<'_, MySql>,
    firsts: &[&AffiliateId],
    count: usize,
) -> Result<HashMap<String, Vec<Affiliate>>> {
    let mut chains: HashMap<String, Vec<Affiliate>> = HashMap::with_capacity(firsts.len());
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
        chains.entry(row.try_get("first")?).or_default().push(super::affiliates::from_row(&row)?);
    }
    Ok(chains)
}

/// The rows and balance moves of a transaction's deltas, written with one
/// statement per table.
#[derive(Default)]
struct Writes {
    ledger: Vec<LedgerRow>,
    rewards: Vec<RewardRow>,
    /// affiliate → Σ amount per balance column.
    balances: BTreeMap<String, BTreeMap<&'static str, Decimal>>,
    /// buyer → Σ points.
    points: BTreeMap<String, i64>,
}

struct LedgerRow {
    affiliate_id: AffiliateId,
    order_id: OrderId,
    event_id: String,
    level: u8,
    kind: CommissionKind,
    amount: Decimal,
    status: EntryStatus,
    version: u64,
}

struct RewardRow {
    buyer_id: BuyerId,
    order_id: OrderId,
    event_id: String,
    kind: RewardKind,
    points: i64,
}

impl Writes {
    /// Queues one event's delta; returns how many rows it writes.
    fn add(&mut self, delta: &Delta, ev: &Locked, status: EntryStatus) -> usize {
        let column = match status {
            EntryStatus::Pending => "pending",
            EntryStatus::Approved => "approved",
            EntryStatus::Paid => "paid",
        };
        let event_id = ev.id.to_string();
        for line in &delta.commissions {
            self.ledger.push(LedgerRow {
                affiliate_id: line.affiliate_id.clone(),
                order_id: ev.order_id.clone(),
                event_id: event_id.clone(),
                level: line.level,
                kind: line.kind,
                amount: line.amount,
                status,
                version: ev.version,
            });
            *self.balances.entry(line.affiliate_id.as_str().to_owned()).or_default().entry(column).or_default() +=
                line.amount;
        }
        for line in &delta.rewards {
            self.rewards.push(RewardRow {
                buyer_id: line.buyer_id.clone(),
                order_id: ev.order_id.clone(),
                event_id: event_id.clone(),
                kind: line.kind,
                points: line.points,
            });
            *self.points.entry(line.buyer_id.as_str().to_owned()).or_default() += line.points;
        }
        delta.commissions.len() + delta.rewards.len()
    }

    /// Inserts the ledger and reward rows.
    async fn insert_rows(&self, tx: &mut Transaction<'_, MySql>, now: DateTime<Utc>) -> Result<()> {
        if !self.ledger.is_empty() {
            let mut q = QueryBuilder::<MySql>::new(
                "INSERT INTO ledger_entries (affiliate_id, order_id, event_id, level, kind, amount, status, \
                 rule_version, created_at) ",
            );
            q.push_values(&self.ledger, |mut b, row| {
                b.push_bind(row.affiliate_id.as_str())
                    .push_bind(row.order_id.as_str())
                    .push_bind(&row.event_id)
                    .push_bind(row.level)
                    .push_bind(row.kind.as_str())
                    .push_bind(row.amount)
                    .push_bind(row.status.as_str())
                    .push_bind(row.version)
                    .push_bind(now);
            });
            q.build().execute(&mut **tx).await?;
        }
        if !self.rewards.is_empty() {
            let mut q = QueryBuilder::<MySql>::new(
                "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at) ",
            );
            q.push_values(&self.rewards, |mut b, row| {
                b.push_bind(row.buyer_id.as_str())
                    .push_bind(row.order_id.as_str())
                    .push_bind(&row.event_id)
                    .push_bind(row.kind.as_str())
                    .push_bind(row.points)
                    .push_bind(now);
            });
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Moves buyers' points and affiliates' balances by the queued amounts, one
    /// statement each. InnoDB locks the rows in primary-key order, the same
    /// order in every transaction, so transactions sharing uplines queue
    /// instead of deadlocking.
    async fn move_balances(&self, tx: &mut Transaction<'_, MySql>, now: DateTime<Utc>) -> Result<()> {
        if !self.points.is_empty() {
            let mut q = QueryBuilder::<MySql>::new("INSERT INTO buyers (id, points, updated_at) ");
            q.push_values(&self.points, |mut b, (buyer, points)| {
                b.push_bind(buyer.as_str()).push_bind(*points).push_bind(now);
            });
            q.push(" ON DUPLICATE KEY UPDATE points = points + VALUES(points), updated_at = VALUES(updated_at)");
            q.build().execute(&mut **tx).await?;
        }
        if self.balances.is_empty() {
            return Ok(());
        }
        let mut q = QueryBuilder::<MySql>::new("UPDATE affiliates SET ");
        let mut first = true;
        for column in ["pending", "approved", "paid"] {
            let moves: Vec<_> =
                self.balances.iter().filter_map(|(id, by)| by.get(column).map(|amount| (id, *amount))).collect();
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
        push_list(&mut q, self.balances.keys().map(|id| id.as_str()));
        q.push(")");
        let done = q.build().execute(&mut **tx).await?;
        if done.rows_affected() != self.balances.len() as u64 {
            return Err(corrupt(format!("balance rows missing for some of {:?}", self.balances.keys())));
        }
        Ok(())
    }
}

/// How one event leaves its order.
struct OrderUpdate<'a> {
    order_id: &'a OrderId,
    reason: Option<&'static str>,
    /// The context resolved by this event (first processing only).
    context: Option<String>,
}

/// Updates the orders in one statement: commission status from all their
/// events (this transaction's included), reason, context resolved now.
async fn update_orders(tx: &mut Transaction<'_, MySql>, updates: &[OrderUpdate<'_>], now: DateTime<Utc>) -> Result<()> {
    let mut q = QueryBuilder::<MySql>::new(format!(
        "UPDATE orders SET commission_status = ({COMMISSION_STATUS_OF_ORDER}), no_commission_reason = CASE id"
    ));
    for u in updates {
        q.push(" WHEN ").push_bind(u.order_id.as_str()).push(" THEN ").push_bind(u.reason);
    }
    q.push(" END, context = COALESCE(CASE id");
    for u in updates {
        q.push(" WHEN ").push_bind(u.order_id.as_str()).push(" THEN ").push_bind(u.context.as_deref());
    }
    q.push(" END, context), updated_at = ").push_bind(now).push(" WHERE id IN (");
    push_list(&mut q, updates.iter().map(|u| u.order_id.as_str()));
    q.push(")");
    q.build().execute(&mut **tx).await?;
    Ok(())
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

/// SQL for an order's commission status from its events' statuses, correlated
/// with `orders` in an UPDATE; the same rule as `CommissionStatus::of`.
const COMMISSION_STATUS_OF_ORDER: &str = "SELECT CASE WHEN SUM(status = 'dead') > 0 THEN 'dead' \
     WHEN SUM(status = 'failed') > 0 THEN 'failed' \
     WHEN SUM(status IN ('pending', 'processing')) > 0 THEN 'pending' ELSE 'processed' END \
     FROM events WHERE events.order_id = orders.id";

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
        let program = self.program_in(&mut tx, order.try_get("program_version")?).await?;
        let state = load_state(&mut *tx, order_id, BuyerId::from_trusted(order.try_get("buyer_id")?), &order).await?;
        let applied = load_applied(&mut tx, &[order_id]).await?.remove(order_id.as_str()).unwrap_or_default();
        tx.commit().await?;
        Ok(Some((entitle(&state, &program, &ctx), applied)))
    }
}
