//! What reconcile reads: the rows that break a stored-balance invariant,
//! over everything (a full sweep) or over what changed in a window (an
//! incremental run); and the runs themselves. Every check reads one
//! snapshot; sums are exact (see [`super::Dialect::sum`]) and compared as
//! `Decimal`s (`"1.5000"` equals `"1.5"`), never as text.
use super::{rows, Arg, Conn, Lane, Sql, SqlStore};
use crate::domain::caps::{CounterKey, Scope};
use crate::domain::event::EventId;
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::reconcile::{Run, RunKind, RunStatus, Window};
use crate::store::{
    corrupt, BalanceCheck, Changes, ClaimTx, CounterCheck, CoveredOrder, MonthCheck, Reconcile, ReconcileFacts, Result,
};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap};

/// The keys of a check in chunks (IN lists), or one pass over everything.
fn chunks<T>(only: Option<&[T]>) -> Vec<Option<&[T]>> {
    match only {
        None => vec![None],
        Some(keys) => keys.chunks(500).map(Some).collect(),
    }
}

#[async_trait::async_trait]
impl Reconcile for SqlStore {
    async fn counter_keys(&self, after: Option<&CounterKey>, limit: u32) -> Result<Vec<CounterKey>> {
        let mut q = Sql::new("SELECT scope, subject, period, period_start FROM cap_counters");
        if let Some(k) = after {
            q.push(" WHERE scope > ").bind(k.scope.kind()).push(" OR (scope = ").bind(k.scope.kind());
            q.push(" AND (subject > ").bind(k.scope.subject()).push(" OR (subject = ").bind(k.scope.subject());
            q.push(" AND (period > ").bind(k.period.as_str()).push(" OR (period = ").bind(k.period.as_str());
            q.push(" AND period_start > ").bind(Arg::Time(k.start)).push(")))))");
        }
        q.push(" ORDER BY scope, subject, period, period_start LIMIT ").bind(limit);
        rows::all(&self.read().await?.fetch(&q).await?, |r| super::caps::counter_key(r))
    }

