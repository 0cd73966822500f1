//! The webhook deliverer: every poll interval it asks the engine's
//! [`Deliverer`](crate::engine::webhooks::Deliverer) to claim due messages
//! and start their attempts (each attempt runs on a task of its own, so a
//! slow endpoint never holds up this actor or another endpoint). It holds
//! nothing that a restart would lose: the attempts in flight and their
//! places are the Deliverer's, the messages and their leases the database's.
//! A panic restarts it (the supervisor).
use super::messages::WebhookMsg;
use super::Deps;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use tokio::task::JoinHandle;

pub struct WebhookActor;

pub struct WebhookState {
    deps: Arc<Deps>,
    timer: JoinHandle<()>,
}

impl Actor for WebhookActor {
    type Msg = WebhookMsg;
    type State = WebhookState;
    type Arguments = Arc<Deps>;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, deps: Arc<Deps>) -> Result<Self::State, ActorProcessingErr> {
        let timer = myself.send_interval(deps.webhooks.poll_interval(), || WebhookMsg::Tick);
        Ok(WebhookState { deps, timer })
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        st.timer.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WebhookMsg::Tick = msg;
        if st.deps.faults.take_webhook_panic() {
            panic!("injected panic in the webhook deliverer");
        }
        if let Err(e) = st.deps.webhooks.tick().await {
            tracing::warn!(error = %e, "webhook delivery round failed; the next tick retries");
        }
        Ok(())
    }
}
