//! Rules 1–9 one at a time, with amounts stated literally as the SPEC does.
use super::*;
use crate::domain::ids::{Category, Sku};
use crate::domain::ledger::{delta, Applied};
use crate::domain::order::OrderItem;
use crate::domain::program::{MilestoneDoc, ProgramDoc, TierDoc};
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn program(change: impl FnOnce(&mut ProgramDoc)) -> Program {
    let mut doc = Program::default_doc();
    doc.holding_days = 0;
    change(&mut doc);
    Program::parse(&doc).expect("valid program")
}

fn item(sku: &str, category: &str, quantity: u32, price: &str) -> OrderItem {
    OrderItem {
        sku: Sku::parse(sku).unwrap(),
        category: Category::parse(category).unwrap(),
        quantity,
        refunded: 0,
        unit_price: d(price),
    }
}

fn aff(id: &str) -> AffiliateSnapshot {
    AffiliateSnapshot { id: AffiliateId::parse(id).unwrap(), suspended: false, buyer_id: None }
}

fn suspended(id: &str) -> AffiliateSnapshot {
    AffiliateSnapshot { suspended: true, ..aff(id) }
}

fn worked_order() -> OrderState {
    OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![
            item("shirt", "fashion", 2, "75000"),
            item("phone", "electronics", 1, "2000000"),
            item("voucher", "gift-card", 1, "100000"),
        ],
        cancelled: false,
    }
}

/// C attributed, upline B then A, first order of buyer x, first order of the month.
fn ctx_cba() -> FrozenContext {
    FrozenContext {
        direct: Some(aff("C")),
        upline: vec![aff("B"), aff("A")],
        volume_before: Decimal::ZERO,
        nth_in_month: 1,
        buyer_first_order: true,
    }
}

fn lines(e: &Entitlement) -> Vec<(String, u8, &'static str, Decimal)> {
    e.commissions.iter().map(|l| (l.affiliate_id.to_string(), l.level, l.kind.as_str(), l.amount)).collect()
}

fn rewards(e: &Entitlement) -> Vec<(&'static str, i64)> {
    e.rewards.iter().map(|r| (r.kind.as_str(), r.points)).collect()
}

#[test]
fn spec_worked_example_and_its_refund() {
    let p = program(|_| {});
    let mut order = worked_order();
    let placed = entitle(&order, &p, &ctx_cba());
    assert_eq!(placed.eligible_amount, d("2150000"));
    assert_eq!(placed.no_commission_reason, None);
    assert_eq!(
        lines(&placed),
        vec![
            ("C".into(), 1, "commission", d("95000")),
            ("B".into(), 2, "commission", d("64500")),
            ("A".into(), 3, "commission", d("21500")),
        ]
    );
    assert_eq!(rewards(&placed), vec![("points", 21500), ("first_order_bonus", 5000)]);

    let mut ledger = Applied::default();
    ledger.add(&delta(&placed, &ledger));

    // Refund of the electronics item.
    order.items[1].refunded = 1;
    let refunded = entitle(&order, &p, &ctx_cba());
    assert_eq!(refunded.eligible_amount, d("150000"));
    let change = delta(&refunded, &ledger);
    let amounts: Vec<(String, Decimal)> =
        change.commissions.iter().map(|l| (l.affiliate_id.to_string(), l.amount)).collect();
    assert_eq!(amounts, vec![("A".into(), d("-20000")), ("B".into(), d("-60000")), ("C".into(), d("-80000"))]);
    let points: Vec<(&str, i64)> = change.rewards.iter().map(|r| (r.kind.as_str(), r.points)).collect();
    assert_eq!(points, vec![("points", -20000)]);
}

