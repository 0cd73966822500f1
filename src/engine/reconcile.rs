//! Reconcile: every invariant of the ledger checked against the record,
//! naming the ids involved in each violation — as a background job. An
//! incremental run checks what changed since the runs before it (every
//! minute by default); a full sweep checks everything (daily, and on
//! demand), page by page, saving its place so that a stopped one is resumed.
//! Each run is stored with its report, so the last result is read at once.
//! When a run is due and who may run it is `domain::reconcile`.
use super::{Engine, Result};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::caps::{CounterKey, OrderLimits, Period, Scope, Used};
use crate::domain::entitlement::month_window;
use crate::domain::ids::{BuyerId, OrderId};
use crate::domain::ledger::delta;
use crate::domain::money;
use crate::domain::reconcile::{self as rules, Phase, Run, RunKind, RunStatus, Schedule, Window};
use crate::domain::wallet::audit;
use crate::metrics as m;
use crate::store::{EntitlementInputs, ReconcileFacts};
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    pub kind: String,
    pub affiliate_id: Option<String>,
    pub buyer_id: Option<String>,
    pub order_id: Option<String>,
    pub event_id: Option<String>,
    pub payout_id: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checked {
    pub affiliates: u64,
    pub buyers: u64,
    pub orders: u64,
    pub events: u64,
    pub payouts: u64,
    pub wallets: u64,
    /// Counted months of `affiliate_months` (a full sweep's).
    #[serde(default)]
    pub months: u64,
    /// Cap and budget counters (a full sweep's).
    #[serde(default)]
    pub counters: u64,
    /// Manual adjustments against their entries.
    #[serde(default)]
    pub adjustments: u64,
}

/// A run's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub ok: bool,
    pub checked: Checked,
    /// The first [`KEPT_VIOLATIONS`] violations.
    pub violations: Vec<Violation>,
    /// How many violations the run found.
    pub violations_total: u64,
    pub run: Run,
}

/// What reconcile stands at: the last finished run, and the running one.
#[derive(Debug, Clone)]
pub struct Status {
    pub last: Option<Report>,
    pub running: Option<Run>,
    /// What the running run checks now.
    pub phase: Option<Phase>,
    /// Seconds the running run has left at its pace so far (its orders'
    /// pace: none once they are checked).
    pub eta_secs: Option<f64>,
}

/// A request to run: started, or another run is running.
#[derive(Debug, Clone)]
pub enum Started {
    Started(Box<Run>),
    Busy(u64),
}

/// Violations kept in a stored report (every one is counted).
pub const KEPT_VIOLATIONS: usize = 1000;
/// Orders checked per page (one read of their inputs, one heartbeat).
const PAGE: u32 = 500;
/// Pages read at once: the next is read while one is checked.
const PAGES_AT_ONCE: usize = 2;
/// A running run whose heartbeat is older than this has stopped.
const STALE_AFTER: TimeDelta = TimeDelta::seconds(60);
/// A running run's heartbeat, whatever it is doing: a phase may be one long
/// read (the stored totals took minutes at 10 M orders).
const BEAT: std::time::Duration = std::time::Duration::from_secs(10);
/// Finished runs kept.
const KEEP_RUNS: u64 = 10_000;

/// What a run found so far (stored as its report, so a stopped full sweep
/// resumes with it).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Found {
    checked: Checked,
    violations: Vec<Violation>,
    total: u64,
    /// What the run checks now (a resumed sweep goes on from it).
    #[serde(default)]
    phase: Phase,
    /// A full sweep past its orders: the last buyer whose wallet it checked
    /// ("" before the first), so a resumed sweep checks no order twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wallets_after: Option<String>,
}

impl Found {
    fn push(&mut self, v: Violation) {
        self.total += 1;
        if self.violations.len() < KEPT_VIOLATIONS {
            self.violations.push(v);
        }
    }
}

