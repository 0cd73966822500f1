//! Journal reader: pulls new entries for this instance's consumer and hands
//! them to the supervisor, pausing while too many are in flight.
use super::messages::{ReaderMsg, SupervisorMsg};
use super::Deps;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 256;
const BLOCK: Duration = Duration::from_millis(1000);
/// A consumer whose heartbeat is older than this is dead: other instances
/// claim its entries (see `Journal::claim_dead`).
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(10);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Reads of at least this many entries are checked for stale ones.
const STALE_CHECK_FROM: usize = 16;

pub struct Reader;

pub struct ReaderState {
    deps: Arc<Deps>,
    supervisor: ActorRef<SupervisorMsg>,
    /// When the last heartbeat was written.
    beat: Option<Instant>,
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
        Ok(ReaderState { deps, supervisor, beat: None })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        _: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if st.beat.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
            // Whether or not there is room to read: a busy instance is alive.
            match st.deps.engine.journal().heartbeat(HEARTBEAT_TTL).await {
                Ok(()) => st.beat = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "journal heartbeat failed"),
            }
        }
        let busy = st.deps.inflight.load(Ordering::Relaxed);
        let parked = st.deps.parked.load(Ordering::Relaxed);
        metrics::gauge!(m::EVENTS_PARKED).set(parked as f64);
        if busy >= st.deps.tuning.max_inflight || parked >= st.deps.tuning.max_parked {
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            let room = (st.deps.tuning.max_inflight - busy).min(BATCH);
            match st.deps.engine.journal().read(room, BLOCK).await {
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
                        st.supervisor.cast(SupervisorMsg::Deliver(fresh))?;
                    }
                }
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
