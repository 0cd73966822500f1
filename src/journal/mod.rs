//! The dispatch journal: carries event references from intake to the actors.
//! It is not the record (MySQL is): losing it delays events, never loses them.
pub mod keys;
pub mod redis;

use crate::domain::event::EventRef;
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
    async fn publish(&self, events: &[EventRef]) -> Result<(), JournalError>;
    /// New entries for this consumer, waiting up to `block` for some.
    async fn read(&self, max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError>;
    async fn ack(&self, entry_ids: &[String]) -> Result<(), JournalError>;
    /// Takes over entries delivered to any consumer and unacknowledged for `min_idle`.
    async fn claim_idle(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError>;
    /// Whether the journal answers.
    async fn ping(&self) -> bool;
}
