//! Partition ownership (scale-out, docs/SCALING.md): each journal partition
//! is read and applied by one live instance at a time.
//!
//! Two locks make that true. The *lease* in Redis (`{prefix:pNN}:lease`, SET
//! with a TTL, renewed every TTL/3) decides who reads a partition; the
//! *fencing token* in the database (`journal_fences`) decides who may commit
//! for it. A new owner first takes the lease, then moves the token on in its
//! own transaction — which waits for every event transaction of the old
//! owner still holding the old token (they hold its row shared) — and only
//! then claims the partition's unacknowledged entries and reads it. Every
//! event transaction checks its tokens under that shared lock before it
//! writes, so an old owner that lost its lease without knowing (a pause, a
//! partition from Redis) commits nothing once the token has moved: the lease
//! may be wrong for a moment, the ledger cannot.
//!
//! Balance: every instance beats in `{prefix}:members`; each owns at most
//! ceil(P / live instances). One above gives partitions up at once, one below
//! takes free ones: a new instance gets its share within a few ticks, a
//! killed one's partitions are free when its leases expire (TTL) and taken at
//! the next tick (one renewal interval).
use super::messages::{LeaseMsg, SupervisorMsg};
use super::Deps;
use crate::domain::event::Fence;
use crate::journal::Journal;
use crate::metrics as m;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Entries taken over with a partition at once, at most (the rest wait for
/// recovery's claims and re-journaling).
const TAKE_OVER_MAX: usize = 10_000;

/// The partitions this instance owns, with their fencing tokens: read by
/// the journal reader (what to read), the commission actors (the token each
/// event transaction checks) and recovery (whose open events to journal).
#[derive(Debug, Default)]
pub struct Ownership {
    owned: RwLock<BTreeMap<u16, u64>>,
    /// Set by a graceful handover, and by every shutdown once drained: take
    /// nothing more. (An instance draining alone still takes its share: the
    /// journal it must drain is in those partitions.)
    closing: AtomicBool,
    /// Lease ticks completed, whatever their outcome.
    ticks: AtomicU64,
    /// Set by a graceful handover: read nothing more (other instances will).
    paused: AtomicBool,
    /// Live instances, this one included, as last counted.
    peers: AtomicUsize,
    /// See [`Ownership::stalled`].
    stalled: AtomicBool,
}

impl Ownership {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u16, u64>> {
        self.owned.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u16, u64>> {
        self.owned.write().unwrap_or_else(|p| p.into_inner())
    }
    /// The partitions owned now, in order.
    pub fn owned(&self) -> Vec<u16> {
        self.read().keys().copied().collect()
    }
    /// The token held for a partition; None when it is not owned.
    pub fn fence(&self, part: u16) -> Option<Fence> {
        self.read().get(&part).map(|&token| Fence { part, token })
    }
    /// Partitions to read: none while handing over.
    pub fn readable(&self) -> Vec<u16> {
        if self.paused.load(Ordering::SeqCst) {
            Vec::new()
        } else {
            self.owned()
        }
    }
    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }
    /// A graceful shutdown begins. With `handover`, acquire nothing more and
    /// stop reading (another live instance takes the partitions); alone, go
    /// on taking this instance's share, which the drain reads to the end.
    pub fn close(&self, handover: bool) {
        if handover {
            self.closing.store(true, Ordering::SeqCst);
            self.paused.store(true, Ordering::SeqCst);
        }
    }
    /// Lease ticks completed so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::SeqCst)
    }
    /// The last tick could take nothing: the journal did not answer, or the
    /// live instances use another partition count.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }
    /// Forgets every partition (after the drain) and returns them, to release.
    pub fn give_up_all(&self) -> Vec<u16> {
        self.closing.store(true, Ordering::SeqCst);
        let parts: Vec<u16> = std::mem::take(&mut *self.write()).into_keys().collect();
        metrics::gauge!(m::PARTITIONS_OWNED).set(0.0);
        parts
    }
    fn insert(&self, part: u16, token: u64) {
        self.write().insert(part, token);
    }
    fn remove(&self, part: u16) {
        self.write().remove(&part);
    }
    fn gauge(&self) {
        metrics::gauge!(m::PARTITIONS_OWNED).set(self.read().len() as f64);
    }
}

