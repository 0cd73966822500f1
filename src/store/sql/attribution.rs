//! Coupons, customer links, click counts and the click key; and the links
//! an intake batch reads and writes in its transaction.
use super::{rows, Arg, Cols, Conn, Lane, Sql, SqlStore};
use crate::domain::attribution::{AddCoupon, Coupon, CouponCode, CustomerLink, Link, NewLink};
use crate::domain::audit::AuditEntry;
use crate::domain::ids::{AffiliateId, BuyerId};
use crate::domain::intake::Placement;
use crate::store::{corrupt, Attributions, ClickCount, Result, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

const COUPON_COLUMNS: &str = "code, affiliate_id, created_at, deleted_at";
const LINK_COLUMNS: &str = "l.affiliate_id, l.source, l.order_id, l.reason, l.linked_at, l.expires_at, l.updated_at";
pub const NEW_LINK_COLUMNS: &str =
    "customer_links (buyer_id, affiliate_id, source, order_id, reason, linked_at, expires_at, updated_at)";

fn coupon(r: &dyn Cols) -> Result<Coupon> {
    Ok(Coupon {
        code: CouponCode::from_trusted(r.text("code")?),
        affiliate_id: AffiliateId::from_trusted(r.text("affiliate_id")?),
        created_at: r.time("created_at")?,
        deleted_at: r.opt_time("deleted_at")?,
    })
}

fn customer_link(r: &dyn Cols) -> Result<CustomerLink> {
    Ok(CustomerLink {
        affiliate_id: AffiliateId::from_trusted(r.text("affiliate_id")?),
        source: r.text("source")?,
        order_id: r.opt_text("order_id")?,
        reason: r.opt_text("reason")?,
        linked_at: r.time("linked_at")?,
        expires_at: r.opt_time("expires_at")?,
        updated_at: r.time("updated_at")?,
    })
}

async fn affiliate_exists(conn: &mut dyn Conn, id: &AffiliateId) -> Result<bool> {
    Ok(conn.optional(&Sql::new("SELECT id FROM affiliates WHERE id = ?").arg(id)).await?.is_some())
}

async fn active_coupon(conn: &mut dyn Conn, code: &CouponCode) -> Result<Option<Coupon>> {
    let q = Sql::new(format!("SELECT {COUPON_COLUMNS} FROM coupons WHERE active_code = ?")).arg(code.as_str());
    conn.optional(&q).await?.map(|r| coupon(r.as_ref())).transpose()
}

/// The stored links of `buyers`, each with its affiliate's status now.
pub async fn links(conn: &mut dyn Conn, buyers: &[&BuyerId]) -> Result<HashMap<String, Link>> {
    let rows = conn
        .fetch_chunked(buyers, 1, |chunk| {
            let mut q = Sql::new(
                "SELECT l.buyer_id, l.affiliate_id, l.linked_at, l.expires_at, a.status FROM customer_links l \
                 JOIN affiliates a ON a.id = l.affiliate_id WHERE l.buyer_id IN (",
            );
            q.list(chunk.iter().copied()).push(")");
            q
        })
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        out.insert(
            r.text("buyer_id")?,
            Link {
                affiliate_id: AffiliateId::from_trusted(r.text("affiliate_id")?),
                linked_at: r.time("linked_at")?,
                expires_at: r.opt_time("expires_at")?,
                affiliate_suspended: r.text("status")? == "suspended",
            },
        );
    }
    Ok(out)
}

/// The values of a link row an order makes, in [`NEW_LINK_COLUMNS`] order.
pub fn link_row(p: &Placement<'_>, l: &NewLink, now: DateTime<Utc>) -> Vec<Arg> {
    vec![
        (&p.order.buyer_id).into(),
        (&l.affiliate_id).into(),
        "order".into(),
        (&p.order.id).into(),
        Arg::Null,
        l.linked_at.into(),
        l.expires_at.into(),
        now.into(),
    ]
}

