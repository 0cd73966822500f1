//! The MySQL / MariaDB backend (sqlx): its pools and connections, how its
//! columns hold each value, its error codes, and what it writes its own
//! way — balances moved in SQL, intake in one round trip (`script`), and
//! the fencing tokens of journal partitions shared by several instances.
mod conn;
mod fence;
mod money;
mod script;

use crate::store::sql::{Conn, Db, Dialect, Lane, Sql};
use crate::store::{corrupt, Parts, Result, StoreError};
use conn::{Inner, MyConn};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Executor};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_DUP_ENTRY: u16 = 1062;
/// The server went away / the connection was lost during a query.
/// The server's, or this account's, connection limit is reached.
const ER_CON_COUNT_ERROR: u16 = 1040;
const ER_TOO_MANY_USER_CONNECTIONS: u16 = 1203;
const ER_USER_LIMIT_REACHED: u16 = 1226;
const CR_SERVER_GONE: u16 = 2006;
const CR_SERVER_LOST: u16 = 2013;

/// The MySQL/MariaDB error number of a database error.
fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number()),
        _ => None,
    }
}

/// The store's kind of a MySQL error: a deadlock or lock wait timeout is a
/// lock conflict, a lost connection or a connection limit reached makes the
/// database unavailable, a duplicate key is a duplicate.
pub fn classify(e: sqlx::Error) -> StoreError {
    match error_number(&e) {
        Some(ER_LOCK_WAIT_TIMEOUT | ER_LOCK_DEADLOCK) => StoreError::LockConflict(e),
        Some(
            CR_SERVER_GONE | CR_SERVER_LOST | ER_CON_COUNT_ERROR | ER_TOO_MANY_USER_CONNECTIONS | ER_USER_LIMIT_REACHED,
        ) => StoreError::Unavailable(e),
        Some(ER_DUP_ENTRY) => StoreError::Duplicate(e),
        _ => StoreError::from(e),
    }
}

static DIALECT: Dialect = Dialect {
    for_update: " FOR UPDATE",
    for_share: " LOCK IN SHARE MODE",
    insert_ignore: "INSERT IGNORE",
    // The id columns are latin1_general_cs: LIKE is case-sensitive and a
    // constant prefix is an index range.
    id_prefix: |column| format!("{column} LIKE ? ESCAPE '!'"),
    id_prefix_pattern: crate::store::sql::like_prefix,
    max_params: 65_535,
    max_compound: usize::MAX,
    fenced: true,
    sum: |expr| format!("SUM({expr})"),
    text_cast: |expr| format!("CAST({expr} AS CHAR)"),
    partitions,
    add_on_conflict: |_, counts| {
        let adds: Vec<String> = counts.iter().map(|c| format!("{c} = {c} + VALUES({c})")).collect();
        format!(" ON DUPLICATE KEY UPDATE {}", adds.join(", "))
    },
    adds_money: true,
    set_on_conflict: |_, columns| {
        let sets: Vec<String> = columns.iter().map(|c| format!("{c} = VALUES({c})")).collect();
        format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
    },
    use_index: |index| format!(" FORCE INDEX ({index})"),
};

/// ` AND CRC32(partition_key) % of IN (owned)`: only events of these journal
/// partitions (the same partition function as `journal::keys::partition_of`).
fn partitions(q: &mut Sql, parts: Parts<'_>) {
    if parts.is_all() {
        return;
    }
    q.push(" AND CRC32(partition_key) % ").bind(u32::from(parts.of)).push(" IN (");
    q.list(parts.owned.iter().map(|p| u32::from(*p))).push(")");
}

/// Connections idle longer than this are pinged before use (pooled ones,
/// and those intake keeps).
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Intake's own connections, out of the pool: sqlx's pool pings every
/// connection given back to it (sqlx 0.8, "test on release"), a round trip
/// as costly as each of an intake batch's own two.
type Kept = Arc<Mutex<Vec<(MySqlConnection, Instant)>>>;

/// Handle to the database: two pools and the connections intake keeps.
#[derive(Clone)]
pub struct MySqlStore {
    /// Requests (intake and reads): kept apart so order intake never waits
    /// for a connection held by commission work (G4).
    pool: MySqlPool,
    /// Event processing, approval and recovery.
    work: MySqlPool,
    kept: Kept,
}

