//! Month facts for a batch of events: the grouping
//! that lets a run of one affiliate's orders cost one scan of its month
//! instead of one per order. A backend answers two kinds of question in SQL —
//! the aggregate of a group's first ask (the affiliate's orders of the month
//! placed before it) and, per group of several asks, the orders placed from
//! its first ask up to its last — and [`MonthPlan::finish`] adds the rest.
use crate::domain::ids::{AffiliateId, OrderId};
use crate::store::{corrupt, MonthAsk, MonthFacts, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// An order placed inside a group's range: (placed_at, id, original eligible).
pub type Between = (DateTime<Utc>, String, Decimal);

pub struct MonthPlan<'q, 'a> {
    /// Asks of one direct affiliate and month, by (placed_at, id).
    groups: HashMap<(&'a AffiliateId, DateTime<Utc>), Vec<&'q MonthAsk<'a>>>,
}

impl<'q, 'a> MonthPlan<'q, 'a> {
    pub fn new(asks: &'q [MonthAsk<'a>]) -> Self {
        let mut groups: HashMap<(&'a AffiliateId, DateTime<Utc>), Vec<&'q MonthAsk<'a>>> = HashMap::new();
        for ask in asks {
            if let Some(direct) = ask.direct {
                groups.entry((direct, ask.month_start)).or_default().push(ask);
            }
        }
        for group in groups.values_mut() {
            group.sort_by(|a, b| (a.placed_at, a.order_id).cmp(&(b.placed_at, b.order_id)));
        }
        Self { groups }
    }

    /// The affiliate whose month aggregate up to this ask is to be read: the
    /// ask's direct affiliate for the first ask of its group, else none (the
    /// later asks are derived from the first).
    pub fn aggregate_of(&self, ask: &MonthAsk<'a>) -> Option<&'a AffiliateId> {
        let direct = ask.direct?;
        let group = self.groups.get(&(direct, ask.month_start))?;
        (group[0].order_id == ask.order_id).then_some(direct)
    }

    /// (first, last) ask of every group of several: the orders placed from
    /// the first (included) to the last (excluded) are to be read, keyed by
    /// the first's order id.
    pub fn ranges(&self) -> impl Iterator<Item = (&'q MonthAsk<'a>, &'q MonthAsk<'a>)> + '_ {
        self.groups.values().filter(|g| g.len() > 1).map(|g| (g[0], g[g.len() - 1]))
    }

    /// The facts of every ask: `facts` holds each ask's buyer flag, and for
    /// the first ask of each group its aggregate; `between` the rows read for
    /// [`MonthPlan::ranges`]. The later asks of a group get the first's
    /// aggregate plus the orders placed from the first up to each.
    pub fn finish(
        &self,
        mut facts: HashMap<OrderId, MonthFacts>,
        mut between: HashMap<String, Vec<Between>>,
    ) -> Result<HashMap<OrderId, MonthFacts>> {
        for group in self.groups.values().filter(|g| g.len() > 1) {
            let base = *facts.get(group[0].order_id).ok_or_else(|| corrupt("month aggregate missing"))?;
            let mut rows = between.remove(group[0].order_id.as_str()).unwrap_or_default();
            rows.sort();
            let mut rows = rows.into_iter().peekable();
            let (mut volume, mut earlier) = (base.volume_before, base.earlier);
            for ask in &group[1..] {
                while let Some((_, _, eligible)) =
                    rows.next_if(|(p, id, _)| (*p, id.as_str()) < (ask.placed_at, ask.order_id.as_str()))
                {
                    volume = volume.checked_add(eligible).ok_or_else(|| corrupt("month volume overflows"))?;
                    earlier += 1;
                }
                let f = facts.get_mut(ask.order_id).ok_or_else(|| corrupt("month facts missing"))?;
                f.volume_before = volume;
                f.earlier = earlier;
            }
        }
        Ok(facts)
    }
}
