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
