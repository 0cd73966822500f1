//! The response types of the API: what each route answers, built from the
//! engine's and the domain's values. Money is a JSON string holding a decimal.
use crate::domain::affiliate::{Affiliate, AffiliateStatus, Balances};
use crate::domain::currency::{Fx, FxSource};
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::event::{self, EventId, EventStatus, EventType};
use crate::domain::ids::{AffiliateId, BuyerId, Category, OrderId, ReferralCode, Sku};
use crate::domain::ledger::{self, EntryStatus};
use crate::domain::order::{CommissionStatus, OrderStatus};
use crate::domain::payout;
use crate::domain::reconcile::{RunKind, RunStatus};
use crate::engine::operator::{self as ops, Line};
use crate::engine::reconcile;
use crate::engine::OrderDetails;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    pub id: u64,
    pub affiliate_id: AffiliateId,
    /// The order of the line (null: a manual adjustment, kind `adjustment`, level 0).
    pub order_id: Option<OrderId>,
    #[schema(value_type = crate::domain::event::EventId)]
    pub event_id: String,
    pub level: u8,
    pub kind: CommissionKind,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub amount: Decimal,
    pub status: EntryStatus,
    pub rule_version: u64,
    pub created_at: DateTime<Utc>,
    /// The cap or budget that cut the line: `affiliate_day`, `affiliate_month`,
    /// `budget_month` or `budget_total` (absent: not cut).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_by: Option<String>,
    /// What it cut (the line pays `amount`).
    #[serde(skip_serializing_if = "Option::is_none", with = "crate::domain::money::opt_decimal_str")]
    #[schema(value_type = Option<String>, example = "5000", format = "decimal")]
    pub cut: Option<Decimal>,
}

impl From<ledger::LedgerEntry> for LedgerEntry {
    fn from(e: ledger::LedgerEntry) -> Self {
        Self {
            id: e.id,
            affiliate_id: e.affiliate_id,
            order_id: (!e.order_id.as_str().is_empty()).then_some(e.order_id),
            event_id: e.event_id,
            level: e.level,
            kind: e.kind,
            amount: e.amount,
            status: e.status,
            rule_version: e.rule_version,
            created_at: e.created_at,
            capped_by: e.cut.map(|c| c.by.as_str().to_owned()),
            cut: e.cut.map(|c| c.amount),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RewardEntry {
    pub id: u64,
    pub buyer_id: BuyerId,
    /// The order that earned or reversed the points (null: a redemption or an expiry).
    pub order_id: Option<OrderId>,
    #[schema(value_type = crate::domain::event::EventId)]
    pub event_id: String,
    pub kind: RewardKind,
    pub points: i64,
    pub created_at: DateTime<Utc>,
    /// The redemption of a `redemption` or `redemption_released` entry.
    pub redemption_id: Option<String>,
    /// When earned points expire (null: never, or not an earning).
    pub expires_at: Option<DateTime<Utc>>,
    /// The budget that cut the points (`budget_month`, `budget_total`; absent: not cut).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_by: Option<String>,
    /// The points it cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<i64>,
}

impl From<ledger::RewardEntry> for RewardEntry {
    fn from(e: ledger::RewardEntry) -> Self {
        Self {
            id: e.id,
            buyer_id: e.buyer_id,
            order_id: e.order_id,
            event_id: e.event_id,
            kind: e.kind,
            points: e.points,
            created_at: e.created_at,
            redemption_id: e.redemption_id,
            expires_at: e.expires_at,
            capped_by: e.cut.map(|c| c.by.as_str().to_owned()),
            cut: e.cut.map(|c| c.amount),
        }
    }
}

/// A buyer's points and reward history: `points − debt` is the sum of the
/// history's points.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BuyerRewards {
    pub buyer_id: BuyerId,
    /// Spendable whole points (never negative), up to 28 digits (a JSON
    /// integer: past 2^53 a client should parse it as a big integer)
    pub points: i128,
    /// Points held by open redemptions (already out of `points`).
    pub held: i128,
    /// Points reversed after they were spent, netted against later earnings.
    pub debt: i128,
    pub history: Vec<RewardEntry>,
}

impl From<crate::engine::rewards::BuyerWallet> for BuyerRewards {
    fn from(w: crate::engine::rewards::BuyerWallet) -> Self {
        Self {
            buyer_id: w.rewards.buyer_id,
            points: crate::domain::wallet::spendable_of(w.rewards.points),
            held: w.held,
            debt: crate::domain::wallet::debt_of(w.rewards.points),
            history: w.rewards.history.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub status: EventStatus,
}

/// One line of an order: what was bought and how much of it is refunded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderItemView {
    pub sku: Sku,
    pub category: Category,
    pub quantity: u32,
    /// Quantity refunded so far.
    pub refunded: u32,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "75000", format = "decimal")]
    pub unit_price: Decimal,
}

/// An order's conversion into the program currency.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FxView {
    /// The order's currency (its unit prices and `total` are in it).
    pub currency: String,
    /// The currency commissions and points are computed in.
    pub program_currency: String,
    /// 1 unit of the order's currency = this many units of the program's.
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "15650.25", format = "decimal")]
    pub rate: Decimal,
    pub source: FxSource,
    /// The rate table's as_of (source `table`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    /// The order's total as bought, each line converted, in the program currency.
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "938546", format = "decimal")]
    pub total: Decimal,
}

