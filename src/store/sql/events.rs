//! The event log: the operator's reads, recovery's reads, failed attempts
//! and replays.
use super::rows::{self, event_id, event_record, event_ref, event_status, event_type, EVENT_COLUMNS};
use super::{Arg, Conn, Lane, Sql, SqlStore};
use crate::domain::event::{
    Attempt, Backlog, EventCounts, EventDetail, EventFilter, EventId, EventRecord, EventRef, EventStatus, EventType,
    PartitionKey, Replay,
};
use crate::domain::ids::OrderId;
use crate::domain::order::CommissionStatus;
use crate::store::{corrupt, ApplyTx, EventHead, EventTx, Events, Parts, Result};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// ` AND …` for each field of the filter.
fn push_filter(q: &mut Sql, f: &EventFilter) {
    if let Some(s) = f.status {
        q.push(" AND status = ").bind(s.as_str());
    }
    if let Some(k) = f.kind {
        q.push(" AND type = ").bind(k.as_str());
    }
    if let Some(o) = &f.order_id {
        q.push(" AND order_id = ").bind(o);
    }
    if let Some(t) = f.since {
        q.push(" AND created_at >= ").bind(Arg::Bound(t));
    }
    if let Some(t) = f.until {
        q.push(" AND created_at < ").bind(Arg::Bound(t));
    }
}

const OPEN: &str = "status IN ('pending', 'processing', 'failed')";

/// Every status but `done`: few rows, found through the status index.
const NOT_DONE: &str = "status IN ('pending', 'processing', 'failed', 'dead')";

/// `event_tallies`: how many events of each type were ever stored, in
/// [`TALLY_SHARDS`] rows per type.
pub const TALLY_COLUMNS: &str = "event_tallies (type, shard, n)";
const TALLY_SHARDS: u16 = 16;

/// The tally row adding `n` events of `kind`, to a shard picked by `by`
/// (random: writers at once seldom share a row).
pub fn tally_row(kind: EventType, n: usize, by: EventId) -> Result<Vec<Arg>> {
    Ok(vec![kind.as_str().into(), i64::from(by.shard(TALLY_SHARDS)).into(), super::uint(n as u64)?])
}

/// Adds `n` events of `kind` to its tally, in the caller's transaction. Last
/// in it: the row stays locked until the commit.
pub async fn tally(conn: &mut dyn Conn, kind: EventType, n: usize, by: EventId) -> Result<()> {
    let mut q = Sql::new(format!("INSERT INTO {TALLY_COLUMNS}"));
    q.values(&[tally_row(kind, n, by)?], Clone::clone);
    q.push(&(conn.dialect().add_on_conflict)("type, shard", &["n"]));
    conn.execute(&q).await?;
    Ok(())
}

#[async_trait::async_trait]
impl Events for SqlStore {
    async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>> {
        let mut q = Sql::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
        push_filter(&mut q, f);
        if let Some(b) = before {
            q.push(" AND id < ").bind(b);
        }
        q.push(" ORDER BY id DESC LIMIT ").bind(limit);
        rows::all(&self.read().await?.fetch(&q).await?, event_record)
    }

    async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>> {
        let mut conn = self.snapshot().await?;
        let q = format!(
            "SELECT {EVENT_COLUMNS}, partition_key, applied_at, next_attempt_at, payload FROM events WHERE id = ?"
        );
        let Some(r) = conn.optional(&Sql::new(q).arg(id)).await? else { return Ok(None) };
        let attempts = conn
            .fetch(&Sql::new("SELECT at, error FROM event_attempts WHERE event_id = ? ORDER BY id").arg(id))
            .await?;
        let replays = conn
            .fetch(&Sql::new("SELECT at, previous_status FROM event_replays WHERE event_id = ? ORDER BY id").arg(id))
            .await?;
        conn.commit().await?;
        Ok(Some(EventDetail {
            event: event_record(r.as_ref())?,
            partition: r.text("partition_key")?,
            applied_at: r.opt_time("applied_at")?,
            next_attempt_at: r.time("next_attempt_at")?,
            payload: r.text("payload")?,
            attempt_history: rows::all(&attempts, |a| Ok(Attempt { at: a.time("at")?, error: a.text("error")? }))?,
            replay_history: rows::all(&replays, |a| {
                Ok(Replay { at: a.time("at")?, previous_status: a.text("previous_status")? })
            })?,
        }))
    }

