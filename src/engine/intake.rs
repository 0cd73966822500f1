//! Order intake: concurrent requests coalesced into shared batches (one
//! transaction per batch, see `batch`); each request is still answered only
//! after its own rows are committed. The batch's rules are
//! `domain::intake::plan`; here the transaction around them.
use super::attribution::ClickKey;
use super::batch::Coalescer;
use super::{retrying_on, Committed, EngineError};
use crate::domain::attribution::{ClickCheck, LinkMode};
use crate::domain::ids::{AffiliateId, BuyerId};
use crate::domain::intake::{self, IntakeBatch};
use crate::domain::order::{CreateOrder, NewOrder};
use crate::store::{Backend, StoreError};
use chrono::{TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

pub type Outcomes = Vec<Result<CreateOrder, StoreError>>;

#[derive(Clone)]
pub struct Intake {
    batches: Coalescer<NewOrder, Result<CreateOrder, EngineError>>,
}

impl Intake {
    /// `workers` transactions at most at once, each of up to `max_batch`
    /// orders; the accepted orders' events of a batch are journaled together
    /// after its commit (one journal write per batch, not per order).
    /// `redeliver_after`: when recovery journals an accepted event again if
    /// it was not applied.
    pub(crate) fn start(
        store: Arc<dyn Backend>,
        committed: Committed,
        click_key: ClickKey,
        workers: usize,
        max_batch: usize,
        redeliver_after: Duration,
    ) -> Self {
        let lease = TimeDelta::from_std(redeliver_after).unwrap_or(TimeDelta::MAX);
        let batches = Coalescer::start("intake", workers, max_batch, Duration::ZERO, move |orders: Vec<NewOrder>| {
            let (store, committed, click_key) = (store.clone(), committed.clone(), click_key.clone());
            async move {
                let outcomes = take(store.as_ref(), &click_key, &orders, lease).await;
                let accepted = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        Ok(CreateOrder::Accepted(event)) => Some(event.clone()),
                        _ => None,
                    })
                    .collect();
                committed.publish(accepted).await;
                outcomes.into_iter().map(|r| r.map_err(EngineError::from)).collect()
            }
        });
        Self { batches }
    }

    pub async fn submit(&self, order: NewOrder) -> Result<CreateOrder, EngineError> {
        self.batches.submit((), order).await.ok_or(EngineError::NoAnswer("intake"))?
    }
}

/// Takes a batch of orders (intake's batch workers coalesce requests into
/// these; a tool may take one directly): the orders, their items and
/// `order.placed` events committed, nothing journaled (recovery journals
/// events not journaled otherwise, `redeliver_after` from now).
pub async fn take_batch(store: &dyn Backend, orders: &[NewOrder], redeliver_after: Duration) -> Outcomes {
    take(store, &ClickKey::default(), orders, TimeDelta::from_std(redeliver_after).unwrap_or(TimeDelta::MAX)).await
}

/// Takes a batch in one transaction, each order answered on its own. A
/// batch that lost a lock conflict (a deadlock, a lock wait) is rolled back
/// and taken again at once, up to `LOCK_CONFLICT_RETRIES` times. If the
/// batch fails otherwise (a concurrent writer took one of its ids between
/// the lookup and the insert, a row the database refuses), nothing of it is
/// kept and each order is taken again in a transaction of its own, so one
/// bad order fails alone.
async fn take(store: &dyn Backend, key: &ClickKey, orders: &[NewOrder], lease: TimeDelta) -> Outcomes {
    if orders.is_empty() {
        return Vec::new();
    }
    let failed = match retrying_on(|| write(store, key, orders, lease)).await {
        Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
        Err(e) => e,
    };
    match failed {
        e if orders.len() > 1 && is_row_error(&e) => {
            let mut out = Vec::with_capacity(orders.len());
            for order in orders {
                out.push(take_one(store, key, order, lease).await);
            }
            out
        }
        e if e.is_duplicate() => vec![existing(store, &orders[0]).await],
        e => {
            let message = e.to_string();
            let mut out = vec![Err(e)];
            out.extend(orders.iter().skip(1).map(|_| Err(StoreError::Corrupt(format!("intake failed: {message}")))));
            out
        }
    }
}

/// A database's refusal of the batch's rows (as opposed to stored data the
/// rules cannot read): worth taking each order alone.
fn is_row_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(_) | StoreError::Duplicate(_) | StoreError::LockConflict(_) | StoreError::Unavailable(_))
}

