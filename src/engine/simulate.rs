//! Backtests (docs/API.md "Simulations"): a candidate program run over the
//! orders placed in a window, against what the ledger holds or another
//! program version — in the background, one at a time per instance, a page
//! of orders at a time by primary key (memory grows with the affiliates, not
//! the orders; each order is independent of the others, so their order does
//! not matter), writing nothing but the simulation's own row.
//!
//! Each order is recomputed under the context frozen at its first
//! processing: the upline and statuses as they were then, the month volume
//! and position before it (sales, which a program change does not move).
//! What a frozen context cannot tell is stated in the result: orders never
//! processed are skipped; a candidate with more levels than the chain
//! frozen for the applied program's pays only the ancestors frozen; caps
//! and budgets are not replayed in order — a candidate with caps or budgets
//! keeps each order's cuts as applied, one without pays them in full.
use super::{corrupt, Engine, Result};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::caps::OrderLimits;
use crate::domain::entitlement::{entitle, Entitlement, FrozenContext, RewardKind};
use crate::domain::ids::OrderId;
use crate::domain::program::{Program, ProgramDoc};
use crate::domain::simulation::{Side, Tally};
use crate::domain::FieldError;
use crate::store::SimulationRow;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::atomic::Ordering;

/// The longest window a simulation covers.
pub const MAX_WINDOW: TimeDelta = TimeDelta::days(366);
/// Simulations queued or running at most (more: 429).
pub const MAX_OPEN: u64 = 5;
/// Orders read at once.
const PAGE: u32 = 2_000;
/// A running simulation whose heartbeat is older has stopped (its instance died).
const STALE_AFTER: TimeDelta = TimeDelta::seconds(60);

/// What the candidate is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareTo {
    /// What the ledger holds.
    Applied,
    /// Another stored program version, recomputed the same way.
    Version(u64),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimulationRequest {
    pub program: ProgramDoc,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub compare_to: CompareTo,
}

pub enum Submitted {
    Queued(u64),
    Invalid(Vec<FieldError>),
    /// Too many queued or running.
    Busy(u64),
}

/// A simulation's result: the tally and what the window held that it could not use.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimulationResult {
    #[serde(flatten)]
    pub outcome: crate::domain::simulation::Outcome,
    /// Orders in the window never processed (no frozen context): left out.
    pub skipped: u64,
}

