//! An event taken out of production (`GET /admin/events/{id}/bundle`) and
//! reproduced offline (`komisi reproduce bundle.json`): everything the
//! event transaction's rules read — the order, the program version's
//! document, the frozen context, the order's caps — and what the ledger
//! holds, in one self-contained JSON document. Reproducing runs the same
//! pure functions (`entitle`, the caps' grants, `delta`, `explain`); no
//! database, no network.
use super::caps::OrderLimits;
use super::entitlement::{entitle, CommissionKind, Entitlement, FrozenContext, RewardKind};
use super::event::{EventStatus, EventType};
use super::explain::{explain, Explanation};
use super::ids::{AffiliateId, BuyerId, Category, OrderId, Sku};
use super::ledger::{delta, Applied, Delta};
use super::order::{OrderItem, OrderState};
use super::program::{Program, ProgramDoc};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// The bundle format's major version: a bundle of another is refused.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    pub format: u32,
    /// The komisi that wrote it.
    pub komisi_version: String,
    pub event: BundleEvent,
    pub order: BundleOrder,
    pub program_version: u64,
    pub program: ProgramDoc,
    pub context: FrozenContext,
    /// True: the context frozen at the order's first processing. False: the
    /// order was never processed, and the context is the one a processing
    /// would resolve when the bundle was written.
    pub context_frozen: bool,
    #[serde(default)]
    pub limits: OrderLimits,
    /// What the order's ledger holds.
    pub applied: Vec<AppliedLine>,
    pub applied_points: Vec<AppliedPoints>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub status: EventStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// (when, error) of each failed attempt.
    pub attempt_history: Vec<(DateTime<Utc>, String)>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleOrder {
    pub id: OrderId,
    pub buyer_id: BuyerId,
    pub placed_at: DateTime<Utc>,
    pub cancelled: bool,
    pub fx_rate: Option<Decimal>,
    pub items: Vec<BundleItem>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleItem {
    pub sku: Sku,
    pub category: Category,
    pub quantity: u32,
    pub refunded: u32,
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AppliedLine {
    pub affiliate_id: AffiliateId,
    pub kind: CommissionKind,
    pub level: u8,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AppliedPoints {
    pub buyer_id: BuyerId,
    pub kind: RewardKind,
    pub points: i64,
}

impl BundleOrder {
    pub fn state(&self) -> OrderState {
        OrderState {
            buyer_id: self.buyer_id.clone(),
            items: self
                .items
                .iter()
                .map(|i| OrderItem {
                    sku: i.sku.clone(),
                    category: i.category.clone(),
                    quantity: i.quantity,
                    refunded: i.refunded,
                    unit_price: i.unit_price,
                })
                .collect(),
            cancelled: self.cancelled,
            fx_rate: self.fx_rate,
        }
    }
}

/// `applied` in the form the ledger's delta takes.
pub fn applied_of(lines: &[AppliedLine], points: &[AppliedPoints]) -> Applied {
    let mut a = Applied::default();
    for l in lines {
        a.commissions.insert((l.affiliate_id.clone(), l.kind), (l.level, l.amount));
    }
    for p in points {
        a.rewards.insert((p.buyer_id.clone(), p.kind), p.points);
    }
    a
}

/// What reproducing a bundle found.
#[derive(Debug, Clone)]
pub struct Reproduction {
    /// The entitlement now, lowered to the grants of lines a cap cut.
    pub entitled: Entitlement,
    pub delta: Delta,
    pub explanation: Explanation,
}

/// Why a bundle cannot be reproduced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("bundle format {0}, but this komisi reads format {FORMAT}: reproduce it with a komisi of its version")]
    Format(u32),
    #[error("the bundle's program is invalid: {0}")]
    Program(String),
    #[error("an item breaks the order rules: {0}")]
    Item(String),
}

/// Runs the rules on a bundle: its entitlement, and the delta against
/// what its ledger holds (empty: the ledger is exactly the entitlement).
pub fn reproduce(b: &Bundle) -> Result<Reproduction, Invalid> {
    if b.format != FORMAT {
        return Err(Invalid::Format(b.format));
    }
    let program = Program::parse(&b.program).map_err(|e| {
        Invalid::Program(e.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))
    })?;
    if let Some(i) = b.order.items.iter().find(|i| i.refunded > i.quantity || i.unit_price.is_sign_negative()) {
        return Err(Invalid::Item(format!("{} refunds more than it bought or has a negative price", i.sku)));
    }
    let state = b.order.state();
    let mut entitled = entitle(&state, &program, &b.context);
    b.limits.clamp(&mut entitled);
    let delta = delta(&entitled, &applied_of(&b.applied, &b.applied_points));
    let explanation = explain(&state, &program, &b.context, &b.limits);
    Ok(Reproduction { entitled, delta, explanation })
}
