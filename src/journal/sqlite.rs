//! The embedded journal for single-instance mode: tables in the same SQLite
//! file as the record (migrations/sqlite/0100_journal.sql), written through
//! the store's one writer connection.
//!
//! An entry is a row of `journal_entries`; its `event_id` is unique, so an
//! event has at most one live entry (publishing skips events that have one),
//! and acknowledging deletes the row. `consumer` and `delivered_at` say who
//! holds a delivered entry and since when: `read` takes unheld rows, the
//! claims move held ones. Every operation is one statement (one chunk of at
//! most `CHUNK` items at a time), so event transactions waiting for the
//! connection wait for one short statement at most. Blocked readers of this
//! process are woken by `publish`; other processes sharing the file see new
//! entries at their next read.
use super::{Delivery, Journal, JournalError};
use crate::domain::event::{EventId, EventRef, PartitionKey};
use crate::domain::ids::OrderId;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::Notify;

/// Items per statement: bound parameters and the connection's hold stay small.
const CHUNK: usize = 500;
/// `ping` gives up after this long (the writer connection may be busy).
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The columns every delivering statement returns.
type EntryRow = (i64, String, String, String);

/// Undelivered entries, oldest first, delivered to ?1 at ?2; at most ?3.
const READ: &str = "\
UPDATE journal_entries SET consumer = ?1, delivered_at = ?2
WHERE id IN (SELECT id FROM journal_entries WHERE consumer IS NULL ORDER BY id LIMIT ?3)
RETURNING id, event_id, partition_key, order_id";

/// Entries delivered at or before ?4, to any consumer, delivered again to ?1
/// at ?2; at most ?3, oldest first.
const CLAIM_IDLE: &str = "\
UPDATE journal_entries SET consumer = ?1, delivered_at = ?2
WHERE id IN (
    SELECT id FROM journal_entries
    WHERE consumer IS NOT NULL AND delivered_at <= ?4
    ORDER BY id LIMIT ?3)
RETURNING id, event_id, partition_key, order_id";

/// Entries held by a consumer other than ?1 with no heartbeat alive at ?2,
/// delivered to ?1 at ?2; at most ?3, oldest first. `holders` walks the
/// distinct holding consumers through the consumer index (a seek each), so
/// the statement reads the dead consumers' entries, not every held one; the
/// liveness check is in the same statement as the move, so a consumer that
/// beats meanwhile keeps its entries.
const CLAIM_DEAD: &str = "\
WITH RECURSIVE holders(name) AS (
    SELECT (SELECT consumer FROM journal_entries WHERE consumer IS NOT NULL ORDER BY consumer LIMIT 1)
    UNION ALL
    SELECT (SELECT e.consumer FROM journal_entries e WHERE e.consumer > holders.name ORDER BY e.consumer LIMIT 1)
    FROM holders WHERE holders.name IS NOT NULL
)
UPDATE journal_entries SET consumer = ?1, delivered_at = ?2
WHERE id IN (
    SELECT e.id FROM holders h JOIN journal_entries e ON e.consumer = h.name
    WHERE h.name IS NOT NULL AND h.name <> ?1
      AND NOT EXISTS (SELECT 1 FROM journal_consumers c WHERE c.name = h.name AND c.expires_at > ?2)
    ORDER BY e.id LIMIT ?3)
RETURNING id, event_id, partition_key, order_id";

/// Forgets consumers other than ?1 whose heartbeat expired by ?2 and that
/// hold nothing.
const FORGET_DEAD: &str = "\
DELETE FROM journal_consumers
WHERE expires_at <= ?2 AND name <> ?1
  AND NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.consumer = journal_consumers.name)";

const HEARTBEAT: &str = "\
INSERT INTO journal_consumers (name, expires_at) VALUES (?1, ?2)
ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at";

const ENSURE: &str = "INSERT OR IGNORE INTO journal_epoch (id, epoch, created_at) VALUES (1, ?1, ?2)";

