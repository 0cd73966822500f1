//! Properties of the engine over random programs, orders and event histories:
//! replays write nothing, any event order converges to the same ledger, and
//! rounding never pays more than the rules' exact amount.
use super::entitlement::{entitle, AffiliateSnapshot, CommissionKind, Entitlement, FrozenContext, RewardKind};
use super::ids::{AffiliateId, BuyerId, Category, Sku};
use super::ledger::{delta, Applied};
use super::money::Rounding;
use super::order::{OrderItem, OrderState};
use super::program::{MilestoneDoc, Program, ProgramDoc, TierDoc};
use proptest::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

const CATEGORIES: [&str; 4] = ["fashion", "electronics", "food", "gift-card"];

fn rate() -> impl Strategy<Value = Decimal> {
    (0u32..=2000).prop_map(|bp| Decimal::new(i64::from(bp), 4))
}

fn rounding() -> impl Strategy<Value = Rounding> {
    prop_oneof![Just(Rounding::Floor), Just(Rounding::HalfEven), Just(Rounding::HalfUp)]
}

prop_compose! {
    fn program()(
        levels in prop::collection::vec(rate(), 1..=4),
        scale in 0u32..=2,
        rounding in rounding(),
        electronics in prop::option::of(rate()),
        exclude_gift_cards in any::<bool>(),
        min_cents in 0i64..20_000_000,
        cap_cents in 1i64..200_000_000,
        tiers in prop::collection::vec((0u64..3_000_000, rate()), 0..=3),
        milestones in prop::collection::vec((1u32..=4, 0i64..5_000_000), 0..=3),
        skip in any::<bool>(),
        points_rate in rate(),
        first_bonus in 0u32..10_000,
    ) -> Program {
        let s = |d: Decimal| super::money::format(d);
        // Amounts at the program's scale (cents cut down to it), as the program requires.
        let at_scale = |cents: i64| super::money::round(Decimal::new(cents, 2), scale, Rounding::Floor);
        let cap = at_scale(cap_cents).max(Decimal::new(1, scale));
        let mut tiers = tiers;
        tiers.sort_by_key(|t| t.0);
        tiers.dedup_by_key(|t| t.0);
        let mut milestones = milestones;
        milestones.sort_by_key(|m| m.0);
        milestones.dedup_by_key(|m| m.0);
        let doc = ProgramDoc {
            currency: "IDR".into(),
            scale,
            rounding,
            timezone: "Asia/Jakarta".into(),
            levels: levels.into_iter().map(s).collect(),
            category_rates: electronics.map(|r| BTreeMap::from([("electronics".to_owned(), s(r))])).unwrap_or_default(),
            excluded_categories: if exclude_gift_cards { vec!["gift-card".into()] } else { vec![] },
            min_order_amount: s(at_scale(min_cents)),
            max_commission_per_order: s(cap),
            tiers: tiers.into_iter().map(|(from, r)| TierDoc { monthly_sales_from: from.to_string(), bonus_rate: s(r) }).collect(),
            milestones: milestones.into_iter().rev().map(|(n, b)| MilestoneDoc { nth_order_in_month: n, bonus: s(at_scale(b)) }).collect(),
            skip_inactive_upline: skip,
            holding_days: 0,
            buyer_rewards: super::program::BuyerRewardsDoc {
                points_rate: s(points_rate),
                first_order_bonus: first_bonus.to_string(),
                points_value: "1".to_owned(),
                points_expire_days: 0,
                redemption_hold_minutes: 30,
            },
            attribution: Default::default(),
            upline_qualification: None,
            affiliate_caps: Vec::new(),
            budgets: Vec::new(),
            on_exhausted: None,
        };
        Program::parse(&doc).expect("generated programs are valid")
    }
}

prop_compose! {
    fn order()(items in prop::collection::vec((0usize..4, 1u32..=5, 0i64..100_000_000, 0u32..=2), 1..=6)) -> OrderState {
        OrderState {
            buyer_id: BuyerId::parse("buyer").unwrap(),
            items: items
                .into_iter()
                .enumerate()
                .map(|(n, (c, quantity, cents, _))| OrderItem {
                    sku: Sku::parse(&format!("sku-{n}")).unwrap(),
                    category: Category::parse(CATEGORIES[c]).unwrap(),
                    quantity,
                    refunded: 0,
                    unit_price: Decimal::new(cents, 2),
                })
                .collect(),
            cancelled: false,
            fx_rate: None,
        }
    }
}

