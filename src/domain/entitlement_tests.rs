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
    AffiliateSnapshot {
        id: AffiliateId::parse(id).unwrap(),
        suspended: false,
        buyer_id: None,
        email_hash: None,
        unqualified: false,
        caps: None,
    }
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
        fx_rate: None,
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
        buyer_email_hash: None,
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
    assert_eq!(refunded.original_eligible_amount, d("2150000"));
    assert_eq!(
        lines(&refunded),
        vec![
            ("C".into(), 1, "commission", d("15000")),
            ("B".into(), 2, "commission", d("4500")),
            ("A".into(), 3, "commission", d("1500")),
        ]
    );
    assert_eq!(rewards(&refunded), vec![("points", 1500), ("first_order_bonus", 5000)]);
    let change = delta(&refunded, &ledger);
    let amounts: Vec<(String, Decimal)> =
        change.commissions.iter().map(|l| (l.affiliate_id.to_string(), l.amount)).collect();
    assert_eq!(amounts, vec![("A".into(), d("-20000")), ("B".into(), d("-60000")), ("C".into(), d("-80000"))]);
    let points: Vec<(&str, i64)> = change.rewards.iter().map(|r| (r.kind.as_str(), r.points)).collect();
    assert_eq!(points, vec![("points", -20000)]);
    assert!(change.commissions.iter().all(|l| l.kind == CommissionKind::Commission));
    assert_eq!(change.commissions.iter().map(|l| l.level).collect::<Vec<_>>(), vec![3, 2, 1]);

    // Writing that delta leaves nothing to do: a replay of the refund writes nothing.
    ledger.add(&change);
    assert!(delta(&refunded, &ledger).is_empty());
    assert_eq!(ledger.commissions[&(AffiliateId::parse("C").unwrap(), CommissionKind::Commission)], (1, d("15000")));
    assert_eq!(ledger.rewards[&(BuyerId::parse("x").unwrap(), RewardKind::Points)], 1500);
}

#[test]
fn excluded_categories_earn_nothing_and_category_rates_override_level_one_only() {
    let p = program(|_| {});
    let order = OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![item("phone", "electronics", 1, "1000000"), item("voucher", "gift-card", 3, "500000")],
        cancelled: false,
        fx_rate: None,
    };
    let ctx = FrozenContext { upline: vec![aff("B")], buyer_first_order: false, ..ctx_cba() };
    let e = entitle(&order, &p, &ctx);
    assert_eq!(e.eligible_amount, d("1000000"));
    assert_eq!(e.original_eligible_amount, d("1000000"));
    // Level 1 at the electronics rate 4 %; level 2 at its level rate 3 % of eligible.
    assert_eq!(lines(&e), vec![("C".into(), 1, "commission", d("40000")), ("B".into(), 2, "commission", d("30000"))]);
    assert_eq!(rewards(&e), vec![("points", 10000)]);

    // Only gift cards: nothing eligible, so below the minimum, and no points.
    let gift_only = OrderState { items: vec![item("voucher", "gift-card", 1, "900000")], ..order.clone() };
    let e = entitle(&gift_only, &p, &ctx);
    assert_eq!(e.eligible_amount, Decimal::ZERO);
    assert_eq!(e.no_commission_reason, Some(NoCommissionReason::BelowMinimum));
    assert!(e.commissions.is_empty() && e.rewards.is_empty());

    // Without the exclusion the gift card earns the default level-1 rate.
    let p = program(|doc| doc.excluded_categories.clear());
    let e = entitle(&gift_only, &p, &FrozenContext { upline: vec![], ..ctx });
    assert_eq!(lines(&e), vec![("C".into(), 1, "commission", d("90000"))]);
}

#[test]
fn first_order_bonus_falls_to_zero_on_cancel_or_full_refund_only() {
    let p = program(|_| {});
    let mut order = worked_order();
    let ctx = ctx_cba();
    let bonus = |o: &OrderState, c: &FrozenContext| {
        entitle(o, &p, c).rewards.iter().find(|r| r.kind == RewardKind::FirstOrderBonus).map(|r| r.points)
    };
    assert_eq!(bonus(&order, &ctx), Some(5000));
    assert_eq!(bonus(&order, &FrozenContext { buyer_first_order: false, ..ctx_cba() }), None);
    order.items[0].refunded = 2;
    order.items[1].refunded = 1;
    // Only the gift card is left: eligible 0, no points, but the order still stands.
    assert_eq!(rewards(&entitle(&order, &p, &ctx)), vec![("first_order_bonus", 5000)]);
    order.items[2].refunded = 1;
    assert!(order.fully_refunded());
    assert_eq!(bonus(&order, &ctx), None);
    order.items[2].refunded = 0;
    order.cancelled = true;
    assert_eq!(bonus(&order, &ctx), None);
    // Voided orders keep their no-commission reason for the record.
    let e = entitle(&order, &p, &FrozenContext { direct: None, ..ctx_cba() });
    assert_eq!(e.no_commission_reason, Some(NoCommissionReason::Unattributed));
    assert_eq!(e.original_eligible_amount, d("2150000"));
}

