//! The operator's exchange-rate tables: every version kept; an order takes
//! the latest table of its program currency whose `as_of` is not after the
//! order's placed_at.
use super::{Conn, Lane, Sql, SqlStore};
use crate::domain::currency::RateTable;
use crate::store::{corrupt, FxRates, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// The table of `base` in force at `at`, with its id.
pub async fn table_at(conn: &mut dyn Conn, base: &str, at: DateTime<Utc>) -> Result<Option<(u64, RateTable)>> {
    let q = Sql::new(
        "SELECT id, as_of, rates FROM fx_rates WHERE base = ? AND as_of <= ? ORDER BY as_of DESC, id DESC LIMIT 1",
    )
    .arg(base)
    .arg(at);
    let Some(row) = conn.optional(&q).await? else { return Ok(None) };
    let text: BTreeMap<String, String> = serde_json::from_str(&row.text("rates")?).map_err(corrupt)?;
    let rates = text
        .into_iter()
        .map(|(code, r)| Ok((code, Decimal::from_str_exact(&r).map_err(|_| corrupt(format!("fx rate {r:?}")))?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    Ok(Some((row.uint("id")?, RateTable { base: base.to_owned(), as_of: row.time("as_of")?, rates })))
}

/// The tables in force at each of `at` (one query per distinct instant).
pub async fn tables_at(
    conn: &mut dyn Conn,
    base: &str,
    at: &[DateTime<Utc>],
) -> Result<HashMap<DateTime<Utc>, Option<RateTable>>> {
    let mut found = HashMap::with_capacity(at.len());
    for &t in at {
        if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(t) {
            slot.insert(table_at(conn, base, t).await?.map(|(_, table)| table));
        }
    }
    Ok(found)
}

#[async_trait::async_trait]
impl FxRates for SqlStore {
    async fn put_rate_table(&self, table: &RateTable, audit: &crate::domain::audit::AuditEntry) -> Result<u64> {
        let rates: BTreeMap<&str, String> =
            table.rates.iter().map(|(c, r)| (c.as_str(), crate::domain::money::format(*r))).collect();
        let mut conn = self.write(Lane::Request).await?;
        let done = conn
            .execute(
                &Sql::new("INSERT INTO fx_rates (base, as_of, rates, created_at) VALUES (?, ?, ?, ?)")
                    .arg(table.base.as_str())
                    .arg(table.as_of)
                    .arg(serde_json::to_string(&rates).map_err(corrupt)?)
                    .arg(Utc::now()),
            )
            .await?;
        super::audit::insert(conn.as_mut(), &audit.created("id", done.last_id), Utc::now()).await?;
        conn.commit().await?;
        Ok(done.last_id)
    }

    async fn rate_table_at(&self, base: &str, at: DateTime<Utc>) -> Result<Option<(u64, RateTable)>> {
        table_at(self.read().await?.as_mut(), base, at).await
    }
}
