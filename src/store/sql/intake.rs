//! Intake of a batch of orders in one transaction: one read of what the
//! batch depends on (the program version, ids taken, the affiliates its
//! codes and ids name), then multi-row inserts of the orders, their items
//! and their `order.placed` events, and the commit.
use super::programs::ProgramCache;
use super::{Arg, Conn, Sql};
use crate::domain::attribution::Link;
use crate::domain::event::EventType;
use crate::domain::ids::{AffiliateId, BuyerId};
use crate::domain::intake::{IntakeBatch, IntakeLookup, MonthVolume, Placement};
use crate::domain::order::{Attribution, NewOrder};
use crate::domain::program::Program;
use crate::store::{corrupt, IntakeTx, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

pub const ORDER_COLUMNS: &str = "orders (id, buyer_id, affiliate_id, referral_code, attribution_note, attribution, \
     buyer_email_hash, currency, fx_rate, fx_source, fx_as_of, placed_at, status, total, original_eligible, program_version, \
     request_hash, commission_status, created_at, updated_at)";
pub const ITEM_COLUMNS: &str = "order_items (order_id, sku, line_no, category, quantity, unit_price)";
pub const MONTH_COLUMNS: &str = "affiliate_months (affiliate_id, month_start, volume, orders)";
pub const EVENT_COLUMNS: &str =
    "events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, created_at, updated_at)";

pub struct SqlIntake {
    conn: Box<dyn Conn>,
    programs: ProgramCache,
}

impl SqlIntake {
    pub fn new(conn: Box<dyn Conn>, programs: ProgramCache) -> Self {
        Self { conn, programs }
    }
}

#[async_trait::async_trait]
impl IntakeTx for SqlIntake {
    /// In one statement: the program version, the batch's ids already
    /// taken, and the affiliates its referral codes and ids name.
    async fn lookup(&mut self, orders: &[NewOrder], clicked: &[&AffiliateId]) -> Result<IntakeLookup> {
        let d = self.conn.dialect();
        let mut q = Sql::new(format!(
            "SELECT 'v' AS kind, {} AS a, NULL AS b FROM program_versions \
             UNION ALL SELECT 't', id, NULL FROM orders WHERE id IN (",
            (d.text_cast)("MAX(version)")
        ));
        q.list(orders.iter().map(|o| &o.id)).push(")");
        let (mut codes, mut ids) = (Vec::new(), Vec::new());
        for o in orders {
            match &o.attribution {
                Some(Attribution::ReferralCode(c)) => codes.push(c),
                Some(Attribution::AffiliateId(a)) => ids.push(a),
                None => {}
            }
        }
        ids.extend(clicked.iter().copied());
        if !codes.is_empty() || !ids.is_empty() {
            q.push(" UNION ALL SELECT 'c', id, referral_code FROM affiliates WHERE referral_code IN (");
            q.list(codes).push(") OR id IN (").list(ids).push(")");
        }
        let coupons: Vec<&str> = orders.iter().flat_map(|o| o.coupons.iter().map(|c| c.as_str())).collect();
        if !coupons.is_empty() {
            q.push(" UNION ALL SELECT 'k', affiliate_id, active_code FROM coupons WHERE active_code IN (");
            q.list(coupons).push(")");
        }
        let mut found = IntakeLookup::default();
        let mut version = None;
        for row in self.conn.fetch(&q).await? {
            match (row.text("kind")?.as_str(), row.opt_text("a")?, row.opt_text("b")?) {
                ("v", Some(v), _) => version = Some(v.parse().map_err(|_| corrupt("program version"))?),
                ("v", None, _) => return Err(corrupt("no program version")),
                ("t", Some(id), _) => {
                    found.taken.insert(id);
                }
                ("c", Some(id), Some(code)) => {
                    found.codes.insert(code, AffiliateId::from_trusted(id.clone()));
                    found.affiliates.insert(id);
                }
                ("k", Some(id), Some(code)) => {
                    found.coupons.insert(code, AffiliateId::from_trusted(id));
                }
                _ => return Err(corrupt("intake lookup row")),
            }
        }
        found.version = version.ok_or_else(|| corrupt("no program version"))?;
        Ok(found)
    }

    async fn links(&mut self, buyers: &[&BuyerId]) -> Result<HashMap<String, Link>> {
        super::attribution::links(self.conn.as_mut(), buyers).await
    }

    async fn program(&mut self, version: u64) -> Result<Arc<Program>> {
        self.programs.get(self.conn.as_mut(), version).await
    }

    async fn rate_tables(
        &mut self,
        base: &str,
        at: &[DateTime<Utc>],
    ) -> Result<HashMap<DateTime<Utc>, Option<crate::domain::currency::RateTable>>> {
        super::fx::tables_at(self.conn.as_mut(), base, at).await
    }

    async fn write(self: Box<Self>, batch: &IntakeBatch<'_>) -> Result<()> {
        self.conn.write_intake(batch).await
    }
}

/// The values of an order row, in [`ORDER_COLUMNS`] order.
pub fn order_row(p: &Placement<'_>, batch: &IntakeBatch<'_>) -> Result<Vec<Arg>> {
    let o = p.order;
    Ok(vec![
        (&o.id).into(),
        (&o.buyer_id).into(),
        p.affiliate_id.as_ref().into(),
        p.referral_code().into(),
        p.note.into(),
        p.stored_decision().into(),
        o.buyer_email_hash.as_ref().map(|h| h.as_str()).into(),
        o.currency.as_str().into(),
        p.fx.as_ref().map(|f| crate::domain::money::format(f.rate)).into(),
        p.fx.as_ref().map(|f| f.source.as_str()).into(),
        p.fx.as_ref().and_then(|f| f.as_of).into(),
        p.placed_at.into(),
        "placed".into(),
        p.total.into(),
        p.eligible.into(),
        super::uint(batch.version)?,
        o.request_hash[..].into(),
        "pending".into(),
        batch.now.into(),
        batch.now.into(),
    ])
}

/// Every item row of the batch, in [`ITEM_COLUMNS`] order.
pub fn item_rows(batch: &IntakeBatch<'_>) -> Result<Vec<Vec<Arg>>> {
    let mut rows = Vec::new();
    for p in &batch.placements {
        for (line, item) in p.order.items.iter().enumerate() {
            let line = u16::try_from(line).map_err(|_| corrupt("too many lines in an order"))?;
            rows.push(vec![
                (&p.order.id).into(),
                (&item.sku).into(),
                line.into(),
                (&item.category).into(),
                item.quantity.into(),
                item.unit_price.into(),
            ]);
        }
    }
    Ok(rows)
}

/// The values of an `order.placed` event row, in [`EVENT_COLUMNS`] order.
pub fn event_row(p: &Placement<'_>, batch: &IntakeBatch<'_>) -> Vec<Arg> {
    vec![
        p.event.id.into(),
        EventType::OrderPlaced.as_str().into(),
        (&p.order.id).into(),
        (&p.event.partition).into(),
        "pending".into(),
        0i64.into(),
        p.order.payload.as_str().into(),
        batch.next_attempt_at.into(),
        batch.now.into(),
        batch.now.into(),
    ]
}

/// The batch's rows as multi-row inserts, chunked within the dialect's
/// parameter limit, and its month volumes, in the caller's transaction —
/// the month rows last (the most contended rows, locked to the commit).
pub async fn insert(conn: &mut dyn Conn, batch: &IntakeBatch<'_>) -> Result<()> {
    super::attribution::write_links(conn, &batch.placements, batch.now).await?;
    let orders = batch.placements.iter().map(|p| order_row(p, batch)).collect::<Result<Vec<_>>>()?;
    let events: Vec<Vec<Arg>> = batch.placements.iter().map(|p| event_row(p, batch)).collect();
    for (table, rows) in [(ORDER_COLUMNS, orders), (ITEM_COLUMNS, item_rows(batch)?), (EVENT_COLUMNS, events)] {
        let width = rows.first().map_or(1, Vec::len);
        conn.execute_chunked(&rows, width, |chunk| {
            let mut q = Sql::new(format!("INSERT INTO {table}"));
            q.values(chunk, Clone::clone);
            q
        })
        .await?;
    }
    if let Some(p) = batch.placements.first() {
        super::events::tally(conn, EventType::OrderPlaced, batch.placements.len(), p.event.id).await?;
    }
    add_months(conn, &batch.months).await
}

/// Adds the batch's month volumes to `affiliate_months`: read (locked, in
/// key order), added exactly in Rust, written back — SQLite's `+` on TEXT
/// would go through floating point. (MySQL's intake script adds them in SQL,
/// `mysql::script`.)
async fn add_months(conn: &mut dyn Conn, months: &[MonthVolume]) -> Result<()> {
    for chunk in months.chunks(200) {
        let mut q = Sql::new("SELECT affiliate_id, month_start, volume, orders FROM affiliate_months WHERE ");
        for (i, m) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(affiliate_id = " } else { " OR (affiliate_id = " }).bind(&m.affiliate_id);
            q.push(" AND month_start = ").bind(Arg::Bound(m.month_start)).push(")");
        }
        q.push(" ORDER BY affiliate_id, month_start").push(conn.dialect().for_update);
        let mut stored: HashMap<(String, DateTime<Utc>), (Decimal, u64)> = HashMap::new();
        for r in conn.fetch(&q).await? {
            stored.insert((r.text("affiliate_id")?, r.time("month_start")?), (r.money("volume")?, r.uint("orders")?));
        }
        let mut new = Vec::new();
        for m in chunk {
            match stored.get(&(m.affiliate_id.to_string(), m.month_start)) {
                Some((volume, orders)) => {
                    let volume = volume.checked_add(m.volume).ok_or_else(|| corrupt("a month's volume overflows"))?;
                    let q = Sql::new(
                        "UPDATE affiliate_months SET volume = ?, orders = ? WHERE affiliate_id = ? AND month_start = ?",
                    )
                    .arg(volume)
                    .arg(super::uint(orders + m.orders)?)
                    .arg(&m.affiliate_id)
                    .arg(Arg::Bound(m.month_start));
                    conn.execute(&q).await?;
                }
                None => new.push(vec![
                    (&m.affiliate_id).into(),
                    m.month_start.into(),
                    m.volume.into(),
                    super::uint(m.orders)?,
                ]),
            }
        }
        if !new.is_empty() {
            let mut q = Sql::new(format!("INSERT INTO {MONTH_COLUMNS}"));
            q.values(&new, Clone::clone);
            conn.execute(&q).await?;
        }
    }
    Ok(())
}