    /// The events not done through the status index; the done ones as the
    /// tallies less those when only the type filters (no scan of history),
    /// else through the order's or the time range's index. In one snapshot.
    async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts> {
        let f = EventFilter { status: None, ..f.clone() };
        let mut conn = self.snapshot().await?;
        let mut q = Sql::new(format!("SELECT status, COUNT(*) AS n FROM events WHERE {NOT_DONE}"));
        push_filter(&mut q, &f);
        q.push(" GROUP BY status");
        let mut counts = EventCounts::default();
        for r in conn.fetch(&q).await? {
            counts.add(event_status(&r.text("status")?)?, r.uint("n")?);
        }
        if f.order_id.is_none() && f.since.is_none() && f.until.is_none() {
            let mut q = Sql::new("SELECT n FROM event_tallies WHERE 1 = 1");
            if let Some(k) = f.kind {
                q.push(" AND type = ").bind(k.as_str());
            }
            let mut all = 0u64;
            for r in conn.fetch(&q).await? {
                all = all.checked_add(r.uint("n")?).ok_or_else(|| corrupt("event tallies overflow"))?;
            }
            let open = counts.pending + counts.processing + counts.failed + counts.dead;
            counts.done = all.checked_sub(open).ok_or_else(|| corrupt("event tallies below the open events"))?;
        } else {
            let mut q = Sql::new("SELECT COUNT(*) AS n FROM events WHERE status = 'done'");
            push_filter(&mut q, &f);
            counts.done = conn.one(&q).await?.uint("n")?;
        }
        conn.commit().await?;
        Ok(counts)
    }

    async fn select_for_replay(&self, f: &EventFilter) -> Result<Vec<EventId>> {
        let mut q = Sql::new("SELECT id FROM events WHERE status IN ('failed', 'dead')");
        push_filter(&mut q, f);
        q.push(" ORDER BY id LIMIT 100000");
        rows::all(&self.read().await?.fetch(&q).await?, |r| event_id(&r.text("id")?))
    }

    async fn backlog(&self) -> Result<Backlog> {
        let q = Sql::new(
            "SELECT status, COUNT(*) AS n FROM events WHERE status IN ('pending', 'processing', 'failed', 'dead') \
             GROUP BY status",
        );
        let mut backlog = Backlog::default();
        for r in self.db.read(Lane::Work, false).await?.fetch(&q).await? {
            let n = r.uint("n")?;
            match r.text("status")?.as_str() {
                "dead" => backlog.dead += n,
                _ => backlog.open += n,
            }
        }
        Ok(backlog)
    }

    async fn event_statuses(&self, ids: &[EventId]) -> Result<HashMap<EventId, EventStatus>> {
        let mut conn = self.db.read(Lane::Work, false).await?;
        let rows = conn
            .fetch_chunked(ids, 1, |chunk| {
                let mut q = Sql::new("SELECT id, status FROM events WHERE id IN (");
                q.list(chunk.iter().copied()).push(")");
                q
            })
            .await?;
        rows.iter().map(|r| Ok((event_id(&r.text("id")?)?, event_status(&r.text("status")?)?))).collect()
    }

    async fn take_due_events(
        &self,
        limit: u32,
        parts: Parts<'_>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<EventRef>> {
        let mut conn = self.write(Lane::Work).await?;
        let mut q =
            Sql::new(format!("SELECT id, partition_key, order_id FROM events WHERE {OPEN} AND next_attempt_at <= "));
        q.bind(Arg::Bound(now));
        (conn.dialect().partitions)(&mut q, parts);
        q.push(" ORDER BY next_attempt_at LIMIT ").bind(limit);
        let refs = rows::all(&conn.fetch(&q).await?, event_ref)?;
        conn.execute_chunked(&refs, 1, |chunk| {
            let mut q = Sql::new("UPDATE events SET next_attempt_at = ");
            q.bind(until).push(format!(" WHERE {OPEN} AND id IN (").as_str());
            q.list(chunk.iter().map(|r| r.id)).push(")");
            q
        })
        .await?;
        conn.commit().await?;
        Ok(refs)
    }

