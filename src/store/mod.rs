//! The MySQL system of record (sqlx). One module per aggregate; everything that
//! one event changes is written through one transaction.
pub mod admin;
pub mod affiliates;
pub mod events;
pub mod ledger;
pub mod lifecycle;
pub mod orders;
pub mod payouts;
pub mod processing;
pub mod programs;
pub mod reconcile;
mod script;

use crate::domain::program::Program;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Executor};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether trying the same work again may succeed (deadlock, lock wait,
    /// lost connection, exhausted pool), as opposed to a fault in the data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => is_transient_db(e),
            _ => false,
        }
    }

    /// A deadlock or lock-wait timeout: worth an immediate retry.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, StoreError::Db(e) if matches!(mysql_error_number(e), Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT)))
    }
}

const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
pub(crate) const ER_DUP_ENTRY: u16 = 1062;

/// The MySQL/MariaDB error number of a database error.
pub(crate) fn mysql_error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number()),
        _ => None,
    }
}

fn is_transient_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        // 1205 lock wait timeout, 1213 deadlock, 2006/2013 connection lost.
        _ => matches!(mysql_error_number(e), Some(ER_LOCK_WAIT_TIMEOUT | ER_LOCK_DEADLOCK | 2006 | 2013)),
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Handle to the database: a pool plus a cache of immutable program versions.
#[derive(Clone)]
pub struct Store {
    /// Requests (intake and reads): kept apart so order intake never waits
    /// for a connection held by commission work (G4).
    pool: MySqlPool,
    /// Event processing, approval and recovery.
    work: MySqlPool,
    programs: Arc<RwLock<HashMap<u64, Arc<Program>>>>,
    /// How long a journaled event may stay unapplied before recovery journals it again.
    lease: chrono::TimeDelta,
}

/// Connections idle longer than this are pinged before use (pooled ones,
/// and those intake keeps).
pub(crate) const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

impl Store {
    /// Connects with UTC session time and READ COMMITTED isolation: every money
    /// transaction takes explicit row locks, so it needs no gap locks.
    pub async fn connect(url: &str, max_connections: u32, redeliver_after: Duration) -> Result<Store> {
        Self::connect_split(url, max_connections, max_connections, redeliver_after).await
    }

    /// One pool for requests, one for event processing.
    pub async fn connect_split(
        url: &str,
        request_connections: u32,
        worker_connections: u32,
        redeliver_after: Duration,
    ) -> Result<Store> {
        let options =
            MySqlConnectOptions::from_str(url)?.timezone(Some("+00:00".to_owned())).statement_cache_capacity(256);
        let pool_of = |size: u32| {
            MySqlPoolOptions::new()
                .max_connections(size.max(1))
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                // sqlx pings every connection it hands out: one round trip more
                // per transaction (half of all round trips at intake). A
                // connection used within the last second is known to work; one
                // idle longer is pinged first, and replaced if it fails.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for < IDLE_BEFORE_PING {
                            return Ok(true);
                        }
                        Ok(conn.ping().await.is_ok())
                    })
                })
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                        conn.execute("SET SESSION innodb_lock_wait_timeout = 10").await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let pool = pool_of(request_connections).await?;
        let work = pool_of(worker_connections).await?;
        Ok(Store {
            pool,
            work,
            programs: Arc::new(RwLock::new(HashMap::new())),
            lease: chrono::TimeDelta::from_std(redeliver_after).map_err(corrupt)?,
        })
    }

    /// Applies pending migrations and makes sure program version 1 exists.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        self.ensure_default_program().await
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// What the actors need from the system of record: a small seam, so the
/// embedded backend can stand in for MySQL.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    async fn process_event(
        &self,
        id: crate::event::EventId,
        faults: &crate::faults::Faults,
    ) -> Result<processing::Outcome>;
    /// Several events of different orders in one transaction, all or nothing.
    async fn process_events(
        &self,
        ids: &[crate::event::EventId],
        faults: &crate::faults::Faults,
    ) -> Result<Vec<processing::Outcome>>;
    async fn record_failure(
        &self,
        id: crate::event::EventId,
        error: &str,
        policy: &crate::retry::RetryPolicy,
    ) -> Result<(crate::event::EventStatus, crate::event::EventType)>;
    async fn take_due_events(&self, limit: u32) -> Result<Vec<crate::event::EventRef>>;
    async fn open_events(
        &self,
        after: Option<crate::event::EventId>,
        limit: u32,
    ) -> Result<Vec<crate::event::EventRef>>;
    async fn backlog(&self) -> Result<events::Backlog>;
    async fn approve_due(&self, limit: u32) -> Result<usize>;
}

#[async_trait::async_trait]
impl EventStore for Store {
    async fn process_event(
        &self,
        id: crate::event::EventId,
        faults: &crate::faults::Faults,
    ) -> Result<processing::Outcome> {
        Store::process_event(self, id, faults).await
    }
    async fn process_events(
        &self,
        ids: &[crate::event::EventId],
        faults: &crate::faults::Faults,
    ) -> Result<Vec<processing::Outcome>> {
        Store::process_events(self, ids, faults).await
    }
    async fn record_failure(
        &self,
        id: crate::event::EventId,
        error: &str,
        policy: &crate::retry::RetryPolicy,
    ) -> Result<(crate::event::EventStatus, crate::event::EventType)> {
        Store::record_failure(self, id, error, policy).await
    }
    async fn take_due_events(&self, limit: u32) -> Result<Vec<crate::event::EventRef>> {
        Store::take_due_events(self, limit).await
    }
    async fn open_events(
        &self,
        after: Option<crate::event::EventId>,
        limit: u32,
    ) -> Result<Vec<crate::event::EventRef>> {
        Store::open_events(self, after, limit).await
    }
    async fn backlog(&self) -> Result<events::Backlog> {
        Store::backlog(self).await
    }
    async fn approve_due(&self, limit: u32) -> Result<usize> {
        Store::approve_due(self, limit).await
    }
}
