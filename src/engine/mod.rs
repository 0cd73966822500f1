//! The use cases, one file each: intake, apply (the event transaction),
//! lifecycle, events (failures, replays, recovery's reads), affiliates,
//! payouts, rewards, quotes, operator reads and recompute, reconcile. One
//! [`Engine`] handle is held by HTTP and by the actors; each use case opens
//! a narrow transaction of the store (`store::*Tx`), asks it what the rule
//! needs, decides with the domain's pure functions, writes, commits — and
//! "commit, then journal" is written once, here.
pub mod adjustments;
pub mod affiliates;
pub mod apply;
pub mod attribution;
pub mod batch;
pub mod caps;
pub mod events;
pub mod faults;
pub mod intake;
pub mod lifecycle;
pub mod operator;
pub mod payouts;
pub mod quote;
pub mod reconcile;
pub mod reports;
pub mod retry;
pub mod rewards;
pub mod simulate;
pub mod webhooks;

use crate::domain::event::EventRef;
use crate::domain::ids::OrderId;
use crate::domain::order::{eligible, CreateOrder, NewOrder};
use crate::domain::record::OrderRecord;
use crate::journal::Journal;
use crate::store::{Backend, StoreError};
use apply::{Applier, Outcome};
use faults::Faults;
use retry::{RetryPolicy, LOCK_CONFLICT_RETRIES};
use rust_decimal::Decimal;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A failure injected by a test (fault injection).
    #[error("injected failure: {0}")]
    Injected(&'static str),
    /// A batch worker answered nothing: shutting down, or the job panicked.
    #[error("{0}: no answer (shutting down, or the work panicked)")]
    NoAnswer(&'static str),
    #[error("{0}")]
    Panicked(String),
    /// The event's journal partition was taken over by another instance
    /// (its fencing token moved on): nothing was committed; the new owner
    /// applies the event.
    #[error("the partition's fencing token moved on: another instance owns it now")]
    Fenced,
    /// Backpressure: too many events wait to be applied for a new order to
    /// be taken now (nothing was stored).
    #[error("{open} events wait to be applied (KOMISI_MAX_BACKLOG is {max}); try again shortly")]
    Overloaded { open: u64, max: u64 },
}

impl EngineError {
    /// Why the work could not be done now, for the caller to retry: a lock
    /// it needs was not granted in time, its transaction kept losing lock
    /// conflicts (deadlocks, lock waits) after its immediate retries, too
    /// many events wait, or the database is unreachable or out of
    /// connections. (A connection lost at
    /// commit may have committed: the API's writes are idempotent by their
    /// ids, so the retry is answered with what was stored.)
    pub fn busy(&self) -> Option<String> {
        match self {
            EngineError::Store(StoreError::Busy(why)) => Some((*why).to_owned()),
            EngineError::Store(StoreError::LockConflict(_)) => {
                Some("concurrent transactions held the rows this request needs; nothing was stored".to_owned())
            }
            EngineError::Store(StoreError::Unavailable(_)) => {
                Some("the database cannot take this request now (unreachable, or out of connections)".to_owned())
            }
            EngineError::Overloaded { .. } => Some(self.to_string()),
            _ => None,
        }
    }

    /// A deadlock or lock-wait timeout: worth an immediate retry.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, EngineError::Store(e) if e.is_lock_conflict())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> EngineError {
    EngineError::Store(StoreError::Corrupt(what.to_string()))
}

/// Where committed events go to be journaled (the actor tree's dispatcher).
/// Publishing never fails the caller: an event that does not reach the
/// journal stays open in the record and recovery journals it.
pub trait Outbox: Send + Sync + 'static {
    fn publish(&self, events: Vec<EventRef>);
}

/// The one "commit, then journal": committed events go to the outbox (the
/// actor tree's dispatcher), once it is connected.
#[derive(Clone)]
pub(crate) struct Committed {
    outbox: Arc<OnceLock<Arc<dyn Outbox>>>,
    faults: Arc<Faults>,
}

impl Committed {
    pub(crate) async fn publish(&self, events: Vec<EventRef>) {
        if events.is_empty() {
            return;
        }
        if self.faults.holding_after_commit() {
            // Failure injection: the process "dies" between the commit and the journal write.
            std::future::pending::<()>().await;
        }
        match self.outbox.get() {
            Some(outbox) => outbox.publish(events),
            None => tracing::warn!(events = events.len(), "no outbox yet; recovery will journal the events"),
        }
    }
}

