//! The few things every backend provides so that the SQL can be written
//! once: a statement with its arguments ([`Sql`]), a row whose columns are
//! read as domain values ([`Cols`]), a connection that runs statements
//! ([`Conn`]) and the database that opens connections ([`Db`]); plus what
//! differs in the SQL text itself ([`Dialect`]).
//!
//! Why not sqlx's `Any` driver: it has no DECIMAL and no date-time types,
//! and SQLite has neither in the first place (money and times are TEXT
//! there, see `sqlite::codec`). A backend here binds each [`Arg`] as its
//! columns hold it and reads each column back into the same Rust type.
use crate::domain::ids::{AffiliateId, BuyerId};
use crate::domain::ledger::EntryStatus;
use crate::store::{corrupt, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// One bound value, as the domain has it; the backend encodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Null,
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
    /// A time to store (a backend refuses one its columns cannot hold).
    Time(DateTime<Utc>),
    /// A time to compare with (a filter bound): one beyond what a column can
    /// hold still compares as what it is, below or above every stored time.
    Bound(DateTime<Utc>),
    /// An amount of money (DECIMAL(28,4)).
    Money(Decimal),
    /// A points balance (DECIMAL(28,0)).
    Points(i128),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Arg::Bytes(v.to_vec())
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Time(v)
    }
}
impl From<Decimal> for Arg {
    fn from(v: Decimal) -> Self {
        Arg::Money(v)
    }
}
macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Self {
                Arg::Int(i64::from(v))
            }
        }
    )*};
}
int_arg!(i64, i32, u32, u16, u8);

/// A `u64` to bind: ids and versions, which both databases keep below 2^63.
pub fn uint(v: u64) -> Result<Arg> {
    i64::try_from(v).map(Arg::Int).map_err(|_| corrupt(format!("{v} does not fit a signed 64-bit column")))
}

impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

macro_rules! id_arg {
    ($($t:ty),*) => {$(
        impl From<&$t> for Arg {
            fn from(v: &$t) -> Self {
                Arg::Text(v.as_str().to_owned())
            }
        }
    )*};
}
id_arg!(
    crate::domain::ids::AffiliateId,
    crate::domain::ids::BuyerId,
    crate::domain::ids::OrderId,
    crate::domain::ids::RedemptionId,
    crate::domain::ids::AdjustmentId,
    crate::domain::ids::RefundId,
    crate::domain::ids::ReferralCode,
    crate::domain::ids::Sku,
    crate::domain::ids::Category,
    crate::domain::event::PartitionKey
);

impl From<crate::domain::event::EventId> for Arg {
    fn from(v: crate::domain::event::EventId) -> Self {
        Arg::Text(v.to_string())
    }
}

/// A statement and its arguments, `?` standing for each.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// A statement whose `?`s are bound with [`Sql::arg`], in order.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), args: Vec::new() }
    }

    /// Binds the next `?` already in the text.
    pub fn arg(mut self, v: impl Into<Arg>) -> Self {
        self.args.push(v.into());
        self
    }

    /// Appends text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends text holding one `?`, bound to `v`.
    pub fn push_bound(&mut self, text: &str, v: impl Into<Arg>) -> &mut Self {
        debug_assert_eq!(text.matches('?').count(), 1, "{text}");
        self.text.push_str(text);
        self.args.push(v.into());
        self
    }

    /// Appends a `?` bound to `v`.
    pub fn bind(&mut self, v: impl Into<Arg>) -> &mut Self {
        self.text.push('?');
        self.args.push(v.into());
        self
    }

    /// Appends `?, ?, …` bound to `values` (`NULL` when there are none, so
    /// that `IN (…)` matches nothing).
    pub fn list<T: Into<Arg>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        let mut first = true;
        for v in values {
            if !std::mem::take(&mut first) {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        if first {
            self.text.push_str("NULL");
        }
        self
    }

    /// Appends ` VALUES (…), (…)`: one row of bound values per item.
    pub fn values<T>(&mut self, items: &[T], mut row: impl FnMut(&T) -> Vec<Arg>) -> &mut Self {
        self.text.push_str(" VALUES ");
        for (i, item) in items.iter().enumerate() {
            self.text.push_str(if i == 0 { "(" } else { ", (" });
            self.list(row(item));
            self.text.push(')');
        }
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn args(&self) -> &[Arg] {
        &self.args
    }
}

/// A row of a result, its columns read by name as domain values: each
/// backend decodes them from what its columns hold.
pub trait Cols: Send + Sync {
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    /// Any integer column (signed or not).
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>>;
    fn opt_money(&self, column: &str) -> Result<Option<Decimal>>;
    /// A points balance column.
    fn points(&self, column: &str) -> Result<i128>;
    /// What [`Dialect::sum`] wrote: the exact sum of a money or integer
    /// column (0 when nothing was summed).
    fn sum(&self, column: &str) -> Result<Decimal>;

    fn text(&self, column: &str) -> Result<String> {
        self.opt_text(column)?.ok_or_else(|| corrupt(format!("{column} is NULL")))
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.opt_int(column)?.ok_or_else(|| corrupt(format!("{column} is NULL")))
    }
    fn uint(&self, column: &str) -> Result<u64> {
        u64::try_from(self.int(column)?).map_err(|_| corrupt(format!("{column} is negative")))
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        self.opt_time(column)?.ok_or_else(|| corrupt(format!("{column} is NULL")))
    }
    fn money(&self, column: &str) -> Result<Decimal> {
        self.opt_money(column)?.ok_or_else(|| corrupt(format!("{column} is NULL")))
    }
    /// An integer read as a flag (`EXISTS`, a comparison): not 0.
    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.int(column)? != 0)
    }
}

