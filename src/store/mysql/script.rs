//! A transaction sent as ONE round trip: `START TRANSACTION; …; COMMIT` as a
//! multi-statement text query. On these 2-core machines a
//! round trip to MariaDB costs more CPU (two context switches each side) than
//! the insert it carries, so intake writes its rows this way.
//!
//! Text queries take no bind parameters, so values are written as literals —
//! but only through [`Literal`], which is injection-safe by construction:
//! every string and byte string is a hex literal (`_utf8mb4 X'…'`, `X'…'`: no
//! quoting or escaping to get wrong), and numbers and times are formatted from
//! typed values whose text holds no quote.
use crate::domain::event::EventType;
use crate::domain::intake::IntakeBatch;
use crate::store::sql::attribution::{link_row, NEW_LINK_COLUMNS};
use crate::store::sql::events::{tally_row, TALLY_COLUMNS};
use crate::store::sql::intake::{
    event_row, item_rows, order_row, EVENT_COLUMNS, ITEM_COLUMNS, MONTH_COLUMNS, ORDER_COLUMNS,
};
use crate::store::sql::Arg;
use crate::store::Result;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Executor, MySqlConnection};
use std::fmt::Write;

/// A value that can be written into SQL text safely.
pub(super) trait Literal {
    fn write_sql(&self, out: &mut String);
}

impl Literal for str {
    fn write_sql(&self, out: &mut String) {
        out.push_str("_utf8mb4 X'");
        out.push_str(&hex::encode(self.as_bytes()));
        out.push('\'');
    }
}

impl Literal for String {
    fn write_sql(&self, out: &mut String) {
        self.as_str().write_sql(out);
    }
}

impl Literal for [u8] {
    fn write_sql(&self, out: &mut String) {
        out.push_str("X'");
        out.push_str(&hex::encode(self));
        out.push('\'');
    }
}

impl Literal for Decimal {
    fn write_sql(&self, out: &mut String) {
        // Digits, '.', '-' only.
        let _ = write!(out, "{self}");
    }
}

