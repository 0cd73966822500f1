//! Orders: the validated request intake receives, the state the rules see
//! (items net of refunds, cancellation), the statuses, and the rules about an
//! order that are not about commissions: its eligible amount, what a refund
//! may take back, and where its commissions stand.
use super::attribution::CouponCode;
use super::event::{EventId, EventRef, EventStatus};
use super::ids::{AffiliateId, BuyerId, Category, OrderId, ReferralCode, RefundId, Sku};
use super::program::Program;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// How a storefront attributes an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    ReferralCode(ReferralCode),
    AffiliateId(AffiliateId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub sku: Sku,
    pub category: Category,
    pub quantity: u32,
    pub unit_price: Decimal,
}

/// The most coupon codes an order may carry.
pub const MAX_COUPONS: usize = 10;
/// The most click ids an order may carry.
pub const MAX_CLICKS: usize = 20;

/// A validated order request, built at the edge and handed inward.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: OrderId,
    pub buyer_id: BuyerId,
    pub attribution: Option<Attribution>,
    /// Coupon codes, in the order given (at most [`MAX_COUPONS`]).
    pub coupons: Vec<CouponCode>,
    /// Click ids, newest last, as sent (at most [`MAX_CLICKS`]); checked at intake.
    pub click_ids: Vec<String>,
    /// SHA-256 of the buyer's e-mail (self-referral rule).
    pub buyer_email_hash: Option<super::affiliate::EmailHash>,
    pub currency: String,
    /// 1 unit of `currency` = this many units of the program's (another
    /// currency than the program's only; else the rate table's is used).
    pub fx_rate: Option<Decimal>,
    pub placed_at: Option<DateTime<Utc>>,
    pub items: Vec<NewItem>,
    /// SHA-256 of the normalised request: an identical retry has the same hash.
    pub request_hash: [u8; 32],
    /// The normalised request as JSON, kept as the event payload.
    pub payload: String,
}

impl NewOrder {
    /// The order's state before any refund.
    pub fn state(&self) -> OrderState {
        OrderState::placed(&self.buyer_id, &self.items)
    }
    /// The order's state before any refund, converted at `fx` when the
    /// order is in another currency.
    pub fn state_at(&self, fx: Option<&super::currency::Fx>) -> OrderState {
        OrderState { fx_rate: fx.map(|f| f.rate), ..self.state() }
    }
}

/// What intake answered for one order.
#[derive(Debug)]
pub enum CreateOrder {
    Accepted(EventRef),
    /// The same request was accepted before: its event.
    Duplicate(EventId),
    /// The id is taken by an order with other data.
    Conflict,
    /// Refused by a rule that needs the program or the stored rates (the
    /// currency, its minor units, no rate known): a 422 with these fields.
    Invalid(Vec<super::FieldError>),
}

/// A validated refund request.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    pub items: Vec<(Sku, u32)>,
    pub request_hash: [u8; 32],
    pub payload: String,
}

/// What a refund, cancel or complete request came to.
#[derive(Debug)]
pub enum LifecycleOutcome {
    Accepted(EventRef),
    /// The same request was accepted before: its event.
    Duplicate(EventId),
    Conflict(String),
    Invalid(Vec<RefundProblem>),
    NotFound,
}

/// Why a refund line cannot be taken (index into the request's items).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundProblem {
    UnknownSku { line: usize },
    MoreThanLeft { line: usize, left: u32 },
}

