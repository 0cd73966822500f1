//! The actor tree (ractor): a supervisor owning the dispatcher (intake → journal),
//! the journal reader, the recovery sweeper, and one commission actor per active
//! partition, spawned on demand and stopped when idle.
pub mod commission;
pub mod dispatcher;
pub mod reader;
pub mod recovery;
pub mod scheduler;
pub mod supervisor;

use crate::faults::Faults;
use crate::journal::Journal;
use crate::retry::RetryPolicy;
use crate::store::EventStore;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// Timings and limits of the actor tree.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub actor_idle: Duration,
    pub recovery_interval: Duration,
    pub claim_idle: Duration,
    pub max_inflight: usize,
    pub retry: RetryPolicy,
}

/// What every actor shares.
pub struct Deps {
    pub store: Arc<dyn EventStore>,
    /// Applies events, batching those of different partitions into shared transactions.
    pub applier: crate::apply::Applier,
    pub journal: Arc<dyn Journal>,
    pub faults: Arc<Faults>,
    pub tuning: Tuning,
    /// Journal entries handed to commission actors and not yet finished.
    pub inflight: AtomicUsize,
    /// Journal reads that found nothing new (graceful shutdown waits for them).
    pub empty_reads: std::sync::atomic::AtomicU64,
}
