//! Why each line of an order is what it is (docs/RULES.md "How an order is
//! paid"): the steps of the very computation the entitlement runs —
//! [`DirectCalc`] for rules 3–6, [`upline_steps`] for rule 7, rule 8's
//! points — with their inputs and literal amounts, under the order's frozen
//! context and its caps. Pure.
use super::caps::OrderLimits;
use super::entitlement::{
    entitle, upline_steps, CommissionKind, DirectCalc, FrozenContext, NoCommissionReason, RewardKind,
};
use super::ids::AffiliateId;
use super::money::format as f;
use super::order::OrderState;
use super::program::Program;
use rust_decimal::Decimal;

/// An order's entitlement, line by line, with how each line came to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Rule 1, of the current state (net of refunds; 0 when cancelled).
    pub eligible_amount: Decimal,
    /// Rule 1 as bought (rule 2's minimum, the month volumes).
    pub original_eligible_amount: Decimal,
    pub items: Vec<ItemExplained>,
    /// Rule 2 (None: commissions are paid).
    pub no_commission_reason: Option<NoCommissionReason>,
    pub commissions: Vec<LineExplained>,
    pub rewards: Vec<PointsExplained>,
}

/// One item as rule 1 and rule 3 see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemExplained {
    pub sku: String,
    pub category: String,
    pub quantity: u32,
    pub refunded: u32,
    /// Net quantity × unit price, converted (program currency).
    pub amount: Decimal,
    pub excluded: bool,
    /// The level-1 rate of its category (None: excluded).
    pub level1_rate: Option<Decimal>,
    /// `category_rates` or `levels[0]`.
    pub rate_from: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineExplained {
    pub affiliate_id: AffiliateId,
    pub level: u8,
    pub kind: CommissionKind,
    /// What the rules entitle the line to now (after a cap's grant).
    pub amount: Decimal,
    pub summary: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PointsExplained {
    pub kind: RewardKind,
    pub points: i64,
    pub summary: String,
    pub steps: Vec<Step>,
}

/// One step: the rule (as numbered in docs/RULES.md, or `caps`) and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub rule: &'static str,
    pub text: String,
}

fn step(rule: &'static str, text: String) -> Step {
    Step { rule, text }
}

fn pct(rate: Decimal) -> String {
    format!("{} %", f(rate * Decimal::ONE_HUNDRED))
}

