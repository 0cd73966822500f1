//! The event transaction (G3), the heart of the product: one event, or a
//! batch of events of different orders, applied in ONE backend transaction —
//! lock the events and their orders, load what the rules read, resolve (once)
//! each order's frozen context, entitle, take the delta against the ledger,
//! write it, mark the events done, commit. A failed transaction rolls back
//! whole; `apply_batch` then applies the events of a failed batch one by one,
//! so a failing event only ever fails alone.
use super::faults::Faults;
use super::webhooks::AppliedEvent;
use super::{corrupt, EngineError};
use crate::domain::affiliate::UplineWalk;
use crate::domain::caps::{self, CounterKey, Cut, Grant, OrderLimits, Used};
use crate::domain::entitlement::{entitle, month_window, CommissionKind, Entitlement, FrozenContext, RewardLine};
use crate::domain::event::{EventId, EventStatus, EventType, Fence, PartitionKey};
use crate::domain::ids::{AffiliateId, OrderId};
use crate::domain::ledger::{delta, Applied, Delta, EntryStatus};
use crate::domain::order::{CommissionStatus, OrderItem, OrderState, OrderStatus};
use crate::domain::program::Program;
use crate::domain::report::{bucket, day_start, Figures, SHARDS};
use crate::metrics as m;
use crate::store::{ApplyTx, Backend, LedgerRow, LockedEvent, MonthAsk, OrderUpdate, ReportAdds, RewardRow, Writes};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// What processing one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The event's delta was written (possibly empty) and it is now done.
    Applied {
        kind: EventType,
        /// Order commit → applied.
        lag: Duration,
        /// Σ written amount per commission kind (negative for reversals).
        amounts: Vec<(CommissionKind, Decimal)>,
        rows_written: usize,
    },
    /// Already done: a duplicate delivery or a replay; nothing written.
    AlreadyDone { kind: EventType },
    /// Dead or unknown: left alone.
    Skipped(&'static str),
}

type Result<T> = std::result::Result<T, EngineError>;

/// Applies one event exactly once. Safe to call any number of times, in any
/// order, concurrently: the event and order rows are locked, and a done event
/// is a no-op.
pub async fn apply_event(store: &dyn Backend, faults: &Faults, id: EventId) -> Result<Outcome> {
    let mut outcomes = apply_events(store, faults, &[id]).await?;
    outcomes.pop().ok_or_else(|| corrupt("no outcome for the event"))
}

/// Applies several events in one transaction, all or nothing: one outcome
/// per id, in order. The events must belong to different orders (two events
/// of one order must be applied in sequence); a batch that breaks this is
/// refused whole, and so is a batch where any event fails — the caller
/// applies its events one by one instead. Commits, round trips and balance
/// updates are shared by the batch; every rule is still applied per event.
pub async fn apply_events(store: &dyn Backend, faults: &Faults, ids: &[EventId]) -> Result<Vec<Outcome>> {
    let jobs: Vec<Job> = ids.iter().map(|id| (*id, None)).collect();
    apply_fenced(store, faults, &jobs, None).await
}

/// An event to apply, with the fencing token of its partition held by the
/// instance applying it (None: not fenced — tools, tests, the embedded mode).
pub type Job = (EventId, Option<Fence>);

/// [`apply_events`] for the owner of the events' journal partitions: the
/// transaction first checks, under a shared lock on their fence rows, that
/// the tokens are still current, and commits nothing when one has moved on
/// ([`EngineError::Fenced`]: the partition was taken over; its new owner
/// applies the events). `by` names the instance in the events' rows.
pub async fn apply_fenced(
    store: &dyn Backend,
    faults: &Faults,
    jobs: &[Job],
    by: Option<&Arc<str>>,
) -> Result<Vec<Outcome>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<EventId> = jobs.iter().map(|(id, _)| *id).collect();
    let mut fences: Vec<Fence> = jobs.iter().filter_map(|(_, f)| *f).collect();
    fences.sort_by_key(|f| (f.part, f.token));
    fences.dedup();
    let mut tx = store.begin_apply().await?;
    // First, before any row lock: a takeover waiting for this fence row then
    // never waits on a transaction that waits for it.
    if !tx.fence(&fences).await? {
        return Err(EngineError::Fenced);
    }
    let (mut outcomes, open) = triage(&ids, tx.lock(&ids).await?)?;
    if open.is_empty() {
        tx.commit().await?;
        return finish(outcomes, Duration::ZERO);
    }
    let mut inputs = read_inputs(tx.as_mut(), &open).await?;

    let now = Utc::now();
    let tokens: HashMap<EventId, u64> = jobs.iter().filter_map(|(id, f)| f.map(|f| (*id, f.token))).collect();
    let mut writes = Writes { applied_by: by.cloned(), ..Writes::default() };
    let mut plans = Vec::with_capacity(open.len());
    for (_, ev) in &open {
        plans.push(plan(ev, inputs.take(ev)?)?);
    }
    // The cap and budget counters the lines move, locked (in key order)
    // before anything is written: every event transaction takes them at
    // the same point, so they never wait on each other in a cycle.
    let mut keys: Vec<CounterKey> = plans.iter().flat_map(Plan::counters).collect();
    keys.sort();
    keys.dedup();
    let mut used = tx.counters(&keys, true).await?;
    let before = used.clone();
    let mut placed = Vec::new();
    for ((i, ev), plan) in open.iter().zip(plans) {
        if ev.kind == EventType::OrderPlaced {
            let direct = plan.facts.ctx.direct.as_ref().map(|d| d.id.clone());
            placed.push((direct, plan.entitled.eligible_amount, plan.facts.program.timezone));
        }
        outcomes[*i] = Some(entitle_event(&mut writes, ev, plan, &mut used, tokens.get(&ev.id).copied(), now));
    }
    writes.report = report(&writes, &open, &placed, &inputs.programs, now);
    writes.counters = used.into_iter().filter(|(k, u)| before.get(k) != Some(u)).collect();

    let approved = tx.write(&writes, now).await?;
    // The messages of every change, in the same transaction (after the
    // writes, which hold each subject's row lock).
    let published = super::webhooks::publish(tx.as_mut(), now, || {
        let events: Vec<AppliedEvent<'_>> = open
            .iter()
            .map(|(_, ev)| AppliedEvent {
                id: ev.id,
                kind: ev.kind,
                order_id: &ev.order_id,
                buyer_id: &ev.buyer_id,
                program_version: ev.program_version,
                currency: inputs.programs.get(&ev.program_version).map_or("", |p| p.currency.as_str()),
            })
            .collect();
        super::webhooks::apply_notices(&events, &writes.ledger, &writes.rewards, &approved)
    })
    .await?;
    if faults.take_db_error() || faults.take_order_error(open.iter().map(|(_, ev)| ev.order_id.as_str())) {
        // A failure in the middle of the transaction, after every row is
        // written: G3 says none of them may survive. Dropping the
        // transaction rolls it back.
        return Err(EngineError::Injected("database error in the middle of the event transaction"));
    }
    tx.commit().await?;
    published.committed();
    count_points(&writes);
    count_caps(&writes, &inputs.programs, now);
    // The lag is measured to the commit.
    finish(outcomes, (Utc::now() - now).to_std().unwrap_or_default())
}

