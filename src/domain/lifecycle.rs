//! After intake: whether a refund, cancellation or completion may happen to
//! an order as it stands, and what the order becomes. The event each change
//! records then recomputes the order's entitlement like any other.
use super::event::{EventId, EventStatus, PartitionKey};
use super::ids::{AffiliateId, BuyerId};
use super::order::RefundRequest;
use super::order::{check_refund, status_after_refund, CommissionStatus, LifecycleOutcome, OrderItem, OrderStatus};
use chrono::{DateTime, TimeDelta, Utc};

/// An order's lifecycle state, as locked for a change.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderHead {
    pub buyer_id: BuyerId,
    pub affiliate_id: Option<AffiliateId>,
    pub status: OrderStatus,
    pub completed: bool,
    pub program_version: u64,
    /// The statuses of the order's events.
    pub events: Vec<EventStatus>,
    /// The partition of the order's first event (None: not known).
    pub first_partition: Option<PartitionKey>,
}

impl OrderHead {
    /// The journal partition of the order's events: its first event's, for
    /// the order's whole life — an order moved to another affiliate keeps it,
    /// so its events are still applied one after the other.
    pub fn partition(&self) -> PartitionKey {
        self.first_partition.clone().unwrap_or_else(|| PartitionKey::of(self.affiliate_id.as_ref(), &self.buyer_id))
    }

    /// The order's commission status once a new (pending) event joins its events.
    pub fn status_with_new_event(&self) -> CommissionStatus {
        CommissionStatus::of(self.events.iter().copied().chain([EventStatus::Pending]))
    }
}

/// A refund: the same refund id again is a duplicate (with the same items)
/// or a conflict (with others); a cancelled order has nothing to refund;
/// every line must name a sku of the order and take at most what is left.
/// Ok: the order's status after the refund.
pub fn refund(
    order: &OrderHead,
    earlier: Option<(&[u8], EventId)>,
    items: &[OrderItem],
    req: &RefundRequest,
) -> Result<OrderStatus, LifecycleOutcome> {
    if let Some((hash, event)) = earlier {
        if hash != req.request_hash {
            return Err(LifecycleOutcome::Conflict(format!(
                "refund {} was already accepted with other items",
                req.refund_id
            )));
        }
        return Err(LifecycleOutcome::Duplicate(event));
    }
    if order.status == OrderStatus::Cancelled {
        return Err(LifecycleOutcome::Conflict("the order is cancelled; there is nothing to refund".into()));
    }
    check_refund(items, &req.items).map_err(LifecycleOutcome::Invalid)?;
    Ok(status_after_refund(items, &req.items))
}

/// A cancellation: once (a second is a duplicate), and not after completion
/// (then the return window is over and refunds are the way).
pub fn cancel(order: &OrderHead, earlier: Option<EventId>) -> Result<OrderStatus, LifecycleOutcome> {
    if let Some(event) = earlier {
        return Err(LifecycleOutcome::Duplicate(event));
    }
    if order.completed {
        return Err(LifecycleOutcome::Conflict("the order is completed; use refunds".into()));
    }
    Ok(OrderStatus::Cancelled)
}