impl Violation {
    fn new(kind: &str, detail: String) -> Self {
        Self {
            kind: kind.to_owned(),
            affiliate_id: None,
            buyer_id: None,
            order_id: None,
            event_id: None,
            payout_id: None,
            detail,
        }
    }
    fn affiliate(mut self, id: impl ToString) -> Self {
        self.affiliate_id = Some(id.to_string());
        self
    }
    fn buyer(mut self, id: impl ToString) -> Self {
        self.buyer_id = Some(id.to_string());
        self
    }
    fn order(mut self, id: impl ToString) -> Self {
        self.order_id = Some(id.to_string());
        self
    }
    fn event(mut self, id: impl ToString) -> Self {
        self.event_id = Some(id.to_string());
        self
    }
    fn payout(mut self, id: u64) -> Self {
        self.payout_id = Some(id);
        self
    }
}

impl Engine {
    /// A full sweep now, waited for (a tool's or a test's).
    pub async fn reconcile(&self) -> Result<Report> {
        self.reconcile_now(RunKind::Full, None).await
    }

    /// A run of `kind` now, waited for (`POST /admin/reconcile` with
    /// `wait`): a run already running is waited for first.
    pub async fn reconcile_now(&self, kind: RunKind, actor: Option<&Actor>) -> Result<Report> {
        loop {
            match self.start_reconcile(kind, actor).await? {
                Started::Started(run) => return self.run_reconcile(*run).await,
                Started::Busy(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    }

    /// Claims a run of `kind` (none may run alongside another, on any
    /// instance); the caller runs it with [`Engine::run_reconcile`]. A run
    /// an operator starts (`actor`) is audited; the schedule's are not.
    pub async fn start_reconcile(&self, kind: RunKind, actor: Option<&Actor>) -> Result<Started> {
        let now = Utc::now();
        // Read before the claim (which holds the writer: SQLite's in-memory
        // database has no other connection). A run that ends in between
        // only widens this window, and the next run covers the newest
        // window again (`incremental_window`).
        let (ledger, rewards) = self.store().entry_marks().await?;
        let (kind, window) = match kind {
            RunKind::Full => (kind, Window::everything(ledger, rewards)),
            RunKind::Incremental => {
                let done: Vec<Run> =
                    self.store().runs(false, 20).await?.into_iter().filter(|r| r.status == RunStatus::Done).collect();
                let max = self.inner.config.reconcile_incremental_max_entries;
                let (kind, window) = rules::incremental_or_full(&done, ledger, rewards, max);
                if kind == RunKind::Full {
                    tracing::info!(
                        max_entries = max,
                        "an incremental reconcile's window spans more entries than its limit: a full sweep instead"
                    );
                }
                (kind, window)
            }
        };
        let mut tx = self.store().begin_claim().await?;
        let claim = rules::claim(&tx.running().await?, kind, now - STALE_AFTER);
        for id in &claim.stopped {
            tx.fail(*id, "stopped: its instance gave no sign of life", now).await?;
        }
        if let Some(busy) = claim.busy {
            tx.commit().await?;
            return Ok(Started::Busy(busy));
        }
        let mut run = Run {
            id: 0,
            kind,
            status: RunStatus::Running,
            owner: self.inner.journal.instance().to_owned(),
            started_at: now,
            heartbeat_at: now,
            finished_at: None,
            window,
            cursor: None,
            done: 0,
            total: 0,
            violations: 0,
            report: serde_json::to_string(&Found::default()).map_err(super::corrupt)?,
            error: None,
        };
        if let Some(stopped) = claim.resume {
            if let Some(prev) = tx.run(stopped).await? {
                // Where the stopped sweep was, and what it had found.
                (run.cursor, run.report, run.done, run.total) = (prev.cursor, prev.report, prev.done, prev.total);
            }
        }
        run.id = tx.insert(&run).await?;
        if let Some(actor) = actor {
            let audit = AuditEntry::new(actor, Action::ReconcileStart, format!("reconcile_run:{}", run.id))
                .after(serde_json::json!({ "kind": kind, "run_id": run.id }));
            tx.audit(&audit, now).await?;
        }
        tx.commit().await?;
        Ok(Started::Started(Box::new(run)))
    }

    /// Runs a claimed run to its end, saving its progress as it goes;
    /// returns its report. A run that fails is stored failed.
    pub async fn run_reconcile(&self, mut run: Run) -> Result<Report> {
        let began = std::time::Instant::now();
        let kind = run.kind;
        let beat = self.beat(run.id);
        let outcome = match kind {
            RunKind::Full => self.full_sweep(&mut run).await,
            RunKind::Incremental => self.incremental(&mut run).await,
        };
        beat.abort();
        metrics::histogram!(m::RECONCILE_DURATION_SECONDS, "kind" => kind.as_str())
            .record(began.elapsed().as_secs_f64());
        let now = Utc::now();
        run.heartbeat_at = now;
        run.finished_at = Some(now);
        match outcome {
            Ok(found) => {
                run.status = RunStatus::Done;
                run.violations = found.total;
                run.done = run.done.max(run.total);
                run.report = serde_json::to_string(&found).map_err(super::corrupt)?;
                self.store().save_run(&run).await?;
                metrics::counter!(m::RECONCILE_RUNS_TOTAL, "kind" => kind.as_str(), "outcome" => "done").increment(1);
                self.publish_gauges(&run);
                if let Err(e) = self.store().prune_runs(KEEP_RUNS).await {
                    tracing::warn!(error = %e, "pruning old reconcile runs failed");
                }
                if found.total > 0 {
                    tracing::error!(
                        run = run.id,
                        kind = kind.as_str(),
                        violations = found.total,
                        "reconcile found violations"
                    );
                }
                Ok(report(run, found))
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
                if let Err(save) = self.store().save_run(&run).await {
                    tracing::warn!(error = %save, "could not store the failed reconcile run");
                }
                metrics::counter!(m::RECONCILE_RUNS_TOTAL, "kind" => kind.as_str(), "outcome" => "failed").increment(1);
                Err(e)
            }
        }
    }

    /// The last finished run's report and the running run, if any.
    pub async fn reconcile_status(&self) -> Result<Status> {
        let last = self.store().runs(false, 1).await?.into_iter().next();
        let running = self.store().runs(true, 1).await?.into_iter().next();
        let phase = running.as_ref().map(|r| serde_json::from_str::<Found>(&r.report).unwrap_or_default().phase);
        let eta_secs = running
            .as_ref()
            .filter(|_| phase == Some(Phase::Orders))
            .and_then(|r| rules::eta(r.started_at, Utc::now(), r.done, r.total));
        let last = match last {
            Some(run) => {
                let found: Found = serde_json::from_str(&run.report).map_err(super::corrupt)?;
                Some(report(run, found))
            }
            None => None,
        };
        Ok(Status { last, running, phase, eta_secs })
    }

    /// The scheduler's tick: starts the run that is due, in the background,
    /// unless this instance runs one already; and refreshes the gauges from
    /// the last finished run (whichever instance ran it).
    pub async fn reconcile_tick(&self) -> Result<()> {
        let finished = self.store().runs(false, 50).await?;
        let done: Vec<&Run> = finished.iter().filter(|r| r.status == RunStatus::Done).collect();
        if let Some(last) = done.first() {
            self.publish_gauges(last);
        }
        if self.inner.reconciling.load(Ordering::SeqCst) {
            return Ok(());
        }
        let running = !self.store().runs(true, 1).await?.iter().all(|r| r.heartbeat_at < Utc::now() - STALE_AFTER);
        let last_full = done.iter().find(|r| r.kind == RunKind::Full).map(|r| r.started_at);
        let last_any = done.first().map(|r| r.started_at);
        let Some(kind) = rules::due(Utc::now(), running, last_full, last_any, self.schedule()) else { return Ok(()) };
        if let Started::Started(run) = self.start_reconcile(kind, None).await? {
            self.run_in_background(*run);
        }
        Ok(())
    }

    /// Runs a claimed run on a task of its own (this instance runs one at a time).
    pub fn run_in_background(&self, run: Run) {
        let engine = self.clone();
        engine.inner.reconciling.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            let (id, kind) = (run.id, run.kind);
            if let Err(e) = engine.run_reconcile(run).await {
                tracing::warn!(error = %e, run = id, kind = kind.as_str(), "reconcile run failed");
            }
            engine.inner.reconciling.store(false, Ordering::SeqCst);
        });
    }

    fn schedule(&self) -> Schedule {
        let every = |d: std::time::Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
        Schedule {
            every: every(self.inner.config.reconcile_every),
            full_every: every(self.inner.config.reconcile_full_every),
        }
    }

    fn stuck_before(&self) -> DateTime<Utc> {
        let horizon = TimeDelta::from_std(self.inner.config.retry_horizon).unwrap_or(TimeDelta::MAX);
        Utc::now().checked_sub_signed(horizon).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    fn publish_gauges(&self, run: &Run) {
        metrics::gauge!(m::RECONCILE_VIOLATIONS).set(run.violations as f64);
        if let Some(at) = run.finished_at {
            metrics::gauge!(m::RECONCILE_LAST_SUCCESS, "kind" => run.kind.as_str()).set(at.timestamp() as f64);
        }
    }

    /// Saves a run's place and what it found so far (its heartbeat).
    async fn heartbeat(&self, run: &mut Run, found: &Found) -> Result<()> {
        run.heartbeat_at = Utc::now();
        run.report = serde_json::to_string(found).map_err(super::corrupt)?;
        Ok(self.store().save_run(run).await?)
    }

    /// Beats run `id`'s heartbeat every [`BEAT`] until aborted, so that a
    /// run busy with one long read is not taken for stopped (another
    /// instance would mark it failed and start its own).
    fn beat(&self, id: u64) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BEAT).await;
                if let Err(e) = engine.store().beat_run(id, Utc::now()).await {
                    tracing::warn!(error = %e, run = id, "a reconcile heartbeat failed");
                }
            }
        })
    }

    /// A sign of life that keeps the stored report (a phase that runs again
    /// whole when resumed stores none of its own findings until it ends).
    async fn touch(&self, run: &mut Run) -> Result<()> {
        run.heartbeat_at = Utc::now();
        Ok(self.store().save_run(run).await?)
    }

    /// Every processed order, page by page from the run's place; every
    /// wallet, likewise; then the month and cap counters and the stored
    /// totals over everything. The stored report is where a resumed sweep
    /// goes on from: after each page of orders or wallets, and as it was
    /// when each later phase began (which runs again whole).
    async fn full_sweep(&self, run: &mut Run) -> Result<Found> {
        let mut found: Found = serde_json::from_str(&run.report).unwrap_or_default();
        if run.total == 0 {
            run.total = self.store().order_count().await?;
        }
        if found.phase == Phase::Orders && found.wallets_after.is_some() {
            found.phase = Phase::Wallets; // a report stored before phases were
        }
        let mut after = run.cursor.clone().unwrap_or_default();
        while found.phase == Phase::Orders {
            let ids = self.store().processed_orders(&after, PAGE).await?;
            self.check_orders(&ids, &mut found).await?;
            run.done += ids.len() as u64;
            match ids.last() {
                Some(last) if ids.len() as u32 == PAGE => after = last.to_string(),
                _ => (found.phase, found.wallets_after) = (Phase::Wallets, Some(String::new())),
            }
            run.cursor = Some(after.clone());
            self.heartbeat(run, &found).await?;
        }
        while found.phase == Phase::Wallets {
            let ids = self.store().wallet_buyers(found.wallets_after.as_deref().unwrap_or_default(), PAGE).await?;
            self.check_wallets(&ids, &mut found).await?;
            found.wallets_after = ids.last().map(|b| b.to_string());
            if ids.len() < PAGE as usize {
                (found.phase, found.wallets_after) = (Phase::Months, None);
            }
            self.heartbeat(run, &found).await?;
        }
        if found.phase == Phase::Months {
            self.check_months(run, &mut found).await?;
            found.phase = Phase::Counters;
            self.heartbeat(run, &found).await?;
        }
        if found.phase == Phase::Counters {
            self.check_counters(run, &mut found).await?;
            found.phase = Phase::Totals;
            self.heartbeat(run, &found).await?;
        }
        self.faults().reconcile_totals().await;
        for (kind, tallied, stored) in self.store().tally_mismatches().await? {
            let detail = format!("the tallies count {tallied} {kind} events, but {stored} are stored");
            found.push(Violation::new("event_tally_mismatch", detail));
        }
        // Every entry up to the newest finished run's mark has committed; so
        // has every entry up to this run's own, once it has run longer than
        // any transaction stays open (a first sweep over a large history).
        let before = self.store().runs(false, 1).await?.first().map_or(0, |r| r.window.ledger.1);
        let mark = rules::check_mark(before, run.window.ledger.1, run.started_at, Utc::now(), STALE_AFTER);
        let mut facts = self.store().reconcile_facts(self.stuck_before(), mark).await?;
        self.store().save_balance_checks(&std::mem::take(&mut facts.checks)).await?;
        stored_violations(facts, &mut found);
        Ok(found)
    }

    /// What changed in the run's window: the orders of its entries, the
    /// wallets of its buyers, the stored invariants over what it touched.
    async fn incremental(&self, run: &mut Run) -> Result<Found> {
        let mut found = Found { phase: Phase::Totals, ..Found::default() };
        self.heartbeat(run, &found).await?;
        let started = std::time::Instant::now();
        let mut changes = self.store().changes(&run.window, self.stuck_before()).await?;
        let totals = started.elapsed();
        found.phase = Phase::Orders;
        self.store().save_balance_checks(&std::mem::take(&mut changes.facts.checks)).await?;
        run.total = changes.orders.len() as u64;
        // The next page is read while this one is checked (the database's
        // reads and the recomputation overlap, on a core each).
        let store = self.store();
        let chunks = changes.orders.chunks(PAGE as usize);
        let mut sizes = chunks.clone().map(<[OrderId]>::len);
        let reads: Vec<_> = chunks.map(|page| store.entitlement_inputs_of(page)).collect();
        let mut pages = futures::stream::iter(reads).buffered(PAGES_AT_ONCE);
        while let Some(inputs) = pages.next().await {
            self.check_inputs(inputs?, &mut found).await?;
            run.done += sizes.next().unwrap_or_default() as u64;
            self.heartbeat(run, &found).await?;
        }
        let orders = started.elapsed() - totals;
        found.phase = Phase::Wallets;
        self.heartbeat(run, &found).await?;
        self.check_wallets(&changes.buyers, &mut found).await?;
        stored_violations(changes.facts, &mut found);
        tracing::info!(
            run = run.id,
            orders = changes.orders.len(),
            buyers = changes.buyers.len(),
            totals_secs = totals.as_secs_f64(),
            orders_secs = orders.as_secs_f64(),
            wallets_secs = (started.elapsed() - totals - orders).as_secs_f64(),
            "incremental reconcile: phases"
        );
        Ok(found)
    }

    /// For every processed order of `ids`, the ledger equals the entitlement.
    async fn check_orders(&self, ids: &[OrderId], found: &mut Found) -> Result<()> {
        let inputs = self.store().entitlement_inputs_of(ids).await?;
        self.check_inputs(inputs, found).await
    }

    async fn check_inputs(&self, inputs: Vec<(OrderId, EntitlementInputs)>, found: &mut Found) -> Result<()> {
        for (order_id, inputs) in inputs {
            found.checked.orders += 1;
            let (entitled, applied) = self.entitled(&order_id, inputs).await?;
            let off = delta(&entitled, &applied);
            for line in &off.commissions {
                let detail =
                    format!("{} is {} away from the entitlement", line.kind.as_str(), money::format(line.amount));
                found.push(
                    Violation::new("ledger_differs_from_entitlement", detail)
                        .order(&order_id)
                        .affiliate(&line.affiliate_id),
                );
            }
            for line in &off.rewards {
                let detail = format!("{} is {} points away from the entitlement", line.kind.as_str(), line.points);
                found.push(
                    Violation::new("rewards_differ_from_entitlement", detail).order(&order_id).buyer(&line.buyer_id),
                );
            }
        }
        Ok(())
    }

    /// Each counted month of `affiliate_months` equals the sums of its
    /// orders, and together they count every attributed order of those
    /// months (so none is missing).
    async fn check_months(&self, run: &mut Run, found: &mut Found) -> Result<()> {
        let tz = self.store().current_program().await?.1.timezone;
        let since = self.store().counted_since().await?;
        // The first month that starts at or after `since` (the current time
        // zone's: `since` is past every change of it).
        let (start, end) = month_window(since, tz);
        let from = if start >= since { start } else { end };
        let mut after = None;
        loop {
            let keys = self.store().month_keys(from, after.as_ref(), PAGE).await?;
            let months: Vec<_> = keys.iter().map(|(a, m)| (a.clone(), *m, month_window(*m, tz).1)).collect();
            for c in self.store().month_checks(&months).await? {
                found.checked.months += 1;
                if c.stored != Some(c.orders) {
                    let stored = c.stored.map_or("no row".into(), |(v, n)| format!("{}/{n}", money::format(v)));
                    let detail = format!(
                        "month from {}: stored volume/orders {stored} but its orders sum to {}/{}",
                        c.month_start.to_rfc3339(),
                        money::format(c.orders.0),
                        c.orders.1
                    );
                    found.push(Violation::new("month_volume_mismatch", detail).affiliate(&c.affiliate_id));
                }
            }
            match keys.last() {
                Some(last) if keys.len() == PAGE as usize => after = Some(last.clone()),
                _ => break,
            }
            self.touch(run).await?;
        }
        for (affiliate, counted, placed) in self.store().month_counts_from(from).await? {
            let detail = format!(
                "its months from {} count {counted} orders, but {placed} of its orders were placed in them",
                from.to_rfc3339()
            );
            found.push(Violation::new("month_volume_mismatch", detail).affiliate(affiliate));
        }
        Ok(())
    }

    /// Each cap and budget counter equals the lines it covers: for an
    /// affiliate's window, its level-1 lines of the window's orders that
    /// count against a cap of that period (the order's limits say); for a
    /// budget's, every line (and the points earned) of the window's orders
    /// under a program version with a budget of that period.
    async fn check_counters(&self, run: &mut Run, found: &mut Found) -> Result<()> {
        let tz = self.store().current_program().await?.1.timezone;
        let mut after: Option<CounterKey> = None;
        loop {
            let keys = self.store().counter_keys(after.as_ref(), PAGE).await?;
            for key in &keys {
                found.checked.counters += 1;
                let end = (key.period != Period::Total).then(|| key.period.end(key.start, tz));
                let check = self.store().counter_check(key, end).await?;
                let mut expected = Used::default();
                for o in &check.orders {
                    let (commission, points) = match &key.scope {
                        Scope::Affiliate(a) => {
                            let limits: OrderLimits = match &o.limits {
                                Some(json) => serde_json::from_str(json).map_err(super::corrupt)?,
                                None => OrderLimits::default(),
                            };
                            let counts =
                                limits.caps.get(a).is_some_and(|caps| caps.iter().any(|c| c.period == key.period));
                            (counts, false)
                        }
                        Scope::Program => {
                            let program = self.store().program(o.program_version).await?;
                            let budget = program.budgets.iter().find(|b| b.period == key.period);
                            (
                                budget.is_some_and(|b| b.max_commission.is_some()),
                                budget.is_some_and(|b| b.max_points.is_some()),
                            )
                        }
                    };
                    if commission {
                        expected.commission += o.commission;
                    }
                    if points {
                        expected.points += o.points;
                    }
                }
                if expected != check.stored {
                    let detail = format!(
                        "{} {} window from {}: counted {}/{} points but its lines sum to {}/{} points",
                        key.scope.kind(),
                        key.period.as_str(),
                        key.start.to_rfc3339(),
                        money::format(check.stored.commission),
                        check.stored.points,
                        money::format(expected.commission),
                        expected.points
                    );
                    let v = Violation::new("cap_counter_mismatch", detail);
                    found.push(match &key.scope {
                        Scope::Affiliate(a) => v.affiliate(a),
                        Scope::Program => v,
                    });
                }
            }
            match keys.last() {
                Some(last) if keys.len() == PAGE as usize => after = Some(last.clone()),
                _ => break,
            }
            self.touch(run).await?;
        }
        Ok(())
    }

    /// Each buyer's wallet (see `domain::wallet::audit`), a page at a time,
    /// the next page read while one is checked.
    async fn check_wallets(&self, buyers: &[BuyerId], found: &mut Found) -> Result<()> {
        let stuck_before = self.stuck_before();
        let store = self.store();
        let reads: Vec<_> = buyers.chunks(PAGE as usize).map(|page| store.buyer_wallets(page)).collect();
        let mut pages = futures::stream::iter(reads).buffered(PAGES_AT_ONCE);
        while let Some(wallets) = pages.next().await {
            for (rewards, redemptions) in wallets? {
                found.checked.wallets += 1;
                for (kind, detail) in audit(&rewards, &redemptions, stuck_before) {
                    found.push(Violation::new(kind, detail).buyer(&rewards.buyer_id));
                }
            }
        }
        Ok(())
    }
}

