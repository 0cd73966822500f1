//! Intake's decisions for a batch of orders: which are accepted (and with
//! what attribution, totals and event), which answer at once (wrong
//! currency), and which are answered from the stored order (an id already
//! taken, or a second time in the same batch).
use super::attribution::{self, Claims, ClickCheck, Decision, Link, NewLink, Source};
use super::currency::{self, Fx, RateTable};
use super::entitlement::month_window;
use super::event::{EventId, EventRef, PartitionKey};
use super::ids::AffiliateId;
use super::order::{eligible, Attribution, CreateOrder, NewOrder};
use super::program::Program;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};

/// What intake reads before writing a batch.
#[derive(Debug, Clone, Default)]
pub struct IntakeLookup {
    /// The program version in force.
    pub version: u64,
    /// Ids of the batch already taken by stored orders.
    pub taken: HashSet<String>,
    /// Referral code → affiliate id, for the codes that exist.
    pub codes: HashMap<String, AffiliateId>,
    /// Affiliate ids that exist (of those the batch names, clicks included).
    pub affiliates: HashSet<String>,
    /// Active coupon code → the affiliate holding it (codes the batch carries).
    pub coupons: HashMap<String, AffiliateId>,
    /// Buyer id → the buyer's stored link (read when the program links customers).
    pub links: HashMap<String, Link>,
    /// The rate table in force at each instant an order of the batch needs
    /// one (read for orders in another currency without `fx_rate`).
    pub rate_tables: HashMap<DateTime<Utc>, Option<RateTable>>,
}

/// The instants at which the batch's orders need the program's rate table:
/// an order in another currency than `program`'s that carries no rate.
pub fn rate_table_asks(orders: &[NewOrder], program: &Program, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut at: Vec<DateTime<Utc>> = orders
        .iter()
        .filter(|o| o.currency != program.currency && o.fx_rate.is_none())
        .map(|o| o.placed_at.unwrap_or(now))
        .collect();
    at.sort();
    at.dedup();
    at
}

/// An accepted order, as its rows will hold it.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    pub order: &'a NewOrder,
    pub affiliate_id: Option<AffiliateId>,
    /// Why the referral code or affiliate id the order carries did not attribute it.
    pub note: Option<&'static str>,
    /// The whole decision, with what was ignored.
    pub decision: Decision,
    /// The buyer's link this order makes.
    pub link: Option<NewLink>,
    pub placed_at: DateTime<Utc>,
    /// In the order's currency.
    pub total: Decimal,
    /// In the program currency.
    pub eligible: Decimal,
    /// The rate frozen on the order (another currency than the program's).
    pub fx: Option<Fx>,
    pub event: EventRef,
}

impl Placement<'_> {
    /// The referral code as the storefront sent it (kept on the order).
    pub fn referral_code(&self) -> Option<&str> {
        match &self.order.attribution {
            Some(Attribution::ReferralCode(c)) => Some(c.as_str()),
            _ => None,
        }
    }

    /// The decision as stored on the order: None when the order's referral
    /// code or affiliate id (or nothing) alone decided it and nothing else was
    /// carried — the order's columns then say everything (it saves the bytes
    /// on the common order).
    pub fn stored_decision(&self) -> Option<String> {
        let plain = self.decision.ignored.is_empty()
            && matches!(self.decision.source, None | Some(Source::ReferralCode) | Some(Source::AffiliateId));
        (!plain).then(|| self.decision.to_json())
    }
}

/// What a batch adds to one (affiliate, calendar month): the eligible
/// amounts of its attributed orders placed in that month (rule 4's volume)
/// and how many they are (rule 5's position). The stored sums make an
/// order's month facts cost its month's later orders, not its earlier ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthVolume {
    pub affiliate_id: AffiliateId,
    /// The month's start (program time zone), in UTC.
    pub month_start: DateTime<Utc>,
    pub volume: Decimal,
    pub orders: u64,
}