/// The share of `partitions` each of `instances` owns at most.
pub fn share(partitions: u16, instances: usize) -> usize {
    usize::from(partitions).div_ceil(instances.max(1))
}

pub struct Leaser;

pub struct LeaserState {
    deps: Arc<Deps>,
    supervisor: ActorRef<SupervisorMsg>,
    timer: JoinHandle<()>,
    /// Leases taken whose fencing token is not yet moved (the takeover's
    /// update waits for a stalled old owner's transaction): renewed, not read.
    acquiring: BTreeSet<u16>,
    /// When each held lease was last renewed (or taken).
    renewed: HashMap<u16, Instant>,
    /// The partition count is agreed with the other live instances.
    agreed: bool,
}

impl Actor for Leaser {
    type Msg = LeaseMsg;
    type State = LeaserState;
    type Arguments = (Arc<Deps>, ActorRef<SupervisorMsg>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (deps, supervisor): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(LeaseMsg::Tick)?;
        let timer = myself.send_interval(deps.tuning.lease_renew_every(), || LeaseMsg::Tick);
        Ok(LeaserState { deps, supervisor, timer, acquiring: BTreeSet::new(), renewed: HashMap::new(), agreed: false })
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
        tick(st).await;
        st.deps.ownership.ticks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn tick(st: &mut LeaserState) {
    let deps = st.deps.clone();
    let journal = &deps.journal;
    let ownership = &deps.ownership;
    let ttl = deps.tuning.lease_ttl;
    let started = Instant::now();

    match journal.heartbeat(ttl).await {
        Ok(n) => {
            ownership.peers.store(n.max(1), Ordering::Relaxed);
            ownership.stalled.store(false, Ordering::SeqCst);
        }
        Err(e) => {
            ownership.stalled.store(true, Ordering::SeqCst);
            tracing::warn!(error = %e, "instance heartbeat failed");
        }
    }
    if !st.agreed {
        match journal.agree_partitions().await {
            Ok(true) => st.agreed = true,
            Ok(false) => {
                ownership.stalled.store(true, Ordering::SeqCst);
                tracing::error!(
                    partitions = journal.partitions(),
                    "live instances use another KOMISI_JOURNAL_PARTITIONS: this instance takes orders but owns no \
                     partition until they agree (stop every instance to change the partition count)"
                );
                return;
            }
            Err(e) => {
                ownership.stalled.store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, "could not check the partition count; retrying");
                return;
            }
        }
    }

    renew(st, journal.as_ref(), ttl).await;
    if !ownership.closing.load(Ordering::SeqCst) && !deps.faults.holding_leases() {
        balance(st, journal.as_ref(), ttl).await;
        take_fences(st).await;
    }
    ownership.gauge();
    let took = started.elapsed();
    if took > deps.tuning.lease_renew_every() {
        tracing::warn!(?took, "a lease tick took longer than the renewal interval");
    }
}

/// Renews every held lease; a lease found taken (or gone) is lost at once,
/// one not renewed for a whole TTL (Redis unreachable) is presumed lost.
async fn renew(st: &mut LeaserState, journal: &dyn Journal, ttl: Duration) {
    let ownership = &st.deps.ownership;
    let held: Vec<u16> = ownership.owned().into_iter().chain(st.acquiring.iter().copied()).collect();
    if held.is_empty() {
        return;
    }
    let renewed = journal.renew(&held, ttl).await;
    let renewed = if st.deps.faults.take_lease_loss() { renewed.map(|kept| vec![false; kept.len()]) } else { renewed };
    match renewed {
        Ok(kept) => {
            for (part, kept) in held.into_iter().zip(kept) {
                if kept {
                    metrics::counter!(m::LEASE_RENEWALS_TOTAL).increment(1);
                    st.renewed.insert(part, Instant::now());
                } else {
                    metrics::counter!(m::LEASE_LOSSES_TOTAL).increment(1);
                    tracing::warn!(part, "partition lease lost (taken by another instance, or expired)");
                    forget(st, part);
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "lease renewal failed");
            for part in held {
                if st.renewed.get(&part).is_none_or(|at| at.elapsed() >= ttl) {
                    metrics::counter!(m::LEASE_LOSSES_TOTAL).increment(1);
                    tracing::warn!(part, "partition lease not renewed for its TTL: presumed lost");
                    forget(st, part);
                }
            }
        }
    }
}

fn forget(st: &mut LeaserState, part: u16) {
    st.deps.ownership.remove(part);
    st.acquiring.remove(&part);
    st.renewed.remove(&part);
}

/// Gives up partitions above this instance's share, takes free ones below it.
async fn balance(st: &mut LeaserState, journal: &dyn Journal, ttl: Duration) {
    let ownership = &st.deps.ownership;
    let partitions = journal.partitions();
    let target = share(partitions, ownership.peers());
    let owned = ownership.owned();
    let holding = owned.len() + st.acquiring.len();
    if holding > target {
        // The highest first: the order is the same on every instance, so two
        // instances giving up at once leave the same gaps for a newcomer.
        let extra: Vec<u16> =
            st.acquiring.iter().rev().chain(owned.iter().rev()).copied().take(holding - target).collect();
        for &part in &extra {
            forget(st, part);
        }
        match journal.release(&extra).await {
            Ok(()) => {
                metrics::counter!(m::LEASE_RELEASES_TOTAL).increment(extra.len() as u64);
                tracing::info!(parts = ?extra, target, "released partitions above this instance's share");
            }
            Err(e) => tracing::warn!(error = %e, "releasing partitions failed; their leases expire"),
        }
        return;
    }
    if holding >= target {
        return;
    }
    // Free partitions, from a random place so instances starting together
    // do not all try the same ones first.
    let start = rand::rng().random_range(0..partitions);
    let mut wanted = target - holding;
    for i in 0..partitions {
        if wanted == 0 {
            break;
        }
        let part = (start + i) % partitions;
        if ownership.fence(part).is_some() || st.acquiring.contains(&part) {
            continue;
        }
        match journal.acquire(part, ttl).await {
            Ok(true) => {
                st.acquiring.insert(part);
                st.renewed.insert(part, Instant::now());
                wanted -= 1;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "acquiring a partition lease failed");
                return;
            }
        }
    }
}

/// Moves the token of each newly leased partition on (the takeover proper),
/// then takes over its unacknowledged entries; the partition is read from
/// then on, and recovery journals its open events again.
async fn take_fences(st: &mut LeaserState) {
    let deps = st.deps.clone();
    let journal = &deps.journal;
    for part in std::mem::take(&mut st.acquiring) {
        match deps.engine.take_partition(part, journal.instance()).await {
            Ok((token, previous)) => {
                let from = match previous.as_deref() {
                    Some(p) if p != journal.instance() => "other",
                    _ => "free",
                };
                metrics::counter!(m::LEASE_TAKEOVERS_TOTAL, "from" => from).increment(1);
                tracing::info!(part, token, previous = previous.as_deref().unwrap_or("-"), "partition taken");
                deps.ownership.insert(part, token);
                match journal.take_over(part, TAKE_OVER_MAX).await {
                    Ok(claimed) if !claimed.is_empty() => {
                        tracing::info!(part, entries = claimed.len(), "took over unacknowledged entries");
                        let fresh = super::without_stale(&deps, claimed).await;
                        if !fresh.is_empty() {
                            let _ = deps.deliver(&st.supervisor, fresh);
                        }
                    }
                    Ok(_) => {}
                    // Left pending: recovery's idle claims take them later.
                    Err(e) => tracing::warn!(part, error = %e, "taking over a partition's entries failed"),
                }
            }
            Err(e) => {
                // Most likely a stalled old owner's transaction holds the row:
                // keep the lease and try again next tick.
                tracing::warn!(part, error = %e, "moving a partition's fencing token failed; retrying");
                st.acquiring.insert(part);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_fits_in_the_shares_of_the_live_instances() {
        for p in [1u16, 2, 16, 17, 1024] {
            for n in 1..=40 {
                let s = share(p, n);
                assert!(s * n >= usize::from(p), "P={p} n={n}: {s} each leaves partitions over");
                // No one may need more than one above the even split.
                assert!(s <= usize::from(p).div_ceil(n));
            }
        }
        assert_eq!(share(16, 3), 6);
        assert_eq!(share(16, 0), 16);
    }
}