impl Engine {
    /// Validates and queues a simulation; starts it at once when this
    /// instance runs none.
    pub async fn submit_simulation(&self, req: SimulationRequest, actor: &Actor) -> Result<Submitted> {
        let mut errors: Vec<FieldError> = match Program::parse(&req.program) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|f| FieldError::new(format!("program.{}", f.field), f.message)).collect(),
        };
        if req.until <= req.since {
            errors.push(FieldError::new("until", "must be after since"));
        } else if req.until - req.since > MAX_WINDOW {
            errors.push(FieldError::new("until", "the window may span at most 366 days"));
        }
        if let CompareTo::Version(v) = req.compare_to {
            let (current, _) = self.store().current_program().await?;
            if v == 0 || v > current {
                errors.push(FieldError::new(
                    "compare_to",
                    format!("no program version {v} (the current one is {current})"),
                ));
            }
        }
        if !errors.is_empty() {
            return Ok(Submitted::Invalid(errors));
        }
        let open = self.store().open_simulations().await?;
        if open >= MAX_OPEN {
            return Ok(Submitted::Busy(open));
        }
        let audit = AuditEntry::new(actor, Action::SimulationSubmit, "simulations")
            .after(serde_json::json!({ "since": req.since, "until": req.until }));
        let request = serde_json::to_string(&req).map_err(corrupt)?;
        let id = self.store().insert_simulation(&request, Utc::now(), &audit).await?;
        self.simulation_tick().await?;
        Ok(Submitted::Queued(id))
    }

    pub async fn simulation(&self, id: u64) -> Result<Option<SimulationRow>> {
        Ok(self.store().simulation(id).await?)
    }

    /// Cancels a queued or running simulation; its status now (None: unknown).
    pub async fn cancel_simulation(&self, id: u64, actor: &Actor) -> Result<Option<String>> {
        let audit = AuditEntry::new(actor, Action::SimulationCancel, format!("simulation:{id}"))
            .after(serde_json::json!({ "status": "cancelled" }));
        Ok(self.store().cancel_simulation(id, Utc::now(), &audit).await?)
    }

    /// Claims and runs the queued simulations (and any whose instance
    /// stopped), one after the other on a task of its own, unless this
    /// instance runs them already.
    pub async fn simulation_tick(&self) -> Result<()> {
        if self.inner.simulating.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                let now = Utc::now();
                let row = match engine
                    .store()
                    .claim_simulation(engine.inner.journal.instance(), now, now - STALE_AFTER)
                    .await
                {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not claim a simulation; the scheduler retries");
                        break;
                    }
                };
                let id = row.id;
                let finished = match engine.run_simulation(row).await {
                    Ok(Some(result)) => engine.store().finish_simulation(id, Ok(&result), Utc::now()).await,
                    Ok(None) => Ok(()), // cancelled
                    Err(e) => {
                        tracing::warn!(error = %e, simulation = id, "simulation failed");
                        engine.store().finish_simulation(id, Err(&e.to_string()), Utc::now()).await
                    }
                };
                if let Err(e) = finished {
                    tracing::warn!(error = %e, simulation = id, "could not record the simulation's end; it runs again");
                    break;
                }
            }
            engine.inner.simulating.store(false, Ordering::SeqCst);
        });
        Ok(())
    }

    /// Runs a claimed simulation to its result (JSON); None when it was cancelled.
    async fn run_simulation(&self, row: SimulationRow) -> Result<Option<String>> {
        let req: SimulationRequest = serde_json::from_str(&row.request).map_err(corrupt)?;
        let candidate = Program::parse(&req.program).map_err(|e| corrupt(format!("{e:?}")))?;
        let baseline = match req.compare_to {
            CompareTo::Applied => None,
            CompareTo::Version(v) => Some(self.store().program(v).await?),
        };
        let total = self.store().orders_placed_between(req.since, req.until).await?;
        let (mut done, mut skipped) = (0u64, 0u64);
        let mut tally = Tally::default();
        let mut after: Option<OrderId> = None;
        if !self.store().simulation_progress(row.id, 0, total, Utc::now()).await? {
            return Ok(None);
        }
        let page_size = self.inner.faults.simulation_page_size_or(PAGE);
        loop {
            self.inner.faults.simulation_page().await;
            let page = self.store().orders_placed_page(req.since, req.until, after.as_ref(), page_size).await?;
            let ids: Vec<OrderId> = page.iter().map(|(id, _)| id.clone()).collect();
            let placed: std::collections::HashMap<OrderId, DateTime<Utc>> = page.iter().cloned().collect();
            let inputs = self.store().entitlement_inputs_of(&ids).await?;
            skipped += (ids.len() - inputs.len()) as u64;
            for (order_id, input) in inputs {
                let ctx: FrozenContext = serde_json::from_str(&input.context).map_err(corrupt)?;
                let limits: OrderLimits = match &input.limits {
                    Some(json) => serde_json::from_str(json).map_err(corrupt)?,
                    None => OrderLimits::default(),
                };
                let under = |p: &Program| -> Side {
                    let mut e = entitle(&input.state, p, &ctx);
                    if p.has_limits() {
                        limits.clamp(&mut e);
                    }
                    side_of(&e)
                };
                if candidate.has_limits() {
                    charge_windows(
                        &mut tally,
                        &candidate,
                        &ctx,
                        &entitle(&input.state, &candidate, &ctx),
                        placed[&order_id],
                    );
                }
                let base = match &baseline {
                    None => Side {
                        commissions: input
                            .applied
                            .commissions
                            .iter()
                            .map(|((a, k), (level, amount))| (a.clone(), *level, *k, *amount))
                            .collect(),
                        points: input
                            .applied
                            .rewards
                            .iter()
                            .filter(|((_, k), _)| matches!(k, RewardKind::Points | RewardKind::FirstOrderBonus))
                            .map(|(_, p)| p)
                            .sum(),
                    },
                    Some(p) => under(p),
                };
                tally.add(&order_id, &base, &under(&candidate));
            }
            done += page.len() as u64;
            if !self.store().simulation_progress(row.id, done, total.max(done), Utc::now()).await? {
                return Ok(None);
            }
            match page.last() {
                Some((last, _)) if page.len() == page_size as usize => after = Some(last.clone()),
                _ => break,
            }
        }
        let result = SimulationResult { outcome: tally.finish(), skipped };
        Ok(Some(serde_json::to_string(&result).map_err(corrupt)?))
    }
}

/// The candidate's caps and budgets: each line of the order, before any
/// cut, added to the windows it would count in (the direct affiliate's own
/// caps frozen with the order, else the candidate's).
fn charge_windows(tally: &mut Tally, candidate: &Program, ctx: &FrozenContext, e: &Entitlement, at: DateTime<Utc>) {
    let tz = candidate.timezone;
    let mut limits = OrderLimits::default();
    if let Some(direct) = &ctx.direct {
        limits.count_direct(&direct.id, direct.caps.as_deref().unwrap_or(&candidate.affiliate_caps));
    }
    for l in &e.commissions {
        for (key, max) in limits.commission_counters(&l.affiliate_id, l.level, &candidate.budgets, at, tz) {
            tally.charge_window(&key, Some((l.amount, max)), None);
        }
    }
    for r in &e.rewards {
        for (key, max) in crate::domain::caps::points_counters(r.kind, &candidate.budgets, at, tz) {
            tally.charge_window(&key, None, Some((r.points, max)));
        }
    }
}

fn side_of(e: &Entitlement) -> Side {
    Side {
        commissions: e.commissions.iter().map(|l| (l.affiliate_id.clone(), l.level, l.kind, l.amount)).collect(),
        points: e.rewards.iter().map(|r| r.points).sum(),
    }
}
