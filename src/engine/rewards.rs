//! Spending points: a storefront holds points at checkout and captures or
//! releases them; an uncaptured hold expires after `redemption_hold_minutes`
//! and earned points after `points_expire_days` (durable due times, swept
//! by the scheduler). Every change is one transaction on the buyer's wallet
//! that records its event (`redemption.*`, `points.expired`) as done, so it
//! is in the event log and a replay of it changes nothing.
use super::webhooks::{publish, wallet_notice, Published};
use super::{retrying, EngineError, Result};
use crate::domain::entitlement::RewardKind;
use crate::domain::event::{EventId, EventType};
use crate::domain::ids::{BuyerId, OrderId, RedemptionId};
use crate::domain::ledger::BuyerRewards;
use crate::domain::payload;
use crate::domain::report::Figures;
pub use crate::domain::wallet::HoldRequest;
use crate::domain::wallet::{
    capture, check_hold, new_hold, release, Action, HoldCheck, Redemption, RedemptionStatus, Refusal, Wallet,
    WalletEntry,
};
use crate::metrics as m;
use crate::store::{Backend, ReportAdds, WalletTx, WalletWrite};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// A buyer's balance, history and redemptions.
#[derive(Debug, Clone)]
pub struct BuyerWallet {
    pub rewards: BuyerRewards,
    pub redemptions: Vec<Redemption>,
    /// Points held by open redemptions.
    pub held: i128,
}

#[derive(Debug, Clone)]
pub enum HoldOutcome {
    Created(Redemption),
    /// The same redemption id and body again.
    Existing(Redemption),
    /// The redemption id is taken by another body.
    Conflict(Redemption),
    Insufficient {
        spendable: i128,
    },
}

#[derive(Debug, Clone)]
pub enum ActionOutcome {
    /// Captured or released now.
    Done(Redemption),
    /// Already so (an idempotent repeat).
    Unchanged(Redemption),
    NotFound,
    /// Not possible in the redemption's state (e.g. capture after release).
    Conflict(Redemption, String),
}

/// Wallet times are kept to the microsecond, as both databases store them,
/// so the lots replayed from the store are the ones decided on.
pub(super) fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(now)
}

/// Commits a wallet transaction, unless a test injects a failure after
/// every row is written: then dropping it rolls everything back (G3).
pub(super) async fn commit(faults: &super::faults::Faults, tx: Box<dyn WalletTx>, published: Published) -> Result<()> {
    if faults.take_wallet_error() {
        return Err(EngineError::Injected("database error in the middle of a wallet transaction"));
    }
    tx.commit().await?;
    published.committed();
    Ok(())
}

/// Records a wallet change and its webhook message, in the transaction.
pub(super) async fn record(
    tx: &mut dyn WalletTx,
    buyer: &BuyerId,
    write: &WalletWrite,
    now: DateTime<Utc>,
) -> Result<Published> {
    tx.record(write, now).await?;
    let Some((_, kind, payload)) = &write.event else { return Ok(Published::default()) };
    let notices = || wallet_notice(buyer, *kind, payload).into_iter().collect();
    publish(tx, now, notices).await
}

/// The entry a write adds, as the wallet replays it (it has no id yet: last).
pub(super) fn pending_entry(
    kind: RewardKind,
    points: i64,
    rid: Option<&RedemptionId>,
    at: DateTime<Utc>,
) -> WalletEntry {
    WalletEntry {
        id: u64::MAX,
        kind,
        points,
        order_id: None,
        redemption_id: rid.map(|r| r.as_str().to_owned()),
        at,
        expires_at: None,
    }
}

/// A capture or release that writes nothing.
fn refused(r: Redemption, refusal: Refusal) -> ActionOutcome {
    match refusal {
        Refusal::Unchanged => ActionOutcome::Unchanged(r),
        Refusal::Conflict(why) => ActionOutcome::Conflict(r, why),
    }
}

/// Opens a wallet transaction on the buyer, takes the buyer's lock and
/// reads the redemption (None: no such redemption; the transaction is dropped).
async fn open_redemption(
    store: &dyn Backend,
    buyer: &BuyerId,
    id: &RedemptionId,
) -> Result<Option<(Box<dyn WalletTx>, Redemption)>> {
    let mut tx = store.begin_wallet(buyer).await?;
    tx.balance().await?;
    Ok(tx.redemption(id).await?.map(|r| (tx, r)))
}

