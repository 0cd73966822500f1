//! Where the seeded rows go: batches of rows per table, written in one
//! transaction each — MySQL by `LOAD DATA INFILE` from a file in the load
//! directory (the server on the same host reads it) or by multi-row INSERTs,
//! SQLite by multi-row INSERTs with bound values. Values are encoded as
//! komisi's columns hold them: DATETIME(6) as naive UTC and DECIMAL on
//! MySQL; on SQLite times and money as komisi's own text codec writes them
//! (`komisi::store::sqlite::codec`), never as floating point.
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use komisi::store::sqlite::codec;
use rust_decimal::Decimal;
use sqlx::{Connection, Executor, MySqlConnection, QueryBuilder, Sqlite, SqliteConnection};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

/// One column value.
#[derive(Debug, Clone)]
pub enum V {
    Null,
    Int(i64),
    Str(String),
    Hash([u8; 32]),
    Money(Decimal),
    Time(DateTime<Utc>),
    /// A points balance (DECIMAL(28,0) on MySQL, text on SQLite).
    Points(i128),
}

impl From<&str> for V {
    fn from(s: &str) -> Self {
        V::Str(s.to_owned())
    }
}
impl From<String> for V {
    fn from(s: String) -> Self {
        V::Str(s)
    }
}
impl From<Option<String>> for V {
    fn from(s: Option<String>) -> Self {
        s.map_or(V::Null, V::Str)
    }
}
impl From<Option<&str>> for V {
    fn from(s: Option<&str>) -> Self {
        s.map_or(V::Null, |s| V::Str(s.to_owned()))
    }
}
impl From<i64> for V {
    fn from(i: i64) -> Self {
        V::Int(i)
    }
}
impl From<u64> for V {
    fn from(i: u64) -> Self {
        V::Int(i as i64)
    }
}
impl From<Decimal> for V {
    fn from(d: Decimal) -> Self {
        V::Money(d)
    }
}
impl From<DateTime<Utc>> for V {
    fn from(t: DateTime<Utc>) -> Self {
        V::Time(t)
    }
}
impl From<Option<DateTime<Utc>>> for V {
    fn from(t: Option<DateTime<Utc>>) -> Self {
        t.map_or(V::Null, V::Time)
    }
}

/// The tables the seed writes, with the columns it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum T {
    Affiliates,
    Orders,
    Items,
    Events,
    Ledger,
    Rewards,
    Refunds,
    Redemptions,
    Buyers,
    Months,
    Payouts,
    PayoutItems,
    Tallies,
}

impl T {
    pub const ALL: [T; 13] = [
        T::Affiliates,
        T::Orders,
        T::Items,
        T::Events,
        T::Ledger,
        T::Rewards,
        T::Refunds,
        T::Redemptions,
        T::Buyers,
        T::Months,
        T::Payouts,
        T::PayoutItems,
        T::Tallies,
    ];