pub type Row = Box<dyn Cols>;

/// An integer column of a narrower type, from a row behind a box.
pub fn small<T: TryFrom<i64>>(r: &dyn Cols, column: &str) -> Result<T> {
    T::try_from(r.int(column)?).map_err(|_| corrupt(format!("{column} is out of range")))
}

/// What a statement changed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Done {
    pub rows: u64,
    /// The AUTO_INCREMENT / ROWID of the last row inserted.
    pub last_id: u64,
}

/// affiliate → Σ signed amount per balance status.
pub type BalanceMoves = BTreeMap<AffiliateId, BTreeMap<EntryStatus, Decimal>>;

/// buyer → (Σ signed points, the soonest expiry of the lots written now).
pub type PointsMoves = BTreeMap<BuyerId, (i64, Option<DateTime<Utc>>)>;

/// A connection of one backend, in a transaction or not, running SQL
/// written once for every backend. Dropping it uncommitted rolls back.
#[async_trait::async_trait]
pub trait Conn: Send {
    fn dialect(&self) -> &'static Dialect;
    async fn fetch(&mut self, q: &Sql) -> Result<Vec<Row>>;
    async fn execute(&mut self, q: &Sql) -> Result<Done>;
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Moves affiliates' balances (the rows exist). Money is added where the
    /// backend can add it exactly: in SQL on MySQL, in Rust on SQLite.
    async fn move_balances(&mut self, moves: &BalanceMoves) -> Result<()>;
    /// Moves buyers' points, creating a buyer's row at its first points, and
    /// moves each buyer's expiry due time to the given expiry when that is
    /// sooner (never later).
    async fn move_points(&mut self, moves: &PointsMoves, now: DateTime<Utc>) -> Result<()>;
    /// Intake's writes of a batch and the commit: [`super::intake::insert`]
    /// in this transaction, or the backend's own way (MySQL: one round trip).
    async fn write_intake(self: Box<Self>, batch: &crate::domain::intake::IntakeBatch<'_>) -> Result<()>;
}

impl dyn Conn + '_ {
    pub async fn optional(&mut self, q: &Sql) -> Result<Option<Row>> {
        Ok(self.fetch(q).await?.into_iter().next())
    }

    pub async fn one(&mut self, q: &Sql) -> Result<Row> {
        self.optional(q).await?.ok_or_else(|| corrupt(format!("no row for {}", q.text())))
    }

    /// Runs `q` once per chunk of `items`, each chunk bound by `push`: IN
    /// lists and multi-row inserts stay within the dialect's parameter limit.
    pub async fn fetch_chunked<T>(
        &mut self,
        items: &[T],
        per_item: usize,
        mut build: impl FnMut(&[T]) -> Sql,
    ) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for chunk in items.chunks(self.dialect().rows_per_statement(per_item)) {
            rows.extend(self.fetch(&build(chunk)).await?);
        }
        Ok(rows)
    }

    pub async fn execute_chunked<T>(
        &mut self,
        items: &[T],
        per_item: usize,
        mut build: impl FnMut(&[T]) -> Sql,
    ) -> Result<u64> {
        let mut rows = 0;
        for chunk in items.chunks(self.dialect().rows_per_statement(per_item)) {
            rows += self.execute(&build(chunk)).await?.rows;
        }
        Ok(rows)
    }
}

