//! The embedded SQLite backend (sqlx): the same seam, the same rows and the
//! same outcomes as `mysql`, one module per aggregate.
//!
//! Two pools on one database file in WAL mode: ONE writer connection, on
//! which every transaction that writes runs (`BEGIN IMMEDIATE`), so writes
//! never conflict and need no row locks; and a few read-only connections for
//! plain reads, which WAL lets run beside the writer. `synchronous=FULL`: a
//! commit is on disk before it is answered.
//!
//! SQLite has no DECIMAL and no DATETIME: money is TEXT holding the exact
//! decimal, times are fixed-width UTC TEXT (`codec`). Money is never summed
//! or added in SQL (SQLite would do it in floating point): rows are fetched
//! and added as `Decimal`s here, and balances are read, moved in Rust and
//! written back inside the writer's transaction.
mod affiliates;
mod apply;
pub mod codec;
mod events;
mod ledger;
mod lifecycle;
mod operator;
mod orders;
mod payouts;
mod programs;
mod reconcile;
mod wallet;

use super::{corrupt, Result};
use crate::domain::program::Program;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// SQLite's limit on bound parameters in one statement.
const MAX_PARAMS: usize = 32_766;
/// Ids per `IN (…)` list.
const IN_CHUNK: usize = 1_000;

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// The primary result code of an SQLite error (its extended code's low byte).
fn sqlite_primary_code(e: &sqlx::Error) -> Option<i32> {
    let sqlx::Error::Database(db) = e else { return None };
    let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code = sqlx::error::DatabaseError::code(sqlite)?;
    code.parse::<i32>().ok().map(|c| c & 0xff)
}

/// SQLITE_BUSY (another connection holds the write lock past the busy
/// timeout) or SQLITE_LOCKED (a table lock within a shared cache).
pub(super) fn is_lock_conflict(e: &sqlx::Error) -> bool {
    matches!(sqlite_primary_code(e), Some(SQLITE_BUSY | SQLITE_LOCKED))
}

pub(super) fn is_transient(e: &sqlx::Error) -> bool {
    is_lock_conflict(e)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Handle to the database file: the writer, the readers, and a cache of
/// immutable program versions.
#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every transaction that writes.
    writer: SqlitePool,
    /// Read-only connections for plain reads.
    readers: SqlitePool,
    programs: Arc<RwLock<HashMap<u64, Arc<Program>>>>,
    /// How long a journaled event may stay unapplied before recovery journals it again.
    lease: chrono::TimeDelta,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` (`sqlite://path`,
    /// `sqlite:path`, or a bare path): a writer pool of one connection and a
    /// pool of `readers` read-only ones. An in-memory database has no file
    /// another connection could open, so there the writer serves reads too.
    pub async fn connect(url: &str, readers: u32, redeliver_after: Duration) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .busy_timeout(Duration::from_secs(10))
            .synchronous(SqliteSynchronous::Full)
            .statement_cache_capacity(256);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // Connections are never recycled: an embedded connection does not go
        // stale, the last one to close would take an in-memory database with
        // it, and the read-only readers need the writer's WAL index to exist.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            // Every writer waits for the one connection: allow a queue.
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .connect_with(base.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal))
            .await?;
        let readers = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(readers.max(1))
                .min_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
                .connect_with(base.read_only(true))
                .await?
        };
        Ok(Self {
            writer,
            readers,
            programs: Arc::new(RwLock::new(HashMap::new())),
            lease: chrono::TimeDelta::from_std(redeliver_after).map_err(corrupt)?,
        })
    }

    /// The one writer connection's pool, for components that write to the
    /// same file (the embedded journal): sharing it keeps writes serial.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// A write transaction on the writer, holding SQLite's write lock from
    /// its first statement.
    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Applies pending migrations (`migrations/sqlite`) and makes sure
    /// program version 1 exists.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        self.ensure_default_program().await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.readers).await.is_ok()
    }
}

/// Pushes `?, ?, …` bound to `values`.
fn push_list<'a, T>(q: &mut QueryBuilder<'a, Sqlite>, values: impl IntoIterator<Item = T>)
where
    T: 'a + sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite> + Send,
{
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v);
    }
}

/// Rows per multi-row INSERT of `columns` columns, within SQLite's parameter limit.
fn rows_per_insert(columns: usize) -> usize {
    (MAX_PARAMS / columns.max(1)).max(1)
}

/// A u64 for binding (SQLite integers are signed 64-bit).
fn int(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| corrupt(format!("{v} does not fit an SQLite integer")))
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