#[test]
fn a_short_or_suspended_upline_pays_only_who_is_there() {
    let order = fashion("1000000");
    let p = program(|_| {});
    // One ancestor for two upline levels: level 3 is simply not paid.
    let e = entitle(&order, &p, &FrozenContext { upline: vec![aff("B")], ..ctx_cba() });
    assert_eq!(lines(&e), vec![("C".into(), 1, "commission", d("100000")), ("B".into(), 2, "commission", d("30000"))]);
    // Every ancestor suspended: only the direct affiliate is paid, either way.
    for skip in [true, false] {
        let p = program(|doc| doc.skip_inactive_upline = skip);
        let ctx = FrozenContext { upline: vec![suspended("B"), suspended("A")], ..ctx_cba() };
        assert_eq!(lines(&entitle(&order, &p, &ctx)), vec![("C".into(), 1, "commission", d("100000"))]);
    }
    // More ancestors than levels: the extra ones get nothing.
    let ctx = FrozenContext { upline: vec![aff("B"), aff("A"), aff("R"), aff("S")], ..ctx_cba() };
    assert_eq!(entitle(&order, &p, &ctx).commissions.len(), 3);
    // A suspended direct affiliate pays no upline either (rule 2 stops all commission).
    let ctx = FrozenContext { direct: Some(suspended("C")), upline: vec![aff("B")], ..ctx_cba() };
    assert!(entitle(&order, &p, &ctx).commissions.is_empty());
}

#[test]
fn an_unqualified_ancestor_is_skipped_or_forfeits_its_level() {
    let order = fashion("1000000");
    let unqualified = AffiliateSnapshot { unqualified: true, ..aff("B") };
    let ctx = FrozenContext { upline: vec![unqualified, aff("A")], ..ctx_cba() };
    // Skipped: A moves up to level 2 (3 % of 1 000 000).
    let e = entitle(&order, &program(|doc| doc.skip_inactive_upline = true), &ctx);
    assert_eq!(lines(&e), vec![("C".into(), 1, "commission", d("100000")), ("A".into(), 2, "commission", d("30000"))]);
    // Forfeited: level 2 is not paid, A keeps level 3 (1 %).
    let e = entitle(&order, &program(|doc| doc.skip_inactive_upline = false), &ctx);
    assert_eq!(lines(&e), vec![("C".into(), 1, "commission", d("100000")), ("A".into(), 3, "commission", d("10000"))]);
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
    let e = entitle(&order, &p, &FrozenContext { direct: Some(own.clone()), ..ctx_cba() });
    assert_eq!(e.no_commission_reason, Some(NoCommissionReason::SelfReferral));
    assert!(e.commissions.is_empty());

    // The same e-mail (hashed) on the order and the affiliate is a self-referral too.
    let hash = crate::domain::affiliate::EmailHash::parse(&"ab".repeat(32)).unwrap();
    let by_mail = AffiliateSnapshot { email_hash: Some(hash.clone()), ..aff("C") };
    let ctx = FrozenContext { direct: Some(by_mail.clone()), buyer_email_hash: Some(hash), ..ctx_cba() };
    assert_eq!(entitle(&order, &p, &ctx).no_commission_reason, Some(NoCommissionReason::SelfReferral));
    let other = crate::domain::affiliate::EmailHash::parse(&"cd".repeat(32)).unwrap();
    let ctx = FrozenContext { direct: Some(by_mail.clone()), buyer_email_hash: Some(other), ..ctx_cba() };
    assert_eq!(entitle(&order, &p, &ctx).no_commission_reason, None);
    let ctx = FrozenContext { direct: Some(by_mail), buyer_email_hash: None, ..ctx_cba() };
    assert_eq!(entitle(&order, &p, &ctx).no_commission_reason, None, "an order without a hash");

    // A program that allows self-referral pays the affiliate's own purchase as any other.
    let allowed = program(|doc| doc.attribution.self_referral = "allowed".into());
    let e = entitle(&order, &allowed, &FrozenContext { direct: Some(own), ..ctx_cba() });
    assert_eq!(e.no_commission_reason, None);
    assert_eq!(e, entitle(&order, &allowed, &ctx_cba()));
}

