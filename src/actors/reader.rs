//! Journal reader: pulls new entries of the partitions this instance owns
//! and hands them to the supervisor, pausing while too many are in flight.
use super::messages::{ReaderMsg, SupervisorMsg};
use super::Deps;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A read's size while the journal keeps up …
const BATCH: usize = 256;
/// … and at most, doubled read after full read, through a backlog (a
/// restart's open events journaled again at once): a backlog crossed 256 at
/// a time makes a later entry wait for every read before it, each a write
/// on the embedded journal's one writer, between the apply batches.
const BACKLOG_BATCH: usize = 4096;
/// Short enough that partitions taken meanwhile are read soon. (The
/// instance's heartbeat is the leaser's.)
const BLOCK: Duration = Duration::from_millis(500);
/// Reads of at least this many entries are checked for stale ones.
const STALE_CHECK_FROM: usize = 16;

pub struct Reader;

pub struct ReaderState {
    deps: Arc<Deps>,
    supervisor: ActorRef<SupervisorMsg>,
    /// The next read's size: `BATCH`, up to `BACKLOG_BATCH` after full reads.
    read_size: usize,
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
        Ok(ReaderState { deps, supervisor, read_size: BATCH })
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
            let room = (st.deps.tuning.max_inflight - busy).min(st.read_size);
            let parts = st.deps.ownership.readable();
            match st.deps.journal.read(&parts, room, BLOCK).await {
                Ok(entries) if !entries.is_empty() => {
                    st.read_size = next_read_size(st.read_size, room, entries.len());
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
                    st.read_size = BATCH;
                    st.deps.empty_reads.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    st.read_size = BATCH;
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

/// A read that came back full (`got` of the `asked`, the whole size) finds a
/// backlog: the next one asks twice as many, up to `BACKLOG_BATCH`; a read
/// that was not full starts again from `BATCH`.
fn next_read_size(size: usize, asked: usize, got: usize) -> usize {
    if got >= asked && asked >= size {
        (size * 2).min(BACKLOG_BATCH)
    } else if got >= asked {
        size // full, but only of the room left in flight: no sign of more
    } else {
        BATCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_through_a_backlog_and_shrink_when_it_is_crossed() {
        let mut size = BATCH;
        let mut sizes = Vec::new();
        for _ in 0..6 {
            size = next_read_size(size, size, size);
            sizes.push(size);
        }
        assert_eq!(sizes, [512, 1024, 2048, 4096, 4096, 4096]);
        assert_eq!(next_read_size(4096, 4096, 17), BATCH, "a short read: the backlog is crossed");
        assert_eq!(next_read_size(1024, 300, 300), 1024, "full only of the room in flight");
        assert_eq!(next_read_size(BATCH, BATCH, 255), BATCH);
    }
}
