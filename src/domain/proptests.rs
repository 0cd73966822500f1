//! Properties of the engine over random programs, orders and event histories:
//! replays write nothing, any event order converges to the same ledger, and
//! rounding never pays more than the rules' exact amount.
use super::entitlement::{entitle, AffiliateSnapshot, CommissionKind, Entitlement, FrozenContext};
use super::ids::{AffiliateId, BuyerId, Category, Sku};
use super::ledger::{delta, Applied};
use super::money::Rounding;
use super::order::{OrderItem, OrderState};
use super::program::{MilestoneDoc, Program, ProgramDoc, TierDoc};
use proptest::prelude::*;
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
        min in 0u64..200_000,
        cap in 1u64..2_000_000,
        tier in prop::option::of((0u64..3_000_000, rate())),
        milestone in prop::option::of((1u32..=4, 0u64..50_000)),
        skip in any::<bool>(),
        points_rate in rate(),
        first_bonus in 0u32..10_000,
    ) -> Program {
        let s = |d: Decimal| super::money::format(d);
        let doc = ProgramDoc {
            currency: "IDR".into(),
            scale,
            rounding,
            timezone: "Asia/Jakarta".into(),
            levels: levels.into_iter().map(s).collect(),
            category_rates: electronics.map(|r| BTreeMap::from([("electronics".to_owned(), s(r))])).unwrap_or_default(),
            excluded_categories: if exclude_gift_cards { vec!["gift-card".into()] } else { vec![] },
            min_order_amount: min.to_string(),
            max_commission_per_order: cap.to_string(),
            tiers: tier.map(|(from, r)| vec![TierDoc { monthly_sales_from: from.to_string(), bonus_rate: s(r) }]).unwrap_or_default(),
            milestones: milestone.map(|(n, b)| vec![MilestoneDoc { nth_order_in_month: n, bonus: b.to_string() }]).unwrap_or_default(),
            skip_inactive_upline: skip,
            holding_days: 0,
            buyer_rewards: super::program::BuyerRewardsDoc { points_rate: s(points_rate), first_order_bonus: first_bonus.to_string() },
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
        }
    }
}

prop_compose! {
    fn context()(
        direct in prop::option::of(any::<bool>()),
        upline in prop::collection::vec(any::<bool>(), 0..=4),
        volume in 0u64..5_000_000,
        nth in 1u32..=4,
        first in any::<bool>(),
    ) -> FrozenContext {
        let snap = |id: String, suspended: bool| AffiliateSnapshot { id: AffiliateId::parse(&id).unwrap(), suspended, buyer_id: None };
        FrozenContext {
            direct: direct.map(|s| snap("direct".into(), s)),
            upline: upline.into_iter().enumerate().map(|(n, s)| snap(format!("up-{n}"), s)).collect(),
            volume_before: Decimal::from(volume),
            nth_in_month: nth,
            buyer_first_order: first,
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

    #[test]
    fn every_processing_order_converges_to_the_final_entitlement(
        p in program(),
        o in order(),
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

    #[test]
    fn rounding_never_pays_more_than_the_exact_amount(p in program(), o in order(), ctx in context()) {
        let e = entitle(&o, &p, &ctx);
        let unit = Decimal::new(1, p.scale);
        let exact_rate = |level: u8| p.levels[usize::from(level) - 1];
        for line in &e.commissions {
            prop_assert!(line.amount > Decimal::ZERO);
            // Upline lines are eligible × level rate; level-1 commission is per item.
            let exact = match (line.level, line.kind) {
                (1, CommissionKind::Commission) => o
                    .items
                    .iter()
                    .filter(|i| !p.is_excluded(i.category.as_str()))
                    .map(|i| Decimal::from(i.net_quantity()) * i.unit_price * p.level1_rate(i.category.as_str()))
                    .sum::<Decimal>()
                    .min(p.max_commission_per_order),
                (1, _) => continue, // bonuses: capped or fixed amounts, checked below
                (level, _) => e.eligible_amount * exact_rate(level),
            };
            let capped = line.level == 1 && exact == p.max_commission_per_order;
            match p.rounding {
                Rounding::Floor => prop_assert!(line.amount <= exact && (capped || exact - line.amount < unit), "{line:?} vs {exact}"),
                Rounding::HalfEven | Rounding::HalfUp => prop_assert!((line.amount - exact).abs() * Decimal::TWO <= unit, "{line:?} vs {exact}"),
            }
        }
        let level1: Decimal = e
            .commissions
            .iter()
            .filter(|l| l.level == 1 && matches!(l.kind, CommissionKind::Commission | CommissionKind::TierBonus))
            .map(|l| l.amount)
            .sum();
        prop_assert!(level1 <= p.max_commission_per_order);
        for r in &e.rewards {
            prop_assert!(r.points > 0);
        }
    }
}
