//! Every actor message type, in one place: actors import these, never each
//! other's modules, so the actor files form no import cycle.
use crate::domain::event::{EventRef, PartitionKey};
use crate::journal::Delivery;
use ractor::RpcReplyPort;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub enum SupervisorMsg {
    /// Journal entries to process (new, or claimed from a dead consumer).
    Deliver(Vec<Delivery>),
    /// A commission actor settled entries (acked, or recorded their failure).
    Finished { partition: PartitionKey, entry_ids: Vec<String> },
    /// Periodic: retire commission actors idle for the idle time.
    RetireIdle,
    /// Graceful shutdown: stop reading the journal, let actors finish what
    /// they hold (up to the timeout), then stop everything.
    Drain(Duration, RpcReplyPort<()>),
    /// The end of a drain: stop everything now.
    Stop(RpcReplyPort<()>),
    /// How many commission actors are alive and entries in flight, and this
    /// instance's counts.
    Stats(RpcReplyPort<TreeStats>),
    /// Events were committed (intake, lifecycle, recompute) or replayed:
    /// forward them to the dispatcher (whichever incarnation is alive).
    Publish(Vec<EventRef>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    pub commission_actors: usize,
    pub inflight: usize,
    /// Journal entries this instance has settled and acknowledged since it
    /// started (see [`super::InstanceCounts`]).
    pub settled: u64,
    /// Journal writes of committed events that failed on this instance.
    pub publish_failures: u64,
}

pub enum CommissionMsg {
    /// An entry to apply: queued, and applied with the next run.
    Process(Delivery),
    /// Apply a run of the queued entries (sent by the actor to itself).
    Run,
    /// The supervisor found this actor idle and forgot it: stop after what is
    /// already queued.
    Retire,
}

/// The entry a commission actor is processing right now, shared with the
/// supervisor so that a panic can be charged to the event that caused it.
pub type Current = Arc<Mutex<Option<Delivery>>>;

pub enum DispatcherMsg {
    /// Events were committed (or replayed) and must reach the journal.
    Publish(Vec<EventRef>),
    /// Answers once every earlier message has been handled (graceful shutdown).
    Flush(RpcReplyPort<()>),
}

pub enum ReaderMsg {
    Poll,
}

pub enum LeaseMsg {
    Tick,
}

pub enum RecoveryMsg {
    Sweep,
}

/// To the webhook deliverer.
#[derive(Debug)]
pub enum WebhookMsg {
    /// Claim due messages and start their attempts.
    Tick,
}

pub enum SchedulerMsg {
    Tick,
}