/// Tuning of the engine's batch workers and retries.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub intake_workers: usize,
    pub intake_batch: usize,
    pub event_workers: usize,
    pub event_batch: usize,
    pub event_linger: Duration,
    /// Open events from which new orders are refused (0: never).
    pub max_backlog: u64,
    pub retry: RetryPolicy,
    /// How long an event may stay open, retries included, before reconcile calls it stuck.
    pub retry_horizon: Duration,
    /// How long a journaled event may stay unapplied before recovery
    /// journals it again (an event's first due time, and each sweep's lease).
    pub redeliver_after: Duration,
    /// An incremental reconcile run this often (zero: only on demand).
    pub reconcile_every: Duration,
    /// A full reconcile sweep this often (zero: only on demand).
    pub reconcile_full_every: Duration,
    /// An incremental run spanning more entries than this runs as a full sweep.
    pub reconcile_incremental_max_entries: u64,
    pub webhooks: webhooks::WebhookConfig,
}

/// The handle to every use case: cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Backend>,
    journal: Arc<dyn Journal>,
    faults: Arc<Faults>,
    committed: Committed,
    intake: intake::Intake,
    applier: Applier,
    config: EngineConfig,
    /// Open events as last counted (`Engine::backlog`), for backpressure.
    open_events: std::sync::atomic::AtomicU64,
    /// This instance runs a reconcile run in the background.
    reconciling: std::sync::atomic::AtomicBool,
    /// This instance runs a simulation in the background.
    simulating: std::sync::atomic::AtomicBool,
    click_key: attribution::ClickKey,
    clicks: Arc<attribution::ClickCounts>,
    click_cache: attribution::ClickCache,
}

/// An order's explanation and its record (with its ledger).
#[derive(Debug, Clone)]
pub struct OrderExplanation {
    pub record: OrderRecord,
    /// The program's (every amount is in it).
    pub currency: String,
    pub explanation: crate::domain::explain::Explanation,
}

#[derive(Debug, Clone)]
pub enum Explained {
    Explained(Box<OrderExplanation>),
    NotFound,
    /// No event of the order was applied yet: nothing is frozen to explain.
    NotProcessed,
}

/// An order as the API shows it: the record and its current eligible amount.
#[derive(Debug, Clone)]
pub struct OrderDetails {
    pub record: OrderRecord,
    /// Eligible amount of the current state (net of refunds; 0 when cancelled).
    pub eligible_amount: Decimal,
    /// The program's currency (an order in another currency is converted into it).
    pub program_currency: String,
    /// The order's total, as bought, in the program currency.
    pub converted_total: Decimal,
    /// Rule 7's walk up the frozen chain (empty before the first processing).
    pub upline: Vec<crate::domain::entitlement::UplineStep>,
}

impl Engine {
    /// Starts the batch workers (they stop when the last handle is dropped).
    pub fn new(store: Arc<dyn Backend>, journal: Arc<dyn Journal>, faults: Arc<Faults>, config: EngineConfig) -> Self {
        let committed = Committed { outbox: Arc::new(OnceLock::new()), faults: faults.clone() };
        let click_key = attribution::ClickKey::default();
        let clicks = attribution::ClickCounts::start(store.clone());
        let intake = intake::Intake::start(
            store.clone(),
            committed.clone(),
            click_key.clone(),
            config.intake_workers,
            config.intake_batch,
            config.redeliver_after,
        );
        let applier = Applier::start(
            store.clone(),
            faults.clone(),
            config.event_workers,
            config.event_batch,
            config.event_linger,
            Arc::from(journal.instance()),
        );
        Self {
            inner: Arc::new(Inner {
                store,
                journal,
                faults,
                committed,
                intake,
                applier,
                config,
                open_events: Default::default(),
                reconciling: Default::default(),
                simulating: Default::default(),
                click_key,
                clicks,
                click_cache: Default::default(),
            }),
        }
    }

    /// Connects the outbox committed events are handed to (once, at start).
    pub fn connect_outbox(&self, outbox: Arc<dyn Outbox>) {
        let _ = self.inner.committed.outbox.set(outbox);
    }

    fn store(&self) -> &dyn Backend {
        self.inner.store.as_ref()
    }

    fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// When an event written now is due for recovery if it was not applied.
    fn next_attempt_at(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        now + chrono::TimeDelta::from_std(self.inner.config.redeliver_after).unwrap_or(chrono::TimeDelta::MAX)
    }

    /// The one "commit, then journal": events already committed are handed to
    /// the outbox. Before the outbox is connected they wait for recovery.
    async fn committed(&self, events: Vec<EventRef>) {
        self.inner.committed.publish(events).await
    }

    /// Open events as last counted, and the backpressure bound (0: none).
    pub fn backlog_level(&self) -> (u64, u64) {
        (self.inner.open_events.load(std::sync::atomic::Ordering::Relaxed), self.inner.config.max_backlog)
    }

