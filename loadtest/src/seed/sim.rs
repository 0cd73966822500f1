//! The history, simulated in time order: orders are placed one after the
//! other (placed_at strictly increasing), and what happens to them later —
//! cancellation, refunds, completion, approval when the holding period is
//! over, redemption holds being captured, released or expiring, monthly
//! payout batches and their completion — waits in a queue of due actions
//! that runs before each order placed after it. Every amount is komisi's
//! own: intake's plan and month volumes, the frozen context walked by
//! `UplineWalk`, `entitle` and `delta` for every event, the lifecycle,
//! wallet and payout rules of `komisi::domain`. An order's rows are written
//! once it can no longer change (its entries paid, or nothing left to
//! happen to it), so every row is inserted once, in its final state.
use super::sink::{Batch, T, V};
use super::Progress;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use komisi::domain::affiliate::{Affiliate, AffiliateStatus, Balances, UplineWalk};
use komisi::domain::entitlement::{
    entitle, month_window, AffiliateSnapshot, CommissionKind, FrozenContext, RewardKind,
};
use komisi::domain::event::{EventId, EventStatus, EventType};
use komisi::domain::ids::{AffiliateId, BuyerId, Category, OrderId, RedemptionId, ReferralCode, RefundId, Sku};
use komisi::domain::intake::{month_volumes, plan as intake_plan, IntakeLookup};
use komisi::domain::ledger::{delta, Applied, Delta, EntryStatus};
use komisi::domain::lifecycle::{self, OrderHead};
use komisi::domain::order::{OrderItem, OrderState, OrderStatus, RefundRequest};
use komisi::domain::payload;
use komisi::domain::program::Program;
use komisi::domain::wallet::{self, HoldCheck, HoldRequest, Redemption, RedemptionStatus};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The categories `loadtest run` uses (gift cards earn nothing, electronics
/// has its own level-1 rate).
const CATEGORIES: [&str; 4] = ["fashion", "electronics", "food", "gift-card"];
/// `applied_by` of the seeded events.
const INSTANCE: &str = "komisi-seed";
/// The smallest sum a payout batch pays an affiliate.
const PAYOUT_MIN: i64 = 100_000;

/// What to generate.
pub struct Config {
    pub orders: u64,
    pub affiliates: usize,
    pub buyers: u64,
    pub seed: u64,
    /// The first month's start (program time zone); orders from here…
    pub start: DateTime<Utc>,
    /// …to here.
    pub end: DateTime<Utc>,
    pub program: Arc<Program>,
    pub version: u64,
    pub batch_rows: usize,
}

/// What was generated.
#[derive(Debug, Default)]
pub struct Summary {
    pub rows: BTreeMap<&'static str, u64>,
    pub events: BTreeMap<&'static str, u64>,
    pub statuses: BTreeMap<&'static str, u64>,
    pub entry_kinds: BTreeMap<&'static str, u64>,
    pub approved_orders: u64,
    pub payouts: u64,
    pub redemptions: BTreeMap<&'static str, u64>,
}

/// The loadtest tree (`loadtest setup`: 100 roots, 900 mid-level, the rest
/// below them), with the rest in three levels: level 3 under the mid-level
/// ones as `setup` has them, then levels 4 and 5 (2 : 3 : 4). Affiliate ids,
/// names and codes are `setup`'s, so `loadtest run --affiliates M` finds them.
pub fn parent_of(n: usize, total: usize) -> Option<usize> {
    let rest = total.saturating_sub(1000);
    let l3 = 1000 + rest * 2 / 9;
    let l4 = l3 + rest * 3 / 9;
    match n {
        0..100 => None,
        100..1000 => Some(n % 100),
        _ if n < l3 || l3 == 1000 => Some(100 + n % 900),
        _ if n < l4 || l4 == l3 => Some(1000 + (n - l3) % (l3 - 1000)),
        _ => Some(l3 + (n - l4) % (l4 - l3)),
    }
}

fn aff_name(n: usize) -> String {
    format!("aff-{n}")
}

fn buyer_name(b: u64) -> String {
    format!("buyer-{b}")
}

fn order_name(n: u64) -> String {
    format!("s-{n:09}")
}

/// The index of a seeded affiliate id (`aff-N`).
fn aff_index(id: &AffiliateId) -> usize {
    id.as_str().strip_prefix("aff-").and_then(|n| n.parse().ok()).expect("a seeded affiliate id")
}

/// (affiliate, month start)
type MonthKey = (usize, DateTime<Utc>);

struct Aff {
    id: AffiliateId,
    parent: Option<usize>,
    buyer: Option<u64>,
    suspended: bool,
    snapshot: AffiliateSnapshot,
    upline: Vec<AffiliateSnapshot>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// pending, approved, paid
    balances: [Decimal; 3],
}

/// An order line, compact: sku `sku-<line>`.
#[derive(Clone, Copy)]
struct Line {
    category: u8,
    quantity: u32,
    refunded: u32,
    unit_price: u32,
}

struct Entry {
    id: u64,
    aff: usize,
    event: EventId,
    level: u8,
    kind: CommissionKind,
    amount: Decimal,
    status: EntryStatus,
    payout: Option<u64>,
    created_at: DateTime<Utc>,
}

/// An order whose rows are not written yet (it may still change).
struct Open {
    n: u64,
    buyer: u64,
    aff: Option<usize>,
    referral_code: Option<String>,
    note: Option<&'static str>,
    placed_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    lines: Vec<Line>,
    total: Decimal,
    eligible: Decimal,
    hash: [u8; 32],
    volume_before: Decimal,
    nth: u32,
    first: bool,
    status: OrderStatus,
    reason: Option<&'static str>,
    completed_at: Option<DateTime<Utc>>,
    approve_at: Option<DateTime<Utc>>,
    approved_at: Option<DateTime<Utc>>,
    entries: Vec<Entry>,
    /// Σ points and first-order bonus written for the order.
    points: i64,
    first_bonus: i64,
    /// Actions still queued for the order.
    actions: u32,
    events: usize,
}

enum Action {
    Complete(u64),
    Approve(u64),
    Cancel(u64),
    Refund(u64, bool),
    Resolve(Box<Redemption>, Resolution),
    Payout,
    PayoutDone(u64),
}

#[derive(Clone, Copy)]
enum Resolution {
    Capture,
    Release,
    Expire,
}

struct Due {
    at: DateTime<Utc>,
    seq: u64,
    action: Action,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    /// Reversed: the heap pops the earliest.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct PayoutRec {
    id: u64,
    key: String,
    total: Decimal,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    items: Vec<(usize, Decimal)>,
    entries: Vec<(u64, usize)>,
}

struct Sim {
    cfg: Config,
    rng: StdRng,
    out: tokio::sync::mpsc::Sender<Batch>,
    progress: Arc<Progress>,
    buffers: BTreeMap<T, Vec<Vec<V>>>,
    summary: Summary,
    affs: Vec<Aff>,
    lookup: IntakeLookup,
    /// buyer → points balance (the signed sum of its entries), whether it
    /// ordered before, whether it has a balance row, last change.
    net: Vec<i64>,
    ordered: Vec<bool>,
    has_row: Vec<bool>,
    buyer_updated: Vec<DateTime<Utc>>,
    months: HashMap<MonthKey, (Decimal, u64)>,
    open: HashMap<u64, Open>,
    queue: BinaryHeap<Due>,
    seq: u64,
    next_ledger: u64,
    next_reward: u64,
    /// Approved entries in no batch yet, per affiliate: (entry id, order, index, amount).
    unbatched: Vec<Vec<(u64, u64, usize, Decimal)>>,
    payouts: Vec<PayoutRec>,
    tallies: BTreeMap<&'static str, u64>,
}

/// Generates the history into `out`; returns what it wrote.
pub fn generate(cfg: Config, out: tokio::sync::mpsc::Sender<Batch>, progress: Arc<Progress>) -> Result<Summary> {
    let mut sim = Sim::new(cfg, out, progress)?;
    sim.run()?;
    Ok(sim.summary)
}

fn ms(rng: &mut StdRng, from: i64, to: i64) -> TimeDelta {
    TimeDelta::milliseconds(rng.random_range(from..to))
}

impl Sim {
    fn new(cfg: Config, out: tokio::sync::mpsc::Sender<Batch>, progress: Arc<Progress>) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let m = cfg.affiliates;
        let b = cfg.buyers as usize;
        // Affiliates: 1 % suspended (their own orders pay nothing, their
        // uplines skip them), 10 % with a shopper account of their own.
        let mut affs: Vec<Aff> = (0..m)
            .map(|n| {
                let id = AffiliateId::parse(&aff_name(n)).expect("a valid id");
                let suspended = rng.random_bool(0.01);
                let buyer = rng.random_bool(0.10).then(|| rng.random_range(0..cfg.buyers));
                let created_at = cfg.start - TimeDelta::days(rng.random_range(30..400)) - ms(&mut rng, 0, 86_400_000);
                Aff {
                    snapshot: AffiliateSnapshot {
                        id: id.clone(),
                        suspended,
                        buyer_id: buyer.map(|b| BuyerId::from_trusted(buyer_name(b))),
                        email_hash: None,
                        unqualified: false,
                        caps: None,
                    },
                    id,
                    parent: parent_of(n, m),
                    buyer,
                    suspended,
                    upline: Vec::new(),
                    created_at,
                    updated_at: created_at,
                    balances: [Decimal::ZERO; 3],
                }
            })
            .collect();
        // A parent registers before its children.
        for n in 0..m {
            if let Some(p) = affs[n].parent {
                if affs[n].created_at <= affs[p].created_at {
                    affs[n].created_at = affs[p].created_at + TimeDelta::minutes(rng.random_range(1..10_000));
                    affs[n].updated_at = affs[n].created_at;
                }
            }
        }
        // Rule 7's chain of each affiliate, walked by komisi's UplineWalk.
        let full: Vec<Affiliate> = affs
            .iter()
            .map(|a| Affiliate {
                id: a.id.clone(),
                name: String::new(),
                parent_id: a.parent.map(|p| affs[p].id.clone()),
                referral_code: ReferralCode::from_trusted(String::new()),
                buyer_id: a.snapshot.buyer_id.clone(),
                email_hash: None,
                status: if a.suspended { AffiliateStatus::Suspended } else { AffiliateStatus::Active },
                balances: Balances::default(),
                created_at: a.created_at,
                caps: None,
            })
            .collect();
        for n in 0..m {
            let mut walk = UplineWalk::new(&cfg.program, &full[n]);
            while let Some((next, count)) = walk.next_fetch() {
                let mut chain = Vec::with_capacity(count);
                let mut at = Some(aff_index(&next));
                while let (Some(i), true) = (at, chain.len() < count) {
                    chain.push(full[i].clone());
                    at = full[i].parent_id.as_ref().map(aff_index);
                }
                walk.take(chain, count);
            }
            affs[n].upline = walk.finish();
        }
        let lookup = IntakeLookup {
            version: cfg.version,
            taken: Default::default(),
            codes: (0..m).map(|n| (format!("code-{n}"), affs[n].id.clone())).collect(),
            affiliates: (0..m).map(aff_name).collect(),
            ..Default::default()
        };
        let mut sim = Sim {
            rng,
            out,
            progress,
            buffers: BTreeMap::new(),
            summary: Summary::default(),
            lookup,
            net: vec![0; b],
            ordered: vec![false; b],
            has_row: vec![false; b],
            buyer_updated: vec![cfg.start; b],
            months: HashMap::new(),
            open: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_ledger: 1,
            next_reward: 1,
            unbatched: vec![Vec::new(); m],
            payouts: Vec::new(),
            tallies: BTreeMap::new(),
            affs,
            cfg,
        };
        // A payout batch two hours into every month, completed two days later.
        let mut month = sim.cfg.start;
        loop {
            month = month_window(month, sim.cfg.program.timezone).1;
            let at = month + TimeDelta::hours(2);
            if at > sim.cfg.end {
                break;
            }
            sim.schedule(at, Action::Payout);
        }
        Ok(sim)
    }

    fn schedule(&mut self, at: DateTime<Utc>, action: Action) -> bool {
        if at > self.cfg.end {
            return false;
        }
        self.seq += 1;
        self.queue.push(Due { at, seq: self.seq, action });
        true
    }

    fn push(&mut self, table: T, row: Vec<V>) -> Result<()> {
        *self.summary.rows.entry(table.name()).or_default() += 1;
        let buffer = self.buffers.entry(table).or_default();
        buffer.push(row);
        if buffer.len() >= self.cfg.batch_rows {
            let rows = std::mem::take(buffer);
            self.out.blocking_send(Batch { table, rows }).map_err(|_| anyhow!("the writer stopped"))?;
        }
        Ok(())
    }

    fn flush_buffers(&mut self) -> Result<()> {
        for (table, rows) in std::mem::take(&mut self.buffers) {
            if !rows.is_empty() {
                self.out.blocking_send(Batch { table, rows }).map_err(|_| anyhow!("the writer stopped"))?;
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        let (start, end, total) = (self.cfg.start, self.cfg.end, self.cfg.orders);
        let span = (end - start).num_microseconds().context("span")? as f64;
        let zipf = rand_distr::Zipf::new(self.affs.len() as f64, 1.1).map_err(|e| anyhow!("zipf: {e}"))?;
        // Zipf ranks over a shuffled order of the affiliates: the busiest
        // ones sit anywhere in the tree.
        let mut ranked: Vec<usize> = (0..self.affs.len()).collect();
        for i in (1..ranked.len()).rev() {
            let j = self.rng.random_range(0..=i);
            ranked.swap(i, j);
        }
        let mut last = start;
        for n in 0..total {
            // Growing business: the density of orders rises over the period.
            let u = (n as f64 + self.rng.random::<f64>()) / total as f64;
            let mut t = start + TimeDelta::microseconds((u.powf(0.85) * span) as i64);
            if t <= last {
                t = last + TimeDelta::microseconds(1);
            }
            last = t;
            self.run_due(t)?;
            let rank = self.rng.sample(zipf) as usize;
            let aff = ranked[rank.clamp(1, ranked.len()) - 1];
            self.place(n, t, aff)?;
            if n % 1000 == 999 {
                self.progress.orders.store(n + 1, Ordering::Relaxed);
            }
        }
        self.progress.orders.store(total, Ordering::Relaxed);
        self.run_due(end)?;
        // Whatever is still queued lies past the end: those orders stay as they are.
        for due in std::mem::take(&mut self.queue).into_sorted_vec().into_iter().rev() {
            if let Action::Resolve(r, _) = due.action {
                self.redemption_row(&r)?;
            }
        }
        let mut rest: Vec<u64> = self.open.keys().copied().collect();
        rest.sort_unstable();
        for n in rest {
            let o = self.open.remove(&n).context("open order")?;
            self.flush_order(o)?;
        }
        self.final_rows()?;
        self.flush_buffers()
    }

    fn run_due(&mut self, until: DateTime<Utc>) -> Result<()> {
        while self.queue.peek().is_some_and(|d| d.at <= until) {
            let due = self.queue.pop().context("due action")?;
            self.act(due.at, due.action)?;
        }
        Ok(())
    }

    fn act(&mut self, at: DateTime<Utc>, action: Action) -> Result<()> {
        match action {
            Action::Payout => return self.payout(at),
            Action::PayoutDone(id) => return self.payout_done(id, at),
            Action::Resolve(r, how) => return self.resolve(*r, how, at),
            Action::Complete(n) | Action::Approve(n) | Action::Cancel(n) | Action::Refund(n, _) => {
                let mut o = self.open.remove(&n).context("an action of an order already written")?;
                o.actions -= 1;
                match action {
                    Action::Complete(_) => self.complete(&mut o, at)?,
                    Action::Approve(_) => self.approve(&mut o, at),
                    Action::Cancel(_) => self.cancel(&mut o, at)?,
                    Action::Refund(_, full) => self.refund(&mut o, at, full)?,
                    _ => {}
                }
                self.settle(o)?;
            }
        }
        Ok(())
    }

    /// Writes the order if nothing can change it any more, else keeps it.
    fn settle(&mut self, o: Open) -> Result<()> {
        let done = o.actions == 0
            && o.entries.iter().all(|e| {
                e.status == EntryStatus::Paid || (e.status == EntryStatus::Pending && o.completed_at.is_none())
            });
        if done {
            self.flush_order(o)
        } else {
            self.open.insert(o.n, o);
            Ok(())
        }
    }

    fn ctx(&self, o: &Open) -> FrozenContext {
        match o.aff {
            Some(a) => FrozenContext {
                direct: Some(self.affs[a].snapshot.clone()),
                upline: self.affs[a].upline.clone(),
                volume_before: o.volume_before,
                nth_in_month: o.nth,
                buyer_first_order: o.first,
                buyer_email_hash: None,
            },
            None => FrozenContext {
                direct: None,
                upline: Vec::new(),
                volume_before: Decimal::ZERO,
                nth_in_month: 0,
                buyer_first_order: o.first,
                buyer_email_hash: None,
            },
        }
    }

    fn items(o: &Open) -> Vec<OrderItem> {
        o.lines
            .iter()
            .enumerate()
            .map(|(i, l)| OrderItem {
                sku: Sku::from_trusted(format!("sku-{i}")),
                category: Category::from_trusted(CATEGORIES[usize::from(l.category)].to_owned()),
                quantity: l.quantity,
                refunded: l.refunded,
                unit_price: Decimal::from(l.unit_price),
            })
            .collect()
    }

    fn state(o: &Open) -> OrderState {
        OrderState {
            buyer_id: BuyerId::from_trusted(buyer_name(o.buyer)),
            items: Self::items(o),
            cancelled: o.status == OrderStatus::Cancelled,
            // The seeded history is in the program currency.
            fx_rate: None,
        }
    }

    /// What the ledger holds for the order, as komisi reads it back
    /// (per beneficiary and kind: the highest level, Σ amount).
    fn applied(&self, o: &Open) -> Applied {
        let mut applied = Applied::default();
        for e in &o.entries {
            let slot =
                applied.commissions.entry((self.affs[e.aff].id.clone(), e.kind)).or_insert((e.level, Decimal::ZERO));
            slot.0 = slot.0.max(e.level);
            slot.1 += e.amount;
        }
        let buyer = BuyerId::from_trusted(buyer_name(o.buyer));
        if o.points != 0 {
            applied.rewards.insert((buyer.clone(), RewardKind::Points), o.points);
        }
        if o.first_bonus != 0 {
            applied.rewards.insert((buyer, RewardKind::FirstOrderBonus), o.first_bonus);
        }
        applied
    }

    fn head(o: &Open, version: u64) -> OrderHead {
        OrderHead {
            buyer_id: BuyerId::from_trusted(buyer_name(o.buyer)),
            affiliate_id: o.aff.map(|a| AffiliateId::from_trusted(aff_name(a))),
            status: o.status,
            completed: o.completed_at.is_some(),
            program_version: version,
            first_partition: None,
            events: vec![EventStatus::Done; o.events],
        }
    }

    fn partition(o: &Open) -> String {
        match o.aff {
            Some(a) => format!("a:{}", aff_name(a)),
            None => format!("b:{}", buyer_name(o.buyer)),
        }
    }

    /// An order's event, stored done (applied a few milliseconds after it
    /// was recorded); returns when it was applied.
    fn order_event(
        &mut self,
        id: EventId,
        kind: EventType,
        o: &mut Open,
        payload: String,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let applied = at + ms(&mut self.rng, 3, 60);
        *self.tallies.entry(kind.as_str()).or_default() += 1;
        *self.summary.events.entry(kind.as_str()).or_default() += 1;
        o.events += 1;
        let row = vec![
            V::Str(id.to_string()),
            kind.as_str().into(),
            V::Str(order_name(o.n)),
            V::Str(Self::partition(o)),
            "done".into(),
            V::Int(1),
            V::Str(payload),
            V::Time(at + TimeDelta::seconds(60)),
            V::Time(at),
            V::Time(applied),
            V::Time(applied),
            INSTANCE.into(),
        ];
        self.push(T::Events, row)?;
        Ok(applied)
    }

    /// A wallet event: recorded done in the transaction that makes the change.
    fn wallet_event(&mut self, kind: EventType, buyer: u64, payload: String, at: DateTime<Utc>) -> Result<EventId> {
        let id = EventId::new();
        *self.tallies.entry(kind.as_str()).or_default() += 1;
        *self.summary.events.entry(kind.as_str()).or_default() += 1;
        let row = vec![
            V::Str(id.to_string()),
            kind.as_str().into(),
            "".into(),
            V::Str(format!("b:{}", buyer_name(buyer))),
            "done".into(),
            V::Int(1),
            V::Str(payload),
            V::Time(at),
            V::Time(at),
            V::Time(at),
            V::Time(at),
            V::Null,
        ];
        self.push(T::Events, row)?;
        Ok(id)
    }

    /// A reward entry of an order's event, or of a redemption (`Err`: its id).
    fn reward_row(
        &mut self,
        buyer: u64,
        of: Result<u64, &str>,
        event: EventId,
        kind: RewardKind,
        points: i64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (order, redemption) = match of {
            Ok(n) => (Some(n), None),
            Err(r) => (None, Some(r)),
        };
        let id = self.next_reward;
        self.next_reward += 1;
        let b = buyer as usize;
        self.net[b] += points;
        self.has_row[b] = true;
        self.buyer_updated[b] = at;
        self.push(
            T::Rewards,
            vec![
                V::Int(id as i64),
                V::Str(buyer_name(buyer)),
                V::Str(order.map(order_name).unwrap_or_default()),
                V::Str(event.to_string()),
                kind.as_str().into(),
                V::Int(points),
                V::Time(at),
                redemption.into(),
                V::Null,
            ],
        )
    }

    /// Writes an event's delta: ledger entries (pending, or approved once the
    /// order is approved) with the balances, reward entries with the points.
    fn write_delta(&mut self, o: &mut Open, event: EventId, at: DateTime<Utc>, d: &Delta) -> Result<()> {
        let status = if o.approved_at.is_some() { EntryStatus::Approved } else { EntryStatus::Pending };
        for line in &d.commissions {
            let a = aff_index(&line.affiliate_id);
            let id = self.next_ledger;
            self.next_ledger += 1;
            *self.summary.entry_kinds.entry(line.kind.as_str()).or_default() += 1;
            self.affs[a].balances[slot(status)] += line.amount;
            self.affs[a].updated_at = at;
            if status == EntryStatus::Approved {
                self.unbatched[a].push((id, o.n, o.entries.len(), line.amount));
            }
            o.entries.push(Entry {
                id,
                aff: a,
                event,
                level: line.level,
                kind: line.kind,
                amount: line.amount,
                status,
                payout: None,
                created_at: at,
            });
        }
        for line in &d.rewards {
            match line.kind {
                RewardKind::Points => o.points += line.points,
                RewardKind::FirstOrderBonus => o.first_bonus += line.points,
                _ => bail!("an order's delta holds a wallet entry"),
            }
            self.reward_row(o.buyer, Ok(o.n), event, line.kind, line.points, at)?;
        }
        Ok(())
    }

    /// The event's recomputation: entitlement of the order as it stands now
    /// against what its ledger holds; the difference is written.
    fn recompute(&mut self, o: &mut Open, event: EventId, at: DateTime<Utc>) -> Result<()> {
        let entitled = entitle(&Self::state(o), &self.cfg.program, &self.ctx(o));
        let d = delta(&entitled, &self.applied(o));
        o.reason = entitled.no_commission_reason.map(|r| r.as_str());
        o.updated_at = at;
        self.write_delta(o, event, at, &d)
    }

    fn place(&mut self, n: u64, t: DateTime<Utc>, zipf_aff: usize) -> Result<()> {
        let r: f64 = self.rng.random();
        let mut buyer = self.rng.random_range(0..self.cfg.buyers);
        let code = if r < 0.08 {
            None
        } else if r < 0.085 {
            Some(format!("code-x{n}"))
        } else {
            // Now and then an affiliate buys through its own code.
            if let Some(own) = self.affs[zipf_aff].buyer {
                if self.rng.random_bool(0.01) {
                    buyer = own;
                }
            }
            Some(format!("code-{zipf_aff}"))
        };
        let lines: Vec<Line> = (0..self.rng.random_range(1..=5))
            .map(|_| Line {
                category: self.rng.random_range(0..CATEGORIES.len()) as u8,
                quantity: self.rng.random_range(1..=3),
                refunded: 0,
                unit_price: self.rng.random_range(10..2_000) * 1_000,
            })
            .collect();
        let mut body = json!({
            "id": order_name(n),
            "buyer_id": buyer_name(buyer),
            "currency": self.cfg.program.currency,
            "placed_at": t.to_rfc3339_opts(SecondsFormat::Micros, true),
            "items": lines.iter().enumerate().map(|(i, l)| json!({
                "sku": format!("sku-{i}"),
                "category": CATEGORIES[usize::from(l.category)],
                "quantity": l.quantity,
                "unit_price": l.unit_price.to_string(),
            })).collect::<Vec<_>>(),
        });
        if let Some(code) = &code {
            body["referral_code"] = json!(code);
        }
        // The storefront's request, parsed and normalised by komisi's API code.
        let new = komisi::http::orders::parse_order_json(&serde_json::to_vec(&body)?)
            .map_err(|e| anyhow!("order {n}: {e:?}"))?;
        // Checkout first: points held for this order.
        if self.rng.random_bool(0.04) && self.net[buyer as usize] >= 10_000 {
            self.hold(buyer, n, t)?;
        }
        let created_at = t + ms(&mut self.rng, 20, 200);
        let intake = intake_plan(std::slice::from_ref(&new), &self.lookup, &self.cfg.program, &[], created_at);
        let (_, p) = intake.accepted.into_iter().next().context("intake refused a seeded order")?;
        let aff = p.affiliate_id.as_ref().map(aff_index);
        // Rules 4 and 5: the affiliate's month so far, then this order in it
        // (intake's month volumes: what affiliate_months holds).
        let (mut volume_before, mut nth) = (Decimal::ZERO, 0);
        for m in month_volumes(std::slice::from_ref(&p), self.cfg.program.timezone).context("month volume")? {
            let sums = self.months.entry((aff_index(&m.affiliate_id), m.month_start)).or_default();
            (volume_before, nth) = (sums.0, sums.1 as u32 + 1);
            // As komisi reads it back from a DECIMAL(28,4) column.
            volume_before.rescale(4);
            sums.0 += m.volume;
            sums.1 += m.orders;
        }
        let first = !std::mem::replace(&mut self.ordered[buyer as usize], true);
        let mut o = Open {
            n,
            buyer,
            aff,
            referral_code: code,
            note: p.note,
            placed_at: p.placed_at,
            created_at,
            updated_at: created_at,
            lines,
            total: p.total,
            eligible: p.eligible,
            hash: new.request_hash,
            volume_before,
            nth,
            first,
            status: OrderStatus::Placed,
            reason: None,
            completed_at: None,
            approve_at: None,
            approved_at: None,
            entries: Vec::new(),
            points: 0,
            first_bonus: 0,
            actions: 0,
            events: 0,
        };
        let event = p.event.id;
        let applied = self.order_event(event, EventType::OrderPlaced, &mut o, new.payload.clone(), created_at)?;
        self.recompute(&mut o, event, applied)?;
        // What will happen to it: 2 % cancelled within two days; the others
        // completed 3–10 days after, 5 % partly refunded and 0.5 % wholly
        // refunded within 25 days (before or after completion).
        let r: f64 = self.rng.random();
        if r < 0.02 {
            let at = t + ms(&mut self.rng, 600_000, 2 * 86_400_000);
            o.actions += u32::from(self.schedule(at, Action::Cancel(n)));
        } else {
            let at = t + ms(&mut self.rng, 3 * 86_400_000, 10 * 86_400_000);
            o.actions += u32::from(self.schedule(at, Action::Complete(n)));
            let r: f64 = self.rng.random();
            if r < 0.055 {
                let at = t + ms(&mut self.rng, 86_400_000, 25 * 86_400_000);
                o.actions += u32::from(self.schedule(at, Action::Refund(n, r >= 0.05)));
            }
        }
        self.settle(o)
    }

    fn complete(&mut self, o: &mut Open, at: DateTime<Utc>) -> Result<()> {
        let head = Self::head(o, self.cfg.version);
        let Ok((status, approve_at)) = lifecycle::complete(&head, None, self.cfg.program.holding_days, at) else {
            return Ok(());
        };
        o.status = status;
        o.completed_at = Some(at);
        o.approve_at = Some(approve_at);
        let event = EventId::new();
        let applied = self.order_event(
            event,
            EventType::OrderCompleted,
            o,
            payload::completed(&OrderId::from_trusted(order_name(o.n)), approve_at),
            at,
        )?;
        if approve_at <= applied {
            self.approve(o, applied);
        }
        self.recompute(o, event, applied)?;
        if o.approved_at.is_none() {
            // The scheduler's sweep finds it due within its interval.
            let when = approve_at + ms(&mut self.rng, 0, 5_000);
            o.actions += u32::from(self.schedule(when, Action::Approve(o.n)));
        }
        Ok(())
    }

    /// The holding period is over: the order's pending entries are approved.
    fn approve(&mut self, o: &mut Open, at: DateTime<Utc>) {
        if o.approved_at.is_some() {
            return;
        }
        o.approved_at = Some(at);
        o.updated_at = at;
        self.summary.approved_orders += 1;
        for (i, e) in o.entries.iter_mut().enumerate() {
            if e.status == EntryStatus::Pending {
                e.status = EntryStatus::Approved;
                let a = &mut self.affs[e.aff];
                a.balances[0] -= e.amount;
                a.balances[1] += e.amount;
                a.updated_at = at;
                self.unbatched[e.aff].push((e.id, o.n, i, e.amount));
            }
        }
    }

    fn approve_if_due(&mut self, o: &mut Open, at: DateTime<Utc>) {
        if o.approve_at.is_some_and(|due| due <= at) {
            self.approve(o, at);
        }
    }

    fn cancel(&mut self, o: &mut Open, at: DateTime<Utc>) -> Result<()> {
        let Ok(status) = lifecycle::cancel(&Self::head(o, self.cfg.version), None) else { return Ok(()) };
        o.status = status;
        let event = EventId::new();
        let applied = self.order_event(
            event,
            EventType::OrderCancelled,
            o,
            payload::cancelled(&OrderId::from_trusted(order_name(o.n))),
            at,
        )?;
        self.approve_if_due(o, applied);
        self.recompute(o, event, applied)
    }

    fn refund(&mut self, o: &mut Open, at: DateTime<Utc>, full: bool) -> Result<()> {
        let left: Vec<(usize, u32)> =
            o.lines.iter().enumerate().map(|(i, l)| (i, l.quantity - l.refunded)).filter(|(_, q)| *q > 0).collect();
        let units: u32 = left.iter().map(|(_, q)| q).sum();
        let take: Vec<(usize, u32)> = if full {
            left
        } else {
            if units < 2 {
                return Ok(());
            }
            let (i, q) = left[self.rng.random_range(0..left.len())];
            vec![(i, self.rng.random_range(1..=q).min(units - 1))]
        };
        let refund_id = format!("rf-{}", o.n);
        let mut lines: Vec<(String, u32)> = take.iter().map(|(i, q)| (format!("sku-{i}"), *q)).collect();
        lines.sort();
        // komisi's normalised refund request (its payload and hash).
        let payload = json!({
            "refund_id": refund_id,
            "items": lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
        })
        .to_string();
        let hash: [u8; 32] = Sha256::digest(payload.as_bytes()).into();
        let req = RefundRequest {
            order_id: OrderId::from_trusted(order_name(o.n)),
            refund_id: RefundId::from_trusted(refund_id.clone()),
            items: lines.iter().map(|(s, q)| (Sku::from_trusted(s.clone()), *q)).collect(),
            request_hash: hash,
            payload: payload.clone(),
        };
        let Ok(status) = lifecycle::refund(&Self::head(o, self.cfg.version), None, &Self::items(o), &req) else {
            return Ok(());
        };
        for (i, q) in &take {
            o.lines[*i].refunded += q;
        }
        o.status = status;
        let event = EventId::new();
        let applied = self.order_event(event, EventType::OrderRefunded, o, payload, at)?;
        self.push(
            T::Refunds,
            vec![V::Str(order_name(o.n)), V::Str(refund_id), V::Hash(hash), V::Str(event.to_string()), V::Time(at)],
        )?;
        self.approve_if_due(o, applied);
        self.recompute(o, event, applied)
    }

    /// A hold at checkout (komisi's hold rule and value), captured, released
    /// or left to expire afterwards.
    fn hold(&mut self, buyer: u64, n: u64, at: DateTime<Utc>) -> Result<()> {
        let net = self.net[buyer as usize];
        let points = ((net as f64 * self.rng.random_range(0.2..1.0)) as i64 / 100 * 100).max(100);
        let req = HoldRequest {
            buyer_id: BuyerId::from_trusted(buyer_name(buyer)),
            id: RedemptionId::from_trusted(format!("rd-{n}")),
            points,
            order_id: Some(OrderId::from_trusted(order_name(n))),
        };
        if wallet::check_hold(None, &req, Some(i128::from(net))) != HoldCheck::Allowed {
            return Ok(());
        }
        let r = wallet::new_hold(&req, &self.cfg.program, self.cfg.version, at);
        let event = self.wallet_event(EventType::RedemptionHeld, buyer, payload::redemption(&r), at)?;
        self.reward_row(buyer, Err(r.id.as_str()), event, RewardKind::Redemption, -points, at)?;
        let roll: f64 = self.rng.random();
        let (how, when) = if roll < 0.88 {
            (Resolution::Capture, at + ms(&mut self.rng, 5_000, 180_000))
        } else if roll < 0.96 {
            (Resolution::Release, at + ms(&mut self.rng, 60_000, 1_200_000))
        } else {
            (Resolution::Expire, r.hold_until + ms(&mut self.rng, 0, 5_000))
        };
        if !self.schedule(when, Action::Resolve(Box::new(r.clone()), how)) {
            self.redemption_row(&r)?;
        }
        Ok(())
    }

    fn resolve(&mut self, mut r: Redemption, how: Resolution, at: DateTime<Utc>) -> Result<()> {
        let buyer: u64 = r.buyer_id.as_str().strip_prefix("buyer-").and_then(|b| b.parse().ok()).context("buyer")?;
        let (status, kind) = match how {
            Resolution::Capture => match wallet::capture(&r, r.order_id.as_ref(), at) {
                Ok(wallet::Action::Capture) => (RedemptionStatus::Captured, EventType::RedemptionCaptured),
                _ => bail!("a seeded capture was refused"),
            },
            Resolution::Release => match wallet::release(&r) {
                Ok(wallet::Action::Release) => (RedemptionStatus::Released, EventType::RedemptionReleased),
                _ => bail!("a seeded release was refused"),
            },
            Resolution::Expire => (RedemptionStatus::Expired, EventType::RedemptionExpired),
        };
        r.status = status;
        r.updated_at = at;
        let event = self.wallet_event(kind, buyer, payload::redemption(&r), at)?;
        if status != RedemptionStatus::Captured {
            self.reward_row(buyer, Err(r.id.as_str()), event, RewardKind::RedemptionReleased, r.points, at)?;
        }
        self.redemption_row(&r)
    }

    fn redemption_row(&mut self, r: &Redemption) -> Result<()> {
        *self.summary.redemptions.entry(r.status.as_str()).or_default() += 1;
        self.push(
            T::Redemptions,
            vec![
                V::Str(r.buyer_id.to_string()),
                V::Str(r.id.to_string()),
                V::Int(r.points),
                r.order_id.as_ref().map(|o| o.to_string()).into(),
                r.status.as_str().into(),
                V::Money(r.value),
                V::Int(r.program_version as i64),
                V::Time(r.hold_until),
                V::Time(r.created_at),
                V::Time(r.updated_at),
            ],
        )
    }

    /// A payout batch: komisi's plan over every approved entry in no batch yet.
    fn payout(&mut self, at: DateTime<Utc>) -> Result<()> {
        let entries: Vec<(u64, AffiliateId, Decimal)> = self
            .unbatched
            .iter()
            .enumerate()
            .flat_map(|(a, list)| list.iter().map(move |(id, _, _, amount)| (*id, a, *amount)))
            .map(|(id, a, amount)| (id, self.affs[a].id.clone(), amount))
            .collect();
        let local = at.with_timezone(&self.cfg.program.timezone);
        let key = format!("seed-{}", local.format("%Y-%m"));
        let Some(batch) = komisi::domain::payout::plan(&entries, Decimal::from(PAYOUT_MIN), Some(&key), at) else {
            return Ok(());
        };
        let id = self.payouts.len() as u64 + 1;
        let mut rec = PayoutRec {
            id,
            key,
            total: batch.total,
            created_at: at,
            completed_at: None,
            items: Vec::new(),
            entries: Vec::new(),
        };
        for (aff_id, (sum, ids)) in &batch.items {
            let a = aff_index(aff_id);
            let list = std::mem::take(&mut self.unbatched[a]);
            if list.len() != ids.len() {
                bail!("a batch took part of an affiliate's entries");
            }
            for (_, n, i, _) in list {
                let o = self.open.get_mut(&n).context("a batched entry's order was written")?;
                o.entries[i].payout = Some(id);
                rec.entries.push((n, i));
            }
            rec.items.push((a, *sum));
            self.push(T::PayoutItems, vec![V::Int(id as i64), V::Str(aff_id.to_string()), V::Money(*sum)])?;
        }
        self.payouts.push(rec);
        self.summary.payouts += 1;
        let done = at + TimeDelta::days(2) + ms(&mut self.rng, 0, 4 * 3_600_000);
        self.schedule(done, Action::PayoutDone(id));
        Ok(())
    }

    fn payout_done(&mut self, id: u64, at: DateTime<Utc>) -> Result<()> {
        let rec = &mut self.payouts[id as usize - 1];
        rec.completed_at = Some(at);
        let entries = std::mem::take(&mut rec.entries);
        for (a, sum) in rec.items.clone() {
            let b = &mut self.affs[a].balances;
            b[1] -= sum;
            b[2] += sum;
            self.affs[a].updated_at = at;
        }
        let mut orders: Vec<u64> = Vec::with_capacity(entries.len());
        for (n, i) in entries {
            let o = self.open.get_mut(&n).context("a paid entry's order was written")?;
            o.entries[i].status = EntryStatus::Paid;
            orders.push(n);
        }
        orders.sort_unstable();
        orders.dedup();
        for n in orders {
            if let Some(o) = self.open.remove(&n) {
                self.settle(o)?;
            }
        }
        Ok(())
    }

    fn flush_order(&mut self, o: Open) -> Result<()> {
        *self.summary.statuses.entry(o.status.as_str()).or_default() += 1;
        let id = order_name(o.n);
        let context = serde_json::to_string(&self.ctx(&o))?;
        self.push(
            T::Orders,
            vec![
                V::Str(id.clone()),
                V::Str(buyer_name(o.buyer)),
                o.aff.map(aff_name).into(),
                o.referral_code.into(),
                o.note.into(),
                V::Str(self.cfg.program.currency.clone()),
                V::Time(o.placed_at),
                o.status.as_str().into(),
                V::Money(o.total),
                V::Money(o.eligible),
                V::Int(self.cfg.version as i64),
                V::Hash(o.hash),
                "processed".into(),
                o.reason.into(),
                V::Str(context),
                V::Time(o.created_at),
                V::Time(o.updated_at),
                o.completed_at.into(),
                o.approve_at.into(),
                o.approved_at.into(),
            ],
        )?;
        for (i, l) in o.lines.iter().enumerate() {
            self.push(
                T::Items,
                vec![
                    V::Str(id.clone()),
                    V::Str(format!("sku-{i}")),
                    V::Int(i as i64),
                    CATEGORIES[usize::from(l.category)].into(),
                    V::Int(i64::from(l.quantity)),
                    V::Int(i64::from(l.refunded)),
                    V::Money(Decimal::from(l.unit_price)),
                ],
            )?;
        }
        for e in o.entries {
            let row = vec![
                V::Int(e.id as i64),
                V::Str(aff_name(e.aff)),
                V::Str(id.clone()),
                V::Str(e.event.to_string()),
                V::Int(i64::from(e.level)),
                e.kind.as_str().into(),
                V::Money(e.amount),
                e.status.as_str().into(),
                V::Int(self.cfg.version as i64),
                V::Time(e.created_at),
                e.payout.map_or(V::Null, |p| V::Int(p as i64)),
            ];
            self.push(T::Ledger, row)?;
        }
        Ok(())
    }

    /// The rows written last: balances, months, batches, tallies.
    fn final_rows(&mut self) -> Result<()> {
        for n in 0..self.affs.len() {
            let a = &self.affs[n];
            let row = vec![
                V::Str(a.id.to_string()),
                V::Str(format!("Affiliate {n}")),
                a.parent.map(aff_name).into(),
                V::Str(format!("code-{n}")),
                a.buyer.map(buyer_name).into(),
                if a.suspended { "suspended" } else { "active" }.into(),
                V::Money(a.balances[0]),
                V::Money(a.balances[1]),
                V::Money(a.balances[2]),
                V::Time(a.created_at),
                V::Time(a.updated_at),
            ];
            self.push(T::Affiliates, row)?;
        }
        for b in 0..self.net.len() {
            if self.has_row[b] {
                let row = vec![
                    V::Str(buyer_name(b as u64)),
                    V::Points(i128::from(self.net[b])),
                    V::Time(self.buyer_updated[b]),
                    V::Null,
                ];
                self.push(T::Buyers, row)?;
            }
        }
        let mut months: Vec<(MonthKey, (Decimal, u64))> = self.months.drain().collect();
        months.sort_unstable_by_key(|((a, m), _)| (aff_name(*a), *m));
        for ((a, m), (volume, orders)) in months {
            self.push(T::Months, vec![V::Str(aff_name(a)), V::Time(m), V::Money(volume), V::Int(orders as i64)])?;
        }
        for i in 0..self.payouts.len() {
            let p = &self.payouts[i];
            let row = vec![
                V::Int(p.id as i64),
                V::Str(p.key.clone()),
                if p.completed_at.is_some() { "completed" } else { "open" }.into(),
                V::Money(Decimal::from(PAYOUT_MIN)),
                V::Money(p.total),
                V::Time(p.created_at),
                p.completed_at.into(),
            ];
            self.push(T::Payouts, row)?;
        }
        for (kind, n) in self.tallies.clone() {
            self.push(T::Tallies, vec![kind.into(), V::Int(0), V::Int(n as i64)])?;
        }
        Ok(())
    }
}

fn slot(status: EntryStatus) -> usize {
    match status {
        EntryStatus::Pending => 0,
        EntryStatus::Approved => 1,
        EntryStatus::Paid => 2,
    }
}
