//! Reading the commission and reward ledgers (writes happen in `apply`).
use super::MySqlStore;
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::ledger::{BuyerRewards, EntryStatus, LedgerEntry, RewardEntry};
use crate::store::{corrupt, points_of, Result};
use rust_decimal::Decimal;
use sqlx::mysql::MySqlRow;
use sqlx::Row;

const LEDGER_COLUMNS: &str =
    "id, affiliate_id, order_id, event_id, level, kind, amount, status, rule_version, created_at";
pub(super) const REWARD_COLUMNS: &str =
    "id, buyer_id, order_id, event_id, kind, points, created_at, redemption_id, expires_at";

fn ledger_row(r: &MySqlRow) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        id: r.try_get("id")?,
        affiliate_id: AffiliateId::from_trusted(r.try_get("affiliate_id")?),
        order_id: OrderId::from_trusted(r.try_get("order_id")?),
        event_id: r.try_get("event_id")?,
        level: r.try_get("level")?,
        kind: CommissionKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("ledger kind"))?,
        amount: r.try_get("amount")?,
        status: EntryStatus::parse(r.try_get("status")?).ok_or_else(|| corrupt("entry status"))?,
        rule_version: r.try_get("rule_version")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(super) fn reward_row(r: &MySqlRow) -> Result<RewardEntry> {
    let order_id: String = r.try_get("order_id")?;
    Ok(RewardEntry {
        id: r.try_get("id")?,
        buyer_id: BuyerId::from_trusted(r.try_get("buyer_id")?),
        // '' is a wallet entry's: no order.
        order_id: (!order_id.is_empty()).then(|| OrderId::from_trusted(order_id)),
        redemption_id: r.try_get("redemption_id")?,
        expires_at: r.try_get("expires_at")?,
        event_id: r.try_get("event_id")?,
        kind: RewardKind::parse(r.try_get("kind")?).ok_or_else(|| corrupt("reward kind"))?,
        points: r.try_get("points")?,
        created_at: r.try_get("created_at")?,
    })
}

impl MySqlStore {
    /// One page of an affiliate's ledger, oldest first; `after` is the last id of the previous page.
    pub async fn affiliate_ledger(&self, id: &AffiliateId, after: u64, limit: u32) -> Result<Vec<LedgerEntry>> {
        sqlx::query(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE affiliate_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(id.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(ledger_row)
        .collect()
    }

    pub async fn order_ledger(&self, id: &OrderId) -> Result<Vec<LedgerEntry>> {
        sqlx::query(&format!("SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE order_id = ? ORDER BY id"))
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(ledger_row)
            .collect()
    }

    pub async fn order_rewards(&self, id: &OrderId) -> Result<Vec<RewardEntry>> {
        sqlx::query(&format!("SELECT {REWARD_COLUMNS} FROM reward_entries WHERE order_id = ? ORDER BY id"))
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(reward_row)
            .collect()
    }

    /// A buyer's points balance and full history (a buyer never seen has 0 points).
    pub async fn buyer_rewards(&self, id: &BuyerId) -> Result<BuyerRewards> {
        let mut conn = self.pool.acquire().await?;
        buyer_rewards_in(&mut conn, id).await
    }
}

/// A buyer's points balance and full history, on this connection.
pub(super) async fn buyer_rewards_in(conn: &mut sqlx::MySqlConnection, id: &BuyerId) -> Result<BuyerRewards> {
    let points: Option<Decimal> = sqlx::query_scalar("SELECT points FROM buyers WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let points = points.map(points_of).transpose()?;
    let history = sqlx::query(&format!("SELECT {REWARD_COLUMNS} FROM reward_entries WHERE buyer_id = ? ORDER BY id"))
        .bind(id.as_str())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(reward_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(BuyerRewards { buyer_id: id.clone(), points: points.unwrap_or(0), history })
}

impl MySqlStore {}
