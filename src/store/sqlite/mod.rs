//! The embedded SQLite backend (sqlx): the same statements, rows and
//! outcomes as MySQL's, on one database file.
//!
//! Two pools on the file in WAL mode: ONE writer connection, on which every
//! transaction that writes runs (`BEGIN IMMEDIATE`), so writes never
//! conflict and need no row locks; and a few read-only connections for
//! plain reads, which WAL lets run beside the writer. `synchronous=FULL`: a
//! commit is on disk before it is answered. A third connection checkpoints
//! the WAL into the database file beside the writer (`checkpoints`).
//!
//! SQLite has no DECIMAL and no DATETIME: money is TEXT holding the exact
//! decimal, times are fixed-width UTC TEXT (`codec`). Money is never summed
//! or added in SQL (SQLite would do it in floating point): a sum is a
//! `group_concat` of the amounts, added here as `Decimal`s, and balances are
//! read, moved in Rust and written back inside the writer's transaction.
pub mod codec;
mod conn;
mod money;

use crate::store::sql::{Conn, Db, Dialect, Lane};
use crate::store::{Result, StoreError};
use conn::LiteConn;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the checkpointer copies the WAL's committed pages into the
/// database file (a PASSIVE checkpoint: it never waits for the writer).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// The writer checkpoints itself only if the WAL reaches this many pages
/// (4 KiB each): when the checkpointer cannot keep up (a long read holds
/// the WAL's older frames) or has stopped.
const WRITER_CHECKPOINT_PAGES: &str = "16384";
/// The writer's page cache, in KiB (SQLite's default is 2 000): its
/// transactions walk the same index pages over and over, and a miss is a
/// read from the file. The readers keep the default (there are up to
/// `KOMISI_DB_MAX_CONNECTIONS` of them).
const WRITER_CACHE_KIB: &str = "-65536";

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// The primary result code of an SQLite error (its extended code's low byte).
fn primary_code(e: &sqlx::Error) -> Option<i32> {
    let sqlx::Error::Database(db) = e else { return None };
    let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code = sqlx::error::DatabaseError::code(sqlite)?;
    code.parse::<i32>().ok().map(|c| c & 0xff)
}

/// The store's kind of an SQLite error: SQLITE_BUSY (another connection
/// holds the write lock past the busy timeout) and SQLITE_LOCKED (a table
/// lock within a shared cache) are lock conflicts.
pub fn classify(e: sqlx::Error) -> StoreError {
    match primary_code(&e) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => StoreError::LockConflict(e),
        _ => StoreError::from(e),
    }
}

static DIALECT: Dialect = Dialect {
    for_update: "",
    for_share: "",
    insert_ignore: "INSERT OR IGNORE",
    // LIKE folds ASCII case and so cannot use a BINARY index; GLOB is
    // case-sensitive and can (the id alphabet has no GLOB metacharacter).
    id_prefix: |column| format!("{column} GLOB ?"),
    id_prefix_pattern: |prefix| format!("{prefix}*"),
    max_params: 32_766,
    // SQLite allows 500 SELECTs in a compound statement.
    max_compound: 100,
    fenced: false,
    // Added in Rust from the amounts' text (`conn::LiteRow::sum`).
    sum: |expr| format!("group_concat({expr})"),
    text_cast: |expr| format!("CAST({expr} AS TEXT)"),
    // One instance owns every partition.
    partitions: |_, _| {},
    // Integer columns: SQLite's `+` on them is exact.
    add_on_conflict: |key, counts| {
        let adds: Vec<String> = counts.iter().map(|c| format!("{c} = {c} + excluded.{c}")).collect();
        format!(" ON CONFLICT ({key}) DO UPDATE SET {}", adds.join(", "))
    },
    adds_money: false,
    set_on_conflict: |key, columns| {
        let sets: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        format!(" ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "))
    },
    use_index: |index| format!(" INDEXED BY {index}"),
};

/// Handle to the database file: the writer and the readers.
#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every transaction that writes.
    writer: SqlitePool,
    /// Read-only connections for plain reads.
    readers: SqlitePool,
    /// Stops the checkpointer when the last clone of the store goes.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// Cancels the checkpointer's task when dropped.
struct Checkpointer(CancellationToken);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Checkpoints the WAL every `CHECKPOINT_EVERY` on a connection of its own
/// until `stop`, so the copying and its fsync of the database file run
/// beside the writer instead of inside one of its commits.
async fn checkpoints(pool: SqlitePool, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint failed (the writer checkpoints past its own limit)");
        }
    }
    pool.close().await;
}

/// A pool of up to `connections` whose connections are never recycled: an
/// embedded connection does not go stale, the last one to close would take
/// an in-memory database with it, and the read-only readers need the
/// writer's WAL index to exist.
fn kept(connections: u32, acquire_timeout: Duration) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` (`sqlite://path`,
    /// `sqlite:path`, or a bare path): a writer pool of one connection and a
    /// pool of `readers` read-only ones. An in-memory database has no file
    /// another connection could open, so there the writer serves reads too.
    pub async fn connect(url: &str, readers: u32) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(classify)?
            .busy_timeout(Duration::from_secs(10))
            .synchronous(SqliteSynchronous::Full)
            .statement_cache_capacity(256)
            // Statement journals (the undo of one statement inside a
            // transaction) in memory, not spilled to temporary files.
            .pragma("temp_store", "memory");
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // Every writer waits for the one connection: allow a queue.
        let writer = kept(1, Duration::from_secs(30))
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .pragma("cache_size", WRITER_CACHE_KIB)
                    .pragma("wal_autocheckpoint", if in_memory { "1000" } else { WRITER_CHECKPOINT_PAGES }),
            )
            .await
            .map_err(classify)?;
        let readers = if in_memory {
            writer.clone()
        } else {
            kept(readers.max(1), Duration::from_secs(10))
                .connect_with(base.clone().read_only(true))
                .await
                .map_err(classify)?
        };
        // Checkpoints need write access to the file: a connection of their own.
        let checkpointer = if in_memory {
            None
        } else {
            let pool = kept(1, Duration::from_secs(30)).connect_with(base).await.map_err(classify)?;
            let stop = CancellationToken::new();
            tokio::spawn(checkpoints(pool, stop.clone()));
            Some(Arc::new(Checkpointer(stop)))
        };
        Ok(Self { writer, readers, _checkpointer: checkpointer })
    }

    /// The one writer connection's pool (tests read and corrupt the file
    /// through it, serially with the store's writes).
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

#[async_trait::async_trait]
impl Db for SqliteStore {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = sqlx::migrate!("./migrations/sqlite");
        // None yet on a new database (no table).
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(&self.writer)
            .await
            .unwrap_or_default();
        let log = crate::store::MigrationLog::begin(&migrator, &applied);
        migrator.run(&self.writer).await?;
        log.done();
        Ok(())
    }

    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.readers).await.is_ok()
    }

    /// A write transaction on the writer, holding SQLite's write lock from
    /// its first statement: the lock every row lock stands for.
    async fn write(&self, _lane: Lane) -> Result<Box<dyn Conn>> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        Ok(Box::new(LiteConn::Tx(tx)))
    }

    async fn read(&self, _lane: Lane, snapshot: bool) -> Result<Box<dyn Conn>> {
        if snapshot {
            let tx = self.readers.begin().await.map_err(classify)?;
            return Ok(Box::new(LiteConn::Tx(tx)));
        }
        Ok(Box::new(LiteConn::Pooled(self.readers.acquire().await.map_err(classify)?)))
    }
}
