//! Commission actor: applies the events of one partition (one affiliate, or one
//! unattributed buyer) one at a time, in order, and acks the journal only after
//! the commit. Events of different partitions ready at the same moment share a
//! transaction (the engine's applier). Stopped by the supervisor when idle.
use super::messages::{CommissionMsg, Current, SupervisorMsg};
use super::Deps;
use crate::domain::event::{EventStatus, PartitionKey};
use crate::engine::apply::Outcome;
use crate::engine::EngineError;
use crate::journal::Delivery;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rust_decimal::prelude::ToPrimitive;
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
        Ok(CommissionState { args })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CommissionMsg::Process(delivery) => {
                *st.args.current.lock().expect("current entry lock") = Some(delivery.clone());
                process(&st.args.deps, &delivery).await;
                *st.args.current.lock().expect("current entry lock") = None;
                st.args.supervisor.cast(SupervisorMsg::Finished {
                    partition: st.args.partition.clone(),
                    entry_id: delivery.entry_id,
                })?;
            }
            CommissionMsg::Retire => myself.stop(None),
        }
        Ok(())
    }
}

/// Applies one journal entry and settles it: ack after commit, or record the
/// failed attempt (retry with backoff, or dead) and then ack. If even the
/// failure cannot be recorded, the entry stays unacknowledged and is claimed again.
async fn process(deps: &Deps, delivery: &Delivery) {
    let span = tracing::info_span!(
        "event",
        event_id = %delivery.event.id,
        partition = %delivery.event.partition,
    );
    process_in_span(deps, delivery).instrument(span).await
}

async fn process_in_span(deps: &Deps, delivery: &Delivery) {
    let event_id = delivery.event.id;
    let faults = deps.engine.faults();
    if faults.take_panic() {
        panic!("injected panic while processing event {event_id}");
    }
    let delay = faults.commission_delay();
    if !delay.is_zero() {
        // Benchmark only; holds no connection and no lock.
        tokio::time::sleep(delay).await;
    }
    let started = Instant::now();
    let result = deps.engine.apply(event_id).await;
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
            ack(deps, delivery).await;
        }
        Ok(Outcome::AlreadyDone { kind }) => {
            metrics::counter!(m::EVENTS_TOTAL, "type" => kind.as_str(), "outcome" => "noop").increment(1);
            ack(deps, delivery).await;
        }
        Ok(Outcome::Skipped(why)) => {
            tracing::debug!(why, "event skipped");
            ack(deps, delivery).await;
        }
        Err(e) => settle_failure(deps, delivery, &e).await,
    }
}

async fn settle_failure(deps: &Deps, delivery: &Delivery, error: &EngineError) {
    match deps.engine.record_failure(delivery.event.id, error).await {
        Ok((status, kind)) => {
            let outcome = if status == EventStatus::Dead { "dead" } else { "failed" };
            metrics::counter!(m::EVENTS_TOTAL, "type" => kind.as_str(), "outcome" => outcome).increment(1);
            tracing::warn!(%error, status = status.as_str(), "event attempt failed");
            ack(deps, delivery).await;
        }
        Err(e) => {
            tracing::error!(%error, record_error = %e, "event failed and the failure could not be recorded; it stays in the journal");
        }
    }
}

async fn ack(deps: &Deps, delivery: &Delivery) {
    if let Err(e) = deps.engine.journal().ack(std::slice::from_ref(&delivery.entry_id)).await {
        metrics::counter!(m::JOURNAL_ERRORS_TOTAL, "op" => "ack").increment(1);
        tracing::warn!(error = %e, "journal ack failed; the entry will be claimed again and be a no-op");
    }
}

/// Charges a panic to the event it interrupted (called by the supervisor).
pub async fn record_panic(deps: &Deps, delivery: &Delivery, panic: &str) {
    let error = EngineError::Panicked(format!("commission actor panicked: {panic}"));
    settle_failure(deps, delivery, &error).await;
}
