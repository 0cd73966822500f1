//! Affiliates: the referral tree and each affiliate's balances.
use super::codec::{encode_time, money, time};
use super::{is_unique_violation, SqliteStore};
use crate::domain::affiliate::{
    Affiliate, AffiliatePatch, AffiliateStatus, Balances, CreateAffiliate, NewAffiliate, PatchAffiliate, MAX_TREE_DEPTH,
};
use crate::domain::ids::{AffiliateId, BuyerId, ReferralCode};
use crate::store::{corrupt, Result};
use chrono::Utc;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

const COLUMNS: &str = "id, name, parent_id, referral_code, buyer_id, status, pending, approved, paid, created_at";

pub(super) fn from_row(row: &SqliteRow) -> Result<Affiliate> {
    let status: String = row.try_get("status")?;
    Ok(Affiliate {
        id: AffiliateId::from_trusted(row.try_get("id")?),
        name: row.try_get("name")?,
        parent_id: row.try_get::<Option<String>, _>("parent_id")?.map(AffiliateId::from_trusted),
        referral_code: ReferralCode::from_trusted(row.try_get("referral_code")?),
        buyer_id: row.try_get::<Option<String>, _>("buyer_id")?.map(BuyerId::from_trusted),
        status: AffiliateStatus::parse(&status).ok_or_else(|| corrupt(format!("affiliate status {status:?}")))?,
        balances: Balances {
            pending: money(row, "pending")?,
            approved: money(row, "approved")?,
            paid: money(row, "paid")?,
        },
        created_at: time(row, "created_at")?,
    })
}

impl SqliteStore {
    pub async fn create_affiliate(&self, new: &NewAffiliate) -> Result<CreateAffiliate> {
        let mut tx = self.begin_write().await?;
        if let Some(parent) = &new.parent_id {
            if fetch_affiliate(&mut tx, parent).await?.is_none() {
                return Ok(CreateAffiliate::UnknownParent);
            }
        }
        let now = encode_time(Utc::now())?;
        let inserted = sqlx::query(
            "INSERT INTO affiliates (id, name, parent_id, referral_code, buyer_id, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
        )
        .bind(new.id.as_str())
        .bind(&new.name)
        .bind(new.parent_id.as_ref().map(|p| p.as_str()))
        .bind(new.referral_code.as_str())
        .bind(new.buyer_id.as_ref().map(|b| b.as_str()))
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                let created = fetch_affiliate(&mut tx, &new.id).await?.ok_or_else(|| corrupt("affiliate vanished"))?;
                tx.commit().await?;
                Ok(CreateAffiliate::Created(created))
            }
            Err(e) if is_unique_violation(&e) => {
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
            .fetch_optional(&self.readers)
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
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Re-parenting needs no tree lock here: the single writer runs one
    /// write transaction at a time, so two moves cannot both pass the cycle check.
    pub async fn patch_affiliate(&self, id: &AffiliateId, patch: &AffiliatePatch) -> Result<PatchAffiliate> {
        let mut tx = self.begin_write().await?;
        let outcome = patch_in(&mut tx, id, patch).await?;
        if matches!(outcome, PatchAffiliate::Updated(_)) {
            tx.commit().await?;
        }
        Ok(outcome)
    }
}

async fn patch_in(
    tx: &mut Transaction<'_, Sqlite>,
    id: &AffiliateId,
    patch: &AffiliatePatch,
) -> Result<PatchAffiliate> {
    let Some(current) = fetch_affiliate(tx, id).await? else {
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
        .bind(encode_time(Utc::now())?)
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    let updated = fetch_affiliate(tx, id).await?.ok_or_else(|| corrupt("affiliate vanished"))?;
    Ok(PatchAffiliate::Updated(updated))
}

/// Whether making `parent` the parent of `id` closes a loop: `id` is `parent` or one of its ancestors.
async fn would_cycle(tx: &mut Transaction<'_, Sqlite>, id: &AffiliateId, parent: &AffiliateId) -> Result<bool> {
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

pub(super) async fn fetch_affiliate(tx: &mut Transaction<'_, Sqlite>, id: &AffiliateId) -> Result<Option<Affiliate>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM affiliates WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}