    async fn open_events(&self, after: Option<EventId>, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>> {
        let mut conn = self.db.read(Lane::Work, false).await?;
        let mut q = Sql::new(format!("SELECT id, partition_key, order_id FROM events WHERE {OPEN} AND id > "));
        q.bind(after.map(|a| a.to_string()).unwrap_or_default());
        (conn.dialect().partitions)(&mut q, parts);
        q.push(" ORDER BY id LIMIT ").bind(limit);
        rows::all(&conn.fetch(&q).await?, event_ref)
    }

    async fn begin_events(&self, lane: Lane) -> Result<Box<dyn EventTx>> {
        Ok(Box::new(SqlEventTx { conn: self.write(lane).await? }))
    }

    async fn begin_apply(&self) -> Result<Box<dyn ApplyTx>> {
        Ok(Box::new(super::apply::SqlApply::new(
            self.write(Lane::Work).await?,
            self.programs.clone(),
            self.since.clone(),
        )))
    }

    async fn begin_read(&self) -> Result<Box<dyn ApplyTx>> {
        Ok(Box::new(super::apply::SqlApply::new(self.snapshot().await?, self.programs.clone(), self.since.clone())))
    }

    async fn take_fence(&self, part: u16, owner: &str) -> Result<(u64, Option<String>)> {
        self.db.take_fence(part, owner).await
    }
}

struct SqlEventTx {
    conn: Box<dyn Conn>,
}

#[async_trait::async_trait]
impl EventTx for SqlEventTx {
    async fn lock_events(&mut self, ids: &[EventId]) -> Result<Vec<EventHead>> {
        let lock = self.conn.dialect().for_update;
        let rows = self
            .conn
            .fetch_chunked(ids, 1, |chunk| {
                let mut q =
                    Sql::new("SELECT id, type, status, attempts, order_id, partition_key FROM events WHERE id IN (");
                q.list(chunk.iter().copied()).push(") ORDER BY id").push(lock);
                q
            })
            .await?;
        rows::all(&rows, |r| {
            Ok(EventHead {
                id: event_id(&r.text("id")?)?,
                kind: event_type(&r.text("type")?)?,
                status: event_status(&r.text("status")?)?,
                attempts: super::small(r, "attempts")?,
                order_id: rows::order_of(r, "order_id")?,
                partition: PartitionKey::from_stored(r.text("partition_key")?),
            })
        })
    }

    async fn record_failure(
        &mut self,
        e: &EventHead,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let q = Sql::new(
            "UPDATE events SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
        )
        .arg(e.status.as_str())
        .arg(e.attempts)
        .arg(error)
        .arg(retry_at)
        .arg(now)
        .arg(e.id);
        self.conn.execute(&q).await?;
        let q =
            Sql::new("INSERT INTO event_attempts (event_id, at, error) VALUES (?, ?, ?)").arg(e.id).arg(now).arg(error);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn record_replay(&mut self, e: &EventHead, reopen: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<()> {
        if let Some(next_attempt_at) = reopen {
            let q = Sql::new(
                "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ? WHERE id = ?",
            )
            .arg(next_attempt_at)
            .arg(now)
            .arg(e.id);
            self.conn.execute(&q).await?;
        }
        let q = Sql::new("INSERT INTO event_replays (event_id, at, previous_status) VALUES (?, ?, ?)")
            .arg(e.id)
            .arg(now)
            .arg(e.status.as_str());
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn order_events(&mut self, order: &OrderId) -> Result<Vec<EventStatus>> {
        super::orders::order_events(self.conn.as_mut(), order).await
    }

    async fn set_commission_status(
        &mut self,
        order: &OrderId,
        status: CommissionStatus,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let q = Sql::new("UPDATE orders SET commission_status = ?, updated_at = ? WHERE id = ?")
            .arg(status.as_str())
            .arg(now)
            .arg(order);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}

super::webhooks::notify_tx!(SqlEventTx);
super::audit::audit_tx!(SqlEventTx);
