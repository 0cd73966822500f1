//! The ceiling: the durable transactions komisi needs per order, issued
//! straight to MariaDB by a plain sqlx client with the same connection count,
//! as fast as it can: the intake transaction (order, items, event) and the
//! commission transaction (lock event and order, read items, chain, month and
//! ledger, write 3 ledger rows, 3 balances, 2 reward rows, the buyer, the event
//! and the order), one statement per row and one commit per transaction, on
//! komisi's own schema and indexes (its migrations).
//!
//! With `--rate` the same transactions arrive at a fixed rate instead (open
//! loop, like `run`), and the intake transaction's latency is reported, from
//! each order's due time to its intake commit: the raw-database floor that
//! komisi's intake latency at the same rate is compared with.
use anyhow::Result;
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use rust_decimal::Decimal;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{Executor, MySql, Pool};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BaselineArgs {
    /// The MariaDB server (a throwaway database is created on it and dropped after).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    server_url: String,
    /// Connections = concurrent workers (komisi's KOMISI_DB_MAX_CONNECTIONS).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    #[arg(long, default_value_t = 10_000)]
    affiliates: usize,
    /// Orders per second offered at fixed arrival times (open loop) instead of
    /// as fast as the connections allow; reports the intake latency.
    #[arg(long)]
    rate: Option<f64>,
    /// Only the intake transaction per order, no commission transaction: with
    /// `--rate`, the latency a durable intake commit alone has at that rate.
    #[arg(long)]
    intake_only: bool,
}

/// What a measurement counted: orders done, seconds, and with `--rate` the
/// intake latency histogram (microseconds).
struct Measured {
    orders: u64,
    elapsed: f64,
    intake: Option<Histogram<u64>>,
}

pub async fn run(a: BaselineArgs) -> Result<()> {
    let db = format!("komisi_baseline_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let admin = sqlx::MySqlPool::connect(&a.server_url).await?;
    admin.execute(format!("CREATE DATABASE `{db}`").as_str()).await?;
    let url = format!("{}/{db}", a.server_url);
    let result = measure(&url, &a).await;
    admin.execute(format!("DROP DATABASE `{db}`").as_str()).await?;
    let m = result?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "baseline": if a.intake_only { "raw sqlx, intake tx only" } else { "raw sqlx, intake tx + commission tx per order" },
            "connections": a.connections,
            "offered_rate": a.rate,
            "orders": m.orders,
            "duration_s": m.elapsed,
            "orders_per_s": m.orders as f64 / m.elapsed,
            "intake_latency": m.intake.as_ref().map(crate::quantiles_ms),
        }))?
    );
    Ok(())
}

async fn measure(url: &str, a: &BaselineArgs) -> Result<Measured> {
    // komisi's schema and indexes, through komisi's own migrations.
    let db = komisi::store::mysql::MySqlStore::connect(url, 2).await?;
    komisi::store::Backend::migrate(&komisi::store::sql::SqlStore::new(std::sync::Arc::new(db))).await?;
    let options = MySqlConnectOptions::from_str(url)?.timezone(Some("+00:00".to_owned()));
    let pool = MySqlPoolOptions::new()
        .max_connections(a.connections)
        .after_connect(|c, _| {
            Box::pin(
                async move { c.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await.map(|_| ()) },
            )
        })
        .connect_with(options)
        .await?;
    let now = chrono::Utc::now();
    for chunk in (0..a.affiliates).collect::<Vec<_>>().chunks(1000) {
        let mut q = sqlx::QueryBuilder::<MySql>::new(
            "INSERT INTO affiliates (id, name, parent_id, referral_code, status, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut b, n| {
            let parent = match n {
                0..100 => None,
                100..1000 => Some(format!("aff-{}", n % 100)),
                _ => Some(format!("aff-{}", 100 + n % 900)),
            };
            b.push_bind(format!("aff-{n}"))
                .push_bind("x")
                .push_bind(parent)
                .push_bind(format!("code-{n}"))
                .push_bind("active")
                .push_bind(now)
                .push_bind(now);
        });
        q.build().execute(&pool).await?;
    }
    match a.rate {
        Some(rate) => open_loop(&pool, a, rate).await,
        None => closed_loop(&pool, a).await,
    }
}

