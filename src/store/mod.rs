//! The system of record behind one seam: [`Backend`] (and [`ApplyTx`], the
//! event transaction's reads and writes) is everything the engine may ask of
//! storage, in domain types only. `mysql` is the production implementation,
//! `sqlite` the embedded one (one file, no server).
//! SQL only: the rules live in `domain`, the use cases in `engine`.
pub mod month;
pub mod mysql;
pub mod sqlite;

use crate::domain::affiliate::{Affiliate, AffiliatePatch, CreateAffiliate, NewAffiliate, PatchAffiliate};
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::event::{
    Backlog, EventCounts, EventDetail, EventFilter, EventId, EventRecord, EventRef, EventStatus, EventType,
};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId, RedemptionId};
use crate::domain::ledger::{Applied, BuyerRewards, EntryStatus, LedgerEntry, RewardEntry};
use crate::domain::order::{
    CommissionStatus, CreateOrder, LifecycleOutcome, NewOrder, OrderItem, OrderRecord, OrderStatus, RefundRequest,
};
use crate::domain::payout::{CreatePayout, Payout, PayoutSummary};
use crate::domain::program::Program;
use crate::domain::wallet::Redemption;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A lock the work needs is held elsewhere and was not granted in time:
    /// nothing was changed; try again.
    #[error("busy: {0}")]
    Busy(&'static str),
}

impl StoreError {
    /// Whether trying the same work again may succeed (deadlock, lock wait,
    /// lost connection, exhausted pool; SQLite's BUSY and LOCKED), as opposed
    /// to a fault in the data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => mysql::is_transient(e) || sqlite::is_transient(e),
            StoreError::Busy(_) => true,
            _ => false,
        }
    }

    /// A deadlock or lock-wait timeout (MySQL), SQLITE_BUSY or SQLITE_LOCKED
    /// (SQLite): worth an immediate retry.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, StoreError::Db(e) if mysql::is_lock_conflict(e) || sqlite::is_lock_conflict(e))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A points balance read from a DECIMAL(28,0) column (whole points).
pub(crate) fn points_of(d: Decimal) -> Result<i128> {
    use rust_decimal::prelude::ToPrimitive;
    d.is_integer().then(|| d.to_i128()).flatten().ok_or_else(|| corrupt(format!("stored points {d}")))
}

/// A journal partition's fencing token, as held by the instance that owns
/// the partition: an event transaction commits only while its tokens are
/// still the current ones (see `journal_fences`, docs/SCALING.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub part: u16,
    pub token: u64,
}

/// Which journal partitions a recovery read is about: `owned` of `of`.
/// With every partition owned (one instance, the embedded mode) there is
/// nothing to filter.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub of: u16,
    pub owned: &'a [u16],
}

impl Parts<'_> {
    /// Every partition (no filter).
    pub const ALL: Parts<'static> = Parts { of: 1, owned: &[0] };
    pub fn is_all(&self) -> bool {
        usize::from(self.of) <= self.owned.len()
    }
}

/// An open or settled event and its order, as locked by [`ApplyTx::lock`].
#[derive(Debug, Clone)]
pub struct LockedEvent {
    pub id: EventId,
    pub kind: EventType,
    pub status: EventStatus,
    /// The statuses of the order's other events.
    pub siblings: Vec<EventStatus>,
    pub order_id: OrderId,
    pub created_at: DateTime<Utc>,
    pub program_version: u64,
    pub buyer_id: BuyerId,
    pub direct: Option<AffiliateId>,
    pub placed_at: DateTime<Utc>,
    pub order_status: OrderStatus,
    /// The frozen context (JSON) once resolved by a first processing.
    pub context: Option<String>,
    pub approve_at: Option<DateTime<Utc>>,
    pub approved: bool,
}

/// What rules 4, 5 and 8 need to know about an order's month and buyer.
#[derive(Debug, Clone)]
pub struct MonthAsk<'a> {
    pub order_id: &'a OrderId,
    pub buyer_id: &'a BuyerId,
    pub direct: Option<&'a AffiliateId>,
    pub placed_at: DateTime<Utc>,
    /// Start of the order's calendar month (program timezone), in UTC.
    pub month_start: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthFacts {
    /// The buyer has no order placed before this one (ties by id).
    pub buyer_first_order: bool,
    /// Σ original eligible amount of the direct affiliate's earlier orders this month.
    pub volume_before: Decimal,
    /// How many such orders there are.
    pub earlier: u64,
}