    pub fn name(self) -> &'static str {
        match self {
            T::Affiliates => "affiliates",
            T::Orders => "orders",
            T::Items => "order_items",
            T::Events => "events",
            T::Ledger => "ledger_entries",
            T::Rewards => "reward_entries",
            T::Refunds => "refunds",
            T::Redemptions => "redemptions",
            T::Buyers => "buyers",
            T::Months => "affiliate_months",
            T::Payouts => "payouts",
            T::PayoutItems => "payout_items",
            T::Tallies => "event_tallies",
        }
    }

    pub fn cols(self) -> &'static [&'static str] {
        match self {
            T::Affiliates => &[
                "id",
                "name",
                "parent_id",
                "referral_code",
                "buyer_id",
                "status",
                "pending",
                "approved",
                "paid",
                "created_at",
                "updated_at",
            ],
            T::Orders => &[
                "id",
                "buyer_id",
                "affiliate_id",
                "referral_code",
                "attribution_note",
                "currency",
                "placed_at",
                "status",
                "total",
                "original_eligible",
                "program_version",
                "request_hash",
                "commission_status",
                "no_commission_reason",
                "context",
                "created_at",
                "updated_at",
                "completed_at",
                "approve_at",
                "approved_at",
            ],
            T::Items => &["order_id", "sku", "line_no", "category", "quantity", "refunded", "unit_price"],
            T::Events => &[
                "id",
                "type",
                "order_id",
                "partition_key",
                "status",
                "attempts",
                "payload",
                "next_attempt_at",
                "created_at",
                "updated_at",
                "applied_at",
                "applied_by",
            ],
            T::Ledger => &[
                "id",
                "affiliate_id",
                "order_id",
                "event_id",
                "level",
                "kind",
                "amount",
                "status",
                "rule_version",
                "created_at",
                "payout_id",
            ],
            T::Rewards => &[
                "id",
                "buyer_id",
                "order_id",
                "event_id",
                "kind",
                "points",
                "created_at",
                "redemption_id",
                "expires_at",
            ],
            T::Refunds => &["order_id", "refund_id", "request_hash", "event_id", "created_at"],
            T::Redemptions => &[
                "buyer_id",
                "id",
                "points",
                "order_id",
                "status",
                "value",
                "program_version",
                "hold_until",
                "created_at",
                "updated_at",
            ],
            T::Buyers => &["id", "points", "updated_at", "expire_due_at"],
            T::Months => &["affiliate_id", "month_start", "volume", "orders"],
            T::Payouts => &["id", "idempotency_key", "status", "min_amount", "total", "created_at", "completed_at"],
            T::PayoutItems => &["payout_id", "affiliate_id", "amount"],
            T::Tallies => &["type", "shard", "n"],
        }
    }
}

/// Rows of one table, written in one transaction.
pub struct Batch {
    pub table: T,
    pub rows: Vec<Vec<V>>,
}

/// The database the rows go to.
pub enum Sink {
    My { conn: MySqlConnection, load_dir: Option<PathBuf>, files: u64, tag: usize },
    Lite { conn: SqliteConnection, path: PathBuf },
}

/// Whether a URL names SQLite (else MySQL).
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// A DATETIME(6) literal: naive UTC, microseconds. Written field by field:
/// chrono's `format` parses its pattern on every call, an eighth of the
/// seed's CPU once the allocator's share was gone.
fn my_time(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let n = t.naive_utc();
    let micros = n.nanosecond() % 1_000_000_000 / 1_000;
    let mut out = String::with_capacity(26);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{micros:06}",
        n.year(),
        n.month(),
        n.day(),
        n.hour(),
        n.minute(),
        n.second()
    );
    out
}

