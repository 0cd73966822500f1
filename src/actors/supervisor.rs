//! Supervisor: owns every other actor. Routes journal entries to the commission
//! actor of their partition (spawning it on demand), restarts a panicked actor
//! and re-delivers its unfinished entries, restarts a failed helper actor.
use super::commission::{record_panic, CommissionActor, CommissionArgs};
use super::dispatcher::Dispatcher;
use super::leases::Leaser;
use super::messages::{
    CommissionMsg, Current, DispatcherMsg, LeaseMsg, ReaderMsg, RecoveryMsg, SchedulerMsg, SupervisorMsg, TreeStats,
    WebhookMsg,
};
use super::reader::Reader;
use super::recovery::Recovery;
use super::scheduler::Scheduler;
use super::webhooks::WebhookActor;
use super::Deps;
use crate::domain::event::{EventRef, PartitionKey};
use crate::journal::Delivery;
use crate::metrics as m;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Child {
    actor: ActorRef<CommissionMsg>,
    current: Current,
    /// Entries sent to the actor and not yet finished, by entry id, with the
    /// order they were sent in (for re-delivery after a crash).
    inflight: HashMap<String, (u64, Delivery)>,
    /// When it was last given or finished an entry.
    last_active: Instant,
}

impl Child {
    /// The entries it holds, in the order they were sent.
    fn take_all(self) -> Vec<Delivery> {
        let mut held: Vec<(u64, Delivery)> = self.inflight.into_values().collect();
        held.sort_by_key(|(seq, _)| *seq);
        held.into_iter().map(|(_, d)| d).collect()
    }
}

pub struct Supervisor;

