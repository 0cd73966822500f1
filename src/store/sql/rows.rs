//! Rows read back into domain values, one function per kind of row; the
//! column lists they read.
use super::Cols;
use crate::domain::affiliate::{Affiliate, AffiliateStatus, Balances};
use crate::domain::caps::{Bound, Cut};
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::event::{EventId, EventRecord, EventRef, EventStatus, EventType, PartitionKey};
use crate::domain::ids::{AffiliateId, BuyerId, Category, OrderId, RedemptionId, ReferralCode, Sku};
use crate::domain::ledger::{EntryStatus, LedgerEntry, RewardEntry};
use crate::domain::order::{OrderItem, OrderStatus};
use crate::domain::wallet::{Redemption, RedemptionStatus};
use crate::store::{corrupt, Result};
use rust_decimal::Decimal;

pub const AFFILIATE_COLUMNS: &str =
    "id, name, parent_id, referral_code, buyer_id, email_hash, status, pending, approved, paid, created_at, caps";
pub const LEDGER_COLUMNS: &str =
    "id, affiliate_id, order_id, event_id, level, kind, amount, status, rule_version, created_at, capped_by, cut";
pub const REWARD_COLUMNS: &str =
    "id, buyer_id, order_id, event_id, kind, points, created_at, redemption_id, expires_at, capped_by, cut";
pub const REDEMPTION_COLUMNS: &str =
    "buyer_id, id, points, order_id, status, value, program_version, hold_until, created_at, updated_at";
pub const EVENT_COLUMNS: &str = "id, type, order_id, status, attempts, last_error, created_at, updated_at";

pub fn event_id(s: &str) -> Result<EventId> {
    EventId::parse(s).ok_or_else(|| corrupt(format!("event id {s:?}")))
}

pub fn event_status(s: &str) -> Result<EventStatus> {
    EventStatus::parse(s).ok_or_else(|| corrupt(format!("event status {s:?}")))
}

pub fn event_type(s: &str) -> Result<EventType> {
    EventType::parse(s).ok_or_else(|| corrupt(format!("event type {s:?}")))
}

pub fn order_status(s: &str) -> Result<OrderStatus> {
    OrderStatus::parse(s).ok_or_else(|| corrupt(format!("order status {s:?}")))
}

/// A `group_concat` of event statuses (NULL: none).
pub fn statuses(list: Option<String>) -> Result<Vec<EventStatus>> {
    list.as_deref().map(|s| s.split(',').map(event_status).collect()).transpose().map(Option::unwrap_or_default)
}

/// An order id column that holds '' for a wallet event's (no order).
pub fn order_of(r: &dyn Cols, column: &str) -> Result<Option<OrderId>> {
    Ok(Some(r.text(column)?).filter(|o| !o.is_empty()).map(OrderId::from_trusted))
}

pub fn affiliate(r: &dyn Cols) -> Result<Affiliate> {
    let status = r.text("status")?;
    Ok(Affiliate {
        id: AffiliateId::from_trusted(r.text("id")?),
        name: r.text("name")?,
        parent_id: r.opt_text("parent_id")?.map(AffiliateId::from_trusted),
        referral_code: ReferralCode::from_trusted(r.text("referral_code")?),
        buyer_id: r.opt_text("buyer_id")?.map(BuyerId::from_trusted),
        email_hash: r.opt_text("email_hash")?.map(crate::domain::affiliate::EmailHash::from_trusted),
        status: AffiliateStatus::parse(&status).ok_or_else(|| corrupt(format!("affiliate status {status:?}")))?,
        balances: Balances { pending: r.money("pending")?, approved: r.money("approved")?, paid: r.money("paid")? },
        created_at: r.time("created_at")?,
        caps: match r.opt_text("caps")? {
            Some(json) => Some(serde_json::from_str(&json).map_err(corrupt)?),
            None => None,
        },
    })
}

pub fn ledger_entry(r: &dyn Cols) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        id: r.uint("id")?,
        affiliate_id: AffiliateId::from_trusted(r.text("affiliate_id")?),
        order_id: OrderId::from_trusted(r.text("order_id")?),
        event_id: r.text("event_id")?,
        level: super::small(r, "level")?,
        kind: CommissionKind::parse(&r.text("kind")?).ok_or_else(|| corrupt("ledger kind"))?,
        amount: r.money("amount")?,
        status: EntryStatus::parse(&r.text("status")?).ok_or_else(|| corrupt("entry status"))?,
        rule_version: r.uint("rule_version")?,
        created_at: r.time("created_at")?,
        cut: match r.opt_text("capped_by")? {
            Some(by) => Some(Cut { by: bound(&by)?, amount: r.money("cut")? }),
            None => None,
        },
    })
}

