//! Affiliates: registration, changes (re-parenting checked for cycles, a
//! stretch of ancestors at a time: `domain::affiliate::walk_for_cycle`), and
//! the reads of balances, ledger pages and children.
use super::{Engine, Result};
use crate::domain::affiliate::{
    walk_for_cycle, Affiliate, AffiliatePatch, CreateAffiliate, CycleWalk, NewAffiliate, PatchAffiliate, CYCLE_STRETCH,
    MAX_TREE_DEPTH,
};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::ids::{AffiliateId, BuyerId};
use crate::domain::ledger::{BuyerRewards, LedgerEntry};
use crate::store::affiliates::LedgerOrder;
use crate::store::{AffiliateTx, StoreError};
use chrono::Utc;

impl Engine {
    /// Registers an affiliate; the same registration again is unchanged, an
    /// id or referral code taken by another is a conflict.
    pub async fn create_affiliate(&self, new: &NewAffiliate) -> Result<CreateAffiliate> {
        let mut tx = self.store().begin_affiliates().await?;
        if let Some(parent) = &new.parent_id {
            if tx.affiliate(parent, false).await?.is_none() {
                return Ok(CreateAffiliate::UnknownParent);
            }
        }
        match tx.insert(new, Utc::now()).await {
            Ok(()) => {
                let created =
                    tx.affiliate(&new.id, false).await?.ok_or_else(|| super::corrupt("affiliate vanished"))?;
                tx.commit().await?;
                Ok(CreateAffiliate::Created(created))
            }
            Err(StoreError::Duplicate(_)) => {
                drop(tx);
                Ok(match self.store().affiliate(&new.id).await? {
                    Some(existing) if existing.same_registration(new) => CreateAffiliate::Unchanged(existing),
                    Some(_) => CreateAffiliate::Conflict("an affiliate with this id exists with other data"),
                    None => CreateAffiliate::Conflict("this referral code belongs to another affiliate"),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Changes an affiliate's name, status or parent. Re-parentings take
    /// turns (the tree's lock, held to the commit), so two cannot both pass
    /// the cycle check and together close a loop.
    pub async fn patch_affiliate(
        &self,
        id: &AffiliateId,
        patch: &AffiliatePatch,
        actor: &Actor,
    ) -> Result<PatchAffiliate> {
        let mut tx = self.store().begin_affiliates().await?;
        if patch.reparents() {
            tx.lock_tree().await.map_err(|e| match e {
                e if e.is_lock_conflict() => {
                    StoreError::Busy("another re-parenting of the affiliate tree is in progress")
                }
                e => e,
            })?;
        }
        let Some(current) = tx.affiliate(id, true).await? else { return Ok(PatchAffiliate::NotFound) };
        if let Some(Some(parent)) = &patch.parent_id {
            if tx.affiliate(parent, false).await?.is_none() {
                return Ok(PatchAffiliate::UnknownParent);
            }
            if closes_cycle(tx.as_mut(), id, parent).await? {
                return Ok(PatchAffiliate::Cycle);
            }
        }
        tx.update(id, &patch.applied_to(&current), Utc::now()).await?;
        let updated = tx.affiliate(id, false).await?.ok_or_else(|| super::corrupt("affiliate vanished"))?;
        let audit = AuditEntry::new(actor, Action::AffiliateUpdate, format!("affiliate:{id}"))
            .change(audited(&current), audited(&updated));
        tx.audit(&audit, Utc::now()).await?;
        tx.commit().await?;
        Ok(PatchAffiliate::Updated(Box::new(updated)))
    }

    pub async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>> {
        Ok(self.store().affiliate(id).await?)
    }

    /// One page of an affiliate's ledger in `order` after the entry `after`;
    /// None if there is no such affiliate.
    pub async fn affiliate_ledger(
        &self,
        id: &AffiliateId,
        order: LedgerOrder,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<LedgerEntry>>> {
        if self.store().affiliate(id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.store().affiliate_ledger(id, order, after, limit).await?))
    }

    /// One page of affiliates by id matching `filter` (see [`crate::store::AffiliateFilter`]).
    pub async fn search_affiliates(
        &self,
        filter: &crate::store::AffiliateFilter,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>> {
        Ok(self.store().search_affiliates(filter, after, limit).await?)
    }

    /// One page of an affiliate's direct children, by id; None if there is no such affiliate.
    pub async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Option<Vec<Affiliate>>> {
        if self.store().affiliate(id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.store().affiliate_children(id, after, limit).await?))
    }

    pub async fn buyer_rewards(&self, id: &BuyerId) -> Result<BuyerRewards> {
        Ok(self.store().buyer_rewards(id).await?)
    }
}

/// What an audit entry says of an affiliate (the fields a patch changes; the
/// e-mail hash only as whether one is set).
fn audited(a: &Affiliate) -> serde_json::Value {
    serde_json::json!({
        "name": a.name,
        "status": a.status.as_str(),
        "parent_id": a.parent_id,
        "email_hash": a.email_hash.is_some(),
    })
}

/// Whether making `parent` the parent of `id` closes a loop: the new
/// parent's ancestors are read a stretch at a time until the root, `id`,
/// or the depth guard.
async fn closes_cycle(tx: &mut dyn AffiliateTx, id: &AffiliateId, parent: &AffiliateId) -> Result<bool> {
    let (mut from, mut walked) = (parent.clone(), 0);
    loop {
        let asked = CYCLE_STRETCH.min(MAX_TREE_DEPTH - walked);
        let stretch = tx.chain(&from, asked).await?;
        match walk_for_cycle(id, &stretch, asked, walked) {
            CycleWalk::Cycle => return Ok(true),
            CycleWalk::Clear => return Ok(false),
            CycleWalk::Next(next) => {
                walked += stretch.len();
                from = next;
            }
        }
    }
}
