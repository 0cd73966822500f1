//! Buyers' wallets on MySQL: redemption holds, their capture and release,
//! and expiry, each in one transaction that holds the buyer's row lock.
use super::ledger::{buyer_rewards_in, reward_row, REWARD_COLUMNS};
use super::MySqlStore;
use crate::domain::event::PartitionKey;
use crate::domain::ids::{AffiliateId, BuyerId, OrderId, RedemptionId};
use crate::domain::ledger::{BuyerRewards, RewardEntry};
use crate::domain::order::Attribution;
use crate::domain::wallet::{Redemption, RedemptionStatus};
use crate::store::{corrupt, points_of, BuyerBalance, Result, WalletTx, WalletWrite};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Row, Transaction};

const REDEMPTION_COLUMNS: &str =
    "buyer_id, id, points, order_id, status, value, program_version, hold_until, created_at, updated_at";

fn redemption_row(r: &MySqlRow) -> Result<Redemption> {
    Ok(Redemption {
        buyer_id: BuyerId::from_trusted(r.try_get("buyer_id")?),
        id: RedemptionId::from_trusted(r.try_get("id")?),
        points: r.try_get("points")?,
        order_id: r.try_get::<Option<String>, _>("order_id")?.map(OrderId::from_trusted),
        status: RedemptionStatus::parse(r.try_get("status")?).ok_or_else(|| corrupt("redemption status"))?,
        value: r.try_get("value")?,
        program_version: r.try_get("program_version")?,
        hold_until: r.try_get("hold_until")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub(super) struct MySqlWallet {
    pub(super) buyer: BuyerId,
    pub(super) tx: Transaction<'static, MySql>,
}

impl MySqlWallet {
    async fn set_due(&mut self, due: Option<Option<DateTime<Utc>>>, now: DateTime<Utc>) -> Result<()> {
        if let Some(due) = due {
            sqlx::query("UPDATE buyers SET expire_due_at = ?, updated_at = ? WHERE id = ?")
                .bind(due)
                .bind(now)
                .bind(self.buyer.as_str())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl WalletTx for MySqlWallet {
    async fn balance(&mut self) -> Result<Option<BuyerBalance>> {
        let row = sqlx::query("SELECT points, expire_due_at FROM buyers WHERE id = ? FOR UPDATE")
            .bind(self.buyer.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| {
            Ok(BuyerBalance {
                points: points_of(r.try_get::<Decimal, _>("points")?)?,
                expire_due_at: r.try_get("expire_due_at")?,
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
            .bind(r.value)
            .bind(r.program_version)
            .bind(r.hold_until)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *self.tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE redemptions SET status = ?, order_id = ?, updated_at = ? WHERE buyer_id = ? AND id = ?",
            )
            .bind(r.status.as_str())
            .bind(r.order_id.as_ref().map(|o| o.as_str()))
            .bind(r.updated_at)
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
        sqlx::query(
            "INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, \
             created_at, updated_at, applied_at) VALUES (?, ?, '', ?, 'done', 1, ?, ?, ?, ?, ?)",
        )
        .bind(event_id.to_string())
        .bind(kind.as_str())
        .bind(PartitionKey::of(None, &self.buyer).as_str())
        .bind(payload)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        if !w.entries.is_empty() {
            let mut q = QueryBuilder::<MySql>::new(
                "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at, redemption_id) ",
            );
            q.push_values(&w.entries, |mut b, (kind, points, rid)| {
                b.push_bind(self.buyer.as_str())
                    .push_bind("")
                    .push_bind(event_id.to_string())
                    .push_bind(kind.as_str())
                    .push_bind(*points)
                    .push_bind(now)
                    .push_bind(rid.as_ref().map(|r| r.as_str().to_owned()));
            });
            q.build().execute(&mut *self.tx).await?;
        }
        let sum: i64 = w.entries.iter().map(|(_, p, _)| p).sum();
        let mut q = QueryBuilder::<MySql>::new("UPDATE buyers SET points = points + ");
        q.push_bind(sum).push(", updated_at = ").push_bind(now);
        if let Some(due) = w.due {
            q.push(", expire_due_at = ").push_bind(due);
        }
        q.push(" WHERE id = ").push_bind(self.buyer.as_str());
        if q.build().execute(&mut *self.tx).await?.rows_affected() != 1 && sum != 0 {
            return Err(corrupt(format!("no balance row for buyer {}", self.buyer)));
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl MySqlStore {
    pub(super) async fn begin_wallet(&self, buyer: &BuyerId) -> Result<MySqlWallet> {
        Ok(MySqlWallet { buyer: buyer.clone(), tx: self.pool.begin().await? })
    }

    pub async fn due_holds(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<(BuyerId, RedemptionId)>> {
        let rows = sqlx::query(
            "SELECT buyer_id, id FROM redemptions WHERE status = 'held' AND hold_until <= ? ORDER BY hold_until LIMIT ?",
        )
        .bind(now.naive_utc())
        .bind(limit)
        .fetch_all(&self.work)
        .await?;
        rows.iter()
            .map(|r| Ok((BuyerId::from_trusted(r.try_get("buyer_id")?), RedemptionId::from_trusted(r.try_get("id")?))))
            .collect()
    }

    pub async fn due_expiries(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<BuyerId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM buyers WHERE expire_due_at <= ? ORDER BY expire_due_at LIMIT ?")
                .bind(now.naive_utc())
                .bind(limit)
                .fetch_all(&self.work)
                .await?;
        Ok(ids.into_iter().map(BuyerId::from_trusted).collect())
    }

    pub async fn buyer_wallet(&self, id: &BuyerId) -> Result<(BuyerRewards, Vec<Redemption>)> {
        // One snapshot (REPEATABLE READ): the history and the holds agree.
        let mut tx = self.pool.begin().await?;
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
            "SELECT buyer_id FROM ( \
               SELECT buyer_id FROM redemptions WHERE buyer_id > ? \
               UNION SELECT buyer_id FROM reward_entries WHERE (order_id = '' OR expires_at IS NOT NULL) AND buyer_id > ? \
             ) w ORDER BY buyer_id LIMIT ?",
        )
        .bind(after)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(BuyerId::from_trusted).collect())
    }

    pub async fn attributed(&self, attribution: &Attribution) -> Result<Option<AffiliateId>> {
        let (sql, value) = match attribution {
            Attribution::ReferralCode(c) => ("SELECT id FROM affiliates WHERE referral_code = ?", c.as_str()),
            Attribution::AffiliateId(a) => ("SELECT id FROM affiliates WHERE id = ?", a.as_str()),
        };
        let id: Option<String> = sqlx::query_scalar(sql).bind(value).fetch_optional(&self.pool).await?;
        Ok(id.map(AffiliateId::from_trusted))
    }

    pub async fn held_points(&self) -> Result<i128> {
        let points: Vec<i64> =
            sqlx::query_scalar("SELECT points FROM redemptions WHERE status = 'held'").fetch_all(&self.pool).await?;
        Ok(points.into_iter().map(i128::from).sum())
    }
}
