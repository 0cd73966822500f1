//! Affiliates: the referral tree and each affiliate's balances.
use super::{mysql_error_number, MySqlStore, ER_DUP_ENTRY};
use crate::domain::affiliate::{
    Affiliate, AffiliatePatch, AffiliateStatus, Balances, CreateAffiliate, NewAffiliate, PatchAffiliate, MAX_TREE_DEPTH,
};
use crate::domain::ids::{AffiliateId, BuyerId, ReferralCode};
use crate::store::{corrupt, Result, StoreError};
use chrono::Utc;
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, Row, Transaction};

const COLUMNS: &str = "id, name, parent_id, referral_code, buyer_id, status, pending, approved, paid, created_at";

pub(super) fn from_row(row: &MySqlRow) -> Result<Affiliate> {
    let status: String = row.try_get("status")?;
    Ok(Affiliate {
        id: AffiliateId::from_trusted(row.try_get("id")?),
        name: row.try_get("name")?,
        parent_id: row.try_get::<Option<String>, _>("parent_id")?.map(AffiliateId::from_trusted),
        referral_code: ReferralCode::from_trusted(row.try_get("referral_code")?),
        buyer_id: row.try_get::<Option<String>, _>("buyer_id")?.map(BuyerId::from_trusted),
        status: AffiliateStatus::parse(&status).ok_or_else(|| corrupt(format!("affiliate status {status:?}")))?,
        balances: Balances {
            pending: row.try_get("pending")?,
            approved: row.try_get("approved")?,
            paid: row.try_get("paid")?,
        },
        created_at: row.try_get("created_at")?,
    })
}

/// The affiliate tree's advisory lock, named per database (MD5 keeps the name
/// under the server's 64 characters), waited for at most 10 s.
const TREE_LOCK: &str = "SELECT GET_LOCK(CONCAT('komisi.tree.', MD5(DATABASE())), 10)";
const TREE_UNLOCK: &str = "SELECT RELEASE_LOCK(CONCAT('komisi.tree.', MD5(DATABASE())))";

impl MySqlStore {
    pub async fn create_affiliate(&self, new: &NewAffiliate) -> Result<CreateAffiliate> {
        let mut tx = self.pool.begin().await?;
        if let Some(parent) = &new.parent_id {
            if fetch_affiliate(&mut tx, parent).await?.is_none() {
                return Ok(CreateAffiliate::UnknownParent);
            }
        }
        let now = Utc::now();
        let inserted = sqlx::query(
            "INSERT INTO affiliates (id, name, parent_id, referral_code, buyer_id, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
        )
        .bind(new.id.as_str())
        .bind(&new.name)
        .bind(new.parent_id.as_ref().map(|p| p.as_str()))
        .bind(new.referral_code.as_str())
        .bind(new.buyer_id.as_ref().map(|b| b.as_str()))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                let created = fetch_affiliate(&mut tx, &new.id).await?.ok_or_else(|| corrupt("affiliate vanished"))?;
                tx.commit().await?;
                Ok(CreateAffiliate::Created(created))
            }
            Err(e) if mysql_error_number(&e) == Some(ER_DUP_ENTRY) => {
                drop(tx);
                match self.affiliate(&new.id).await? {
                    Some(existing) if existing.same_registration(new) => Ok(CreateAffiliate::Unchanged(existing)),
                    Some(_) => Ok(CreateAffiliate::Conflict("an affiliate with this id exists with other data")),
                    None => Ok(CreateAffiliate::Conflict("this referral code belongs to another affiliate")),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM affiliates WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Direct children, by id, after `after`.
    pub async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM affiliates WHERE parent_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(id.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn patch_affiliate(&self, id: &AffiliateId, patch: &AffiliatePatch) -> Result<PatchAffiliate> {
        let mut tx = self.pool.begin().await?;
        let reparent = matches!(patch.parent_id, Some(Some(_)));
        if reparent {
            // Serialise re-parenting: two concurrent moves could otherwise each pass
            // the cycle check and together close a loop. The lock belongs to the
            // connection, so it is released on every path before the connection is
            // reused. Its name is this database's (lock names are server-wide, and
            // another komisi database on the server has a tree of its own); a lock
            // not granted (0: timeout, NULL: error) changes nothing and is Busy.
            let granted: Option<i64> = sqlx::query_scalar(TREE_LOCK).fetch_one(&mut *tx).await?;
            if granted != Some(1) {
                return Err(StoreError::Busy("another re-parenting of the affiliate tree is in progress"));
            }
        }
        let outcome = patch_in(&mut tx, id, patch).await;
        if reparent {
            sqlx::query(TREE_UNLOCK).execute(&mut *tx).await?;
        }
        let outcome = outcome?;
        if matches!(outcome, PatchAffiliate::Updated(_)) {
            tx.commit().await?;
        }
        Ok(outcome)
    }
}

async fn patch_in(tx: &mut Transaction<'_, MySql>, id: &AffiliateId, patch: &AffiliatePatch) -> Result<PatchAffiliate> {
    let Some(current) = fetch_affiliate_for_update(tx, id).await? else {
        return Ok(PatchAffiliate::NotFound);
    };
    if let Some(Some(parent)) = &patch.parent_id {
        if fetch_affiliate(tx, parent).await?.is_none() {
            return Ok(PatchAffiliate::UnknownParent);
        }
        if would_cycle(tx, id, parent).await? {
            return Ok(PatchAffiliate::Cycle);
        }
    }
    let name = patch.name.clone().unwrap_or(current.name);
    let status = patch.status.unwrap_or(current.status);
    let parent = match &patch.parent_id {
        Some(p) => p.clone(),
        None => current.parent_id,
    };
    sqlx::query("UPDATE affiliates SET name = ?, status = ?, parent_id = ?, updated_at = ? WHERE id = ?")
        .bind(name)
        .bind(status.as_str())
        .bind(parent.as_ref().map(|p| p.as_str()))
        .bind(Utc::now())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    let updated = fetch_affiliate(tx, id).await?.ok_or_else(|| corrupt("affiliate vanished"))?;
    Ok(PatchAffiliate::Updated(updated))
}

/// Whether making `parent` the parent of `id` closes a loop: `id` is `parent` or one of its ancestors.
async fn would_cycle(tx: &mut Transaction<'_, MySql>, id: &AffiliateId, parent: &AffiliateId) -> Result<bool> {
    let mut cursor = Some(parent.clone());
    for _ in 0..MAX_TREE_DEPTH {
        match cursor {
            None => return Ok(false),
            Some(ref c) if c == id => return Ok(true),
            Some(c) => {
                cursor = sqlx::query_scalar::<_, Option<String>>("SELECT parent_id FROM affiliates WHERE id = ?")
                    .bind(c.as_str())
                    .fetch_optional(&mut **tx)
                    .await?
                    .flatten()
                    .map(AffiliateId::from_trusted);
            }
        }
    }
    Ok(true)
}

pub(super) async fn fetch_affiliate(tx: &mut Transaction<'_, MySql>, id: &AffiliateId) -> Result<Option<Affiliate>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM affiliates WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

async fn fetch_affiliate_for_update(tx: &mut Transaction<'_, MySql>, id: &AffiliateId) -> Result<Option<Affiliate>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM affiliates WHERE id = ? FOR UPDATE"))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}