impl MySqlStore {
    /// Connects with UTC session time and READ COMMITTED isolation: every money
    /// transaction takes explicit row locks, so it needs no gap locks.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_split(url, max_connections, max_connections, None).await
    }

    /// One pool for requests, one for event processing. `idle_tx_timeout`:
    /// on MariaDB, a worker connection whose transaction sits idle this long
    /// (its process stopped or stalled) is closed by the server, which rolls
    /// the transaction back and frees its locks — so a stalled owner of a
    /// journal partition cannot hold a takeover's fence update for long
    /// (MySQL has no such setting; there `wait_timeout` is the bound).
    pub async fn connect_split(
        url: &str,
        request_connections: u32,
        worker_connections: u32,
        idle_tx_timeout: Option<Duration>,
    ) -> Result<Self> {
        let options = Self::options(url)?;
        let pool = pool_options(request_connections, None).connect_with(options.clone()).await.map_err(classify)?;
        let idle_tx = idle_tx_timeout.map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
        let work = pool_options(worker_connections, idle_tx).connect_with(options).await.map_err(classify)?;
        Ok(Self { pool, work, kept: Kept::default() })
    }

    /// Pools that connect only when first used: a store that never touches
    /// the database (an HTTP test of what is decided before any read).
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self> {
        let options = Self::options(url)?;
        let pool = pool_options(max_connections, None).min_connections(0).connect_lazy_with(options.clone());
        let work = pool_options(max_connections, None).min_connections(0).connect_lazy_with(options);
        Ok(Self { pool, work, kept: Kept::default() })
    }

    fn options(url: &str) -> Result<MySqlConnectOptions> {
        Ok(MySqlConnectOptions::from_str(url)
            .map_err(classify)?
            .timezone(Some("+00:00".to_owned()))
            .statement_cache_capacity(256))
    }

    fn pool(&self, lane: Lane) -> &MySqlPool {
        match lane {
            Lane::Request => &self.pool,
            Lane::Work => &self.work,
        }
    }

    /// A connection for intake: a kept one (pinged first when idle for a
    /// while), else one taken out of the pool for good.
    async fn take_kept(&self) -> Result<MySqlConnection> {
        loop {
            let Some((mut conn, since)) = self.kept.lock().expect("intake connections poisoned").pop() else {
                return Ok(self.pool.acquire().await.map_err(classify)?.detach());
            };
            if since.elapsed() < IDLE_BEFORE_PING || conn.ping().await.is_ok() {
                return Ok(conn);
            }
        }
    }
}

fn pool_options(size: u32, idle_tx: Option<u64>) -> MySqlPoolOptions {
    MySqlPoolOptions::new()
        .max_connections(size.max(1))
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out: one round trip more per
        // transaction (half of all round trips at intake). A connection used
        // within the last second is known to work; one idle longer is
        // pinged first, and replaced if it fails.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < IDLE_BEFORE_PING {
                    return Ok(true);
                }
                Ok(conn.ping().await.is_ok())
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                conn.execute("SET SESSION innodb_lock_wait_timeout = 10").await?;
                if let Some(secs) = idle_tx {
                    // MariaDB only; MySQL does not know the variable.
                    let set = format!("SET SESSION idle_transaction_timeout = {secs}");
                    if let Err(e) = conn.execute(set.as_str()).await {
                        tracing::debug!(error = %e, "idle_transaction_timeout not supported");
                    }
                }
                Ok(())
            })
        })
}

#[async_trait::async_trait]
impl Db for MySqlStore {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = sqlx::migrate!("./migrations/mysql");
        // None yet on a new database (no table).
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(&self.pool)
            .await
            .unwrap_or_default();
        let log = crate::store::MigrationLog::begin(&migrator, &applied);
        migrator.run(&self.pool).await?;
        log.done();
        Ok(())
    }

    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    async fn write(&self, lane: Lane) -> Result<Box<dyn Conn>> {
        let tx = self.pool(lane).begin().await.map_err(classify)?;
        Ok(Box::new(MyConn(Inner::Tx(tx))))
    }

    /// A snapshot is a REPEATABLE READ transaction (the sessions default to
    /// READ COMMITTED, where each statement would read its own moment):
    /// every read of it sees the database as of its first one.
    async fn read(&self, lane: Lane, snapshot: bool) -> Result<Box<dyn Conn>> {
        if snapshot {
            let mut conn = self.pool(lane).acquire().await.map_err(classify)?;
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(classify)?;
            let tx = sqlx::Transaction::begin(conn, None).await.map_err(classify)?;
            return Ok(Box::new(MyConn(Inner::Tx(tx))));
        }
        let conn = self.pool(lane).acquire().await.map_err(classify)?;
        Ok(Box::new(MyConn(Inner::Pooled(conn))))
    }

    /// A kept connection, outside any transaction: the lookup reads alone,
    /// and [`Conn::write_intake`] sends the writes and the commit together.
    async fn intake(&self) -> Result<Box<dyn Conn>> {
        Ok(Box::new(MyConn(Inner::Kept(self.take_kept().await?, self.kept.clone()))))
    }

    async fn take_fence(&self, part: u16, owner: &str) -> Result<(u64, Option<String>)> {
        fence::take(&self.work, part, owner).await
    }
}

/// A points balance from a DECIMAL(28,0) column (whole points).
fn points_of(d: rust_decimal::Decimal) -> Result<i128> {
    use rust_decimal::prelude::ToPrimitive;
    d.is_integer().then(|| d.to_i128()).flatten().ok_or_else(|| corrupt(format!("stored points {d}")))
}