/// Explains `order`'s entitlement under `program`, its frozen context and
/// its caps: the same functions as the event transaction, so every line's
/// `amount` is what the ledger holds once its events are applied.
pub fn explain(order: &OrderState, program: &Program, ctx: &FrozenContext, limits: &OrderLimits) -> Explanation {
    let mut entitled = entitle(order, program, ctx);
    let uncapped = entitled.clone();
    limits.clamp(&mut entitled);
    let rounding =
        serde_json::to_value(program.rounding).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let round_note = |raw: Decimal, to: Decimal| {
        if raw == to {
            String::new()
        } else {
            format!(", rounded {rounding} at scale {} to {}", program.scale, f(to))
        }
    };
    let items: Vec<ItemExplained> = order
        .items
        .iter()
        .map(|i| {
            let excluded = program.is_excluded(i.category.as_str());
            let own = program.category_rates.contains_key(i.category.as_str());
            ItemExplained {
                sku: i.sku.as_str().to_owned(),
                category: i.category.as_str().to_owned(),
                quantity: i.quantity,
                refunded: i.refunded,
                amount: if order.cancelled { Decimal::ZERO } else { order.line_amount(i, i.net_quantity(), program) },
                excluded,
                level1_rate: (!excluded).then(|| program.level1_rate(i.category.as_str())),
                rate_from: (!excluded).then_some(if own { "category_rates" } else { "levels[0]" }),
            }
        })
        .collect();
    let excluded: Vec<&str> = items.iter().filter(|i| i.excluded).map(|i| i.sku.as_str()).collect();
    let eligible_step = step(
        "1",
        format!(
            "eligible amount {}: the items' net amounts{}{}",
            f(entitled.eligible_amount),
            if excluded.is_empty() {
                String::new()
            } else {
                format!(", without {} (excluded category)", excluded.join(", "))
            },
            if order.cancelled { "; the order is cancelled" } else { "" }
        ),
    );
    let calc = DirectCalc::of(order, program, ctx, entitled.eligible_amount);
    let walk = upline_steps(program, ctx);
    let mut commissions = Vec::with_capacity(entitled.commissions.len());
    for line in &entitled.commissions {
        let mut steps = vec![eligible_step.clone()];
        let who = line.affiliate_id.as_str();
        match (line.level, line.kind) {
            (1, CommissionKind::Commission) => {
                for (n, amount, rate, own) in &calc.items {
                    let i = &order.items[*n];
                    steps.push(step(
                        "3",
                        format!(
                            "{} ({}): {} × {} ({}) = {}",
                            i.sku.as_str(),
                            i.category.as_str(),
                            f(*amount),
                            pct(*rate),
                            if *own { "its category's rate" } else { "levels[0]" },
                            f(amount * rate)
                        ),
                    ));
                }
                steps.push(step(
                    "3",
                    format!("commission {}{}", f(calc.raw), round_note(calc.raw, calc.commission_rounded)),
                ));
                if calc.commission < calc.commission_rounded {
                    steps.push(step(
                        "6",
                        format!(
                            "capped at max_commission_per_order {}: {} → {}",
                            f(program.max_commission_per_order),
                            f(calc.commission_rounded),
                            f(calc.commission)
                        ),
                    ));
                }
            }
            (1, CommissionKind::TierBonus) => {
                if let Some((from, rate)) = calc.tier {
                    steps.push(step(
                        "4",
                        format!(
                            "{who}'s month volume before the order {} reaches the tier from {}: {} × {} = {}{}",
                            f(ctx.volume_before),
                            f(from),
                            f(entitled.eligible_amount),
                            pct(rate),
                            f(calc.tier_raw),
                            round_note(calc.tier_raw, calc.tier_rounded)
                        ),
                    ));
                }
                if calc.tier_bonus < calc.tier_rounded {
                    steps.push(step(
                        "6",
                        format!(
                            "max_commission_per_order {} less the commission {}: {} → {}",
                            f(program.max_commission_per_order),
                            f(calc.commission),
                            f(calc.tier_rounded),
                            f(calc.tier_bonus)
                        ),
                    ));
                }
            }
            (1, CommissionKind::MilestoneBonus) => {
                if let Some((n, bonus)) = calc.milestone {
                    steps.push(step(
                        "5",
                        format!("the order is {who}'s order number {n} of its month: milestone bonus {}", f(bonus)),
                    ));
                }
            }
            (level, _) => {
                for s in walk.iter().filter(|s| !s.earns && s.level <= level) {
                    steps.push(step(
                        "7",
                        format!(
                            "{} passed over for level {} ({}){}",
                            s.affiliate_id.as_str(),
                            s.level,
                            s.passed_over.unwrap_or("inactive"),
                            if program.skip_inactive_upline {
                                ": the next ancestor up takes the level"
                            } else {
                                ": the level is forfeited"
                            }
                        ),
                    ));
                }
                let rate = program.levels[usize::from(level) - 1];
                let raw = entitled.eligible_amount * rate;
                steps.push(step(
                    "7",
                    format!(
                        "{who} is the ancestor at level {level}: {} × {} = {}{}",
                        f(entitled.eligible_amount),
                        pct(rate),
                        f(raw),
                        round_note(raw, money_round(program, raw))
                    ),
                ));
            }
        }
        let before = uncapped
            .commissions
            .iter()
            .find(|u| u.affiliate_id == line.affiliate_id && u.kind == line.kind)
            .map_or(line.amount, |u| u.amount);
        if line.amount < before {
            steps.push(step(
                "caps",
                format!(
                    "a cap or budget cut this line when it was first paid: it pays at most {} ({} entitled)",
                    f(line.amount),
                    f(before)
                ),
            ));
        }
        let summary = format!(
            "{who} is paid {} {} as {} on an eligible {}",
            f(line.amount),
            line.kind.as_str().replace('_', " "),
            if line.level == 1 {
                "the direct affiliate".to_owned()
            } else {
                format!("the level-{} ancestor", line.level)
            },
            f(entitled.eligible_amount)
        );
        commissions.push(LineExplained {
            affiliate_id: line.affiliate_id.clone(),
            level: line.level,
            kind: line.kind,
            amount: line.amount,
            summary,
            steps,
        });
    }
    let rewards = entitled
        .rewards
        .iter()
        .map(|r| {
            let (summary, steps) = match r.kind {
                RewardKind::FirstOrderBonus => (
                    format!("{} points for the buyer's first order", r.points),
                    vec![step("8", format!("the buyer had no order before this one: first_order_bonus {}", r.points))],
                ),
                _ => {
                    let raw = entitled.eligible_amount * program.points_rate;
                    (
                        format!("{} points on an eligible {}", r.points, f(entitled.eligible_amount)),
                        vec![
                            eligible_step.clone(),
                            step(
                                "8",
                                format!(
                                    "{} × points_rate {} = {}, floored to {}",
                                    f(entitled.eligible_amount),
                                    f(program.points_rate),
                                    f(raw),
                                    r.points
                                ),
                            ),
                        ],
                    )
                }
            };
            PointsExplained { kind: r.kind, points: r.points, summary, steps }
        })
        .collect();
    Explanation {
        eligible_amount: entitled.eligible_amount,
        original_eligible_amount: entitled.original_eligible_amount,
        items,
        no_commission_reason: entitled.no_commission_reason,
        commissions,
        rewards,
    }
}