impl FxView {
    pub fn new(fx: Fx, currency: String, program_currency: String, total: Decimal) -> Self {
        Self { currency, program_currency, rate: fx.rate, source: fx.source, as_of: fx.as_of, total }
    }
}

/// `GET /v1/orders/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: OrderId,
    pub buyer_id: BuyerId,
    pub affiliate_id: Option<AffiliateId>,
    pub referral_code: Option<ReferralCode>,
    pub attribution_note: Option<String>,
    /// How the order was attributed (decided once, at intake), with what it
    /// carried that was ignored and why.
    pub attribution: AttributionView,
    pub status: OrderStatus,
    pub currency: String,
    pub placed_at: DateTime<Utc>,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub total: Decimal,
    /// The rate frozen at intake, for an order in another currency than the
    /// program's (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fx: Option<FxView>,
    /// Eligible amount of the current state (net of refunds; 0 when
    /// cancelled), in the program currency.
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub eligible_amount: Decimal,
    pub rule_version: u64,
    pub commission_status: CommissionStatus,
    pub no_commission_reason: Option<String>,
    /// The items in line order.
    pub items: Vec<OrderItemView>,
    pub commissions: Vec<LedgerEntry>,
    pub rewards: Vec<RewardEntry>,
    pub events: Vec<EventSummary>,
    /// Rule 7's walk up the upline frozen at the first processing: which
    /// ancestor earns which level, and who was passed over and why (empty
    /// before the first processing, and for an order that pays no one).
    pub upline: Vec<crate::domain::entitlement::UplineStep>,
}

