//! Commission actor: applies the events of one partition (one affiliate, or one
//! unattributed buyer) and acks the journal only after the commit. Entries are
//! applied in runs: every queued entry of a distinct order (up to the
//! partition's share) at once, so the engine can put them in few shared
//! transactions with other partitions' events; entries of one order wait for
//! each other and keep their order. Stopped by the supervisor when idle.
//!
//! Why events of different orders of one affiliate may be applied together:
//! no rule reads another order's processing. Tiers and milestones count
//! orders by `placed_at` (committed at intake), the upline and the buyer's
//! first order are read from the tree and the orders, and balances are only
//! ever moved by increments. Only two events of one order must not overlap
//! (the second must see the first's ledger).
use super::messages::{CommissionMsg, Current, SupervisorMsg};
use super::Deps;
use crate::domain::event::{EventStatus, PartitionKey};
use crate::domain::ids::OrderId;
use crate::engine::apply::Outcome;
use crate::engine::EngineError;
use crate::journal::Delivery;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rust_decimal::prelude::ToPrimitive;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

pub struct CommissionActor;

pub struct CommissionArgs {
    pub deps: Arc<Deps>,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub partition: PartitionKey,
    pub current: Current,
}

pub struct CommissionState {
    args: CommissionArgs,
    queue: VecDeque<Delivery>,
    /// A `Run` is in the mailbox.
    run_due: bool,
}

impl Actor for CommissionActor {
    type Msg = CommissionMsg;
    type State = CommissionState;
    type Arguments = CommissionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CommissionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // No timer of its own: with one actor per active partition there can be
        // tens of thousands; the supervisor's single sweep retires idle ones.
        let _ = myself;
        Ok(CommissionState { args, queue: VecDeque::new(), run_due: false })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CommissionMsg::Process(delivery) => {
                st.queue.push_back(delivery);
                if !st.run_due {
                    // Behind every entry already in the mailbox: the run takes them all.
                    myself.cast(CommissionMsg::Run)?;
                    st.run_due = true;
                }
            }
            CommissionMsg::Run => {
                st.run_due = false;
                let run = take_run(&mut st.queue, st.args.deps.tuning.partition_cap());
                let faults = &st.args.deps.faults;
                for delivery in &run {
                    // A panic here is charged to this entry by the supervisor.
                    *st.args.current.lock().expect("current entry lock") = Some(delivery.clone());
                    if faults.take_panic() {
                        panic!("injected panic while processing event {}", delivery.event.id);
                    }
                }
                *st.args.current.lock().expect("current entry lock") = None;
                let deps = &st.args.deps;
                let settled = futures::future::join_all(run.iter().map(|d| process(deps, d))).await;
                let acks: Vec<Delivery> =
                    run.iter().zip(&settled).filter(|(_, ack)| **ack).map(|(d, _)| d.clone()).collect();
                ack(deps, &acks).await;
                st.args.supervisor.cast(SupervisorMsg::Finished {
                    partition: st.args.partition.clone(),
                    entry_ids: run.into_iter().map(|d| d.entry_id).collect(),
                })?;
                if !st.queue.is_empty() {
                    myself.cast(CommissionMsg::Run)?;
                    st.run_due = true;
                }
            }
            CommissionMsg::Retire => myself.stop(None),
        }
        Ok(())
    }
}

/// The next run: queued entries of distinct orders, oldest first, at most
/// `max`; an entry whose order is already in the run stays queued, in place.
fn take_run(queue: &mut VecDeque<Delivery>, max: usize) -> Vec<Delivery> {
    let mut orders: HashSet<OrderId> = HashSet::new();
    let mut run = Vec::new();
    let mut rest = VecDeque::with_capacity(queue.len());
    while let Some(d) = queue.pop_front() {
        if run.len() < max && orders.insert(d.event.order_id.clone()) {
            run.push(d);
        } else {
            rest.push_back(d);
        }
    }
    *queue = rest;
    run
}

/// Applies one journal entry and settles it: true when it is to be acked
/// (applied, a no-op, or its failed attempt recorded: retried with backoff,
/// or dead). If even the failure cannot be recorded, the entry stays
/// unacknowledged and is claimed again.
async fn process(deps: &Deps, delivery: &Delivery) -> bool {
    let span = tracing::info_span!(
        "event",
        event_id = %delivery.event.id,
        partition = %delivery.event.partition,
    );
    process_in_span(deps, delivery).instrument(span).await
}

