//! After intake: refunds, cancellation and completion. Each commits the order's
//! new state and its event in one write transaction; the event then
//! recomputes the order's entitlement like any other (SPEC §4), so only the
//! delta is written. No row lock is taken: the single writer runs one write
//! transaction at a time, so nothing else writes the order meanwhile.
use super::codec::encode_time;
use super::orders::{insert_event, load_items};
use super::{parse_event_id, parse_event_status, parse_order_status, parse_statuses, SqliteStore};
use crate::domain::event::{EventId, EventRef, EventStatus, EventType, PartitionKey};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::order::{
    check_refund, status_after_refund, CommissionStatus, LifecycleOutcome, OrderStatus, RefundRequest,
};
use crate::store::Result;
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

struct Locked {
    status: OrderStatus,
    partition: PartitionKey,
    completed: bool,
    program_version: u64,
    /// The statuses of the order's events.
    events: Vec<EventStatus>,
}

/// The order row, with the statuses of its events, in one statement.
async fn read_order(conn: &mut SqliteConnection, id: &OrderId) -> Result<Option<Locked>> {
    let Some(row) = sqlx::query(
        "SELECT status, buyer_id, affiliate_id, completed_at, program_version, \
         (SELECT group_concat(e.status) FROM events e WHERE e.order_id = orders.id) AS events \
         FROM orders WHERE id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let affiliate = row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted);
    let buyer = BuyerId::from_trusted(row.try_get("buyer_id")?);
    Ok(Some(Locked {
        status: parse_order_status(row.try_get("status")?)?,
        partition: PartitionKey::of(affiliate.as_ref(), &buyer),
        completed: row.try_get::<Option<&str>, _>("completed_at")?.is_some(),
        program_version: row.try_get("program_version")?,
        events: parse_statuses(row.try_get("events")?)?,
    }))
}

async fn existing_event(conn: &mut SqliteConnection, id: &OrderId, kind: EventType) -> Result<Option<EventId>> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM events WHERE order_id = ? AND type = ? LIMIT 1")
        .bind(id.as_str())
        .bind(kind.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    found.map(|s| parse_event_id(&s)).transpose()
}

/// The statuses of all the order's events (this transaction's writes included).
pub(super) async fn event_statuses(conn: &mut SqliteConnection, order_id: &OrderId) -> Result<Vec<EventStatus>> {
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM events WHERE order_id = ?")
        .bind(order_id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    statuses.iter().map(|s| parse_event_status(s)).collect()
}

/// Writes the order's new status and the event that carries the change.
struct Change<'a> {
    order_id: &'a OrderId,
    /// The order's events before this change.
    events: Vec<EventStatus>,
    partition: PartitionKey,
    kind: EventType,
    status: OrderStatus,
    payload: &'a str,
    now: DateTime<Utc>,
}

impl SqliteStore {
    async fn record_change(&self, conn: &mut SqliteConnection, c: Change<'_>) -> Result<EventRef> {
        let event = EventRef { id: EventId::new(), partition: c.partition, order_id: c.order_id.clone() };
        insert_event(conn, &event, c.kind, c.order_id, c.payload, c.now, c.now + self.lease).await?;
        let commission_status = CommissionStatus::of(c.events.into_iter().chain([EventStatus::Pending]));
        sqlx::query("UPDATE orders SET status = ?, commission_status = ?, updated_at = ? WHERE id = ?")
            .bind(c.status.as_str())
            .bind(commission_status.as_str())
            .bind(encode_time(c.now)?)
            .bind(c.order_id.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(event)
    }

    pub async fn refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome> {
        let mut tx = self.begin_write().await?;
        let Some(order) = read_order(&mut tx, &req.order_id).await? else {
            return Ok(LifecycleOutcome::NotFound);
        };
        if let Some(row) =
            sqlx::query("SELECT request_hash, event_id FROM refunds WHERE order_id = ? AND refund_id = ?")
                .bind(req.order_id.as_str())
                .bind(req.refund_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
        {
            let hash: Vec<u8> = row.try_get("request_hash")?;
            if hash != req.request_hash {
                return Ok(LifecycleOutcome::Conflict(format!(
                    "refund {} was already accepted with other items",
                    req.refund_id
                )));
            }
            return Ok(LifecycleOutcome::Duplicate(parse_event_id(row.try_get("event_id")?)?));
        }
        if order.status == OrderStatus::Cancelled {
            return Ok(LifecycleOutcome::Conflict("the order is cancelled; there is nothing to refund".into()));
        }
        let items = load_items(&mut tx, &[&req.order_id]).await?.remove(&req.order_id).unwrap_or_default();
        if let Err(problems) = check_refund(&items, &req.items) {
            return Ok(LifecycleOutcome::Invalid(problems));
        }
        for (sku, qty) in &req.items {
            // Quantities are integers: SQL arithmetic on them is exact.
            sqlx::query("UPDATE order_items SET refunded = refunded + ? WHERE order_id = ? AND sku = ?")
                .bind(qty)
                .bind(req.order_id.as_str())
                .bind(sku.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let now = Utc::now();
        let change = Change {
            order_id: &req.order_id,
            events: order.events,
            partition: order.partition,
            kind: EventType::OrderRefunded,
            status: status_after_refund(&items, &req.items),
            payload: &req.payload,
            now,
        };
        let event = self.record_change(&mut tx, change).await?;
        sqlx::query(
            "INSERT INTO refunds (order_id, refund_id, request_hash, event_id, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(req.order_id.as_str())
        .bind(req.refund_id.as_str())
        .bind(&req.request_hash[..])
        .bind(event.id.to_string())
        .bind(encode_time(now)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(LifecycleOutcome::Accepted(event))
    }

    pub async fn cancel(&self, order_id: &OrderId) -> Result<LifecycleOutcome> {
        let mut tx = self.begin_write().await?;
        let Some(order) = read_order(&mut tx, order_id).await? else {
            return Ok(LifecycleOutcome::NotFound);
        };
        if let Some(id) = existing_event(&mut tx, order_id, EventType::OrderCancelled).await? {
            return Ok(LifecycleOutcome::Duplicate(id));
        }
        if order.completed {
            return Ok(LifecycleOutcome::Conflict("the order is completed; use refunds".into()));
        }
        let payload = serde_json::json!({"order_id": order_id}).to_string();
        let change = Change {
            order_id,
            events: order.events,
            partition: order.partition,
            kind: EventType::OrderCancelled,
            status: OrderStatus::Cancelled,
            payload: &payload,
            now: Utc::now(),
        };
        let event = self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(LifecycleOutcome::Accepted(event))
    }

    /// The return window is over: entries become approved `holding_days` after now.
    pub async fn complete(&self, order_id: &OrderId) -> Result<LifecycleOutcome> {
        let mut tx = self.begin_write().await?;
        let Some(order) = read_order(&mut tx, order_id).await? else {
            return Ok(LifecycleOutcome::NotFound);
        };
        if let Some(id) = existing_event(&mut tx, order_id, EventType::OrderCompleted).await? {
            return Ok(LifecycleOutcome::Duplicate(id));
        }
        if order.status == OrderStatus::Cancelled {
            return Ok(LifecycleOutcome::Conflict("the order is cancelled".into()));
        }
        let program = self.program_in(&mut tx, order.program_version).await?;
        let now = Utc::now();
        let approve_at = now + chrono::TimeDelta::days(i64::from(program.holding_days));
        sqlx::query("UPDATE orders SET completed_at = ?, approve_at = ? WHERE id = ?")
            .bind(encode_time(now)?)
            .bind(encode_time(approve_at)?)
            .bind(order_id.as_str())
            .execute(&mut *tx)
            .await?;
        // A refunded order keeps saying so; completion shows in completed_at.
        let status = if order.status == OrderStatus::Placed { OrderStatus::Completed } else { order.status };
        let payload = serde_json::json!({"order_id": order_id, "approve_at": approve_at}).to_string();
        let change = Change {
            order_id,
            events: order.events,
            partition: order.partition,
            kind: EventType::OrderCompleted,
            status,
            payload: &payload,
            now,
        };
        let event = self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(LifecycleOutcome::Accepted(event))
    }
}
