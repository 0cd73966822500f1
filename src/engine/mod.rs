//! The use cases, one file each: intake, apply (the event transaction),
//! lifecycle, operator actions, reconcile, retry. One [`Engine`] handle is
//! held by HTTP and by the actors; it reaches storage through the backend
//! seam (`store::Backend`) and the journal through `journal::Journal`, and
//! "commit, then journal" is written once, here.
pub mod apply;
pub mod batch;
pub mod faults;
pub mod intake;
pub mod operator;
pub mod quote;
pub mod reconcile;
pub mod retry;
pub mod rewards;

use crate::domain::affiliate::{Affiliate, AffiliatePatch, CreateAffiliate, NewAffiliate, PatchAffiliate};
use crate::domain::event::{Backlog, EventId, EventRef, EventStatus, EventType};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{BuyerRewards, LedgerEntry};
use crate::domain::order::{eligible, CreateOrder, LifecycleOutcome, NewOrder, OrderRecord, RefundRequest};
use crate::journal::Journal;
use crate::store::{Backend, StoreError};
use apply::{Applier, Outcome};
use faults::Faults;
use retry::{Failure, RetryPolicy, LOCK_CONFLICT_RETRIES};
use rust_decimal::Decimal;
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
    /// Why the work could not start now, when a lock it needs was not
    /// granted in time (nothing was changed; the caller may retry).
    pub fn busy(&self) -> Option<String> {
        match self {
            EngineError::Store(StoreError::Busy(why)) => Some((*why).to_owned()),
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
}

/// The handle to every use case: cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    journal: Arc<dyn Journal>,
    faults: Arc<Faults>,
    committed: Committed,
    intake: intake::Intake,
    applier: Applier,
    config: EngineConfig,
    /// Open events as last counted (`Engine::backlog`), for backpressure.
    open_events: std::sync::atomic::AtomicU64,
}

/// An order as the API shows it: the record and its current eligible amount.
#[derive(Debug, Clone)]
pub struct OrderDetails {
    pub record: OrderRecord,
    /// Eligible amount of the current state (net of refunds; 0 when cancelled).
    pub eligible_amount: Decimal,
}

impl Engine {
    /// Starts the batch workers (they stop when the last handle is dropped).
    pub fn new(
        backend: Arc<dyn Backend>,
        journal: Arc<dyn Journal>,
        faults: Arc<Faults>,
        config: EngineConfig,
    ) -> Self {
        let committed = Committed { outbox: Arc::new(OnceLock::new()), faults: faults.clone() };
        let intake =
            intake::Intake::start(backend.clone(), committed.clone(), config.intake_workers, config.intake_batch);
        let applier = Applier::start(
            backend.clone(),
            faults.clone(),
            config.event_workers,
            config.event_batch,
            config.event_linger,
            Arc::from(journal.instance()),
        );
        Self {
            inner: Arc::new(Inner {
                backend,
                journal,
                faults,
                committed,
                intake,
                applier,
                config,
                open_events: Default::default(),
            }),
        }
    }

    /// Connects the outbox committed events are handed to (once, at start).
    pub fn connect_outbox(&self, outbox: Arc<dyn Outbox>) {
        let _ = self.inner.committed.outbox.set(outbox);
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.inner.journal
    }
    pub fn faults(&self) -> &Arc<Faults> {
        &self.inner.faults
    }
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
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
        tokio::join!(self.inner.backend.ping(), self.inner.journal.ping())
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

    pub async fn order(&self, id: &OrderId) -> Result<Option<OrderDetails>> {
        let Some(record) = self.inner.backend.order(id).await? else { return Ok(None) };
        let program = self.inner.backend.program(record.program_version).await?;
        let eligible_amount = eligible(&record.state, &program);
        Ok(Some(OrderDetails { record, eligible_amount }))
    }

    async fn lifecycle(&self, outcome: LifecycleOutcome) -> LifecycleOutcome {
        if let LifecycleOutcome::Accepted(event) = &outcome {
            self.committed(vec![event.clone()]).await;
        }
        outcome
    }

    pub async fn refund(&self, req: &RefundRequest) -> Result<LifecycleOutcome> {
        let outcome = self.inner.backend.refund(req).await?;
        Ok(self.lifecycle(outcome).await)
    }

    pub async fn cancel(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        let outcome = self.inner.backend.cancel(id).await?;
        Ok(self.lifecycle(outcome).await)
    }

