//! Recovery: at start and then periodically, journal again what MySQL holds as
//! open but the journal may have lost (crash between commit and XADD, Redis
//! flushed or down), journal failed events whose retry time has come, claim
//! entries left by dead consumers, and refresh the backlog gauges from MySQL.
//! All of it for the partitions this instance owns only (each partition's
//! recovery runs on its owner); a partition just taken over is journaled
//! again whole, once.
use super::messages::{RecoveryMsg, SupervisorMsg};
use super::Deps;
use crate::domain::event::EventRef;
use crate::domain::event::Parts;
use crate::journal::JournalError;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::task::JoinHandle;

const PAGE: u32 = 1000;

pub struct Recovery;

pub struct RecoveryState {
    deps: Arc<Deps>,
    supervisor: ActorRef<SupervisorMsg>,
    /// Owned partitions whose open events have all been journaled once since
    /// this instance took them.
    caught_up: BTreeSet<u16>,
    timer: JoinHandle<()>,
}

impl Actor for Recovery {
    type Msg = RecoveryMsg;
    type State = RecoveryState;
    type Arguments = (Arc<Deps>, ActorRef<SupervisorMsg>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (deps, supervisor): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(RecoveryMsg::Sweep)?;
        let timer = myself.send_interval(deps.tuning.recovery_interval, || RecoveryMsg::Sweep);
        Ok(RecoveryState { deps, supervisor, caught_up: BTreeSet::new(), timer })
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
        match sweep(st).await {
            Ok(()) => metrics::gauge!(m::READY).set(1.0),
            Err(e) => {
                metrics::gauge!(m::READY).set(0.0);
                tracing::warn!(error = %e, "recovery sweep incomplete; next one retries");
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum SweepError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

async fn sweep(st: &mut RecoveryState) -> Result<(), SweepError> {
    let deps = &st.deps;
    // Gauges first: they must stay true even while Redis is down.
    let backlog = deps.engine.backlog().await?;
    metrics::gauge!(m::EVENTS_PENDING).set(backlog.open as f64);
    metrics::gauge!(m::EVENTS_DEAD).set(backlog.dead as f64);

    let owned = deps.ownership.owned();
    st.caught_up.retain(|p| owned.contains(p));
    if owned.is_empty() {
        return Ok(());
    }
    let parts = Parts { of: deps.journal.partitions(), owned: &owned };
    let fresh = deps.journal.ensure(&owned).await.inspect_err(|_| {
        metrics::counter!(m::JOURNAL_ERRORS_TOTAL, "op" => "ensure").increment(1);
    })?;
    if !fresh.is_empty() {
        // A first start creates every partition: nothing is lost unless open
        // events are found for them below.
        tracing::info!(parts = ?fresh, "journal partitions created (first start, or their data was lost)");
    }
    for p in &fresh {
        st.caught_up.remove(p);
    }
    let behind: Vec<u16> = owned.iter().copied().filter(|p| !st.caught_up.contains(p)).collect();
    if !behind.is_empty() {
        let n = rejournal_all(deps, Parts { of: parts.of, owned: &behind }).await?;
        if n > 0 && !fresh.is_empty() {
            tracing::warn!(
                events = n,
                parts = ?behind,
                created = ?fresh,
                "journaled open events again: partitions were created anew while events were open (their journal data was lost; nothing else is)"
            );
        } else if n > 0 {
            tracing::info!(events = n, parts = ?behind, "journaled open events again");
        }
        st.caught_up.extend(behind);
    }
    loop {
        // Leases passed or retries due; an event whose entry is still queued
        // or delivered is left to it, so a backlog never copies itself.
        let due = deps.engine.take_due_events(PAGE, parts).await?;
        let n = due.len();
        publish(deps, &due).await?;
        if (n as u32) < PAGE {
            break;
        }
    }
    // Entries of instances that stopped beating first (a kill), then any left
    // idle too long by a live one.
    let mut claimed = deps.journal.claim_dead(PAGE as usize).await?;
    if claimed.is_empty() {
        claimed = deps.journal.claim_idle(&owned, deps.tuning.claim_idle, PAGE as usize).await?;
    }
    if !claimed.is_empty() {
        tracing::info!(entries = claimed.len(), "claimed journal entries left unacknowledged");
        let fresh = super::without_stale(deps, claimed).await;
        if !fresh.is_empty() {
            let _ = deps.deliver(&st.supervisor, fresh);
        }
    }
    if let Ok(live) = deps.journal.live_count().await {
        metrics::gauge!(m::JOURNAL_LIVE_ENTRIES).set(live as f64);
    }
    Ok(())
}

/// Journals every open event without a live entry. After a journal loss that
/// is nearly all of them, but not those the dispatcher journaled again since.
async fn rejournal_all(deps: &Deps, parts: Parts<'_>) -> Result<usize, SweepError> {
    let mut after = None;
    let mut total = 0;
    loop {
        let page = deps.engine.open_events(after, PAGE, parts).await?;
        let last = page.last().map(|e| e.id);
        let n = page.len();
        total += publish(deps, &page).await?;
        match last {
            Some(last) if n as u32 == PAGE => after = Some(last),
            _ => return Ok(total),
        }
    }
}

/// Journals those of the events that have no live entry (the journal
/// checks, atomically); returns how many it journaled.
async fn publish(deps: &Deps, events: &[EventRef]) -> Result<usize, SweepError> {
    if events.is_empty() {
        return Ok(0);
    }
    let added = deps.journal.publish(events).await?;
    metrics::counter!(m::EVENTS_REJOURNALED_TOTAL).increment(added as u64);
    Ok(added)
}