/// What the batch adds to the report aggregates: its lines and points in
/// the quarter-hour of `now` (one shard, by the batch's first event), each
/// beneficiary's net lines and each placed order in the day of `now` in
/// the order's program time zone.
fn report(
    w: &Writes,
    open: &[(usize, LockedEvent)],
    placed: &[(Option<AffiliateId>, Decimal, chrono_tz::Tz)],
    programs: &HashMap<u64, Arc<Program>>,
    now: DateTime<Utc>,
) -> ReportAdds {
    let mut adds = ReportAdds::default();
    let Some((_, first)) = open.first() else { return adds };
    let mut f = Figures::default();
    let zones: HashMap<EventId, chrono_tz::Tz> =
        open.iter().filter_map(|(_, ev)| programs.get(&ev.program_version).map(|p| (ev.id, p.timezone))).collect();
    for line in &w.ledger {
        f.line(line.kind, line.amount);
        let tz = zones.get(&line.event_id).copied().unwrap_or(chrono_tz::UTC);
        adds.days.entry((day_start(now, tz), line.affiliate_id.clone())).or_default().commission += line.amount;
    }
    for r in &w.rewards {
        f.reward(r.kind, r.points);
    }
    for (direct, eligible, tz) in placed {
        f.orders += 1;
        f.eligible_sales += *eligible;
        if let Some(a) = direct {
            let day = adds.days.entry((day_start(now, *tz), a.clone())).or_default();
            day.orders += 1;
            day.sales += *eligible;
        }
    }
    adds.buckets.insert((bucket(now), first.id.shard(SHARDS)), f);
    adds
}

/// Outcomes so far (None: to apply), and the open events with their positions.
type Triage = (Vec<Option<Outcome>>, Vec<(usize, LockedEvent)>);

/// Each id's outcome when it needs no transaction (unknown, done, dead),
/// and the open events to apply, with their positions. Two open events of
/// one order refuse the batch (they must be applied in sequence).
fn triage(ids: &[EventId], locked: Vec<LockedEvent>) -> Result<Triage> {
    let by_id: HashMap<EventId, LockedEvent> = locked.into_iter().map(|e| (e.id, e)).collect();
    let mut outcomes = Vec::with_capacity(ids.len());
    let mut open = Vec::new();
    let mut orders = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        // The same id twice is two events of one order: refused below.
        let Some(ev) = by_id.get(id).cloned() else {
            outcomes.push(Some(Outcome::Skipped("unknown event")));
            continue;
        };
        match ev.status {
            EventStatus::Done => outcomes.push(Some(Outcome::AlreadyDone { kind: ev.kind })),
            EventStatus::Dead => outcomes.push(Some(Outcome::Skipped("dead event"))),
            EventStatus::Pending | EventStatus::Processing | EventStatus::Failed => {
                if !orders.insert(ev.order_id.clone()) {
                    return Err(corrupt(format!("a batch holds two events of order {}", ev.order_id)));
                }
                outcomes.push(None);
                open.push((i, ev));
            }
        }
    }
    Ok((outcomes, open))
}

/// What the rules read for the open events, all at once.
struct Inputs {
    programs: HashMap<u64, Arc<Program>>,
    items: HashMap<OrderId, Vec<OrderItem>>,
    applied: HashMap<OrderId, Applied>,
    contexts: HashMap<OrderId, FrozenContext>,
}

/// One event's share of [`Inputs`].
struct Facts {
    program: Arc<Program>,
    state: OrderState,
    ctx: FrozenContext,
    /// The context resolved now, as JSON (first processing only).
    new_context: Option<String>,
    applied: Applied,
    limits: OrderLimits,
}

