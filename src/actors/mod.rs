//! The actor tree (ractor): a supervisor owning the dispatcher (intake → journal),
//! the journal reader, the recovery sweeper, and one commission actor per active
//! partition, spawned on demand and stopped when idle.
pub mod commission;
pub mod dispatcher;
pub mod messages;
pub mod reader;
pub mod recovery;
pub mod scheduler;
pub mod supervisor;

use crate::domain::event::EventRef;
use crate::engine::{Engine, Outbox};
use messages::SupervisorMsg;
use ractor::ActorRef;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// Timings and limits of the actor tree.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub actor_idle: Duration,
    pub recovery_interval: Duration,
    pub claim_idle: Duration,
    pub max_inflight: usize,
}

/// What every actor shares.
pub struct Deps {
    /// The use cases: applying events, recording failures, recovery's reads;
    /// and the journal it holds.
    pub engine: Engine,
    pub tuning: Tuning,
    /// Journal entries handed to commission actors and not yet finished.
    pub inflight: AtomicUsize,
    /// Journal reads that found nothing new (graceful shutdown waits for them).
    pub empty_reads: std::sync::atomic::AtomicU64,
}

/// Committed events reach the dispatcher through the supervisor.
pub struct SupervisorOutbox(pub ActorRef<SupervisorMsg>);

impl Outbox for SupervisorOutbox {
    fn publish(&self, events: Vec<EventRef>) {
        // Only fails while the tree is stopping; recovery journals the events later.
        let _ = self.0.cast(SupervisorMsg::Publish(events));
    }
}
