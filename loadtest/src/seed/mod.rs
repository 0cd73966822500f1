//! `loadtest seed`: a realistic history written straight into an empty
//! database, consistent with every invariant komisi's reconcile checks —
//! so that komisi can be measured (and keeps working) on a database that
//! looks years old without spending years, or hours of API calls, to fill it.
//! The rules are komisi's own (see `sim`); the rows go in big transactions
//! (see `sink`).
mod sim;
mod sink;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DurationRound, TimeDelta, Utc};
use clap::Args;
use komisi::domain::entitlement::month_window;
use komisi::domain::money::Rounding;
use komisi::domain::program::{BuyerRewardsDoc, MilestoneDoc, Program, ProgramDoc, TierDoc};
use komisi::store::{Backend as _, Programs as _};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes a history into an EMPTY database: komisi's migrations are applied
/// first (as `komisi migrate` and the server do; a database komisi created
/// and never used is fine too), then a program with five levels, tiers and
/// milestones is stored as version 2, then affiliates `aff-0…` (codes
/// `code-N`, the tree `loadtest setup` builds, two levels deeper), buyers
/// `buyer-N`, and the orders of the last MONTHS months with everything that
/// happened to them. Start komisi on it afterwards with its usual keys; do
/// not run `loadtest setup` (the affiliates exist).
#[derive(Args, Debug)]
pub struct SeedArgs {
    /// `mysql://user:pass@host:port/database` (the database must exist) or
    /// `sqlite://FILE` (created when missing).
    #[arg(long)]
    pub database_url: String,
    /// Orders placed over the period.
    #[arg(long, default_value_t = 100_000)]
    pub orders: u64,
    /// Affiliates (as `loadtest run --affiliates`).
    #[arg(long, default_value_t = 10_000)]
    pub affiliates: usize,
    /// Calendar months (program time zone) the orders spread over, the
    /// current one last.
    #[arg(long, default_value_t = 3)]
    pub months: u32,
    /// Random seed: the same seed and sizes give the same history.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Buyers the orders spread over [default: orders / 5, at least 100].
    #[arg(long)]
    pub buyers: Option<u64>,
    /// MySQL on this host only: write each batch to a file here and load it
    /// with `LOAD DATA INFILE` (needs the FILE privilege and a
    /// `secure_file_priv` that allows the directory) instead of INSERTs.
    #[arg(long)]
    pub load_dir: Option<PathBuf>,
    /// Rows per batch (one transaction each).
    #[arg(long, default_value_t = 100_000)]
    pub batch_rows: usize,
    /// MySQL: keep the secondary keys of the big tables during the load
    /// (by default they are dropped first and built at the end, by sorting).
    #[arg(long)]
    pub keep_keys: bool,
}

/// The tables whose secondary keys a MySQL load builds at the end.
const BULK_TABLES: [&str; 4] = ["orders", "events", "ledger_entries", "reward_entries"];

/// The order the dropped keys are built in: the longest builds first, so
/// that the two builders finish close together.
const KEY_ORDER: [&str; 5] = ["ledger_entries", "events", "orders", "reward_entries", "order_items"];

/// What the generator and the writer have done so far.
#[derive(Default)]
pub struct Progress {
    pub orders: AtomicU64,
    pub rows: AtomicU64,
}

