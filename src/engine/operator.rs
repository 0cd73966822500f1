//! Operator actions: the program, and recomputing an order against its
//! entitlement.
use super::{Engine, Result};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::currency::{check_table, RateTable};
use crate::domain::entitlement::{entitle, CommissionLine, Entitlement, FrozenContext, RewardLine};
use crate::domain::event::EventId;
use crate::domain::ids::OrderId;
use crate::domain::ledger::{delta, Applied, Delta};
use crate::domain::payload;
use crate::domain::program::{Program, ProgramDoc};
use crate::domain::FieldError;
use crate::store::{EntitlementInputs, StoreError};
use serde_json::json;
use std::sync::Arc;

/// One line of an entitlement, of the ledger, or of their difference.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Commission(CommissionLine),
    Reward(RewardLine),
}

fn lines(d: &Delta) -> Vec<Line> {
    d.commissions.iter().cloned().map(Line::Commission).chain(d.rewards.iter().cloned().map(Line::Reward)).collect()
}

fn applied_lines(a: &Applied) -> Vec<Line> {
    let commissions = a.commissions.iter().filter(|(_, (_, amount))| !amount.is_zero()).map(
        |((affiliate_id, kind), (level, amount))| {
            Line::Commission(CommissionLine {
                affiliate_id: affiliate_id.clone(),
                level: *level,
                kind: *kind,
                amount: *amount,
            })
        },
    );
    let rewards = a.rewards.iter().filter(|(_, p)| **p != 0).map(|((buyer_id, kind), points)| {
        Line::Reward(RewardLine { buyer_id: buyer_id.clone(), kind: *kind, points: *points })
    });
    commissions.chain(rewards).collect()
}

#[derive(Debug, Clone)]
pub struct Recompute {
    pub order_id: OrderId,
    pub dry_run: bool,
    pub entitled: Vec<Line>,
    pub applied: Vec<Line>,
    pub delta: Vec<Line>,
    /// The event that writes the delta (not a dry run, and a delta to write).
    pub event_id: Option<EventId>,
}

#[derive(Debug)]
pub enum RecomputeOutcome {
    Done(Recompute),
    NotFound,
    /// The order has never been processed: there is no frozen context to compute with.
    NotProcessed,
}

impl Engine {
    /// The version in force now and its program.
    pub async fn program(&self) -> Result<(u64, Arc<Program>)> {
        Ok(self.store().current_program().await?)
    }