/// One order in a transaction of its own (after its batch failed). A
/// concurrent writer that took the id first makes it a duplicate or a conflict.
async fn take_one(
    store: &dyn Backend,
    key: &ClickKey,
    order: &NewOrder,
    lease: TimeDelta,
) -> Result<CreateOrder, StoreError> {
    match write(store, key, std::slice::from_ref(order), lease).await {
        Ok(mut outcomes) => outcomes.pop().ok_or_else(|| StoreError::Corrupt("no outcome for the order".into())),
        Err(e) if e.is_duplicate() => existing(store, order).await,
        Err(e) => Err(e),
    }
}

/// The batch, all or nothing: the lookup, the plan, the writes and the
/// commit; then the orders whose id was taken are answered from the stored
/// order (which the commit made visible, also for an id seen twice in it).
async fn write(
    store: &dyn Backend,
    key: &ClickKey,
    orders: &[NewOrder],
    lease: TimeDelta,
) -> Result<Vec<CreateOrder>, StoreError> {
    let mut clicks = match orders.iter().any(|o| !o.click_ids.is_empty()) {
        true => ClickKey::check(&key.get(store).await.map_err(into_store)?, orders),
        false => Vec::new(),
    };
    let clicked: Vec<AffiliateId> = clicks
        .iter()
        .flatten()
        .filter_map(|c| match c {
            ClickCheck::Valid(c) => Some(c.affiliate_id.clone()),
            ClickCheck::Invalid(_) => None,
        })
        .collect();
    let mut tx = store.begin_intake().await?;
    let mut known = tx.lookup(orders, &clicked.iter().collect::<Vec<_>>()).await?;
    let program = tx.program(known.version).await?;
    let now = Utc::now();
    let asks = intake::rate_table_asks(orders, &program, now);
    if !asks.is_empty() {
        known.rate_tables = tx.rate_tables(&program.currency, &asks).await?;
    }
    // A verified click naming no affiliate here (another database's key) does not count.
    for (checks, order) in clicks.iter_mut().zip(orders) {
        for (check, raw) in checks.iter_mut().zip(&order.click_ids) {
            if matches!(check, ClickCheck::Valid(c) if !known.affiliates.contains(c.affiliate_id.as_str())) {
                *check = ClickCheck::Invalid(raw.clone());
            }
        }
    }
    if program.attribution.customer_link != LinkMode::Off {
        let mut buyers: Vec<&BuyerId> = orders.iter().map(|o| &o.buyer_id).collect();
        buyers.sort();
        buyers.dedup();
        known.links = tx.links(&buyers).await?;
    }
    let plan = intake::plan(orders, &known, &program, &clicks, now);
    let mut answers = plan.answers;
    let (positions, placements): (Vec<usize>, Vec<_>) = plan.accepted.into_iter().unzip();
    let months = intake::month_volumes(&placements, program.timezone)
        .ok_or_else(|| StoreError::Corrupt("a month's volume overflows".into()))?;
    let batch = IntakeBatch { placements, months, version: known.version, now, next_attempt_at: now + lease };
    tx.write(&batch).await?;
    for (n, placement) in positions.into_iter().zip(batch.placements) {
        let source = placement.decision.source.map_or("none", |s| s.as_str());
        metrics::counter!(crate::metrics::ORDERS_ATTRIBUTED_TOTAL, "source" => source).increment(1);
        if let Some(fx) = &placement.fx {
            metrics::counter!(crate::metrics::ORDERS_CONVERTED_TOTAL, "source" => fx.source.as_str()).increment(1);
        }
        answers[n] = Some(CreateOrder::Accepted(placement.event));
    }
    for n in plan.later {
        answers[n] = Some(existing(store, &orders[n]).await?);
    }
    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| StoreError::Corrupt("an order of the batch got no outcome".into())))
        .collect()
}

/// The click key's error as the store's (intake's errors are the store's).
fn into_store(e: EngineError) -> StoreError {
    match e {
        EngineError::Store(e) => e,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// An order whose id is stored: a duplicate of the same request, else a conflict.
async fn existing(store: &dyn Backend, order: &NewOrder) -> Result<CreateOrder, StoreError> {
    let (hash, event) = store
        .placed(&order.id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("order {} exists without its order.placed event", order.id)))?;
    Ok(intake::existing(&hash, event, order))
}