/// The program the history is paid under: five levels for the five-level
/// tree, three tiers and three milestones so they are reached at every
/// size, the default program's time zone (a change of it would move the
/// start of the counted months past the history).
pub fn program_doc() -> ProgramDoc {
    let s = |x: &str| x.to_owned();
    ProgramDoc {
        currency: s("IDR"),
        scale: 0,
        rounding: Rounding::Floor,
        timezone: s("Asia/Jakarta"),
        levels: vec![s("0.10"), s("0.03"), s("0.02"), s("0.01"), s("0.005")],
        category_rates: BTreeMap::from([(s("electronics"), s("0.04"))]),
        excluded_categories: vec![s("gift-card")],
        min_order_amount: s("50000"),
        max_commission_per_order: s("1000000"),
        tiers: vec![
            TierDoc { monthly_sales_from: s("10000000"), bonus_rate: s("0.01") },
            TierDoc { monthly_sales_from: s("50000000"), bonus_rate: s("0.02") },
            TierDoc { monthly_sales_from: s("250000000"), bonus_rate: s("0.03") },
        ],
        milestones: vec![
            MilestoneDoc { nth_order_in_month: 3, bonus: s("25000") },
            MilestoneDoc { nth_order_in_month: 10, bonus: s("100000") },
            MilestoneDoc { nth_order_in_month: 50, bonus: s("500000") },
        ],
        skip_inactive_upline: true,
        holding_days: 14,
        buyer_rewards: BuyerRewardsDoc {
            points_rate: s("0.01"),
            first_order_bonus: s("5000"),
            points_value: s("1"),
            points_expire_days: 0,
            redemption_hold_minutes: 30,
        },
        attribution: Default::default(),
        upline_qualification: None,
        affiliate_caps: Vec::new(),
        budgets: Vec::new(),
        on_exhausted: None,
    }
}

/// komisi's store on the database: its migrations, its program versions.
async fn store(url: &str) -> Result<komisi::store::sql::SqlStore> {
    use komisi::store::{mysql::MySqlStore, sql::SqlStore, sqlite::SqliteStore};
    Ok(if sink::is_sqlite(url) {
        SqlStore::new(Arc::new(SqliteStore::connect(url, 1).await?))
    } else {
        SqlStore::new(Arc::new(MySqlStore::connect(url, 2).await?))
    })
}

