//! Order state as the engine sees it: items net of refunds, and whether the
//! order is cancelled. Built by the store from the order's rows.
use super::ids::{BuyerId, Category, Sku};
use rust_decimal::Decimal;

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
}

impl OrderState {
    /// Σ quantity × unit_price over all items, as bought (the order total).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

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
        OrderState { buyer_id: BuyerId::parse("x").unwrap(), items, cancelled }
    }

    #[test]
    fn the_total_is_as_bought_whatever_was_refunded() {
        let o = order(vec![item(2, 1, "75000"), item(3, 0, "0.5")], false);
        assert_eq!(o.total(), Decimal::from_str("150001.5").unwrap());
        assert_eq!(o.items[0].net_quantity(), 1);
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
