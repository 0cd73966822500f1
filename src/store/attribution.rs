//! Attribution's own rows: coupons, customer links, click counts per day,
//! and the key that signs click ids. (Intake reads and writes them inside
//! its batch transaction, `IntakeTx`.)
use super::Result;
use crate::domain::attribution::{AddCoupon, Coupon, CouponCode, CustomerLink};
use crate::domain::audit::AuditEntry;
use crate::domain::ids::{AffiliateId, BuyerId};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Clicks of one affiliate on one day (midnight UTC).
pub type ClickCount = (AffiliateId, DateTime<Utc>, u64);

#[async_trait::async_trait]
pub trait Attributions: Send + Sync {
    /// The key signing click ids: made (random, 32 bytes) and stored at the
    /// first call on a database, the same for every instance afterwards.
    async fn click_key(&self) -> Result<Vec<u8>>;
    /// Adds a coupon to an affiliate.
    /// `audit` is written with a coupon added (not with an existing one).
    async fn add_coupon(
        &self,
        affiliate: &AffiliateId,
        code: &CouponCode,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<AddCoupon>;
    /// An affiliate's coupons, deleted ones included, newest first; None: no such affiliate.
    async fn coupons(&self, affiliate: &AffiliateId) -> Result<Option<Vec<Coupon>>>;
    /// Deletes an affiliate's active coupon; false when it has none of that code.
    /// `audit` is written when one is deleted.
    async fn delete_coupon(
        &self,
        affiliate: &AffiliateId,
        code: &CouponCode,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool>;
    /// Active coupon code → holder, for the codes given (quotes).
    async fn coupon_holders(&self, codes: &[&CouponCode]) -> Result<HashMap<String, AffiliateId>>;
    /// A buyer's stored link, with whether its affiliate is suspended now.
    async fn customer_link(&self, buyer: &BuyerId) -> Result<Option<(CustomerLink, bool)>>;
    /// Sets (`Some`) or clears (`None`) a buyer's link by hand; false when
    /// the affiliate does not exist. `audit` is written with the link
    /// before the change as its `before`.
    async fn set_customer_link(
        &self,
        buyer: &BuyerId,
        to: Option<(&AffiliateId, &str, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool>;
    /// How many buyers are linked to the affiliate (expired links included).
    async fn linked_customers(&self, affiliate: &AffiliateId) -> Result<u64>;
    /// Orders attributed to the affiliate in the months starting at or after
    /// `since` (from `affiliate_months`, which intake keeps).
    async fn month_orders_since(&self, affiliate: &AffiliateId, since: DateTime<Utc>) -> Result<u64>;
    /// Adds click counts to their days.
    async fn add_clicks(&self, counts: &[ClickCount]) -> Result<()>;
    /// An affiliate's clicks per day from `since` on, oldest first.
    async fn click_days(&self, affiliate: &AffiliateId, since: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, u64)>>;
}
