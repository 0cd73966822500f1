//! The operator's view of the event log: listing, inspecting, replaying; and
//! what recompute reads and writes of an order.
use super::apply::load_applied;
use super::lifecycle::event_statuses;
use super::orders::{insert_event, load_items};
use super::{parse_event_id, parse_event_status, parse_event_type, parse_order_status, MySqlStore};
use crate::domain::event::{
    Attempt, EventCounts, EventDetail, EventFilter, EventId, EventRecord, EventRef, EventType, PartitionKey, Replay,
};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::order::{CommissionStatus, OrderState, OrderStatus};
use crate::store::{EntitlementInputs, Result};
use chrono::Utc;
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Row};

const COLUMNS: &str = "id, type, order_id, status, attempts, last_error, created_at, updated_at";

fn event_row(r: &MySqlRow) -> Result<EventRecord> {
    Ok(EventRecord {
        id: parse_event_id(r.try_get("id")?)?,
        kind: parse_event_type(r.try_get("type")?)?,
        order_id: Some(r.try_get::<String, _>("order_id")?).filter(|o| !o.is_empty()).map(OrderId::from_trusted),
        status: parse_event_status(r.try_get("status")?)?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn push_filter(q: &mut QueryBuilder<'_, MySql>, f: &EventFilter) {
    if let Some(s) = f.status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(k) = f.kind {
        q.push(" AND type = ").push_bind(k.as_str());
    }
    if let Some(o) = &f.order_id {
        q.push(" AND order_id = ").push_bind(o.as_str().to_owned());
    }
    // Bound as DATETIME (naive UTC, as the column holds it): a chrono
    // `DateTime<Utc>` goes as TIMESTAMP, whose range ends in 2038, and a bound
    // past it matched nothing.
    if let Some(t) = f.since {
        q.push(" AND created_at >= ").push_bind(t.naive_utc());
    }
    if let Some(t) = f.until {
        q.push(" AND created_at < ").push_bind(t.naive_utc());
    }
}

impl MySqlStore {
    /// Newest first; `before` is the last id of the previous page.
    pub async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>> {
        let mut q = QueryBuilder::<MySql>::new(format!("SELECT {COLUMNS} FROM events WHERE 1 = 1"));
        push_filter(&mut q, f);
        if let Some(b) = before {
            q.push(" AND id < ").push_bind(b.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        q.build().fetch_all(&self.pool).await?.iter().map(event_row).collect()
    }

    pub async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>> {
        let Some(r) = sqlx::query(&format!(
            "SELECT {COLUMNS}, partition_key, applied_at, next_attempt_at, payload FROM events WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempt_history = sqlx::query("SELECT at, error FROM event_attempts WHERE event_id = ? ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|a| Ok(Attempt { at: a.try_get("at")?, error: a.try_get("error")? }))
            .collect::<Result<Vec<_>>>()?;
        let replay_history =
            sqlx::query("SELECT at, previous_status FROM event_replays WHERE event_id = ? ORDER BY id")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|a| Ok(Replay { at: a.try_get("at")?, previous_status: a.try_get("previous_status")? }))
                .collect::<Result<Vec<_>>>()?;
        Ok(Some(EventDetail {
            event: event_row(&r)?,
            partition: r.try_get("partition_key")?,
            applied_at: r.try_get("applied_at")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            payload: r.try_get("payload")?,
            attempt_history,
            replay_history,
        }))
    }

    /// Puts failed and dead events back to pending with a fresh attempt budget
    /// (their history stays), records the replay, and returns what to journal.
    /// A done event is only recorded and journaled: processing it is a no-op.
    pub async fn replay(&self, ids: &[EventId]) -> Result<Vec<EventRef>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut tx = self.pool.begin().await?;
            let mut q =
                QueryBuilder::<MySql>::new("SELECT id, order_id, status, partition_key FROM events WHERE id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(id.to_string());
            }
            q.push(") ORDER BY id FOR UPDATE");
            let rows = q.build().fetch_all(&mut *tx).await?;
            let now = Utc::now();
            let mut orders = std::collections::BTreeSet::new();
            for r in &rows {
                let id: String = r.try_get("id")?;
                let status: String = r.try_get("status")?;
                if status == "failed" || status == "dead" {
                    sqlx::query(
                        "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ? WHERE id = ?",
                    )
                    .bind(now + self.lease)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                    orders.insert(r.try_get::<String, _>("order_id")?);
                }
                sqlx::query("INSERT INTO event_replays (event_id, at, previous_status) VALUES (?, ?, ?)")
                    .bind(&id)
                    .bind(now)
                    .bind(&status)
                    .execute(&mut *tx)
                    .await?;
                let order_id: String = r.try_get("order_id")?;
                if order_id.is_empty() {
                    // A wallet event was applied when it was recorded: nothing to journal.
                    continue;
                }
                out.push(EventRef {
                    order_id: OrderId::from_trusted(order_id),
                    id: parse_event_id(&id)?,
                    partition: PartitionKey::from_stored(r.try_get("partition_key")?),
                });
            }
            for order in orders {
                let order = OrderId::from_trusted(order);
                let status = CommissionStatus::of(event_statuses(&mut tx, &order).await?);
                sqlx::query("UPDATE orders SET commission_status = ? WHERE id = ?")
                    .bind(status.as_str())
                    .bind(order.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(out)
    }

    /// Ids of the events a bulk replay selects (failed or dead only).
    pub async fn select_for_replay(&self, f: &EventFilter) -> Result<Vec<EventId>> {
        let mut q = QueryBuilder::<MySql>::new("SELECT id FROM events WHERE status IN ('failed', 'dead')");
        push_filter(&mut q, f);
        q.push(" ORDER BY id LIMIT 100000");
        q.build_query_scalar::<String>().fetch_all(&self.pool).await?.iter().map(|s| parse_event_id(s)).collect()
    }

    /// Events matching the filter (its status ignored), counted per status.
    pub async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts> {
        let f = EventFilter { status: None, ..f.clone() };
        let mut q = QueryBuilder::<MySql>::new("SELECT status, COUNT(*) AS n FROM events WHERE 1 = 1");
        push_filter(&mut q, &f);
        q.push(" GROUP BY status");
        let mut counts = EventCounts::default();
        for r in q.build().fetch_all(&self.pool).await? {
            let n: i64 = r.try_get("n")?;
            counts.add(parse_event_status(r.try_get("status")?)?, u64::try_from(n).map_err(crate::store::corrupt)?);
        }
        Ok(counts)
    }

    pub async fn order_exists(&self, id: &OrderId) -> Result<bool> {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(exists.is_some())
    }

    /// The order's state, program version, frozen context and applied ledger,
    /// read under a shared lock on the order; None when the order does not
    /// exist or has not been processed yet (its context is not resolved).
    pub async fn entitlement_inputs(&self, order_id: &OrderId) -> Result<Option<EntitlementInputs>> {
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
        let status = parse_order_status(order.try_get("status")?)?;
        let items = load_items(&mut *tx, &[order_id]).await?.remove(order_id).unwrap_or_default();
        let applied = load_applied(&mut tx, &[order_id]).await?.remove(order_id).unwrap_or_default();
        tx.commit().await?;
        Ok(Some(EntitlementInputs {
            program_version: order.try_get("program_version")?,
            state: OrderState {
                buyer_id: BuyerId::from_trusted(order.try_get("buyer_id")?),
                items,
                cancelled: status == OrderStatus::Cancelled,
            },
            context,
            applied,
        }))
    }

    /// Stores an `order.recomputed` event for the order (its commission
    /// status becomes pending with it).
    pub async fn add_recompute_event(&self, order_id: &OrderId, payload: &str) -> Result<EventRef> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT buyer_id, affiliate_id FROM orders WHERE id = ? FOR UPDATE")
            .bind(order_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let affiliate = row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted);
        let partition = PartitionKey::of(affiliate.as_ref(), &BuyerId::from_trusted(row.try_get("buyer_id")?));
        let now = Utc::now();
        let e = EventRef { id: EventId::new(), partition, order_id: order_id.clone() };
        insert_event(&mut tx, &e, EventType::OrderRecomputed, order_id, payload, now, now + self.lease).await?;
        let status = CommissionStatus::of(event_statuses(&mut tx, order_id).await?);
        sqlx::query("UPDATE orders SET commission_status = ?, updated_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(now)
            .bind(order_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(e)
    }
}