/// The refund rule: every line names a sku of the order and takes at most
/// what is left of it (bought − refunded). Returns every problem at once.
pub fn check_refund(items: &[OrderItem], request: &[(Sku, u32)]) -> Result<(), Vec<RefundProblem>> {
    let left: HashMap<&str, u32> = items.iter().map(|i| (i.sku.as_str(), i.net_quantity())).collect();
    let problems: Vec<RefundProblem> = request
        .iter()
        .enumerate()
        .filter_map(|(line, (sku, quantity))| match left.get(sku.as_str()) {
            None => Some(RefundProblem::UnknownSku { line }),
            Some(&l) if *quantity > l => Some(RefundProblem::MoreThanLeft { line, left: l }),
            Some(_) => None,
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The order's status after a (valid) refund: refunded once nothing is left.
pub fn status_after_refund(items: &[OrderItem], request: &[(Sku, u32)]) -> OrderStatus {
    let taken: HashMap<&str, u32> = request.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    let nothing_left =
        items.iter().all(|i| i.net_quantity().saturating_sub(taken.get(i.sku.as_str()).copied().unwrap_or(0)) == 0);
    if nothing_left {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Completed,
    Cancelled,
    PartiallyRefunded,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "placed" => Self::Placed,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "partially_refunded" => Self::PartiallyRefunded,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }
}

/// Where an order's commissions stand: `processed` once every event is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommissionStatus {
    Pending,
    Processed,
    Failed,
    Dead,
}

impl CommissionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processed => "processed",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "processed" => Self::Processed,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            _ => return None,
        })
    }

    /// The rule: the order's commission status given the statuses of all its
    /// events — dead over failed over open over processed.
    pub fn of(events: impl IntoIterator<Item = EventStatus>) -> Self {
        let (mut dead, mut failed, mut open) = (false, false, false);
        for s in events {
            match s {
                EventStatus::Dead => dead = true,
                EventStatus::Failed => failed = true,
                EventStatus::Pending | EventStatus::Processing => open = true,
                EventStatus::Done => {}
            }
        }
        if dead {
            Self::Dead
        } else if failed {
            Self::Failed
        } else if open {
            Self::Pending
        } else {
            Self::Processed
        }
    }
}

/// Σ net quantity × unit price over items the program does not exclude
/// (SPEC §4 rule 1), in the program currency; 0 when cancelled.
pub fn eligible(state: &OrderState, program: &Program) -> Decimal {
    if state.cancelled {
        return Decimal::ZERO;
    }
    state
        .items
        .iter()
        .filter(|i| !program.is_excluded(i.category.as_str()))
        .map(|i| state.line_amount(i, i.net_quantity(), program))
        .sum()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub sku: Sku,
    pub category: Category,
    /// Quantity bought (1..=1_000_000).
    pub quantity: u32,
    /// Quantity refunded so far (0..=quantity).
    pub refunded: u32,
    /// Unit price, ≥ 0, at most 4 decimals.
    pub unit_price: Decimal,
}

impl OrderItem {
    pub fn net_quantity(&self) -> u32 {
        self.quantity - self.refunded
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    pub buyer_id: BuyerId,
    pub items: Vec<OrderItem>,
    pub cancelled: bool,
    /// The rate frozen at intake when the order is in another currency than
    /// the program's (unit prices are in the order's currency); None: the
    /// program's currency.
    pub fx_rate: Option<Decimal>,
}

impl OrderState {
    /// A new order's state: these items, nothing refunded, not cancelled.
    pub fn placed(buyer_id: &BuyerId, items: &[NewItem]) -> Self {
        OrderState {
            buyer_id: buyer_id.clone(),
            items: items
                .iter()
                .map(|i| OrderItem {
                    sku: i.sku.clone(),
                    category: i.category.clone(),
                    quantity: i.quantity,
                    refunded: 0,
                    unit_price: i.unit_price,
                })
                .collect(),
            cancelled: false,
            fx_rate: None,
        }
    }

    /// `quantity` units of `item` in the program currency (see
    /// [`super::currency::line_amount`]).
    pub fn line_amount(&self, item: &OrderItem, quantity: u32, program: &Program) -> Decimal {
        super::currency::line_amount(quantity, item.unit_price, self.fx_rate, program.scale, program.rounding)
    }

    /// Σ quantity × unit_price over all items, as bought (the order total),
    /// in the order's currency.
    pub fn total(&self) -> Decimal {
        self.items.iter().map(|i| Decimal::from(i.quantity) * i.unit_price).sum()
    }
    /// True when every item's whole quantity has been refunded.
    pub fn fully_refunded(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.refunded >= i.quantity)
    }
    /// True when cancelled or fully refunded: every entitlement is zero.
    pub fn voided(&self) -> bool {
        self.cancelled || self.fully_refunded()
    }
}