    /// One page of the program versions (number, stored at), newest first.
    pub async fn program_versions(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<(u64, chrono::DateTime<chrono::Utc>)>> {
        Ok(self.store().program_versions(before, limit).await?)
    }

    /// One stored version: when it was stored and its program; None when
    /// there is no such version.
    pub async fn program_version(&self, version: u64) -> Result<Option<(chrono::DateTime<chrono::Utc>, Arc<Program>)>> {
        let found = self.store().program_versions(version.checked_add(1), 1).await?;
        match found.first() {
            Some((v, at)) if *v == version => Ok(Some((*at, self.store().program(version).await?))),
            _ => Ok(None),
        }
    }

    /// Validates a rate table and stores it as a new version (its base must
    /// be the program currency, which never changes); its id.
    pub async fn put_rate_table(
        &self,
        base: &str,
        rates: &std::collections::BTreeMap<String, String>,
        as_of: chrono::DateTime<chrono::Utc>,
        actor: &Actor,
    ) -> Result<std::result::Result<(u64, RateTable), Vec<FieldError>>> {
        let table = match check_table(base, rates, as_of) {
            Ok(t) => t,
            Err(errors) => return Ok(Err(errors)),
        };
        let (_, program) = self.store().current_program().await?;
        if table.base != program.currency {
            return Ok(Err(vec![FieldError::new(
                "base",
                format!("must be the program currency, {}", program.currency),
            )]));
        }
        let audit = AuditEntry::new(actor, Action::FxRatesReplace, format!("fx_rates:{}", table.base)).after(json!({
            "as_of": table.as_of,
            "rates": table.rates.len(),
        }));
        let id = self.store().put_rate_table(&table, &audit).await?;
        Ok(Ok((id, table)))
    }

    /// The program currency's rate table in force at `at`, with its id.
    pub async fn rate_table_at(&self, at: chrono::DateTime<chrono::Utc>) -> Result<Option<(u64, RateTable)>> {
        let (_, program) = self.store().current_program().await?;
        Ok(self.store().rate_table_at(&program.currency, at).await?)
    }

    /// Validates a program and stores it as a new immutable version. The
    /// currency cannot change: balances and open orders are kept in one.
    pub async fn put_program(
        &self,
        doc: &ProgramDoc,
        actor: &Actor,
    ) -> Result<std::result::Result<u64, Vec<FieldError>>> {
        let program = match Program::parse(doc) {
            Ok(p) => p,
            Err(errors) => return Ok(Err(errors)),
        };
        let (_, current) = self.store().current_program().await?;
        if program.currency != current.currency {
            return Ok(Err(vec![FieldError::new(
                "currency",
                format!("the program currency is {} and cannot change", current.currency),
            )]));
        }
        // The versions themselves are the change's detail (`GET /admin/program/versions/{v}`).
        let audit = AuditEntry::new(actor, Action::ProgramReplace, "program");
        Ok(Ok(self.store().insert_program(&program, &audit).await?))
    }

    /// One page of the audit trail, newest first.
    pub async fn audit_log(
        &self,
        f: &crate::domain::audit::AuditFilter,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<crate::domain::audit::AuditRecord>> {
        Ok(self.store().audit_log(f, before, limit).await?)
    }

    /// The entitlement of an order's current state and what its ledger
    /// holds; None when the order has not been processed yet.
    pub async fn entitlement_and_applied(&self, order_id: &OrderId) -> Result<Option<(Entitlement, Applied)>> {
        let Some(inputs) = self.store().entitlement_inputs(order_id).await? else { return Ok(None) };
        Ok(Some(self.entitled(order_id, inputs).await?))
    }

    /// The entitlement of an order's stored state under its frozen context,
    /// and what its ledger holds.
    pub(super) async fn entitled(
        &self,
        order_id: &OrderId,
        inputs: EntitlementInputs,
    ) -> Result<(Entitlement, Applied)> {
        let ctx: FrozenContext = serde_json::from_str(&inputs.context)
            .map_err(|e| StoreError::Corrupt(format!("frozen context of order {order_id}: {e}")))?;
        let program = self.store().program(inputs.program_version).await?;
        let mut entitled = entitle(&inputs.state, &program, &ctx);
        // Lines a cap or budget cut pay at most their grant (docs/RULES.md "Caps and budgets").
        if let Some(json) = &inputs.limits {
            let limits: crate::domain::caps::OrderLimits = serde_json::from_str(json)
                .map_err(|e| StoreError::Corrupt(format!("limits of order {order_id}: {e}")))?;
            limits.clamp(&mut entitled);
        }
        Ok((entitled, inputs.applied))
    }

    /// What the order is entitled to, what its ledger holds, and the difference.
    /// Unless `dry_run`, a non-empty difference is written by a new
    /// `order.recomputed` event, processed like any other (exactly once too).
    /// A written difference is audited (a dry run writes nothing).
    pub async fn recompute(&self, order_id: &OrderId, dry_run: bool, actor: &Actor) -> Result<RecomputeOutcome> {
        if !self.store().order_exists(order_id).await? {
            return Ok(RecomputeOutcome::NotFound);
        }
        let Some((entitled, applied)) = self.entitlement_and_applied(order_id).await? else {
            return Ok(RecomputeOutcome::NotProcessed);
        };
        let difference = delta(&entitled, &applied);
        let mut event_id = None;
        if !dry_run && !difference.is_empty() {
            let audit = AuditEntry::new(actor, Action::OrderRecompute, format!("order:{order_id}"))
                .after(json!({ "lines": difference.commissions.len() + difference.rewards.len() }));
            event_id = self.add_recompute_event(order_id, payload::recomputed(order_id, &difference), audit).await?;
        }
        Ok(RecomputeOutcome::Done(Recompute {
            order_id: order_id.clone(),
            dry_run,
            entitled: lines(&delta(&entitled, &Applied::default())),
            applied: applied_lines(&applied),
            delta: lines(&difference),
            event_id,
        }))
    }
}