    async fn counter_check(&self, key: &CounterKey, end: Option<DateTime<Utc>>) -> Result<CounterCheck> {
        let before = |q: &mut Sql| {
            if let Some(end) = end {
                q.push(" AND o.placed_at < ").bind(Arg::Bound(end));
            }
        };
        let mut conn = self.snapshot().await?;
        let sum = conn.dialect().sum;
        let stored = super::caps::counters(conn.as_mut(), std::slice::from_ref(key), false)
            .await?
            .remove(key)
            .ok_or_else(|| corrupt("the counter vanished"))?;
        let mut orders: Vec<CoveredOrder> = Vec::new();
        let order = |r: &super::Row, commission: Decimal, points: i64| -> Result<CoveredOrder> {
            Ok(CoveredOrder {
                order_id: OrderId::from_trusted(r.text("id")?),
                program_version: r.uint("program_version")?,
                limits: r.opt_text("limits")?,
                commission,
                points,
            })
        };
        match &key.scope {
            Scope::Affiliate(a) => {
                let mut q = Sql::new(format!(
                    "SELECT o.id, o.program_version, o.limits, {} AS commission FROM ledger_entries l \
                     JOIN orders o ON o.id = l.order_id WHERE l.affiliate_id = ",
                    sum("l.amount")
                ));
                q.bind(a).push(" AND l.level = 1 AND o.placed_at >= ").bind(Arg::Bound(key.start));
                before(&mut q);
                q.push(" GROUP BY o.id, o.program_version, o.limits");
                for r in conn.fetch(&q).await? {
                    orders.push(order(&r, r.sum("commission")?, 0)?);
                }
            }
            Scope::Program => {
                let mut q = Sql::new(format!(
                    "SELECT o.id, o.program_version, NULL AS limits, {} AS commission FROM orders o \
                     JOIN ledger_entries l ON l.order_id = o.id WHERE o.placed_at >= ",
                    sum("l.amount")
                ));
                q.bind(Arg::Bound(key.start));
                before(&mut q);
                q.push(" GROUP BY o.id, o.program_version");
                let mut by_id: HashMap<String, usize> = HashMap::new();
                for r in conn.fetch(&q).await? {
                    by_id.insert(r.text("id")?, orders.len());
                    orders.push(order(&r, r.sum("commission")?, 0)?);
                }
                let mut q = Sql::new(format!(
                    "SELECT o.id, o.program_version, NULL AS limits, {} AS points FROM orders o \
                     JOIN reward_entries r ON r.order_id = o.id WHERE r.kind IN ('points', 'first_order_bonus') \
                     AND o.placed_at >= ",
                    sum("r.points")
                ));
                q.bind(Arg::Bound(key.start));
                before(&mut q);
                q.push(" GROUP BY o.id, o.program_version");
                for r in conn.fetch(&q).await? {
                    let points = r.sum("points")?.to_i64().ok_or_else(|| corrupt("an order's points overflow"))?;
                    match by_id.get(&r.text("id")?) {
                        Some(&i) => orders[i].points = points,
                        None => orders.push(order(&r, Decimal::ZERO, points)?),
                    }
                }
            }
        }
        Ok(CounterCheck { stored, orders })
    }

    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>, mark: u64) -> Result<ReconcileFacts> {
        let mut conn = self.snapshot().await?;
        let c = conn.as_mut();
        let mut f = ReconcileFacts::default();
        for (table, slot) in [
            ("affiliates", &mut f.affiliates),
            ("buyers", &mut f.buyers),
            ("events", &mut f.events),
            ("payouts", &mut f.payouts),
        ] {
            *slot = c.one(&Sql::new(format!("SELECT COUNT(*) AS n FROM {table}"))).await?.uint("n")?;
        }
        (f.balance_mismatches, f.checks) = balance_mismatches(c, mark).await?;
        f.points_mismatches = points_mismatches(c, None).await?;
        f.duplicate_entries = duplicate_entries(c, None).await?;
        f.stuck_events = stuck_events(c, stuck_before).await?;
        f.payout_item_mismatches = payout_item_mismatches(c, None).await?;
        f.payout_entry_statuses = payout_entry_statuses(c, None).await?;
        (f.adjustments, f.adjustment_mismatches) = adjustment_mismatches(c, None).await?;
        conn.commit().await?;
        Ok(f)
    }

    async fn changes(&self, w: &Window, stuck_before: DateTime<Utc>) -> Result<Changes> {
        let mut conn = self.snapshot().await?;
        let c = conn.as_mut();
        // No run before this one: since the beginning. (The epoch, not
        // `MIN_UTC`: MySQL's DATETIME starts at year 1000.)
        let since = Arg::Bound(w.since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH));
        let (mut orders, mut affiliates, mut buyers, mut events) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        let q = Sql::new("SELECT order_id, affiliate_id, event_id FROM ledger_entries WHERE id > ? AND id <= ?")
            .arg(super::uint(w.ledger.0)?)
            .arg(super::uint(w.ledger.1)?);
        for r in c.fetch(&q).await? {
            orders.insert(r.text("order_id")?);
            affiliates.insert(r.text("affiliate_id")?);
            events.insert(r.text("event_id")?);
        }
        let q = Sql::new("SELECT order_id, buyer_id FROM reward_entries WHERE id > ? AND id <= ?")
            .arg(super::uint(w.rewards.0)?)
            .arg(super::uint(w.rewards.1)?);
        for r in c.fetch(&q).await? {
            orders.insert(r.text("order_id")?);
            buyers.insert(r.text("buyer_id")?);
        }
        orders.remove(""); // a wallet entry's: no order
                           // Wallet changes without entries (a capture): their events.
        let q = Sql::new("SELECT partition_key FROM events WHERE created_at >= ? AND order_id = ''").arg(since.clone());
        for r in c.fetch(&q).await? {
            if let Some(buyer) = r.text("partition_key")?.strip_prefix("b:") {
                buyers.insert(buyer.to_owned());
            }
        }
        let q =
            Sql::new("SELECT id FROM payouts WHERE created_at >= ? OR completed_at >= ?").arg(since.clone()).arg(since);
        let payouts = rows::all(&c.fetch(&q).await?, |r| r.uint("id"))?;
        for p in &payouts {
            let q = Sql::new("SELECT affiliate_id FROM payout_items WHERE payout_id = ?").arg(super::uint(*p)?);
            for r in c.fetch(&q).await? {
                affiliates.insert(r.text("affiliate_id")?);
            }
        }
        let affiliates: Vec<AffiliateId> = affiliates.into_iter().map(AffiliateId::from_trusted).collect();
        let buyers: Vec<BuyerId> = buyers.into_iter().map(BuyerId::from_trusted).collect();
        let events: Vec<EventId> = events.iter().map(|e| rows::event_id(e)).collect::<Result<_>>()?;
        // The touched buyers' points on a second snapshot at the same time,
        // where the pool has a connection to spare: a buyer's balance and its
        // entries are read in one snapshot either way, and the two checks'
        // reads (random pages at 10 M orders) overlap.
        let second = tokio::time::timeout(SECOND_SNAPSHOT_WAIT, self.snapshot()).await.ok().and_then(|c| c.ok());
        let ((balance_mismatches, checks), points_mismatches) = match second {
            Some(mut points) => {
                let (balances, found) = tokio::join!(
                    touched_balances(c, &affiliates, w.ledger.0, w.ledger.1),
                    points_mismatches(points.as_mut(), Some(&buyers)),
                );
                let found = found?;
                points.commit().await?;
                (balances?, found)
            }
            None => (
                touched_balances(c, &affiliates, w.ledger.0, w.ledger.1).await?,
                points_mismatches(c, Some(&buyers)).await?,
            ),
        };
        let facts = ReconcileFacts {
            affiliates: affiliates.len() as u64,
            buyers: buyers.len() as u64,
            events: events.len() as u64,
            payouts: payouts.len() as u64,
            balance_mismatches,
            checks,
            points_mismatches,
            duplicate_entries: duplicate_entries(c, Some(&events)).await?,
            stuck_events: stuck_events(c, stuck_before).await?,
            payout_item_mismatches: payout_item_mismatches(c, Some(&payouts)).await?,
            payout_entry_statuses: payout_entry_statuses(c, Some(&payouts)).await?,
            adjustments: 0,
            adjustment_mismatches: Vec::new(),
        };
        let mut facts = facts;
        (facts.adjustments, facts.adjustment_mismatches) = adjustment_mismatches(c, w.since).await?;
        conn.commit().await?;
        Ok(Changes { facts, orders: orders.into_iter().map(OrderId::from_trusted).collect(), buyers })
    }

    async fn entry_marks(&self) -> Result<(u64, u64)> {
        let mut conn = self.snapshot().await?;
        let q = Sql::new(
            "SELECT (SELECT MAX(id) FROM ledger_entries) AS ledger, (SELECT MAX(id) FROM reward_entries) AS rewards",
        );
        let r = conn.one(&q).await?;
        let marks = (r.opt_int("ledger")?.unwrap_or(0), r.opt_int("rewards")?.unwrap_or(0));
        conn.commit().await?;
        Ok((u64::try_from(marks.0).map_err(corrupt)?, u64::try_from(marks.1).map_err(corrupt)?))
    }

    async fn counted_since(&self) -> Result<DateTime<Utc>> {
        self.since.get(self.read().await?.as_mut()).await
    }

    async fn month_keys(
        &self,
        from: DateTime<Utc>,
        after: Option<&(AffiliateId, DateTime<Utc>)>,
        limit: u32,
    ) -> Result<Vec<(AffiliateId, DateTime<Utc>)>> {
        let mut q = Sql::new("SELECT affiliate_id, month_start FROM affiliate_months WHERE month_start >= ?")
            .arg(Arg::Bound(from));
        if let Some((a, m)) = after {
            q.push(" AND (affiliate_id > ").bind(a).push(" OR (affiliate_id = ").bind(a);
            q.push(" AND month_start > ").bind(Arg::Bound(*m)).push("))");
        }
        q.push(" ORDER BY affiliate_id, month_start LIMIT ").bind(limit);
        rows::all(&self.read().await?.fetch(&q).await?, |r| {
            Ok((AffiliateId::from_trusted(r.text("affiliate_id")?), r.time("month_start")?))
        })
    }

    async fn month_checks(&self, months: &[(AffiliateId, DateTime<Utc>, DateTime<Utc>)]) -> Result<Vec<MonthCheck>> {
        let mut conn = self.read().await?;
        let d = conn.dialect();
        let mut out = Vec::with_capacity(months.len());
        for chunk in months.chunks(d.max_compound.min(200)) {
            let mut q = Sql::default();
            for (i, (a, start, end)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push("SELECT ")
                    .bind(i as i64)
                    .push(" AS n, (SELECT volume FROM affiliate_months WHERE affiliate_id = ");
                q.bind(a).push(" AND month_start = ").bind(Arg::Bound(*start)).push(") AS m_volume, ");
                let orders = (d.text_cast)("orders");
                q.push(&format!("(SELECT {orders} FROM affiliate_months WHERE affiliate_id = ")).bind(a);
                q.push(" AND month_start = ").bind(Arg::Bound(*start)).push(") AS m_orders, ");
                q.push(&format!(
                    "{} AS volume, COUNT(*) AS orders FROM orders WHERE affiliate_id = ",
                    (d.sum)("original_eligible")
                ));
                q.bind(a).push(" AND placed_at >= ").bind(Arg::Bound(*start));
                q.push(" AND placed_at < ").bind(Arg::Bound(*end));
            }
            let mut found = vec![None; chunk.len()];
            for r in conn.fetch(&q).await? {
                let n = usize::try_from(r.uint("n")?).map_err(corrupt)?;
                let stored = match (r.opt_money("m_volume")?, r.opt_text("m_orders")?) {
                    (Some(v), Some(o)) => Some((v, o.parse().map_err(corrupt)?)),
                    _ => None,
                };
                let slot = found.get_mut(n).ok_or_else(|| corrupt("month check row"))?;
                *slot = Some((stored, (r.sum("volume")?, r.uint("orders")?)));
            }
            for ((a, start, _), f) in chunk.iter().zip(found) {
                let (stored, orders) = f.ok_or_else(|| corrupt("month check row missing"))?;
                out.push(MonthCheck { affiliate_id: a.clone(), month_start: *start, stored, orders });
            }
        }
        Ok(out)
    }

    async fn month_counts_from(&self, from: DateTime<Utc>) -> Result<Vec<(AffiliateId, u64, u64)>> {
        let mut conn = self.read().await?;
        let orders = (conn.dialect().text_cast)("SUM(orders)");
        let q = Sql::new(format!(
            "SELECT 'm' AS kind, affiliate_id, {orders} AS n FROM affiliate_months WHERE month_start >= ? \
             GROUP BY affiliate_id \
             UNION ALL SELECT 'o', affiliate_id, {} FROM orders WHERE affiliate_id IS NOT NULL AND placed_at >= ? \
             GROUP BY affiliate_id",
            (conn.dialect().text_cast)("COUNT(*)")
        ))
        .arg(Arg::Bound(from))
        .arg(Arg::Bound(from));
        let differ = counts_that_differ(conn.as_mut(), &q, "affiliate_id", "m").await?;
        Ok(differ.into_iter().map(|(a, m, o)| (AffiliateId::from_trusted(a), m, o)).collect())
    }

    async fn tally_mismatches(&self) -> Result<Vec<(String, u64, u64)>> {
        let mut conn = self.read().await?;
        let count = (conn.dialect().text_cast)("COUNT(*)");
        let sum = (conn.dialect().text_cast)("SUM(n)");
        let q = Sql::new(format!(
            "SELECT 't' AS kind, type, {sum} AS n FROM event_tallies GROUP BY type \
             UNION ALL SELECT 'e', type, {count} FROM events GROUP BY type"
        ));
        counts_that_differ(conn.as_mut(), &q, "type", "t").await
    }

    async fn save_balance_checks(&self, checks: &[BalanceCheck]) -> Result<()> {
        let mut conn = self.write(Lane::Work).await?;
        for chunk in checks.chunks(500) {
            let mut q = Sql::new("DELETE FROM affiliate_checks WHERE affiliate_id IN (");
            q.list(chunk.iter().map(|k| &k.affiliate_id)).push(")");
            conn.execute(&q).await?;
            let rows = chunk
                .iter()
                .map(|k| Ok(vec![(&k.affiliate_id).into(), super::uint(k.mark)?, k.total.into()]))
                .collect::<Result<Vec<Vec<Arg>>>>()?;
            let mut q = Sql::new("INSERT INTO affiliate_checks (affiliate_id, ledger_mark, total)");
            q.values(&rows, Clone::clone);
            conn.execute(&q).await?;
        }
        conn.commit().await
    }

    async fn order_count(&self) -> Result<u64> {
        self.read().await?.one(&Sql::new("SELECT COUNT(*) AS n FROM orders")).await?.uint("n")
    }

    async fn runs(&self, running: bool, limit: u32) -> Result<Vec<Run>> {
        let which = if running { "status = 'running'" } else { "status IN ('done', 'failed')" };
        let q = Sql::new(format!("SELECT {RUN_COLUMNS} FROM reconcile_runs WHERE {which} ORDER BY id DESC LIMIT ?"))
            .arg(limit);
        rows::all(&self.read().await?.fetch(&q).await?, run)
    }

    async fn save_run(&self, r: &Run) -> Result<()> {
        let mut conn = self.write(Lane::Work).await?;
        let q = Sql::new(
            "UPDATE reconcile_runs SET status = ?, heartbeat_at = ?, finished_at = ?, after_order = ?, done_count = ?, \
             total_count = ?, violations = ?, report = ?, error = ? WHERE id = ?",
        )
        .arg(r.status.as_str())
        .arg(r.heartbeat_at)
        .arg(r.finished_at)
        .arg(r.cursor.as_deref())
        .arg(super::uint(r.done)?)
        .arg(super::uint(r.total)?)
        .arg(super::uint(r.violations)?)
        .arg(r.report.as_str())
        .arg(r.error.as_deref())
        .arg(super::uint(r.id)?);
        conn.execute(&q).await?;
        conn.commit().await
    }

    async fn beat_run(&self, id: u64, at: DateTime<Utc>) -> Result<()> {
        let mut conn = self.write(Lane::Work).await?;
        let q = Sql::new("UPDATE reconcile_runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'")
            .arg(at)
            .arg(super::uint(id)?);
        conn.execute(&q).await?;
        conn.commit().await
    }

    async fn prune_runs(&self, keep: u64) -> Result<u64> {
        let mut conn = self.write(Lane::Work).await?;
        let newest = conn.one(&Sql::new("SELECT MAX(id) AS n FROM reconcile_runs")).await?.opt_int("n")?.unwrap_or(0);
        let below = newest.saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX));
        let q = Sql::new("DELETE FROM reconcile_runs WHERE id <= ? AND status <> 'running'").arg(below);
        let pruned = conn.execute(&q).await?.rows;
        conn.commit().await?;
        Ok(pruned)
    }

    async fn begin_claim(&self) -> Result<Box<dyn ClaimTx>> {
        let mut conn = self.write(Lane::Work).await?;
        let q = format!("SELECT name FROM locks WHERE name = 'reconcile'{}", conn.dialect().for_update);
        conn.one(&Sql::new(q)).await?;
        Ok(Box::new(SqlClaim { conn }))
    }
}