/// An order's total, Σ quantity × unit price, is below 10^12 — the bound of
/// one unit price. It keeps every sum an order reaches far inside its column:
/// an affiliate earns at most about 3 × 10^12 per order (level and tier rates
/// are at most 1, a milestone bonus below 10^12), so a balance (DECIMAL(28,4),
/// below 10^24) holds 3 × 10^11 of the largest orders; a buyer earns below
/// 10^12 + 10^9 points per order, and a points balance (DECIMAL(28,0)) holds
/// 10^16 of them. At 1 000 orders a second either is centuries away.
pub const MAX_ORDER_TOTAL_DIGITS: u32 = 12;

/// Whether the items' total, Σ quantity × unit price, is below
/// 10^[`MAX_ORDER_TOTAL_DIGITS`]. Exact: 500 items × 10^6 × 10^12 fits a `Decimal`.
pub fn check_total(items: &[NewItem]) -> Result<(), String> {
    let bound = Decimal::from(10u64.pow(MAX_ORDER_TOTAL_DIGITS));
    let total = items
        .iter()
        .try_fold(Decimal::ZERO, |sum, i| sum.checked_add(Decimal::from(i.quantity).checked_mul(i.unit_price)?));
    match total {
        Some(t) if t < bound => Ok(()),
        _ => Err(format!("the order total (Σ quantity × unit_price) must be below 10^{MAX_ORDER_TOTAL_DIGITS}")),
    }
}

