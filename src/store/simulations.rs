//! Simulations (backtests of a candidate program): queued rows, claimed by
//! one instance at a time, with their progress and result.
use super::Result;
use crate::domain::ids::OrderId;
use chrono::{DateTime, Utc};

/// A stored simulation.
#[derive(Debug, Clone)]
pub struct SimulationRow {
    pub id: u64,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    /// The request (JSON).
    pub request: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub done: u64,
    pub total: u64,
    /// The result (JSON), once done.
    pub result: Option<String>,
    pub error: Option<String>,
}

#[async_trait::async_trait]
pub trait Simulations: Send + Sync {
    /// Stores a queued simulation; its id.
    async fn insert_simulation(
        &self,
        request: &str,
        now: DateTime<Utc>,
        audit: &crate::domain::audit::AuditEntry,
    ) -> Result<u64>;
    /// Simulations queued or running.
    async fn open_simulations(&self) -> Result<u64>;
    async fn simulation(&self, id: u64) -> Result<Option<SimulationRow>>;
    /// Claims the oldest queued simulation, or a running one whose
    /// heartbeat is older than `stale_before` (its instance stopped), for
    /// `owner`: it is `running` from `now`.
    async fn claim_simulation(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<SimulationRow>>;
    /// Records progress (the heartbeat); false when the simulation is no
    /// longer running (cancelled): the runner stops.
    async fn simulation_progress(&self, id: u64, done: u64, total: u64, now: DateTime<Utc>) -> Result<bool>;
    /// Ends a running simulation: `done` with its result, or `failed` with the error.
    async fn finish_simulation(
        &self,
        id: u64,
        result: std::result::Result<&str, &str>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Cancels a queued or running simulation; its status afterwards (None: unknown).
    /// `audit` is written when it cancels one.
    async fn cancel_simulation(
        &self,
        id: u64,
        now: DateTime<Utc>,
        audit: &crate::domain::audit::AuditEntry,
    ) -> Result<Option<String>>;
    /// How many orders were placed in `[since, until)`.
    async fn orders_placed_between(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<u64>;
    /// A page of the orders placed in `[since, until)` with their
    /// placed_at, in id order after the id `after`, read by primary key (no
    /// index on placed_at: it would cost every intake).
    async fn orders_placed_page(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<&OrderId>,
        limit: u32,
    ) -> Result<Vec<(OrderId, DateTime<Utc>)>>;
}