/// A completion (the return window is over): once, not for a cancelled
/// order; its entries become approved `holding_days` after `now`. A refunded
/// order keeps saying so (completion shows in its completion time).
/// Ok: the order's status and its approval time.
pub fn complete(
    order: &OrderHead,
    earlier: Option<EventId>,
    holding_days: u32,
    now: DateTime<Utc>,
) -> Result<(OrderStatus, DateTime<Utc>), LifecycleOutcome> {
    if let Some(event) = earlier {
        return Err(LifecycleOutcome::Duplicate(event));
    }
    if order.status == OrderStatus::Cancelled {
        return Err(LifecycleOutcome::Conflict("the order is cancelled".into()));
    }
    let status = if order.status == OrderStatus::Placed { OrderStatus::Completed } else { order.status };
    Ok((status, now + TimeDelta::days(i64::from(holding_days))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{Category, OrderId, RefundId, Sku};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn head(status: OrderStatus, completed: bool) -> OrderHead {
        OrderHead {
            buyer_id: BuyerId::parse("b").unwrap(),
            affiliate_id: None,
            status,
            completed,
            program_version: 1,
            first_partition: None,
            events: vec![EventStatus::Done],
        }
    }

    fn item(sku: &str, quantity: u32, refunded: u32) -> OrderItem {
        OrderItem {
            sku: Sku::parse(sku).unwrap(),
            category: Category::parse("c").unwrap(),
            quantity,
            refunded,
            unit_price: Decimal::ONE,
        }
    }

    fn request(lines: &[(&str, u32)], hash: u8) -> RefundRequest {
        RefundRequest {
            order_id: OrderId::parse("o").unwrap(),
            refund_id: RefundId::parse("r").unwrap(),
            items: lines.iter().map(|(s, q)| (Sku::parse(s).unwrap(), *q)).collect(),
            request_hash: [hash; 32],
            payload: "{}".into(),
        }
    }

    #[test]
    fn a_refund_id_seen_before_is_a_duplicate_or_a_conflict() {
        let order = head(OrderStatus::Placed, false);
        let items = [item("a", 2, 0)];
        let event = EventId::new();
        let same = refund(&order, Some((&[1; 32], event)), &items, &request(&[("a", 1)], 1));
        assert!(matches!(same, Err(LifecycleOutcome::Duplicate(e)) if e == event));
        let other = refund(&order, Some((&[2; 32], event)), &items, &request(&[("a", 1)], 1));
        assert!(matches!(other, Err(LifecycleOutcome::Conflict(m)) if m.contains("other items")));
    }

    #[test]
    fn a_refund_checks_the_order_then_its_lines() {
        let items = [item("a", 2, 1), item("b", 1, 0)];
        let cancelled = refund(&head(OrderStatus::Cancelled, false), None, &items, &request(&[("a", 1)], 1));
        assert!(matches!(cancelled, Err(LifecycleOutcome::Conflict(m)) if m.contains("cancelled")));
        let order = head(OrderStatus::Placed, false);
        let too_many = refund(&order, None, &items, &request(&[("a", 2), ("zz", 1)], 1));
        assert!(matches!(too_many, Err(LifecycleOutcome::Invalid(p)) if p.len() == 2));
        assert_eq!(refund(&order, None, &items, &request(&[("a", 1)], 1)).ok(), Some(OrderStatus::PartiallyRefunded));
        assert_eq!(refund(&order, None, &items, &request(&[("a", 1), ("b", 1)], 1)).ok(), Some(OrderStatus::Refunded));
    }

    #[test]
    fn cancel_once_and_never_after_completion() {
        let event = EventId::new();
        assert!(matches!(cancel(&head(OrderStatus::Placed, false), Some(event)), Err(LifecycleOutcome::Duplicate(_))));
        assert!(matches!(cancel(&head(OrderStatus::Completed, true), None), Err(LifecycleOutcome::Conflict(_))));
        assert_eq!(cancel(&head(OrderStatus::PartiallyRefunded, false), None).ok(), Some(OrderStatus::Cancelled));
    }

    #[test]
    fn complete_once_not_when_cancelled_and_a_refunded_order_stays_refunded() {
        let now = Utc::now();
        let event = EventId::new();
        assert!(matches!(
            complete(&head(OrderStatus::Placed, false), Some(event), 7, now),
            Err(LifecycleOutcome::Duplicate(e)) if e == event
        ));
        assert!(matches!(
            complete(&head(OrderStatus::Cancelled, false), None, 7, now),
            Err(LifecycleOutcome::Conflict(_))
        ));
        assert_eq!(
            complete(&head(OrderStatus::Placed, false), None, 7, now).ok(),
            Some((OrderStatus::Completed, now + TimeDelta::days(7)))
        );
        assert_eq!(
            complete(&head(OrderStatus::PartiallyRefunded, false), None, 0, now).ok(),
            Some((OrderStatus::PartiallyRefunded, now))
        );
    }

    proptest! {
        /// Whatever is left and asked, an accepted refund never takes more
        /// than is left of any line, and the order is refunded exactly when
        /// nothing is left afterwards.
        #[test]
        fn an_accepted_refund_takes_no_more_than_is_left(
            lines in proptest::collection::vec((1u32..5, 0u32..5), 1..4),
            asks in proptest::collection::vec((0usize..4, 1u32..6), 1..4),
        ) {
            let items: Vec<OrderItem> = lines
                .iter()
                .enumerate()
                .map(|(i, (q, r))| item(&format!("s{i}"), *q + *r, *r))
                .collect();
            let mut asked: Vec<(String, u32)> = Vec::new();
            for (i, q) in asks {
                let sku = format!("s{i}");
                if !asked.iter().any(|(s, _)| *s == sku) {
                    asked.push((sku, q));
                }
            }
            let lines: Vec<(&str, u32)> = asked.iter().map(|(s, q)| (s.as_str(), *q)).collect();
            let req = request(&lines, 1);
            match refund(&head(OrderStatus::Placed, false), None, &items, &req) {
                Ok(status) => {
                    let mut all_gone = true;
                    for it in &items {
                        let taken = lines.iter().find(|(s, _)| *s == it.sku.as_str()).map_or(0, |(_, q)| *q);
                        prop_assert!(taken <= it.net_quantity());
                        all_gone &= taken == it.net_quantity();
                    }
                    prop_assert_eq!(status == OrderStatus::Refunded, all_gone);
                }
                Err(LifecycleOutcome::Invalid(problems)) => prop_assert!(!problems.is_empty()),
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
