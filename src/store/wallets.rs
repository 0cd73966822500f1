//! Buyers' wallets: points earned (written by the event transaction), held,
//! captured, released and expired.
use super::Result;
use crate::domain::adjustment::Adjustment;
use crate::domain::entitlement::RewardKind;
use crate::domain::event::{EventId, EventType};
use crate::domain::ids::{BuyerId, RedemptionId};
use crate::domain::ledger::{BuyerRewards, RewardEntry};
use crate::domain::wallet::Redemption;
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait Wallets: Send + Sync {
    /// A buyer's points balance and history (a buyer never seen has 0 points).
    async fn buyer_rewards(&self, id: &BuyerId) -> Result<BuyerRewards>;
    /// A buyer's balance, history and redemptions, read in one snapshot.
    async fn buyer_wallet(&self, id: &BuyerId) -> Result<(BuyerRewards, Vec<Redemption>)>;
    /// [`Wallets::buyer_wallet`] of each of `ids` (in a few statements, not
    /// one a buyer), all read in one snapshot; in the order of `ids`.
    async fn buyer_wallets(&self, ids: &[BuyerId]) -> Result<Vec<(BuyerRewards, Vec<Redemption>)>>;
    /// A page of the buyers with a wallet to check (redemptions, wallet
    /// entries or expiring lots), by id.
    async fn wallet_buyers(&self, after: &str, limit: u32) -> Result<Vec<BuyerId>>;
    /// Σ points of the redemptions held now.
    async fn held_points(&self) -> Result<i128>;
    /// Holds still `held` past their hold time, oldest first.
    async fn due_holds(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<(BuyerId, RedemptionId)>>;
    /// Buyers whose expiry due time has passed.
    async fn due_expiries(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<BuyerId>>;
    async fn begin_wallet(&self, buyer: &BuyerId) -> Result<Box<dyn WalletTx>>;
}

/// A buyer's stored balance, as locked by [`WalletTx::balance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuyerBalance {
    /// The signed sum of the history (negative: a debt).
    pub points: i128,
    pub expire_due_at: Option<DateTime<Utc>>,
}

/// One change to a buyer's wallet: its event (stored done: the change is
/// applied in the transaction that records it), its history entries, the
/// balance moved by their sum.
pub struct WalletWrite {
    /// (id, type, payload JSON); None only for a change of `due` alone.
    pub event: Option<(EventId, EventType, String)>,
    /// (kind, points, redemption) — entries with no order, of the event.
    pub entries: Vec<(RewardKind, i64, Option<RedemptionId>)>,
    /// The buyer's expiry due time after the change (None: left as it is).
    pub due: Option<Option<DateTime<Utc>>>,
}

/// A transaction on one buyer's wallet, which holds the buyer's row lock
/// from [`WalletTx::balance`] to the commit: holds, captures, releases and
/// expiry of one buyer happen one at a time, and every writer of the
/// buyer's entries (the event transaction too) takes the lock before it
/// writes, so entry ids are in commit order.
#[async_trait::async_trait]
pub trait WalletTx: super::NotifyTx + super::AuditTx + super::ReportTx + Send {
    /// Locks the buyer's row; None when the buyer has never earned anything.
    async fn balance(&mut self) -> Result<Option<BuyerBalance>>;
    /// The buyer's whole history, in id order.
    async fn history(&mut self) -> Result<Vec<RewardEntry>>;
    async fn redemption(&mut self, id: &RedemptionId) -> Result<Option<Redemption>>;
    /// Inserts the redemption (`new`) or updates its status, order and time.
    async fn put_redemption(&mut self, r: &Redemption, new: bool) -> Result<()>;
    async fn record(&mut self, w: &WalletWrite, now: DateTime<Utc>) -> Result<()>;
    /// The adjustment stored under `id` (of any subject).
    async fn adjustment(&mut self, id: &crate::domain::ids::AdjustmentId) -> Result<Option<Adjustment>>;
    /// Stores a points adjustment's request (its entry and event are a [`WalletWrite`]).
    async fn insert_adjustment(&mut self, a: &Adjustment) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}