/// An order in the program currency or, half the time, in another one at a
/// rate of up to 12 significant digits (1 unit = `rate` program units).
fn fx_order() -> impl Strategy<Value = OrderState> {
    (order(), prop::option::of((1i64..999_999_999_999, 0u32..=12)))
        .prop_map(|(o, fx)| OrderState { fx_rate: fx.map(|(mantissa, scale)| Decimal::new(mantissa, scale)), ..o })
}

prop_compose! {
    fn context()(
        direct in prop::option::of((any::<bool>(), prop::bool::weighted(0.1))),
        upline in prop::collection::vec((any::<bool>(), prop::bool::weighted(0.2)), 0..=4),
        volume in 0u64..5_000_000,
        nth in 1u32..=4,
        first in any::<bool>(),
    ) -> FrozenContext {
        let snap = |id: String, suspended: bool| AffiliateSnapshot { id: AffiliateId::parse(&id).unwrap(), suspended, buyer_id: None, email_hash: None, unqualified: false, caps: None };
        FrozenContext {
            // Sometimes the direct affiliate is the buyer (self-referral).
            direct: direct.map(|(s, own)| AffiliateSnapshot {
                buyer_id: own.then(|| BuyerId::parse("buyer").unwrap()),
                ..snap("direct".into(), s)
            }),
            // Some ancestors suspended, some unqualified (rule 7), some both.
            upline: upline
                .into_iter()
                .enumerate()
                .map(|(n, (s, unqualified))| AffiliateSnapshot { unqualified, ..snap(format!("up-{n}"), s) })
                .collect(),
            volume_before: Decimal::from(volume),
            nth_in_month: nth,
            buyer_first_order: first,
            buyer_email_hash: None,
        }
    }
}

/// One intake-side change to an order: refund `qty` of item `item`, or cancel.
#[derive(Debug, Clone)]
enum Change {
    Refund { item: usize, qty: u32 },
    Cancel,
}

fn apply(state: &mut OrderState, change: &Change) {
    match change {
        Change::Refund { item, qty } => {
            let n = state.items.len();
            let i = &mut state.items[*item % n];
            i.refunded = (i.refunded + qty).min(i.quantity);
        }
        Change::Cancel => state.cancelled = true,
    }
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    prop::collection::vec(
        prop_oneof![4 => (0usize..6, 1u32..=3).prop_map(|(item, qty)| Change::Refund { item, qty }), 1 => Just(Change::Cancel)],
        0..=5,
    )
}

/// Applies one processing step and checks it writes at most one line per (beneficiary, kind).
fn process(entitled: &Entitlement, applied: &mut Applied) {
    let d = delta(entitled, applied);
    let keys: BTreeSet<_> = d.commissions.iter().map(|l| (l.affiliate_id.clone(), l.kind)).collect();
    assert_eq!(keys.len(), d.commissions.len(), "two lines for one (affiliate, kind)");
    let keys: BTreeSet<_> = d.rewards.iter().map(|l| (l.buyer_id.clone(), l.kind)).collect();
    assert_eq!(keys.len(), d.rewards.len(), "two lines for one (buyer, kind)");
    assert!(d.commissions.iter().all(|l| !l.amount.is_zero()) && d.rewards.iter().all(|l| l.points != 0));
    applied.add(&d);
}

fn ledger_of(e: &Entitlement) -> Applied {
    let mut a = Applied::default();
    a.add(&delta(e, &Applied::default()));
    a
}

fn nonzero(a: &Applied) -> Applied {
    Applied {
        commissions: a.commissions.iter().filter(|(_, (_, v))| !v.is_zero()).map(|(k, v)| (k.clone(), *v)).collect(),
        rewards: a.rewards.iter().filter(|(_, v)| **v != 0).map(|(k, v)| (k.clone(), *v)).collect(),
    }
}