/// The earliest `placed_at` accepted: 2000-01-01T00:00:00Z.
pub const EARLIEST_PLACED_AT: &str = "2000-01-01T00:00:00Z";
/// How far ahead of the server's clock a `placed_at` may be (clock skew).
pub const PLACED_AT_MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Whether a shop could have placed an order at `t`, seen at `now`: not
/// before 2000, at most a day ahead of the clock, and not a leap second
/// (`23:59:60`: neither backend can store it, and no shop's clock shows one).
/// Outside the window the month rules could not be trusted either (a buyer's
/// "first order" in 2040 would come before the orders of today).
pub fn check_placed_at(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    use chrono::Timelike;
    let earliest: DateTime<Utc> = EARLIEST_PLACED_AT.parse().expect("a valid constant");
    if t.nanosecond() >= 1_000_000_000 {
        return Err("must not be a leap second (23:59:60)".into());
    }
    if t < earliest {
        return Err(format!("must not be before {EARLIEST_PLACED_AT}"));
    }
    if t > now + PLACED_AT_MAX_AHEAD {
        return Err("must not be more than a day in the future".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn new_item(quantity: u32, unit_price: &str) -> NewItem {
        NewItem {
            sku: crate::domain::ids::Sku::parse("s").unwrap(),
            category: crate::domain::ids::Category::parse("c").unwrap(),
            quantity,
            unit_price: Decimal::from_str(unit_price).unwrap(),
        }
    }

    #[test]
    fn an_order_total_must_be_below_10_to_the_12() {
        assert!(check_total(&[new_item(1, "999999999999.9999")]).is_ok());
        assert!(check_total(&[new_item(4, "249999999999.9999"), new_item(1, "0.0003")]).is_ok());
        assert!(check_total(&[new_item(4, "249999999999.9999"), new_item(1, "0.0004")]).is_err());
        assert!(check_total(&[new_item(2, "500000000000")]).is_err());
        // The largest the item limits allow: 500 items × 10^6 × (10^12 − 10^-4).
        let huge: Vec<_> = (0..500).map(|_| new_item(1_000_000, "999999999999.9999")).collect();
        assert!(check_total(&huge).is_err());
    }

    #[test]
    fn placed_at_is_accepted_from_2000_to_a_day_ahead_and_never_on_a_leap_second() {
        let now: DateTime<Utc> = "2026-12-03T12:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(check_placed_at(at("2000-01-01T00:00:00Z"), now).is_ok());
        assert!(check_placed_at(at("1999-12-31T23:59:59.999999Z"), now).is_err());
        assert!(check_placed_at(now + PLACED_AT_MAX_AHEAD, now).is_ok());
        assert!(check_placed_at(now + PLACED_AT_MAX_AHEAD + chrono::TimeDelta::microseconds(1), now).is_err());
        let leap = chrono::DateTime::parse_from_rfc3339("2026-06-30T23:59:60Z").unwrap().to_utc();
        assert!(check_placed_at(leap, now).is_err());
        assert!(check_placed_at(at("2026-06-30T23:59:59.999999Z"), now).is_ok());
    }

    fn item(quantity: u32, refunded: u32, price: &str) -> OrderItem {
        OrderItem {
            sku: Sku::parse(&format!("sku-{price}")).unwrap(),
            category: Category::parse("fashion").unwrap(),
            quantity,
            refunded,
            unit_price: Decimal::from_str(price).unwrap(),
        }
    }

    fn order(items: Vec<OrderItem>, cancelled: bool) -> OrderState {
        OrderState { buyer_id: BuyerId::parse("x").unwrap(), items, cancelled, fx_rate: None }
    }

    #[test]
    fn the_total_is_as_bought_whatever_was_refunded() {
        let o = order(vec![item(2, 1, "75000"), item(3, 0, "0.5")], false);
        assert_eq!(o.total(), Decimal::from_str("150001.5").unwrap());
        assert_eq!(o.items[0].net_quantity(), 1);
    }

    #[test]
    fn a_refund_takes_at_most_what_is_left_of_skus_the_order_has() {
        let items = vec![item(2, 1, "75000"), item(3, 0, "0.5")];
        let sku = |s: &str| Sku::parse(s).unwrap();
        assert_eq!(check_refund(&items, &[(sku("sku-75000"), 1), (sku("sku-0.5"), 3)]), Ok(()));
        assert_eq!(
            check_refund(&items, &[(sku("sku-75000"), 2), (sku("nope"), 1), (sku("sku-0.5"), 1)]),
            Err(vec![RefundProblem::MoreThanLeft { line: 0, left: 1 }, RefundProblem::UnknownSku { line: 1 }])
        );
        assert_eq!(status_after_refund(&items, &[(sku("sku-75000"), 1)]), OrderStatus::PartiallyRefunded);
        assert_eq!(status_after_refund(&items, &[(sku("sku-75000"), 1), (sku("sku-0.5"), 3)]), OrderStatus::Refunded);
    }

    #[test]
    fn eligible_is_net_of_refunds_without_excluded_categories_and_zero_when_cancelled() {
        let program = Program::parse(&Program::default_doc()).unwrap();
        let mut voucher = item(1, 0, "100000");
        voucher.category = Category::parse("gift-card").unwrap();
        let o = order(vec![item(2, 1, "75000"), voucher], false);
        assert_eq!(eligible(&o, &program), Decimal::from(75000));
        assert_eq!(eligible(&OrderState { cancelled: true, ..o }, &program), Decimal::ZERO);
    }

    #[test]
    fn commission_status_is_dead_over_failed_over_open_over_processed() {
        use EventStatus::*;
        assert_eq!(CommissionStatus::of([Done, Done]), CommissionStatus::Processed);
        assert_eq!(CommissionStatus::of([Done, Pending]), CommissionStatus::Pending);
        assert_eq!(CommissionStatus::of([Processing, Failed, Done]), CommissionStatus::Failed);
        assert_eq!(CommissionStatus::of([Failed, Dead, Pending]), CommissionStatus::Dead);
        assert_eq!(CommissionStatus::of([]), CommissionStatus::Processed);
    }

    #[test]
    fn voided_means_cancelled_or_every_unit_refunded() {
        assert!(!order(vec![item(2, 1, "1"), item(1, 1, "2")], false).voided());
        assert!(order(vec![item(2, 2, "1"), item(1, 1, "2")], false).fully_refunded());
        assert!(order(vec![item(2, 0, "1")], true).voided());
        assert!(!order(vec![item(2, 0, "1")], true).fully_refunded());
        // Not reachable from the API (orders have 1-500 items), but not "fully refunded".
        assert!(!order(vec![], false).voided());
    }
}