/// The batch's links: expired links they replace deleted (only if still
/// expired), then each inserted unless the buyer got one meanwhile (a
/// concurrent batch: the first committed link stays).
pub async fn write_links(conn: &mut dyn Conn, placements: &[Placement<'_>], now: DateTime<Utc>) -> Result<()> {
    let made: Vec<(&Placement<'_>, &NewLink)> =
        placements.iter().filter_map(|p| p.link.as_ref().map(|l| (p, l))).collect();
    if made.is_empty() {
        return Ok(());
    }
    for (p, l) in made.iter().filter(|(_, l)| l.replaces_expired) {
        let q =
            Sql::new("DELETE FROM customer_links WHERE buyer_id = ? AND expires_at IS NOT NULL AND expires_at <= ?")
                .arg(&p.order.buyer_id)
                .arg(Arg::Bound(l.linked_at));
        conn.execute(&q).await?;
    }
    let rows: Vec<Vec<Arg>> = made.iter().map(|(p, l)| link_row(p, l, now)).collect();
    let ignore = conn.dialect().insert_ignore;
    conn.execute_chunked(&rows, rows[0].len(), |chunk| {
        let mut q = Sql::new(format!("{ignore} INTO {NEW_LINK_COLUMNS}"));
        q.values(chunk, Clone::clone);
        q
    })
    .await?;
    Ok(())
}

/// Adds `volume` and one order (or takes them off) to an affiliate's month
/// in `affiliate_months`: read locked, added exactly in Rust, written back.
/// A month without a row is one intake did not count (older history):
/// taking off leaves it so; adding starts its row.
pub async fn shift_month(
    conn: &mut dyn Conn,
    affiliate: &AffiliateId,
    month_start: DateTime<Utc>,
    volume: rust_decimal::Decimal,
    add: bool,
) -> Result<()> {
    let lock = conn.dialect().for_update;
    let q = Sql::new(format!(
        "SELECT volume, orders FROM affiliate_months WHERE affiliate_id = ? AND month_start = ?{lock}"
    ))
    .arg(affiliate)
    .arg(Arg::Bound(month_start));
    match conn.optional(&q).await? {
        Some(row) => {
            let stored = row.uint("orders")?;
            let orders = if add {
                stored + 1
            } else {
                stored.checked_sub(1).ok_or_else(|| corrupt("a month's count below 0"))?
            };
            let new = row.money("volume")?.checked_add(volume).ok_or_else(|| corrupt("a month's volume overflows"))?;
            let q = Sql::new(
                "UPDATE affiliate_months SET volume = ?, orders = ? WHERE affiliate_id = ? AND month_start = ?",
            )
            .arg(new)
            .arg(super::uint(orders)?)
            .arg(affiliate)
            .arg(Arg::Bound(month_start));
            conn.execute(&q).await?;
        }
        None if add => {
            let q = Sql::new(
                "INSERT INTO affiliate_months (affiliate_id, month_start, volume, orders) VALUES (?, ?, ?, 1)",
            )
            .arg(affiliate)
            .arg(month_start)
            .arg(volume);
            conn.execute(&q).await?;
        }
        None => {}
    }
    Ok(())
}

#[async_trait::async_trait]
impl Attributions for SqlStore {
    async fn click_key(&self) -> Result<Vec<u8>> {
        let mut conn = self.write(Lane::Request).await?;
        let q = Sql::new("SELECT secret FROM click_keys WHERE id = 1");
        if let Some(row) = conn.optional(&q).await? {
            let key = row.bytes("secret")?;
            conn.commit().await?;
            return Ok(key);
        }
        let key: [u8; 32] = rand::random();
        let insert =
            format!("{} INTO click_keys (id, secret, created_at) VALUES (1, ?, ?)", conn.dialect().insert_ignore);
        conn.execute(&Sql::new(insert).arg(&key[..]).arg(Utc::now())).await?;
        // Another instance may have made it first: the stored one is the key.
        let key = conn.one(&q).await?.bytes("secret")?;
        conn.commit().await?;
        Ok(key)
    }

    async fn add_coupon(
        &self,
        affiliate: &AffiliateId,
        code: &CouponCode,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<AddCoupon> {
        let mut conn = self.write(Lane::Request).await?;
        if !affiliate_exists(conn.as_mut(), affiliate).await? {
            return Ok(AddCoupon::NoAffiliate);
        }
        if let Some(held) = active_coupon(conn.as_mut(), code).await? {
            conn.commit().await?;
            return Ok(if held.affiliate_id == *affiliate {
                AddCoupon::Exists(held)
            } else {
                AddCoupon::Taken(held.affiliate_id)
            });
        }
        let q = Sql::new("INSERT INTO coupons (code, affiliate_id, active_code, created_at) VALUES (?, ?, ?, ?)")
            .arg(code.as_str())
            .arg(affiliate)
            .arg(code.as_str())
            .arg(now);
        match conn.execute(&q).await {
            Ok(_) => {}
            // Taken meanwhile by a concurrent request: answer from the holder.
            Err(StoreError::Duplicate(_)) => {
                drop(conn);
                let mut conn = self.read().await?;
                let held = active_coupon(conn.as_mut(), code).await?.ok_or_else(|| corrupt("a coupon vanished"))?;
                return Ok(if held.affiliate_id == *affiliate {
                    AddCoupon::Exists(held)
                } else {
                    AddCoupon::Taken(held.affiliate_id)
                });
            }
            Err(e) => return Err(e),
        }
        super::audit::insert(conn.as_mut(), audit, now).await?;
        conn.commit().await?;
        Ok(AddCoupon::Added(Coupon {
            code: code.clone(),
            affiliate_id: affiliate.clone(),
            created_at: now,
            deleted_at: None,
        }))
    }

    async fn coupons(&self, affiliate: &AffiliateId) -> Result<Option<Vec<Coupon>>> {
        let mut conn = self.snapshot().await?;
        if !affiliate_exists(conn.as_mut(), affiliate).await? {
            return Ok(None);
        }
        let q = Sql::new(format!(
            "SELECT {COUPON_COLUMNS} FROM coupons WHERE affiliate_id = ? ORDER BY id DESC LIMIT 1000"
        ))
        .arg(affiliate);
        let out = rows::all(&conn.fetch(&q).await?, coupon)?;
        conn.commit().await?;
        Ok(Some(out))
    }

    async fn delete_coupon(
        &self,
        affiliate: &AffiliateId,
        code: &CouponCode,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let mut conn = self.write(Lane::Request).await?;
        let q = Sql::new(
            "UPDATE coupons SET active_code = NULL, deleted_at = ? WHERE active_code = ? AND affiliate_id = ?",
        )
        .arg(now)
        .arg(code.as_str())
        .arg(affiliate);
        let done = conn.execute(&q).await?;
        if done.rows > 0 {
            super::audit::insert(conn.as_mut(), audit, now).await?;
        }
        conn.commit().await?;
        Ok(done.rows > 0)
    }

    async fn coupon_holders(&self, codes: &[&CouponCode]) -> Result<HashMap<String, AffiliateId>> {
        if codes.is_empty() {
            return Ok(HashMap::new());
        }
        let mut q = Sql::new("SELECT active_code, affiliate_id FROM coupons WHERE active_code IN (");
        q.list(codes.iter().map(|c| c.as_str())).push(")");
        let mut out = HashMap::new();
        for r in self.read().await?.fetch(&q).await? {
            out.insert(r.text("active_code")?, AffiliateId::from_trusted(r.text("affiliate_id")?));
        }
        Ok(out)
    }

    async fn customer_link(&self, buyer: &BuyerId) -> Result<Option<(CustomerLink, bool)>> {
        let q = Sql::new(format!(
            "SELECT {LINK_COLUMNS}, a.status FROM customer_links l JOIN affiliates a ON a.id = l.affiliate_id \
             WHERE l.buyer_id = ?"
        ))
        .arg(buyer);
        match self.read().await?.optional(&q).await? {
            Some(r) => Ok(Some((customer_link(r.as_ref())?, r.text("status")? == "suspended"))),
            None => Ok(None),
        }
    }

    async fn set_customer_link(
        &self,
        buyer: &BuyerId,
        to: Option<(&AffiliateId, &str, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let mut conn = self.write(Lane::Request).await?;
        if let Some((affiliate, ..)) = to {
            if !affiliate_exists(conn.as_mut(), affiliate).await? {
                return Ok(false);
            }
        }
        let q = Sql::new(format!(
            "SELECT affiliate_id FROM customer_links WHERE buyer_id = ?{}",
            conn.dialect().for_update
        ))
        .arg(buyer);
        let before = conn.optional(&q).await?.map(|r| r.text("affiliate_id")).transpose()?;
        let mut audit = audit.clone();
        audit.before = Some(serde_json::json!({ "affiliate_id": before }));
        super::audit::insert(conn.as_mut(), &audit, now).await?;
        let Some((affiliate, reason, expires_at)) = to else {
            conn.execute(&Sql::new("DELETE FROM customer_links WHERE buyer_id = ?").arg(buyer)).await?;
            conn.commit().await?;
            return Ok(true);
        };
        conn.execute(&Sql::new("DELETE FROM customer_links WHERE buyer_id = ?").arg(buyer)).await?;
        let mut q = Sql::new(format!("INSERT INTO {NEW_LINK_COLUMNS}"));
        q.values(
            &[vec![
                buyer.into(),
                affiliate.into(),
                "manual".into(),
                Arg::Null,
                reason.into(),
                now.into(),
                expires_at.into(),
                now.into(),
            ]],
            Clone::clone,
        );
        conn.execute(&q).await?;
        conn.commit().await?;
        Ok(true)
    }

    async fn linked_customers(&self, affiliate: &AffiliateId) -> Result<u64> {
        let q = Sql::new("SELECT COUNT(*) AS n FROM customer_links WHERE affiliate_id = ?").arg(affiliate);
        self.read().await?.one(&q).await?.uint("n")
    }

    async fn month_orders_since(&self, affiliate: &AffiliateId, since: DateTime<Utc>) -> Result<u64> {
        let q = Sql::new("SELECT orders FROM affiliate_months WHERE affiliate_id = ? AND month_start >= ?")
            .arg(affiliate)
            .arg(Arg::Bound(since));
        let rows = self.read().await?.fetch(&q).await?;
        rows.iter().try_fold(0u64, |n, r| Ok(n + r.uint("orders")?))
    }

    async fn add_clicks(&self, counts: &[ClickCount]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&ClickCount> = counts.iter().collect();
        // One key order in every transaction: no deadlock between instances.
        sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let rows: Vec<Vec<Arg>> = sorted
            .iter()
            .map(|(a, day, n)| Ok(vec![a.into(), (*day).into(), super::uint(*n)?]))
            .collect::<Result<_>>()?;
        let mut conn = self.write(Lane::Request).await?;
        let tail = (conn.dialect().add_on_conflict)("affiliate_id, day", &["clicks"]);
        conn.execute_chunked(&rows, 3, |chunk| {
            let mut q = Sql::new("INSERT INTO click_days (affiliate_id, day, clicks)");
            q.values(chunk, Clone::clone).push(&tail);
            q
        })
        .await?;
        conn.commit().await
    }

    async fn click_days(&self, affiliate: &AffiliateId, since: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, u64)>> {
        let q = Sql::new("SELECT day, clicks FROM click_days WHERE affiliate_id = ? AND day >= ? ORDER BY day")
            .arg(affiliate)
            .arg(Arg::Bound(since));
        rows::all(&self.read().await?.fetch(&q).await?, |r| Ok((r.time("day")?, r.uint("clicks")?)))
    }
}
