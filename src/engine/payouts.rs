//! Payout batches: approved balances paid out together. What a batch pays
//! is `domain::payout::plan`; here the transaction and the idempotency key.
use super::webhooks::{payout_notices, publish};
use super::{Engine, Result};
use crate::domain::audit::{Action, Actor, AuditEntry};
use crate::domain::money;
use crate::domain::payout::{self, CreatePayout, Payout, PayoutItem, PayoutSummary};
use crate::domain::webhook::MessageType;
use crate::store::{corrupt, StoreError};
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::json;

impl Engine {
    /// Builds a batch from approved balances ≥ `min_amount`. With an
    /// idempotency key, a repeated request returns the batch the first one
    /// built (also when both run at once: the entries' locks make the second
    /// wait, and it then finds the key taken), and a key reused with another
    /// `min_amount` is refused. No batch is stored when nothing reaches the
    /// minimum.
    pub async fn create_payout(&self, min_amount: Decimal, key: Option<&str>, actor: &Actor) -> Result<CreatePayout> {
        let currency = self.currency().await?;
        let mut tx = self.store().begin_payout().await?;
        if let Some(key) = key {
            if let Some(earlier) = tx.keyed(key).await? {
                drop(tx);
                return self.keyed_payout(earlier, min_amount).await;
            }
        }
        let entries = tx.approved_unbatched().await?;
        let Some(batch) = payout::plan(&entries, min_amount, key, Utc::now()) else {
            drop(tx);
            // A concurrent request with this key may have built one meanwhile.
            return match self.payout_by_key(key).await? {
                Some(earlier) => self.keyed_payout(earlier, min_amount).await,
                None => Ok(CreatePayout::NothingToPay),
            };
        };
        let id = match tx.insert(&batch).await {
            Ok(id) => id,
            Err(StoreError::Duplicate(_)) if key.is_some() => {
                // Another request with this key won: answer with its batch.
                drop(tx);
                let earlier = self.payout_by_key(key).await?.ok_or_else(|| corrupt("keyed payout vanished"))?;
                return self.keyed_payout(earlier, min_amount).await;
            }
            Err(e) => return Err(e.into()),
        };
        let items: Vec<PayoutItem> = batch
            .items
            .iter()
            .map(|(affiliate_id, (amount, _))| PayoutItem { affiliate_id: affiliate_id.clone(), amount: *amount })
            .collect();
        let notices = || payout_notices(MessageType::PayoutCreated, id, &items, &currency);
        let published = publish(tx.as_mut(), batch.created_at, notices).await?;
        let total: Decimal = items.iter().map(|i| i.amount).sum();
        let audit = AuditEntry::new(actor, Action::PayoutCreate, format!("payout:{id}")).after(json!({
            "payout_id": id,
            "items": items.len(),
            "total": money::format(total),
            "min_amount": money::format(min_amount),
            "idempotency_key": key,
        }));
        tx.audit(&audit, batch.created_at).await?;
        tx.commit().await?;
        published.committed();
        Ok(CreatePayout::Created(self.store().payout(id).await?.ok_or_else(|| corrupt("payout vanished"))?))
    }

    async fn payout_by_key(&self, key: Option<&str>) -> Result<Option<(u64, Decimal)>> {
        match key {
            Some(key) => Ok(self.store().payout_by_key(key).await?),
            None => Ok(None),
        }
    }

    /// The batch built under a key, judged against a new request's `min_amount`.
    async fn keyed_payout(&self, (id, first_min): (u64, Decimal), min_amount: Decimal) -> Result<CreatePayout> {
        if let Err(refused) = payout::keyed(first_min, min_amount) {
            return Ok(refused);
        }
        Ok(CreatePayout::Repeated(self.store().payout(id).await?.ok_or_else(|| corrupt("payout vanished"))?))
    }

    /// Marks a batch paid: its entries move approved → paid with the
    /// balances. Completing a completed batch changes nothing. None when
    /// there is no such batch.
    pub async fn complete_payout(&self, id: u64, actor: &Actor) -> Result<Option<Payout>> {
        let currency = self.currency().await?;
        let mut tx = self.store().begin_payout().await?;
        match tx.lock(id).await?.as_deref() {
            None => return Ok(None),
            Some("completed") => {}
            Some(status) => {
                let audit = AuditEntry::new(actor, Action::PayoutComplete, format!("payout:{id}"))
                    .before(json!({ "status": status }))
                    .after(json!({ "status": "completed" }));
                let items = tx.items(id).await?;
                let now = Utc::now();
                tx.complete(id, &items, now).await?;
                let notices = || payout_notices(MessageType::PayoutPaid, id, &items, &currency);
                let published = publish(tx.as_mut(), now, notices).await?;
                tx.audit(&audit, now).await?;
                tx.commit().await?;
                published.committed();
            }
        }
        Ok(self.store().payout(id).await?)
    }

    pub async fn payout(&self, id: u64) -> Result<Option<Payout>> {
        Ok(self.store().payout(id).await?)
    }

    /// The batches that paid an affiliate, newest first; None: no such affiliate.
    pub async fn affiliate_payouts(
        &self,
        id: &crate::domain::ids::AffiliateId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<crate::domain::payout::AffiliatePayout>>> {
        Ok(self.store().affiliate_payouts(id, before, limit).await?)
    }

    /// A batch's status and lines for export; None: no such batch.
    pub async fn payout_export(&self, id: u64) -> Result<Option<(String, Vec<crate::domain::payout::ExportLine>)>> {
        Ok(self.store().payout_export(id).await?)
    }

    /// Batches newest first, ids below `before`.
    pub async fn list_payouts(&self, before: Option<u64>, limit: u32) -> Result<Vec<PayoutSummary>> {
        Ok(self.store().list_payouts(before, limit).await?)
    }
}
