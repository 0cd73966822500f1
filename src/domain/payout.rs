//! Payout batches: approved entries grouped per affiliate, paid together.
use super::ids::AffiliateId;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

#[derive(Debug, Clone)]
pub struct PayoutItem {
    pub affiliate_id: AffiliateId,
    pub amount: Decimal,
}

#[derive(Debug, Clone)]
pub struct Payout {
    pub id: u64,
    pub status: String,
    pub items: Vec<PayoutItem>,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}
