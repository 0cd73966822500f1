//! Payout batches: approved balances paid out together.
use super::Result;
use crate::domain::ids::AffiliateId;
use crate::domain::payout::{AffiliatePayout, ExportLine, NewPayout, Payout, PayoutItem, PayoutSummary};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

#[async_trait::async_trait]
pub trait Payouts: Send + Sync {
    /// A batch and its items.
    async fn payout(&self, id: u64) -> Result<Option<Payout>>;
    /// The batch built under an idempotency key: its id and minimum amount.
    async fn payout_by_key(&self, key: &str) -> Result<Option<(u64, Decimal)>>;
    /// One page of batches, newest first (ids below `before`).
    async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>>;
    async fn begin_payout(&self) -> Result<Box<dyn PayoutTx>>;
    /// One page of the batches that paid an affiliate, newest first (ids
    /// below `before`); None when there is no such affiliate.
    async fn affiliate_payouts(
        &self,
        id: &AffiliateId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AffiliatePayout>>>;
    /// A batch's status and its lines with each affiliate's name, by
    /// affiliate id; None when there is no such batch.
    async fn payout_export(&self, id: u64) -> Result<Option<(String, Vec<ExportLine>)>>;
}

/// Building a batch, or marking one paid.
#[async_trait::async_trait]
pub trait PayoutTx: super::NotifyTx + super::AuditTx + Send {
    /// The batch built under this key: its id and minimum amount.
    async fn keyed(&mut self, key: &str) -> Result<Option<(u64, Decimal)>>;
    /// Every approved entry not in a batch yet, locked: (entry, affiliate, amount).
    async fn approved_unbatched(&mut self) -> Result<Vec<(u64, AffiliateId, Decimal)>>;
    /// Stores the batch and its items and puts the entries in it; returns
    /// its id. A key taken meanwhile is [`super::StoreError::Duplicate`].
    async fn insert(&mut self, batch: &NewPayout) -> Result<u64>;
    /// Locks a batch; its status (None: no such batch).
    async fn lock(&mut self, id: u64) -> Result<Option<String>>;
    async fn items(&mut self, id: u64) -> Result<Vec<PayoutItem>>;
    /// The batch is paid: its entries and the balances move approved → paid.
    async fn complete(&mut self, id: u64, items: &[PayoutItem], now: DateTime<Utc>) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}