fn money_round(program: &Program, x: Decimal) -> Decimal {
    super::money::round(x, program.scale, program.rounding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entitlement::AffiliateSnapshot;
    use crate::domain::ids::{BuyerId, Category, Sku};
    use crate::domain::order::OrderItem;
    use std::str::FromStr;

    fn snap(id: &str) -> AffiliateSnapshot {
        AffiliateSnapshot {
            id: AffiliateId::parse(id).unwrap(),
            suspended: false,
            buyer_id: None,
            email_hash: None,
            unqualified: false,
            caps: None,
        }
    }

    fn item(sku: &str, category: &str, quantity: u32, price: &str) -> OrderItem {
        OrderItem {
            sku: Sku::parse(sku).unwrap(),
            category: Category::parse(category).unwrap(),
            quantity,
            refunded: 0,
            unit_price: Decimal::from_str(price).unwrap(),
        }
    }

    #[test]
    fn the_worked_example_is_explained_step_by_step_and_the_lines_are_the_entitlement() {
        let program = Program::parse(&Program::default_doc()).unwrap();
        let order = OrderState {
            buyer_id: BuyerId::parse("x").unwrap(),
            items: vec![
                item("shirt", "fashion", 2, "75000"),
                item("phone", "electronics", 1, "2000000"),
                item("voucher", "gift-card", 1, "100000"),
            ],
            cancelled: false,
            fx_rate: None,
        };
        let ctx = FrozenContext {
            direct: Some(snap("C")),
            upline: vec![snap("B"), snap("A")],
            volume_before: Decimal::ZERO,
            nth_in_month: 1,
            buyer_first_order: true,
            buyer_email_hash: None,
        };
        let e = explain(&order, &program, &ctx, &OrderLimits::default());
        let c = &e.commissions[0];
        let texts: Vec<(&str, &str)> = c.steps.iter().map(|s| (s.rule, s.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                ("1", "eligible amount 2150000: the items' net amounts, without voucher (excluded category)"),
                ("3", "shirt (fashion): 150000 × 10 % (levels[0]) = 15000"),
                ("3", "phone (electronics): 2000000 × 4 % (its category's rate) = 80000"),
                ("3", "commission 95000"),
            ]
        );
        assert_eq!(c.summary, "C is paid 95000 commission as the direct affiliate on an eligible 2150000");
        let b = &e.commissions[1];
        assert_eq!(b.steps.last().unwrap().text, "B is the ancestor at level 2: 2150000 × 3 % = 64500");
        assert_eq!(e.rewards[0].steps[1].text, "2150000 × points_rate 0.01 = 21500, floored to 21500");
        // The lines are the entitlement's, amount for amount.
        let entitled = entitle(&order, &program, &ctx);
        let lines: Vec<(&str, Decimal)> = e.commissions.iter().map(|l| (l.affiliate_id.as_str(), l.amount)).collect();
        let want: Vec<(&str, Decimal)> =
            entitled.commissions.iter().map(|l| (l.affiliate_id.as_str(), l.amount)).collect();
        assert_eq!(lines, want);
        assert!(e.items[2].excluded && e.items[2].level1_rate.is_none());
    }
}