#[test]
fn no_commission_reasons_in_rule_order_but_buyer_rewards_stay() {
    let p = program(|_| {});
    let order = worked_order();
    let unattributed = FrozenContext { direct: None, upline: vec![], ..ctx_cba() };
    let e = entitle(&order, &p, &unattributed);
    assert_eq!(e.no_commission_reason, Some(NoCommissionReason::Unattributed));
    assert!(e.commissions.is_empty());
    assert_eq!(rewards(&e), vec![("points", 21500), ("first_order_bonus", 5000)]);

    let e = entitle(&order, &p, &FrozenContext { direct: Some(suspended("C")), ..ctx_cba() });
    assert_eq!(e.no_commission_reason, Some(NoCommissionReason::AffiliateSuspended));
    assert!(e.commissions.is_empty());

    let own = AffiliateSnapshot { buyer_id: Some(BuyerId::parse("x").unwrap()), ..aff("C") };
    let e = entitle(&order, &p, &FrozenContext { direct: Some(own), ..ctx_cba() });
    assert_eq!(e.no_commission_reason, Some(NoCommissionReason::SelfReferral));
    assert!(e.commissions.is_empty());
}

#[test]
fn the_minimum_uses_the_original_eligible_amount() {
    let p = program(|doc| doc.min_order_amount = "100000".into());
    let mut order = OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![item("a", "fashion", 2, "60000"), item("g", "gift-card", 1, "500000")],
        cancelled: false,
    };
    // Eligible 120 000 ≥ 100 000 (the gift card does not count).
    assert_eq!(entitle(&order, &p, &ctx_cba()).commissions[0].amount, d("12000"));
    // A refund brings the current eligible amount to 60 000: still paid, proportionally.
    order.items[0].refunded = 1;
    let e = entitle(&order, &p, &ctx_cba());
    assert_eq!(e.no_commission_reason, None);
    assert_eq!(e.commissions[0].amount, d("6000"));
    // An order bought below the minimum pays nothing.
    order.items[0] = item("a", "fashion", 1, "99999");
    let e = entitle(&order, &p, &ctx_cba());
    assert_eq!(e.no_commission_reason, Some(NoCommissionReason::BelowMinimum));
    assert!(e.commissions.is_empty());
    assert_eq!(rewards(&e), vec![("points", 999), ("first_order_bonus", 5000)]);
}

fn fashion(price: &str) -> OrderState {
    OrderState { buyer_id: BuyerId::parse("x").unwrap(), items: vec![item("a", "fashion", 1, price)], cancelled: false }
}

#[test]
fn tier_bonus_follows_the_volume_before_the_order() {
    let p = program(|doc| {
        doc.tiers = vec![
            TierDoc { monthly_sales_from: "1000000".into(), bonus_rate: "0.02".into() },
            TierDoc { monthly_sales_from: "5000000".into(), bonus_rate: "0.05".into() },
        ]
    });
    let order = fashion("200000");
    let at = |volume: &str| {
        let e = entitle(&order, &p, &FrozenContext { volume_before: d(volume), upline: vec![], ..ctx_cba() });
        lines(&e)
    };
    assert_eq!(at("999999"), vec![("C".into(), 1, "commission", d("20000"))]);
    assert_eq!(
        at("1000000"),
        vec![("C".into(), 1, "commission", d("20000")), ("C".into(), 1, "tier_bonus", d("4000"))]
    );
    assert_eq!(
        at("7000000"),
        vec![("C".into(), 1, "commission", d("20000")), ("C".into(), 1, "tier_bonus", d("10000"))]
    );
}

#[test]
fn milestone_pays_on_the_nth_order_until_cancel_or_full_refund() {
    let p = program(|doc| doc.milestones = vec![MilestoneDoc { nth_order_in_month: 3, bonus: "25000".into() }]);
    let mut order = OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![item("a", "fashion", 1, "100000"), item("b", "fashion", 1, "100000")],
        cancelled: false,
    };
    let third = FrozenContext { nth_in_month: 3, upline: vec![], ..ctx_cba() };
    let second = FrozenContext { nth_in_month: 2, upline: vec![], ..ctx_cba() };
    assert!(!lines(&entitle(&order, &p, &second)).iter().any(|l| l.2 == "milestone_bonus"));
    assert!(lines(&entitle(&order, &p, &third)).contains(&("C".into(), 1, "milestone_bonus", d("25000"))));
    order.items[0].refunded = 1;
    let partial = entitle(&order, &p, &third);
    assert!(lines(&partial).contains(&("C".into(), 1, "milestone_bonus", d("25000"))));
    assert_eq!(rewards(&partial), vec![("points", 1000), ("first_order_bonus", 5000)]);
    order.items[1].refunded = 1;
    let full = entitle(&order, &p, &third);
    assert!(full.commissions.is_empty() && full.rewards.is_empty());
    order.items[1].refunded = 0;
    order.cancelled = true;
    let cancelled = entitle(&order, &p, &third);
    assert!(cancelled.commissions.is_empty() && cancelled.rewards.is_empty());
    assert_eq!(cancelled.eligible_amount, Decimal::ZERO);
}