/// The batch's [`MonthVolume`]s, in (affiliate, month) order: the order in
/// which an intake transaction writes (and so locks) them, the same in every
/// transaction. `None` if a sum overflows (it cannot below the amount bounds).
pub fn month_volumes(placements: &[Placement<'_>], tz: chrono_tz::Tz) -> Option<Vec<MonthVolume>> {
    let mut sums: std::collections::BTreeMap<(&AffiliateId, DateTime<Utc>), (Decimal, u64)> = Default::default();
    for p in placements {
        if let Some(affiliate) = &p.affiliate_id {
            let (volume, orders) = sums.entry((affiliate, month_window(p.placed_at, tz).0)).or_default();
            *volume = volume.checked_add(p.eligible)?;
            *orders += 1;
        }
    }
    Some(
        sums.into_iter()
            .map(|((a, month_start), (volume, orders))| MonthVolume {
                affiliate_id: a.clone(),
                month_start,
                volume,
                orders,
            })
            .collect(),
    )
}

/// Everything one intake transaction writes.
#[derive(Debug, Clone)]
pub struct IntakeBatch<'a> {
    pub placements: Vec<Placement<'a>>,
    /// What the placements add to their affiliates' months.
    pub months: Vec<MonthVolume>,
    pub version: u64,
    pub now: DateTime<Utc>,
    /// When recovery journals an accepted event again if it was not applied.
    pub next_attempt_at: DateTime<Utc>,
}

/// A batch's plan: an answer now for some orders, placements to write, and
/// the orders answered from the stored order after the commit.
#[derive(Debug)]
pub struct IntakePlan<'a> {
    /// One slot per order of the batch, in order; None: accepted or later.
    pub answers: Vec<Option<CreateOrder>>,
    /// (position in the batch, placement)
    pub accepted: Vec<(usize, Placement<'a>)>,
    /// Positions whose id is taken (stored, or earlier in this batch).
    pub later: Vec<usize>,
}

/// The rule for a batch: an order whose currency the rules refuse
/// ([`currency::decide_fx`]) is answered at once; an id already stored, or seen earlier in the batch, is answered
/// from the stored order (a duplicate or a conflict); every other order is
/// accepted, attributed by [`attribution::decide`] (an unknown code leaves
/// it unattributed, with a note), and gets its `order.placed` event. A
/// buyer's first attributed order links the buyer when the program links
/// customers; a later order of the same batch sees that link. `clicks`: the
/// checked click ids of each order, by position.
pub fn plan<'a>(
    orders: &'a [NewOrder],
    known: &IntakeLookup,
    program: &Program,
    clicks: &[Vec<ClickCheck>],
    now: DateTime<Utc>,
) -> IntakePlan<'a> {
    let mut plan =
        IntakePlan { answers: orders.iter().map(|_| None).collect(), accepted: Vec::new(), later: Vec::new() };
    let mut seen = HashSet::new();
    let mut made: HashMap<&str, Link> = HashMap::new();
    for (n, o) in orders.iter().enumerate() {
        if known.taken.contains(o.id.as_str()) || seen.contains(o.id.as_str()) {
            plan.later.push(n);
            continue;
        }
        let placed_at = o.placed_at.unwrap_or(now);
        let table = known.rate_tables.get(&placed_at).and_then(Option::as_ref);
        let fx = match currency::decide_fx(o.into(), program, table, placed_at) {
            Ok(fx) => fx,
            Err(errors) => {
                plan.answers[n] = Some(CreateOrder::Invalid(errors));
                continue;
            }
        };
        // Refused orders are not "seen": the same id again is decided again.
        seen.insert(o.id.as_str());
        let stored = made.get(o.buyer_id.as_str()).or_else(|| known.links.get(o.buyer_id.as_str())).cloned();
        let claims = Claims {
            link: stored.as_ref(),
            coupons: o.coupons.iter().map(|c| (c.as_str(), known.coupons.get(c.as_str()).cloned())).collect(),
            clicks: clicks.get(n).cloned().unwrap_or_default(),
            code: code_claim(o.attribution.as_ref(), known),
        };
        let decision = attribution::decide(&claims, &program.attribution, placed_at, now);
        let link = attribution::new_link(&decision, stored.as_ref(), &program.attribution, placed_at);
        let note = match (&o.attribution, &claims.code) {
            (Some(Attribution::ReferralCode(_)), Some((_, _, None))) => Some("unknown_referral_code"),
            (Some(Attribution::AffiliateId(_)), Some((_, _, None))) => Some("unknown_affiliate_id"),
            _ => None,
        };
        drop(claims);
        if let Some(l) = &link {
            let as_link = Link {
                affiliate_id: l.affiliate_id.clone(),
                linked_at: l.linked_at,
                expires_at: l.expires_at,
                affiliate_suspended: false,
            };
            made.insert(o.buyer_id.as_str(), as_link);
        }
        let affiliate_id = decision.affiliate_id.clone();
        let state = o.state_at(fx.as_ref());
        let event = EventRef {
            id: EventId::new(),
            partition: PartitionKey::of(affiliate_id.as_ref(), &o.buyer_id),
            order_id: o.id.clone(),
        };
        let placement = Placement {
            order: o,
            affiliate_id,
            note,
            decision,
            link,
            placed_at,
            total: state.total(),
            eligible: eligible(&state, program),
            fx,
            event,
        };
        plan.accepted.push((n, placement));
    }
    plan
}

