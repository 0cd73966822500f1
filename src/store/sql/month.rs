//! Month facts for a batch of events (rules 4, 5 and 8). Orders are grouped
//! by direct affiliate and month, and each group is answered one of two ways:
//!
//! - **counted** months (from [`CountedSince`] on): `affiliate_months` holds
//!   the month's volume and order count, written by intake with the orders;
//!   the orders placed *from* the group's first ask to the month's end are
//!   read, and each ask's facts are the month's sums minus those placed at
//!   or after it. The cost is the month's orders not yet applied, whatever
//!   the history: constant while events keep up with intake.
//! - older months (a database upgraded with history, or a month across a
//!   change of the program's time zone): the aggregate of the orders placed
//!   before the group's first ask, then the orders from its first ask up to
//!   its last — the cost grows with the month's earlier orders.
//!
//! [`MonthPlan::finish`] turns the rows into each ask's facts.
use super::{Conn, Sql};
use crate::domain::ids::{AffiliateId, OrderId};
use crate::store::{corrupt, MonthAsk, MonthFacts, Result, StoreError};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// An order placed inside a group's range: (placed_at, id, original eligible).
pub type Between = (DateTime<Utc>, String, Decimal);

/// A counted group's rows: the month's stored sums, the `since` the
/// statement saw, the orders from the group's first ask to its last (both
/// included), and the sums of the orders placed after its last ask in the month.
#[derive(Debug, Default)]
pub struct Counted {
    pub sums: Option<(Decimal, u64)>,
    pub since: Option<DateTime<Utc>>,
    pub rows: Vec<Between>,
    pub tail: (Decimal, u64),
}

/// From which month on `affiliate_months` counts every order. It moves only
/// when the program's time zone changes; it is cached, and a month-facts
/// statement that finds it moved fails (to be retried) and refreshes it.
#[derive(Debug, Clone, Default)]
pub struct CountedSince(Arc<RwLock<Option<DateTime<Utc>>>>);

impl CountedSince {
    pub async fn get(&self, conn: &mut dyn Conn) -> Result<DateTime<Utc>> {
        if let Some(at) = *self.0.read().expect("counted-since poisoned") {
            return Ok(at);
        }
        let at = conn.one(&Sql::new("SELECT since FROM affiliate_months_since WHERE id = 1")).await?.time("since")?;
        self.set(at);
        Ok(at)
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.write().expect("counted-since poisoned") = Some(at);
    }
}

/// Writes the row of `affiliate_months_since` unless it exists: the
/// beginning of time without orders (every month counted from the first
/// order), else two days from now (the months of the orders stored so far
/// keep being read from the orders table: an order is placed at most a day
/// ahead of its intake).
pub async fn ensure_since(mut conn: Box<dyn Conn>, now: DateTime<Utc>) -> Result<()> {
    let row = conn.fetch(&Sql::new("SELECT since FROM affiliate_months_since WHERE id = 1")).await?;
    if row.is_empty() {
        let any = !conn.fetch(&Sql::new("SELECT id FROM orders LIMIT 1")).await?.is_empty();
        let since = if any { now + chrono::TimeDelta::days(2) } else { DateTime::<Utc>::UNIX_EPOCH };
        let insert = format!("{} INTO affiliate_months_since (id, since) VALUES (1, ?)", conn.dialect().insert_ignore);
        conn.execute(&Sql::new(insert).arg(since)).await?;
    }
    conn.commit().await
}

type Group<'q, 'a> = Vec<&'q MonthAsk<'a>>;

