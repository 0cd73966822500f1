//! Attribution's use cases outside intake: tracked clicks (signed ids,
//! counted per affiliate and day in memory and written every 5 seconds),
//! coupons, customer links, and an affiliate's attribution figures. Intake
//! decides each order's attribution in its batch transaction (`intake`,
//! `domain::attribution::decide`).
use super::{Engine, Result};
use crate::domain::attribution::{
    sign_click, verify_click, AddCoupon, Click, ClickCheck, Coupon, CouponCode, CustomerLink, LinkMode,
};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::ids::{AffiliateId, BuyerId, ReferralCode};
use crate::domain::order::NewOrder;
use crate::store::{Backend, ClickCount};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The key that signs click ids, read from the database once (made there at
/// the first start).
#[derive(Clone, Default)]
pub struct ClickKey(Arc<OnceCell<Arc<[u8]>>>);

impl ClickKey {
    pub async fn get(&self, store: &dyn Backend) -> Result<Arc<[u8]>> {
        let key = self.0.get_or_try_init(|| async { store.click_key().await.map(Arc::from) }).await?;
        Ok(key.clone())
    }

    /// Each order's click ids checked: signed by this database's key and
    /// naming an affiliate (`exists` says which do).
    pub fn check(key: &[u8], orders: &[NewOrder]) -> Vec<Vec<ClickCheck>> {
        orders.iter().map(|o| Self::check_ids(key, &o.click_ids)).collect()
    }

    pub fn check_ids(key: &[u8], ids: &[String]) -> Vec<ClickCheck> {
        ids.iter()
            .map(|id| match verify_click(key, id) {
                Some(c) => ClickCheck::Valid(c),
                None => ClickCheck::Invalid(id.clone()),
            })
            .collect()
    }
}

/// Clicks counted in memory per (affiliate, UTC day), written to
/// `click_days` every 5 seconds by a task that ends with the engine (one upsert
/// per affiliate clicked in those seconds: at 5 000 clicks a second over
/// 9 000 affiliates a write a second cost MariaDB 4 % of this machine). A
/// process killed between two writes loses at most those seconds' counts
/// (counts are statistics, never money).
#[derive(Default)]
pub struct ClickCounts(Mutex<HashMap<(AffiliateId, DateTime<Utc>), u64>>);

/// How often counted clicks are written.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

impl ClickCounts {
    pub fn start(store: Arc<dyn Backend>) -> Arc<Self> {
        let counts = Arc::new(Self::default());
        let weak: Weak<Self> = Arc::downgrade(&counts);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(FLUSH_EVERY).await;
                    let Some(counts) = weak.upgrade() else { return };
                    if let Err(e) = counts.flush(store.as_ref()).await {
                        tracing::warn!(error = %e, "click counts not written; kept for the next try");
                    }
                }
            });
        }
        counts
    }

    fn add(&self, affiliate: &AffiliateId, at: DateTime<Utc>) {
        let day = at.duration_trunc(TimeDelta::days(1)).unwrap_or(at);
        *self.0.lock().expect("click counts poisoned").entry((affiliate.clone(), day)).or_default() += 1;
    }

    /// Writes what was counted; on a failure the counts are put back.
    pub async fn flush(&self, store: &dyn Backend) -> Result<()> {
        let taken: Vec<ClickCount> = {
            let mut map = self.0.lock().expect("click counts poisoned");
            std::mem::take(&mut *map).into_iter().map(|((a, d), n)| (a, d, n)).collect()
        };
        if let Err(e) = store.add_clicks(&taken).await {
            let mut map = self.0.lock().expect("click counts poisoned");
            for (a, d, n) in taken {
                *map.entry((a, d)).or_default() += n;
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// What a click needs, kept in memory: a referral code's affiliate (codes
/// never change and affiliates are never deleted, so a found code stays
/// right) and the program's click window (refreshed every second).
#[derive(Default)]
pub struct ClickCache {
    codes: dashmap::DashMap<String, AffiliateId>,
    window: Mutex<Option<(Instant, u32)>>,
}

/// Codes remembered at most (beyond it the map starts over).
const MAX_CODES: usize = 1_000_000;
const WINDOW_FRESH: Duration = Duration::from_secs(1);

impl ClickCache {
    fn remember(&self, code: &ReferralCode, affiliate: &AffiliateId) {
        if self.codes.len() >= MAX_CODES {
            self.codes.clear();
        }
        self.codes.insert(code.as_str().to_owned(), affiliate.clone());
    }
}

/// What `POST /v1/clicks` answers.
#[derive(Debug, Clone)]
pub struct IssuedClick {
    pub click_id: String,
    pub affiliate_id: AffiliateId,
    pub clicked_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An affiliate's attribution figures (the console's affiliate page).
#[derive(Debug, Clone)]
pub struct AttributionStats {
    pub coupons: Vec<Coupon>,
    /// The window of the figures: from the start of last month (program
    /// time zone) on.
    pub since: DateTime<Utc>,
    /// Clicks per UTC day in the window, oldest first (days without clicks left out).
    pub clicks_by_day: Vec<(DateTime<Utc>, u64)>,
    pub clicks: u64,
    /// Orders attributed to the affiliate placed in the window (from the
    /// month counts intake keeps: no scan of the affiliate's orders).
    pub orders: u64,
    pub linked_customers: u64,
}

/// A manual link's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetLink {
    Done,
    NoAffiliate,
}

impl Engine {
    /// A tracked click for the affiliate of `code`: its signed id (None: no
    /// affiliate has that code).
    pub async fn record_click(&self, code: &ReferralCode) -> Result<Option<IssuedClick>> {
        let cache = &self.inner.click_cache;
        let affiliate = match cache.codes.get(code.as_str()) {
            Some(a) => a.clone(),
            None => {
                let named = crate::domain::order::Attribution::ReferralCode(code.clone());
                let Some(a) = self.store().attributed(&named).await? else { return Ok(None) };
                cache.remember(code, &a);
                a
            }
        };
        let key = self.inner.click_key.get(self.store()).await?;
        let window = self.click_window().await?;
        let now = Utc::now();
        let click = Click { affiliate_id: affiliate, at: now };
        let click_id = sign_click(&key, &click);
        self.inner.clicks.add(&click.affiliate_id, now);
        metrics::counter!(crate::metrics::CLICKS_TOTAL).increment(1);
        Ok(Some(IssuedClick {
            click_id,
            affiliate_id: click.affiliate_id,
            clicked_at: now,
            expires_at: now + TimeDelta::days(i64::from(window)),
        }))
    }

    /// The program's click window, read at most once a second (a click
    /// writes nothing and reads nothing else from the database).
    async fn click_window(&self) -> Result<u32> {
        let cache = &self.inner.click_cache;
        if let Some((at, days)) = *cache.window.lock().expect("click window poisoned") {
            if at.elapsed() < WINDOW_FRESH {
                return Ok(days);
            }
        }
        let days = self.program().await?.1.attribution.click_window_days;
        *cache.window.lock().expect("click window poisoned") = Some((Instant::now(), days));
        Ok(days)
    }

    /// Whether the program in force links customers to affiliates.
    pub async fn links_customers(&self) -> Result<bool> {
        Ok(self.program().await?.1.attribution.customer_link != LinkMode::Off)
    }

    /// Writes the clicks counted so far (the flush task does it every 5 seconds).
    pub async fn flush_clicks(&self) -> Result<()> {
        self.inner.clicks.flush(self.store()).await
    }

    pub async fn add_coupon(&self, affiliate: &AffiliateId, code: &CouponCode, actor: &Actor) -> Result<AddCoupon> {
        let audit = AuditEntry::new(actor, Action::CouponAdd, format!("affiliate:{affiliate}"))
            .after(serde_json::json!({ "code": code.as_str() }));
        Ok(self.store().add_coupon(affiliate, code, Utc::now(), &audit).await?)
    }

    pub async fn coupons(&self, affiliate: &AffiliateId) -> Result<Option<Vec<Coupon>>> {
        Ok(self.store().coupons(affiliate).await?)
    }

    pub async fn delete_coupon(&self, affiliate: &AffiliateId, code: &CouponCode, actor: &Actor) -> Result<bool> {
        let audit = AuditEntry::new(actor, Action::CouponDelete, format!("affiliate:{affiliate}"))
            .before(serde_json::json!({ "code": code.as_str() }));
        Ok(self.store().delete_coupon(affiliate, code, Utc::now(), &audit).await?)
    }

    /// A buyer's link to an affiliate, with whether that affiliate is suspended.
    pub async fn customer_link(&self, buyer: &BuyerId) -> Result<Option<(CustomerLink, bool)>> {
        Ok(self.store().customer_link(buyer).await?)
    }

    /// Sets a buyer's link by hand (it holds as a link made now by an order
    /// would: for the program's `customer_link.days`, or for life), or clears it.
    pub async fn set_customer_link(
        &self,
        buyer: &BuyerId,
        to: Option<&AffiliateId>,
        reason: &str,
        actor: &Actor,
    ) -> Result<SetLink> {
        let now = Utc::now();
        let (_, program) = self.program().await?;
        let expires_at = match program.attribution.customer_link {
            LinkMode::Days(d) => Some(now + TimeDelta::days(i64::from(d))),
            LinkMode::Off | LinkMode::Lifetime => None,
        };
        let audit = AuditEntry::new(actor, Action::BuyerLink, format!("buyer:{buyer}"))
            .after(serde_json::json!({ "affiliate_id": to, "reason": reason }));
        let done = self.store().set_customer_link(buyer, to.map(|a| (a, reason, expires_at)), now, &audit).await?;
        if to.is_some() || !reason.is_empty() {
            tracing::info!(buyer = %buyer, to = ?to.map(|a| a.as_str()), reason, "customer link set by an operator");
        }
        Ok(if done { SetLink::Done } else { SetLink::NoAffiliate })
    }

    /// Coupons, clicks per day, linked customers, and clicks and attributed
    /// orders since the start of last month; None when the affiliate does not exist.
    pub async fn attribution_stats(&self, affiliate: &AffiliateId) -> Result<Option<AttributionStats>> {
        let Some(coupons) = self.store().coupons(affiliate).await? else { return Ok(None) };
        let (_, program) = self.program().await?;
        let now = Utc::now();
        let this_month = crate::domain::entitlement::month_window(now, program.timezone).0;
        let since = crate::domain::entitlement::month_window(this_month - TimeDelta::days(1), program.timezone).0;
        let day = since.duration_trunc(TimeDelta::days(1)).unwrap_or(since);
        let clicks_by_day = self.store().click_days(affiliate, day).await?;
        let clicks = clicks_by_day.iter().map(|(_, n)| n).sum();
        let orders = self.store().month_orders_since(affiliate, since).await?;
        let linked_customers = self.store().linked_customers(affiliate).await?;
        Ok(Some(AttributionStats { coupons, since, clicks_by_day, clicks, orders, linked_customers }))
    }
}