pub async fn run(a: SeedArgs) -> Result<()> {
    if a.orders == 0 || a.affiliates == 0 || a.months == 0 {
        bail!("--orders, --affiliates and --months must be above 0");
    }
    let started = Instant::now();
    let now = Utc::now().duration_trunc(TimeDelta::microseconds(1))?;
    let program = Program::parse(&program_doc()).map_err(|e| anyhow!("the seed's program: {e:?}"))?;
    let tz = program.timezone;
    let mut start = month_window(now, tz).0;
    for _ in 1..a.months {
        start = month_window(start - TimeDelta::seconds(1), tz).0;
    }
    let end = now - TimeDelta::minutes(1);

    let komisi = store(&a.database_url).await?;
    komisi.migrate().await.context("komisi's migrations")?;
    let mut sink = sink::Sink::open(&a.database_url, a.load_dir.clone(), 0).await?;
    for table in ["affiliates", "orders", "events", "reward_entries", "payouts"] {
        if sink.count(&format!("SELECT COUNT(*) FROM {table}")).await? > 0 {
            bail!("{table} is not empty: the seed needs an empty database");
        }
    }
    if sink.count("SELECT COUNT(*) FROM program_versions").await? != 1 {
        bail!("a program was stored already: the seed needs an empty database");
    }
    let since = sink.counted_since().await?;
    if since > start {
        bail!("affiliate_months counts months from {since} only, after the history's start {start}");
    }
    // Through komisi's store, as `PUT /admin/program` stores it.
    let seeder = komisi::domain::audit::Actor { key: "loadtest-seed".into(), request_id: None };
    let audit =
        komisi::domain::audit::AuditEntry::new(&seeder, komisi::domain::audit::Action::ProgramReplace, "program");
    let version = komisi.insert_program(&program, &audit).await?;
    drop(komisi);
    sink.date_programs(start - TimeDelta::days(1)).await?;

    let buyers = a.buyers.unwrap_or((a.orders / 5).max(100));
    let cfg = sim::Config {
        orders: a.orders,
        affiliates: a.affiliates,
        buyers,
        seed: a.seed,
        start,
        end,
        program: Arc::new(program),
        version,
        batch_rows: a.batch_rows.max(1),
    };
    eprintln!(
        "seed: {} orders, {} affiliates, {buyers} buyers, placed {} .. {} (program version {version})",
        a.orders,
        a.affiliates,
        start.to_rfc3339(),
        end.to_rfc3339()
    );
    let dropped = if a.keep_keys { Vec::new() } else { sink.drop_keys(&BULK_TABLES).await? };
    // MySQL loads two batches at once (InnoDB takes each on a core of its
    // own); SQLite has one writer.
    let mut writers = vec![sink];
    if !sink::is_sqlite(&a.database_url) {
        writers.push(sink::Sink::open(&a.database_url, a.load_dir.clone(), 1).await?);
    }
    let progress = Arc::new(Progress::default());
    let (tx, rx) = tokio::sync::mpsc::channel::<sink::Batch>(4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let generator = {
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || sim::generate(cfg, tx, progress))
    };
    let reporter = {
        let (progress, total) = (progress.clone(), a.orders);
        tokio::spawn(async move {
            let began = Instant::now();
            let mut last = (0u64, 0u64, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let (orders, rows) = (progress.orders.load(Ordering::Relaxed), progress.rows.load(Ordering::Relaxed));
                let dt = last.2.elapsed().as_secs_f64();
                eprintln!(
                    "seed: {:>6.0}s  orders {orders}/{total} ({:.0}/s)  rows written {rows} ({:.0}/s)",
                    began.elapsed().as_secs_f64(),
                    (orders - last.0) as f64 / dt,
                    (rows - last.1) as f64 / dt
                );
                last = (orders, rows, Instant::now());
            }
        })
    };
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut sink| {
            let (rx, progress) = (rx.clone(), progress.clone());
            async move {
                let mut rows: BTreeMap<&'static str, u64> = BTreeMap::new();
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(batch) = next else { break };
                    let (table, n) = (batch.table.name(), batch.rows.len() as u64);
                    if let Err(e) = sink.write(batch).await {
                        // The generator stops at its next batch.
                        rx.lock().await.close();
                        return Err(e);
                    }
                    *rows.entry(table).or_default() += n;
                    progress.rows.fetch_add(n, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>((sink, rows))
            }
        })
        .collect();
    drop(rx);
    // The writers end when the generator has sent its last batch.
    let written = futures::future::join_all(tasks).await;
    let generated = generator.await.context("the generator panicked")?;
    let mut rows_by_table: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut sinks = Vec::new();
    for w in written {
        let (sink, rows) = w?;
        for (table, n) in rows {
            *rows_by_table.entry(table).or_default() += n;
        }
        sinks.push(sink);
    }
    let summary = generated?;
    let generated_at = started.elapsed();
    eprintln!("seed: rows written in {:.0}s; building keys, statistics", generated_at.as_secs_f64());
    // Each writer's connection builds a table's keys at a time, the largest
    // tables first: an ALTER sorts on one core, and MySQL has two.
    let mut queue = dropped;
    queue.sort_by_key(|d| KEY_ORDER.iter().position(|t| *t == d.table).unwrap_or(KEY_ORDER.len()));
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(queue));
    let builders = sinks.iter_mut().map(|sink| {
        let queue = &queue;
        async move {
            loop {
                let next = queue.lock().expect("the key queue").pop_front();
                let Some(d) = next else { return Ok::<_, anyhow::Error>(()) };
                let began = Instant::now();
                sink.restore_keys(&d).await?;
                eprintln!("seed: keys of {} built in {:.0}s", d.table, began.elapsed().as_secs_f64());
            }
        }
    });
    for built in futures::future::join_all(builders).await {
        built?;
    }
    let mut sink = sinks.swap_remove(0);
    reporter.abort();
    if rows_by_table != summary.rows {
        bail!("rows generated {:?} but written {rows_by_table:?}", summary.rows);
    }
    let loaded = started.elapsed();
    sink.finish().await?;
    let bytes = sink.size().await?;
    let rows: u64 = summary.rows.values().sum();
    let elapsed = started.elapsed();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "orders": a.orders,
            "affiliates": a.affiliates,
            "buyers": buyers,
            "months": a.months,
            "placed_from": start.to_rfc3339(),
            "placed_to": end.to_rfc3339(),
            "program_version": version,
            "order_statuses": summary.statuses,
            "approved_orders": summary.approved_orders,
            "events": summary.events,
            "events_total": summary.events.values().sum::<u64>(),
            "ledger_entries": summary.rows.get("ledger_entries"),
            "ledger_entries_by_kind": summary.entry_kinds,
            "reward_entries": summary.rows.get("reward_entries"),
            "payouts": summary.payouts,
            "redemptions": summary.redemptions,
            "rows_by_table": summary.rows,
            "rows_total": rows,
            "rows_written_s": generated_at.as_secs_f64(),
            "load_s": loaded.as_secs_f64(),
            "elapsed_s": elapsed.as_secs_f64(),
            "rows_per_s": rows as f64 / loaded.as_secs_f64(),
            "orders_per_s": a.orders as f64 / loaded.as_secs_f64(),
            "database_bytes": bytes,
            "bytes_per_order": bytes as f64 / a.orders as f64,
        }))?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use komisi::domain::reconcile::RunKind;
    use komisi::store::sql::{Db, SqlStore};

    /// komisi's full reconcile over the seeded database.
    async fn reconcile(url: &str) -> komisi::engine::reconcile::Report {
        let db: Arc<dyn Db> = if url.starts_with("sqlite:") {
            Arc::new(komisi::store::sqlite::SqliteStore::connect(url, 2).await.expect("open the SQLite store"))
        } else {
            Arc::new(komisi::store::mysql::MySqlStore::connect(url, 2).await.expect("open the MySQL store"))
        };
        // The journal is unreachable: reconcile reads only the database.
        let journal =
            komisi::journal::redis::RedisJournal::new("redis://127.0.0.1:1", "unused", "c".into(), 1).expect("journal");
        let engine = komisi::engine::Engine::new(
            Arc::new(SqlStore::new(db)),
            Arc::new(journal),
            Arc::new(komisi::engine::faults::Faults::default()),
            komisi::engine::EngineConfig {
                intake_workers: 1,
                intake_batch: 1,
                event_workers: 1,
                event_batch: 1,
                event_linger: Duration::ZERO,
                max_backlog: 0,
                retry: komisi::engine::retry::RetryPolicy {
                    max_attempts: 1,
                    base: Duration::from_millis(50),
                    max: Duration::from_millis(50),
                },
                retry_horizon: Duration::from_secs(3600),
                redeliver_after: Duration::from_secs(3600),
                reconcile_every: Duration::ZERO,
                reconcile_full_every: Duration::ZERO,
                reconcile_incremental_max_entries: 1_000_000,
                webhooks: Default::default(),
            },
        );
        engine.reconcile_now(RunKind::Full, None).await.expect("a full reconcile")
    }

    fn args(url: &str) -> SeedArgs {
        SeedArgs {
            database_url: url.to_owned(),
            orders: 3_000,
            affiliates: 400,
            months: 3,
            seed: 7,
            buyers: None,
            load_dir: None,
            batch_rows: 5_000,
            keep_keys: false,
        }
    }

    /// The generator's acceptance test, on both backends: every amount,
    /// balance, month counter and tally of a seeded history is what komisi
    /// itself finds by recomputing it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_seeded_history_passes_a_full_reconcile_on_both_backends() {
        let dir = std::env::temp_dir().join(format!("komisi-seed-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = format!("sqlite://{}", dir.join("seed.db").display());
        run(args(&sqlite)).await.expect("seed SQLite");
        let report = reconcile(&sqlite).await;
        assert!(report.ok && report.checked.orders > 2_000, "{:?}", report.violations);
        std::fs::remove_dir_all(&dir).unwrap();

        let base = std::env::var("KOMISI_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let name = format!("seedtest_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::MySqlPool::connect(&base).await.expect("MySQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
        let url = format!("{base}/{name}");
        let seeded = run(args(&url)).await;
        let report = match &seeded {
            Ok(()) => Some(reconcile(&url).await),
            Err(_) => None,
        };
        sqlx::query(&format!("DROP DATABASE {name}")).execute(&admin).await.unwrap();
        seeded.expect("seed MySQL");
        let report = report.unwrap();
        assert!(report.ok && report.checked.orders > 2_000, "{:?}", report.violations);
    }
}