pub struct MonthPlan<'q, 'a> {
    /// Asks of one direct affiliate and month, by (placed_at, id).
    groups: HashMap<(&'a AffiliateId, DateTime<Utc>), Group<'q, 'a>>,
    since: DateTime<Utc>,
}

impl<'q, 'a> MonthPlan<'q, 'a> {
    pub fn new(asks: &'q [MonthAsk<'a>], since: DateTime<Utc>) -> Self {
        let mut groups: HashMap<(&'a AffiliateId, DateTime<Utc>), Group<'q, 'a>> = HashMap::new();
        for ask in asks {
            if let Some(direct) = ask.direct {
                groups.entry((direct, ask.month_start)).or_default().push(ask);
            }
        }
        for group in groups.values_mut() {
            group.sort_by(|a, b| (a.placed_at, a.order_id).cmp(&(b.placed_at, b.order_id)));
        }
        Self { groups, since }
    }

    fn counted(&self, month_start: DateTime<Utc>) -> bool {
        month_start >= self.since
    }

    /// The affiliate whose month aggregate up to this ask is to be read: the
    /// ask's direct affiliate for the first ask of an uncounted group, else
    /// none (the later asks are derived from the first; a counted group's
    /// from its month's sums).
    pub fn aggregate_of(&self, ask: &MonthAsk<'a>) -> Option<&'a AffiliateId> {
        let direct = ask.direct?;
        let group = self.groups.get(&(direct, ask.month_start))?;
        (!self.counted(ask.month_start) && group[0].order_id == ask.order_id).then_some(direct)
    }

    /// (first, last) ask of every uncounted group of several: the orders
    /// placed from the first (included) to the last (excluded) are to be
    /// read, keyed by the first's order id.
    pub fn ranges(&self) -> impl Iterator<Item = (&'q MonthAsk<'a>, &'q MonthAsk<'a>)> + '_ {
        self.groups.values().filter(|g| g.len() > 1 && !self.counted(g[0].month_start)).map(|g| (g[0], g[g.len() - 1]))
    }

    /// (first, last) ask of every counted group of several: its month's
    /// sums, the orders from the first to the last (both included) and the
    /// sums of those after the last are to be read, keyed by the first's
    /// order id.
    pub fn counted_firsts(&self) -> impl Iterator<Item = (&'q MonthAsk<'a>, &'q MonthAsk<'a>)> + '_ {
        self.groups.values().filter(|g| g.len() > 1 && self.counted(g[0].month_start)).map(|g| (g[0], g[g.len() - 1]))
    }

    /// The ask is alone in a counted group: its month's sums and the sums of
    /// the orders from it on are read with its buyer flag, in one SELECT
    /// (the usual case outside a hot affiliate's run).
    pub fn counted_alone(&self, ask: &MonthAsk<'a>) -> bool {
        ask.direct
            .and_then(|d| self.groups.get(&(d, ask.month_start)))
            .is_some_and(|g| g.len() == 1 && self.counted(ask.month_start))
    }

    /// The facts of every ask: `facts` holds each ask's buyer flag, and for
    /// the first ask of each uncounted group its aggregate; `between` the
    /// rows read for [`MonthPlan::ranges`], `counted` those read for
    /// [`MonthPlan::counted_firsts`].
    pub fn finish(
        &self,
        mut facts: HashMap<OrderId, MonthFacts>,
        mut between: HashMap<String, Vec<Between>>,
        mut counted: HashMap<String, Counted>,
    ) -> Result<HashMap<OrderId, MonthFacts>> {
        for group in self.groups.values() {
            let first = group[0].order_id.as_str();
            if self.counted(group[0].month_start) {
                let c = counted.remove(first).unwrap_or_default();
                if c.since != Some(self.since) {
                    // A change of the program's time zone moved it: these
                    // months may not all be counted any more. Again, anew.
                    return Err(StoreError::Busy("the months counted changed; retrying"));
                }
                let sums = match (c.sums, c.rows.is_empty() && c.tail.1 == 0) {
                    (Some(sums), _) => sums,
                    // No order in the month yet (a quote's month).
                    (None, true) => (Decimal::ZERO, 0),
                    (None, false) => {
                        let who = group[0].direct.map_or("", |a| a.as_str());
                        return Err(corrupt(format!(
                            "no affiliate_months row for {who} from {}",
                            group[0].month_start
                        )));
                    }
                };
                for (ask, f) in from_sums(group, sums, c.rows, c.tail)? {
                    let slot = facts.get_mut(ask).ok_or_else(|| corrupt("month facts missing"))?;
                    (slot.volume_before, slot.earlier) = f;
                }
            } else if group.len() > 1 {
                let base = *facts.get(group[0].order_id).ok_or_else(|| corrupt("month aggregate missing"))?;
                let rows = between.remove(first).unwrap_or_default();
                for (ask, f) in from_base(group, (base.volume_before, base.earlier), rows)? {
                    let slot = facts.get_mut(ask).ok_or_else(|| corrupt("month facts missing"))?;
                    (slot.volume_before, slot.earlier) = f;
                }
            }
        }
        Ok(facts)
    }
}

