//! The operator's view of the event log: listing, inspecting, replaying, and
//! recomputing an order against its entitlement.
use super::orders::insert_event;
use super::processing::order_commission_status;
use super::{corrupt, Result, Store};
use crate::domain::entitlement::{CommissionLine, RewardLine};
use crate::domain::ids::OrderId;
use crate::domain::ledger::{delta, Applied, Delta};
use crate::event::{EventId, EventRef, EventStatus, EventType, PartitionKey};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Row};

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub kind: Option<EventType>,
    pub order_id: Option<OrderId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub order_id: OrderId,
    pub status: EventStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub error: String,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Replay {
    pub at: DateTime<Utc>,
    pub previous_status: String,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventRow,
    pub partition: String,
    pub applied_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub attempt_history: Vec<Attempt>,
    pub replay_history: Vec<Replay>,
}

/// One line of an entitlement, of the ledger, or of their difference.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Line {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_money")]
    pub amount: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
}

fn opt_money<S: serde::Serializer>(v: &Option<Decimal>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&crate::domain::money::format(*d)),
        None => s.serialize_none(),
    }
}

fn commission_line(l: &CommissionLine) -> Line {
    Line {
        affiliate_id: Some(l.affiliate_id.to_string()),
        buyer_id: None,
        level: Some(l.level),
        kind: l.kind.as_str(),
        amount: Some(l.amount),
        points: None,
    }
}

fn reward_line(l: &RewardLine) -> Line {
    Line {
        affiliate_id: None,
        buyer_id: Some(l.buyer_id.to_string()),
        level: None,
        kind: l.kind.as_str(),
        amount: None,
        points: Some(l.points),
    }
}

fn lines(d: &Delta) -> Vec<Line> {
    d.commissions.iter().map(commission_line).chain(d.rewards.iter().map(reward_line)).collect()
}

fn applied_lines(a: &Applied) -> Vec<Line> {
    let commissions =
        a.commissions.iter().filter(|(_, (_, amount))| !amount.is_zero()).map(|((aff, kind), (level, amount))| {
            commission_line(&CommissionLine { affiliate_id: aff.clone(), level: *level, kind: *kind, amount: *amount })
        });
    let rewards = a.rewards.iter().filter(|(_, p)| **p != 0).map(|((buyer, kind), points)| {
        reward_line(&RewardLine { buyer_id: buyer.clone(), kind: *kind, points: *points })
    });
    commissions.chain(rewards).collect()
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Recompute {
    pub order_id: OrderId,
    pub dry_run: bool,
    pub entitled: Vec<Line>,
    pub applied: Vec<Line>,
    pub delta: Vec<Line>,
    /// The event that writes the delta (not a dry run, and a delta to write).
    pub event_id: Option<EventId>,
    #[serde(skip)]
    pub event: Option<EventRef>,
}

#[derive(Debug)]
pub enum RecomputeOutcome {
    Done(Recompute),
    NotFound,
    /// The order has never been processed: there is no frozen context to compute with.
    NotProcessed,
}

const COLUMNS: &str = "id, type, order_id, status, attempts, last_error, created_at, updated_at";

fn event_row(r: &MySqlRow) -> Result<EventRow> {
    Ok(EventRow {
        id: EventId::parse(r.try_get("id")?).ok_or_else(|| corrupt("event id"))?,
        kind: EventType::parse(r.try_get("type")?).ok_or_else(|| corrupt("event type"))?,
        order_id: OrderId::from_trusted(r.try_get("order_id")?),
        status: EventStatus::parse(r.try_get("status")?).ok_or_else(|| corrupt("event status"))?,
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
    if let Some(t) = f.since {
        q.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        q.push(" AND created_at < ").push_bind(t);
    }
}

impl Store {
    /// Newest first; `before` is the last id of the previous page.
    pub async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRow>> {
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
        let payload: String = r.try_get("payload")?;
        Ok(Some(EventDetail {
            event: event_row(&r)?,
            partition: r.try_get("partition_key")?,
            applied_at: r.try_get("applied_at")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
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
                out.push(EventRef {
                    id: EventId::parse(&id).ok_or_else(|| corrupt("event id"))?,
                    partition: PartitionKey::from_stored(r.try_get("partition_key")?),
                });
            }
            for order in orders {
                let order = OrderId::from_trusted(order);
                let status = order_commission_status(&mut tx, &order).await?;
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
        q.build_query_scalar::<String>()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|s| EventId::parse(s).ok_or_else(|| corrupt("event id")))
            .collect()
    }

    /// What the order is entitled to, what its ledger holds, and the difference.
    /// Unless `dry_run`, a non-empty difference is written by a new
    /// `order.recomputed` event, processed like any other.
    pub async fn recompute(&self, order_id: &OrderId, dry_run: bool) -> Result<RecomputeOutcome> {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE id = ?")
            .bind(order_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Ok(RecomputeOutcome::NotFound);
        }
        let Some((entitled, applied)) = self.entitlement_and_applied(order_id).await? else {
            return Ok(RecomputeOutcome::NotProcessed);
        };
        let difference = delta(&entitled, &applied);
        let entitled_lines = lines(&delta(&entitled, &Applied::default()));
        let mut event = None;
        if !dry_run && !difference.is_empty() {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query("SELECT buyer_id, affiliate_id FROM orders WHERE id = ? FOR UPDATE")
                .bind(order_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let partition = match row.try_get::<Option<String>, _>("affiliate_id")? {
                Some(a) => PartitionKey::affiliate(&a),
                None => PartitionKey::buyer(&row.try_get::<String, _>("buyer_id")?),
            };
            let now = Utc::now();
            let e = EventRef { id: EventId::new(), partition };
            let payload = serde_json::json!({"order_id": order_id, "delta": lines(&difference)}).to_string();
            insert_event(&mut tx, &e, EventType::OrderRecomputed, order_id, &payload, now, now + self.lease).await?;
            sqlx::query("UPDATE orders SET commission_status = 'pending', updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(order_id.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            event = Some(e);
        }
        Ok(RecomputeOutcome::Done(Recompute {
            order_id: order_id.clone(),
            dry_run,
            entitled: entitled_lines,
            applied: applied_lines(&applied),
            delta: lines(&difference),
            event_id: event.as_ref().map(|e| e.id),
            event,
        }))
    }
}
