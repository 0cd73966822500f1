//! Orders: intake, the stored order, its lifecycle (refund, cancel,
//! complete, recompute) and approval after the holding period.
use super::Result;
use crate::domain::attribution::Link;
use crate::domain::event::{EventId, EventRef, EventType};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId, RefundId, Sku};
use crate::domain::intake::{IntakeBatch, IntakeLookup};
use crate::domain::ledger::Applied;
use crate::domain::lifecycle::OrderHead;
use crate::domain::order::{CommissionStatus, NewOrder, OrderItem, OrderState, OrderStatus};
use crate::domain::program::Program;
use crate::domain::record::OrderRecord;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

#[async_trait::async_trait]
pub trait Orders: Send + Sync {
    /// An intake batch's transaction.
    async fn begin_intake(&self) -> Result<Box<dyn IntakeTx>>;
    /// A stored order's request hash and its `order.placed` event.
    async fn placed(&self, id: &OrderId) -> Result<Option<(Vec<u8>, EventId)>>;
    /// The stored order with its items, ledger entries, rewards and events.
    async fn order(&self, id: &OrderId) -> Result<Option<OrderRecord>>;
    async fn order_exists(&self, id: &OrderId) -> Result<bool>;
    /// One page of an affiliate's or a buyer's orders, newest placed first
    /// (before `(placed_at, id)` when given), through their index.
    async fn list_orders(
        &self,
        filter: &OrderFilter,
        before: Option<&(DateTime<Utc>, OrderId)>,
        limit: u32,
    ) -> Result<Vec<OrderSummary>>;
    /// What recompute and reconcile read of one order, in one snapshot;
    /// None when the order does not exist or has not been processed.
    async fn entitlement_inputs(&self, id: &OrderId) -> Result<Option<EntitlementInputs>>;
    /// [`Orders::entitlement_inputs`] of many orders at once, in one
    /// snapshot (reconcile): those whose events are all done.
    async fn entitlement_inputs_of(&self, ids: &[OrderId]) -> Result<Vec<(OrderId, EntitlementInputs)>>;
    /// A page of the ids of orders whose events are all done.
    async fn processed_orders(&self, after: &str, limit: u32) -> Result<Vec<OrderId>>;
    /// A transaction on one order's lifecycle.
    async fn begin_order(&self) -> Result<Box<dyn OrderTx>>;
    /// Orders past their holding period and not approved yet, soonest first.
    async fn due_approvals(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OrderId>>;
    async fn begin_approval(&self) -> Result<Box<dyn ApprovalTx>>;
}

/// What recompute and reconcile read of one order.
pub struct EntitlementInputs {
    pub program_version: u64,
    pub state: OrderState,
    /// The frozen context (JSON).
    pub context: String,
    /// The order's caps (JSON), once counted.
    pub limits: Option<String>,
    pub applied: Applied,
}

/// An intake batch: one read of what the batch depends on, then its writes
/// and the commit.
#[async_trait::async_trait]
pub trait IntakeTx: Send {
    /// What the batch depends on; `clicked`: the affiliates its verified
    /// click ids name (their existence is checked with the rest).
    async fn lookup(&mut self, orders: &[NewOrder], clicked: &[&AffiliateId]) -> Result<IntakeLookup>;
    /// The stored links of these buyers (asked only when the program links customers).
    async fn links(&mut self, buyers: &[&BuyerId]) -> Result<HashMap<String, Link>>;
    async fn program(&mut self, version: u64) -> Result<Arc<Program>>;
    /// The rate tables of `base` in force at each of these instants.
    async fn rate_tables(
        &mut self,
        base: &str,
        at: &[chrono::DateTime<chrono::Utc>],
    ) -> Result<HashMap<chrono::DateTime<chrono::Utc>, Option<crate::domain::currency::RateTable>>>;
    /// Writes the batch's orders, items and events, and commits.
    async fn write(self: Box<Self>, batch: &IntakeBatch<'_>) -> Result<()>;
}

/// A locked order's attribution, for a reassignment.
pub struct OrderAttribution {
    pub decision: crate::domain::attribution::Decision,
    pub placed_at: DateTime<Utc>,
    pub original_eligible: rust_decimal::Decimal,
    /// Its commissions are approved (paid ones are approved first).
    pub approved: bool,
}

/// A reassignment's writes.
pub struct Reattribution<'a> {
    pub from: Option<&'a AffiliateId>,
    pub to: &'a AffiliateId,
    pub decision: &'a crate::domain::attribution::Decision,
    /// The order's month (program time zone), in UTC.
    pub month_start: DateTime<Utc>,
    pub original_eligible: rust_decimal::Decimal,
    pub now: DateTime<Utc>,
}

/// What a lifecycle change writes: the order's new state and the event that carries it.
pub struct OrderChange<'a> {
    pub event: &'a EventRef,
    pub kind: EventType,
    pub payload: &'a str,
    pub now: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// The order's new status (None: unchanged).
    pub status: Option<OrderStatus>,
    pub commission_status: CommissionStatus,
    /// Quantities refunded now, per sku.
    pub refunded: &'a [(Sku, u32)],
    /// The refund recorded, with its request hash.
    pub refund: Option<(&'a RefundId, &'a [u8])>,
    /// Completed now: entries become approved at this time.
    pub approve_at: Option<DateTime<Utc>>,
}