/// An uncounted group's later asks: the first's aggregate plus the orders
/// placed from the first up to each.
fn from_base<'a>(
    group: &[&MonthAsk<'a>],
    base: (Decimal, u64),
    mut rows: Vec<Between>,
) -> Result<Vec<(&'a OrderId, (Decimal, u64))>> {
    rows.sort();
    let mut rows = rows.into_iter().peekable();
    let (mut volume, mut earlier) = base;
    let mut out = Vec::with_capacity(group.len());
    for ask in &group[1..] {
        while let Some((_, _, eligible)) =
            rows.next_if(|(p, id, _)| (*p, id.as_str()) < (ask.placed_at, ask.order_id.as_str()))
        {
            volume = volume.checked_add(eligible).ok_or_else(|| corrupt("month volume overflows"))?;
            earlier += 1;
        }
        out.push((ask.order_id, (volume, earlier)));
    }
    Ok(out)
}

/// A counted group's asks: the month's sums minus the orders placed at or
/// after each (`rows`: those from the group's first ask to its last;
/// `after`: the sums of those after its last).
fn from_sums<'a>(
    group: &[&MonthAsk<'a>],
    (volume, orders): (Decimal, u64),
    mut rows: Vec<Between>,
    after: (Decimal, u64),
) -> Result<Vec<(&'a OrderId, (Decimal, u64))>> {
    rows.sort();
    // tail[i]: the volume of rows[i..] and of the orders after them.
    let mut tail = vec![after.0; rows.len() + 1];
    for i in (0..rows.len()).rev() {
        tail[i] = tail[i + 1].checked_add(rows[i].2).ok_or_else(|| corrupt("month volume overflows"))?;
    }
    let mut out = Vec::with_capacity(group.len());
    for ask in group {
        let at = rows.partition_point(|(p, id, _)| (*p, id.as_str()) < (ask.placed_at, ask.order_id.as_str()));
        let later = (rows.len() - at) as u64 + after.1;
        let before = volume - tail[at];
        if before.is_sign_negative() || later > orders {
            return Err(corrupt(format!(
                "affiliate_months of order {}'s month holds less than its orders from it on",
                ask.order_id
            )));
        }
        out.push((ask.order_id, (before, orders - later)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::BuyerId;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + chrono::TimeDelta::seconds(s)
    }

    proptest! {
        /// Both ways give each ask the volume and count of the orders placed
        /// before it in its month, as summing them one by one does.
        #[test]
        fn counted_and_uncounted_months_agree_with_summing_the_earlier_orders(
            month in prop::collection::vec((0i64..50, 1u32..1000), 1..40),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 1..10),
        ) {
            let ids: Vec<OrderId> = (0..month.len()).map(|i| OrderId::from_trusted(format!("o-{i:03}"))).collect();
            let orders: Vec<Between> =
                month.iter().zip(&ids).map(|((at, v), id)| (t(*at), id.to_string(), Decimal::from(*v))).collect();
            let (aff, buyer) = (AffiliateId::from_trusted("A".into()), BuyerId::from_trusted("b".into()));
            let mut chosen: Vec<usize> = picks.iter().map(|p| p.index(orders.len())).collect();
            chosen.sort();
            chosen.dedup();
            let mut asks: Vec<MonthAsk<'_>> = chosen.iter().map(|&i| MonthAsk {
                order_id: &ids[i], buyer_id: &buyer, direct: Some(&aff), placed_at: orders[i].0,
                month_start: t(0), month_end: t(100),
            }).collect();
            asks.sort_by_key(|a| (a.placed_at, a.order_id.clone()));
            let expected = |ask: &MonthAsk<'_>| {
                let key = (ask.placed_at, ask.order_id.as_str());
                let before: Vec<&Between> = orders.iter().filter(|(p, id, _)| (*p, id.as_str()) < key).collect();
                (before.iter().map(|b| b.2).sum::<Decimal>(), before.len() as u64)
            };
            let flags = || -> HashMap<OrderId, MonthFacts> {
                asks.iter().map(|a| (a.order_id.clone(), MonthFacts { buyer_first_order: false, volume_before: Decimal::ZERO, earlier: 0 })).collect()
            };
            // Counted: the month's sums, the rows from the first ask to the
            // last, the sums after the last.
            let plan = MonthPlan::new(&asks, t(0));
            // (A group of one is read in one SELECT; the split is the same.)
            let (first, last) = (&asks[0], asks.last().unwrap());
            prop_assert_eq!(plan.counted_firsts().count(), usize::from(asks.len() > 1));
            let from = (first.placed_at, first.order_id.as_str());
            let to = (last.placed_at, last.order_id.as_str());
            let key = |b: &Between| (b.0, b.1.clone());
            let rows: Vec<Between> = orders.iter().filter(|b| { let k = key(b); (k.0, k.1.as_str()) >= from && (k.0, k.1.as_str()) <= to }).cloned().collect();
            let after: Vec<&Between> = orders.iter().filter(|(p, id, _)| (*p, id.as_str()) > to).collect();
            let tail = (after.iter().map(|b| b.2).sum(), after.len() as u64);
            let sums = (orders.iter().map(|o| o.2).sum(), orders.len() as u64);
            let counted = HashMap::from([(first.order_id.to_string(), Counted { sums: Some(sums), since: Some(t(0)), rows, tail })]);
            let got = plan.finish(flags(), HashMap::new(), counted).unwrap();
            for ask in &asks {
                let f = got[ask.order_id];
                prop_assert_eq!((f.volume_before, f.earlier), expected(ask));
            }
            // Uncounted: the first's aggregate, then the rows up to the last.
            let plan = MonthPlan::new(&asks, t(1));
            prop_assert!(plan.aggregate_of(&asks[0]).is_some());
            let mut facts = flags();
            let (v, n) = expected(&asks[0]);
            facts.get_mut(asks[0].order_id).unwrap().volume_before = v;
            facts.get_mut(asks[0].order_id).unwrap().earlier = n;
            let rows: Vec<Between> = orders.iter().filter(|(p, id, _)| (*p, id.as_str()) >= from && (*p, id.as_str()) < to).cloned().collect();
            let rows: Vec<Between> = rows.into_iter().filter(|(p, id, _)| (*p, id.as_str()) < to).collect();
            let got = plan.finish(facts, HashMap::from([(first.order_id.to_string(), rows)]), HashMap::new()).unwrap();
            for ask in &asks {
                let f = got[ask.order_id];
                prop_assert_eq!((f.volume_before, f.earlier), expected(ask));
            }
        }
    }

    #[test]
    fn a_moved_since_is_retried_and_a_month_row_missing_beside_its_orders_is_corrupt() {
        let (id, aff, buyer) = (
            OrderId::from_trusted("o-1".into()),
            AffiliateId::from_trusted("A".into()),
            BuyerId::from_trusted("b".into()),
        );
        let asks = [MonthAsk {
            order_id: &id,
            buyer_id: &buyer,
            direct: Some(&aff),
            placed_at: t(5),
            month_start: t(0),
            month_end: t(100),
        }];
        let plan = MonthPlan::new(&asks, t(0));
        let flags = || {
            HashMap::from([(
                id.clone(),
                MonthFacts { buyer_first_order: true, volume_before: Decimal::ZERO, earlier: 0 },
            )])
        };
        let seen =
            |since, sums| HashMap::from([(id.to_string(), Counted { sums, since: Some(since), ..Default::default() })]);
        let moved = plan.finish(flags(), HashMap::new(), seen(t(9), Some((Decimal::ONE, 1))));
        assert!(matches!(moved, Err(StoreError::Busy(_))), "{moved:?}");
        let none_yet = plan.finish(flags(), HashMap::new(), seen(t(0), None)).unwrap();
        assert_eq!((none_yet[&id].volume_before, none_yet[&id].earlier), (Decimal::ZERO, 0), "a month without orders");
        let missing = plan.finish(
            flags(),
            HashMap::new(),
            HashMap::from([(
                id.to_string(),
                Counted { sums: None, since: Some(t(0)), rows: vec![], tail: (Decimal::TEN, 1) },
            )]),
        );
        assert!(matches!(missing, Err(StoreError::Corrupt(_))), "orders but no row: {missing:?}");
        let short = plan.finish(
            flags(),
            HashMap::new(),
            HashMap::from([(
                id.to_string(),
                Counted {
                    sums: Some((Decimal::ONE, 0)),
                    since: Some(t(0)),
                    rows: vec![(t(5), "o-1".into(), Decimal::TEN)],
                    tail: (Decimal::ZERO, 0),
                },
            )]),
        );
        assert!(matches!(short, Err(StoreError::Corrupt(_))), "fewer orders than those from it on: {short:?}");
        let ok = plan.finish(flags(), HashMap::new(), seen(t(0), Some((Decimal::TEN, 3)))).unwrap();
        assert_eq!((ok[&id].volume_before, ok[&id].earlier, ok[&id].buyer_first_order), (Decimal::TEN, 3, true));
    }
}
