//! Affiliates: the referral tree, balances and ledger pages.
use super::rows::{self, AFFILIATE_COLUMNS, LEDGER_COLUMNS};
use super::{like_prefix, Conn, Lane, Sql, SqlStore};
use crate::domain::affiliate::{Affiliate, NewAffiliate};
use crate::domain::ids::AffiliateId;
use crate::domain::ledger::LedgerEntry;
use crate::domain::order::Attribution;
use crate::store::affiliates::LedgerOrder;
use crate::store::{AffiliateFilter, AffiliateTx, Affiliates, Result};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
impl Affiliates for SqlStore {
    async fn affiliate(&self, id: &AffiliateId) -> Result<Option<Affiliate>> {
        let q = Sql::new(format!("SELECT {AFFILIATE_COLUMNS} FROM affiliates WHERE id = ?")).arg(id);
        self.read().await?.optional(&q).await?.map(|r| rows::affiliate(r.as_ref())).transpose()
    }

    async fn affiliate_children(
        &self,
        id: &AffiliateId,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>> {
        let q = Sql::new(format!(
            "SELECT {AFFILIATE_COLUMNS} FROM affiliates WHERE parent_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .arg(id)
        .arg(after.map_or("", |a| a.as_str()))
        .arg(limit);
        rows::all(&self.read().await?.fetch(&q).await?, rows::affiliate)
    }

    /// Without `q`: one range of the primary key (or of the status or parent
    /// index). With it: three index ranges — id prefix, referral code
    /// prefix, name prefix — each its page's worth, merged by id.
    async fn search_affiliates(
        &self,
        filter: &AffiliateFilter,
        after: Option<&AffiliateId>,
        limit: u32,
    ) -> Result<Vec<Affiliate>> {
        let dialect = self.db.dialect();
        let after = after.map_or("", |a| a.as_str());
        let narrow = |q: &mut Sql| {
            q.push(" AND id > ").bind(after);
            if let Some(status) = filter.status {
                q.push(" AND status = ").bind(status.as_str());
            }
            if let Some(parent) = &filter.parent_id {
                q.push(" AND parent_id = ").bind(parent.as_str());
            }
            q.push(" ORDER BY id LIMIT ").bind(limit);
        };
        let q = match &filter.q {
            None => {
                let mut q = Sql::new(format!("SELECT {AFFILIATE_COLUMNS} FROM affiliates WHERE 1 = 1"));
                narrow(&mut q);
                q
            }
            Some(text) => {
                let mut q = Sql::new(format!("SELECT {AFFILIATE_COLUMNS} FROM ("));
                let matches = [
                    ((dialect.id_prefix)("id"), (dialect.id_prefix_pattern)(text)),
                    ((dialect.id_prefix)("referral_code"), (dialect.id_prefix_pattern)(text)),
                    ("name LIKE ? ESCAPE '!'".to_owned(), like_prefix(text)),
                ];
                for (i, (test, pattern)) in matches.into_iter().enumerate() {
                    if i > 0 {
                        q.push(" UNION ");
                    }
                    q.push(&format!("SELECT * FROM (SELECT {AFFILIATE_COLUMNS} FROM affiliates WHERE "));
                    q.push_bound(&test, pattern);
                    narrow(&mut q);
                    q.push(&format!(") m{i}"));
                }
                q.push(") found ORDER BY id LIMIT ").bind(limit);
                q
            }
        };
        rows::all(&self.read().await?.fetch(&q).await?, rows::affiliate)
    }

    async fn affiliate_ledger(
        &self,
        id: &AffiliateId,
        order: LedgerOrder,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>> {
        // The first page starts past either end (ids are below 2^63).
        let (from, direction, bound) = match order {
            LedgerOrder::OldestFirst => ("id > ?", "ASC", after.unwrap_or(0)),
            LedgerOrder::NewestFirst => ("id < ?", "DESC", after.unwrap_or(i64::MAX as u64)),
        };
        let q = Sql::new(format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE affiliate_id = ? AND {from} ORDER BY id {direction} LIMIT ?"
        ))
        .arg(id)
        .arg(super::uint(bound)?)
        .arg(limit);
        rows::all(&self.read().await?.fetch(&q).await?, rows::ledger_entry)
    }

    async fn attributed(&self, attribution: &Attribution) -> Result<Option<AffiliateId>> {
        let q = match attribution {
            Attribution::ReferralCode(c) => Sql::new("SELECT id FROM affiliates WHERE referral_code = ?").arg(c),
            Attribution::AffiliateId(a) => Sql::new("SELECT id FROM affiliates WHERE id = ?").arg(a),
        };
        Ok(self.read().await?.optional(&q).await?.map(|r| r.text("id")).transpose()?.map(AffiliateId::from_trusted))
    }

    async fn begin_affiliates(&self) -> Result<Box<dyn AffiliateTx>> {
        Ok(Box::new(SqlAffiliateTx { conn: self.write(Lane::Request).await? }))
    }

    async fn adjustment(
        &self,
        id: &crate::domain::ids::AdjustmentId,
    ) -> Result<Option<crate::domain::adjustment::Adjustment>> {
        super::adjustments::select(self.read().await?.as_mut(), id).await
    }
}

struct SqlAffiliateTx {
    conn: Box<dyn Conn>,
}

#[async_trait::async_trait]
impl AffiliateTx for SqlAffiliateTx {
    /// The `tree` row of `locks`, locked to the commit (a row lock, so it is
    /// released with the transaction however it ends). SQLite's single
    /// writer is the lock there.
    async fn lock_tree(&mut self) -> Result<()> {
        let q = format!("SELECT name FROM locks WHERE name = 'tree'{}", self.conn.dialect().for_update);
        self.conn.one(&Sql::new(q)).await?;
        Ok(())
    }

    async fn affiliate(&mut self, id: &AffiliateId, for_update: bool) -> Result<Option<Affiliate>> {
        let lock = if for_update { self.conn.dialect().for_update } else { "" };
        let q = Sql::new(format!("SELECT {AFFILIATE_COLUMNS} FROM affiliates WHERE id = ?{lock}")).arg(id);
        self.conn.optional(&q).await?.map(|r| rows::affiliate(r.as_ref())).transpose()
    }

    async fn chain(&mut self, id: &AffiliateId, count: usize) -> Result<Vec<Affiliate>> {
        Ok(super::apply::ancestors(self.conn.as_mut(), &[id], count).await?.remove(id).unwrap_or_default())
    }

    async fn insert(&mut self, new: &NewAffiliate, now: DateTime<Utc>) -> Result<()> {
        let q = Sql::new(
            "INSERT INTO affiliates (id, name, parent_id, referral_code, buyer_id, email_hash, status, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)",
        )
        .arg(&new.id)
        .arg(&new.name)
        .arg(new.parent_id.as_ref())
        .arg(&new.referral_code)
        .arg(new.buyer_id.as_ref())
        .arg(new.email_hash.as_ref().map(|h| h.as_str()))
        .arg(now)
        .arg(now);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn update(
        &mut self,
        id: &AffiliateId,
        p: &crate::domain::affiliate::Patched,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let q = Sql::new(
            "UPDATE affiliates SET name = ?, status = ?, parent_id = ?, email_hash = ?, updated_at = ? WHERE id = ?",
        )
        .arg(p.name.as_str())
        .arg(p.status.as_str())
        .arg(p.parent_id.as_ref())
        .arg(p.email_hash.as_ref().map(|h| h.as_str()))
        .arg(now)
        .arg(id);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn set_caps(
        &mut self,
        id: &AffiliateId,
        caps: Option<&[crate::domain::caps::Cap]>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let json = caps.map(serde_json::to_string).transpose().map_err(crate::store::corrupt)?;
        let q = Sql::new("UPDATE affiliates SET caps = ?, updated_at = ? WHERE id = ?").arg(json).arg(now).arg(id);
        self.conn.execute(&q).await?;
        Ok(())
    }

    async fn adjustment(
        &mut self,
        id: &crate::domain::ids::AdjustmentId,
    ) -> Result<Option<crate::domain::adjustment::Adjustment>> {
        super::adjustments::select(self.conn.as_mut(), id).await
    }

    async fn adjust_commission(
        &mut self,
        a: &crate::domain::adjustment::Adjustment,
        payload: &str,
        rule_version: u64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        super::adjustments::insert(self.conn.as_mut(), a).await?;
        super::adjustments::commission(self.conn.as_mut(), a, payload, rule_version, now).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.conn.commit().await
    }
}

super::audit::audit_tx!(SqlAffiliateTx);
super::reports::report_tx!(SqlAffiliateTx);
