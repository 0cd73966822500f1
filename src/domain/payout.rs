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

/// A batch without its items, as the list of batches shows it.
#[derive(Debug, Clone)]
pub struct PayoutSummary {
    pub id: u64,
    pub status: String,
    /// How many affiliates the batch pays.
    pub items: u64,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a payout request did.
#[derive(Debug, Clone)]
pub enum CreatePayout {
    /// A new batch.
    Created(Payout),
    /// The batch an earlier request with this idempotency key and the same
    /// `min_amount` built (also when the two ran at once).
    Repeated(Payout),
    /// No affiliate's approved, unbatched sum reached the minimum: nothing
    /// was stored (an empty batch would only be noise to complete).
    NothingToPay,
    /// The idempotency key was used before with another `min_amount`.
    KeyReused { min_amount: Decimal },
}
