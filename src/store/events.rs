//! The event log: the operator's reads, recovery's reads, and the
//! transaction that records failed attempts and replays.
use super::apply::ApplyTx;
use super::Result;
use crate::domain::event::{
    Backlog, EventCounts, EventDetail, EventFilter, EventId, EventRecord, EventRef, EventStatus, EventType,
    PartitionKey,
};
use crate::domain::ids::OrderId;
use crate::domain::order::CommissionStatus;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub use super::sql::Lane;
pub use crate::domain::event::{Fence, Parts};

/// An event as locked by [`EventTx::lock_events`].
#[derive(Debug, Clone)]
pub struct EventHead {
    pub id: EventId,
    pub kind: EventType,
    pub status: EventStatus,
    pub attempts: u32,
    /// None for a wallet event (it has no order).
    pub order_id: Option<OrderId>,
    pub partition: PartitionKey,
}

#[async_trait::async_trait]
pub trait Events: Send + Sync {
    /// Newest first; `before` is the last id of the previous page.
    async fn list_events(&self, f: &EventFilter, before: Option<EventId>, limit: u32) -> Result<Vec<EventRecord>>;
    /// The event with its attempt and replay history.
    async fn event_detail(&self, id: EventId) -> Result<Option<EventDetail>>;
    /// How many events matching the filter are in each status (the filter's
    /// own status, if any, is ignored).
    async fn event_counts(&self, f: &EventFilter) -> Result<EventCounts>;
    /// Ids of the failed and dead events matching the filter (a bulk replay).
    async fn select_for_replay(&self, f: &EventFilter) -> Result<Vec<EventId>>;
    async fn backlog(&self) -> Result<Backlog>;
    /// The statuses of these events (unknown ids are left out), in one read.
    async fn event_statuses(&self, ids: &[EventId]) -> Result<HashMap<EventId, EventStatus>>;
    /// Open events of the partitions `parts` whose lease or retry time has
    /// passed at `now`, oldest due first; their next attempt moves to `until`
    /// so that the next sweep does not journal them again meanwhile.
    async fn take_due_events(
        &self,
        limit: u32,
        parts: Parts<'_>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<EventRef>>;
    /// One page of every open event (keyset on id) of the partitions `parts`.
    async fn open_events(&self, after: Option<EventId>, limit: u32, parts: Parts<'_>) -> Result<Vec<EventRef>>;
    /// A transaction recording failed attempts or replays.
    async fn begin_events(&self, lane: Lane) -> Result<Box<dyn EventTx>>;
    /// The event transaction.
    async fn begin_apply(&self) -> Result<Box<dyn ApplyTx>>;
    /// A read-only view for a quote: the context reads of the event
    /// transaction, without its locks (and on SQLite not on the writer).
    async fn begin_read(&self) -> Result<Box<dyn ApplyTx>>;
    /// Moves a partition's fencing token on (a takeover, in its own
    /// transaction: it waits for the transactions holding the old token) and
    /// records it; returns the new token and the previous owner.
    async fn take_fence(&self, part: u16, owner: &str) -> Result<(u64, Option<String>)>;
}

/// Failed attempts and replays, each batch in one transaction.
#[async_trait::async_trait]
pub trait EventTx: super::NotifyTx + super::AuditTx + Send {
    /// Locks these events (unknown ids are left out), in id order.
    async fn lock_events(&mut self, ids: &[EventId]) -> Result<Vec<EventHead>>;
    /// A failed attempt: the event's new status, attempt count, error and
    /// retry time; the error joins its attempt history.
    async fn record_failure(
        &mut self,
        event: &EventHead,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// A replay of the event, recorded with its status before; `reopen`:
    /// it goes back to pending, a fresh attempt budget, due at that time.
    async fn record_replay(
        &mut self,
        event: &EventHead,
        reopen: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// The statuses of all the order's events (this transaction's writes included).
    async fn order_events(&mut self, order: &OrderId) -> Result<Vec<EventStatus>>;
    async fn set_commission_status(
        &mut self,
        order: &OrderId,
        status: CommissionStatus,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}