async fn process_in_span(deps: &Deps, delivery: &Delivery) -> bool {
    let delay = deps.faults.commission_delay();
    if !delay.is_zero() {
        // Benchmark only; holds no connection and no lock.
        tokio::time::sleep(delay).await;
    }
    // The token of the entry's partition, as this instance holds it now: a
    // partition given up or lost meanwhile is the new owner's to apply.
    let part = deps.journal.part_of(&delivery.event.partition);
    let Some(fence) = deps.ownership.fence(part).filter(|_| !deps.faults.take_unfenced()) else {
        return fenced(delivery);
    };
    let started = Instant::now();
    let result = deps.engine.apply(&delivery.event, Some(fence)).await;
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(Outcome::Applied { kind, lag, amounts, rows_written }) => {
            metrics::counter!(m::EVENTS_TOTAL, "type" => kind.as_str(), "outcome" => "done").increment(1);
            metrics::histogram!(m::EVENT_PROCESSING_DURATION_SECONDS, "type" => kind.as_str()).record(elapsed);
            metrics::histogram!(m::EVENT_LAG_SECONDS).record(lag.as_secs_f64());
            for (k, amount) in amounts {
                let units = amount.abs().trunc().to_u64().unwrap_or(u64::MAX);
                let name = if amount.is_sign_negative() {
                    m::COMMISSION_REVERSED_AMOUNT_TOTAL
                } else {
                    m::COMMISSION_AMOUNT_TOTAL
                };
                metrics::counter!(name, "kind" => k.as_str()).increment(units);
            }
            tracing::debug!(rows_written, "event applied");
            true
        }
        Ok(Outcome::AlreadyDone { kind }) => {
            metrics::counter!(m::EVENTS_TOTAL, "type" => kind.as_str(), "outcome" => "noop").increment(1);
            true
        }
        Ok(Outcome::Skipped(why)) => {
            tracing::debug!(why, "event skipped");
            true
        }
        Err(EngineError::Fenced) => fenced(delivery),
        Err(e) => settle_failure(deps, delivery, &e).await,
    }
}

/// An entry of a partition this instance no longer owns: not applied, not
/// acknowledged, no failure recorded — the new owner took it over.
fn fenced(delivery: &Delivery) -> bool {
    metrics::counter!(m::EVENTS_FENCED_TOTAL).increment(1);
    tracing::info!(event_id = %delivery.event.id, "partition owned by another instance now; entry left to it");
    false
}

/// Records a failed attempt; true when it was recorded (the entry may be acked).
async fn settle_failure(deps: &Deps, delivery: &Delivery, error: &EngineError) -> bool {
    match deps.engine.record_failure(delivery.event.id, error).await {
        Ok((status, kind)) => {
            let outcome = if status == EventStatus::Dead { "dead" } else { "failed" };
            metrics::counter!(m::EVENTS_TOTAL, "type" => kind.as_str(), "outcome" => outcome).increment(1);
            let (event_id, order_id) = (delivery.event.id, delivery.event.order_id.as_str());
            if status == EventStatus::Dead {
                // No retry is left: an operator must look (replay after the fix).
                tracing::error!(%error, %event_id, order_id, kind = kind.as_str(), "event is dead: every attempt failed; replay it once the cause is fixed");
            } else {
                tracing::warn!(%error, %event_id, order_id, status = status.as_str(), "event attempt failed; it is retried");
            }
            true
        }
        Err(e) => {
            tracing::error!(%error, record_error = %e, "event failed and the failure could not be recorded; it stays in the journal");
            false
        }
    }
}

async fn ack(deps: &Deps, deliveries: &[Delivery]) {
    if deliveries.is_empty() {
        return;
    }
    if let Err(e) = deps.journal.ack(deliveries).await {
        metrics::counter!(m::JOURNAL_ERRORS_TOTAL, "op" => "ack").increment(1);
        tracing::warn!(error = %e, "journal ack failed; the entry will be claimed again and be a no-op");
    } else {
        deps.counts.settled.fetch_add(deliveries.len() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Charges a panic to the event it interrupted (called by the supervisor).
pub async fn record_panic(deps: &Deps, delivery: &Delivery, panic: &str) {
    let error = EngineError::Panicked(format!("commission actor panicked: {panic}"));
    if settle_failure(deps, delivery, &error).await {
        ack(deps, std::slice::from_ref(delivery)).await;
    }
}