#[test]
fn the_minimum_uses_the_original_eligible_amount() {
    let p = program(|doc| doc.min_order_amount = "100000".into());
    let mut order = OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![item("a", "fashion", 2, "60000"), item("g", "gift-card", 1, "500000")],
        cancelled: false,
        fx_rate: None,
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
    OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![item("a", "fashion", 1, price)],
        cancelled: false,
        fx_rate: None,
    }
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
        fx_rate: None,
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
        fx_rate: None,
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
    assert_eq!(amount(0, "half_up"), d("10"));
    assert_eq!(amount(0, "half_even"), d("10"));
    assert_eq!(amount(2, "floor"), d("10.00"));
    assert_eq!(amount(2, "half_up"), d("10.01"));
    assert_eq!(amount(2, "half_even"), d("10.00"));
}

#[test]
fn rounding_modes_at_a_midpoint_and_points_always_floor() {
    // 25 × 1.00 at 10 % = 2.5 (scale 0) and 0.25 × 10 % = 0.025 (scale 2): exact midpoints.
    let order = |price: &str| OrderState {
        buyer_id: BuyerId::parse("x").unwrap(),
        items: vec![item("a", "fashion", 25, price)],
        cancelled: false,
        fx_rate: None,
    };
    let ctx = FrozenContext { upline: vec![], buyer_first_order: false, ..ctx_cba() };
    let run = |scale: u32, rounding: &str, price: &str| {
        let p = program(|doc| {
            doc.scale = scale;
            doc.rounding = serde_json::from_str(&format!("\"{rounding}\"")).unwrap();
            doc.min_order_amount = "0".into();
            doc.buyer_rewards.points_rate = "0.099".into();
        });
        let e = entitle(&order(price), &p, &ctx);
        (e.commissions[0].amount, rewards(&e))
    };
    // 25 × 1 × 0.099 = 2.475 points → 2 under every mode.
    assert_eq!(run(0, "floor", "1"), (d("2"), vec![("points", 2)]));
    assert_eq!(run(0, "half_even", "1"), (d("2"), vec![("points", 2)]));
    assert_eq!(run(0, "half_up", "1"), (d("3"), vec![("points", 2)]));
    assert_eq!(run(0, "half_even", "1.4"), (d("4"), vec![("points", 3)]));
    assert_eq!(run(2, "floor", "0.01"), (d("0.02"), vec![]));
    assert_eq!(run(2, "half_even", "0.01"), (d("0.02"), vec![]));
    assert_eq!(run(2, "half_up", "0.01"), (d("0.03"), vec![]));
}

#[test]
fn month_window_follows_the_program_timezone() {
    let tz: chrono_tz::Tz = "Asia/Jakarta".parse().unwrap();
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // 17:00 UTC on Jan 31 is midnight Feb 1 in Jakarta (UTC+7).
    assert_eq!(month_window(at("2026-01-31T17:00:00Z"), tz), (at("2026-01-31T17:00:00Z"), at("2026-02-28T17:00:00Z")));
    assert_eq!(month_window(at("2026-01-31T16:59:59Z"), tz), (at("2025-12-31T17:00:00Z"), at("2026-01-31T17:00:00Z")));
    assert_eq!(month_window(at("2026-12-15T00:00:00Z"), tz), (at("2026-11-30T17:00:00Z"), at("2026-12-31T17:00:00Z")));
    // 2026-12-31T17:00Z is already January 2027 in Jakarta.
    assert_eq!(month_window(at("2026-12-31T17:00:00Z"), tz), (at("2026-12-31T17:00:00Z"), at("2027-01-31T17:00:00Z")));
}

#[test]
fn month_window_survives_dst_at_midnight() {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // Paraguay sprang forward at midnight on 2017-10-01 (00:00 UTC-4 → 01:00 UTC-3):
    // October starts at the jump.
    let asuncion: chrono_tz::Tz = "America/Asuncion".parse().unwrap();
    assert_eq!(month_window(at("2017-10-15T12:00:00Z"), asuncion).0, at("2017-10-01T04:00:00Z"));
    assert_eq!(month_window(at("2017-09-15T12:00:00Z"), asuncion).1, at("2017-10-01T04:00:00Z"));
    // Cuba fell back at 01:00 on 2015-11-01 (to 00:00 UTC-5): midnight happened
    // twice, and November starts at the first one (UTC-4).
    let havana: chrono_tz::Tz = "America/Havana".parse().unwrap();
    assert_eq!(month_window(at("2015-11-20T12:00:00Z"), havana).0, at("2015-11-01T04:00:00Z"));
    // The edges of the calendar do not panic.
    let (start, end) = month_window(DateTime::<Utc>::MAX_UTC, chrono_tz::UTC);
    assert!(start < end && end == DateTime::<Utc>::MAX_UTC);
}
