//! After intake: refunds, cancellation and completion. Each commits the order's
//! new state and its event in one transaction; the event then recomputes the
//! order's entitlement like any other (SPEC §4), so only the delta is written.
use super::orders::{insert_event, OrderStatus};
use super::{corrupt, Result, Store};
use crate::domain::ids::{OrderId, RefundId, Sku};
use crate::domain::FieldError;
use crate::event::{EventId, EventRef, EventType, PartitionKey};
use chrono::{DateTime, Utc};
use sqlx::{MySql, Row, Transaction};

#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    pub items: Vec<(Sku, u32)>,
    pub request_hash: [u8; 32],
    pub payload: String,
}

#[derive(Debug)]
pub enum LifecycleOutcome {
    Accepted(EventRef),
    /// The same request was accepted before: its event.
    Duplicate(EventId),
    Conflict(String),
    Invalid(Vec<FieldError>),
    NotFound,
}

struct Locked {
    status: OrderStatus,
    partition: PartitionKey,
    completed: bool,
    program_version: u64,
}

async fn lock_order(tx: &mut Transaction<'_, MySql>, id: &OrderId) -> Result<Option<Locked>> {
    let Some(row) = sqlx::query(
        "SELECT status, buyer_id, affiliate_id, completed_at, program_version FROM orders WHERE id = ? FOR UPDATE",
    )
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let affiliate: Option<String> = row.try_get("affiliate_id")?;
    let buyer: String = row.try_get("buyer_id")?;
    Ok(Some(Locked {
        status: OrderStatus::parse(row.try_get("status")?)?,
        partition: match affiliate {
            Some(a) => PartitionKey::affiliate(&a),
            None => PartitionKey::buyer(&buyer),
        },
        completed: row.try_get::<Option<DateTime<Utc>>, _>("completed_at")?.is_some(),
        program_version: row.try_get("program_version")?,
    }))
}

async fn existing_event(tx: &mut Transaction<'_, MySql>, id: &OrderId, kind: EventType) -> Result<Option<EventId>> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM events WHERE order_id = ? AND type = ? LIMIT 1")
        .bind(id.as_str())
        .bind(kind.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    found.map(|s| EventId::parse(&s).ok_or_else(|| corrupt("event id"))).transpose()
}

/// Writes the order's new status and the event that carries the change.
struct Change<'a> {
    order_id: &'a OrderId,
    partition: PartitionKey,
    kind: EventType,
    status: OrderStatus,
    payload: &'a str,
    now: DateTime<Utc>,
}

impl Store {
    async fn record_change(&self, tx: &mut Transaction<'_, MySql>, c: Change<'_>) -> Result<EventRef> {
        sqlx::query("UPDATE orders SET status = ?, commission_status = 'pending', updated_at = ? WHERE id = ?")
            .bind(c.status.as_str())
            .bind(c.now)
            .bind(c.order_id.as_str())
            .execute(&mut **tx)
            .await?;
        let event = EventRef { id: EventId::new(), partition: c.partition };
        insert_event(tx, &event, c.kind, c.order_id, c.payload, c.now, c.now + self.lease).await?;
        Ok(event)
    }
}

impl Store {
    pub async fn refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome> {
        let mut tx = self.pool.begin().await?;
        let Some(order) = lock_order(&mut tx, &req.order_id).await? else {
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
            let id: String = row.try_get("event_id")?;
            return Ok(LifecycleOutcome::Duplicate(EventId::parse(&id).ok_or_else(|| corrupt("event id"))?));
        }
        if order.status == OrderStatus::Cancelled {
            return Ok(LifecycleOutcome::Conflict("the order is cancelled; there is nothing to refund".into()));
        }
        let rows = sqlx::query("SELECT sku, quantity, refunded FROM order_items WHERE order_id = ?")
            .bind(req.order_id.as_str())
            .fetch_all(&mut *tx)
            .await?;
        let mut left: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        for r in &rows {
            let quantity: u32 = r.try_get("quantity")?;
            let refunded: u32 = r.try_get("refunded")?;
            left.insert(r.try_get("sku")?, quantity - refunded);
        }
        let mut errors = Vec::new();
        for (n, (sku, qty)) in req.items.iter().enumerate() {
            match left.get(sku.as_str()) {
                None => errors.push(FieldError::new(format!("items[{n}].sku"), "this order has no such sku")),
                Some(available) if qty > available => errors
                    .push(FieldError::new(format!("items[{n}].quantity"), format!("only {available} left to refund"))),
                Some(_) => {}
            }
        }
        if !errors.is_empty() {
            return Ok(LifecycleOutcome::Invalid(errors));
        }
        for (sku, qty) in &req.items {
            sqlx::query("UPDATE order_items SET refunded = refunded + ? WHERE order_id = ? AND sku = ?")
                .bind(qty)
                .bind(req.order_id.as_str())
                .bind(sku.as_str())
                .execute(&mut *tx)
                .await?;
            if let Some(l) = left.get_mut(sku.as_str()) {
                *l -= qty;
            }
        }
        let status =
            if left.values().all(|l| *l == 0) { OrderStatus::Refunded } else { OrderStatus::PartiallyRefunded };
        let now = Utc::now();
        let change = Change {
            order_id: &req.order_id,
            partition: order.partition,
            kind: EventType::OrderRefunded,
            status,
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
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(LifecycleOutcome::Accepted(event))
    }

    pub async fn cancel(&self, order_id: &OrderId) -> Result<LifecycleOutcome> {
        let mut tx = self.pool.begin().await?;
        let Some(order) = lock_order(&mut tx, order_id).await? else {
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
        let mut tx = self.pool.begin().await?;
        let Some(order) = lock_order(&mut tx, order_id).await? else {
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
            .bind(now)
            .bind(approve_at)
            .bind(order_id.as_str())
            .execute(&mut *tx)
            .await?;
        // A refunded order keeps saying so; completion shows in completed_at.
        let status = if order.status == OrderStatus::Placed { OrderStatus::Completed } else { order.status };
        let payload = serde_json::json!({"order_id": order_id, "approve_at": approve_at}).to_string();
        let change = Change {
            order_id,
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
