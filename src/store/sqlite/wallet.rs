//! Buyers' wallets on SQLite: redemption holds, their capture and release,
//! and expiry, each in one write transaction (the single writer is the lock).
use super::codec::{decode_points, encode_money, encode_points, encode_time, money, opt_time, time};
use super::ledger::{buyer_rewards_in, reward_row, REWARD_COLUMNS};
use super::{int, SqliteStore};
use crate::domain::event::PartitionKey;
use crate::domain::ids::{AffiliateId, BuyerId, OrderId, RedemptionId};
use crate::domain::ledger::{BuyerRewards, RewardEntry};
use crate::domain::order::Attribution;
use crate::domain::wallet::{Redemption, RedemptionStatus};
use crate::store::{corrupt, BuyerBalance, Result, WalletTx, WalletWrite};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

const REDEMPTION_COLUMNS: &str =
    "buyer_id, id, points, order_id, status, value, program_version, hold_until, created_at, updated_at";

fn redemption_row(r: &SqliteRow) -> Result<Redemption> {
    Ok(Redemption {
        buyer_id: BuyerId::from_trusted(r.try_get("buyer_id")?),
        id: RedemptionId::from_trusted(r.try_get("id")?),
        points: r.try_get("points")?,
        order_id: r.try_get::<Option<String>, _>("order_id")?.map(OrderId::from_trusted),
        status: RedemptionStatus::parse(r.try_get("status")?).ok_or_else(|| corrupt("redemption status"))?,
        value: money(r, "value")?,
        program_version: r.try_get("program_version")?,
        hold_until: time(r, "hold_until")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

pub(super) struct SqliteWallet {
    pub(super) buyer: BuyerId,
    pub(super) tx: Transaction<'static, Sqlite>,
}

impl SqliteWallet {
    async fn set_due(&mut self, due: Option<Option<DateTime<Utc>>>, now: DateTime<Utc>) -> Result<()> {
        if let Some(due) = due {
            sqlx::query("UPDATE buyers SET expire_due_at = ?, updated_at = ? WHERE id = ?")
                .bind(due.map(encode_time).transpose()?)
                .bind(encode_time(now)?)
                .bind(self.buyer.as_str())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl WalletTx for SqliteWallet {
    async fn balance(&mut self) -> Result<Option<BuyerBalance>> {
        let row = sqlx::query("SELECT points, expire_due_at FROM buyers WHERE id = ?")
            .bind(self.buyer.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| {
            Ok(BuyerBalance {
                points: decode_points(r.try_get("points")?)?,
                expire_due_at: opt_time(&r, "expire_due_at")?,
            })
        })
        .transpose()
    }

    async fn history(&mut self) -> Result<Vec<RewardEntry>> {
        sqlx::query(&format!("SELECT {REWARD_COLUMNS} FROM reward_entries WHERE buyer_id = ? ORDER BY id"))
            .bind(self.buyer.as_str())
            .fetch_all(&mut *self.tx)
            .await?
            .iter()
            .map(reward_row)
            .collect()
    }

    async fn redemption(&mut self, id: &RedemptionId) -> Result<Option<Redemption>> {
        sqlx::query(&format!("SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE buyer_id = ? AND id = ?"))
            .bind(self.buyer.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(redemption_row)
            .transpose()
    }

    async fn put_redemption(&mut self, r: &Redemption, new: bool) -> Result<()> {
        if new {
            sqlx::query(&format!(
                "INSERT INTO redemptions ({REDEMPTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(r.buyer_id.as_str())
            .bind(r.id.as_str())
            .bind(r.points)
            .bind(r.order_id.as_ref().map(|o| o.as_str()))
            .bind(r.status.as_str())
            .bind(encode_money(r.value)?)
            .bind(int(r.program_version)?)
            .bind(encode_time(r.hold_until)?)
            .bind(encode_time(r.created_at)?)
            .bind(encode_time(r.updated_at)?)
            .execute(&mut *self.tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE redemptions SET status = ?, order_id = ?, updated_at = ? WHERE buyer_id = ? AND id = ?",
            )
            .bind(r.status.as_str())
            .bind(r.order_id.as_ref().map(|o| o.as_str()))
            .bind(encode_time(r.updated_at)?)
            .bind(r.buyer_id.as_str())
            .bind(r.id.as_str())
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn record(&mut self, w: &WalletWrite, now: DateTime<Utc>) -> Result<()> {
        let Some((event_id, kind, payload)) = &w.event else {
            if !w.entries.is_empty() {
                return Err(corrupt("wallet entries without an event"));
            }
            return self.set_due(w.due, now).await;
        };
        let stamp = encode_time(now)?;
        sqlx::query(
            "INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, \
             created_at, updated_at, applied_at) VALUES (?, ?, '', ?, 'done', 1, ?, ?, ?, ?, ?)",
        )
        .bind(event_id.to_string())
        .bind(kind.as_str())
        .bind(PartitionKey::of(None, &self.buyer).as_str())
        .bind(payload)
        .bind(&stamp)
        .bind(&stamp)
        .bind(&stamp)
        .bind(&stamp)
        .execute(&mut *self.tx)
        .await?;
        for (kind, points, rid) in &w.entries {
            sqlx::query(
                "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at, redemption_id) \
                 VALUES (?, '', ?, ?, ?, ?, ?)",
            )
            .bind(self.buyer.as_str())
            .bind(event_id.to_string())
            .bind(kind.as_str())
            .bind(*points)
            .bind(&stamp)
            .bind(rid.as_ref().map(|r| r.as_str()))
            .execute(&mut *self.tx)
            .await?;
        }
        let sum: i64 = w.entries.iter().map(|(_, p, _)| p).sum();
        let Some(before) = self.balance().await? else {
            return if sum == 0 { Ok(()) } else { Err(corrupt(format!("no balance row for buyer {}", self.buyer))) };
        };
        let after = before
            .points
            .checked_add(i128::from(sum))
            .ok_or_else(|| corrupt(format!("points of {} overflow", self.buyer)))?;
        let due = match w.due {
            Some(due) => due,
            None => before.expire_due_at,
        };
        sqlx::query("UPDATE buyers SET points = ?, updated_at = ?, expire_due_at = ? WHERE id = ?")
            .bind(encode_points(after)?)
            .bind(&stamp)
            .bind(due.map(encode_time).transpose()?)
            .bind(self.buyer.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl SqliteStore {
    pub(super) async fn begin_wallet(&self, buyer: &BuyerId) -> Result<SqliteWallet> {
        Ok(SqliteWallet { buyer: buyer.clone(), tx: self.begin_write().await? })
    }

    pub async fn due_holds(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<(BuyerId, RedemptionId)>> {
        let rows = sqlx::query(
            "SELECT buyer_id, id FROM redemptions WHERE status = 'held' AND hold_until <= ? ORDER BY hold_until LIMIT ?",
        )
        .bind(super::codec::bound_time(now))
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| Ok((BuyerId::from_trusted(r.try_get("buyer_id")?), RedemptionId::from_trusted(r.try_get("id")?))))
            .collect()
    }

    pub async fn due_expiries(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<BuyerId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM buyers WHERE expire_due_at <= ? ORDER BY expire_due_at LIMIT ?")
                .bind(super::codec::bound_time(now))
                .bind(limit)
                .fetch_all(&self.readers)
                .await?;
        Ok(ids.into_iter().map(BuyerId::from_trusted).collect())
    }

    pub async fn buyer_wallet(&self, id: &BuyerId) -> Result<(BuyerRewards, Vec<Redemption>)> {
        // One read transaction: one snapshot of the history and the holds.
        let mut tx = self.readers.begin().await?;
        let rewards = buyer_rewards_in(&mut tx, id).await?;
        let redemptions = sqlx::query(&format!(
            "SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE buyer_id = ? ORDER BY created_at, id"
        ))
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(redemption_row)
        .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok((rewards, redemptions))
    }

    pub async fn wallet_buyers(&self, after: &str, limit: u32) -> Result<Vec<BuyerId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT buyer_id FROM redemptions WHERE buyer_id > ? \
             UNION SELECT buyer_id FROM reward_entries WHERE (order_id = '' OR expires_at IS NOT NULL) AND buyer_id > ? \
             ORDER BY buyer_id LIMIT ?",
        )
        .bind(after)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        Ok(ids.into_iter().map(BuyerId::from_trusted).collect())
    }

    pub async fn attributed(&self, attribution: &Attribution) -> Result<Option<AffiliateId>> {
        let (sql, value) = match attribution {
            Attribution::ReferralCode(c) => ("SELECT id FROM affiliates WHERE referral_code = ?", c.as_str()),
            Attribution::AffiliateId(a) => ("SELECT id FROM affiliates WHERE id = ?", a.as_str()),
        };
        let id: Option<String> = sqlx::query_scalar(sql).bind(value).fetch_optional(&self.readers).await?;
        Ok(id.map(AffiliateId::from_trusted))
    }

    pub async fn held_points(&self) -> Result<i128> {
        let points: Vec<i64> =
            sqlx::query_scalar("SELECT points FROM redemptions WHERE status = 'held'").fetch_all(&self.readers).await?;
        Ok(points.into_iter().map(i128::from).sum())
    }
}
