//! The dispatch journal: carries event references from intake to the actors.
//! It is not the record (the store is): losing it delays events, never loses them.
//! Two implementations: Redis Streams (`redis`), and tables in the SQLite
//! file of single-instance mode (`sqlite`).
pub mod keys;
pub mod redis;
pub mod sqlite;

use crate::domain::event::{EventId, EventRef};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(pub String);

/// One journal entry handed to a consumer: acknowledge it with its `entry_id`
/// once the event's transaction has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event: EventRef,
    pub entry_id: String,
}

#[async_trait::async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Makes sure the journal and its consumer group exist. Returns true when
    /// they had to be created anew (first start, or the journal's data was
    /// lost): every open event must then be journaled again.
    async fn ensure(&self) -> Result<bool, JournalError>;
    /// Journals each event that has no live entry yet (its entry becomes the
    /// one live entry); returns how many were journaled.
    async fn publish(&self, events: &[EventRef]) -> Result<usize, JournalError>;
    /// New entries for this consumer, waiting up to `block` for some.
    async fn read(&self, max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError>;
    /// Acknowledges entries; an event whose live entry is acknowledged has none.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), JournalError>;
    /// Takes over entries delivered to any consumer and unacknowledged for `min_idle`.
    async fn claim_idle(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError>;
    /// Takes over the entries of consumers whose instance stopped beating.
    async fn claim_dead(&self, max: usize) -> Result<Vec<Delivery>, JournalError>;
    /// Tells other instances this consumer is alive (for `ttl`).
    async fn heartbeat(&self, ttl: Duration) -> Result<(), JournalError>;
    /// For each event, whether it has a live entry (queued or delivered and
    /// not acknowledged) still in the journal.
    async fn live(&self, events: &[EventId]) -> Result<Vec<bool>, JournalError>;
    /// How many events have a live entry.
    async fn live_count(&self) -> Result<u64, JournalError>;
    /// Whether the journal answers.
    async fn ping(&self) -> bool;
}