impl From<OrderDetails> for OrderView {
    fn from(d: OrderDetails) -> Self {
        let r: crate::domain::record::OrderRecord = d.record;
        let pays = r.no_commission_reason.is_none();
        Self {
            id: r.id,
            buyer_id: r.state.buyer_id,
            affiliate_id: r.affiliate_id,
            referral_code: r.referral_code,
            attribution_note: r.attribution_note,
            attribution: r.attribution.into(),
            status: r.status,
            currency: r.currency.clone(),
            placed_at: r.placed_at,
            total: r.total,
            fx: r.fx.map(|fx| FxView::new(fx, r.currency, d.program_currency, d.converted_total)),
            eligible_amount: d.eligible_amount,
            rule_version: r.program_version,
            commission_status: r.commission_status,
            no_commission_reason: r.no_commission_reason,
            items: r
                .state
                .items
                .into_iter()
                .map(|i| OrderItemView {
                    sku: i.sku,
                    category: i.category,
                    quantity: i.quantity,
                    refunded: i.refunded,
                    unit_price: i.unit_price,
                })
                .collect(),
            commissions: r.commissions.into_iter().map(Into::into).collect(),
            rewards: r.rewards.into_iter().map(Into::into).collect(),
            events: r.events.into_iter().map(|e| EventSummary { id: e.id, kind: e.kind, status: e.status }).collect(),
            upline: if pays { d.upline } else { Vec::new() },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalancesView {
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub pending: Decimal,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub approved: Decimal,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub paid: Decimal,
}

impl From<Balances> for BalancesView {
    fn from(b: Balances) -> Self {
        Self { pending: b.pending, approved: b.approved, paid: b.paid }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AffiliateView {
    pub id: AffiliateId,
    pub name: String,
    pub parent_id: Option<AffiliateId>,
    pub referral_code: ReferralCode,
    pub buyer_id: Option<BuyerId>,
    /// SHA-256 of the affiliate's e-mail (self-referral rule)
    pub email_hash: Option<crate::domain::affiliate::EmailHash>,
    pub status: AffiliateStatus,
    pub currency: String,
    pub balances: BalancesView,
    pub created_at: DateTime<Utc>,
}

impl AffiliateView {
    pub fn new(a: Affiliate, currency: String) -> Self {
        Self {
            id: a.id,
            name: a.name,
            parent_id: a.parent_id,
            referral_code: a.referral_code,
            buyer_id: a.buyer_id,
            email_hash: a.email_hash,
            status: a.status,
            currency,
            balances: a.balances.into(),
            created_at: a.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutItem {
    pub affiliate_id: AffiliateId,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub amount: Decimal,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Payout {
    pub id: u64,
    pub status: String,
    pub items: Vec<PayoutItem>,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A batch in the list of batches: its items counted, not listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutSummaryView {
    pub id: u64,
    pub status: String,
    /// How many affiliates the batch pays.
    pub items: u64,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<payout::PayoutSummary> for PayoutSummaryView {
    fn from(p: payout::PayoutSummary) -> Self {
        Self {
            id: p.id,
            status: p.status,
            items: p.items,
            total: p.total,
            created_at: p.created_at,
            completed_at: p.completed_at,
        }
    }
}

/// How many events are in each status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventCountsView {
    pub pending: u64,
    pub processing: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
}

impl From<event::EventCounts> for EventCountsView {
    fn from(c: event::EventCounts) -> Self {
        Self { pending: c.pending, processing: c.processing, done: c.done, failed: c.failed, dead: c.dead }
    }
}

/// The answer to `POST /admin/payouts`: the batch, or that nothing reached
/// the minimum (and nothing was stored).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PayoutAnswer {
    Batch(Payout),
    Nothing(NothingToPay),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NothingToPay {
    /// Always `nothing_to_pay`.
    #[schema(example = "nothing_to_pay")]
    pub status: &'static str,
    #[schema(example = json!([]))]
    pub items: Vec<PayoutItem>,
    #[schema(value_type = String, example = "0", format = "decimal")]
    pub total: &'static str,
}

impl NothingToPay {
    pub fn new() -> Self {
        Self { status: "nothing_to_pay", items: Vec::new(), total: "0" }
    }
}

impl Default for NothingToPay {
    fn default() -> Self {
        Self::new()
    }
}

impl From<payout::Payout> for Payout {
    fn from(p: payout::Payout) -> Self {
        Self {
            id: p.id,
            status: p.status,
            items: p.items.into_iter().map(|i| PayoutItem { affiliate_id: i.affiliate_id, amount: i.amount }).collect(),
            total: p.total,
            created_at: p.created_at,
            completed_at: p.completed_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// null for a buyer's wallet event (redemption.*, points.expired).
    pub order_id: Option<OrderId>,
    pub status: EventStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<event::EventRecord> for EventRow {
    fn from(e: event::EventRecord) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            order_id: e.order_id,
            status: e.status,
            attempts: e.attempts,
            last_error: e.last_error,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Replay {
    pub at: DateTime<Utc>,
    pub previous_status: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventRow,
    pub partition: String,
    pub applied_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub attempt_history: Vec<Attempt>,
    pub replay_history: Vec<Replay>,
}

impl From<event::EventDetail> for EventDetail {
    fn from(d: event::EventDetail) -> Self {
        Self {
            event: d.event.into(),
            partition: d.partition,
            applied_at: d.applied_at,
            next_attempt_at: d.next_attempt_at,
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::String(d.payload)),
            attempt_history: d.attempt_history.into_iter().map(|a| Attempt { at: a.at, error: a.error }).collect(),
            replay_history: d
                .replay_history
                .into_iter()
                .map(|r| Replay { at: r.at, previous_status: r.previous_status })
                .collect(),
        }
    }
}

/// One line of an entitlement, of the ledger, or of their difference.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LineView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_money")]
    #[schema(value_type = Option<String>, format = "decimal")]
    pub amount: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
}

fn opt_money<S: serde::Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&crate::domain::money::format(*d)),
        None => s.serialize_none(),
    }
}

impl From<Line> for LineView {
    fn from(l: Line) -> Self {
        match l {
            Line::Commission(c) => Self {
                affiliate_id: Some(c.affiliate_id.to_string()),
                buyer_id: None,
                level: Some(c.level),
                kind: c.kind.as_str(),
                amount: Some(c.amount),
                points: None,
            },
            Line::Reward(r) => Self {
                affiliate_id: None,
                buyer_id: Some(r.buyer_id.to_string()),
                level: None,
                kind: r.kind.as_str(),
                amount: None,
                points: Some(r.points),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recompute {
    pub order_id: OrderId,
    pub dry_run: bool,
    pub entitled: Vec<LineView>,
    pub applied: Vec<LineView>,
    pub delta: Vec<LineView>,
    /// The event that writes the delta (not a dry run, and a delta to write).
    pub event_id: Option<EventId>,
}

impl From<ops::Recompute> for Recompute {
    fn from(r: ops::Recompute) -> Self {
        let v = |lines: Vec<Line>| lines.into_iter().map(Into::into).collect();
        Self {
            order_id: r.order_id,
            dry_run: r.dry_run,
            entitled: v(r.entitled),
            applied: v(r.applied),
            delta: v(r.delta),
            event_id: r.event_id,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Violation {
    /// What is wrong (`balance_mismatch`, `ledger_differs_from_entitlement`, …; docs/RULES.md).
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::domain::event::EventId>)]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Checked {
    pub affiliates: u64,
    pub buyers: u64,
    pub orders: u64,
    pub events: u64,
    pub payouts: u64,
    /// Buyers whose wallet (redemptions, expiry) was replayed and checked.
    pub wallets: u64,
    /// Affiliates' counted months (volume and order count) checked against
    /// their orders: a full sweep's.
    pub months: u64,
    /// Cap and budget counters checked against the ledger lines they
    /// cover: a full sweep's.
    pub counters: u64,
    /// Manual adjustments checked against their ledger or reward entries.
    pub adjustments: u64,
}

/// Entry ids a run covers: above `from`, up to `to`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IdRange {
    pub from: u64,
    pub to: u64,
}

/// What a run covered: every order, affiliate and buyer (a full sweep), or
/// what the ledger and reward entries in these ranges touched, with the
/// payouts and wallet events of the same time (an incremental run).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Coverage {
    pub ledger_entries: IdRange,
    pub reward_entries: IdRange,
}

/// A finished reconcile run and what it found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub run_id: u64,
    pub kind: RunKind,
    pub status: RunStatus,
    /// No violation.
    pub ok: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub coverage: Coverage,
    pub checked: Checked,
    /// The first 1 000 violations.
    pub violations: Vec<Violation>,
    /// How many violations the run found.
    pub violations_total: u64,
    /// Why a failed run stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A reconcile run while it runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunProgress {
    pub run_id: u64,
    pub kind: RunKind,
    pub started_at: DateTime<Utc>,
    /// Its last sign of life.
    pub heartbeat_at: DateTime<Utc>,
    /// What it checks now: `orders`, `wallets`, `months`, `counters`,
    /// `totals` (a full sweep in this order; an incremental run reads its
    /// totals first).
    pub phase: crate::domain::reconcile::Phase,
    /// Orders checked so far, of `total`.
    pub done: u64,
    pub total: u64,
    /// Seconds left at its pace so far, while it checks its orders (the
    /// phases after them have no estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// The instance running it.
    pub owner: String,
}

/// Where reconcile stands: the last finished run, and the running one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReconcileStatus {
    /// None before the first run finished.
    pub last: Option<Report>,
    pub running: Option<RunProgress>,
}

/// A requested run: started, or the run already running (one at a time).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunStarted {
    pub run_id: u64,
    /// False: another run was running; `run_id` is that one.
    pub started: bool,
}

fn coverage(r: &crate::domain::reconcile::Run) -> Coverage {
    let w = r.window;
    Coverage {
        ledger_entries: IdRange { from: w.ledger.0, to: w.ledger.1 },
        reward_entries: IdRange { from: w.rewards.0, to: w.rewards.1 },
    }
}

impl From<reconcile::Report> for Report {
    fn from(r: reconcile::Report) -> Self {
        let c = r.checked;
        Self {
            run_id: r.run.id,
            kind: r.run.kind,
            status: r.run.status,
            ok: r.ok,
            started_at: r.run.started_at,
            finished_at: r.run.finished_at,
            coverage: coverage(&r.run),
            checked: Checked {
                affiliates: c.affiliates,
                buyers: c.buyers,
                orders: c.orders,
                events: c.events,
                payouts: c.payouts,
                wallets: c.wallets,
                months: c.months,
                counters: c.counters,
                adjustments: c.adjustments,
            },
            violations: r
                .violations
                .into_iter()
                .map(|v| Violation {
                    kind: v.kind,
                    affiliate_id: v.affiliate_id,
                    buyer_id: v.buyer_id,
                    order_id: v.order_id,
                    event_id: v.event_id,
                    payout_id: v.payout_id,
                    detail: v.detail,
                })
                .collect(),
            violations_total: r.violations_total,
            error: r.run.error,
        }
    }
}

impl From<reconcile::Status> for ReconcileStatus {
    fn from(s: reconcile::Status) -> Self {
        Self {
            last: s.last.map(Into::into),
            running: s.running.map(|r| RunProgress {
                run_id: r.id,
                kind: r.kind,
                started_at: r.started_at,
                heartbeat_at: r.heartbeat_at,
                phase: s.phase.unwrap_or_default(),
                done: r.done,
                total: r.total,
                eta_seconds: s.eta_secs,
                owner: r.owner,
            }),
        }
    }
}

/// A redemption hold.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RedemptionView {
    pub buyer_id: BuyerId,
    pub redemption_id: crate::domain::ids::RedemptionId,
    pub points: i64,
    pub order_id: Option<OrderId>,
    pub status: crate::domain::wallet::RedemptionStatus,
    /// points × the program's `points_value`, floored to its scale: the
    /// discount the storefront may apply
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "500", format = "decimal")]
    pub value: Decimal,
    /// The program version whose `points_value` priced it.
    pub program_version: u64,
    /// An uncaptured hold gives its points back then.
    pub hold_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<crate::domain::wallet::Redemption> for RedemptionView {
    fn from(r: crate::domain::wallet::Redemption) -> Self {
        Self {
            buyer_id: r.buyer_id,
            redemption_id: r.id,
            points: r.points,
            order_id: r.order_id,
            status: r.status,
            value: r.value,
            program_version: r.program_version,
            hold_until: r.hold_until,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One affiliate line of a quote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuoteLine {
    pub affiliate_id: AffiliateId,
    pub level: u8,
    pub kind: CommissionKind,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    pub amount: Decimal,
    /// The cap or budget that would cut the line (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_by: Option<String>,
    /// What it would cut (the line would pay `amount`).
    #[serde(skip_serializing_if = "Option::is_none", with = "crate::domain::money::opt_decimal_str")]
    #[schema(value_type = Option<String>, example = "5000", format = "decimal")]
    pub cut: Option<Decimal>,
}

/// Points a quote's order would earn, by kind.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuotePoints {
    pub kind: RewardKind,
    pub points: i64,
    /// The budget that would cut the points (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<i64>,
}

/// `POST /v1/quotes`: what the order would pay now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuoteView {
    pub program_version: u64,
    /// The program currency: every amount of the quote is in it.
    pub currency: String,
    /// The conversion, for an order in another currency than the program's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fx: Option<FxView>,
    /// The time the order was quoted as placed at.
    pub placed_at: DateTime<Utc>,
    /// The affiliate the order would be attributed to (null: unattributed or an unknown code).
    pub affiliate_id: Option<AffiliateId>,
    /// The attribution intake would decide now.
    pub attribution: AttributionView,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "2150000", format = "decimal")]
    pub eligible_amount: Decimal,
    /// Why the order would pay no commission (null: it pays).
    pub no_commission_reason: Option<String>,
    pub commissions: Vec<QuoteLine>,
    pub rewards: Vec<QuotePoints>,
    /// Σ rewards: the points the buyer would earn.
    pub points_to_earn: i64,
    /// The buyer's points that may be held now.
    pub spendable_points: i128,
    /// Currency per point when spent.
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "1", format = "decimal")]
    pub points_value: Decimal,
}

impl From<crate::engine::quote::Quote> for QuoteView {
    fn from(q: crate::engine::quote::Quote) -> Self {
        let e = q.entitlement;
        Self {
            program_version: q.program_version,
            fx: q.fx.map(|fx| FxView::new(fx, q.order_currency, q.currency.clone(), q.converted_total)),
            currency: q.currency,
            placed_at: q.placed_at,
            affiliate_id: q.affiliate_id,
            attribution: q.attribution.into(),
            eligible_amount: e.eligible_amount,
            no_commission_reason: e.no_commission_reason.map(|r| r.as_str().to_owned()),
            commissions: e
                .commissions
                .into_iter()
                .map(|l| {
                    let cut = q.cuts.commissions.get(&(l.affiliate_id.clone(), l.kind)).copied().flatten();
                    QuoteLine {
                        affiliate_id: l.affiliate_id,
                        level: l.level,
                        kind: l.kind,
                        amount: l.amount,
                        capped_by: cut.map(|c| c.by.as_str().to_owned()),
                        cut: cut.map(|c| c.amount),
                    }
                })
                .collect(),
            points_to_earn: e.rewards.iter().map(|r| r.points).sum(),
            rewards: e
                .rewards
                .into_iter()
                .map(|r| {
                    let cut = q.cuts.rewards.get(&r.kind).copied().flatten();
                    QuotePoints {
                        kind: r.kind,
                        points: r.points,
                        capped_by: cut.map(|c| c.by.as_str().to_owned()),
                        cut: cut.map(|c| c.amount),
                    }
                })
                .collect(),
            spendable_points: q.spendable_points,
            points_value: q.points_value,
        }
    }
}

/// An order's attribution decision.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttributionView {
    /// null: unattributed.
    pub affiliate_id: Option<AffiliateId>,
    /// `customer_link`, `coupon`, `click`, `referral_code`, `affiliate_id` or `manual`; null: unattributed.
    pub source: Option<crate::domain::attribution::Source>,
    /// The code, the click (affiliate and time) or the linked affiliate that decided.
    pub detail: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// A manual reassignment's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the order carried that did not attribute it, and why.
    pub ignored: Vec<IgnoredView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IgnoredView {
    pub source: crate::domain::attribution::Source,
    pub detail: String,
    /// `outranked`, `unknown_coupon`, `unknown_referral_code`, `unknown_affiliate_id`,
    /// `invalid_click`, `click_expired`, `click_after_order`, `click_not_chosen`,
    /// `link_expired`, `linked_affiliate_suspended`, `reassigned`
    pub reason: crate::domain::attribution::IgnoredReason,
    /// The affiliate it would have credited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<AffiliateId>,
    /// In words, e.g. "coupon SUMMER10 ignored: customer_link (A) comes first".
    pub message: String,
}

impl From<crate::domain::attribution::Decision> for AttributionView {
    fn from(d: crate::domain::attribution::Decision) -> Self {
        use crate::domain::attribution::IgnoredReason as R;
        let winner = match (&d.source, &d.affiliate_id) {
            (Some(s), Some(a)) => format!("{} ({a}) comes first", s.as_str()),
            _ => "another source comes first".to_owned(),
        };
        let ignored = d
            .ignored
            .into_iter()
            .map(|i| {
                let why = match i.reason {
                    R::Outranked => winner.clone(),
                    R::UnknownCoupon => "no active coupon has this code".to_owned(),
                    R::UnknownReferralCode => "no affiliate has this referral code".to_owned(),
                    R::UnknownAffiliateId => "no such affiliate".to_owned(),
                    R::InvalidClick => "not a click id komisi signed".to_owned(),
                    R::ClickExpired => "older than the click window".to_owned(),
                    R::ClickAfterOrder => "dated after the order".to_owned(),
                    R::ClickNotChosen => "another click wins under the click model".to_owned(),
                    R::LinkExpired => "the customer link has expired".to_owned(),
                    R::LinkedAffiliateSuspended => "the linked affiliate is suspended".to_owned(),
                    R::Reassigned => "an operator moved the order to another affiliate".to_owned(),
                };
                IgnoredView {
                    message: format!("{} {} ignored: {why}", i.source.as_str(), i.detail),
                    source: i.source,
                    detail: i.detail,
                    reason: i.reason,
                    affiliate_id: i.affiliate_id,
                }
            })
            .collect();
        Self {
            affiliate_id: d.affiliate_id,
            source: d.source,
            detail: d.detail,
            decided_at: d.decided_at,
            reason: d.reason,
            ignored,
        }
    }
}
