//! The MySQL / MariaDB backend (sqlx): one module per aggregate; everything
//! one event changes is written through one transaction.
mod affiliates;
mod apply;
mod events;
mod ledger;
mod lifecycle;
mod operator;
mod orders;
mod payouts;
mod programs;
mod reconcile;
mod script;
mod wallet;

use super::{corrupt, Parts, Result};
use crate::domain::program::Program;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Executor, MySql, QueryBuilder};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_DUP_ENTRY: u16 = 1062;

/// The MySQL/MariaDB error number of a database error.
fn mysql_error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number()),
        _ => None,
    }
}

pub(super) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        // 1205 lock wait timeout, 1213 deadlock, 2006/2013 connection lost.
        _ => matches!(mysql_error_number(e), Some(ER_LOCK_WAIT_TIMEOUT | ER_LOCK_DEADLOCK | 2006 | 2013)),
    }
}

pub(super) fn is_lock_conflict(e: &sqlx::Error) -> bool {
    matches!(mysql_error_number(e), Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT))
}

/// Connections idle longer than this are pinged before use (pooled ones,
/// and those intake keeps).
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Handle to the database: two pools, the connections intake keeps, and a
/// cache of immutable program versions.
#[derive(Clone)]
pub struct MySqlStore {
    /// Requests (intake and reads): kept apart so order intake never waits
    /// for a connection held by commission work (G4).
    pool: MySqlPool,
    /// Event processing, approval and recovery.
    work: MySqlPool,
    programs: Arc<RwLock<HashMap<u64, Arc<Program>>>>,
    /// How long a journaled event may stay unapplied before recovery journals it again.
    lease: chrono::TimeDelta,
    /// Intake's own connections, out of the pool: sqlx's pool pings every
    /// connection given back to it (sqlx 0.8, "test on release"), a round
    /// trip as costly as each of an intake batch's own two.
    kept: Arc<Mutex<Vec<(MySqlConnection, Instant)>>>,
}