    /// Whether the database and the journal answer.
    pub async fn ready(&self) -> (bool, bool) {
        tokio::join!(self.inner.store.ping(), self.inner.journal.ping())
    }

    // ---- storefront

    /// Accepts an order: answers once the order, its items and its event are
    /// committed (G4), then journals the event.
    pub async fn place_order(&self, order: NewOrder) -> Result<CreateOrder> {
        let open = self.inner.open_events.load(std::sync::atomic::Ordering::Relaxed);
        let max = self.inner.config.max_backlog;
        if max > 0 && open >= max {
            metrics::counter!(crate::metrics::INTAKE_REFUSED_TOTAL, "reason" => "backlog").increment(1);
            return Err(EngineError::Overloaded { open, max });
        }
        // Intake journals the accepted events of each batch together, after its commit.
        self.inner.intake.submit(order).await
    }

    /// One page of an affiliate's or a buyer's orders, newest placed first.
    pub async fn list_orders(
        &self,
        filter: &crate::store::OrderFilter,
        before: Option<&(chrono::DateTime<chrono::Utc>, OrderId)>,
        limit: u32,
    ) -> Result<Vec<crate::store::OrderSummary>> {
        Ok(self.store().list_orders(filter, before, limit).await?)
    }

    pub async fn order(&self, id: &OrderId) -> Result<Option<OrderDetails>> {
        let Some(record) = self.store().order(id).await? else { return Ok(None) };
        let program = self.store().program(record.program_version).await?;
        let eligible_amount = eligible(&record.state, &program);
        let converted_total =
            record.state.items.iter().map(|i| record.state.line_amount(i, i.quantity, &program)).sum();
        let upline = match &record.context {
            Some(json) => {
                let ctx: crate::domain::entitlement::FrozenContext = serde_json::from_str(json).map_err(corrupt)?;
                crate::domain::entitlement::upline_steps(&program, &ctx)
            }
            None => Vec::new(),
        };
        Ok(Some(OrderDetails {
            record,
            eligible_amount,
            program_currency: program.currency.clone(),
            converted_total,
            upline,
        }))
    }

    /// Why each line of a processed order is what it is (docs/RULES.md), with
    /// the ledger entries that wrote it.
    pub async fn explain(&self, id: &OrderId) -> Result<Explained> {
        let Some(record) = self.store().order(id).await? else { return Ok(Explained::NotFound) };
        let Some(json) = &record.context else { return Ok(Explained::NotProcessed) };
        let ctx: crate::domain::entitlement::FrozenContext = serde_json::from_str(json).map_err(corrupt)?;
        let limits: crate::domain::caps::OrderLimits = match &record.limits {
            Some(json) => serde_json::from_str(json).map_err(corrupt)?,
            None => Default::default(),
        };
        let program = self.store().program(record.program_version).await?;
        let explanation = crate::domain::explain::explain(&record.state, &program, &ctx, &limits);
        Ok(Explained::Explained(Box::new(OrderExplanation { currency: program.currency.clone(), explanation, record })))
    }

    /// The program currency (every balance is in it).
    pub async fn currency(&self) -> Result<String> {
        Ok(self.store().current_program().await?.1.currency.clone())
    }

    // ---- for the actors

    /// Applies one event (batched with other partitions' events), retrying
    /// at once a transaction that lost a lock conflict.
    /// `fence`: the token of the event's journal partition this instance
    /// holds (None: not fenced).
    pub async fn apply(&self, event: &EventRef, fence: Option<crate::domain::event::Fence>) -> Result<Outcome> {
        let (partition, id) = (&event.partition, event.id);
        retrying(|| self.inner.applier.apply(partition, id, fence)).await
    }
}

/// An error a transaction may get by losing to a concurrent one.
pub(crate) trait Conflict {
    fn is_lock_conflict(&self) -> bool;
}

impl Conflict for EngineError {
    fn is_lock_conflict(&self) -> bool {
        EngineError::is_lock_conflict(self)
    }
}

impl Conflict for StoreError {
    fn is_lock_conflict(&self) -> bool {
        StoreError::is_lock_conflict(self)
    }
}

/// Runs `attempt` again, at once (after a short pause), while it loses a
/// lock conflict (a deadlock, a lock wait, SQLite BUSY), up to
/// [`LOCK_CONFLICT_RETRIES`] times.
pub(crate) async fn retrying<T, F, Fut>(attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retrying_on(attempt).await
}

/// [`retrying`] for any error that tells a lost lock conflict (the store's too).
pub(crate) async fn retrying_on<T, E: Conflict, F, Fut>(mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut conflicts = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_lock_conflict() && conflicts < LOCK_CONFLICT_RETRIES => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_millis(5 * u64::from(conflicts))).await;
            }
            other => return other,
        }
    }
}