/// The referral code or affiliate id an order carries, with whose it is.
fn code_claim<'o>(
    attribution: Option<&'o Attribution>,
    known: &IntakeLookup,
) -> Option<(Source, &'o str, Option<AffiliateId>)> {
    match attribution? {
        Attribution::ReferralCode(c) => Some((Source::ReferralCode, c.as_str(), known.codes.get(c.as_str()).cloned())),
        Attribution::AffiliateId(a) => {
            Some((Source::AffiliateId, a.as_str(), known.affiliates.contains(a.as_str()).then(|| a.clone())))
        }
    }
}

/// A stored order met again: the same request (its event) or another one.
pub fn existing(stored_hash: &[u8], event: EventId, order: &NewOrder) -> CreateOrder {
    if stored_hash == order.request_hash {
        CreateOrder::Duplicate(event)
    } else {
        CreateOrder::Conflict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{BuyerId, Category, OrderId, ReferralCode, Sku};
    use crate::domain::order::NewItem;
    use std::str::FromStr;

    fn order(id: &str, currency: &str, attribution: Option<Attribution>) -> NewOrder {
        NewOrder {
            id: OrderId::parse(id).unwrap(),
            buyer_id: BuyerId::parse("b").unwrap(),
            attribution,
            coupons: vec![],
            click_ids: vec![],
            buyer_email_hash: None,
            currency: currency.into(),
            fx_rate: None,
            placed_at: None,
            items: vec![NewItem {
                sku: Sku::parse("s").unwrap(),
                category: Category::parse("c").unwrap(),
                quantity: 2,
                unit_price: Decimal::from_str("10.5").unwrap(),
            }],
            request_hash: [id.len() as u8; 32],
            payload: "{}".into(),
        }
    }

    fn program() -> Program {
        Program::parse(&Program::default_doc()).unwrap()
    }

    #[test]
    fn month_volumes_sum_each_affiliates_month_in_key_order() {
        use chrono::TimeZone;
        let p = program();
        let cur = p.currency.clone();
        let known = IntakeLookup {
            version: 1,
            codes: [("code-a".to_owned(), AffiliateId::parse("A").unwrap())].into(),
            affiliates: ["A".to_owned(), "B".to_owned()].into(),
            ..Default::default()
        };
        let code = || Some(Attribution::ReferralCode(ReferralCode::parse("code-a").unwrap()));
        let at = |d: u32, h: u32| Some(Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap());
        let mut orders = vec![
            order("o-1", &cur, Some(Attribution::AffiliateId(AffiliateId::parse("B").unwrap()))),
            order("o-2", &cur, code()),
            order("o-3", &cur, code()),
            order("o-4", &cur, code()),
            order("o-5", &cur, None),
        ];
        // Jakarta is UTC+7: 2026-02-28 18:00 UTC is already March there.
        orders[0].placed_at = at(10, 0);
        orders[1].placed_at = Some(Utc.with_ymd_and_hms(2026, 2, 28, 18, 0, 0).unwrap());
        orders[2].placed_at = at(31, 16);
        orders[3].placed_at = at(31, 17);
        orders[4].placed_at = at(10, 0);
        let plan = plan(&orders, &known, &p, &[], Utc::now());
        let placements: Vec<Placement<'_>> = plan.accepted.into_iter().map(|(_, pl)| pl).collect();
        let months = month_volumes(&placements, p.timezone).unwrap();
        let march = Utc.with_ymd_and_hms(2026, 2, 28, 17, 0, 0).unwrap();
        let april = Utc.with_ymd_and_hms(2026, 3, 31, 17, 0, 0).unwrap();
        let v = |a: &str, m, n: u64| MonthVolume {
            affiliate_id: AffiliateId::parse(a).unwrap(),
            month_start: m,
            volume: Decimal::from(21) * Decimal::from(n),
            orders: n,
        };
        assert_eq!(months, vec![v("A", march, 2), v("A", april, 1), v("B", march, 1)], "o-5 is unattributed");
    }

    #[test]
    fn a_batch_is_split_into_answers_placements_and_later_ones() {
        let p = program();
        let cur = p.currency.clone();
        let known = IntakeLookup {
            version: 3,
            taken: ["o-taken".to_owned()].into(),
            codes: [("code-a".to_owned(), AffiliateId::parse("A").unwrap())].into(),
            affiliates: ["A".to_owned()].into(),
            ..Default::default()
        };
        let orders = vec![
            order("o-1", &cur, Some(Attribution::ReferralCode(ReferralCode::parse("code-a").unwrap()))),
            order("o-2", "USD", None),
            order("o-taken", &cur, None),
            order("o-3", &cur, Some(Attribution::ReferralCode(ReferralCode::parse("nobody").unwrap()))),
            order("o-1", &cur, None),
            order("o-4", &cur, Some(Attribution::AffiliateId(AffiliateId::parse("Z").unwrap()))),
            order("o-5", &cur, Some(Attribution::AffiliateId(AffiliateId::parse("A").unwrap()))),
        ];
        let now = Utc::now();
        let plan = plan(&orders, &known, &p, &[], now);
        // Another currency, and no rate known for it.
        assert!(
            matches!(&plan.answers[1], Some(CreateOrder::Invalid(e)) if e.len() == 1 && e[0].field == "currency"),
            "{:?}",
            plan.answers[1]
        );
        assert_eq!(plan.later, vec![2, 4], "a stored id and an id seen earlier in the batch");
        let accepted: Vec<(usize, Option<&str>, Option<&str>)> =
            plan.accepted.iter().map(|(n, pl)| (*n, pl.affiliate_id.as_ref().map(|a| a.as_str()), pl.note)).collect();
        assert_eq!(
            accepted,
            vec![
                (0, Some("A"), None),
                (3, None, Some("unknown_referral_code")),
                (5, None, Some("unknown_affiliate_id")),
                (6, Some("A"), None)
            ]
        );
        let first = &plan.accepted[0].1;
        assert_eq!(first.total, Decimal::from(21));
        assert_eq!(first.placed_at, now);
        assert_eq!(first.event.partition.as_str(), "a:A");
        assert_eq!(plan.accepted[1].1.event.partition.as_str(), "b:b", "unattributed: the buyer's partition");
        assert_eq!(first.referral_code(), Some("code-a"));
        assert!(plan.answers.iter().enumerate().all(|(n, a)| a.is_some() == (n == 1)));
    }

    #[test]
    fn a_stored_order_is_a_duplicate_of_the_same_request_only() {
        let o = order("o-1", "IDR", None);
        let event = EventId::new();
        assert!(matches!(existing(&o.request_hash, event, &o), CreateOrder::Duplicate(e) if e == event));
        assert!(matches!(existing(&[0; 32], event, &o), CreateOrder::Conflict));
    }
}
