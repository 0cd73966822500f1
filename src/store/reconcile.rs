//! What reconcile reads of the stored invariants (the engine recomputes
//! the entitlements and replays the wallets itself).
use super::Result;
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::reconcile::{Run, Window};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// Rows that break a stored-balance invariant.
#[derive(Debug, Clone, Default)]
pub struct ReconcileFacts {
    pub affiliates: u64,
    pub buyers: u64,
    pub events: u64,
    pub payouts: u64,
    /// (affiliate, stored [pending, approved, paid], ledger sums)
    pub balance_mismatches: Vec<(String, [Decimal; 3], [Decimal; 3])>,
    /// (buyer, stored points, reward sum)
    pub points_mismatches: Vec<(String, i128, i128)>,
    /// (event, affiliate, kind)
    pub duplicate_entries: Vec<(String, String, String)>,
    /// (event, order, status, attempts) open and created before the cutoff
    pub stuck_events: Vec<(String, String, String, u32)>,
    /// (payout, affiliate, item amount, entries' sum)
    pub payout_item_mismatches: Vec<(u64, String, Decimal, Decimal)>,
    /// (entry, affiliate, payout, entry status, batch status)
    pub payout_entry_statuses: Vec<(u64, String, u64, String, String)>,
    /// Manual adjustments checked (a full sweep's all; an incremental run's
    /// those of its window).
    pub adjustments: u64,
    /// (adjustment, subject, what is wrong): an adjustment without exactly
    /// its entry — of its subject, its amount or points, kind `adjustment`.
    pub adjustment_mismatches: Vec<(String, String, String)>,
    /// The affiliates found right, with their totals up to the run's mark:
    /// the checks the next incremental runs start from.
    pub checks: Vec<BalanceCheck>,
}

/// An affiliate's checked total: Σ amount of its ledger entries with id up
/// to `mark` (amounts never change, so it stays true).
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceCheck {
    pub affiliate_id: AffiliateId,
    pub mark: u64,
    pub total: Decimal,
}

/// What changed in an incremental run's window, and the stored invariants
/// among what changed.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// The checks over the affiliates, buyers, events and payouts touched
    /// (the counts are of those checked).
    pub facts: ReconcileFacts,
    /// Orders of the entries written in the window.
    pub orders: Vec<OrderId>,
    /// Buyers whose wallets changed in the window.
    pub buyers: Vec<BuyerId>,
}

/// One `affiliate_months` row against its orders.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthCheck {
    pub affiliate_id: AffiliateId,
    pub month_start: DateTime<Utc>,
    /// The stored (volume, orders), if the row exists.
    pub stored: Option<(Decimal, u64)>,
    /// The orders' (Σ original eligible, count).
    pub orders: (Decimal, u64),
}

/// One cap or budget counter against the lines of its window's orders,
/// read in one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterCheck {
    pub stored: crate::domain::caps::Used,
    /// Each order placed in the window with lines the counter may cover.
    pub orders: Vec<CoveredOrder>,
}

/// An order's lines a counter may cover: for an affiliate's counter its
/// level-1 commission lines of that affiliate; for the program's, every
/// commission line and the points earned.
#[derive(Debug, Clone, PartialEq)]
pub struct CoveredOrder {
    pub order_id: OrderId,
    pub program_version: u64,
    /// `orders.limits` (JSON).
    pub limits: Option<String>,
    pub commission: Decimal,
    pub points: i64,
}

#[async_trait::async_trait]
pub trait Reconcile: Send + Sync {
    /// A page of the cap and budget counters' keys, in key order, after `after`.
    async fn counter_keys(
        &self,
        after: Option<&crate::domain::caps::CounterKey>,
        limit: u32,
    ) -> Result<Vec<crate::domain::caps::CounterKey>>;
    /// A counter and the lines of the orders placed in its window
    /// (`[key.start, end)`; no end: the program's whole life), in one snapshot.
    async fn counter_check(
        &self,
        key: &crate::domain::caps::CounterKey,
        end: Option<DateTime<Utc>>,
    ) -> Result<CounterCheck>;
    /// The balance, points, duplicate, stuck-event and payout checks over
    /// everything; `stuck_before`: open events created earlier are stuck;
    /// `mark`: a ledger id every entry up to which has committed (the checks
    /// of the affiliates found right are totalled up to it).
    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>, mark: u64) -> Result<ReconcileFacts>;
    /// Stores the affiliates' checked totals (replacing their earlier ones).
    async fn save_balance_checks(&self, checks: &[BalanceCheck]) -> Result<()>;
    /// The same checks over what changed in `window`.
    async fn changes(&self, window: &Window, stuck_before: DateTime<Utc>) -> Result<Changes>;
    /// The highest ledger and reward entry ids now.
    async fn entry_marks(&self) -> Result<(u64, u64)>;
    /// How many orders there are (a full sweep's total).
    async fn order_count(&self) -> Result<u64>;
    /// Runs newest first, those running only when `running`, else the
    /// finished ones (done or failed), `limit` of them.
    async fn runs(&self, running: bool, limit: u32) -> Result<Vec<Run>>;
    /// Writes a run's progress, heartbeat, end and report.
    async fn save_run(&self, run: &Run) -> Result<()>;
    /// A running run's sign of life (nothing else of it changes).
    async fn beat_run(&self, id: u64, at: DateTime<Utc>) -> Result<()>;
    /// Deletes finished runs but the newest `keep`.
    async fn prune_runs(&self, keep: u64) -> Result<u64>;
    /// A transaction holding the `reconcile` lock: who may run now.
    async fn begin_claim(&self) -> Result<Box<dyn ClaimTx>>;
    /// From which month on `affiliate_months` counts every order.
    async fn counted_since(&self) -> Result<DateTime<Utc>>;
    /// The (affiliate, month start) keys of `affiliate_months` from `from`
    /// on, after `after`, `limit` of them.
    async fn month_keys(
        &self,
        from: DateTime<Utc>,
        after: Option<&(AffiliateId, DateTime<Utc>)>,
        limit: u32,
    ) -> Result<Vec<(AffiliateId, DateTime<Utc>)>>;
    /// For each (affiliate, month start, month end): the stored row's
    /// (volume, orders), and the sums of its attributed orders placed in
    /// the month, read at one instant.
    async fn month_checks(&self, months: &[(AffiliateId, DateTime<Utc>, DateTime<Utc>)]) -> Result<Vec<MonthCheck>>;
    /// Per affiliate, Σ orders of its `affiliate_months` rows from `from` on
    /// and the count of its orders placed from `from` on, at one instant:
    /// those whose two differ.
    async fn month_counts_from(&self, from: DateTime<Utc>) -> Result<Vec<(AffiliateId, u64, u64)>>;
    /// Per event type, the tallies' sum and the events stored, at one
    /// instant: those whose two differ.
    async fn tally_mismatches(&self) -> Result<Vec<(String, u64, u64)>>;
}

/// Starting a run, under the `reconcile` lock (held to the commit): two
/// instances never start one at once.
#[async_trait::async_trait]
pub trait ClaimTx: super::AuditTx + Send {
    async fn running(&mut self) -> Result<Vec<Run>>;
    async fn run(&mut self, id: u64) -> Result<Option<Run>>;
    async fn fail(&mut self, id: u64, error: &str, now: DateTime<Utc>) -> Result<()>;
    /// Stores a new run; returns its id.
    async fn insert(&mut self, run: &Run) -> Result<u64>;
    async fn commit(self: Box<Self>) -> Result<()>;
}