/// Gives a held redemption's points back (released by the storefront, or its
/// hold time passed) and moves the buyer's expiry due time to the lots the
/// points returned to.
async fn give_back(
    tx: &mut dyn WalletTx,
    r: &mut Redemption,
    status: RedemptionStatus,
    now: DateTime<Utc>,
) -> Result<Published> {
    let mut wallet = Wallet::replay(&tx.history().await?.iter().map(WalletEntry::from).collect::<Vec<_>>());
    wallet.apply(&pending_entry(RewardKind::RedemptionReleased, r.points, Some(&r.id), now));
    r.status = status;
    r.updated_at = now;
    tx.put_redemption(r, false).await?;
    let kind =
        if status == RedemptionStatus::Expired { EventType::RedemptionExpired } else { EventType::RedemptionReleased };
    let write = WalletWrite {
        event: Some((EventId::new(), kind, payload::redemption(r))),
        entries: vec![(RewardKind::RedemptionReleased, r.points, Some(r.id.clone()))],
        due: Some(wallet.next_expiry()),
    };
    record(tx, &r.buyer_id.clone(), &write, now).await
}

impl super::Engine {
    /// A buyer's spendable points, holds, debt and history (an unknown buyer has none).
    pub async fn buyer_wallet(&self, id: &BuyerId) -> Result<BuyerWallet> {
        let (rewards, redemptions) = self.store().buyer_wallet(id).await?;
        let held =
            redemptions.iter().filter(|r| r.status == RedemptionStatus::Held).map(|r| i128::from(r.points)).sum();
        Ok(BuyerWallet { rewards, redemptions, held })
    }

    /// Holds points for a redemption (`domain::wallet::check_hold`):
    /// concurrent holds of one buyer take turns on the buyer's row, so they
    /// can never overdraw.
    pub async fn hold_points(&self, req: &HoldRequest) -> Result<HoldOutcome> {
        let (version, program) = self.program().await?;
        let outcome = retrying(|| async {
            let now = now_micros();
            let mut tx = self.store().begin_wallet(&req.buyer_id).await?;
            let balance = tx.balance().await?;
            let earlier = tx.redemption(&req.id).await?;
            match (check_hold(earlier.as_ref(), req, balance.map(|b| b.points)), earlier) {
                (HoldCheck::Existing, Some(r)) => return Ok(HoldOutcome::Existing(r)),
                (HoldCheck::Conflict, Some(r)) => return Ok(HoldOutcome::Conflict(r)),
                (HoldCheck::Insufficient { spendable }, _) => return Ok(HoldOutcome::Insufficient { spendable }),
                _ => {}
            }
            let r = new_hold(req, &program, version, now);
            tx.put_redemption(&r, true).await?;
            let write = WalletWrite {
                event: Some((EventId::new(), EventType::RedemptionHeld, payload::redemption(&r))),
                entries: vec![(RewardKind::Redemption, -r.points, Some(r.id.clone()))],
                due: None,
            };
            let published = record(tx.as_mut(), &req.buyer_id, &write, now).await?;
            commit(self.faults(), tx, published).await?;
            Ok(HoldOutcome::Created(r))
        })
        .await?;
        if let HoldOutcome::Created(r) = &outcome {
            metrics::counter!(m::POINTS_TOTAL, "movement" => "held").increment(r.points.unsigned_abs());
        }
        Ok(outcome)
    }

    /// Captures a hold (the checkout went through): its points stay spent.
    /// A hold whose time has passed is expired now instead, and refused
    /// (`domain::wallet::capture`).
    pub async fn capture_redemption(
        &self,
        buyer: &BuyerId,
        id: &RedemptionId,
        order_id: Option<&OrderId>,
    ) -> Result<ActionOutcome> {
        retrying(|| async {
            let now = now_micros();
            let Some((mut tx, mut r)) = open_redemption(self.store(), buyer, id).await? else {
                return Ok(ActionOutcome::NotFound);
            };
            match capture(&r, order_id, now) {
                Err(refusal) => Ok(refused(r, refusal)),
                Ok(Action::Capture) => {
                    r.status = RedemptionStatus::Captured;
                    r.order_id = r.order_id.clone().or_else(|| order_id.cloned());
                    r.updated_at = now;
                    tx.put_redemption(&r, false).await?;
                    let write = WalletWrite {
                        event: Some((EventId::new(), EventType::RedemptionCaptured, payload::redemption(&r))),
                        entries: Vec::new(),
                        due: None,
                    };
                    let published = record(tx.as_mut(), buyer, &write, now).await?;
                    let spent = Figures { points_spent: r.points, ..Figures::default() };
                    tx.add_report(&ReportAdds::of(now, write.event.as_ref().map_or(EventId::new(), |e| e.0), spent))
                        .await?;
                    commit(self.faults(), tx, published).await?;
                    metrics::counter!(m::POINTS_TOTAL, "movement" => "redeemed").increment(r.points.unsigned_abs());
                    Ok(ActionOutcome::Done(r))
                }
                Ok(_) => {
                    let published = give_back(tx.as_mut(), &mut r, RedemptionStatus::Expired, now).await?;
                    commit(self.faults(), tx, published).await?;
                    metrics::counter!(m::POINTS_TOTAL, "movement" => "released").increment(r.points.unsigned_abs());
                    Ok(ActionOutcome::Conflict(r, "the hold expired: its points are back".into()))
                }
            }
        })
        .await
    }

