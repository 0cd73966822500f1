//! Scheduler: approves orders whose holding period has passed, expires
//! redemption holds past their hold time and earned points past their lots'
//! expiry, and starts the reconcile run that is due. Every schedule is durable (`orders.approve_at`,
//! `redemptions.hold_until`, `buyers.expire_due_at`), so a restart loses no
//! due time; this actor only polls them.
use super::messages::SchedulerMsg;
use super::Deps;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use tokio::task::JoinHandle;

const BATCH: u32 = 500;

pub struct Scheduler;

pub struct SchedulerState {
    deps: Arc<Deps>,
    timer: JoinHandle<()>,
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = Arc<Deps>;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, deps: Arc<Deps>) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(SchedulerMsg::Tick)?;
        let timer = myself.send_interval(deps.tuning.recovery_interval, || SchedulerMsg::Tick);
        Ok(SchedulerState { deps, timer })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        st.timer.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        _: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        sweep("approved orders past their holding period", || st.deps.engine.approve_due(BATCH)).await;
        sweep("expired redemption holds past their hold time", || st.deps.engine.expire_due_holds(BATCH)).await;
        sweep("expired buyers' points past their lots' expiry", || st.deps.engine.expire_due_points(BATCH)).await;
        match st.deps.engine.held_points().await {
            Ok(held) => metrics::gauge!(crate::metrics::POINTS_HELD).set(held as f64),
            Err(e) => tracing::warn!(error = %e, "could not count held points"),
        }
        // A reconcile run when one is due: it runs on a task of its own.
        if let Err(e) = st.deps.engine.reconcile_tick().await {
            tracing::warn!(error = %e, "reconcile could not start; next tick retries");
        }
        // A queued simulation (or one whose instance stopped), likewise.
        if let Err(e) = st.deps.engine.simulation_tick().await {
            tracing::warn!(error = %e, "a simulation could not start; next tick retries");
        }
        Ok(())
    }
}

/// Runs one due-time sweep to the end (batches of `BATCH`), logging what it did.
async fn sweep<F, Fut>(what: &'static str, mut run: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::engine::Result<usize>>,
{
    {
        loop {
            match run().await {
                Ok(n) if n as u32 == BATCH => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(count = n, "{what}");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed ({what}); next tick retries");
                    break;
                }
            }
        }
    }
}