pub struct SqliteJournal {
    /// The store's writer pool (one connection): every journal statement writes.
    pool: SqlitePool,
    consumer: String,
    /// Wakes this process's blocked readers when entries are published.
    published: Notify,
    /// Entry ids acked and not yet deleted (see `ack`).
    acked: std::sync::Mutex<Vec<i64>>,
    /// Held by the one ack that is deleting.
    deleting: tokio::sync::Mutex<()>,
}

fn err(e: sqlx::Error) -> JournalError {
    JournalError(e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

impl SqliteJournal {
    /// `writer` is the pool the store writes through (it runs the journal's
    /// migration); `consumer` names this instance.
    pub fn new(writer: SqlitePool, consumer: String) -> Self {
        Self {
            pool: writer,
            consumer,
            published: Notify::new(),
            acked: std::sync::Mutex::new(Vec::new()),
            deleting: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs a delivering statement (`READ`, `CLAIM_*`) for this consumer, now.
    /// `cutoff` binds ?4 where the statement has it.
    async fn deliver(&self, sql: &str, max: usize, cutoff: Option<i64>) -> Result<Vec<Delivery>, JournalError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query_as::<_, EntryRow>(sql).bind(&self.consumer).bind(now_ms()).bind(limit(max));
        if let Some(cutoff) = cutoff {
            query = query.bind(cutoff);
        }
        let mut rows = query.fetch_all(&self.pool).await.map_err(err)?;
        // RETURNING gives rows in no set order; the journal's is by entry id.
        rows.sort_unstable_by_key(|r| r.0);
        self.deliveries(rows).await
    }

    /// Rows to deliveries. A row that does not parse (no valid event id)
    /// cannot be processed by anyone: it is dropped, not handed round forever.
    async fn deliveries(&self, rows: Vec<EntryRow>) -> Result<Vec<Delivery>, JournalError> {
        let mut out = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for (id, event, partition, order) in rows {
            match EventId::parse(&event) {
                Some(event_id) => out.push(Delivery {
                    event: EventRef {
                        id: event_id,
                        partition: PartitionKey::from_stored(partition),
                        order_id: OrderId::from_trusted(order),
                    },
                    entry_id: id.to_string(),
                }),
                None => {
                    tracing::warn!(entry = id, event = %event, "journal entry with an invalid event id dropped");
                    bad.push(id);
                }
            }
        }
        self.delete(&bad).await?;
        Ok(out)
    }

    /// Deletes these entries in one write transaction.
    async fn delete(&self, ids: &[i64]) -> Result<(), JournalError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM journal_entries WHERE id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            list.push_unseparated(")");
            qb.build().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}

#[async_trait::async_trait]
impl Journal for SqliteJournal {
    fn instance(&self) -> &str {
        &self.consumer
    }

    /// One partition: `parts` is always `[0]`.
    async fn ensure(&self, _parts: &[u16]) -> Result<Vec<u16>, JournalError> {
        // The tables come with the store's migrations; the epoch row tells a
        // new journal (a new database) from an existing one.
        let done = sqlx::query(ENSURE)
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(if done.rows_affected() == 1 { vec![0] } else { Vec::new() })
    }

    async fn publish(&self, events: &[EventRef]) -> Result<usize, JournalError> {
        let mut added = 0;
        for chunk in events.chunks(CHUNK) {
            // An event with a live entry (queued or held) hits the unique
            // event_id and is skipped: it keeps its one live entry.
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO journal_entries (event_id, partition_key, order_id) ",
            );
            qb.push_values(chunk, |mut row, e| {
                row.push_bind(e.id.to_string())
                    .push_bind(e.partition.as_str().to_owned())
                    .push_bind(e.order_id.as_str().to_owned());
            });
            let done = qb.build().execute(&self.pool).await;
            let done = match done {
                Ok(d) => d,
                Err(e) => {
                    // Earlier chunks are journaled: let readers have them.
                    if added > 0 {
                        self.published.notify_waiters();
                    }
                    return Err(err(e));
                }
            };
            added += usize::try_from(done.rows_affected()).unwrap_or(usize::MAX);
        }
        if added > 0 {
            self.published.notify_waiters();
        }
        Ok(added)
    }

    async fn read(&self, parts: &[u16], max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError> {
        // One partition: owned, or not yet (before the first lease tick),
        // when nothing may be delivered — an entry delivered then would be
        // left unapplied by the actor, and found again only by recovery.
        if parts.is_empty() {
            tokio::time::sleep(block).await;
            return Ok(Vec::new());
        }
        // Listen before looking, so a publish between the empty read and the
        // wait still wakes this reader.
        let published = self.published.notified();
        tokio::pin!(published);
        published.as_mut().enable();
        let entries = self.deliver(READ, max, None).await?;
        if !entries.is_empty() || max == 0 || block.is_zero() {
            return Ok(entries);
        }
        let _ = tokio::time::timeout(block, published).await;
        self.deliver(READ, max, None).await
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), JournalError> {
        // Entry ids are never reused (AUTOINCREMENT), so acking an old copy
        // cannot remove the event's newer entry; one already gone is ignored,
        // and an id this journal never gave out matches nothing.
        //
        // Group commit: every actor acks its own run, often of one entry, and
        // each delete is a write transaction on the one writer. The acks that
        // arrive while a delete runs are deleted together by the next one. An
        // Ok means deleted, or taken along by the delete of another ack; a
        // failed delete puts its entries back for the next ack (and an entry
        // never deleted is only delivered again: a no-op).
        let ids = deliveries.iter().filter_map(|d| d.entry_id.parse::<i64>().ok());
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).extend(ids);
        let _deleting = self.deleting.lock().await;
        let batch = std::mem::take(&mut *self.acked.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(());
        }
        let deleted = self.delete(&batch).await;
        if deleted.is_err() {
            self.acked.lock().unwrap_or_else(|p| p.into_inner()).extend(batch);
        }
        deleted
    }

    async fn claim_idle(&self, _parts: &[u16], min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let cutoff = now_ms().saturating_sub(millis(min_idle));
        self.deliver(CLAIM_IDLE, max, Some(cutoff)).await
    }

    async fn claim_dead(&self, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let claimed = self.deliver(CLAIM_DEAD, max, None).await?;
        // After the claim, so the consumers just emptied go at once.
        sqlx::query(FORGET_DEAD).bind(&self.consumer).bind(now_ms()).execute(&self.pool).await.map_err(err)?;
        Ok(claimed)
    }

    async fn heartbeat(&self, ttl: Duration) -> Result<usize, JournalError> {
        sqlx::query(HEARTBEAT)
            .bind(&self.consumer)
            .bind(now_ms().saturating_add(millis(ttl)))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(1)
    }

    async fn live(&self, events: &[EventRef]) -> Result<Vec<bool>, JournalError> {
        let mut out = Vec::with_capacity(events.len());
        for chunk in events.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|e| e.id.to_string()).collect();
            let mut qb = QueryBuilder::<Sqlite>::new("SELECT event_id FROM journal_entries WHERE event_id IN (");
            let mut list = qb.separated(", ");
            for id in &ids {
                list.push_bind(id.as_str());
            }
            list.push_unseparated(")");
            let found: HashSet<String> =
                qb.build_query_scalar::<String>().fetch_all(&self.pool).await.map_err(err)?.into_iter().collect();
            out.extend(ids.iter().map(|id| found.contains(id)));
        }
        Ok(out)
    }

    async fn live_count(&self) -> Result<u64, JournalError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries").fetch_one(&self.pool).await.map_err(err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn ping(&self) -> bool {
        let probe = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&self.pool);
        matches!(tokio::time::timeout(PING_TIMEOUT, probe).await, Ok(Ok(1)))
    }
}