async fn read_inputs(tx: &mut dyn ApplyTx, open: &[(usize, LockedEvent)]) -> Result<Inputs> {
    let mut programs = HashMap::new();
    for (_, ev) in open {
        if let std::collections::hash_map::Entry::Vacant(slot) = programs.entry(ev.program_version) {
            slot.insert(tx.program(ev.program_version).await?);
        }
    }
    let order_ids: Vec<&OrderId> = open.iter().map(|(_, ev)| &ev.order_id).collect();
    let items = tx.items(&order_ids).await?;
    // The ledger of every order processed before: a frozen context, or (an
    // order moved to another affiliate, whose context was cleared) an
    // event of it done. Before the first processing nothing is written.
    let processed: Vec<&OrderId> = open
        .iter()
        .filter(|(_, ev)| ev.context.is_some() || ev.siblings.contains(&EventStatus::Done))
        .map(|(_, ev)| &ev.order_id)
        .collect();
    let applied = tx.applied(&processed).await?;
    let fresh: Vec<(ContextAsk<'_>, &Program)> = open
        .iter()
        .filter(|(_, ev)| ev.context.is_none())
        .map(|(_, ev)| (ContextAsk::of(ev), programs[&ev.program_version].as_ref()))
        .collect();
    let contexts = resolve_contexts(tx, &fresh).await?;
    Ok(Inputs { programs, items, applied, contexts })
}

impl Inputs {
    fn take(&mut self, ev: &LockedEvent) -> Result<Facts> {
        let state = OrderState {
            buyer_id: ev.buyer_id.clone(),
            items: self.items.remove(&ev.order_id).unwrap_or_default(),
            cancelled: ev.order_status == OrderStatus::Cancelled,
            fx_rate: ev.fx_rate,
        };
        let program = self.programs.get(&ev.program_version).cloned().ok_or_else(|| corrupt("program not read"))?;
        let limits = match &ev.limits {
            Some(json) => serde_json::from_str::<OrderLimits>(json).map_err(corrupt)?,
            None => OrderLimits::default(),
        };
        Ok(match &ev.context {
            Some(json) => Facts {
                program,
                state,
                ctx: serde_json::from_str::<FrozenContext>(json).map_err(corrupt)?,
                new_context: None,
                applied: self.applied.remove(&ev.order_id).unwrap_or_default(),
                limits,
            },
            None => {
                let ctx = self.contexts.remove(&ev.order_id).ok_or_else(|| corrupt("context not resolved"))?;
                let json = serde_json::to_string(&ctx).map_err(corrupt)?;
                let applied = self.applied.remove(&ev.order_id).unwrap_or_default();
                Facts { program, state, ctx, new_context: Some(json), applied, limits }
            }
        })
    }
}

/// One event's rules before the counters: its entitlement under the frozen
/// context, lowered to the grants of lines cut before, and the delta
/// against what the ledger holds.
pub(crate) struct Plan {
    facts: Facts,
    entitled: Entitlement,
    delta: Delta,
    /// The limits changed (an affiliate's lines start counting).
    limits_changed: bool,
    placed_at: DateTime<Utc>,
}

fn plan(ev: &LockedEvent, f: Facts) -> Result<Plan> {
    Ok(Plan::new(f, ev.placed_at))
}

impl Plan {
    /// A quote's plan: the entitlement of an order not yet placed, nothing applied.
    pub(crate) fn for_quote(
        program: Arc<Program>,
        state: OrderState,
        ctx: FrozenContext,
        placed_at: DateTime<Utc>,
    ) -> Self {
        let facts = Facts {
            program,
            state,
            ctx,
            new_context: None,
            applied: Applied::default(),
            limits: OrderLimits::default(),
        };
        Self::new(facts, placed_at)
    }

    pub(crate) fn entitled(&self) -> &Entitlement {
        &self.entitled
    }

    pub(crate) fn delta(&self) -> &Delta {
        &self.delta
    }

    fn new(mut f: Facts, placed_at: DateTime<Utc>) -> Self {
        let mut limits_changed = false;
        if let Some(direct) = &f.ctx.direct {
            let caps = direct.caps.as_deref().unwrap_or(&f.program.affiliate_caps);
            limits_changed = f.limits.count_direct(&direct.id, caps);
        }
        let mut entitled = entitle(&f.state, &f.program, &f.ctx);
        f.limits.clamp(&mut entitled);
        let delta = delta(&entitled, &f.applied);
        Plan { facts: f, entitled, delta, limits_changed, placed_at }
    }

    /// The counters of the delta's lines, with their maxima, in the order
    /// they are charged: the direct affiliate's lines, then up the levels
    /// (by kind within a level), then the points.
    fn limited(&self) -> impl Iterator<Item = LineCounters> + '_ {
        let (p, at) = (&self.facts.program, self.placed_at);
        let mut order: Vec<usize> = (0..self.delta.commissions.len()).collect();
        order.sort_by_key(|&i| (self.delta.commissions[i].level, self.delta.commissions[i].kind));
        let commissions = order.into_iter().map(move |i| {
            let l = &self.delta.commissions[i];
            let keys = self.facts.limits.commission_counters(&l.affiliate_id, l.level, &p.budgets, at, p.timezone);
            (LineRef::Commission(i), keys, Vec::new())
        });
        let rewards = self.delta.rewards.iter().enumerate().map(move |(i, l)| {
            (LineRef::Reward(i), Vec::new(), caps::points_counters(l.kind, &p.budgets, at, p.timezone))
        });
        commissions.chain(rewards)
    }

    /// Each delta line charged to its counters, in order: what it pays and its cut.
    pub(crate) fn charge(&self, used: &mut HashMap<CounterKey, Used>) -> Charged {
        let mut commissions: Vec<(Decimal, Option<Cut<Decimal>>)> =
            self.delta.commissions.iter().map(|l| (l.amount, None)).collect();
        let mut points: Vec<(i64, Option<Cut<i64>>)> = self.delta.rewards.iter().map(|l| (l.points, None)).collect();
        let mode = self.facts.program.on_exhausted;
        for (line, commission_keys, points_keys) in self.limited() {
            match line {
                LineRef::Commission(i) if !commission_keys.is_empty() => {
                    let amount = self.delta.commissions[i].amount;
                    commissions[i] = caps::charge(amount, &commission_keys, used, caps::commission, mode);
                }
                LineRef::Reward(i) if !points_keys.is_empty() => {
                    let amount = self.delta.rewards[i].points;
                    points[i] = caps::charge(amount, &points_keys, used, caps::points, mode);
                }
                _ => {}
            }
        }
        (commissions, points)
    }

    pub(crate) fn counters(&self) -> Vec<CounterKey> {
        self.limited()
            .flat_map(|(_, c, r)| c.into_iter().map(|(k, _)| k).chain(r.into_iter().map(|(k, _)| k)))
            .collect()
    }
}