pub fn reward_entry(r: &dyn Cols) -> Result<RewardEntry> {
    Ok(RewardEntry {
        id: r.uint("id")?,
        buyer_id: BuyerId::from_trusted(r.text("buyer_id")?),
        // '' is a wallet entry's: no order.
        order_id: order_of(r, "order_id")?,
        redemption_id: r.opt_text("redemption_id")?,
        expires_at: r.opt_time("expires_at")?,
        event_id: r.text("event_id")?,
        kind: RewardKind::parse(&r.text("kind")?).ok_or_else(|| corrupt("reward kind"))?,
        points: r.int("points")?,
        created_at: r.time("created_at")?,
        cut: match r.opt_text("capped_by")? {
            Some(by) => Some(Cut { by: bound(&by)?, amount: r.int("cut")? }),
            None => None,
        },
    })
}

fn bound(s: &str) -> Result<Bound> {
    Bound::parse(s).ok_or_else(|| corrupt(format!("capped_by {s:?}")))
}

pub fn redemption(r: &dyn Cols) -> Result<Redemption> {
    Ok(Redemption {
        buyer_id: BuyerId::from_trusted(r.text("buyer_id")?),
        id: RedemptionId::from_trusted(r.text("id")?),
        points: r.int("points")?,
        order_id: r.opt_text("order_id")?.map(OrderId::from_trusted),
        status: RedemptionStatus::parse(&r.text("status")?).ok_or_else(|| corrupt("redemption status"))?,
        value: r.money("value")?,
        program_version: r.uint("program_version")?,
        hold_until: r.time("hold_until")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub fn event_record(r: &dyn Cols) -> Result<EventRecord> {
    Ok(EventRecord {
        id: event_id(&r.text("id")?)?,
        kind: event_type(&r.text("type")?)?,
        order_id: order_of(r, "order_id")?,
        status: event_status(&r.text("status")?)?,
        attempts: super::small(r, "attempts")?,
        last_error: r.opt_text("last_error")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// `id, partition_key, order_id`.
pub fn event_ref(r: &dyn Cols) -> Result<EventRef> {
    Ok(EventRef {
        order_id: OrderId::from_trusted(r.text("order_id")?),
        id: event_id(&r.text("id")?)?,
        partition: PartitionKey::from_stored(r.text("partition_key")?),
    })
}

/// `order_id, sku, category, quantity, refunded, unit_price`.
pub fn order_item(r: &dyn Cols) -> Result<(OrderId, OrderItem)> {
    Ok((
        OrderId::from_trusted(r.text("order_id")?),
        OrderItem {
            sku: Sku::from_trusted(r.text("sku")?),
            category: Category::from_trusted(r.text("category")?),
            quantity: super::small(r, "quantity")?,
            refunded: super::small(r, "refunded")?,
            unit_price: r.money("unit_price")?,
        },
    ))
}

/// Rows decoded with `decode`.
pub fn all<T>(rows: &[super::Row], decode: impl Fn(&dyn Cols) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(|r| decode(r.as_ref())).collect()
}

/// An order's frozen exchange rate (`fx_rate`), None for the program currency.
pub fn fx_rate(r: &dyn Cols) -> Result<Option<Decimal>> {
    r.opt_text("fx_rate")?
        .map(|s| Decimal::from_str_exact(&s).map_err(|_| corrupt(format!("fx_rate {s:?}"))))
        .transpose()
}

/// An order's frozen exchange rate with where it came from (`fx_rate`,
/// `fx_source`, `fx_as_of`).
pub fn fx(r: &dyn Cols) -> Result<Option<crate::domain::currency::Fx>> {
    let Some(rate) = fx_rate(r)? else { return Ok(None) };
    let source = r.text("fx_source")?;
    let source =
        crate::domain::currency::FxSource::parse(&source).ok_or_else(|| corrupt(format!("fx_source {source:?}")))?;
    Ok(Some(crate::domain::currency::Fx { rate, source, as_of: r.opt_time("fx_as_of")? }))
}
