//! What each event records as its payload in the event log (JSON; the
//! operator reads it in `GET /admin/events/{id}`). An order's and a
//! refund's events keep the request body as the storefront sent it; the
//! others are written here.
use super::ids::{AffiliateId, BuyerId, OrderId};
use super::ledger::Delta;
use super::money;
use super::wallet::Redemption;
use chrono::{DateTime, Utc};
use serde_json::json;

/// `order.cancelled`.
pub fn cancelled(order: &OrderId) -> String {
    json!({"order_id": order}).to_string()
}

/// `order.reattributed`: from whom to whom, and why.
pub fn reattributed(order: &OrderId, from: Option<&AffiliateId>, to: &AffiliateId, reason: &str) -> String {
    json!({"order_id": order, "from": from, "to": to, "reason": reason}).to_string()
}

/// `order.completed`: when the order's entries become approved.
pub fn completed(order: &OrderId, approve_at: DateTime<Utc>) -> String {
    json!({"order_id": order, "approve_at": approve_at}).to_string()
}

/// `order.recomputed`: the delta the event writes.
pub fn recomputed(order: &OrderId, delta: &Delta) -> String {
    let commissions = delta.commissions.iter().map(|l| {
        json!({"affiliate_id": l.affiliate_id, "level": l.level, "kind": l.kind.as_str(), "amount": money::format(l.amount)})
    });
    let rewards =
        delta.rewards.iter().map(|l| json!({"buyer_id": l.buyer_id, "kind": l.kind.as_str(), "points": l.points}));
    json!({"order_id": order, "delta": commissions.chain(rewards).collect::<Vec<_>>()}).to_string()
}

/// `redemption.held|captured|released|expired`: the redemption after the change.
pub fn redemption(r: &Redemption) -> String {
    json!({
        "buyer_id": r.buyer_id,
        "redemption_id": r.id,
        "points": r.points,
        "order_id": r.order_id,
        "value": money::format(r.value),
        "status": r.status.as_str(),
    })
    .to_string()
}

/// `points.expired`.
pub fn points_expired(buyer: &BuyerId, points: i64) -> String {
    json!({"buyer_id": buyer, "points": points}).to_string()
}

/// `commission.adjusted` / `points.adjusted`: the adjustment as asked for, and by whom.
pub fn adjustment(a: &super::adjustment::Adjustment) -> String {
    use super::adjustment::Adjusted;
    let mut v = json!({
        "adjustment_id": a.request.id,
        "reason": a.request.reason,
        "actor": a.actor,
    });
    match &a.request.adjusted {
        Adjusted::Commission { affiliate_id, amount } => {
            v["affiliate_id"] = json!(affiliate_id);
            v["amount"] = json!(money::format(*amount));
        }
        Adjusted::Points { buyer_id, points } => {
            v["buyer_id"] = json!(buyer_id);
            v["points"] = json!(points);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entitlement::{CommissionKind, CommissionLine, RewardKind, RewardLine};
    use crate::domain::ids::{AffiliateId, RedemptionId};
    use crate::domain::wallet::RedemptionStatus;
    use chrono::TimeZone;
    use rust_decimal::Decimal;
    use serde_json::Value;

    fn parsed(s: String) -> Value {
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn lifecycle_payloads_name_the_order() {
        let o = OrderId::parse("o-1").unwrap();
        assert_eq!(parsed(cancelled(&o)), json!({"order_id": "o-1"}));
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 1, 2, 3).unwrap();
        assert_eq!(parsed(completed(&o, at)), json!({"order_id": "o-1", "approve_at": "2026-12-05T01:02:03Z"}));
    }

    #[test]
    fn a_recompute_records_its_delta_lines_with_money_as_strings() {
        let delta = Delta {
            commissions: vec![CommissionLine {
                affiliate_id: AffiliateId::parse("C").unwrap(),
                level: 1,
                kind: CommissionKind::Commission,
                amount: Decimal::new(-15_0000, 4),
            }],
            rewards: vec![RewardLine { buyer_id: BuyerId::parse("x").unwrap(), kind: RewardKind::Points, points: -20 }],
        };
        let v = parsed(recomputed(&OrderId::parse("o-1").unwrap(), &delta));
        assert_eq!(v["order_id"], "o-1");
        assert_eq!(v["delta"][0], json!({"affiliate_id": "C", "level": 1, "kind": "commission", "amount": "-15"}));
        assert_eq!(v["delta"][1], json!({"buyer_id": "x", "kind": "points", "points": -20}));
    }

    #[test]
    fn wallet_payloads_carry_the_redemption_and_the_points() {
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap();
        let r = Redemption {
            buyer_id: BuyerId::parse("x").unwrap(),
            id: RedemptionId::parse("r-1").unwrap(),
            points: 500,
            order_id: None,
            status: RedemptionStatus::Held,
            value: Decimal::new(5000, 1),
            program_version: 1,
            hold_until: at,
            created_at: at,
            updated_at: at,
        };
        let v = parsed(redemption(&r));
        assert_eq!(
            v,
            json!({"buyer_id": "x", "redemption_id": "r-1", "points": 500, "order_id": null, "value": "500", "status": "held"})
        );
        assert_eq!(parsed(points_expired(&r.buyer_id, 26_500)), json!({"buyer_id": "x", "points": 26500}));
    }
}