const RUN_COLUMNS: &str = "id, kind, status, owner, started_at, heartbeat_at, finished_at, ledger_from, ledger_to, \
     rewards_from, rewards_to, after_order, done_count, total_count, violations, report, error";

fn run(r: &dyn super::Cols) -> Result<Run> {
    let kind = r.text("kind")?;
    let status = r.text("status")?;
    Ok(Run {
        id: r.uint("id")?,
        kind: RunKind::parse(&kind).ok_or_else(|| corrupt(format!("run kind {kind:?}")))?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt(format!("run status {status:?}")))?,
        owner: r.text("owner")?,
        started_at: r.time("started_at")?,
        heartbeat_at: r.time("heartbeat_at")?,
        finished_at: r.opt_time("finished_at")?,
        window: Window {
            ledger: (r.uint("ledger_from")?, r.uint("ledger_to")?),
            rewards: (r.uint("rewards_from")?, r.uint("rewards_to")?),
            since: None,
        },
        cursor: r.opt_text("after_order")?,
        done: r.uint("done_count")?,
        total: r.uint("total_count")?,
        violations: r.uint("violations")?,
        report: r.text("report")?,
        error: r.opt_text("error")?,
    })
}

struct SqlClaim {
    conn: Box<dyn Conn>,
}

#[async_trait::async_trait]
impl ClaimTx for SqlClaim {
    async fn running(&mut self) -> Result<Vec<Run>> {
        let q = Sql::new(format!("SELECT {RUN_COLUMNS} FROM reconcile_runs WHERE status = 'running' ORDER BY id"));
        rows::all(&self.conn.fetch(&q).await?, run)
    }