proptest! {
    #[test]
    fn applying_an_event_twice_writes_nothing(p in program(), o in order(), ctx in context()) {
        let e = entitle(&o, &p, &ctx);
        let mut applied = Applied::default();
        process(&e, &mut applied);
        prop_assert!(delta(&e, &applied).is_empty());
    }

    /// An order in any currency at a frozen rate, partly refunded in steps
    /// and then refunded in full (or cancelled): every beneficiary's ledger
    /// and the buyer's points net to exactly zero.
    #[test]
    fn a_converted_order_reversed_in_full_nets_every_account_to_zero(
        p in program(),
        o in fx_order(),
        ctx in context(),
        history in changes(),
        cancel in any::<bool>(),
    ) {
        let mut state = o;
        let mut applied = Applied::default();
        process(&entitle(&state, &p, &ctx), &mut applied);
        for change in history.iter().filter(|c| matches!(c, Change::Refund { .. })) {
            apply(&mut state, change);
            process(&entitle(&state, &p, &ctx), &mut applied);
        }
        if cancel {
            state.cancelled = true;
        } else {
            for i in &mut state.items {
                i.refunded = i.quantity;
            }
        }
        process(&entitle(&state, &p, &ctx), &mut applied);
        prop_assert_eq!(nonzero(&applied), Applied::default());
    }

    #[test]
    fn every_processing_order_converges_to_the_final_entitlement(
        p in program(),
        o in fx_order(),
        ctx in context(),
        history in changes(),
        schedule in prop::collection::vec(any::<prop::sample::Index>(), 0..=12),
    ) {
        // Event 0 is order.placed; event i > 0 is history[i-1]. Intake of every
        // event happens in order; processing interleaves arbitrarily, each event
        // after its own intake, some processed more than once (replays).
        let events = history.len() + 1;
        let mut state = o.clone();
        let mut applied = Applied::default();
        let mut taken_in = 1; // order.placed is in
        let mut unprocessed: Vec<usize> = vec![0];
        let mut steps = schedule.into_iter();
        while taken_in < events || !unprocessed.is_empty() {
            let choice = steps.next();
            let intake_next = taken_in < events && (unprocessed.is_empty() || choice.as_ref().is_some_and(|c| c.index(2) == 0));
            if intake_next {
                apply(&mut state, &history[taken_in - 1]);
                unprocessed.push(taken_in);
                taken_in += 1;
            } else {
                let pick = choice.map(|c| c.index(unprocessed.len())).unwrap_or(0);
                unprocessed.remove(pick);
                process(&entitle(&state, &p, &ctx), &mut applied);
                if pick % 2 == 0 {
                    // A duplicate delivery of the same event.
                    process(&entitle(&state, &p, &ctx), &mut applied);
                }
            }
        }
        let expected = ledger_of(&entitle(&state, &p, &ctx));
        prop_assert_eq!(nonzero(&applied), nonzero(&expected));
    }

    /// Longer than the house's 80 lines on purpose: it is an independent
    /// model of rules 1–8 (every exact amount recomputed here, not by
    /// `entitle`) checked against the entitlement in one pass, and reads
    /// as the rules do, in order.
    #[test]
    fn rounding_never_pays_more_than_the_exact_amount(
        p in program(),
        o in order(),
        ctx in context(),
        history in changes(),
    ) {
        // Some orders partly or fully refunded, some cancelled.
        let mut o = o;
        for change in &history {
            apply(&mut o, change);
        }
        let e = entitle(&o, &p, &ctx);
        let unit = Decimal::new(1, p.scale);
        let half_unit = unit / Decimal::TWO;
        let paid = e.no_commission_reason.is_none() && !o.voided();
        // The rules' amounts before rounding, computed here from the rules, not from `entitle`.
        let eligible: Decimal = if o.cancelled {
            Decimal::ZERO
        } else {
            o.items
                .iter()
                .filter(|i| !p.is_excluded(i.category.as_str()))
                .map(|i| Decimal::from(i.quantity - i.refunded) * i.unit_price)
                .sum()
        };
        prop_assert_eq!(e.eligible_amount, eligible);
        let level1_exact: Decimal = o
            .items
            .iter()
            .filter(|i| !p.is_excluded(i.category.as_str()))
            .map(|i| Decimal::from(i.net_quantity()) * i.unit_price * p.level1_rate(i.category.as_str()))
            .sum();
        let tier_rate = p.tiers.iter().rev().find(|t| t.monthly_sales_from <= ctx.volume_before).map_or(Decimal::ZERO, |t| t.bonus_rate);
        let milestone = p.milestones.iter().find(|m| m.nth_order_in_month == ctx.nth_in_month).map_or(Decimal::ZERO, |m| m.bonus);
        let amount_of = |level: u8, kind: CommissionKind| {
            e.commissions.iter().find(|l| l.level == level && l.kind == kind).map_or(Decimal::ZERO, |l| l.amount)
        };
        let commission = amount_of(1, CommissionKind::Commission);
        let tier = amount_of(1, CommissionKind::TierBonus);

        let mut exact_total = Decimal::ZERO;
        let mut paid_total = Decimal::ZERO;
        for line in &e.commissions {
            prop_assert!(paid, "a line without commission: {line:?}");
            prop_assert!(line.amount > Decimal::ZERO, "{line:?}");
            prop_assert!(line.amount.normalize().scale() <= p.scale, "{line:?} finer than the scale");
            // The exact amount of this line, and the amount a correct rounding may differ by.
            let (exact, capped) = match (line.level, line.kind) {
                (1, CommissionKind::Commission) => (level1_exact.min(p.max_commission_per_order), level1_exact >= p.max_commission_per_order),
                // The tier bonus is capped against the *rounded* commission.
                (1, CommissionKind::TierBonus) => {
                    let room = p.max_commission_per_order - commission;
                    ((eligible * tier_rate).min(room), eligible * tier_rate >= room)
                }
                (1, CommissionKind::MilestoneBonus) => (milestone, true),
                (level, _) => (eligible * p.levels[usize::from(level) - 1], false),
            };
            match p.rounding {
                Rounding::Floor => prop_assert!(line.amount <= exact && (capped || exact - line.amount < unit), "{line:?} vs {exact}"),
                Rounding::HalfEven | Rounding::HalfUp => prop_assert!((line.amount - exact).abs() <= half_unit, "{line:?} vs {exact}"),
            }
            paid_total += line.amount;
        }
        if paid {
            // Rule 6 on the exact amounts, then the upline and the milestone.
            let (c, t) = if level1_exact > p.max_commission_per_order {
                (p.max_commission_per_order, Decimal::ZERO)
            } else {
                (level1_exact, (eligible * tier_rate).min(p.max_commission_per_order - level1_exact))
            };
            exact_total = c + t + milestone;
            // Rule 7, written as the SPEC words it: with skipping, the active ancestors
            // take the levels in turn; without, ancestor i holds level i + 2 or forfeits it.
            let mut expected_upline = Vec::new();
            let mut ancestors = ctx.upline.iter().filter(|a| !p.skip_inactive_upline || a.earns());
            for (k, rate) in p.levels.iter().enumerate().skip(1) {
                match ancestors.next() {
                    Some(a) if a.earns() => {
                        exact_total += eligible * rate;
                        let amount = super::money::round(eligible * rate, p.scale, p.rounding);
                        if !amount.is_zero() {
                            expected_upline.push((a.id.clone(), k + 1, amount));
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            let upline: Vec<_> = e
                .commissions
                .iter()
                .filter(|l| l.level > 1)
                .map(|l| (l.affiliate_id.clone(), usize::from(l.level), l.amount))
                .collect();
            prop_assert_eq!(upline, expected_upline);
            prop_assert!(e.commissions.iter().filter(|l| l.level > 1).all(|l| l.kind == CommissionKind::Commission));
            prop_assert_eq!(amount_of(1, CommissionKind::MilestoneBonus), milestone);
        }
        if p.rounding == Rounding::Floor {
            prop_assert!(paid_total <= exact_total, "paid {paid_total} > exact {exact_total}");
        }
        // Rule 6 holds on what is paid.
        prop_assert!(commission + tier <= p.max_commission_per_order);
        // Deterministic order: commissions by (level, kind), rewards by kind.
        let keys: Vec<_> = e.commissions.iter().map(|l| (l.level, l.kind)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(keys, sorted);
        // Rule 8: points always floored, whatever the program's rounding; never negative.
        let points = if o.voided() { 0 } else { (eligible * p.points_rate).floor().to_i64().unwrap() };
        let bonus = if ctx.buyer_first_order && !o.voided() { p.first_order_bonus } else { 0 };
        let reward = |kind: RewardKind| e.rewards.iter().find(|r| r.kind == kind).map_or(0, |r| r.points);
        prop_assert_eq!(reward(RewardKind::Points), points);
        prop_assert_eq!(reward(RewardKind::FirstOrderBonus), bonus);
        for r in &e.rewards {
            prop_assert!(r.points > 0);
        }
    }
}
