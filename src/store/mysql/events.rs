//! The event log's bookkeeping: failed attempts and their history, and what
//! recovery must journal again.
use super::lifecycle::event_statuses;
use super::{parse_event_id, parse_event_status, parse_event_type, push_parts, MySqlStore};
use crate::domain::event::{Backlog, EventId, EventRef, EventStatus, EventType, PartitionKey};
use crate::domain::ids::OrderId;
use crate::domain::order::CommissionStatus;
use crate::store::{corrupt, FailureDecision, Parts, Result};
use chrono::Utc;
use sqlx::{MySql, QueryBuilder, Row};

impl MySqlStore {
    /// Records a failed attempt: attempts + 1, the error kept in the history, and
    /// either a retry time (`failed`) or `dead` once the policy is exhausted.
    /// A done or dead event is left as it is. Returns the event's status after.
    pub async fn record_failure(
        &self,
        id: EventId,
        error: &str,
        decide: &(dyn Fn(u32) -> FailureDecision + Send + Sync),
    ) -> Result<(EventStatus, EventType)> {
        let mut tx = self.work.begin().await?;
        let Some(row) = sqlx::query("SELECT type, status, attempts, order_id FROM events WHERE id = ? FOR UPDATE")
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
        let now = Utc::now();
        // Errors can be long (a whole SQL message); keep the history readable.
        let error: String = error.chars().take(2000).collect();
        sqlx::query(
            "UPDATE events SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(next.as_str())
        .bind(attempts)
        .bind(&error)
        .bind(retry_at)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO event_attempts (event_id, at, error) VALUES (?, ?, ?)")
            .bind(id.to_string())
            .bind(now)
            .bind(&error)
            .execute(&mut *tx)
            .await?;
        let commission_status = CommissionStatus::of(event_statuses(&mut tx, &order_id).await?);
        sqlx::query("UPDATE orders SET commission_status = ?, updated_at = ? WHERE id = ?")
            .bind(commission_status.as_str())
            .bind(now)
            .bind(order_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((next, kind))
    }

    /// Open events whose lease or retry time has passed, oldest due first; their
    /// next_attempt_at moves one lease ahead so the next sweep does not journal
    /// them again while they wait in the journal.
    pub async fn take_due_events(&self, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>> {
        let now = Utc::now();
        let mut q = QueryBuilder::<MySql>::new(
            "SELECT id, partition_key, order_id FROM events WHERE status IN ('pending', 'processing', 'failed') \
             AND next_attempt_at <= ",
        );
        q.push_bind(now);
        push_parts(&mut q, parts);
        q.push(" ORDER BY next_attempt_at LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.work).await?;
        let refs = rows.iter().map(event_ref).collect::<Result<Vec<_>>>()?;
        if !refs.is_empty() {
            let mut q = QueryBuilder::<MySql>::new("UPDATE events SET next_attempt_at = ");
            q.push_bind(now + self.lease).push(" WHERE status IN ('pending', 'processing', 'failed') AND id IN (");
            let mut ids = q.separated(", ");
            for r in &refs {
                ids.push_bind(r.id.to_string());
            }
            q.push(")");
            q.build().execute(&self.work).await?;
        }
        Ok(refs)
    }

    /// One page of every open event (keyset on id), for journaling all of them
    /// again after a restart or a journal loss.
    pub async fn open_events(&self, after: Option<EventId>, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>> {
        let mut q = QueryBuilder::<MySql>::new(
            "SELECT id, partition_key, order_id FROM events WHERE status IN ('pending', 'processing', 'failed') \
             AND id > ",
        );
        q.push_bind(after.map(|a| a.to_string()).unwrap_or_default());
        push_parts(&mut q, parts);
        q.push(" ORDER BY id LIMIT ").push_bind(limit);
        q.build().fetch_all(&self.work).await?.iter().map(event_ref).collect()
    }

    /// A takeover of a journal partition: the fence row's token moves on
    /// under its exclusive lock, which waits for every event transaction
    /// still holding the old token (they hold the row shared); a short lock
    /// wait, so a stalled old owner delays the takeover to the next try
    /// rather than holding the new owner's tick.
    pub async fn take_fence(&self, part: u16, owner: &str) -> Result<(u64, Option<String>)> {
        let mut conn = self.work.acquire().await?;
        sqlx::query("SET SESSION innodb_lock_wait_timeout = 2").execute(&mut *conn).await?;
        let taken = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let now = Utc::now();
            let previous: Option<(u64, String)> =
                sqlx::query_as("SELECT token, owner FROM journal_fences WHERE part = ? FOR UPDATE")
                    .bind(part)
                    .fetch_optional(&mut *tx)
                    .await?;
            let token = previous.as_ref().map_or(1, |(t, _)| t + 1);
            sqlx::query(
                "INSERT INTO journal_fences (part, token, owner, taken_at) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE token = VALUES(token), owner = VALUES(owner), taken_at = VALUES(taken_at)",
            )
            .bind(part)
            .bind(token)
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let previous_owner = previous.map(|(_, o)| o);
            sqlx::query(
                "INSERT INTO journal_fence_log (part, token, owner, previous_owner, taken_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(part)
            .bind(token)
            .bind(owner)
            .bind(previous_owner.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, crate::store::StoreError>((token, previous_owner))
        }
        .await;
        // Back to the pool's setting (a connection that cannot be reset is dropped).
        if sqlx::query("SET SESSION innodb_lock_wait_timeout = 10").execute(&mut *conn).await.is_err() {
            conn.detach();
        }
        taken
    }

    pub async fn event_statuses(&self, ids: &[EventId]) -> Result<std::collections::HashMap<EventId, EventStatus>> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let mut q = QueryBuilder::<MySql>::new("SELECT id, status FROM events WHERE id IN (");
            super::push_list(&mut q, chunk.iter().map(|id| id.to_string()));
            q.push(")");
            for r in q.build().fetch_all(&self.work).await? {
                out.insert(parse_event_id(r.try_get("id")?)?, parse_event_status(r.try_get("status")?)?);
            }
        }
        Ok(out)
    }

    pub async fn backlog(&self) -> Result<Backlog> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM events WHERE status IN ('pending', 'processing', 'failed', 'dead') GROUP BY status",
        )
        .fetch_all(&self.work)
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

fn event_ref(r: &sqlx::mysql::MySqlRow) -> Result<EventRef> {
    Ok(EventRef {
        order_id: OrderId::from_trusted(r.try_get("order_id")?),
        id: parse_event_id(r.try_get("id")?)?,
        partition: PartitionKey::from_stored(r.try_get("partition_key")?),
    })
}
