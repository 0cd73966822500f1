//! Dispatcher: journals each event intake committed. A failed journal write is
//! only a delay: the event is pending in MySQL and recovery journals it again.
use super::messages::DispatcherMsg;
use super::Deps;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;

pub struct Dispatcher;

impl Actor for Dispatcher {
    type Msg = DispatcherMsg;
    type State = Arc<Deps>;
    type Arguments = Arc<Deps>;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, deps: Arc<Deps>) -> Result<Self::State, ActorProcessingErr> {
        Ok(deps)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        deps: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Publish(events) => {
                if let Err(e) = deps.journal.publish(&events).await {
                    metrics::counter!(m::JOURNAL_ERRORS_TOTAL, "op" => "publish").increment(1);
                    deps.counts.publish_failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tracing::warn!(events = events.len(), first = %events[0].id, error = %e,
                        "journal write failed; recovery will journal the events again");
                }
            }
            DispatcherMsg::Flush(reply) => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}
