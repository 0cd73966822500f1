//! Scheduler: approves orders whose holding period has passed. The schedule is
//! durable (`orders.approve_at` in MySQL), so a restart loses no due time; this
//! actor only polls it.
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
        loop {
            match st.deps.engine.approve_due(BATCH).await {
                Ok(n) if n as u32 == BATCH => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(orders = n, "approved orders past their holding period");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "approval sweep failed; next tick retries");
                    break;
                }
            }
        }
        Ok(())
    }
}
