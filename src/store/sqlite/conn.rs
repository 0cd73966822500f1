//! An SQLite connection running the store's statements: each [`Arg`] bound
//! as its TEXT or INTEGER column holds it (`codec`), each column read back
//! into its domain type; sums added here from `group_concat`.
use super::classify;
use super::codec::{
    add_money, bound_time, decode_money, decode_points, decode_time, encode_money, encode_points, encode_time,
};
use crate::domain::intake::IntakeBatch;
use crate::store::sql::{Arg, BalanceMoves, Cols, Conn, Dialect, Done, PointsMoves, Row, Sql};
use crate::store::Result;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row as _, Sqlite, SqliteConnection, Transaction};

pub enum LiteConn {
    Tx(Transaction<'static, Sqlite>),
    Pooled(PoolConnection<Sqlite>),
}

impl LiteConn {
    fn raw(&mut self) -> &mut SqliteConnection {
        match self {
            LiteConn::Tx(tx) => tx,
            LiteConn::Pooled(conn) => conn,
        }
    }
}

fn arguments(q: &Sql) -> Result<SqliteArguments<'static>> {
    let mut args = SqliteArguments::default();
    for a in q.args() {
        match a {
            Arg::Null => args.add(None::<String>),
            Arg::Text(s) => args.add(s.clone()),
            Arg::Int(i) => args.add(*i),
            Arg::Bytes(b) => args.add(b.clone()),
            Arg::Time(t) => args.add(encode_time(*t).map_err(classify)?),
            Arg::Bound(t) => args.add(bound_time(*t)),
            Arg::Money(d) => args.add(encode_money(*d).map_err(classify)?),
            Arg::Points(p) => args.add(encode_points(*p).map_err(classify)?),
        }
        .map_err(|e| classify(sqlx::Error::Encode(e)))?;
    }
    Ok(args)
}

#[async_trait::async_trait]
impl Conn for LiteConn {
    fn dialect(&self) -> &'static Dialect {
        &super::DIALECT
    }

    async fn fetch(&mut self, q: &Sql) -> Result<Vec<Row>> {
        let rows = sqlx::query_with(q.text(), arguments(q)?).fetch_all(self.raw()).await.map_err(classify)?;
        Ok(rows.into_iter().map(|r| Box::new(LiteRow(r)) as Row).collect())
    }

    async fn execute(&mut self, q: &Sql) -> Result<Done> {
        let done = sqlx::query_with(q.text(), arguments(q)?).execute(self.raw()).await.map_err(classify)?;
        let last_id = u64::try_from(done.last_insert_rowid()).unwrap_or_default();
        Ok(Done { rows: done.rows_affected(), last_id })
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        match *self {
            LiteConn::Tx(tx) => tx.commit().await.map_err(classify),
            LiteConn::Pooled(_) => Ok(()),
        }
    }

    async fn move_balances(&mut self, moves: &BalanceMoves) -> Result<()> {
        super::money::move_balances(self.raw(), moves).await
    }

    async fn move_points(&mut self, moves: &PointsMoves, now: DateTime<Utc>) -> Result<()> {
        super::money::move_points(self.raw(), moves, now).await
    }

    async fn write_intake(mut self: Box<Self>, batch: &IntakeBatch<'_>) -> Result<()> {
        crate::store::sql::intake::insert(self.as_mut(), batch).await?;
        self.commit().await
    }
}

/// An SQLite row: money, points and times are TEXT (`codec`).
struct LiteRow(SqliteRow);

impl LiteRow {
    fn get<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(&'r self, column: &str) -> Result<T> {
        self.0.try_get(column).map_err(classify)
    }
}

impl Cols for LiteRow {
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.get(column)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        self.get(column)
    }

    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        self.get::<Option<&str>>(column)?.map(decode_time).transpose()
    }

    fn opt_money(&self, column: &str) -> Result<Option<Decimal>> {
        self.get::<Option<&str>>(column)?.map(decode_money).transpose()
    }

    fn points(&self, column: &str) -> Result<i128> {
        decode_points(self.get(column)?)
    }

    /// A `group_concat` of amounts (or of integers), added exactly.
    fn sum(&self, column: &str) -> Result<Decimal> {
        let mut sum = Decimal::ZERO;
        for amount in self.get::<Option<&str>>(column)?.iter().flat_map(|a| a.split(',')) {
            sum = add_money(sum, decode_money(amount)?)?;
        }
        Ok(sum)
    }
}