/// A `group_concat` of event statuses.
fn parse_statuses(list: Option<String>) -> Result<Vec<crate::domain::event::EventStatus>> {
    list.as_deref().map(|s| s.split(',').map(parse_event_status).collect()).transpose().map(Option::unwrap_or_default)
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
impl Backend for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        SqliteStore::migrate(self).await
    }
    async fn ping(&self) -> bool {
        SqliteStore::ping(self).await
    }
    async fn program(&self, version: u64) -> Result<Arc<Program>> {
        SqliteStore::program(self, version).await
    }
    async fn current_program(&self) -> Result<(u64, Arc<Program>)> {
        SqliteStore::current_program(self).await
    }
    async fn insert_program(&self, program: &Program) -> Result<u64> {
        SqliteStore::insert_program(self, program).await
    }
    async fn create_orders(&self, orders: &[NewOrder]) -> Vec<Result<CreateOrder>> {
        SqliteStore::create_orders(self, orders).await
    }
    async fn order(&self, id: &OrderId) -> Result<Option<OrderRecord>> {
        SqliteStore::order(self, id).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome> {
        SqliteStore::refund(self, req).await
    }
    async fn cancel(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        SqliteStore::cancel(self, id).await
    }
    async fn complete(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        SqliteStore::complete(self, id).await
    }
    async fn create_affiliate(&self, new: &NewAffiliate) -> Result<CreateAffiliate> {
        SqliteStore::create_affiliate(self, new).await
    }
    async fn patch_affiliate(&self, id: &AffiliateId, patch: &AffiliatePatch) -> Result<PatchAffiliate> {
        SqliteStore::patch_affiliate(self, id, patch).await
    }
    async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>> {
        SqliteStore::affiliate(self, id).await
    }
    async fn affiliate_ledger(&self, id: &AffiliateId, after: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
        SqliteStore::affiliate_ledger(self, id, after, limit).await
    }
    async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>> {
        SqliteStore::affiliate_children(self, id, after, limit).await
    }
    async fn buyer_rewards(&self, id: &BuyerId) -> Result<BuyerRewards> {
        SqliteStore::buyer_rewards(self, id).await
    }
    async fn begin_apply(&self) -> Result<Box<dyn ApplyTx>> {
        let tx = self.begin_write().await?;
        Ok(Box::new(apply::SqliteApply { store: self.clone(), tx }))
    }
    async fn begin_read(&self) -> Result<Box<dyn ApplyTx>> {
        let tx = self.readers.begin().await?;
        Ok(Box::new(apply::SqliteApply { store: self.clone(), tx }))
    }
    async fn attributed(&self, attribution: &crate::domain::order::Attribution) -> Result<Option<AffiliateId>> {
        SqliteStore::attributed(self, attribution).await
    }
    async fn held_points(&self) -> Result<i128> {
        SqliteStore::held_points(self).await
    }
    async fn begin_wallet(&self, buyer: &BuyerId) -> Result<Box<dyn crate::store::WalletTx>> {
        Ok(Box::new(SqliteStore::begin_wallet(self, buyer).await?))
    }
    async fn due_holds(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(BuyerId, crate::domain::ids::RedemptionId)>> {
        SqliteStore::due_holds(self, now, limit).await
    }
    async fn due_expiries(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<BuyerId>> {
        SqliteStore::due_expiries(self, now, limit).await
    }
    async fn buyer_wallet(&self, id: &BuyerId) -> Result<(BuyerRewards, Vec<crate::domain::wallet::Redemption>)> {
        SqliteStore::buyer_wallet(self, id).await
    }
    async fn wallet_buyers(&self, after: &str, limit: u32) -> Result<Vec<BuyerId>> {
        SqliteStore::wallet_buyers(self, after, limit).await
    }
    async fn record_failure(
        &self,
        id: EventId,
        error: &str,
        decide: &(dyn Fn(u32) -> FailureDecision + Send + Sync),
    ) -> Result<(EventStatus, EventType)> {
        SqliteStore::record_failure(self, id, error, decide).await
    }
    /// One instance owns the one partition: `parts` is always all of them.
    async fn take_due_events(&self, limit: u32, _parts: crate::store::Parts<'_>) -> Result<Vec<EventRef>> {
        SqliteStore::take_due_events(self, limit).await
    }
    async fn open_events(
        &self,
        after: Option<EventId>,
        limit: u32,
        _parts: crate::store::Parts<'_>,
    ) -> Result<Vec<EventRef>> {
        SqliteStore::open_events(self, after, limit).await
    }
    /// Nothing to fence in a single-instance mode: one token, forever.
    async fn take_fence(&self, _part: u16, _owner: &str) -> Result<(u64, Option<String>)> {
        Ok((1, None))
    }
    async fn backlog(&self) -> Result<Backlog> {
        SqliteStore::backlog(self).await
    }
    async fn event_statuses(&self, ids: &[EventId]) -> Result<HashMap<EventId, EventStatus>> {
        SqliteStore::event_statuses(self, ids).await
    }
    async fn approve_due(&self, limit: u32) -> Result<usize> {
        SqliteStore::approve_due(self, limit).await
    }
    async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>> {
        SqliteStore::list_events(self, f, before, limit).await
    }
    async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>> {
        SqliteStore::event_detail(self, id).await
    }
    async fn replay(&self, ids: &[EventId]) -> Result<Vec<EventRef>> {
        SqliteStore::replay(self, ids).await
    }
    async fn select_for_replay(&self, f: &EventFilter) -> Result<Vec<EventId>> {
        SqliteStore::select_for_replay(self, f).await
    }
    async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts> {
        SqliteStore::event_counts(self, f).await
    }
    async fn order_exists(&self, id: &OrderId) -> Result<bool> {
        SqliteStore::order_exists(self, id).await
    }
    async fn entitlement_inputs(&self, id: &OrderId) -> Result<Option<EntitlementInputs>> {
        SqliteStore::entitlement_inputs(self, id).await
    }
    async fn add_recompute_event(&self, id: &OrderId, payload: &str) -> Result<EventRef> {
        SqliteStore::add_recompute_event(self, id, payload).await
    }
    async fn create_payout(&self, min_amount: Decimal, key: Option<&str>) -> Result<CreatePayout> {
        SqliteStore::create_payout(self, min_amount, key).await
    }
    async fn complete_payout(&self, id: u64) -> Result<Option<Payout>> {
        SqliteStore::complete_payout(self, id).await
    }
    async fn payout(&self, id: u64) -> Result<Option<Payout>> {
        SqliteStore::payout(self, id).await
    }
    async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>> {
        SqliteStore::list_payouts(self, before, limit).await
    }
    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts> {
        SqliteStore::reconcile_facts(self, stuck_before).await
    }
    async fn processed_orders(&self, after: &str, limit: u32) -> Result<Vec<OrderId>> {
        SqliteStore::processed_orders(self, after, limit).await
    }
}
