//! The dispatch journal: carries event references from intake to the actors.
//! It is not the record (the store is): losing it delays events, never loses them.
//! Two implementations: Redis Streams (`redis`; one Redis or a Redis
//! Cluster), and tables in the SQLite file of single-instance mode (`sqlite`).
//!
//! The journal is split into partitions (P streams); an event goes to the
//! partition of its partition key ([`keys::partition_of`]). Each partition is
//! read by one instance at a time, the holder of its lease; the lease calls
//! live here too, because the journal's store (Redis) is where instances meet.
//! The embedded journal has one partition and one instance: its leases are
//! always granted.
pub mod keys;
pub mod memory;
pub mod redis;

use crate::domain::event::{EventRef, PartitionKey};
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
    /// This instance's name (its consumer name and the value of its leases).
    fn instance(&self) -> &str;
    /// How many partitions the journal has.
    fn partitions(&self) -> u16 {
        1
    }
    /// The partition of an event's partition key.
    fn part_of(&self, key: &PartitionKey) -> u16 {
        keys::partition_of(key.as_str(), self.partitions())
    }
    /// Makes sure these partitions' streams and consumer group exist. Returns
    /// those that had to be created anew (first start, or their data was
    /// lost): their open events must then be journaled again.
    async fn ensure(&self, parts: &[u16]) -> Result<Vec<u16>, JournalError>;
    /// Journals each event that has no live entry yet (its entry becomes the
    /// one live entry), each to its partition; returns how many were journaled.
    async fn publish(&self, events: &[EventRef]) -> Result<usize, JournalError>;
    /// New entries of these partitions for this consumer, waiting up to
    /// `block` for some.
    async fn read(&self, parts: &[u16], max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError>;
    /// Acknowledges entries; an event whose live entry is acknowledged has none.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), JournalError>;
    /// Takes over entries of these partitions delivered to any consumer and
    /// unacknowledged for `min_idle`.
    async fn claim_idle(&self, parts: &[u16], min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError>;
    /// Takes over the entries of consumers whose instance stopped beating
    /// (where there are no leases: the embedded journal after a restart).
    async fn claim_dead(&self, max: usize) -> Result<Vec<Delivery>, JournalError>;
    /// Takes over every unacknowledged entry of a partition this instance
    /// has just acquired (its previous owner's), and forgets the consumers
    /// that hold nothing there any more.
    async fn take_over(&self, _part: u16, _max: usize) -> Result<Vec<Delivery>, JournalError> {
        Ok(Vec::new())
    }
    /// Tells other instances this one is alive (for `ttl`); returns how many
    /// instances are alive, this one included.
    async fn heartbeat(&self, ttl: Duration) -> Result<usize, JournalError>;
    /// Leaves the set of live instances at once (graceful shutdown).
    async fn leave(&self) -> Result<(), JournalError> {
        Ok(())
    }
    /// Makes sure every instance uses the same partition count: records this
    /// one's if none is recorded or no other instance is alive; false when
    /// live instances use another.
    async fn agree_partitions(&self) -> Result<bool, JournalError> {
        Ok(true)
    }
    /// Takes a partition's lease for `ttl` if it is free (or already this
    /// instance's); true when this instance holds it now.
    async fn acquire(&self, _part: u16, _ttl: Duration) -> Result<bool, JournalError> {
        Ok(true)
    }
    /// Extends leases this instance holds; false for each it no longer holds.
    async fn renew(&self, parts: &[u16], _ttl: Duration) -> Result<Vec<bool>, JournalError> {
        Ok(vec![true; parts.len()])
    }
    /// Gives leases up at once (those still this instance's).
    async fn release(&self, _parts: &[u16]) -> Result<(), JournalError> {
        Ok(())
    }
    /// For each event, whether it has a live entry (queued or delivered and
    /// not acknowledged) still in the journal.
    async fn live(&self, events: &[EventRef]) -> Result<Vec<bool>, JournalError>;
    /// How many events have a live entry.
    async fn live_count(&self) -> Result<u64, JournalError>;
    /// Whether the journal answers.
    async fn ping(&self) -> bool;
}