/// A delta line and the counters it moves, with their maxima (commission, points).
type LineCounters = (LineRef, Vec<(CounterKey, Decimal)>, Vec<(CounterKey, i64)>);

/// A delta's commission and reward lines as charged: (pays, cut) each, in order.
pub(crate) type Charged = (Vec<(Decimal, Option<Cut<Decimal>>)>, Vec<(i64, Option<Cut<i64>>)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineRef {
    Commission(usize),
    Reward(usize),
}

/// The rules for one event, pure: its planned delta charged to the cap and
/// budget counters (`used`, moved here), and the rows, balances, points,
/// counters and order update that write it (added to `w`); its outcome.
/// `token`: the fencing token it is applied under.
fn entitle_event(
    w: &mut Writes,
    ev: &LockedEvent,
    plan: Plan,
    used: &mut HashMap<CounterKey, Used>,
    token: Option<u64>,
    now: DateTime<Utc>,
) -> Outcome {
    let (charged_commissions, charged_points) = plan.charge(used);
    let Plan { facts: f, entitled, delta, mut limits_changed, .. } = plan;
    let mut limits = f.limits;
    // Once approved, an order's entries (clawbacks included) land approved.
    let status = if ev.approved { EntryStatus::Approved } else { EntryStatus::Pending };
    let mut amounts: BTreeMap<CommissionKind, Decimal> = BTreeMap::new();
    for (line, (amount, cut)) in delta.commissions.iter().zip(charged_commissions) {
        if cut.is_some() {
            // What the line may pay from now on: what it holds.
            let held =
                f.applied.commissions.get(&(line.affiliate_id.clone(), line.kind)).map_or(Decimal::ZERO, |a| a.1);
            limits.grant(Grant::Commission {
                affiliate_id: line.affiliate_id.clone(),
                kind: line.kind,
                amount: held + amount,
            });
            limits_changed = true;
        }
        w.ledger.push(LedgerRow {
            affiliate_id: line.affiliate_id.clone(),
            order_id: ev.order_id.clone(),
            event_id: ev.id,
            level: line.level,
            kind: line.kind,
            amount,
            status,
            rule_version: ev.program_version,
            cut,
        });
        *w.balances.entry(line.affiliate_id.clone()).or_default().entry(status).or_default() += amount;
        *amounts.entry(line.kind).or_default() += amount;
    }
    let delta_rewards: Vec<RewardLine> = delta
        .rewards
        .iter()
        .zip(&charged_points)
        .map(|(l, (points, cut))| {
            if cut.is_some() {
                let held = f.applied.rewards.get(&(l.buyer_id.clone(), l.kind)).copied().unwrap_or(0);
                limits.grant(Grant::Points { buyer_id: l.buyer_id.clone(), kind: l.kind, points: held + points });
                limits_changed = true;
            }
            RewardLine { points: *points, ..l.clone() }
        })
        .collect();
    for (line, (_, cut)) in delta_rewards.iter().zip(charged_points) {
        // Earned points are a lot that expires `points_expire_days` from now.
        let expires_at = (line.points > 0 && f.program.points_expire_days > 0)
            .then(|| now + chrono::Duration::days(i64::from(f.program.points_expire_days)));
        if let Some(at) = expires_at {
            let due = w.expiries.entry(line.buyer_id.clone()).or_insert(at);
            *due = (*due).min(at);
        }
        w.rewards.push(RewardRow {
            buyer_id: line.buyer_id.clone(),
            order_id: ev.order_id.clone(),
            event_id: ev.id,
            kind: line.kind,
            points: line.points,
            expires_at,
            cut,
        });
        *w.points.entry(line.buyer_id.clone()).or_default() += line.points;
    }
    if !ev.approved && ev.approve_at.is_some_and(|at| at <= now) {
        w.approve.push(ev.order_id.clone());
    }
    w.done.push(ev.id);
    if let Some(token) = token {
        w.fences.insert(ev.id, token);
    }
    w.orders.push(OrderUpdate {
        order_id: ev.order_id.clone(),
        commission_status: CommissionStatus::of(ev.siblings.iter().copied().chain([EventStatus::Done])),
        no_commission_reason: entitled.no_commission_reason.map(|r| r.as_str()),
        context: f.new_context,
        limits: limits_changed.then(|| serde_json::to_string(&limits).expect("limits serialize")),
    });
    Outcome::Applied {
        kind: ev.kind,
        lag: (now - ev.created_at).to_std().unwrap_or_default(),
        amounts: amounts.into_iter().collect(),
        rows_written: delta.commissions.len() + delta.rewards.len(),
    }
}

/// Lines a cap or budget cut, counted per bound; each budget's use of its
/// current window, as a ratio of its maximum (per instance: the last
/// transaction that moved it).
fn count_caps(w: &Writes, programs: &HashMap<u64, Arc<Program>>, now: DateTime<Utc>) {
    let cuts =
        w.ledger.iter().filter_map(|r| r.cut.map(|c| c.by)).chain(w.rewards.iter().filter_map(|r| r.cut.map(|c| c.by)));
    for by in cuts {
        metrics::counter!(m::CAPS_BOUND_TOTAL, "bound" => by.as_str()).increment(1);
    }
    let Some(program) = programs.values().max_by_key(|p| p.budgets.len()).filter(|p| !p.budgets.is_empty()) else {
        return;
    };
    for (key, used) in w.counters.iter().filter(|(k, _)| k.scope == caps::Scope::Program) {
        let Some(budget) = program.budgets.iter().find(|b| b.period == key.period) else { continue };
        if key.start != key.period.start(now, program.timezone) {
            continue;
        }
        let period = key.period.as_str();
        if let Some(max) = budget.max_commission {
            let ratio = (used.commission / max).to_f64().unwrap_or(0.0);
            metrics::gauge!(m::BUDGET_USED_RATIO, "period" => period, "measure" => "commission").set(ratio);
        }
        if let Some(max) = budget.max_points {
            metrics::gauge!(m::BUDGET_USED_RATIO, "period" => period, "measure" => "points")
                .set(used.points as f64 / max as f64);
        }
    }
}

/// Points earned and reversed by a committed transaction, counted.
fn count_points(w: &Writes) {
    let (earned, reversed) = w.rewards.iter().fold((0u64, 0u64), |(e, r), row| {
        if row.points > 0 {
            (e + row.points.unsigned_abs(), r)
        } else {
            (e, r + row.points.unsigned_abs())
        }
    });
    if earned > 0 {
        metrics::counter!(m::POINTS_TOTAL, "movement" => "earned").increment(earned);
    }
    if reversed > 0 {
        metrics::counter!(m::POINTS_TOTAL, "movement" => "reversed").increment(reversed);
    }
}

/// Every outcome, the applied ones' lag extended to the commit.
fn finish(outcomes: Vec<Option<Outcome>>, to_commit: Duration) -> Result<Vec<Outcome>> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Some(Outcome::Applied { kind, lag, amounts, rows_written }) => {
                Ok(Outcome::Applied { kind, lag: lag + to_commit, amounts, rows_written })
            }
            Some(other) => Ok(other),
            None => Err(corrupt("missing outcome")),
        })
        .collect()
}