    /// Releases a hold (the checkout was abandoned): its points are
    /// spendable again (`domain::wallet::release`).
    pub async fn release_redemption(&self, buyer: &BuyerId, id: &RedemptionId) -> Result<ActionOutcome> {
        retrying(|| async {
            let now = now_micros();
            let Some((mut tx, mut r)) = open_redemption(self.store(), buyer, id).await? else {
                return Ok(ActionOutcome::NotFound);
            };
            if let Err(refusal) = release(&r) {
                return Ok(refused(r, refusal));
            }
            let published = give_back(tx.as_mut(), &mut r, RedemptionStatus::Released, now).await?;
            commit(self.faults(), tx, published).await?;
            metrics::counter!(m::POINTS_TOTAL, "movement" => "released").increment(r.points.unsigned_abs());
            Ok(ActionOutcome::Done(r))
        })
        .await
    }

    /// Expires holds whose time has passed uncaptured, each in its own
    /// transaction; returns how many.
    pub async fn expire_due_holds(&self, limit: u32) -> Result<usize> {
        let due = self.store().due_holds(Utc::now(), limit).await?;
        let mut expired = 0;
        for (buyer, id) in due {
            // One hold that fails is logged and left for the next sweep; the others go on.
            match retrying(|| expire_hold(self.store(), self.faults(), &buyer, &id)).await {
                Ok(done) => expired += usize::from(done),
                Err(e) => tracing::warn!(error = %e, buyer = %buyer, redemption = %id, "hold expiry failed"),
            }
        }
        Ok(expired)
    }

    /// Expires earned points past their lots' expiry, oldest first, one
    /// buyer per transaction; returns how many buyers lost points.
    pub async fn expire_due_points(&self, limit: u32) -> Result<usize> {
        let due = self.store().due_expiries(Utc::now(), limit).await?;
        let mut expired = 0;
        for buyer in due {
            match retrying(|| expire_points(self.store(), self.faults(), &buyer)).await {
                Ok(done) => expired += usize::from(done),
                Err(e) => tracing::warn!(error = %e, buyer = %buyer, "points expiry failed"),
            }
        }
        Ok(expired)
    }
}

async fn expire_hold(
    store: &dyn Backend,
    faults: &super::faults::Faults,
    buyer: &BuyerId,
    id: &RedemptionId,
) -> Result<bool> {
    let now = now_micros();
    let Some((mut tx, mut r)) = open_redemption(store, buyer, id).await? else { return Ok(false) };
    if r.status != RedemptionStatus::Held || r.hold_until > now {
        return Ok(false);
    }
    let published = give_back(tx.as_mut(), &mut r, RedemptionStatus::Expired, now).await?;
    commit(faults, tx, published).await?;
    metrics::counter!(m::POINTS_TOTAL, "movement" => "released").increment(r.points.unsigned_abs());
    Ok(true)
}

async fn expire_points(store: &dyn Backend, faults: &super::faults::Faults, buyer: &BuyerId) -> Result<bool> {
    let now = now_micros();
    let mut tx = store.begin_wallet(buyer).await?;
    let Some(balance) = tx.balance().await? else { return Ok(false) };
    if balance.expire_due_at.is_none_or(|at| at > now) {
        return Ok(false);
    }
    let mut wallet = Wallet::replay(&tx.history().await?.iter().map(WalletEntry::from).collect::<Vec<_>>());
    let due = wallet.due(now);
    let (event, entries) = if due > 0 {
        wallet.apply(&pending_entry(RewardKind::Expired, -due, None, now));
        let payload = payload::points_expired(buyer, due);
        (Some((EventId::new(), EventType::PointsExpired, payload)), vec![(RewardKind::Expired, -due, None)])
    } else {
        (None, Vec::new())
    };
    if !wallet.problems.is_empty() {
        return Err(super::corrupt(format!("wallet of buyer {buyer}: {}", wallet.problems.join("; "))));
    }
    let write = WalletWrite { event, entries, due: Some(wallet.next_expiry()) };
    let published = record(tx.as_mut(), buyer, &write, now).await?;
    commit(faults, tx, published).await?;
    if due > 0 {
        metrics::counter!(m::POINTS_TOTAL, "movement" => "expired").increment(due.unsigned_abs());
    }
    Ok(due > 0)
}

impl super::Engine {
    /// Σ points of the redemptions held now (the scheduler's gauge).
    pub async fn held_points(&self) -> Result<i128> {
        Ok(self.store().held_points().await?)
    }
}