pub struct LedgerRow {
    pub affiliate_id: AffiliateId,
    pub order_id: OrderId,
    pub event_id: EventId,
    pub level: u8,
    pub kind: CommissionKind,
    pub amount: Decimal,
    pub status: EntryStatus,
    pub rule_version: u64,
}

pub struct RewardRow {
    pub buyer_id: BuyerId,
    pub order_id: OrderId,
    pub event_id: EventId,
    pub kind: RewardKind,
    pub points: i64,
    /// An earned lot's expiry (`points_expire_days` after now).
    pub expires_at: Option<DateTime<Utc>>,
}

/// How an applied event leaves its order.
pub struct OrderUpdate {
    pub order_id: OrderId,
    pub commission_status: CommissionStatus,
    pub no_commission_reason: Option<&'static str>,
    /// The context resolved by this event (first processing only), as JSON.
    pub context: Option<String>,
}

/// Everything one event transaction writes, in one call so the backend can
/// order its statements (the most contended rows last).
#[derive(Default)]
pub struct Writes {
    pub ledger: Vec<LedgerRow>,
    pub rewards: Vec<RewardRow>,
    /// affiliate → Σ amount per balance status.
    pub balances: BTreeMap<AffiliateId, BTreeMap<EntryStatus, Decimal>>,
    /// buyer → Σ points.
    pub points: BTreeMap<BuyerId, i64>,
    /// buyer → the soonest expiry of the lots written now (moves the
    /// buyer's expiry due time earlier, never later).
    pub expiries: BTreeMap<BuyerId, DateTime<Utc>>,
    /// Orders whose holding period has passed: approve before the rest.
    pub approve: Vec<OrderId>,
    pub done: Vec<EventId>,
    /// The fencing token each done event was applied under (events of
    /// partitions the instance owns; none for work that is not fenced).
    pub fences: HashMap<EventId, u64>,
    /// The instance applying the events.
    pub applied_by: Option<Arc<str>>,
    pub orders: Vec<OrderUpdate>,
}

