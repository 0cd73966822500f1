//! An order as stored, with everything written for it: the view the API
//! shows (its state, ledger lines, reward lines and events).
use super::event::{EventId, EventStatus, EventType};
use super::ids::{AffiliateId, OrderId, ReferralCode};
use super::ledger::{LedgerEntry, RewardEntry};
use super::order::{CommissionStatus, OrderState, OrderStatus};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// An event of an order, as listed with it.
#[derive(Debug, Clone)]
pub struct EventSummary {
    pub id: EventId,
    pub kind: EventType,
    pub status: EventStatus,
}

/// An order as stored, with its ledger, rewards and events.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: OrderId,
    pub affiliate_id: Option<AffiliateId>,
    pub referral_code: Option<ReferralCode>,
    pub attribution_note: Option<String>,
    /// How the order was attributed, with what was ignored.
    pub attribution: super::attribution::Decision,
    pub status: OrderStatus,
    pub currency: String,
    /// The buyer's e-mail hash the storefront sent (self-referral by e-mail).
    pub buyer_email_hash: Option<super::affiliate::EmailHash>,
    pub placed_at: DateTime<Utc>,
    pub total: Decimal,
    pub program_version: u64,
    pub commission_status: CommissionStatus,
    pub no_commission_reason: Option<String>,
    pub state: OrderState,
    /// The exchange rate frozen at intake (an order in another currency).
    pub fx: Option<super::currency::Fx>,
    /// The context frozen at the first processing (JSON; None before it).
    pub context: Option<String>,
    /// The order's caps (JSON, `caps::OrderLimits`), once counted.
    pub limits: Option<String>,
    pub commissions: Vec<LedgerEntry>,
    pub rewards: Vec<RewardEntry>,
    pub events: Vec<EventSummary>,
}
