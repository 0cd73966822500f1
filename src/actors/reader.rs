//! Journal reader: pulls new entries for this instance's consumer and hands
//! them to the supervisor, pausing while too many are in flight.
use super::messages::{ReaderMsg, SupervisorMsg};
use super::Deps;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 256;
const BLOCK: Duration = Duration::from_millis(1000);

pub struct Reader;

pub struct ReaderState {
    deps: Arc<Deps>,
    supervisor: ActorRef<SupervisorMsg>,
}

impl Actor for Reader {
    type Msg = ReaderMsg;
    type State = ReaderState;
    type Arguments = (Arc<Deps>, ActorRef<SupervisorMsg>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (deps, supervisor): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(ReaderMsg::Poll)?;
        Ok(ReaderState { deps, supervisor })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        _: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let busy = st.deps.inflight.load(Ordering::Relaxed);
        if busy >= st.deps.tuning.max_inflight {
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            let room = (st.deps.tuning.max_inflight - busy).min(BATCH);
            match st.deps.engine.journal().read(room, BLOCK).await {
                Ok(entries) if !entries.is_empty() => st.supervisor.cast(SupervisorMsg::Deliver(entries))?,
                Ok(_) => {
                    st.deps.empty_reads.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    // Nothing more can be read now: for a drain, as good as an empty read
                    // (whatever was not read stays pending in MySQL for the next start).
                    st.deps.empty_reads.fetch_add(1, Ordering::SeqCst);
                    metrics::counter!(m::JOURNAL_ERRORS_TOTAL, "op" => "read").increment(1);
                    tracing::warn!(error = %e, "journal read failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        myself.cast(ReaderMsg::Poll)?;
        Ok(())
    }
}
