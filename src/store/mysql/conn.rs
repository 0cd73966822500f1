//! A MySQL connection running the store's statements: each [`Arg`] bound as
//! the columns hold it (DATETIME(6) as a naive UTC time, money as DECIMAL),
//! each column read back into its domain type.
use super::{classify, points_of, Kept};
use crate::domain::intake::IntakeBatch;
use crate::store::sql::{Arg, BalanceMoves, Cols, Conn, Dialect, Done, PointsMoves, Row, Sql};
use crate::store::{corrupt, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::{Arguments, MySql, MySqlConnection, Row as _, Transaction};
use std::time::Instant;

pub enum Inner {
    Tx(Transaction<'static, MySql>),
    Pooled(PoolConnection<MySql>),
    /// An intake connection, given back to the kept ones when its batch is written.
    Kept(MySqlConnection, Kept),
}

pub struct MyConn(pub Inner);

impl MyConn {
    pub fn raw(&mut self) -> &mut MySqlConnection {
        match &mut self.0 {
            Inner::Tx(tx) => tx,
            Inner::Pooled(conn) => conn,
            Inner::Kept(conn, _) => conn,
        }
    }
}

fn encode_error(e: sqlx::error::BoxDynError) -> crate::store::StoreError {
    classify(sqlx::Error::Encode(e))
}

pub fn arguments(q: &Sql) -> Result<MySqlArguments> {
    let mut args = MySqlArguments::default();
    for a in q.args() {
        match a {
            Arg::Null => args.add(None::<String>),
            Arg::Text(s) => args.add(s.as_str()),
            Arg::Int(i) => args.add(*i),
            Arg::Bytes(b) => args.add(b.as_slice()),
            // DATETIME, never TIMESTAMP (whose range ends in 2038: a filter
            // bound past it matched nothing).
            Arg::Time(t) | Arg::Bound(t) => args.add(t.naive_utc()),
            Arg::Money(d) => args.add(*d),
            Arg::Points(p) => {
                args.add(Decimal::try_from_i128_with_scale(*p, 0).map_err(|e| corrupt(format!("points {p}: {e}")))?)
            }
        }
        .map_err(encode_error)?;
    }
    Ok(args)
}

#[async_trait::async_trait]
impl Conn for MyConn {
    fn dialect(&self) -> &'static Dialect {
        &super::DIALECT
    }

    async fn fetch(&mut self, q: &Sql) -> Result<Vec<Row>> {
        let rows = sqlx::query_with(q.text(), arguments(q)?).fetch_all(self.raw()).await.map_err(classify)?;
        Ok(rows.into_iter().map(|r| Box::new(MyRow(r)) as Row).collect())
    }

    async fn execute(&mut self, q: &Sql) -> Result<Done> {
        let done = sqlx::query_with(q.text(), arguments(q)?).execute(self.raw()).await.map_err(classify)?;
        Ok(Done { rows: done.rows_affected(), last_id: done.last_insert_id() })
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        match self.0 {
            Inner::Tx(tx) => tx.commit().await.map_err(classify),
            Inner::Pooled(_) => Ok(()),
            Inner::Kept(conn, kept) => {
                give_back(&kept, conn);
                Ok(())
            }
        }
    }

    async fn move_balances(&mut self, moves: &BalanceMoves) -> Result<()> {
        super::money::move_balances(self.raw(), moves).await
    }

    async fn move_points(&mut self, moves: &PointsMoves, now: DateTime<Utc>) -> Result<()> {
        super::money::move_points(self.raw(), moves, now).await
    }

    /// The batch's inserts and the commit in ONE round trip (`script`) on a
    /// kept connection; a connection that failed is closed, not kept.
    async fn write_intake(mut self: Box<Self>, batch: &IntakeBatch<'_>) -> Result<()> {
        let Inner::Kept(conn, _) = &mut self.0 else {
            crate::store::sql::intake::insert(self.as_mut(), batch).await?;
            return self.commit().await;
        };
        if !batch.placements.is_empty() {
            super::script::intake(batch)?.commit(conn).await?;
        }
        self.commit().await
    }
}

fn give_back(kept: &Kept, conn: MySqlConnection) {
    kept.lock().expect("intake connections poisoned").push((conn, Instant::now()));
}

/// A MySQL row: typed columns, decoded as sqlx decodes them.
struct MyRow(MySqlRow);

impl MyRow {
    fn get<'r, T: sqlx::Decode<'r, MySql> + sqlx::Type<MySql>>(&'r self, column: &str) -> Result<T> {
        self.0.try_get(column).map_err(classify)
    }
}

impl Cols for MyRow {
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }

    /// A signed column, else an unsigned one (sqlx decodes each only into
    /// its own signedness).
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        match self.get::<Option<i64>>(column) {
            Ok(v) => Ok(v),
            Err(signed) => match self.get::<Option<u64>>(column) {
                Ok(v) => {
                    v.map(|v| i64::try_from(v).map_err(|_| corrupt(format!("{column} {v} is too large")))).transpose()
                }
                Err(_) => Err(signed),
            },
        }
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        self.get(column)
    }

    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        self.get(column)
    }

    fn opt_money(&self, column: &str) -> Result<Option<Decimal>> {
        self.get(column)
    }

    fn points(&self, column: &str) -> Result<i128> {
        points_of(self.get(column)?)
    }

    fn sum(&self, column: &str) -> Result<Decimal> {
        Ok(self.get::<Option<Decimal>>(column)?.unwrap_or_default())
    }
}