    async fn run(&mut self, id: u64) -> Result<Option<Run>> {
        let q = Sql::new(format!("SELECT {RUN_COLUMNS} FROM reconcile_runs WHERE id = ?")).arg(super::uint(id)?);
        self.conn.optional(&q).await?.map(|r| run(r.as_ref())).transpose()
    }

    async fn fail(&mut self, id: u64, error: &str, now: DateTime<Utc>) -> Result<()> {
        let q = Sql::new("UPDATE reconcile_runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?")
            .arg(now)
            .arg(error)
            .arg(super::uint(id)?);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn insert(&mut self, r: &Run) -> Result<u64> {
        let q = Sql::new(
            "INSERT INTO reconcile_runs (kind, status, owner, started_at, heartbeat_at, finished_at, ledger_from, \
             ledger_to, rewards_from, rewards_to, after_order, done_count, total_count, violations, report, error) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .arg(r.kind.as_str())
        .arg(r.status.as_str())
        .arg(r.owner.as_str())
        .arg(r.started_at)
        .arg(r.heartbeat_at)
        .arg(r.finished_at)
        .arg(super::uint(r.window.ledger.0)?)
        .arg(super::uint(r.window.ledger.1)?)
        .arg(super::uint(r.window.rewards.0)?)
        .arg(super::uint(r.window.rewards.1)?)
        .arg(r.cursor.as_deref())
        .arg(super::uint(r.done)?)
        .arg(super::uint(r.total)?)
        .arg(super::uint(r.violations)?)
        .arg(r.report.as_str())
        .arg(r.error.as_deref());
        Ok(self.conn.execute(&q).await?.last_id)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}

/// ` WHERE <column> IN (…)` for the keys of a chunk, or nothing.
fn push_only(q: &mut Sql, word: &str, column: &str, keys: Option<Vec<Arg>>) {
    if let Some(keys) = keys {
        q.push(&format!(" {word} {column} IN (")).list(keys).push(")");
    }
}

/// A chunk's keys as arguments.
fn args<T>(keys: Option<&[T]>, arg: impl Fn(&T) -> Arg) -> Option<Vec<Arg>> {
    keys.map(|k| k.iter().map(arg).collect())
}

/// Two counts per key from `q`'s rows (`kind`, `key`, `n` as text; `kind`
/// `first` for the first count, any other for the second): the keys whose
/// two differ, with both (a key missing from one side counts 0 there).
async fn counts_that_differ(c: &mut dyn Conn, q: &Sql, key: &str, first: &str) -> Result<Vec<(String, u64, u64)>> {
    let mut counts: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for r in c.fetch(q).await? {
        let n: u64 = r.text("n")?.parse().map_err(corrupt)?;
        let slot = counts.entry(r.text(key)?).or_default();
        if r.text("kind")? == first {
            slot.0 = n;
        } else {
            slot.1 = n;
        }
    }
    Ok(counts.into_iter().filter(|(_, (a, b))| a != b).map(|(k, (a, b))| (k, a, b)).collect())
}

/// (affiliate, stored [pending, approved, paid], ledger sums)
type BalanceMismatch = (String, [Decimal; 3], [Decimal; 3]);

/// Every affiliate's balances against its ledger sums per status; the
/// affiliates found right, with their totals up to `mark`.
async fn balance_mismatches(c: &mut dyn Conn, mark: u64) -> Result<(Vec<BalanceMismatch>, Vec<BalanceCheck>)> {
    let sum = c.dialect().sum;
    // `mark` is an integer: written into the statement, it cannot inject.
    let sums = format!(
        "{} AS p, {} AS ap, {} AS pd, {} AS upto",
        sum("CASE WHEN status = 'pending' THEN amount END"),
        sum("CASE WHEN status = 'approved' THEN amount END"),
        sum("CASE WHEN status = 'paid' THEN amount END"),
        sum(&format!("CASE WHEN id <= {mark} THEN amount END")),
    );
    let q = Sql::new(format!(
        "SELECT a.id, a.pending, a.approved, a.paid, l.p, l.ap, l.pd, l.upto FROM affiliates a LEFT JOIN \
         (SELECT affiliate_id, {sums} FROM ledger_entries GROUP BY affiliate_id) l ON l.affiliate_id = a.id \
         ORDER BY a.id"
    ));
    let (mut found, mut checks) = (Vec::new(), Vec::new());
    for r in c.fetch(&q).await? {
        let stored = [r.money("pending")?, r.money("approved")?, r.money("paid")?];
        let ledger = [r.sum("p")?, r.sum("ap")?, r.sum("pd")?];
        if stored != ledger {
            found.push((r.text("id")?, stored, ledger));
        } else if mark > 0 {
            let affiliate_id = AffiliateId::from_trusted(r.text("id")?);
            checks.push(BalanceCheck { affiliate_id, mark, total: r.sum("upto")? });
        }
    }
    Ok((found, checks))
}

/// The balances of `affiliates` against their ledger, at a cost that does
/// not grow with their history:
/// - the total against the affiliate's last check plus its entries above
///   that check's mark: for those checked recently (most: the run before
///   checked them), one scan of the recent entries from the lowest such
///   mark (`scan_floor`); for the others a range of (affiliate, id)
///   each;
/// - paid against its completed payout items (a few a year; each item was
///   checked against its entries by the run that saw its batch made and
///   completed), plus any entry paid outside a completed batch;
/// - approved against its approved entries not in a completed batch (a range
///   of `ix_ledger_unbatched` per affiliate and open batch, read from the
///   index alone: the amount is in it);
/// - pending as the rest. The pending entries are the most numerous (every
///   order inside its holding period, an upline's whole subtree's) and are
///   never read.
///
/// An entry pending or approved in a completed batch counts as paid here
/// (its item holds it); the payout checks name it. Those found right get a
/// check up to `mark`.
async fn touched_balances(
    c: &mut dyn Conn,
    affiliates: &[AffiliateId],
    mark: u64,
    end: u64,
) -> Result<(Vec<BalanceMismatch>, Vec<BalanceCheck>)> {
    let (mut found, mut checks) = (Vec::new(), Vec::new());
    if affiliates.is_empty() {
        return Ok((found, checks));
    }
    let sum = c.dialect().sum;
    let open_batches = rows::all(&c.fetch(&Sql::new("SELECT id FROM payouts WHERE status = 'open'")).await?, |r| {
        super::uint(r.uint("id")?)
    })?;
    let per_statement = c.dialect().max_compound.min(200);
    // [approved, paid] outside a completed batch, paid by completed items, and
    // the stored balances with the last check, by affiliate.
    let mut unbatched: HashMap<String, [Decimal; 2]> = HashMap::new();
    let mut items: HashMap<String, Decimal> = HashMap::new();
    let mut stored = Vec::with_capacity(affiliates.len());
    for chunk in affiliates.chunks(per_statement) {
        // Approved and paid entries outside a completed batch: not in a
        // batch, or in an open one. Not in a batch: through
        // `ix_ledger_unbatched` (status, payout, affiliate, amount), which
        // holds the sum. MariaDB, with more ranges than its index-dive limit,
        // estimates that one from statistics and at times took
        // `ix_ledger_payout` instead: every unbatched entry of the
        // affiliates, pending ones too, each looked up in the table (42 s
        // for 8 600 affiliates at 10 M orders, against 0.4 s).
        let mut q = Sql::new(format!(
            "SELECT affiliate_id, status, {} AS s FROM ledger_entries{} WHERE status IN ('approved', 'paid') \
             AND payout_id IS NULL AND affiliate_id IN (",
            sum("amount"),
            (c.dialect().use_index)("ix_ledger_unbatched"),
        ));
        q.list(chunk).push(") GROUP BY affiliate_id, status");
        if !open_batches.is_empty() {
            q.push(&format!(
                " UNION ALL SELECT affiliate_id, status, {} AS s FROM ledger_entries \
                 WHERE status IN ('approved', 'paid') AND payout_id IN (",
                sum("amount")
            ));
            q.list(open_batches.iter().cloned()).push(") AND affiliate_id IN (");
            q.list(chunk).push(") GROUP BY affiliate_id, status");
        }
        for r in c.fetch(&q).await? {
            let slot = usize::from(r.text("status")? == "paid");
            unbatched.entry(r.text("affiliate_id")?).or_default()[slot] += r.sum("s")?;
        }
        let mut q = Sql::new(format!(
            "SELECT i.affiliate_id, {} AS s FROM payout_items i JOIN payouts p ON p.id = i.payout_id \
             WHERE p.status = 'completed' AND i.affiliate_id IN (",
            sum("i.amount")
        ));
        q.list(chunk).push(") GROUP BY i.affiliate_id");
        for r in c.fetch(&q).await? {
            items.insert(r.text("affiliate_id")?, r.sum("s")?);
        }
        let mut q = Sql::new(
            "SELECT a.id, a.pending, a.approved, a.paid, k.ledger_mark, k.total FROM affiliates a \
             LEFT JOIN affiliate_checks k ON k.affiliate_id = a.id WHERE a.id IN (",
        );
        q.list(chunk).push(")");
        for r in c.fetch(&q).await? {
            let balances = [r.money("pending")?, r.money("approved")?, r.money("paid")?];
            let mark = r.opt_int("ledger_mark")?.map(u64::try_from).transpose().map_err(corrupt)?;
            stored.push((r.text("id")?, balances, (mark, r.opt_money("total")?.unwrap_or_default())));
        }
    }
    // Each affiliate's entries above its check: (up to `mark`, all).
    let mut new: HashMap<String, (Decimal, Decimal)> = HashMap::new();
    // The sum of `amount` over the entries up to `mark`.
    let upto = |id: &str, amount: &str| sum(&format!("CASE WHEN {id} <= {mark} THEN {amount} END"));
    let floor = scan_floor(stored.iter().filter_map(|(_, _, (m, _))| *m).collect(), end, stored.len());
    if let Some(floor) = floor {
        // Those checked at or after `floor` (the most: the run before
        // checked them): one range of ids (the primary key on SQLite,
        // `uq_ledger_id` on MySQL, whose rows are keyed by affiliate: each
        // entry then a lookup of a recently written, so cached, page), the
        // recent entries of every affiliate, read a page at a time and each
        // summed from its own check's mark.
        let from: HashMap<&str, u64> =
            stored.iter().filter_map(|(id, _, (m, _))| m.filter(|m| *m >= floor).map(|m| (id.as_str(), m))).collect();
        let mut after = floor;
        loop {
            let q = Sql::new("SELECT id, affiliate_id, amount FROM ledger_entries WHERE id > ? ORDER BY id LIMIT ?")
                .arg(super::uint(after)?)
                .arg(SCAN_PAGE);
            let page = c.fetch(&q).await?;
            for r in &page {
                after = r.uint("id")?;
                let affiliate = r.text("affiliate_id")?;
                let Some(&checked) = from.get(affiliate.as_str()) else { continue };
                if after > checked {
                    let amount = r.money("amount")?;
                    let slot = new.entry(affiliate).or_default();
                    if after <= mark {
                        slot.0 += amount;
                    }
                    slot.1 += amount;
                }
            }
            if page.len() < SCAN_PAGE as usize {
                break;
            }
        }
    }
    // The others (checked long ago, or never): their entries above their
    // check, each a range of (affiliate, id): the ledger's key on MySQL,
    // `ix_ledger_affiliate` on SQLite.
    let older: Vec<_> = stored.iter().filter(|(_, _, (m, _))| floor.is_none_or(|f| m.is_none_or(|m| m < f))).collect();
    for chunk in older.chunks(per_statement) {
        let mut q = Sql::new("");
        for (i, (id, _, (checked_mark, _))) in chunk.iter().enumerate() {
            q.push(if i == 0 { "" } else { " UNION ALL " });
            q.push(&format!(
                "SELECT affiliate_id, {} AS upto, {} AS s FROM ledger_entries WHERE affiliate_id = ",
                upto("id", "amount"),
                sum("amount")
            ));
            q.bind(id.as_str()).push(" AND id > ").bind(super::uint(checked_mark.unwrap_or(0))?);
            q.push(" GROUP BY affiliate_id");
        }
        for r in c.fetch(&q).await? {
            new.insert(r.text("affiliate_id")?, (r.sum("upto")?, r.sum("s")?));
        }
    }
    for (id, balances, (checked_mark, checked)) in stored {
        let checked_mark = checked_mark.unwrap_or(0);
        let (upto, above) = new.get(&id).copied().unwrap_or_default();
        let [approved, stray_paid] = unbatched.get(&id).copied().unwrap_or_default();
        let paid = items.get(&id).copied().unwrap_or_default() + stray_paid;
        let total = checked + above;
        let ledger = [total - approved - paid, approved, paid];
        if balances != ledger {
            found.push((id, balances, ledger));
        } else if mark > checked_mark {
            checks.push(BalanceCheck { affiliate_id: AffiliateId::from_trusted(id), mark, total: checked + upto });
        }
    }
    Ok((found, checks))
}

/// How long an incremental run waits for a second read connection (for the
/// points check) before running that check on its one snapshot after the
/// balances: a pool of one connection (an in-memory SQLite database) never
/// has a second.
const SECOND_SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Ledger entries read at most by the shared scan of recent entries.
const SCAN_MAX: u64 = 500_000;
/// The shared scan's page: the memory it holds.
const SCAN_PAGE: u32 = 20_000;
/// One affiliate's own range read costs about as much as this many entries
/// of the shared scan (MariaDB, measured: about 0.2 ms against 4 µs an entry).
const ENTRIES_PER_RANGE_READ: u64 = 50;

/// Where the shared scan of recent entries starts (it reads the ids above
/// it, up to `end`), given the touched affiliates' check marks: the mark
/// that costs least, the scan's entries plus a range read for each
/// affiliate checked below it. None: range reads only.
fn scan_floor(mut marks: Vec<u64>, end: u64, affiliates: usize) -> Option<u64> {
    marks.sort_unstable_by(|a, b| b.cmp(a));
    let mut best = (affiliates as u64 * ENTRIES_PER_RANGE_READ, None);
    for (i, &m) in marks.iter().enumerate() {
        let rows = end.saturating_sub(m);
        if rows > SCAN_MAX {
            break;
        }
        let cost = rows + (affiliates - (i + 1)) as u64 * ENTRIES_PER_RANGE_READ;
        if cost < best.0 {
            best = (cost, Some(m));
        }
    }
    best.1
}

/// Buyers a page of the full sweep's points check covers: the memory it
/// holds is a page's rows, however many buyers there are.
const POINTS_PAGE: i64 = 5_000;

/// Points balances against reward sums (exact: a balance may pass i64): of
/// the buyers `only`, or of every buyer, a range of buyer ids at a time.
async fn points_mismatches(c: &mut dyn Conn, only: Option<&[BuyerId]>) -> Result<Vec<(String, i128, i128)>> {
    let mut found = Vec::new();
    if let Some(keys) = only {
        for chunk in keys.chunks(500) {
            let keys = || chunk.iter().map(Arg::from);
            let mut q = points_query(c);
            q.push(" WHERE buyer_id IN (").list(keys()).push(") GROUP BY buyer_id) r ON r.buyer_id = b.id");
            q.push(" WHERE b.id IN (").list(keys()).push(") ORDER BY b.id");
            points_differ(c, &q, &mut found).await?;
        }
        return Ok(found);
    }
    let mut after: Option<String> = None;
    loop {
        // The page's last buyer: the range is (after, upto], or everything
        // after `after` on the last page.
        let mut q = Sql::new("SELECT id FROM buyers");
        if let Some(a) = &after {
            q.push(" WHERE id > ").bind(a.as_str());
        }
        q.push(" ORDER BY id LIMIT 1 OFFSET ").bind(POINTS_PAGE - 1);
        let upto = c.optional(&q).await?.map(|r| r.text("id")).transpose()?;
        let range = |q: &mut Sql, column: &str| {
            q.push(&format!(" WHERE {column} > ")).bind(after.as_deref().unwrap_or(""));
            if let Some(u) = &upto {
                q.push(&format!(" AND {column} <= ")).bind(u.as_str());
            }
        };
        let mut q = points_query(c);
        range(&mut q, "buyer_id");
        q.push(" GROUP BY buyer_id) r ON r.buyer_id = b.id");
        range(&mut q, "b.id");
        q.push(" ORDER BY b.id");
        points_differ(c, &q, &mut found).await?;
        match upto {
            Some(u) => after = Some(u),
            None => return Ok(found),
        }
    }
}

/// The start of a points check: buyers joined to their reward sums, up to
/// the sums' filter.
fn points_query(c: &mut dyn Conn) -> Sql {
    let sum = (c.dialect().sum)("points");
    Sql::new(format!(
        "SELECT b.id, b.points, r.s FROM buyers b LEFT JOIN (SELECT buyer_id, {sum} AS s FROM reward_entries"
    ))
}

/// Runs a points check, adding the buyers whose balance is not their sum.
async fn points_differ(c: &mut dyn Conn, q: &Sql, found: &mut Vec<(String, i128, i128)>) -> Result<()> {
    for r in c.fetch(q).await? {
        let stored = r.points("points")?;
        let entries = r.sum("s")?.to_i128().ok_or_else(|| corrupt("a points sum is not whole"))?;
        if stored != entries {
            found.push((r.text("id")?, stored, entries));
        }
    }
    Ok(())
}

/// Two entries of one event for one beneficiary and kind.
async fn duplicate_entries(c: &mut dyn Conn, only: Option<&[EventId]>) -> Result<Vec<(String, String, String)>> {
    let mut found = Vec::new();
    for keys in chunks(only) {
        let mut q = Sql::new("SELECT event_id, affiliate_id, kind FROM ledger_entries");
        push_only(&mut q, "WHERE", "event_id", args(keys, |e| Arg::from(*e)));
        q.push(" GROUP BY event_id, affiliate_id, kind HAVING COUNT(*) > 1");
        for r in c.fetch(&q).await? {
            found.push((r.text("event_id")?, r.text("affiliate_id")?, r.text("kind")?));
        }
    }
    Ok(found)
}

/// Open events created before `stuck_before` (the first 1 000).
async fn stuck_events(c: &mut dyn Conn, stuck_before: DateTime<Utc>) -> Result<Vec<(String, String, String, u32)>> {
    let q = Sql::new(
        "SELECT id, order_id, status, attempts FROM events \
         WHERE status IN ('pending', 'processing', 'failed') AND created_at < ? ORDER BY created_at LIMIT 1000",
    )
    .arg(Arg::Bound(stuck_before));
    rows::all(&c.fetch(&q).await?, |r| {
        Ok((r.text("id")?, r.text("order_id")?, r.text("status")?, super::small(r, "attempts")?))
    })
}

/// Each payout item against the Σ of its entries: of the batches `only`, or
/// of every batch, one batch a statement (the rows held are one batch's
/// items, however many batches there are).
async fn payout_item_mismatches(
    c: &mut dyn Conn,
    only: Option<&[u64]>,
) -> Result<Vec<(u64, String, Decimal, Decimal)>> {
    let all;
    let payouts = match only {
        Some(p) => p,
        None => {
            all = rows::all(&c.fetch(&Sql::new("SELECT id FROM payouts ORDER BY id")).await?, |r| r.uint("id"))?;
            &all
        }
    };
    let sum = (c.dialect().sum)("l.amount");
    let mut found = Vec::new();
    for &payout in payouts {
        let q = Sql::new(format!(
            "SELECT i.payout_id, i.affiliate_id, i.amount, {sum} AS entries FROM payout_items i \
             LEFT JOIN ledger_entries l ON l.payout_id = i.payout_id AND l.affiliate_id = i.affiliate_id \
             WHERE i.payout_id = ? GROUP BY i.payout_id, i.affiliate_id, i.amount ORDER BY i.affiliate_id"
        ))
        .arg(super::uint(payout)?);
        for r in c.fetch(&q).await? {
            let (amount, entries) = (r.money("amount")?, r.sum("entries")?);
            if amount != entries {
                found.push((r.uint("payout_id")?, r.text("affiliate_id")?, amount, entries));
            }
        }
    }
    Ok(found)
}

/// Entries whose status disagrees with their batch's (paid in a completed
/// batch, approved in an open one), the first 1 000: of the batches `only`,
/// or of every batch. Each batch is two exact ranges of
/// `ix_ledger_unbatched` (status, batch): the statuses it must not hold
/// (`status` holds one of three, its reader refuses any other), so a sweep
/// reads the wrong entries only, not every paid one.
async fn payout_entry_statuses(
    c: &mut dyn Conn,
    only: Option<&[u64]>,
) -> Result<Vec<(u64, String, u64, String, String)>> {
    let mut q = Sql::new("SELECT id, status FROM payouts");
    if let Some(keys) = only {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        q.push(" WHERE id IN (").list(keys.iter().map(|p| Arg::Int(*p as i64))).push(")");
    }
    q.push(" ORDER BY id");
    let batches = rows::all(&c.fetch(&q).await?, |r| Ok((r.uint("id")?, r.text("status")?)))?;
    let mut found = Vec::new();
    for (payout, batch) in batches {
        let wrong = match batch.as_str() {
            "completed" => ["pending", "approved"],
            "open" => ["pending", "paid"],
            _ => continue,
        };
        let q = Sql::new(
            "SELECT id, affiliate_id, payout_id, status FROM ledger_entries WHERE status IN (?, ?) AND payout_id = ? \
             ORDER BY id LIMIT 1000",
        )
        .arg(wrong[0])
        .arg(wrong[1])
        .arg(super::uint(payout)?);
        found.extend(rows::all(&c.fetch(&q).await?, |r| {
            Ok((r.uint("id")?, r.text("affiliate_id")?, r.uint("payout_id")?, r.text("status")?, batch.clone()))
        })?);
        if found.len() >= 1000 {
            found.truncate(1000);
            break;
        }
    }
    Ok(found)
}

/// Every adjustment (created at or after `since`, when given) against its
/// entry: one entry of its event, of its subject, kind `adjustment`, with its
/// amount or points. Returns how many were checked and the wrong ones.
async fn adjustment_mismatches(
    c: &mut dyn Conn,
    since: Option<DateTime<Utc>>,
) -> Result<(u64, Vec<(String, String, String)>)> {
    let mut checked = 0;
    let mut found = Vec::new();
    for (kind, entries, subject) in
        [("affiliate", "ledger_entries", "affiliate_id"), ("buyer", "reward_entries", "buyer_id")]
    {
        let value = if kind == "affiliate" { "amount" } else { "points" };
        let mut q = Sql::new(format!(
            "SELECT a.id, a.subject_id, a.amount, a.points, e.{subject} AS entry_subject, e.{value} AS entry_value, \
             e.kind AS entry_kind FROM adjustments a LEFT JOIN {entries} e ON e.event_id = a.event_id \
             WHERE a.subject_kind = "
        ));
        q.bind(kind);
        if let Some(since) = since {
            q.push(" AND a.created_at >= ").bind(Arg::Bound(since));
        }
        q.push(" ORDER BY a.id");
        let mut seen: HashMap<String, u32> = HashMap::new();
        for r in c.fetch(&q).await? {
            let id = r.text("id")?;
            let who = r.text("subject_id")?;
            *seen.entry(id.clone()).or_default() += 1;
            if seen[&id] > 1 {
                found.push((id, who, "more than one entry".to_owned()));
                continue;
            }
            checked += 1;
            let Some(entry_subject) = r.opt_text("entry_subject")? else {
                found.push((id, who, "no entry".to_owned()));
                continue;
            };
            let (asked, entry) = if kind == "affiliate" {
                (
                    r.opt_money("amount")?.map(|d| d.normalize().to_string()),
                    r.opt_money("entry_value")?.map(|d| d.normalize().to_string()),
                )
            } else {
                (r.opt_int("points")?.map(|p| p.to_string()), r.opt_int("entry_value")?.map(|p| p.to_string()))
            };
            if entry_subject != who || r.text("entry_kind")? != "adjustment" || asked != entry {
                let detail = format!(
                    "its entry is {} {} of {entry_subject}, not {} of {who}",
                    r.text("entry_kind")?,
                    entry.unwrap_or_default(),
                    asked.unwrap_or_default()
                );
                found.push((id, who, detail));
            }
        }
    }
    Ok((checked, found))
}

super::audit::audit_tx!(SqlClaim);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_starts_at_the_mark_most_affiliates_were_checked_at() {
        // 1 000 affiliates checked at the run before (30 000 entries ago), 10
        // long ago (400 000 entries ago): one scan of 30 000, ten range reads.
        let mut marks = vec![970_000; 1_000];
        marks.extend([600_000; 10]);
        assert_eq!(scan_floor(marks, 1_000_000, 1_010), Some(970_000));
    }

    #[test]
    fn a_few_affiliates_are_read_one_by_one_and_a_long_scan_is_never_made() {
        // Scanning 30 000 entries for 5 affiliates costs more than 5 reads.
        assert_eq!(scan_floor(vec![970_000; 5], 1_000_000, 5), None);
        // Never past SCAN_MAX, however many it would cover.
        assert_eq!(scan_floor(vec![0; 100_000], 1_000_000, 100_000), None);
        // Unchecked affiliates have no mark: they are read one by one.
        assert_eq!(scan_floor(Vec::new(), 1_000_000, 10), None);
    }

    #[test]
    fn a_lower_mark_is_taken_only_when_the_affiliates_it_adds_pay_for_its_entries() {
        let mut marks = vec![990_000; 1_000];
        // 100 more at 900 000: 90 000 more entries against 100 reads (5 000): no.
        marks.extend([900_000; 100]);
        assert_eq!(scan_floor(marks.clone(), 1_000_000, 1_100), Some(990_000));
        // 5 000 more there: 90 000 entries against 5 000 reads (250 000): yes.
        marks.extend([900_000; 4_900]);
        assert_eq!(scan_floor(marks, 1_000_000, 6_000), Some(900_000));
    }
}