    pub async fn complete(&self, id: &OrderId) -> Result<LifecycleOutcome> {
        let outcome = self.inner.backend.complete(id).await?;
        Ok(self.lifecycle(outcome).await)
    }

    pub async fn create_affiliate(&self, new: &NewAffiliate) -> Result<CreateAffiliate> {
        Ok(self.inner.backend.create_affiliate(new).await?)
    }

    pub async fn patch_affiliate(&self, id: &AffiliateId, patch: &AffiliatePatch) -> Result<PatchAffiliate> {
        Ok(self.inner.backend.patch_affiliate(id, patch).await?)
    }

    pub async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>> {
        Ok(self.inner.backend.affiliate(id).await?)
    }

    /// One page of an affiliate's ledger, oldest first; None if there is no such affiliate.
    pub async fn affiliate_ledger(&self, id: &AffiliateId, after: u64, limit: u32) -> Result<Option<Vec<LedgerEntry>>> {
        if self.inner.backend.affiliate(id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.inner.backend.affiliate_ledger(id, after, limit).await?))
    }

    /// One page of an affiliate's direct children, by id; None if there is no such affiliate.
    pub async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Option<Vec<Affiliate>>> {
        if self.inner.backend.affiliate(id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.inner.backend.affiliate_children(id, after, limit).await?))
    }

    /// The program currency (every balance is in it).
    pub async fn currency(&self) -> Result<String> {
        Ok(self.inner.backend.current_program().await?.1.currency.clone())
    }

    pub async fn buyer_rewards(&self, id: &BuyerId) -> Result<BuyerRewards> {
        Ok(self.inner.backend.buyer_rewards(id).await?)
    }

    // ---- for the actors

    /// Applies one event (batched with other partitions' events), retrying
    /// at once a transaction that lost a lock conflict.
    /// `fence`: the token of the event's journal partition this instance
    /// holds (None: not fenced).
    pub async fn apply(&self, event: &EventRef, fence: Option<crate::store::Fence>) -> Result<Outcome> {
        let (partition, id) = (&event.partition, event.id);
        let mut result = self.inner.applier.apply(partition, id, fence).await;
        let mut conflicts = 0;
        while matches!(&result, Err(e) if e.is_lock_conflict()) && conflicts < LOCK_CONFLICT_RETRIES {
            conflicts += 1;
            tokio::time::sleep(Duration::from_millis(5 * u64::from(conflicts))).await;
            result = self.inner.applier.apply(partition, id, fence).await;
        }
        result
    }

    /// Records a failed attempt: classified, then retried with backoff or dead.
    pub async fn record_failure(&self, id: EventId, error: &EngineError) -> Result<(EventStatus, EventType)> {
        let failure = Failure::of(error);
        let policy = self.inner.config.retry;
        let decide = move |attempts: u32| policy.decide(failure, attempts, chrono::Utc::now());
        Ok(self.inner.backend.record_failure(id, &error.to_string(), &decide).await?)
    }

    pub async fn take_due_events(&self, limit: u32, parts: crate::store::Parts<'_>) -> Result<Vec<EventRef>> {
        Ok(self.inner.backend.take_due_events(limit, parts).await?)
    }

    pub async fn open_events(
        &self,
        after: Option<EventId>,
        limit: u32,
        parts: crate::store::Parts<'_>,
    ) -> Result<Vec<EventRef>> {
        Ok(self.inner.backend.open_events(after, limit, parts).await?)
    }

    /// Counts the open and dead events (and remembers the open count for
    /// backpressure).
    pub async fn backlog(&self) -> Result<Backlog> {
        let backlog = self.inner.backend.backlog().await?;
        self.inner.open_events.store(backlog.open, std::sync::atomic::Ordering::Relaxed);
        Ok(backlog)
    }

    /// Which of these events are settled (done or dead): a journal entry of
    /// one is stale and needs no transaction.
    pub async fn settled(&self, ids: &[EventId]) -> Result<std::collections::HashSet<EventId>> {
        let statuses = self.inner.backend.event_statuses(ids).await?;
        Ok(statuses
            .into_iter()
            .filter(|(_, s)| matches!(s, EventStatus::Done | EventStatus::Dead))
            .map(|(id, _)| id)
            .collect())
    }

    pub async fn approve_due(&self, limit: u32) -> Result<usize> {
        Ok(self.inner.backend.approve_due(limit).await?)
    }
}