/// The event transaction (G3): every read the rules need and one write,
/// committed together or not at all (dropping it rolls back).
#[async_trait::async_trait]
pub trait ApplyTx: Send {
    /// Takes a shared lock on the partitions' fence rows, held to the end of
    /// the transaction, and answers whether every token is still current. A
    /// takeover (which updates the row) waits for this transaction, and
    /// every transaction after it sees the new token. Backends of one
    /// instance (SQLite) have nothing to check.
    async fn fence(&mut self, fences: &[Fence]) -> Result<bool>;
    /// Locks the events and their orders; unknown ids are left out.
    async fn lock(&mut self, ids: &[EventId]) -> Result<Vec<LockedEvent>>;
    async fn program(&mut self, version: u64) -> Result<Arc<Program>>;
    /// Each order's items, in line order, keyed by order id.
    async fn items(&mut self, orders: &[&OrderId]) -> Result<HashMap<OrderId, Vec<OrderItem>>>;
    /// What the ledger holds for each order.
    async fn applied(&mut self, orders: &[&OrderId]) -> Result<HashMap<OrderId, Applied>>;
    /// Each of `firsts` and up to `count − 1` of its ancestors, nearest first.
    async fn ancestors(
        &mut self,
        firsts: &[&AffiliateId],
        count: usize,
    ) -> Result<HashMap<AffiliateId, Vec<Affiliate>>>;
    async fn month_facts(&mut self, asks: &[MonthAsk<'_>]) -> Result<HashMap<OrderId, MonthFacts>>;
    async fn write(&mut self, writes: &Writes, now: DateTime<Utc>) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A buyer's stored balance, as locked by [`WalletTx::balance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuyerBalance {
    /// The signed sum of the history (negative: a debt).
    pub points: i128,
    pub expire_due_at: Option<DateTime<Utc>>,
}

/// One change to a buyer's wallet: its event (stored done: the change is
/// applied in the transaction that records it), its history entries, the
/// balance moved by their sum.
pub struct WalletWrite {
    /// (id, type, payload JSON); None only for a change of `due` alone.
    pub event: Option<(EventId, EventType, String)>,
    /// (kind, points, redemption) — entries with no order, of the event.
    pub entries: Vec<(RewardKind, i64, Option<RedemptionId>)>,
    /// The buyer's expiry due time after the change (None: left as it is).
    pub due: Option<Option<DateTime<Utc>>>,
}

/// A transaction on one buyer's wallet, which holds the buyer's row lock
/// from [`WalletTx::balance`] to the commit: holds, captures, releases and
/// expiry of one buyer happen one at a time, and every writer of the
/// buyer's entries (the event transaction too) takes the lock before it
/// writes, so entry ids are in commit order.
#[async_trait::async_trait]
pub trait WalletTx: Send {
    /// Locks the buyer's row; None when the buyer has never earned anything.
    async fn balance(&mut self) -> Result<Option<BuyerBalance>>;
    /// The buyer's whole history, in id order.
    async fn history(&mut self) -> Result<Vec<RewardEntry>>;
    async fn redemption(&mut self, id: &RedemptionId) -> Result<Option<Redemption>>;
    /// Inserts the redemption (`new`) or updates its status, order and time.
    async fn put_redemption(&mut self, r: &Redemption, new: bool) -> Result<()>;
    async fn record(&mut self, w: &WalletWrite, now: DateTime<Utc>) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// What a retry policy decided for a failed attempt.
pub type FailureDecision = (EventStatus, DateTime<Utc>);

/// What recompute and reconcile read of one order, under a shared lock.
pub struct EntitlementInputs {
    pub program_version: u64,
    pub state: crate::domain::order::OrderState,
    /// The frozen context (JSON).
    pub context: String,
    pub applied: Applied,
}

/// Rows that break a stored-balance invariant.
#[derive(Debug, Clone, Default)]
pub struct ReconcileFacts {
    pub affiliates: u64,
    pub buyers: u64,
    pub events: u64,
    pub payouts: u64,
    /// (affiliate, stored [pending, approved, paid], ledger sums)
    pub balance_mismatches: Vec<(String, [Decimal; 3], [Decimal; 3])>,
    /// (buyer, stored points, reward sum)
    pub points_mismatches: Vec<(String, i128, i128)>,
    /// (event, affiliate, kind)
    pub duplicate_entries: Vec<(String, String, String)>,
    /// (event, order, status, attempts) open and created before the cutoff
    pub stuck_events: Vec<(String, String, String, u32)>,
    /// (payout, affiliate, item amount, entries' sum)
    pub payout_item_mismatches: Vec<(u64, String, Decimal, Decimal)>,
    /// (entry, affiliate, payout, entry status, batch status)
    pub payout_entry_statuses: Vec<(u64, String, u64, String, String)>,
}

/// Everything the engine asks of the system of record.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Applies pending migrations and makes sure program version 1 exists.
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> bool;

    async fn program(&self, version: u64) -> Result<Arc<Program>>;
    async fn current_program(&self) -> Result<(u64, Arc<Program>)>;
    async fn insert_program(&self, program: &Program) -> Result<u64>;

    /// Intake: the orders, their items and `order.placed` events, as few
    /// transactions as the backend can; one outcome per order, in order.
    async fn create_orders(&self, orders: &[NewOrder]) -> Vec<Result<CreateOrder>>;
    async fn order(&self, id: &OrderId) -> Result<Option<OrderRecord>>;
    async fn refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome>;
    async fn cancel(&self, id: &OrderId) -> Result<LifecycleOutcome>;
    async fn complete(&self, id: &OrderId) -> Result<LifecycleOutcome>;

    async fn create_affiliate(&self, new: &NewAffiliate) -> Result<CreateAffiliate>;
    async fn patch_affiliate(&self, id: &AffiliateId, patch: &AffiliatePatch) -> Result<PatchAffiliate>;
    async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>>;
    async fn affiliate_ledger(&self, id: &AffiliateId, after: u64, limit: u32) -> Result<Vec<LedgerEntry>>;
    async fn buyer_rewards(&self, id: &BuyerId) -> Result<BuyerRewards>;
    /// One page of an affiliate's direct children, by id (after `after`).
    async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>>;

    async fn begin_apply(&self) -> Result<Box<dyn ApplyTx>>;
    /// Moves a partition's fencing token on (a takeover, in its own
    /// transaction: it waits for the transactions holding the old token) and
    /// records it; returns the new token and the previous owner.
    async fn take_fence(&self, part: u16, owner: &str) -> Result<(u64, Option<String>)>;
    /// A read-only view for a quote: the context reads of the event
    /// transaction, without its locks (and on SQLite not on the writer).
    async fn begin_read(&self) -> Result<Box<dyn ApplyTx>>;

    /// The affiliate an order with this attribution would be attributed to
    /// (None: an unknown code or id).
    async fn attributed(&self, attribution: &crate::domain::order::Attribution) -> Result<Option<AffiliateId>>;
    /// Σ points of the redemptions held now.
    async fn held_points(&self) -> Result<i128>;
    async fn begin_wallet(&self, buyer: &BuyerId) -> Result<Box<dyn WalletTx>>;
    /// Holds still `held` past their hold time, oldest first.
    async fn due_holds(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<(BuyerId, RedemptionId)>>;
    /// Buyers whose expiry due time has passed.
    async fn due_expiries(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<BuyerId>>;
    /// A buyer's balance, history and redemptions, read in one snapshot.
    async fn buyer_wallet(&self, id: &BuyerId) -> Result<(BuyerRewards, Vec<Redemption>)>;
    /// A page of the buyers with a wallet to check (redemptions, wallet
    /// entries or expiring lots), by id.
    async fn wallet_buyers(&self, after: &str, limit: u32) -> Result<Vec<BuyerId>>;
    /// Records a failed attempt (attempts + 1, the error in the history);
    /// `decide` turns the attempt count into the next status and retry time.
    /// A done or dead event is left as it is. Returns its status after, and its type.
    async fn record_failure(
        &self,
        id: EventId,
        error: &str,
        decide: &(dyn Fn(u32) -> FailureDecision + Send + Sync),
    ) -> Result<(EventStatus, EventType)>;
    /// Open events whose lease or retry time has passed, oldest due first;
    /// their lease moves one period ahead.
    /// Only events of the journal partitions `parts` (recovery runs on each
    /// partition's owner).
    async fn take_due_events(&self, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>>;
    /// One page of every open event (keyset on id) of the partitions `parts`.
    async fn open_events(&self, after: Option<EventId>, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>>;
    async fn backlog(&self) -> Result<Backlog>;
    /// The statuses of these events (unknown ids are left out), in one read.
    async fn event_statuses(&self, ids: &[EventId]) -> Result<HashMap<EventId, EventStatus>>;
    /// Approves orders past their holding period, each in its own transaction.
    async fn approve_due(&self, limit: u32) -> Result<usize>;

    async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>>;
    async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>>;
    /// Puts failed and dead events back to pending with a fresh attempt
    /// budget, records every replay, and returns what to journal.
    async fn replay(&self, ids: &[EventId]) -> Result<Vec<EventRef>>;
    async fn select_for_replay(&self, f: &EventFilter) -> Result<Vec<EventId>>;
    /// How many events matching the filter are in each status (the filter's
    /// own status, if any, is ignored).
    async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts>;
    async fn order_exists(&self, id: &OrderId) -> Result<bool>;
    /// None when the order does not exist or has not been processed.
    async fn entitlement_inputs(&self, id: &OrderId) -> Result<Option<EntitlementInputs>>;
    /// Stores an `order.recomputed` event for the order.
    async fn add_recompute_event(&self, id: &OrderId, payload: &str) -> Result<EventRef>;

    async fn create_payout(&self, min_amount: Decimal, key: Option<&str>) -> Result<CreatePayout>;
    async fn complete_payout(&self, id: u64) -> Result<Option<Payout>>;
    async fn payout(&self, id: u64) -> Result<Option<Payout>>;
    /// One page of batches, newest first (ids below `before`).
    async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>>;

    /// The balance, points, duplicate, stuck-event and payout checks of
    /// reconcile; `stuck_before`: open events created earlier are stuck.
    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts>;
    /// A page of the ids of orders whose events are all done.
    async fn processed_orders(&self, after: &str, limit: u32) -> Result<Vec<OrderId>>;
}
