//! The event log's bookkeeping: failed attempts and their history, and what
//! recovery must journal again.
use super::codec::encode_time;
use super::lifecycle::event_statuses;
use super::{parse_event_id, parse_event_status, parse_event_type, push_list, SqliteStore, IN_CHUNK};
use crate::domain::event::{Backlog, EventId, EventRef, EventStatus, EventType, PartitionKey};
use crate::domain::ids::OrderId;
use crate::domain::order::CommissionStatus;
use crate::store::{corrupt, FailureDecision, Result};
use chrono::Utc;
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;

impl SqliteStore {
    /// Records a failed attempt: attempts + 1, the error kept in the history, and
    /// either a retry time (`failed`) or `dead` once the policy is exhausted.
    /// A done or dead event is left as it is. Returns the event's status after.
    pub async fn record_failure(
        &self,
        id: EventId,
        error: &str,
        decide: &(dyn Fn(u32) -> FailureDecision + Send + Sync),
    ) -> Result<(EventStatus, EventType)> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query("SELECT type, status, attempts, order_id FROM events WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(corrupt(format!("no event {id}")));
        };
        let kind = parse_event_type(row.try_get("type")?)?;
        let status = parse_event_status(row.try_get("status")?)?;
        if matches!(status, EventStatus::Done | EventStatus::Dead) {
            return Ok((status, kind));
        }
        let attempts: u32 = row.try_get::<u32, _>("attempts")? + 1;
        let order_id = OrderId::from_trusted(row.try_get("order_id")?);
        let (next, retry_at) = decide(attempts);
        let now = encode_time(Utc::now())?;
        // Errors can be long (a whole SQL message); keep the history readable.
        let error: String = error.chars().take(2000).collect();
        sqlx::query(
            "UPDATE events SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(next.as_str())
        .bind(attempts)
        .bind(&error)
        .bind(encode_time(retry_at)?)
        .bind(&now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO event_attempts (event_id, at, error) VALUES (?, ?, ?)")
            .bind(id.to_string())
            .bind(&now)
            .bind(&error)
            .execute(&mut *tx)
            .await?;
        let commission_status = CommissionStatus::of(event_statuses(&mut tx, &order_id).await?);
        sqlx::query("UPDATE orders SET commission_status = ?, updated_at = ? WHERE id = ?")
            .bind(commission_status.as_str())
            .bind(&now)
            .bind(order_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((next, kind))
    }

    /// Open events whose lease or retry time has passed, oldest due first; their
    /// next_attempt_at moves one lease ahead so the next sweep does not journal
    /// them again while they wait in the journal. One write transaction.
    pub async fn take_due_events(&self, limit: u32) -> Result<Vec<EventRef>> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id, partition_key, order_id FROM events WHERE status IN ('pending', 'processing', 'failed') \
             AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
        )
        .bind(encode_time(now)?)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let refs = rows.iter().map(event_ref).collect::<Result<Vec<_>>>()?;
        let lease_end = encode_time(now + self.lease)?;
        for chunk in refs.chunks(IN_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE events SET next_attempt_at = ");
            q.push_bind(lease_end.as_str()).push(" WHERE status IN ('pending', 'processing', 'failed') AND id IN (");
            push_list(&mut q, chunk.iter().map(|r| r.id.to_string()));
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(refs)
    }

    /// One page of every open event (keyset on id), for journaling all of them
    /// again after a restart or a journal loss.
    pub async fn open_events(&self, after: Option<EventId>, limit: u32) -> Result<Vec<EventRef>> {
        sqlx::query(
            "SELECT id, partition_key, order_id FROM events WHERE status IN ('pending', 'processing', 'failed') \
             AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(event_ref)
        .collect()
    }

    pub async fn event_statuses(&self, ids: &[EventId]) -> Result<HashMap<EventId, EventStatus>> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut conn = self.readers.acquire().await?;
        for chunk in ids.chunks(IN_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT id, status FROM events WHERE id IN (");
            push_list(&mut q, chunk.iter().map(|id| id.to_string()));
            q.push(")");
            for r in q.build().fetch_all(&mut *conn).await? {
                out.insert(parse_event_id(r.try_get("id")?)?, parse_event_status(r.try_get("status")?)?);
            }
        }
        Ok(out)
    }

    pub async fn backlog(&self) -> Result<Backlog> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM events WHERE status IN ('pending', 'processing', 'failed', 'dead') GROUP BY status",
        )
        .fetch_all(&self.readers)
        .await?;
        let mut backlog = Backlog::default();
        for r in rows {
            let n: i64 = r.try_get("n")?;
            let n = u64::try_from(n).map_err(corrupt)?;
            match r.try_get::<&str, _>("status")? {
                "dead" => backlog.dead += n,
                _ => backlog.open += n,
            }
        }
        Ok(backlog)
    }
}

fn event_ref(r: &sqlx::sqlite::SqliteRow) -> Result<EventRef> {
    Ok(EventRef {
        order_id: OrderId::from_trusted(r.try_get("order_id")?),
        id: parse_event_id(r.try_get("id")?)?,
        partition: PartitionKey::from_stored(r.try_get("partition_key")?),
    })
}