pub struct SupervisorState {
    deps: Arc<Deps>,
    children: HashMap<PartitionKey, Child>,
    partitions: HashMap<ActorId, PartitionKey>,
    dispatcher: ActorRef<DispatcherMsg>,
    reader: Option<ActorRef<ReaderMsg>>,
    recovery: ActorRef<RecoveryMsg>,
    scheduler: ActorRef<SchedulerMsg>,
    leaser: ActorRef<LeaseMsg>,
    webhooks: ActorRef<WebhookMsg>,
    idle_sweep: tokio::task::JoinHandle<()>,
    draining: bool,
    /// Sequence number of the next routed entry.
    seq: u64,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Deps>;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, deps: Arc<Deps>) -> Result<Self::State, ActorProcessingErr> {
        let (dispatcher, _) = Actor::spawn_linked(None, Dispatcher, deps.clone(), myself.get_cell()).await?;
        let (recovery, _) =
            Actor::spawn_linked(None, Recovery, (deps.clone(), myself.clone()), myself.get_cell()).await?;
        let (reader, _) = Actor::spawn_linked(None, Reader, (deps.clone(), myself.clone()), myself.get_cell()).await?;
        let (scheduler, _) = Actor::spawn_linked(None, Scheduler, deps.clone(), myself.get_cell()).await?;
        let (leaser, _) = Actor::spawn_linked(None, Leaser, (deps.clone(), myself.clone()), myself.get_cell()).await?;
        let (webhooks, _) = Actor::spawn_linked(None, WebhookActor, deps.clone(), myself.get_cell()).await?;
        let deps_idle_period = (deps.tuning.actor_idle / 2).max(Duration::from_millis(10));
        Ok(SupervisorState {
            deps,
            children: HashMap::new(),
            partitions: HashMap::new(),
            dispatcher,
            reader: Some(reader),
            recovery,
            scheduler,
            leaser,
            webhooks,
            idle_sweep: myself.send_interval(deps_idle_period, || SupervisorMsg::RetireIdle),
            draining: false,
            seq: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Deliver(entries) => {
                let n = entries.len();
                let routed = async {
                    for d in entries {
                        st.route(&myself, d).await?;
                    }
                    Ok::<_, ActorProcessingErr>(())
                }
                .await;
                st.deps.routing.fetch_sub(n, Ordering::SeqCst);
                routed?;
            }
            SupervisorMsg::Finished { partition, entry_ids } => st.finished(&partition, entry_ids),
            SupervisorMsg::RetireIdle => st.retire_idle(),
            SupervisorMsg::Drain(timeout, reply) => {
                // Wait outside this handler, so Deliver and Finished keep flowing.
                let (dispatcher, deps, me) = (st.dispatcher.clone(), st.deps.clone(), myself.clone());
                tokio::spawn(async move {
                    drain(dispatcher, &me, deps, timeout).await;
                    let _ = me.cast(SupervisorMsg::Stop(reply));
                });
            }
            SupervisorMsg::Stop(reply) => {
                st.draining = true;
                st.idle_sweep.abort();
                if let Some(reader) = st.reader.take() {
                    reader.stop(None);
                }
                myself.stop_children(None);
                let _ = reply.send(());
                myself.stop(None);
            }
            SupervisorMsg::Stats(reply) => {
                let _ = reply.send(TreeStats {
                    commission_actors: st.children.len(),
                    inflight: st.deps.inflight.load(Ordering::Relaxed) + st.deps.parked.load(Ordering::Relaxed),
                    settled: st.deps.counts.settled.load(Ordering::SeqCst),
                    publish_failures: st.deps.counts.publish_failures.load(Ordering::SeqCst),
                });
            }
            SupervisorMsg::Publish(events) if events.is_empty() => {}
            SupervisorMsg::Publish(events) => st.publish(events),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, error) => st.child_failed(&myself, cell, &error.to_string()).await?,
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if st.draining {
                    return Ok(());
                }
                if let Some(partition) = st.partitions.remove(&cell.get_id()) {
                    // Stopped on its own: hand anything it still held to a fresh actor.
                    if let Some(child) = st.children.remove(&partition) {
                        let held = st.forget(child);
                        for d in held {
                            st.route(&myself, d).await?;
                        }
                    }
                    metrics::gauge!(m::ACTORS_ACTIVE).set(st.children.len() as f64);
                } else {
                    st.restart_helper(&myself, &cell).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    /// Takes a child's entries out of the counts; returns them in the order sent.
    fn forget(&self, child: Child) -> Vec<Delivery> {
        let cap = self.deps.tuning.partition_cap();
        let n = child.inflight.len();
        self.deps.inflight.fetch_sub(n.min(cap), Ordering::Relaxed);
        self.deps.parked.fetch_sub(n.saturating_sub(cap), Ordering::Relaxed);
        child.take_all()
    }

    fn publish(&self, events: Vec<EventRef>) {
        if let Err(e) = self.dispatcher.cast(DispatcherMsg::Publish(events)) {
            // Only while the dispatcher restarts; recovery journals the events later.
            tracing::warn!(error = %e, "dispatcher unavailable");
        }
    }

    async fn route(&mut self, myself: &ActorRef<SupervisorMsg>, delivery: Delivery) -> Result<(), ActorProcessingErr> {
        let partition = delivery.event.partition.clone();
        if !self.children.contains_key(&partition) {
            let current = Current::default();
            let args = CommissionArgs {
                deps: self.deps.clone(),
                supervisor: myself.clone(),
                partition: partition.clone(),
                current: current.clone(),
            };
            let (actor, _) = Actor::spawn_linked(None, CommissionActor, args, myself.get_cell()).await?;
            self.partitions.insert(actor.get_id(), partition.clone());
            self.children.insert(
                partition.clone(),
                Child { actor, current, inflight: HashMap::new(), last_active: Instant::now() },
            );
            metrics::gauge!(m::ACTORS_ACTIVE).set(self.children.len() as f64);
        }
        let cap = self.deps.tuning.partition_cap();
        let child = self.children.get_mut(&partition).expect("child inserted above");
        child.last_active = Instant::now();
        if child.inflight.contains_key(&delivery.entry_id) {
            // Claimed again while this instance still holds it (a long queue):
            // it is already on its way.
            return Ok(());
        }
        child.actor.cast(CommissionMsg::Process(delivery.clone()))?;
        self.seq += 1;
        child.inflight.insert(delivery.entry_id.clone(), (self.seq, delivery));
        if child.inflight.len() > cap {
            self.deps.parked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.deps.inflight.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A commission actor panicked: charge the panic to the entry it was
    /// processing (a failed attempt, retried with backoff), and re-deliver the
    /// rest of its entries to a fresh actor for the partition.
    async fn child_failed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        cell: ActorCell,
        error: &str,
    ) -> Result<(), ActorProcessingErr> {
        let Some(partition) = self.partitions.remove(&cell.get_id()) else {
            if self.draining {
                return Ok(());
            }
            tracing::error!(actor = ?cell.get_id(), error, "helper actor failed; restarting it");
            return self.restart_helper(myself, &cell).await;
        };
        metrics::counter!(m::ACTOR_RESTARTS_TOTAL).increment(1);
        let Some(child) = self.children.remove(&partition) else { return Ok(()) };
        let culprit = child.current.lock().ok().and_then(|mut g| g.take());
        tracing::error!(%partition, error, culprit = ?culprit.as_ref().map(|d| d.event.id), "commission actor panicked; restarting");
        let rest: Vec<Delivery> = self
            .forget(child)
            .into_iter()
            .filter(|d| culprit.as_ref().is_none_or(|c| c.entry_id != d.entry_id))
            .collect();
        if let Some(culprit) = culprit {
            let deps = self.deps.clone();
            let error = error.to_owned();
            tokio::spawn(async move { record_panic(&deps, &culprit, &error).await });
        }
        if !self.draining {
            for d in rest {
                self.route(myself, d).await?;
            }
        }
        metrics::gauge!(m::ACTORS_ACTIVE).set(self.children.len() as f64);
        Ok(())
    }

    async fn restart_helper(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        cell: &ActorCell,
    ) -> Result<(), ActorProcessingErr> {
        let id = cell.get_id();
        if id == self.dispatcher.get_id() {
            let (d, _) = Actor::spawn_linked(None, Dispatcher, self.deps.clone(), myself.get_cell()).await?;
            self.dispatcher = d;
        } else if id == self.recovery.get_id() {
            let (r, _) =
                Actor::spawn_linked(None, Recovery, (self.deps.clone(), myself.clone()), myself.get_cell()).await?;
            self.recovery = r;
        } else if id == self.leaser.get_id() {
            let (l, _) =
                Actor::spawn_linked(None, Leaser, (self.deps.clone(), myself.clone()), myself.get_cell()).await?;
            self.leaser = l;
        } else if id == self.webhooks.get_id() {
            let (w, _) = Actor::spawn_linked(None, WebhookActor, self.deps.clone(), myself.get_cell()).await?;
            self.webhooks = w;
        } else if id == self.scheduler.get_id() {
            let (s, _) = Actor::spawn_linked(None, Scheduler, self.deps.clone(), myself.get_cell()).await?;
            self.scheduler = s;
        } else if self.reader.as_ref().is_some_and(|r| r.get_id() == id) {
            let (r, _) =
                Actor::spawn_linked(None, Reader, (self.deps.clone(), myself.clone()), myself.get_cell()).await?;
            self.reader = Some(r);
        }
        Ok(())
    }
}

impl SupervisorState {
    /// Entries of a partition finished: their places in flight are free (a
    /// parked entry of the partition takes a freed place).
    fn finished(&mut self, partition: &PartitionKey, entry_ids: Vec<String>) {
        let cap = self.deps.tuning.partition_cap();
        let Some(child) = self.children.get_mut(partition) else { return };
        child.last_active = Instant::now();
        for entry_id in entry_ids {
            if child.inflight.remove(&entry_id).is_some() {
                if child.inflight.len() >= cap {
                    self.deps.parked.fetch_sub(1, Ordering::Relaxed);
                } else {
                    self.deps.inflight.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Stops the commission actors idle for `actor_idle` with nothing in flight.
    fn retire_idle(&mut self) {
        let idle = self.deps.tuning.actor_idle;
        let retired: Vec<PartitionKey> = self
            .children
            .iter()
            .filter(|(_, c)| c.inflight.is_empty() && c.last_active.elapsed() >= idle)
            .map(|(p, _)| p.clone())
            .collect();
        for partition in retired {
            if let Some(child) = self.children.remove(&partition) {
                self.partitions.remove(&child.actor.get_id());
                // Retire queues behind anything already sent, so nothing is dropped.
                let _ = child.actor.cast(CommissionMsg::Retire);
            }
        }
        metrics::gauge!(m::ACTORS_ACTIVE).set(self.children.len() as f64);
    }
}

/// Alone, with nothing read left in flight, an entry of an owned partition
/// still unacknowledged was dropped on its way: an actor found the
/// partition's lease gone between the read and the apply (a tick slower than
/// the lease TTL) and left it to the next owner — this instance, which took
/// the partition back — while the copy its take-over claimed was dropped as
/// one still on its way. No read returns it again. Claims such entries and
/// hands them to the actors, each once; true when there were some.
async fn redeliver_unacknowledged(
    deps: &Deps,
    supervisor: &ActorRef<SupervisorMsg>,
    redelivered: &mut HashSet<String>,
) -> bool {
    let owned = deps.ownership.owned();
    let claimed = match deps.journal.claim_idle(&owned, Duration::ZERO, 1000).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "draining: unacknowledged entries could not be claimed; they are claimed at the next start");
            return false;
        }
    };
    // An entry already handed on once and unacknowledged again failed in a
    // way its actor could not record: it waits for the next start.
    let orphans: Vec<_> = claimed.into_iter().filter(|d| redelivered.insert(d.entry_id.clone())).collect();
    let orphans = super::without_stale(deps, orphans).await;
    if orphans.is_empty() {
        return false;
    }
    tracing::info!(entries = orphans.len(), "draining: entries read and left unacknowledged are applied");
    deps.deliver(supervisor, orphans).is_ok()
}

/// A graceful stop's wait. With other instances alive this is a handover:
/// read nothing more (what is queued is theirs to read once the leases are
/// given up) and finish what was read. Alone, the instance drains its
/// journal. Then every partition is given up at once: the others take them
/// at their next tick instead of waiting for the leases to expire.
async fn drain(
    dispatcher: ActorRef<DispatcherMsg>,
    supervisor: &ActorRef<SupervisorMsg>,
    deps: Arc<Deps>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let handover = deps.ownership.peers() > 1;
    let ticks = deps.ownership.ticks();
    deps.ownership.close(handover);
    // Alone, the journal is read only from the partitions owned, and every
    // one of them must be read to its end: a drain begun before the lease
    // tick took them (a shutdown just after the start), or while one is
    // being taken again (a lease lost to a slow tick), waits until the share
    // is owned — unless a tick since the close could take nothing (Redis
    // unreachable): then there is nothing more to read.
    let share = super::leases::share(deps.journal.partitions(), deps.ownership.peers());
    let unreachable = || deps.ownership.ticks() > ticks && deps.ownership.stalled();
    let all_readable = || handover || deps.ownership.owned().len() >= share || unreachable();
    while Instant::now() < deadline && !all_readable() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everything intake committed is in the journal once the dispatcher has caught up …
    // Bounded: a dispatcher stuck on an unreachable Redis must not hold the exit.
    let _ = tokio::time::timeout(timeout, async { ractor::call!(dispatcher, DispatcherMsg::Flush) }).await;
    // … and has been read once two reads after that came back empty (the
    // first may have begun before the flush; a failed read is not empty) —
    // or there is nothing to read, the journal being unreachable; then wait
    // for the actors.
    let mut seen = deps.empty_reads.load(Ordering::SeqCst);
    let started = Instant::now();
    let mut told = started;
    let mut redelivered = HashSet::new();
    tracing::info!(
        mode = if handover { "handover" } else { "alone: the journal is drained" },
        in_flight = deps.inflight.load(Ordering::SeqCst),
        parked = deps.parked.load(Ordering::SeqCst),
        "draining: finishing the events read"
    );
    while Instant::now() < deadline {
        if !all_readable() {
            // A partition is not owned (being taken again): the reads so far
            // missed it; two more once it is read again.
            seen = deps.empty_reads.load(Ordering::SeqCst);
        }
        let (routing, inflight, parked) = (
            deps.routing.load(Ordering::SeqCst),
            deps.inflight.load(Ordering::SeqCst),
            deps.parked.load(Ordering::SeqCst),
        );
        if (handover || unreachable() || deps.empty_reads.load(Ordering::SeqCst) >= seen + 2)
            && routing == 0
            && inflight == 0
            && parked == 0
        {
            if !handover && !unreachable() && redeliver_unacknowledged(&deps, supervisor, &mut redelivered).await {
                seen = deps.empty_reads.load(Ordering::SeqCst);
                continue;
            }
            tracing::info!(
                secs = started.elapsed().as_secs_f64(),
                "drained: every event read is applied and acknowledged"
            );
            break;
        }
        if told.elapsed() >= Duration::from_secs(1) {
            told = Instant::now();
            tracing::info!(
                in_flight = inflight + routing,
                parked,
                left_secs = deadline.saturating_duration_since(Instant::now()).as_secs(),
                "draining"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let parts = deps.ownership.give_up_all();
    let journal = &deps.journal;
    let released = tokio::time::timeout(Duration::from_secs(3), async {
        journal.release(&parts).await?;
        journal.leave().await
    })
    .await;
    match released {
        Ok(Ok(())) => {
            metrics::counter!(m::LEASE_RELEASES_TOTAL).increment(parts.len() as u64);
            tracing::info!(parts = parts.len(), "partitions released for the other instances");
        }
        _ => tracing::warn!("releasing the partitions failed; their leases expire instead"),
    }
}
