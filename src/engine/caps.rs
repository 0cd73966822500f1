//! Caps and budgets as operators see them: each window's use against its
//! maximum, and an affiliate's own caps (docs/RULES.md "Caps and budgets").
use super::Result;
use crate::domain::audit::{Action, AuditEntry};
use crate::domain::caps::{parse_caps, Cap, CapDoc, CounterKey, Period, Scope};
use crate::domain::ids::AffiliateId;
use crate::domain::program::Program;
use crate::domain::FieldError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::sync::Arc;

/// One cap's or budget's current window and its use.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowUse {
    pub period: Period,
    pub window_start: DateTime<Utc>,
    /// None: the program's whole life.
    pub window_end: Option<DateTime<Utc>>,
    pub max_commission: Option<Decimal>,
    pub used_commission: Decimal,
    pub max_points: Option<i64>,
    pub used_points: i64,
}

/// The program in force and its budgets' use now.
#[derive(Debug, Clone)]
pub struct Budgets {
    pub version: u64,
    pub program: Arc<Program>,
    pub budgets: Vec<WindowUse>,
}

/// An affiliate's caps in force for its next orders, and their use now.
#[derive(Debug, Clone)]
pub struct AffiliateCaps {
    pub affiliate_id: AffiliateId,
    /// Its own caps (true) or the program's.
    pub own: bool,
    pub caps: Vec<WindowUse>,
}

pub enum SetCaps {
    Set(AffiliateCaps),
    NotFound,
    Invalid(Vec<FieldError>),
}

fn window(period: Period, now: DateTime<Utc>, tz: chrono_tz::Tz) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let start = period.start(now, tz);
    (start, (period != Period::Total).then(|| period.end(start, tz)))
}

impl super::Engine {
    /// The budgets of the program in force, each with its window now.
    pub async fn budgets(&self) -> Result<Budgets> {
        let (version, program) = self.program().await?;
        let now = Utc::now();
        let keys: Vec<CounterKey> = program
            .budgets
            .iter()
            .map(|b| CounterKey {
                scope: Scope::Program,
                period: b.period,
                start: b.period.start(now, program.timezone),
            })
            .collect();
        let used = self.store().cap_counters(&keys).await?;
        let budgets = program
            .budgets
            .iter()
            .zip(&keys)
            .map(|(b, k)| {
                let u = used.get(k).copied().unwrap_or_default();
                let (window_start, window_end) = window(b.period, now, program.timezone);
                WindowUse {
                    period: b.period,
                    window_start,
                    window_end,
                    max_commission: b.max_commission,
                    used_commission: u.commission,
                    max_points: b.max_points,
                    used_points: u.points,
                }
            })
            .collect();
        Ok(Budgets { version, program, budgets })
    }

    /// An affiliate's caps (its own or the program's) and their use now;
    /// None: no such affiliate.
    pub async fn affiliate_caps(&self, id: &AffiliateId) -> Result<Option<AffiliateCaps>> {
        let Some(affiliate) = self.store().affiliate(id).await? else { return Ok(None) };
        Ok(Some(self.caps_in_use(id, affiliate.caps).await?))
    }

    async fn caps_in_use(&self, id: &AffiliateId, own: Option<Vec<Cap>>) -> Result<AffiliateCaps> {
        let (_, program) = self.program().await?;
        let now = Utc::now();
        let is_own = own.is_some();
        let caps = own.unwrap_or_else(|| program.affiliate_caps.clone());
        // Both windows are shown, capped or not: what the affiliate earned.
        let keys: Vec<CounterKey> = caps
            .iter()
            .map(|c| CounterKey {
                scope: Scope::Affiliate(id.clone()),
                period: c.period,
                start: c.period.start(now, program.timezone),
            })
            .collect();
        let used = self.store().cap_counters(&keys).await?;
        let caps = caps
            .iter()
            .zip(&keys)
            .map(|(c, k)| {
                let u = used.get(k).copied().unwrap_or_default();
                let (window_start, window_end) = window(c.period, now, program.timezone);
                WindowUse {
                    period: c.period,
                    window_start,
                    window_end,
                    max_commission: Some(c.max_commission),
                    used_commission: u.commission,
                    max_points: None,
                    used_points: 0,
                }
            })
            .collect();
        Ok(AffiliateCaps { affiliate_id: id.clone(), own: is_own, caps })
    }

    /// Sets an affiliate's own caps (None: back to the program's). Orders
    /// already processed keep the caps they were counted against.
    pub async fn set_affiliate_caps(
        &self,
        id: &AffiliateId,
        docs: Option<&[CapDoc]>,
        actor: &crate::domain::audit::Actor,
    ) -> Result<SetCaps> {
        let (_, program) = self.program().await?;
        let mut errors = Vec::new();
        let caps = docs.map(|d| parse_caps(d, "caps", program.scale, &mut errors));
        if !errors.is_empty() {
            return Ok(SetCaps::Invalid(errors));
        }
        let mut tx = self.store().begin_affiliates().await?;
        let Some(current) = tx.affiliate(id, true).await? else { return Ok(SetCaps::NotFound) };
        let now = Utc::now();
        tx.set_caps(id, caps.as_deref(), now).await?;
        let as_json = |c: Option<&[Cap]>| serde_json::to_value(c).map_err(super::corrupt);
        let audit = AuditEntry::new(actor, Action::AffiliateCaps, format!("affiliate:{id}"))
            .before(serde_json::json!({ "caps": as_json(current.caps.as_deref())? }))
            .after(serde_json::json!({ "caps": as_json(caps.as_deref())? }));
        tx.audit(&audit, now).await?;
        tx.commit().await?;
        Ok(SetCaps::Set(self.caps_in_use(id, caps).await?))
    }
}