/// Every connection issues orders back to back until the deadline.
async fn closed_loop(pool: &Pool<MySql>, a: &BaselineArgs) -> Result<Measured> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.duration_secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..a.connections)
        .map(|w| {
            let (pool, done, affiliates, commission) = (pool.clone(), done.clone(), a.affiliates, !a.intake_only);
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let leaf = rand::rng().random_range(1000..affiliates);
                    one_order(&pool, &format!("b-{w}-{n}"), leaf, commission).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(Measured { orders: done.load(Ordering::Relaxed), elapsed: started.elapsed().as_secs_f64(), intake: None })
}

/// Order i is due at a fixed time whatever happened before; its intake
/// latency counts from then (no coordinated omission), waiting for a free
/// connection included.
async fn open_loop(pool: &Pool<MySql>, a: &BaselineArgs, rate: f64) -> Result<Measured> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * a.duration_secs as f64) as u64;
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (pool, latency, commission) = (pool.clone(), latency.clone(), !a.intake_only);
        let leaf = rand::rng().random_range(1000..a.affiliates);
        tasks.push(tokio::spawn(async move {
            let committed = one_order(&pool, &format!("b-{i}"), leaf, commission).await?;
            latency.lock().unwrap().record((committed - due).as_micros().max(1) as u64)?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let intake = latency.lock().unwrap().clone();
    Ok(Measured { orders: total, elapsed, intake: Some(intake) })
}

/// One order's two transactions (the second unless `commission` is false);
/// answers when the intake one committed.
async fn one_order(pool: &Pool<MySql>, id: &str, leaf: usize, commission: bool) -> Result<Instant> {
    let now = chrono::Utc::now();
    let price = Decimal::from(150_000);
    let leaf_id = format!("aff-{leaf}");
    let mid = format!("aff-{}", 100 + leaf % 900);
    let root = format!("aff-{}", (100 + leaf % 900) % 100);
    let event = uuid::Uuid::now_v7().to_string();
    let buyer = format!("buyer-{id}");

    // Intake: order, 3 items, event.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT id FROM affiliates WHERE referral_code = ?")
        .bind(format!("code-{leaf}"))
        .fetch_optional(&mut *tx)
        .await?;
    sqlx::query("SELECT MAX(version) FROM program_versions").fetch_one(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO orders (id, buyer_id, affiliate_id, currency, placed_at, status, total, original_eligible, program_version, \
         request_hash, commission_status, created_at, updated_at) VALUES (?, ?, ?, 'IDR', ?, 'placed', ?, ?, 1, ?, 'pending', ?, ?)",
    )
    .bind(id).bind(&buyer).bind(&leaf_id).bind(now).bind(price * Decimal::from(3)).bind(price * Decimal::from(3))
    .bind(&[0u8; 32][..]).bind(now).bind(now)
    .execute(&mut *tx)
    .await?;
    for n in 0..3 {
        sqlx::query("INSERT INTO order_items (order_id, sku, line_no, category, quantity, unit_price) VALUES (?, ?, ?, 'fashion', 1, ?)")
            .bind(id).bind(format!("s{n}")).bind(n).bind(price)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, created_at, updated_at) \
                 VALUES (?, 'order.placed', ?, ?, 'pending', 0, '{}', ?, ?, ?)")
        .bind(&event).bind(id).bind(format!("a:{leaf_id}")).bind(now).bind(now).bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let intake_committed = Instant::now();
    if !commission {
        return Ok(intake_committed);
    }

    // Commission: lock, read, write the delta row by row, mark done.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT type, order_id, status, created_at FROM events WHERE id = ? FOR UPDATE")
        .bind(&event)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("SELECT buyer_id, affiliate_id, status, placed_at, program_version, context FROM orders WHERE id = ? FOR UPDATE")
        .bind(id).fetch_one(&mut *tx).await?;
    sqlx::query("SELECT sku, category, quantity, refunded, unit_price FROM order_items WHERE order_id = ?")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query("SELECT NOT EXISTS (SELECT 1 FROM orders WHERE buyer_id = ? AND placed_at < ?)")
        .bind(&buyer)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    for a in [&leaf_id, &mid, &root] {
        sqlx::query("SELECT id, parent_id, status, buyer_id FROM affiliates WHERE id = ?")
            .bind(a)
            .fetch_one(&mut *tx)
            .await?;
    }
    sqlx::query("SELECT COALESCE(SUM(original_eligible), 0), COUNT(*) FROM orders WHERE affiliate_id = ? AND placed_at >= ? AND placed_at < ?")
        .bind(&leaf_id).bind(now - chrono::TimeDelta::days(30)).bind(now).fetch_one(&mut *tx).await?;
    sqlx::query("UPDATE orders SET context = '{}' WHERE id = ?").bind(id).execute(&mut *tx).await?;
    sqlx::query("SELECT affiliate_id, kind, MAX(level), SUM(amount) FROM ledger_entries WHERE order_id = ? GROUP BY affiliate_id, kind")
        .bind(id).fetch_all(&mut *tx).await?;
    sqlx::query("SELECT buyer_id, kind, SUM(points) FROM reward_entries WHERE order_id = ? GROUP BY buyer_id, kind")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let mut beneficiaries =
        [(&leaf_id, 1u8, Decimal::from(45_000)), (&mid, 2, Decimal::from(13_500)), (&root, 3, Decimal::from(4_500))];
    beneficiaries.sort_by(|a, b| a.0.cmp(b.0));
    for (a, level, amount) in &beneficiaries {
        sqlx::query("INSERT INTO ledger_entries (affiliate_id, order_id, event_id, level, kind, amount, status, rule_version, created_at) \
                     VALUES (?, ?, ?, ?, 'commission', ?, 'pending', 1, ?)")
            .bind(*a).bind(id).bind(&event).bind(level).bind(amount).bind(now)
            .execute(&mut *tx)
            .await?;
    }
    for (a, _, amount) in &beneficiaries {
        sqlx::query("UPDATE affiliates SET pending = pending + ? WHERE id = ?")
            .bind(amount)
            .bind(*a)
            .execute(&mut *tx)
            .await?;
    }
    for (kind, points) in [("points", 4_500i64), ("first_order_bonus", 5_000)] {
        sqlx::query("INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&buyer).bind(id).bind(&event).bind(kind).bind(points).bind(now)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO buyers (id, points, updated_at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE points = points + VALUES(points)")
        .bind(&buyer).bind(9_500i64).bind(now).execute(&mut *tx).await?;
    sqlx::query(
        "UPDATE events SET status = 'done', attempts = attempts + 1, applied_at = ?, updated_at = ? WHERE id = ?",
    )
    .bind(now)
    .bind(now)
    .bind(&event)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT status FROM events WHERE order_id = ?").bind(id).fetch_all(&mut *tx).await?;
    sqlx::query("UPDATE orders SET commission_status = 'processed', updated_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(intake_committed)
}