impl Sink {
    /// `tag` tells apart the files of writers loading at once.
    pub async fn open(url: &str, load_dir: Option<PathBuf>, tag: usize) -> Result<Self> {
        if is_sqlite(url) {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
            let path = options.get_filename().to_path_buf();
            let mut conn = SqliteConnection::connect_with(&options).await?;
            // The seed's own connection: a crash leaves a file to delete, not
            // a history to trust, so it need not wait for the disk per commit.
            conn.execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -524288; \
                 PRAGMA temp_store = MEMORY",
            )
            .await?;
            return Ok(Sink::Lite { conn, path });
        }
        let options = sqlx::mysql::MySqlConnectOptions::from_str(url)?.timezone(Some("+00:00".to_owned()));
        let mut conn = MySqlConnection::connect_with(&options).await?;
        // The rows are unique by construction (reconcile checks it anyway).
        conn.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0").await?;
        let load_dir = match load_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                Some(dir.canonicalize()?)
            }
            None => None,
        };
        Ok(Sink::My { conn, load_dir, files: 0, tag })
    }

    /// One query's single integer answer.
    pub async fn count(&mut self, sql: &str) -> Result<i64> {
        Ok(match self {
            Sink::My { conn, .. } => sqlx::query_scalar::<_, i64>(sql).fetch_one(conn).await?,
            Sink::Lite { conn, .. } => sqlx::query_scalar::<_, i64>(sql).fetch_one(conn).await?,
        })
    }

    /// `affiliate_months_since`: the start of the counted months.
    pub async fn counted_since(&mut self) -> Result<DateTime<Utc>> {
        let q = "SELECT since FROM affiliate_months_since WHERE id = 1";
        Ok(match self {
            Sink::My { conn, .. } => sqlx::query_scalar::<_, chrono::NaiveDateTime>(q).fetch_one(conn).await?.and_utc(),
            Sink::Lite { conn, .. } => {
                let text: String = sqlx::query_scalar(q).fetch_one(conn).await?;
                codec::decode_time(&text)?
            }
        })
    }

    /// Sets every program version's creation time (they were stored now).
    pub async fn date_programs(&mut self, at: DateTime<Utc>) -> Result<()> {
        let q = "UPDATE program_versions SET created_at = ?";
        match self {
            Sink::My { conn, .. } => {
                sqlx::query(q).bind(at.naive_utc()).execute(conn).await?;
            }
            Sink::Lite { conn, .. } => {
                sqlx::query(q).bind(codec::encode_time(at)?).execute(conn).await?;
            }
        }
        Ok(())
    }

    pub async fn write(&mut self, mut b: Batch) -> Result<()> {
        if b.rows.is_empty() {
            return Ok(());
        }
        match self {
            Sink::My { conn, load_dir: Some(dir), files, tag } => {
                *files += 1;
                let path = dir.join(format!("seed-{}-{tag}-{files}.tsv", b.table.name()));
                write_tsv(&path, &b.rows)?;
                let mut cols = Vec::new();
                let mut sets = Vec::new();
                for (i, c) in b.table.cols().iter().enumerate() {
                    if matches!(b.rows[0][i], V::Hash(_)) {
                        cols.push(format!("@h{i}"));
                        sets.push(format!("{c} = UNHEX(@h{i})"));
                    } else {
                        cols.push((*c).to_owned());
                    }
                }
                let set = if sets.is_empty() { String::new() } else { format!(" SET {}", sets.join(", ")) };
                let path_text = path.to_str().context("load path")?;
                if path_text.contains('\'') || path_text.contains('\\') {
                    bail!("the load directory's path may not hold quotes or backslashes");
                }
                let q = format!(
                    "LOAD DATA INFILE '{path_text}' INTO TABLE {} CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' \
                     ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({}){set}",
                    b.table.name(),
                    cols.join(", ")
                );
                let done = sqlx::raw_sql(&q).execute(&mut *conn).await;
                let _ = std::fs::remove_file(&path);
                let done = done.with_context(|| format!("LOAD DATA into {}", b.table.name()))?;
                if done.rows_affected() != b.rows.len() as u64 {
                    bail!("LOAD DATA into {}: {} rows of {}", b.table.name(), done.rows_affected(), b.rows.len());
                }
            }
            Sink::My { conn, load_dir: None, .. } => {
                let head = format!("INSERT INTO {} ({}) VALUES ", b.table.name(), b.table.cols().join(", "));
                let mut tx = conn.begin().await?;
                let mut q = String::with_capacity(4 << 20);
                for row in &b.rows {
                    if q.is_empty() {
                        q.push_str(&head);
                    } else {
                        q.push_str(", ");
                    }
                    my_row(&mut q, row);
                    // Well inside max_allowed_packet (16 MB by default).
                    if q.len() > 4 << 20 {
                        sqlx::raw_sql(&q).execute(&mut *tx).await?;
                        q.clear();
                    }
                }
                if !q.is_empty() {
                    sqlx::raw_sql(&q).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Sink::Lite { conn, .. } => {
                let cols = b.table.cols();
                let per = (32_766 / cols.len()).min(2_000);
                let mut tx = conn.begin().await?;
                for chunk in b.rows.chunks_mut(per) {
                    let mut q =
                        QueryBuilder::<Sqlite>::new(format!("INSERT INTO {} ({}) ", b.table.name(), cols.join(", ")));
                    let mut bad = None;
                    q.push_values(chunk.iter_mut(), |mut out, row| {
                        for v in row.iter_mut() {
                            match std::mem::replace(v, V::Null) {
                                V::Null => {
                                    out.push_bind(None::<String>);
                                }
                                V::Int(i) => {
                                    out.push_bind(i);
                                }
                                V::Str(s) => {
                                    out.push_bind(s);
                                }
                                V::Hash(h) => {
                                    out.push_bind(h.to_vec());
                                }
                                V::Money(d) => match codec::encode_money(d) {
                                    Ok(s) => {
                                        out.push_bind(s);
                                    }
                                    Err(e) => bad = Some(e.to_string()),
                                },
                                V::Time(t) => match codec::encode_time(t) {
                                    Ok(s) => {
                                        out.push_bind(s);
                                    }
                                    Err(e) => bad = Some(e.to_string()),
                                },
                                V::Points(p) => match codec::encode_points(p) {
                                    Ok(s) => {
                                        out.push_bind(s);
                                    }
                                    Err(e) => bad = Some(e.to_string()),
                                },
                            }
                        }
                    });
                    if let Some(e) = bad {
                        bail!("{}: {e}", b.table.name());
                    }
                    q.build().execute(&mut *tx).await.with_context(|| format!("INSERT into {}", b.table.name()))?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// MySQL: drops the secondary keys of `tables` (a bulk load then only
    /// appends to each primary key; the keys are built afterwards by sorting,
    /// many times faster than row by row). A table whose primary key is not
    /// its `id` (the ledger, clustered by affiliate) is keyed by `id` for the
    /// load, which the rows arrive in, and gets its own key back with the
    /// others. Returns what [`Sink::restore_keys`] puts back.
    pub async fn drop_keys(&mut self, tables: &[&str]) -> Result<Vec<DroppedKeys>> {
        let Sink::My { conn, .. } = self else { return Ok(Vec::new()) };
        let mut dropped =
            vec![DroppedKeys { table: "order_items".into(), create: String::new(), keys: Vec::new(), primary: None }];
        for table in tables {
            let (_, create): (String, String) =
                sqlx::query_as(&format!("SHOW CREATE TABLE {table}")).fetch_one(&mut *conn).await?;
            let keys: Vec<String> = create
                .lines()
                .map(|l| l.trim().trim_end_matches(',').to_owned())
                .filter(|l| l.starts_with("KEY `") || l.starts_with("UNIQUE KEY `"))
                .collect();
            if keys.is_empty() {
                continue;
            }
            let primary = create
                .lines()
                .map(|l| l.trim().trim_end_matches(',').to_owned())
                .find(|l| l.starts_with("PRIMARY KEY (") && l != "PRIMARY KEY (`id`)");
            let mut drops: Vec<String> =
                keys.iter().map(|k| format!("DROP KEY `{}`", k.split('`').nth(1).unwrap_or_default())).collect();
            if primary.is_some() {
                drops.push("DROP PRIMARY KEY, ADD PRIMARY KEY (`id`)".into());
            }
            sqlx::raw_sql(&format!("ALTER TABLE {table} {}", drops.join(", "))).execute(&mut *conn).await?;
            dropped.push(DroppedKeys { table: (*table).to_owned(), create, keys, primary });
        }
        Ok(dropped)
    }

    /// Builds the keys [`Sink::drop_keys`] dropped of one table, all in one
    /// ALTER, and checks the table is defined exactly as before.
    pub async fn restore_keys(&mut self, d: &DroppedKeys) -> Result<()> {
        let Sink::My { conn, .. } = self else { return Ok(()) };
        if d.keys.is_empty() {
            sqlx::raw_sql(&format!("ALTER TABLE {} FORCE", d.table)).execute(&mut *conn).await?;
            return Ok(());
        }
        // FORCE: the table is rebuilt in key order as well (rows that were
        // final late were inserted between others, leaving pages half full).
        let mut adds: Vec<String> = d.keys.iter().map(|k| format!("ADD {k}")).collect();
        if let Some(primary) = &d.primary {
            adds.insert(0, format!("DROP PRIMARY KEY, ADD {primary}"));
        }
        sqlx::raw_sql(&format!("ALTER TABLE {} {}, FORCE", d.table, adds.join(", ")))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("building the keys of {}", d.table))?;
        let (_, create): (String, String) =
            sqlx::query_as(&format!("SHOW CREATE TABLE {}", d.table)).fetch_one(&mut *conn).await?;
        if strip_auto_increment(&create) != strip_auto_increment(&d.create) {
            bail!("{} is not defined as komisi's migrations made it:\n{create}\nwas\n{}", d.table, d.create);
        }
        Ok(())
    }

    /// Checkpoints SQLite's WAL into the file; on MySQL, fresh statistics.
    pub async fn finish(&mut self) -> Result<()> {
        match self {
            Sink::Lite { conn, .. } => {
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
                conn.execute("ANALYZE").await?;
            }
            Sink::My { conn, .. } => {
                let tables: Vec<&str> = T::ALL.iter().map(|t| t.name()).collect();
                sqlx::raw_sql(&format!("ANALYZE TABLE {}", tables.join(", "))).execute(conn).await?;
            }
        }
        Ok(())
    }

    /// Bytes the database takes: MySQL data + index length of every table
    /// (after ANALYZE), SQLite the file.
    pub async fn size(&mut self) -> Result<u64> {
        match self {
            Sink::Lite { path, .. } => Ok(std::fs::metadata(&*path)?.len()),
            Sink::My { conn, .. } => {
                let q = "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) FROM information_schema.tables \
                         WHERE table_schema = DATABASE()";
                Ok(sqlx::query_scalar::<_, i64>(q).fetch_one(conn).await? as u64)
            }
        }
    }
}

/// A string in a LOAD DATA file: backslash, tab, newline, CR and NUL escaped.
fn tsv_str(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
}

fn write_tsv(path: &std::path::Path, rows: &[Vec<V>]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(4096);
    for row in rows {
        line.clear();
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                line.push('\t');
            }
            match v {
                V::Null => line.push_str("\\N"),
                V::Int(n) => {
                    let _ = write!(line, "{n}");
                }
                V::Str(s) => tsv_str(&mut line, s),
                V::Hash(h) => line.push_str(&hex::encode(h)),
                V::Money(d) => {
                    let _ = write!(line, "{d}");
                }
                V::Time(t) => line.push_str(&my_time(*t)),
                V::Points(p) => {
                    let _ = write!(line, "{p}");
                }
            }
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    w.flush()?;
    // The server reads the file as its own user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// One row of a text INSERT: strings quoted with `'` and `\` escaped,
/// hashes as hex literals.
fn my_row(q: &mut String, row: &[V]) {
    q.push('(');
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            q.push_str(", ");
        }
        match v {
            V::Null => q.push_str("NULL"),
            V::Int(n) => {
                let _ = write!(q, "{n}");
            }
            V::Str(s) => {
                q.push('\'');
                for c in s.chars() {
                    match c {
                        '\'' => q.push_str("\\'"),
                        '\\' => q.push_str("\\\\"),
                        '\0' => q.push_str("\\0"),
                        c => q.push(c),
                    }
                }
                q.push('\'');
            }
            V::Hash(h) => {
                q.push_str("X'");
                q.push_str(&hex::encode(h));
                q.push('\'');
            }
            V::Money(d) => {
                let _ = write!(q, "{d}");
            }
            V::Time(t) => {
                q.push('\'');
                q.push_str(&my_time(*t));
                q.push('\'');
            }
            V::Points(p) => {
                let _ = write!(q, "{p}");
            }
        }
    }
    q.push(')');
}

/// The secondary keys of a table, dropped for the load.
pub struct DroppedKeys {
    pub table: String,
    /// `SHOW CREATE TABLE` before.
    create: String,
    /// Each key's definition as it shows there.
    keys: Vec<String>,
    /// The primary key as it shows there, when it is not `id` alone (the
    /// table is keyed by `id` while it loads).
    primary: Option<String>,
}

fn strip_auto_increment(create: &str) -> String {
    create.split(' ').filter(|w| !w.starts_with("AUTO_INCREMENT=")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::my_time;
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_datetime_literal_is_what_chrono_formats() {
        let times = [
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            Utc.with_ymd_and_hms(2025, 12, 31, 23, 59, 59).unwrap() + chrono::TimeDelta::microseconds(999_999),
            Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap() + chrono::TimeDelta::nanoseconds(1_234_567),
        ];
        for t in times {
            assert_eq!(my_time(t), t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string());
        }
    }
}