impl MySqlStore {
    /// Connects with UTC session time and READ COMMITTED isolation: every money
    /// transaction takes explicit row locks, so it needs no gap locks.
    pub async fn connect(url: &str, max_connections: u32, redeliver_after: Duration) -> Result<Self> {
        Self::connect_split(url, max_connections, max_connections, redeliver_after, None).await
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
        redeliver_after: Duration,
        idle_tx_timeout: Option<Duration>,
    ) -> Result<Self> {
        let options =
            MySqlConnectOptions::from_str(url)?.timezone(Some("+00:00".to_owned())).statement_cache_capacity(256);
        let pool_of = |size: u32, idle_tx: Option<u64>| {
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
                .connect_with(options.clone())
        };
        let pool = pool_of(request_connections, None).await?;
        let idle_tx = idle_tx_timeout.map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
        let work = pool_of(worker_connections, idle_tx).await?;
        Ok(Self {
            pool,
            work,
            programs: Arc::new(RwLock::new(HashMap::new())),
            lease: chrono::TimeDelta::from_std(redeliver_after).map_err(corrupt)?,
            kept: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// As [`MySqlStore::connect`], but opens no connection until the first
    /// query needs one (both pools lazy, `min_connections` 0), so it succeeds
    /// whether or not the server answers. For the router tests, which must
    /// never reach a database; a query against an unreachable server fails
    /// after the 10 s acquire timeout. Sessions are set up as `connect`'s are.
    pub fn connect_lazy(url: &str, max_connections: u32, redeliver_after: Duration) -> Result<Self> {
        let options =
            MySqlConnectOptions::from_str(url)?.timezone(Some("+00:00".to_owned())).statement_cache_capacity(256);
        let lazy_pool = || {
            MySqlPoolOptions::new()
                .max_connections(max_connections.max(1))
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                        conn.execute("SET SESSION innodb_lock_wait_timeout = 10").await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(options.clone())
        };
        Ok(Self {
            pool: lazy_pool(),
            work: lazy_pool(),
            programs: Arc::new(RwLock::new(HashMap::new())),
            lease: chrono::TimeDelta::from_std(redeliver_after).map_err(corrupt)?,
            kept: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Applies pending migrations and makes sure program version 1 exists.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/mysql").run(&self.pool).await?;
        self.ensure_default_program().await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A connection for intake: a kept one (pinged first when idle for a
    /// while), else one taken out of the pool for good.
    async fn take_kept(&self) -> Result<MySqlConnection> {
        loop {
            let Some((mut conn, since)) = self.kept.lock().expect("intake connections poisoned").pop() else {
                return Ok(self.pool.acquire().await?.detach());
            };
            if since.elapsed() < IDLE_BEFORE_PING || conn.ping().await.is_ok() {
                return Ok(conn);
            }
        }
    }

    fn give_back(&self, conn: MySqlConnection) {
        self.kept.lock().expect("intake connections poisoned").push((conn, Instant::now()));
    }
}

/// Pushes `?, ?, …` bound to `values`.
/// ` AND CRC32(partition_key) % of IN (owned)`: only events of these journal
/// partitions (the same partition function as `journal::keys::partition_of`).
fn push_parts(q: &mut QueryBuilder<'_, MySql>, parts: Parts<'_>) {
    if parts.is_all() {
        return;
    }
    q.push(" AND CRC32(partition_key) % ").push_bind(u32::from(parts.of)).push(" IN (");
    if parts.owned.is_empty() {
        q.push("NULL");
    }
    push_list(q, parts.owned.iter().map(|p| u32::from(*p)));
    q.push(")");
}

fn push_list<'a, T>(q: &mut QueryBuilder<'a, MySql>, values: impl IntoIterator<Item = T>)
where
    T: 'a + sqlx::Encode<'a, MySql> + sqlx::Type<MySql> + Send,
{
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v);
    }
}

fn parse_event_id(s: &str) -> Result<crate::domain::event::EventId> {
    crate::domain::event::EventId::parse(s).ok_or_else(|| corrupt(format!("event id {s:?}")))
}

fn parse_event_status(s: &str) -> Result<crate::domain::event::EventStatus> {
    crate::domain::event::EventStatus::parse(s).ok_or_else(|| corrupt(format!("event status {s:?}")))
}

fn parse_event_type(s: &str) -> Result<crate::domain::event::EventType> {
    crate::domain::event::EventType::parse(s).ok_or_else(|| corrupt(format!("event type {s:?}")))
}

fn parse_order_status(s: &str) -> Result<crate::domain::order::OrderStatus> {
    crate::domain::order::OrderStatus::parse(s).ok_or_else(|| corrupt(format!("order status {s:?}")))
}

use crate::domain::affiliate::{Affiliate, AffiliatePatch, CreateAffiliate, NewAffiliate, PatchAffiliate};
use crate::domain::event::{
    Backlog, EventCounts, EventDetail, EventFilter, EventId, EventRecord, EventRef, EventStatus, EventType,
};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{BuyerRewards, LedgerEntry};
use crate::domain::order::{CreateOrder, LifecycleOutcome, NewOrder, OrderRecord, RefundRequest};
use crate::domain::payout::{CreatePayout, Payout, PayoutSummary};
use crate::store::{ApplyTx, Backend, EntitlementInputs, FailureDecision, ReconcileFacts};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

#[async_trait::async_trait]
impl Backend for MySqlStore {
    async fn migrate(&self) -> Result<()> {
        MySqlStore::migrate(self).await
    }
    async fn ping(&self) -> bool {
        MySqlStore::ping(self).await
    }
    async fn program(&self, version: u64) -> Result<Arc<Program>> {
        MySqlStore::program(self, version).await
    }
    async fn current_program(&self) -> Result<(u64, Arc<Program>)> {
        MySqlStore::current_program(self).await
    }
    async fn insert_program(&self, program: &Program) -> Result<u64> {
        MySqlStore::insert_program(self, program).await
    }
    async fn create_orders(&self, orders: &[NewOrder]) -> Vec<Result<CreateOrder>> {
        MySqlStore::create_orders(self, orders).await
    }
    async fn order(&self, id: &OrderId) -> Result<Option<OrderRecord>> {
        MySqlStore::order(self, id).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome> {
        MySqlStore::refund(self, req).await
    }
    async fn cancel(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        MySqlStore::cancel(self, id).await
    }
    async fn complete(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        MySqlStore::complete(self, id).await
    }
    async fn create_affiliate(&self, new: &NewAffiliate) -> Result<CreateAffiliate> {
        MySqlStore::create_affiliate(self, new).await
    }
    async fn patch_affiliate(&self, id: &AffiliateId, patch: &AffiliatePatch) -> Result<PatchAffiliate> {
        MySqlStore::patch_affiliate(self, id, patch).await
    }
    async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>> {
        MySqlStore::affiliate(self, id).await
    }
    async fn affiliate_ledger(&self, id: &AffiliateId, after: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
        MySqlStore::affiliate_ledger(self, id, after, limit).await
    }
    async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>> {
        MySqlStore::affiliate_children(self, id, after, limit).await
    }
    async fn buyer_rewards(&self, id: &BuyerId) -> Result<BuyerRewards> {
        MySqlStore::buyer_rewards(self, id).await
    }
    async fn begin_apply(&self) -> Result<Box<dyn ApplyTx>> {
        let tx = self.work.begin().await?;
        Ok(Box::new(apply::MySqlApply { store: self.clone(), tx }))
    }
    async fn take_fence(&self, part: u16, owner: &str) -> Result<(u64, Option<String>)> {
        MySqlStore::take_fence(self, part, owner).await
    }
    async fn begin_read(&self) -> Result<Box<dyn ApplyTx>> {
        let tx = self.pool.begin().await?;
        Ok(Box::new(apply::MySqlApply { store: self.clone(), tx }))
    }
    async fn attributed(&self, attribution: &crate::domain::order::Attribution) -> Result<Option<AffiliateId>> {
        MySqlStore::attributed(self, attribution).await
    }
    async fn held_points(&self) -> Result<i128> {
        MySqlStore::held_points(self).await
    }
    async fn begin_wallet(&self, buyer: &BuyerId) -> Result<Box<dyn crate::store::WalletTx>> {
        Ok(Box::new(MySqlStore::begin_wallet(self, buyer).await?))
    }
    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(BuyerId, crate::domain::ids::RedemptionId)>> {
        MySqlStore::due_holds(self, now, limit).await
    }
    async fn due_expiries(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<BuyerId>> {
        MySqlStore::due_expiries(self, now, limit).await
    }
    async fn buyer_wallet(&self, id: &BuyerId) -> Result<(BuyerRewards, Vec<crate::domain::wallet::Redemption>)> {
        MySqlStore::buyer_wallet(self, id).await
    }
    async fn wallet_buyers(&self, after: &str, limit: u32) -> Result<Vec<BuyerId>> {
        MySqlStore::wallet_buyers(self, after, limit).await
    }
    async fn record_failure(
        &self,
        id: EventId,
        error: &str,
        decide: &(dyn Fn(u32) -> FailureDecision + Send + Sync),
    ) -> Result<(EventStatus, EventType)> {
        MySqlStore::record_failure(self, id, error, decide).await
    }
    async fn take_due_events(&self, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>> {
        MySqlStore::take_due_events(self, limit, parts).await
    }
    async fn open_events(&self, after: Option<EventId>, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>> {
        MySqlStore::open_events(self, after, limit, parts).await
    }
    async fn backlog(&self) -> Result<Backlog> {
        MySqlStore::backlog(self).await
    }
    async fn event_statuses(&self, ids: &[EventId]) -> Result<HashMap<EventId, EventStatus>> {
        MySqlStore::event_statuses(self, ids).await
    }
    async fn approve_due(&self, limit: u32) -> Result<usize> {
        MySqlStore::approve_due(self, limit).await
    }
    async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>> {
        MySqlStore::list_events(self, f, before, limit).await
    }
    async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>> {
        MySqlStore::event_detail(self, id).await
    }
    async fn replay(&self, ids: &[EventId]) -> Result<Vec<EventRef>> {
        MySqlStore::replay(self, ids).await
    }
    async fn select_for_replay(&self, f: &EventFilter) -> Result<Vec<EventId>> {
        MySqlStore::select_for_replay(self, f).await
    }
    async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts> {
        MySqlStore::event_counts(self, f).await
    }
    async fn order_exists(&self, id: &OrderId) -> Result<bool> {
        MySqlStore::order_exists(self, id).await
    }
    async fn entitlement_inputs(&self, id: &OrderId) -> Result<Option<EntitlementInputs>> {
        MySqlStore::entitlement_inputs(self, id).await
    }
    async fn add_recompute_event(&self, id: &OrderId, payload: &str) -> Result<EventRef> {
        MySqlStore::add_recompute_event(self, id, payload).await
    }
    async fn create_payout(&self, min_amount: Decimal, key: Option<&str>) -> Result<CreatePayout> {
        MySqlStore::create_payout(self, min_amount, key).await
    }
    async fn complete_payout(&self, id: u64) -> Result<Option<Payout>> {
        MySqlStore::complete_payout(self, id).await
    }
    async fn payout(&self, id: u64) -> Result<Option<Payout>> {
        MySqlStore::payout(self, id).await
    }
    async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>> {
        MySqlStore::list_payouts(self, before, limit).await
    }
    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts> {
        MySqlStore::reconcile_facts(self, stuck_before).await
    }
    async fn processed_orders(&self, after: &str, limit: u32) -> Result<Vec<OrderId>> {
        MySqlStore::processed_orders(self, after, limit).await
    }
}
