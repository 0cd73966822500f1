//! The event transaction's seam (G3): every read the rules need and one
//! write, committed together or not at all. Driven by `engine::apply`.
use super::events::Fence;
use super::Result;
use crate::domain::affiliate::Affiliate;
use crate::domain::caps::{CounterKey, Cut, Used};
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::event::{EventId, EventStatus, EventType};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{Applied, EntryStatus};
use crate::domain::order::{CommissionStatus, OrderItem, OrderStatus};
use crate::domain::program::Program;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    /// The order's frozen exchange rate (another currency than the program's).
    pub fx_rate: Option<Decimal>,
    /// The frozen context (JSON) once resolved by a first processing.
    pub context: Option<String>,
    /// The order's caps (JSON, `domain::caps::OrderLimits`) once counted.
    pub limits: Option<String>,
    /// The e-mail hash the order carried.
    pub buyer_email_hash: Option<crate::domain::affiliate::EmailHash>,
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
    /// Start of the next month.
    pub month_end: DateTime<Utc>,
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
    /// What a cap or budget cut from the line.
    pub cut: Option<Cut<Decimal>>,
}

pub struct RewardRow {
    pub buyer_id: BuyerId,
    pub order_id: OrderId,
    pub event_id: EventId,
    pub kind: RewardKind,
    pub points: i64,
    /// An earned lot's expiry (`points_expire_days` after now).
    pub expires_at: Option<DateTime<Utc>>,
    /// What a points budget cut from the line.
    pub cut: Option<Cut<i64>>,
}

/// How an applied event leaves its order.
pub struct OrderUpdate {
    pub order_id: OrderId,
    pub commission_status: CommissionStatus,
    pub no_commission_reason: Option<&'static str>,
    /// The context resolved by this event (first processing only), as JSON.
    pub context: Option<String>,
    /// The order's caps, when this event changed them, as JSON.
    pub limits: Option<String>,
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
    /// The cap and budget counters the lines moved: their new values (the
    /// rows are locked by [`ApplyTx::counters`]).
    pub counters: BTreeMap<CounterKey, Used>,
    /// What the report aggregates gain (`domain::report`).
    pub report: super::ReportAdds,
}

/// Per approved order, the amount approved per affiliate.
pub type Approved = Vec<(OrderId, Vec<(AffiliateId, Decimal)>)>;

/// The event transaction (G3): every read the rules need and one write,
/// committed together or not at all (dropping it rolls back).
#[async_trait::async_trait]
pub trait ApplyTx: super::NotifyTx + Send {
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
    /// The cap and budget counters of `keys` (sorted), a missing one at 0.
    /// `lock`: each row is created if missing and locked for update, in key
    /// order, to the end of the transaction (the event transaction, before
    /// it writes); without, a plain read (a quote).
    async fn counters(&mut self, keys: &[CounterKey], lock: bool) -> Result<HashMap<CounterKey, Used>>;
    /// Writes everything; returns what the approvals in `writes.approve`
    /// approved: per order, the amount per affiliate.
    async fn write(&mut self, writes: &Writes, now: DateTime<Utc>) -> Result<Approved>;
    async fn commit(self: Box<Self>) -> Result<()>;
}
