//! Orders as stored, their lifecycle changes, and approval after the
//! holding period.
use super::programs::ProgramCache;
use super::rows::{self, event_id, event_status, event_type, order_status, statuses};
use super::{Cols, Conn, Lane, Sql, SqlStore};
use crate::domain::event::{EventId, EventRef, EventType, PartitionKey};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId, ReferralCode, RefundId};
use crate::domain::ledger::EntryStatus;
use crate::domain::lifecycle::OrderHead;
use crate::domain::order::{CommissionStatus, OrderItem, OrderState, OrderStatus};
use crate::domain::program::Program;
use crate::domain::record::{EventSummary, OrderRecord};
use crate::store::{
    corrupt, ApprovalTx, EntitlementInputs, IntakeTx, OrderAttribution, OrderChange, OrderTx, Orders, Reattribution,
    Result,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[async_trait::async_trait]
impl Orders for SqlStore {
    async fn begin_intake(&self) -> Result<Box<dyn IntakeTx>> {
        Ok(Box::new(super::intake::SqlIntake::new(self.db.intake().await?, self.programs.clone())))
    }

    async fn placed(&self, id: &OrderId) -> Result<Option<(Vec<u8>, EventId)>> {
        let q = Sql::new(
            "SELECT o.request_hash, e.id AS event_id FROM orders o \
             JOIN events e ON e.order_id = o.id AND e.type = 'order.placed' WHERE o.id = ?",
        )
        .arg(id);
        let Some(row) = self.read().await?.optional(&q).await? else { return Ok(None) };
        Ok(Some((row.bytes("request_hash")?, event_id(&row.text("event_id")?)?)))
    }

    async fn order(&self, id: &OrderId) -> Result<Option<OrderRecord>> {
        let mut conn = self.snapshot().await?;
        let Some(row) = conn
            .optional(
                &Sql::new(
                    "SELECT id, buyer_id, affiliate_id, referral_code, attribution_note, attribution, status, currency, \
                     placed_at, total, program_version, commission_status, no_commission_reason, created_at, \
                     fx_rate, fx_source, fx_as_of, context, limits, buyer_email_hash FROM orders WHERE id = ?",
                )
                .arg(id),
            )
            .await?
        else {
            return Ok(None);
        };
        let status = order_status(&row.text("status")?)?;
        let items = load_items(conn.as_mut(), &[id]).await?.remove(id).unwrap_or_default();
        let events = conn
            .fetch(&Sql::new("SELECT id, type, status FROM events WHERE order_id = ? ORDER BY created_at, id").arg(id))
            .await?;
        let events = rows::all(&events, |r| {
            Ok(EventSummary {
                id: event_id(&r.text("id")?)?,
                kind: event_type(&r.text("type")?)?,
                status: event_status(&r.text("status")?)?,
            })
        })?;
        let ledger = format!("SELECT {} FROM ledger_entries WHERE order_id = ? ORDER BY id", rows::LEDGER_COLUMNS);
        let commissions = rows::all(&conn.fetch(&Sql::new(ledger).arg(id)).await?, rows::ledger_entry)?;
        let rewards = format!("SELECT {} FROM reward_entries WHERE order_id = ? ORDER BY id", rows::REWARD_COLUMNS);
        let rewards = rows::all(&conn.fetch(&Sql::new(rewards).arg(id)).await?, rows::reward_entry)?;
        conn.commit().await?;
        let commission_status = row.text("commission_status")?;
        let attribution = decision(row.as_ref())?;
        Ok(Some(OrderRecord {
            id: id.clone(),
            affiliate_id: row.opt_text("affiliate_id")?.map(AffiliateId::from_trusted),
            referral_code: row.opt_text("referral_code")?.map(ReferralCode::from_trusted),
            attribution_note: row.opt_text("attribution_note")?,
            attribution,
            status,
            currency: row.text("currency")?,
            buyer_email_hash: row.opt_text("buyer_email_hash")?.map(crate::domain::affiliate::EmailHash::from_trusted),
            placed_at: row.time("placed_at")?,
            total: row.money("total")?,
            program_version: row.uint("program_version")?,
            commission_status: CommissionStatus::parse(&commission_status)
                .ok_or_else(|| corrupt(format!("commission status {commission_status:?}")))?,
            no_commission_reason: row.opt_text("no_commission_reason")?,
            state: OrderState {
                buyer_id: BuyerId::from_trusted(row.text("buyer_id")?),
                items,
                cancelled: status == OrderStatus::Cancelled,
                fx_rate: rows::fx_rate(row.as_ref())?,
            },
            fx: rows::fx(row.as_ref())?,
            context: row.opt_text("context")?,
            limits: row.opt_text("limits")?,
            commissions,
            rewards,
            events,
        }))
    }

    async fn list_orders(
        &self,
        filter: &crate::store::OrderFilter,
        before: Option<&(DateTime<Utc>, OrderId)>,
        limit: u32,
    ) -> Result<Vec<crate::store::OrderSummary>> {
        use crate::store::OrdersOf;
        // ix_orders_affiliate_placed / ix_orders_buyer_placed: (who, placed_at, id), read backwards.
        let mut q = Sql::new(
            "SELECT id, buyer_id, affiliate_id, placed_at, currency, total, status, commission_status FROM orders WHERE ",
        );
        match &filter.of {
            OrdersOf::Affiliate(a) => q.push("affiliate_id = ").bind(a.as_str()),
            OrdersOf::Buyer(b) => q.push("buyer_id = ").bind(b.as_str()),
        };
        if let Some(since) = filter.since {
            q.push(" AND placed_at >= ").bind(since);
        }
        if let Some(until) = filter.until {
            q.push(" AND placed_at < ").bind(until);
        }
        if let Some((at, id)) = before {
            q.push(" AND (placed_at < ").bind(*at).push(" OR (placed_at = ").bind(*at);
            q.push(" AND id < ").bind(id.as_str()).push("))");
        }
        if let Some(status) = filter.commission_status {
            q.push(" AND commission_status = ").bind(status.as_str());
        }
        q.push(" ORDER BY placed_at DESC, id DESC LIMIT ").bind(limit);
        rows::all(&self.read().await?.fetch(&q).await?, |r| {
            let commission_status = r.text("commission_status")?;
            Ok(crate::store::OrderSummary {
                id: OrderId::from_trusted(r.text("id")?),
                buyer_id: BuyerId::from_trusted(r.text("buyer_id")?),
                affiliate_id: r.opt_text("affiliate_id")?.map(AffiliateId::from_trusted),
                placed_at: r.time("placed_at")?,
                currency: r.text("currency")?,
                total: r.money("total")?,
                status: order_status(&r.text("status")?)?,
                commission_status: CommissionStatus::parse(&commission_status)
                    .ok_or_else(|| corrupt(format!("commission status {commission_status:?}")))?,
            })
        })
    }

    async fn order_exists(&self, id: &OrderId) -> Result<bool> {
        Ok(self.read().await?.optional(&Sql::new("SELECT id FROM orders WHERE id = ?").arg(id)).await?.is_some())
    }

    /// Read under a shared lock on the order (one read transaction on SQLite:
    /// a consistent snapshot).
    async fn entitlement_inputs(&self, id: &OrderId) -> Result<Option<EntitlementInputs>> {
        let mut conn = self.snapshot().await?;
        let q = format!(
            "SELECT buyer_id, status, program_version, context, limits, fx_rate FROM orders WHERE id = ?{}",
            conn.dialect().for_share
        );
        let Some(order) = conn.optional(&Sql::new(q).arg(id)).await? else { return Ok(None) };
        let Some(context) = order.opt_text("context")? else { return Ok(None) };
        let items = load_items(conn.as_mut(), &[id]).await?.remove(id).unwrap_or_default();
        let applied = super::apply::load_applied(conn.as_mut(), &[id]).await?.remove(id).unwrap_or_default();
        conn.commit().await?;
        Ok(Some(EntitlementInputs {
            program_version: order.uint("program_version")?,
            state: OrderState {
                buyer_id: BuyerId::from_trusted(order.text("buyer_id")?),
                items,
                cancelled: order_status(&order.text("status")?)? == OrderStatus::Cancelled,
                fx_rate: rows::fx_rate(order.as_ref())?,
            },
            context,
            limits: order.opt_text("limits")?,
            applied,
        }))
    }

    async fn entitlement_inputs_of(&self, ids: &[OrderId]) -> Result<Vec<(OrderId, EntitlementInputs)>> {
        let mut conn = self.snapshot().await?;
        let refs: Vec<&OrderId> = ids.iter().collect();
        let orders = conn
            .fetch_chunked(&refs, 1, |chunk| {
                let mut q = Sql::new(
                    "SELECT id, buyer_id, status, program_version, context, limits, fx_rate FROM orders \
                     WHERE commission_status = 'processed' AND context IS NOT NULL AND id IN (",
                );
                q.list(chunk.iter().copied()).push(")");
                q
            })
            .await?;
        let mut items = load_items(conn.as_mut(), &refs).await?;
        let mut applied = super::apply::load_applied(conn.as_mut(), &refs).await?;
        conn.commit().await?;
        orders
            .iter()
            .map(|o| {
                let id = OrderId::from_trusted(o.text("id")?);
                let inputs = EntitlementInputs {
                    program_version: o.uint("program_version")?,
                    state: OrderState {
                        buyer_id: BuyerId::from_trusted(o.text("buyer_id")?),
                        items: items.remove(&id).unwrap_or_default(),
                        cancelled: order_status(&o.text("status")?)? == OrderStatus::Cancelled,
                        fx_rate: rows::fx_rate(o.as_ref())?,
                    },
                    context: o.text("context")?,
                    limits: o.opt_text("limits")?,
                    applied: applied.remove(&id).unwrap_or_default(),
                };
                Ok((id, inputs))
            })
            .collect()
    }

    async fn processed_orders(&self, after: &str, limit: u32) -> Result<Vec<OrderId>> {
        let q = Sql::new("SELECT id FROM orders WHERE commission_status = 'processed' AND id > ? ORDER BY id LIMIT ?")
            .arg(after)
            .arg(limit);
        let rows = self.read().await?.fetch(&q).await?;
        rows::all(&rows, |r| Ok(OrderId::from_trusted(r.text("id")?)))
    }

    async fn begin_order(&self) -> Result<Box<dyn OrderTx>> {
        Ok(Box::new(SqlOrderTx { conn: self.write(Lane::Request).await?, programs: self.programs.clone() }))
    }

    async fn due_approvals(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OrderId>> {
        let q =
            Sql::new("SELECT id FROM orders WHERE approved_at IS NULL AND approve_at <= ? ORDER BY approve_at LIMIT ?")
                .arg(super::Arg::Bound(now))
                .arg(limit);
        let rows = self.db.read(Lane::Work, false).await?.fetch(&q).await?;
        rows::all(&rows, |r| Ok(OrderId::from_trusted(r.text("id")?)))
    }

    async fn begin_approval(&self) -> Result<Box<dyn ApprovalTx>> {
        Ok(Box::new(SqlApproval { conn: self.write(Lane::Work).await? }))
    }
}

/// The items of these orders, each order's in line order, keyed by order id.
pub async fn load_items(conn: &mut dyn Conn, orders: &[&OrderId]) -> Result<HashMap<OrderId, Vec<OrderItem>>> {
    let mut items: HashMap<OrderId, Vec<OrderItem>> = HashMap::with_capacity(orders.len());
    let rows = conn
        .fetch_chunked(orders, 1, |chunk| {
            let mut q = Sql::new(
                "SELECT order_id, sku, category, quantity, refunded, unit_price FROM order_items WHERE order_id IN (",
            );
            q.list(chunk.iter().copied()).push(") ORDER BY order_id, line_no");
            q
        })
        .await?;
    for r in &rows {
        let (order, item) = rows::order_item(r.as_ref())?;
        items.entry(order).or_default().push(item);
    }
    Ok(items)
}

/// Inserts an event, pending, due for recovery at `next_attempt_at`.
pub async fn insert_event(
    conn: &mut dyn Conn,
    event: &EventRef,
    kind: EventType,
    payload: &str,
    now: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
) -> Result<()> {
    let q = Sql::new(
        "INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, \
         created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
    )
    .arg(event.id)
    .arg(kind.as_str())
    .arg(&event.order_id)
    .arg(&event.partition)
    .arg(payload)
    .arg(next_attempt_at)
    .arg(now)
    .arg(now);
    conn.execute(&q).await?;
    Ok(())
}

struct SqlOrderTx {
    conn: Box<dyn Conn>,
    programs: ProgramCache,
}

#[async_trait::async_trait]
impl OrderTx for SqlOrderTx {
    /// The order row, locked (the lock keeps other writers of the order out),
    /// with the statuses of its events, in one statement.
    async fn lock_order(&mut self, id: &OrderId) -> Result<Option<OrderHead>> {
        let q = format!(
            "SELECT status, buyer_id, affiliate_id, completed_at, program_version, \
             (SELECT group_concat(e.status) FROM events e WHERE e.order_id = orders.id) AS events, \
             (SELECT MIN(p.partition_key) FROM events p WHERE p.order_id = orders.id AND p.type = 'order.placed') \
             AS first_partition FROM orders WHERE id = ?{}",
            self.conn.dialect().for_update
        );
        let Some(row) = self.conn.optional(&Sql::new(q).arg(id)).await? else { return Ok(None) };
        Ok(Some(OrderHead {
            buyer_id: BuyerId::from_trusted(row.text("buyer_id")?),
            affiliate_id: row.opt_text("affiliate_id")?.map(AffiliateId::from_trusted),
            status: order_status(&row.text("status")?)?,
            completed: row.opt_time("completed_at")?.is_some(),
            program_version: row.uint("program_version")?,
            events: statuses(row.opt_text("events")?)?,
            first_partition: row.opt_text("first_partition")?.map(PartitionKey::from_stored),
        }))
    }

    async fn refund(&mut self, order: &OrderId, refund: &RefundId) -> Result<Option<(Vec<u8>, EventId)>> {
        let q = Sql::new("SELECT request_hash, event_id FROM refunds WHERE order_id = ? AND refund_id = ?")
            .arg(order)
            .arg(refund);
        let Some(row) = self.conn.optional(&q).await? else { return Ok(None) };
        Ok(Some((row.bytes("request_hash")?, event_id(&row.text("event_id")?)?)))
    }

    async fn event_of(&mut self, order: &OrderId, kind: EventType) -> Result<Option<EventId>> {
        let q = Sql::new("SELECT id FROM events WHERE order_id = ? AND type = ? LIMIT 1").arg(order).arg(kind.as_str());
        self.conn.optional(&q).await?.map(|r| event_id(&r.text("id")?)).transpose()
    }

    async fn items(&mut self, order: &OrderId) -> Result<Vec<OrderItem>> {
        Ok(load_items(self.conn.as_mut(), &[order]).await?.remove(order).unwrap_or_default())
    }

    async fn program(&mut self, version: u64) -> Result<Arc<Program>> {
        self.programs.get(self.conn.as_mut(), version).await
    }

    async fn attribution(&mut self, order: &OrderId) -> Result<OrderAttribution> {
        let q = Sql::new(
            "SELECT affiliate_id, referral_code, attribution_note, attribution, placed_at, original_eligible, \
             approved_at, created_at FROM orders WHERE id = ?",
        )
        .arg(order);
        let row = self.conn.one(&q).await?;
        Ok(OrderAttribution {
            decision: decision(row.as_ref())?,
            placed_at: row.time("placed_at")?,
            original_eligible: row.money("original_eligible")?,
            approved: row.opt_time("approved_at")?.is_some(),
        })
    }

    async fn affiliate_exists(&mut self, id: &AffiliateId) -> Result<bool> {
        Ok(self.conn.optional(&Sql::new("SELECT id FROM affiliates WHERE id = ?").arg(id)).await?.is_some())
    }

    async fn reattribute(&mut self, order: &OrderId, r: &Reattribution<'_>) -> Result<()> {
        // Both months in key order, as intake locks them.
        let mut shifts: Vec<(&AffiliateId, bool)> = r.from.map(|f| (f, false)).into_iter().collect();
        shifts.push((r.to, true));
        shifts.sort_by(|a, b| a.0.cmp(b.0));
        for (affiliate, add) in shifts {
            let volume = if add { r.original_eligible } else { -r.original_eligible };
            super::attribution::shift_month(self.conn.as_mut(), affiliate, r.month_start, volume, add).await?;
        }
        let q = Sql::new(
            "UPDATE orders SET affiliate_id = ?, attribution = ?, attribution_note = NULL, context = NULL, \
             updated_at = ? WHERE id = ?",
        )
        .arg(r.to)
        .arg(r.decision.to_json())
        .arg(r.now)
        .arg(order);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn write(&mut self, order: &OrderId, c: &OrderChange<'_>) -> Result<()> {
        let conn = self.conn.as_mut();
        for (sku, qty) in c.refunded {
            // Quantities are integers: SQL arithmetic on them is exact.
            let q = Sql::new("UPDATE order_items SET refunded = refunded + ? WHERE order_id = ? AND sku = ?")
                .arg(*qty)
                .arg(order)
                .arg(sku);
            conn.execute(&q).await?;
        }
        insert_event(conn, c.event, c.kind, c.payload, c.now, c.next_attempt_at).await?;
        // The order's row in one statement (a completion's times included).
        let mut q = Sql::new("UPDATE orders SET commission_status = ");
        q.bind(c.commission_status.as_str()).push(", updated_at = ").bind(c.now);
        if let Some(status) = c.status {
            q.push(", status = ").bind(status.as_str());
        }
        if let Some(approve_at) = c.approve_at {
            q.push(", completed_at = ").bind(c.now).push(", approve_at = ").bind(approve_at);
        }
        q.push(" WHERE id = ").bind(order);
        conn.execute(&q).await?;
        if let Some((refund_id, hash)) = c.refund {
            let q = Sql::new(
                "INSERT INTO refunds (order_id, refund_id, request_hash, event_id, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .arg(order)
            .arg(refund_id)
            .arg(hash)
            .arg(c.event.id)
            .arg(c.now);
            conn.execute(&q).await?;
        }
        super::events::tally(conn, c.kind, 1, c.event.id).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}

struct SqlApproval {
    conn: Box<dyn Conn>,
}

#[async_trait::async_trait]
impl ApprovalTx for SqlApproval {
    async fn still_due(&mut self, id: &OrderId, now: DateTime<Utc>) -> Result<bool> {
        let q = format!(
            "SELECT 1 AS due FROM orders WHERE id = ? AND approved_at IS NULL AND approve_at <= ?{}",
            self.conn.dialect().for_update
        );
        Ok(self.conn.optional(&Sql::new(q).arg(id).arg(now)).await?.is_some())
    }

    async fn approve(&mut self, id: &OrderId, now: DateTime<Utc>) -> Result<Vec<(AffiliateId, Decimal)>> {
        approve(self.conn.as_mut(), id, now).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}

/// Moves an order's pending entries to approved, balances with them, and
/// marks the order approved. The caller holds the order row lock. Returns
/// the amount approved per affiliate.
pub async fn approve(conn: &mut dyn Conn, order: &OrderId, now: DateTime<Utc>) -> Result<Vec<(AffiliateId, Decimal)>> {
    let sum = (conn.dialect().sum)("amount");
    let q = format!(
        "SELECT affiliate_id, {sum} AS amount FROM ledger_entries WHERE order_id = ? AND status = 'pending' \
         GROUP BY affiliate_id ORDER BY affiliate_id"
    );
    let sums = conn.fetch(&Sql::new(q).arg(order)).await?;
    let mut moves: super::BalanceMoves = BTreeMap::new();
    let mut approved = Vec::with_capacity(sums.len());
    for r in &sums {
        let amount: Decimal = r.sum("amount")?;
        approved.push((AffiliateId::from_trusted(r.text("affiliate_id")?), amount));
        let by = moves.entry(AffiliateId::from_trusted(r.text("affiliate_id")?)).or_default();
        by.insert(EntryStatus::Pending, -amount);
        by.insert(EntryStatus::Approved, amount);
    }
    let q =
        Sql::new("UPDATE ledger_entries SET status = 'approved' WHERE order_id = ? AND status = 'pending'").arg(order);
    conn.execute(&q).await?;
    conn.move_balances(&moves).await?;
    let q = Sql::new("UPDATE orders SET approved_at = ?, updated_at = ? WHERE id = ?").arg(now).arg(now).arg(order);
    conn.execute(&q).await?;
    Ok(approved)
}

/// The statuses of all the order's events (this transaction's writes included).
pub async fn order_events(conn: &mut dyn Conn, order: &OrderId) -> Result<Vec<crate::domain::event::EventStatus>> {
    let rows = conn.fetch(&Sql::new("SELECT status FROM events WHERE order_id = ?").arg(order)).await?;
    rows::all(&rows, |r: &dyn Cols| event_status(&r.text("status")?))
}

super::webhooks::notify_tx!(SqlApproval);

/// An order row's attribution decision: the stored one, or the one its
/// columns imply (columns `attribution`, `affiliate_id`, `referral_code`,
/// `attribution_note`, `created_at`).
fn decision(row: &dyn Cols) -> Result<crate::domain::attribution::Decision> {
    crate::domain::attribution::Decision::of_stored(
        row.opt_text("attribution")?.as_deref(),
        row.opt_text("affiliate_id")?.map(AffiliateId::from_trusted),
        row.opt_text("referral_code")?.as_deref(),
        row.opt_text("attribution_note")?.as_deref(),
        row.time("created_at")?,
    )
    .map_err(corrupt)
}
super::audit::audit_tx!(SqlOrderTx);
