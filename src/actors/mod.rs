//! The actor tree (ractor): a supervisor owning the dispatcher (intake → journal),
//! the journal reader, the recovery sweeper, the leaser (partition ownership),
//! the scheduler, and one commission actor per active
//! partition, spawned on demand and stopped when idle.
pub mod commission;
pub mod dispatcher;
pub mod leases;
pub mod messages;
pub mod reader;
pub mod recovery;
pub mod scheduler;
pub mod supervisor;
pub mod webhooks;

use crate::domain::event::EventRef;
use crate::engine::faults::Faults;
use crate::engine::{Engine, Outbox};
use crate::journal::Journal;
use messages::SupervisorMsg;
use ractor::ActorRef;
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
    /// Of those, one partition's at most; its further entries wait parked
    /// (read from the journal, queued at its actor, not counted in flight).
    pub partition_inflight: usize,
    /// Parked entries, at most (the reader pauses beyond).
    pub max_parked: usize,
    /// A partition lease's time to live (renewed every third of it).
    pub lease_ttl: Duration,
}

impl Tuning {
    /// How many entries of one partition count as in flight (and are applied at once).
    pub fn partition_cap(&self) -> usize {
        self.partition_inflight.min(self.max_inflight).max(1)
    }

    /// How often leases are renewed (and partitions balanced).
    pub fn lease_renew_every(&self) -> Duration {
        (self.lease_ttl / 3).max(Duration::from_millis(100))
    }
}

/// What every actor shares.
pub struct Deps {
    /// The use cases: applying events, recording failures, recovery's reads.
    pub engine: Engine,
    /// The journal the actors read, acknowledge and publish to.
    pub journal: Arc<dyn Journal>,
    /// Failures injected by tests (delays, panics in actors).
    pub faults: Arc<Faults>,
    pub tuning: Tuning,
    /// Journal entries handed to commission actors and not yet finished,
    /// up to each partition's share.
    pub inflight: AtomicUsize,
    /// Entries handed to actors beyond their partition's share.
    pub parked: AtomicUsize,
    /// Journal reads that found nothing new (graceful shutdown waits for them).
    pub empty_reads: std::sync::atomic::AtomicU64,
    /// Entries read and sent to the supervisor, not yet handed to an actor
    /// (a graceful drain waits for them: they are in neither count above).
    pub routing: AtomicUsize,
    /// This instance's own counts (the Prometheus ones are process-wide),
    /// reported by [`messages::TreeStats`].
    pub counts: InstanceCounts,
    /// The journal partitions this instance owns, and their fencing tokens.
    pub ownership: leases::Ownership,
    /// Sends webhook messages (the deliverer actor's, kept across its restarts).
    pub webhooks: Arc<crate::engine::webhooks::Deliverer>,
}

impl Deps {
    /// Sends entries read from the journal to the supervisor, counted in
    /// [`Deps::routing`] until it has handed them to their actors.
    pub fn deliver(
        &self,
        supervisor: &ractor::ActorRef<SupervisorMsg>,
        entries: Vec<crate::journal::Delivery>,
    ) -> Result<(), ractor::MessagingErr<SupervisorMsg>> {
        let n = entries.len();
        self.routing.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        supervisor.cast(SupervisorMsg::Deliver(entries)).inspect_err(|_| {
            self.routing.fetch_sub(n, std::sync::atomic::Ordering::SeqCst);
        })
    }
}

/// Counts of one instance, for [`messages::TreeStats`]: the same happenings
/// as some Prometheus counters, which add up every instance of the process.
#[derive(Debug, Default)]
pub struct InstanceCounts {
    /// Journal entries settled and acknowledged: applied, found already done
    /// (also as stale copies), or their failed attempt recorded.
    pub settled: std::sync::atomic::AtomicU64,
    /// Journal writes of committed events that failed (the events stay
    /// pending for recovery); also in `komisi_journal_errors_total{op="publish"}`.
    pub publish_failures: std::sync::atomic::AtomicU64,
}

/// Committed events reach the dispatcher through the supervisor.
pub struct SupervisorOutbox(pub ActorRef<SupervisorMsg>);

impl Outbox for SupervisorOutbox {
    fn publish(&self, events: Vec<EventRef>) {
        // Only fails while the tree is stopping; recovery journals the events later.
        let _ = self.0.cast(SupervisorMsg::Publish(events));
    }
}

/// Drops stale entries — their event is already done or dead (a duplicate
/// delivery, a copy left by a crash): they are acknowledged at once, without a
/// transaction, after one status read for the whole batch. If the read fails,
/// every entry goes on (applying a stale one is a no-op).
pub(crate) async fn without_stale(
    deps: &Deps,
    entries: Vec<crate::journal::Delivery>,
) -> Vec<crate::journal::Delivery> {
    if entries.is_empty() {
        return entries;
    }
    let ids: Vec<_> = entries.iter().map(|d| d.event.id).collect();
    let settled = match deps.engine.settled(&ids).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the statuses of delivered events; applying them all");
            return entries;
        }
    };
    if settled.is_empty() {
        return entries;
    }
    let (stale, fresh): (Vec<_>, Vec<_>) = entries.into_iter().partition(|d| settled.contains(&d.event.id));
    metrics::counter!(crate::metrics::JOURNAL_STALE_TOTAL).increment(stale.len() as u64);
    if let Err(e) = deps.journal.ack(&stale).await {
        metrics::counter!(crate::metrics::JOURNAL_ERRORS_TOTAL, "op" => "ack").increment(1);
        tracing::warn!(error = %e, "journal ack of stale entries failed; they come back as no-ops");
    } else {
        deps.counts.settled.fetch_add(stale.len() as u64, std::sync::atomic::Ordering::SeqCst);
    }
    fresh
}