#[test]
fn cap_cuts_the_tier_bonus_first_then_the_commission() {
    let p = program(|doc| {
        doc.max_commission_per_order = "70000".into();
        doc.tiers = vec![TierDoc { monthly_sales_from: "0".into(), bonus_rate: "0.02".into() }];
    });
    let ctx = FrozenContext { upline: vec![aff("B")], ..ctx_cba() };
    assert_eq!(
        lines(&entitle(&fashion("600000"), &p, &ctx)),
        vec![
            ("C".into(), 1, "commission", d("60000")),
            ("C".into(), 1, "tier_bonus", d("10000")),
            ("B".into(), 2, "commission", d("18000")),
        ]
    );
    assert_eq!(
        lines(&entitle(&fashion("1000000"), &p, &ctx)),
        vec![("C".into(), 1, "commission", d("70000")), ("B".into(), 2, "commission", d("30000"))]
    );
}

#[test]
fn suspended_ancestors_are_skipped_or_forfeit_their_level() {
    let order = fashion("1000000");
    let ctx = FrozenContext { upline: vec![suspended("B"), aff("A"), aff("R")], ..ctx_cba() };
    let skip = program(|_| {});
    assert_eq!(
        lines(&entitle(&order, &skip, &ctx)),
        vec![
            ("C".into(), 1, "commission", d("100000")),
            ("A".into(), 2, "commission", d("30000")),
            ("R".into(), 3, "commission", d("10000")),
        ]
    );
    let forfeit = program(|doc| doc.skip_inactive_upline = false);
    assert_eq!(
        lines(&entitle(&order, &forfeit, &ctx)),
        vec![("C".into(), 1, "commission", d("100000")), ("A".into(), 3, "commission", d("10000"))]
    );
}

#[test]
fn rounding_modes_apply_to_each_amount_once() {
    // 3 × 33.35 = 100.05 eligible; level 1 at 10 % = 10.005.
    let order = OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![item("a", "fashion", 3, "33.35")],
        cancelled: false,
    };
    let ctx = FrozenContext { upline: vec![], buyer_first_order: false, ..ctx_cba() };
    let amount = |scale: u32, rounding: &str| {
        let p = program(|doc| {
            doc.scale = scale;
            doc.rounding = serde_json::from_str(&format!("\"{rounding}\"")).unwrap();
            doc.min_order_amount = "0".into();
        });
        entitle(&order, &p, &ctx).commissions[0].amount
    };
    assert_eq!(amount(0, "floor"), d("10"));
    assert_eq!(amount(2, "floor"), d("10.00"));
    assert_eq!(amount(2, "half_up"), d("10.01"));
    assert_eq!(amount(2, "half_even"), d("10.00"));
}

#[test]
fn month_window_follows_the_program_timezone() {
    let tz: chrono_tz::Tz = "Asia/Jakarta".parse().unwrap();
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // 17:00 UTC on Jan 31 is midnight Feb 1 in Jakarta (UTC+7).
    assert_eq!(month_window(at("2026-01-31T17:00:00Z"), tz), (at("2026-01-31T17:00:00Z"), at("2026-02-28T17:00:00Z")));
    assert_eq!(month_window(at("2026-01-31T16:59:59Z"), tz), (at("2025-12-31T17:00:00Z"), at("2026-01-31T17:00:00Z")));
    assert_eq!(month_window(at("2026-12-15T00:00:00Z"), tz), (at("2026-11-30T17:00:00Z"), at("2026-12-31T17:00:00Z")));
}
