//! Affiliates: the referral tree, each affiliate's balances and ledger.
use super::Result;
use crate::domain::adjustment::Adjustment;
use crate::domain::affiliate::{Affiliate, NewAffiliate};
use crate::domain::ids::{AdjustmentId, AffiliateId};
use crate::domain::ledger::LedgerEntry;
use crate::domain::order::Attribution;
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait Affiliates: Send + Sync {
    async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>>;
    /// One page of an affiliate's direct children, by id (after `after`).
    async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>>;
    /// One page of affiliates by id (ids above `after`) matching `filter`.
    async fn search_affiliates(
        &self,
        filter: &AffiliateFilter,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>>;
    /// One page of an affiliate's ledger in `order`; `after` is the last id
    /// of the previous page (None: the first page).
    async fn affiliate_ledger(
        &self,
        id: &AffiliateId,
        order: LedgerOrder,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>>;
    /// The affiliate an order with this attribution would be attributed to
    /// (None: an unknown code or id).
    async fn attributed(&self, attribution: &Attribution) -> Result<Option<AffiliateId>>;
    async fn begin_affiliates(&self) -> Result<Box<dyn AffiliateTx>>;
    /// A manual adjustment (of an affiliate or a buyer) by its id.
    async fn adjustment(&self, id: &AdjustmentId) -> Result<Option<Adjustment>>;
}

/// A registration or a change of one affiliate.
#[async_trait::async_trait]
pub trait AffiliateTx: super::AuditTx + super::ReportTx + Send {
    /// Serialises changes of the tree's shape until the commit: two
    /// re-parentings cannot both pass the cycle check and close a loop.
    async fn lock_tree(&mut self) -> Result<()>;
    /// The affiliate; locked for the update when `for_update`.
    async fn affiliate(&mut self, id: &AffiliateId, for_update: bool) -> Result<Option<Affiliate>>;
    /// `id` and up to `count − 1` of its ancestors, nearest first.
    async fn chain(&mut self, id: &AffiliateId, count: usize) -> Result<Vec<Affiliate>>;
    /// A taken id or referral code is [`super::StoreError::Duplicate`].
    async fn insert(&mut self, new: &NewAffiliate, now: DateTime<Utc>) -> Result<()>;
    async fn update(
        &mut self,
        id: &AffiliateId,
        patched: &crate::domain::affiliate::Patched,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Sets the affiliate's own caps (None: the program's).
    async fn set_caps(
        &mut self,
        id: &AffiliateId,
        caps: Option<&[crate::domain::caps::Cap]>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// The adjustment stored under `id` (of any subject).
    async fn adjustment(&mut self, id: &AdjustmentId) -> Result<Option<Adjustment>>;
    /// Records a commission adjustment of the locked affiliate: the request,
    /// its event (done, with `payload`), an approved ledger entry of kind
    /// `adjustment` and the approved balance moved by it.
    async fn adjust_commission(
        &mut self,
        a: &Adjustment,
        payload: &str,
        rule_version: u64,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Which end of an affiliate's ledger its pages start from. Either way a
/// page is one range of (affiliate, id): the table itself on MySQL, which is
/// keyed so (migration 0039), `ix_ledger_affiliate` on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LedgerOrder {
    #[default]
    OldestFirst,
    NewestFirst,
}

/// What a list of affiliates is narrowed to (each part optional).
#[derive(Debug, Clone, Default)]
pub struct AffiliateFilter {
    /// A prefix of the id, of the referral code (both as written) or of the
    /// name (ASCII letters in either case).
    pub q: Option<String>,
    pub status: Option<crate::domain::affiliate::AffiliateStatus>,
    pub parent_id: Option<AffiliateId>,
}