/// A refund, cancellation, completion or recompute of one order, holding
/// the order's row lock from [`OrderTx::lock_order`] to the commit.
#[async_trait::async_trait]
pub trait OrderTx: super::AuditTx + Send {
    async fn lock_order(&mut self, id: &OrderId) -> Result<Option<OrderHead>>;
    /// A refund accepted before under this id: its request hash and event.
    async fn refund(&mut self, order: &OrderId, refund: &RefundId) -> Result<Option<(Vec<u8>, EventId)>>;
    /// The order's event of this type, if any.
    async fn event_of(&mut self, order: &OrderId, kind: EventType) -> Result<Option<EventId>>;
    /// The order's items, in line order.
    async fn items(&mut self, order: &OrderId) -> Result<Vec<OrderItem>>;
    async fn program(&mut self, version: u64) -> Result<Arc<Program>>;
    /// The locked order's attribution and what moving it needs.
    async fn attribution(&mut self, order: &OrderId) -> Result<OrderAttribution>;
    async fn affiliate_exists(&mut self, id: &AffiliateId) -> Result<bool>;
    /// Moves the locked order to another affiliate: its affiliate and
    /// decision, its month's volume and count from the old affiliate's
    /// month to the new one's, and its frozen context cleared (the next
    /// event resolves it for the new affiliate).
    async fn reattribute(&mut self, order: &OrderId, r: &Reattribution<'_>) -> Result<()>;
    async fn write(&mut self, order: &OrderId, change: &OrderChange<'_>) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Approval of one order whose holding period has passed.
#[async_trait::async_trait]
pub trait ApprovalTx: super::NotifyTx + Send {
    /// Locks the order; whether it is still unapproved and due at `now`.
    async fn still_due(&mut self, id: &OrderId, now: DateTime<Utc>) -> Result<bool>;
    /// Moves the order's pending entries to approved, balances with them,
    /// and marks the order approved; the amount approved per affiliate.
    async fn approve(
        &mut self,
        id: &OrderId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(crate::domain::ids::AffiliateId, rust_decimal::Decimal)>>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Whose orders a list shows (an affiliate's or a buyer's: each has an
/// index by placement time) and what narrows them.
#[derive(Debug, Clone)]
pub struct OrderFilter {
    pub of: OrdersOf,
    pub commission_status: Option<CommissionStatus>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum OrdersOf {
    Affiliate(AffiliateId),
    Buyer(BuyerId),
}

/// An order in a list.
#[derive(Debug, Clone)]
pub struct OrderSummary {
    pub id: OrderId,
    pub buyer_id: BuyerId,
    pub affiliate_id: Option<AffiliateId>,
    pub placed_at: DateTime<Utc>,
    pub currency: String,
    pub total: rust_decimal::Decimal,
    pub status: OrderStatus,
    pub commission_status: CommissionStatus,
}