/// What resolving an order's context needs to know of the order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextAsk<'a> {
    pub order_id: &'a OrderId,
    pub buyer_id: &'a crate::domain::ids::BuyerId,
    pub direct: Option<&'a AffiliateId>,
    pub placed_at: chrono::DateTime<Utc>,
    pub buyer_email_hash: Option<&'a crate::domain::affiliate::EmailHash>,
}

impl<'a> ContextAsk<'a> {
    fn of(ev: &'a LockedEvent) -> Self {
        Self {
            order_id: &ev.order_id,
            buyer_id: &ev.buyer_id,
            direct: ev.direct.as_ref(),
            placed_at: ev.placed_at,
            buyer_email_hash: ev.buyer_email_hash.as_ref(),
        }
    }
}

/// Resolves what the rules need from outside each order, once, at its first
/// processing: the direct affiliate and upline (one read for all orders, and
/// more only when many suspended ancestors are skipped), the month volume and
/// position and the buyer's first order (one read for all). A quote resolves
/// its order's context with the same function, on a read-only view.
pub(crate) async fn resolve_contexts(
    tx: &mut dyn ApplyTx,
    fresh: &[(ContextAsk<'_>, &Program)],
) -> Result<HashMap<OrderId, FrozenContext>> {
    let mut contexts = HashMap::with_capacity(fresh.len());
    if fresh.is_empty() {
        return Ok(contexts);
    }
    // Each direct affiliate and its first stretch of ancestors.
    let directs: Vec<&AffiliateId> = fresh.iter().filter_map(|(ev, _)| ev.direct).collect();
    let most = fresh.iter().map(|(_, p)| UplineWalk::first_stretch(p)).max().unwrap_or(0) + 1;
    let chains = tx.ancestors(&directs, most).await?;

    let mut walked = Vec::with_capacity(fresh.len());
    for (ev, program) in fresh {
        let Some(mut chain) = ev.direct.and_then(|id| chains.get(id)).map(|c| c.iter().cloned()) else {
            walked.push(None);
            continue;
        };
        let Some(direct) = chain.next() else {
            walked.push(None);
            continue;
        };
        let mut walk = UplineWalk::new(program, &direct);
        let asked = UplineWalk::first_stretch(program);
        walk.take(chain.take(asked).collect(), asked);
        loop {
            if let Some(min) = program.upline_min_month_sales {
                let fresh = walk.unchecked();
                if !fresh.is_empty() {
                    walk.mark_unqualified(&unqualified(tx, ev, program, &fresh, min).await?);
                }
            }
            let Some((next, count)) = walk.next_fetch() else { break };
            let stretch = tx.ancestors(&[&next], count).await?.remove(&next).unwrap_or_default();
            walk.take(stretch, count);
        }
        walked.push(Some((direct, walk.finish())));
    }

    // Rules 4, 5 and 8 for every order at once.
    let asks: Vec<MonthAsk<'_>> = fresh
        .iter()
        .zip(&walked)
        .map(|((ev, program), walk)| {
            let (month_start, month_end) = month_window(ev.placed_at, program.timezone);
            MonthAsk {
                order_id: ev.order_id,
                buyer_id: ev.buyer_id,
                direct: walk.as_ref().map(|(d, _)| &d.id),
                placed_at: ev.placed_at,
                month_start,
                month_end,
            }
        })
        .collect();
    let mut facts = tx.month_facts(&asks).await?;

    for ((ev, _), walk) in fresh.iter().zip(walked) {
        let f = facts.remove(ev.order_id).ok_or_else(|| corrupt("month facts missing"))?;
        let ctx = match walk {
            None => FrozenContext {
                direct: None,
                upline: Vec::new(),
                volume_before: Decimal::ZERO,
                nth_in_month: 0,
                buyer_first_order: f.buyer_first_order,
                buyer_email_hash: ev.buyer_email_hash.cloned(),
            },
            Some((direct, upline)) => FrozenContext {
                direct: Some(direct.snapshot()),
                upline,
                volume_before: f.volume_before,
                nth_in_month: u32::try_from(f.earlier + 1).map_err(corrupt)?,
                buyer_first_order: f.buyer_first_order,
                buyer_email_hash: ev.buyer_email_hash.cloned(),
            },
        };
        contexts.insert(ev.order_id.clone(), ctx);
    }
    Ok(contexts)
}

/// Rule 7's qualification: which of these ancestors sold less than `min`
/// themselves in the order's month before the order (the same "before" as
/// the direct affiliate's tier volume: placed earlier, ties by order id).
async fn unqualified(
    tx: &mut dyn ApplyTx,
    ev: &ContextAsk<'_>,
    program: &Program,
    ancestors: &[AffiliateId],
    min: Decimal,
) -> Result<HashSet<AffiliateId>> {
    let (month_start, month_end) = month_window(ev.placed_at, program.timezone);
    let mut below = HashSet::new();
    for ancestor in ancestors {
        let ask = MonthAsk {
            order_id: ev.order_id,
            buyer_id: ev.buyer_id,
            direct: Some(ancestor),
            placed_at: ev.placed_at,
            month_start,
            month_end,
        };
        let facts = tx.month_facts(std::slice::from_ref(&ask)).await?;
        let sold = facts.get(ev.order_id).ok_or_else(|| corrupt("month facts missing"))?.volume_before;
        if sold < min {
            below.insert(ancestor.clone());
        }
    }
    Ok(below)
}

/// Applies a batch in one transaction; if it fails, each event alone, so a
/// failing event fails alone and the others land exactly once.
pub async fn apply_batch(store: &dyn Backend, faults: &Faults, ids: Vec<EventId>) -> Vec<Result<Outcome>> {
    apply_batch_fenced(store, faults, ids.into_iter().map(|id| (id, None)).collect(), None).await
}

/// [`apply_batch`] of fenced jobs: one event alone fails alone, a partition
/// taken over fails its own events only.
pub async fn apply_batch_fenced(
    store: &dyn Backend,
    faults: &Faults,
    jobs: Vec<Job>,
    by: Option<&Arc<str>>,
) -> Vec<Result<Outcome>> {
    metrics::histogram!(m::EVENT_BATCH_SIZE).record(jobs.len() as f64);
    if faults.take_batch_panic() {
        panic!("injected panic in the batch worker applying {} events", jobs.len());
    }
    if jobs.len() > 1 {
        match apply_fenced(store, faults, &jobs, by).await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(e) => {
                metrics::counter!(m::EVENT_BATCH_FALLBACKS_TOTAL).increment(1);
                tracing::info!(error = %e, events = jobs.len(), "batch rolled back; applying its events one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let one = apply_fenced(store, faults, std::slice::from_ref(&job), by).await;
        results.push(one.and_then(|mut o| o.pop().ok_or_else(|| corrupt("no outcome for the event"))));
    }
    results
}

/// Coalesces the commission actors' events into shared transactions: each
/// actor still applies its own partition's events one at a time, in order,
/// but the events of many partitions that are ready at the same moment are
/// applied together (`apply_batch`).
#[derive(Clone)]
pub struct Applier {
    batches: super::batch::Coalescer<Job, Result<Outcome>, PartitionKey>,
}

impl Applier {
    /// `workers` transactions at most at once, each of up to `max_batch`
    /// events, started at most `linger` after its first event was ready.
    /// `by`: the instance, named in the rows of the events it applies.
    pub fn start(
        store: Arc<dyn Backend>,
        faults: Arc<Faults>,
        workers: usize,
        max_batch: usize,
        linger: Duration,
        by: Arc<str>,
    ) -> Self {
        let batches = super::batch::Coalescer::start("apply", workers, max_batch, linger, move |jobs: Vec<Job>| {
            let (store, faults, by) = (store.clone(), faults.clone(), by.clone());
            async move { apply_batch_fenced(store.as_ref(), &faults, jobs, Some(&by)).await }
        });
        Self { batches }
    }

    /// Applies one event of `partition` (possibly together with other
    /// partitions' events; partitions take turns in every batch).
    pub async fn apply(&self, partition: &PartitionKey, id: EventId, fence: Option<Fence>) -> Result<Outcome> {
        self.batches.submit(partition.clone(), (id, fence)).await.ok_or(EngineError::NoAnswer("event application"))?
    }
}

#[cfg(test)]
mod tests {
    //! The event transaction's rule step, without a database: the worked
    //! example placed, then refunded after approval.
    use super::*;
    use crate::domain::entitlement::{AffiliateSnapshot, RewardKind};
    use crate::domain::ids::{BuyerId, Category, Sku};
    use crate::domain::program::Program;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn snapshot(id: &str) -> AffiliateSnapshot {
        AffiliateSnapshot {
            id: AffiliateId::parse(id).unwrap(),
            suspended: false,
            buyer_id: None,
            email_hash: None,
            unqualified: false,
            caps: None,
        }
    }

    fn item(sku: &str, category: &str, quantity: u32, refunded: u32, price: &str) -> OrderItem {
        OrderItem {
            sku: Sku::parse(sku).unwrap(),
            category: Category::parse(category).unwrap(),
            quantity,
            refunded,
            unit_price: d(price),
        }
    }

    fn event(kind: EventType, siblings: Vec<EventStatus>, approved: bool, now: DateTime<Utc>) -> LockedEvent {
        LockedEvent {
            id: EventId::new(),
            kind,
            status: EventStatus::Pending,
            siblings,
            order_id: OrderId::parse("o-1").unwrap(),
            created_at: now - chrono::TimeDelta::seconds(2),
            program_version: 1,
            buyer_id: BuyerId::parse("x").unwrap(),
            direct: Some(AffiliateId::parse("C").unwrap()),
            placed_at: now,
            order_status: OrderStatus::Placed,
            fx_rate: None,
            context: None,
            limits: None,
            buyer_email_hash: None,
            approve_at: Some(now - chrono::TimeDelta::seconds(1)),
            approved,
        }
    }

    fn facts(refunded_shirts: u32, applied: Applied, new_context: Option<String>) -> Facts {
        let mut doc = Program::default_doc();
        doc.holding_days = 0;
        Facts {
            program: Arc::new(Program::parse(&doc).unwrap()),
            state: OrderState {
                buyer_id: BuyerId::parse("x").unwrap(),
                items: vec![
                    item("shirt", "fashion", 2, refunded_shirts, "75000"),
                    item("phone", "electronics", 1, 0, "2000000"),
                    item("voucher", "gift-card", 1, 0, "100000"),
                ],
                cancelled: false,
                fx_rate: None,
            },
            ctx: FrozenContext {
                direct: Some(snapshot("C")),
                upline: vec![snapshot("B"), snapshot("A")],
                volume_before: Decimal::ZERO,
                nth_in_month: 1,
                buyer_first_order: true,
                buyer_email_hash: None,
            },
            new_context,
            applied,
            limits: OrderLimits::default(),
        }
    }

    fn balance(w: &Writes, id: &str, status: EntryStatus) -> Decimal {
        w.balances[&AffiliateId::parse(id).unwrap()].get(&status).copied().unwrap_or_default()
    }

    #[test]
    fn a_first_processing_writes_the_entitlement_as_pending_and_freezes_the_context() {
        let now = Utc::now();
        let ev = event(EventType::OrderPlaced, Vec::new(), false, now);
        let mut w = Writes::default();
        let outcome = entitle_event(
            &mut w,
            &ev,
            plan(&ev, facts(0, Applied::default(), Some("{ctx}".into()))).unwrap(),
            &mut HashMap::new(),
            Some(7),
            now,
        );
        let rows: Vec<(&str, u8, Decimal, EntryStatus)> =
            w.ledger.iter().map(|r| (r.affiliate_id.as_str(), r.level, r.amount, r.status)).collect();
        assert_eq!(
            rows,
            // The delta is written in beneficiary order.
            vec![
                ("A", 3, d("21500"), EntryStatus::Pending),
                ("B", 2, d("64500"), EntryStatus::Pending),
                ("C", 1, d("95000"), EntryStatus::Pending)
            ]
        );
        assert_eq!(balance(&w, "C", EntryStatus::Pending), d("95000"));
        assert_eq!(w.points[&BuyerId::parse("x").unwrap()], 26500);
        assert!(w.expiries.is_empty(), "points do not expire by default");
        assert!(w.rewards.iter().all(|r| r.event_id == ev.id && r.kind != RewardKind::Redemption));
        // Its holding period is over: the order is approved in the same transaction.
        assert_eq!(w.approve, vec![ev.order_id.clone()]);
        assert_eq!((w.done.clone(), w.fences[&ev.id]), (vec![ev.id], 7));
        let update = &w.orders[0];
        assert_eq!((update.commission_status, update.context.as_deref()), (CommissionStatus::Processed, Some("{ctx}")));
        match outcome {
            Outcome::Applied { kind, amounts, rows_written, lag } => {
                assert_eq!(kind, EventType::OrderPlaced);
                assert_eq!(amounts, vec![(CommissionKind::Commission, d("181000"))]);
                assert_eq!(rows_written, 3 + w.rewards.len());
                assert!(lag >= Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
    }

    fn budget_facts(refunded_shirts: u32, applied: Applied, limits: OrderLimits, zero: bool) -> Facts {
        let mut f = facts(refunded_shirts, applied, None);
        let mut doc = f.program.to_doc();
        doc.budgets =
            vec![caps::BudgetDoc { period: "month".into(), max_commission: Some("100000".into()), max_points: None }];
        doc.on_exhausted = zero.then_some(caps::OnExhausted::Zero);
        f.program = Arc::new(Program::parse(&doc).unwrap());
        f.limits = limits;
        f
    }

    type Written<'a> = Vec<(&'a str, Decimal, Option<(&'static str, Decimal)>)>;

    fn written(w: &Writes) -> Written<'_> {
        w.ledger.iter().map(|r| (r.affiliate_id.as_str(), r.amount, r.cut.map(|c| (c.by.as_str(), c.amount)))).collect()
    }

    #[test]
    fn a_budget_cuts_the_lines_past_it_direct_first_and_a_refund_never_raises_them() {
        let now = Utc::now();
        let ev = event(EventType::OrderPlaced, Vec::new(), false, now);
        let key = CounterKey {
            scope: caps::Scope::Program,
            period: caps::Period::Month,
            start: caps::Period::Month.start(now, chrono_tz::Asia::Jakarta),
        };
        // Clip: C's 95 000 fits, B gets the 5 000 left, A nothing.
        let mut used = HashMap::new();
        let mut w = Writes::default();
        let p = plan(&ev, budget_facts(0, Applied::default(), OrderLimits::default(), false)).unwrap();
        entitle_event(&mut w, &ev, p, &mut used, None, now);
        assert_eq!(
            written(&w),
            vec![
                ("A", d("0"), Some(("budget_month", d("21500")))),
                ("B", d("5000"), Some(("budget_month", d("59500")))),
                ("C", d("95000"), None)
            ]
        );
        assert_eq!(used[&key].commission, d("100000"));
        let limits: OrderLimits = serde_json::from_str(w.orders[0].limits.as_deref().unwrap()).unwrap();
        assert_eq!(limits.grants.len(), 2, "A and B are held to what they got");
        // Both shirts refunded: only C's line moves, and gives its 15 000 back.
        let mut applied = Applied::default();
        for r in &w.ledger {
            applied.commissions.insert((r.affiliate_id.clone(), r.kind), (r.level, r.amount));
        }
        let refund = event(EventType::OrderRefunded, vec![EventStatus::Done], false, now);
        let mut w = Writes::default();
        entitle_event(
            &mut w,
            &refund,
            plan(&refund, budget_facts(2, applied, limits, false)).unwrap(),
            &mut used,
            None,
            now,
        );
        assert_eq!(written(&w), vec![("C", d("-15000"), None)]);
        assert_eq!(used[&key].commission, d("85000"));
        // Zero: a line that does not fit whole pays nothing; the lines after
        // it that fit are paid.
        let mut used = HashMap::from([(key.clone(), caps::Used { commission: d("10000"), points: 0 })]);
        let mut w = Writes::default();
        let p = plan(&ev, budget_facts(0, Applied::default(), OrderLimits::default(), true)).unwrap();
        entitle_event(&mut w, &ev, p, &mut used, None, now);
        assert_eq!(
            written(&w),
            vec![("A", d("21500"), None), ("B", d("64500"), None), ("C", d("0"), Some(("budget_month", d("95000"))))]
        );
        assert_eq!(used[&key].commission, d("96000"));
    }

    #[test]
    fn a_refund_after_approval_writes_only_the_delta_and_lands_approved() {
        let now = Utc::now();
        // What the first processing wrote.
        let mut placed = Writes::default();
        let ev = event(EventType::OrderPlaced, Vec::new(), false, now);
        entitle_event(
            &mut placed,
            &ev,
            plan(&ev, facts(0, Applied::default(), None)).unwrap(),
            &mut HashMap::new(),
            None,
            now,
        );
        let mut applied = Applied::default();
        for r in &placed.ledger {
            applied.commissions.insert((r.affiliate_id.clone(), r.kind), (r.level, r.amount));
        }
        for r in &placed.rewards {
            applied.rewards.insert((r.buyer_id.clone(), r.kind), r.points);
        }
        // Both shirts refunded, the order approved meanwhile; another event still open.
        let refund = event(EventType::OrderRefunded, vec![EventStatus::Done, EventStatus::Failed], true, now);
        let mut w = Writes::default();
        entitle_event(&mut w, &refund, plan(&refund, facts(2, applied, None)).unwrap(), &mut HashMap::new(), None, now);
        let rows: Vec<(&str, Decimal, EntryStatus)> =
            w.ledger.iter().map(|r| (r.affiliate_id.as_str(), r.amount, r.status)).collect();
        assert_eq!(
            rows,
            vec![
                ("A", d("-1500"), EntryStatus::Approved),
                ("B", d("-4500"), EntryStatus::Approved),
                ("C", d("-15000"), EntryStatus::Approved)
            ]
        );
        assert_eq!(balance(&w, "B", EntryStatus::Approved), d("-4500"));
        assert!(w.approve.is_empty(), "already approved");
        assert!(w.fences.is_empty(), "not fenced");
        assert_eq!(w.orders[0].commission_status, CommissionStatus::Failed, "a sibling failed");
        assert_eq!(w.orders[0].context, None, "the context stays as frozen");
    }
}
