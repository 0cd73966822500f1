//! Journal reader: pulls new entries of the partitions this instance owns
//! and hands them to the supervisor, pausing while too many are in flight.
use super::messages::{ReaderMsg, SupervisorMsg};
use super::Deps;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 256;
/// Short enough that partitions taken meanwhile are read soon. (The
/// instance's heartbeat is the leaser's.)
const BLOCK: Duration = Duration::from_millis(500);
/// Reads of at least this many entries are checked for stale ones.
const STALE_CHECK_FROM: usize = 16;

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
        let parked = st.deps.parked.load(Ordering::Relaxed);
        metrics::gauge!(m::EVENTS_PARKED).set(parked as f64);
        if busy >= st.deps.tuning.max_inflight || parked >= st.deps.tuning.max_parked {
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            let room = (st.deps.tuning.max_inflight - busy).min(BATCH);
            let parts = st.deps.ownership.readable();
            match st.deps.journal.read(&parts, room, BLOCK).await {
                Ok(entries) if !entries.is_empty() => {
                    // A full read is a backlog, where copies of done events
                    // gather (after a crash or a journal loss): sort them out
                    // with one status read. A few fresh entries go straight on.
                    let fresh = if entries.len() >= STALE_CHECK_FROM {
                        super::without_stale(&st.deps, entries).await
                    } else {
                        entries
                    };
                    if !fresh.is_empty() {
                        st.deps.deliver(&st.supervisor, fresh)?;
                    }
                }
                Ok(_) => {
                    st.deps.empty_reads.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    // Not an empty read: a drain goes on waiting, unless the
                    // lease ticks find the journal unreachable too (whatever
                    // was not read stays pending in the database for the next start).
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