/// Which pool a connection comes from: MySQL keeps requests (intake, reads,
/// operator writes) apart from commission work (event transactions,
/// approval, recovery), so intake never waits for a connection held by
/// commission work. SQLite has one writer for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Request,
    Work,
}

/// A backend's database: opens connections and runs its migrations.
#[async_trait::async_trait]
pub trait Db: Send + Sync + 'static {
    fn dialect(&self) -> &'static Dialect;
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> bool;
    /// A transaction that writes (and takes row locks where the database has them).
    async fn write(&self, lane: Lane) -> Result<Box<dyn Conn>>;
    /// Reads: in one snapshot when `snapshot` (a read transaction), else
    /// statement by statement.
    async fn read(&self, lane: Lane, snapshot: bool) -> Result<Box<dyn Conn>>;
    /// A connection for an intake batch, committed by [`Conn::write_intake`].
    async fn intake(&self) -> Result<Box<dyn Conn>> {
        self.write(Lane::Request).await
    }
    /// Moves a journal partition's fencing token on and records the
    /// takeover; returns the new token and the previous owner. A database
    /// of one instance has nothing to fence.
    async fn take_fence(&self, _part: u16, _owner: &str) -> Result<(u64, Option<String>)> {
        Ok((1, None))
    }
}

/// What differs between the backends' SQL text.
#[derive(Debug)]
pub struct Dialect {
    /// Appended to a SELECT that locks its rows for writing (` FOR UPDATE`);
    /// empty where one writer at a time is the lock (SQLite).
    pub for_update: &'static str,
    /// Appended to a SELECT that locks its rows against writers.
    pub for_share: &'static str,
    /// `INSERT IGNORE` / `INSERT OR IGNORE`.
    pub insert_ignore: &'static str,
    /// A case-sensitive prefix match of an id column (binary collation)
    /// against one bound pattern, by its index; and the pattern for a prefix.
    pub id_prefix: fn(column: &str) -> String,
    pub id_prefix_pattern: fn(prefix: &str) -> String,
    /// Bound parameters one statement may hold.
    pub max_params: usize,
    /// SELECTs one compound statement (`UNION ALL`) may hold.
    pub max_compound: usize,
    /// Several instances share the database: event transactions check their
    /// partitions' fencing tokens.
    pub fenced: bool,
    /// The exact sum of a money or integer expression, as [`Cols::sum`] reads it.
    pub sum: fn(&str) -> String,
    /// `CAST(<expr> AS <text>)`.
    pub text_cast: fn(&str) -> String,
    /// Appends a filter to events of the journal partitions `parts` only.
    pub partitions: fn(&mut Sql, crate::store::Parts<'_>),
    /// The tail of an INSERT that, where a row with the key (the columns
    /// `key`) exists, adds the new row's integer `counts` to it instead.
    pub add_on_conflict: fn(key: &str, counts: &[&str]) -> String,
    /// The tail of an INSERT that, where a row with the key exists, sets
    /// its `columns` to the new row's instead.
    pub set_on_conflict: fn(key: &str, columns: &[&str]) -> String,
    /// Money columns add exactly in SQL (`DECIMAL`); else they are read,
    /// added in Rust and written back (SQLite's TEXT amounts).
    pub adds_money: bool,
    /// After a table's name in FROM: read it through this index (` FORCE
    /// INDEX (ix)` / ` INDEXED BY ix`). Only where the planner, misled by
    /// estimates, has been seen to pick a much slower one.
    pub use_index: fn(index: &str) -> String,
}

impl Dialect {
    /// Rows of `per_row` parameters one statement may hold (IN-list ids:
    /// `per_row` 1, at most 1 000 a statement).
    pub fn rows_per_statement(&self, per_row: usize) -> usize {
        let rows = (self.max_params / per_row.max(1)).max(1);
        if per_row == 1 {
            rows.min(1_000)
        } else {
            rows
        }
    }
}

/// A `LIKE … ESCAPE '!'` pattern matching every string that starts with
/// `prefix` taken literally (its `%`, `_` and `!` escaped).
pub fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod like_tests {
    use super::like_prefix;

    #[test]
    fn a_like_prefix_takes_its_wildcards_and_escape_literally() {
        assert_eq!(like_prefix("ab"), "ab%");
        assert_eq!(like_prefix("100%_x!"), "100!%!_x!!%");
        assert_eq!(like_prefix(""), "%");
    }
}