fn report(run: Run, found: Found) -> Report {
    Report {
        ok: found.total == 0,
        checked: found.checked,
        violations: found.violations,
        violations_total: found.total,
        run,
    }
}

/// The violations among the stored invariants the store read.
fn stored_violations(facts: ReconcileFacts, found: &mut Found) {
    let c = &mut found.checked;
    (c.affiliates, c.buyers, c.events, c.payouts) = (facts.affiliates, facts.buyers, facts.events, facts.payouts);
    c.adjustments = facts.adjustments;
    for (affiliate, stored, sums) in facts.balance_mismatches {
        let f = |d: [rust_decimal::Decimal; 3]| d.map(money::format).join("/");
        let detail = format!("stored pending/approved/paid {} but ledger sums {}", f(stored), f(sums));
        found.push(Violation::new("balance_mismatch", detail).affiliate(affiliate));
    }
    for (buyer, stored, sum) in facts.points_mismatches {
        let detail = format!("stored {stored} points but reward entries sum to {sum}");
        found.push(Violation::new("points_mismatch", detail).buyer(buyer));
    }
    for (event, affiliate, kind) in facts.duplicate_entries {
        found.push(Violation::new("duplicate_entry", format!("two {kind} entries")).event(event).affiliate(affiliate));
    }
    for (event, order, status, attempts) in facts.stuck_events {
        let detail = format!("{status} after {attempts} attempts, older than the retry horizon");
        found.push(Violation::new("event_stuck", detail).event(event).order(order));
    }
    for (payout, affiliate, amount, entries) in facts.payout_item_mismatches {
        let detail = format!("item {} but its entries sum to {}", money::format(amount), money::format(entries));
        found.push(Violation::new("payout_item_mismatch", detail).payout(payout).affiliate(affiliate));
    }
    for (adjustment, subject, detail) in facts.adjustment_mismatches {
        found.push(Violation::new("adjustment_mismatch", format!("adjustment {adjustment} of {subject}: {detail}")));
    }
    for (entry, affiliate, payout, status, batch) in facts.payout_entry_statuses {
        let detail = format!("entry {entry} is {status} in a batch that is {batch}");
        found.push(Violation::new("payout_entry_status", detail).payout(payout).affiliate(affiliate));
    }
}