macro_rules! integer_literal {
    ($($t:ty),*) => {$(
        impl Literal for $t {
            fn write_sql(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integer_literal!(u16, u32, u64, i64);

impl Literal for DateTime<Utc> {
    /// For DATETIME(6) columns, which hold UTC (as sqlx binds them).
    fn write_sql(&self, out: &mut String) {
        let _ = write!(out, "'{}'", self.format("%Y-%m-%d %H:%M:%S%.6f"));
    }
}

impl<T: Literal + ?Sized> Literal for Option<&T> {
    fn write_sql(&self, out: &mut String) {
        match self {
            Some(v) => v.write_sql(out),
            None => out.push_str("NULL"),
        }
    }
}

impl<T: Literal + ?Sized> Literal for &T {
    fn write_sql(&self, out: &mut String) {
        (**self).write_sql(out);
    }
}

impl Literal for Arg {
    fn write_sql(&self, out: &mut String) {
        match self {
            Arg::Null => out.push_str("NULL"),
            Arg::Text(s) => s.write_sql(out),
            Arg::Int(i) => i.write_sql(out),
            Arg::Bytes(b) => b[..].write_sql(out),
            Arg::Time(t) | Arg::Bound(t) => t.write_sql(out),
            Arg::Money(d) => d.write_sql(out),
            Arg::Points(p) => {
                let _ = write!(out, "{p}");
            }
        }
    }
}

/// An intake batch's inserts (its orders, their items and events), its
/// month volumes added in SQL (DECIMAL addition is exact; the rows are
/// written, so locked, in key order), and the commit.
///
/// The month rows go last: a busy affiliate's row is wanted by every
/// batch, and a row lock is held to the commit, so it is taken after the
/// inserts, whose secondary-key pages may have to be read from disk on a
/// large database (orders by buyer), not before them.
pub(super) fn intake(batch: &IntakeBatch<'_>) -> Result<Script> {
    let mut script = Script::new();
    // The buyers' links this batch makes (docs/RULES.md "Customer links").
    for p in &batch.placements {
        if let Some(l) = p.link.as_ref().filter(|l| l.replaces_expired) {
            script.statement(
                "DELETE FROM customer_links WHERE buyer_id = ? AND expires_at IS NOT NULL AND expires_at <= ?",
                &[&p.order.buyer_id.as_str(), &l.linked_at],
            );
        }
    }
    let links: Vec<Vec<Arg>> =
        batch.placements.iter().filter_map(|p| p.link.as_ref().map(|l| link_row(p, l, batch.now))).collect();
    // A buyer linked meanwhile by a concurrent batch keeps that link.
    script.insert_then(NEW_LINK_COLUMNS, &links, " ON DUPLICATE KEY UPDATE buyer_id = buyer_id", |v, row| {
        row_values(v, row)
    });
    let orders = batch.placements.iter().map(|p| order_row(p, batch)).collect::<Result<Vec<_>>>()?;
    script.insert(ORDER_COLUMNS, &orders, |v, row| row_values(v, row));
    script.insert(ITEM_COLUMNS, &item_rows(batch)?, |v, row| row_values(v, row));
    let events: Vec<Vec<Arg>> = batch.placements.iter().map(|p| event_row(p, batch)).collect();
    script.insert(EVENT_COLUMNS, &events, |v, row| row_values(v, row));
    if let Some(p) = batch.placements.first() {
        let tally = [tally_row(EventType::OrderPlaced, batch.placements.len(), p.event.id)?];
        let add = (super::DIALECT.add_on_conflict)("type, shard", &["n"]);
        script.insert_then(TALLY_COLUMNS, &tally, &add, |v, row| row_values(v, row));
    }
    let add = " ON DUPLICATE KEY UPDATE volume = volume + VALUES(volume), orders = orders + VALUES(orders)";
    script.insert_then(MONTH_COLUMNS, &batch.months, add, |v, m| {
        v.push(m.affiliate_id.as_str()).push(m.month_start).push(m.volume).push(m.orders);
    });
    Ok(script)
}

fn row_values(v: &mut Values<'_>, row: &[Arg]) {
    for a in row {
        v.push(a);
    }
}

/// Statements of one transaction, written as text and sent together.
pub(super) struct Script {
    sql: String,
}

impl Script {
    pub fn new() -> Self {
        Self { sql: String::from("START TRANSACTION;\n") }
    }

    /// `INSERT INTO {head} VALUES (…), (…);` — one row per item of `rows`,
    /// each written by `row` through a [`Values`]. Nothing is added for no rows.
    pub fn insert<T>(&mut self, head: &str, rows: impl IntoIterator<Item = T>, row: impl FnMut(&mut Values, T)) {
        self.insert_then(head, rows, "", row)
    }

    /// One statement: `text` with each `?` replaced by the next value's literal.
    pub fn statement(&mut self, text: &str, values: &[&dyn Literal]) {
        let mut values = values.iter();
        for (i, part) in text.split('?').enumerate() {
            if i > 0 {
                values.next().expect("a value for every ?").write_sql(&mut self.sql);
            }
            self.sql.push_str(part);
        }
        self.sql.push_str(";\n");
    }

    /// [`Script::insert`] with `tail` (an `ON DUPLICATE KEY UPDATE …`) after the rows.
    pub fn insert_then<T>(
        &mut self,
        head: &str,
        rows: impl IntoIterator<Item = T>,
        tail: &str,
        mut row: impl FnMut(&mut Values, T),
    ) {
        let start = self.sql.len();
        let _ = write!(self.sql, "INSERT INTO {head} VALUES ");
        let mut any = false;
        for item in rows {
            self.sql.push_str(if any { ",\n(" } else { "(" });
            row(&mut Values { sql: &mut self.sql, first: true }, item);
            self.sql.push(')');
            any = true;
        }
        if any {
            self.sql.push_str(tail);
            self.sql.push_str(";\n");
        } else {
            self.sql.truncate(start);
        }
    }

    /// Runs the statements and commits, in one round trip. On an error the
    /// transaction is rolled back and nothing of it stays written. Callers
    /// close the connection after an error all the same (if even the rollback
    /// failed, it may hold the transaction open; closing ends it).
    pub async fn commit(mut self, conn: &mut MySqlConnection) -> Result<()> {
        self.sql.push_str("COMMIT");
        // A query without arguments goes as text (COM_QUERY), where several
        // statements may follow each other; the server stops at the first error.
        match conn.execute(self.sql.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                Err(super::classify(e))
            }
        }
    }

    #[cfg(test)]
    fn text(&self) -> &str {
        &self.sql
    }
}

/// The values of one row, comma-separated.
pub(super) struct Values<'a> {
    sql: &'a mut String,
    first: bool,
}

impl Values<'_> {
    pub fn push(&mut self, value: impl Literal) -> &mut Self {
        if !self.first {
            self.sql.push_str(", ");
        }
        self.first = false;
        value.write_sql(self.sql);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::str::FromStr;

    #[test]
    fn strings_are_hex_literals_so_nothing_in_them_is_sql() {
        let mut s = Script::new();
        s.insert("t (a, b, c)", ["x'); DROP TABLE t; --", "\\", "é\0"], |v, a| {
            v.push(a).push(None::<&str>).push(&b"\x00\xff"[..]);
        });
        assert_eq!(
            s.text(),
            "START TRANSACTION;\nINSERT INTO t (a, b, c) VALUES \
             (_utf8mb4 X'7827293b2044524f50205441424c4520743b202d2d', NULL, X'00ff'),\n\
             (_utf8mb4 X'5c', NULL, X'00ff'),\n\
             (_utf8mb4 X'c3a900', NULL, X'00ff');\n"
        );
    }

    #[test]
    fn numbers_and_times_are_written_from_their_types() {
        let mut s = Script::new();
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::microseconds(89);
        s.insert("t (a, b, c, d)", [()], |v, ()| {
            v.push(Decimal::from_str("-12.3400").unwrap()).push(7u32).push(u64::MAX).push(at);
        });
        assert!(s.text().ends_with("VALUES (-12.3400, 7, 18446744073709551615, '2026-03-04 05:06:07.000089');\n"));
    }

    #[test]
    fn no_rows_no_statement() {
        let mut s = Script::new();
        s.insert("t (a)", Vec::<u32>::new(), |v, a| {
            v.push(a);
        });
        assert_eq!(s.text(), "START TRANSACTION;\n");
    }
}
