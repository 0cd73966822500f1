//! The operator's and the storefront's reads at a fixed rate each, for their
//! latency on a database with history (run it next to `loadtest run`): the
//! dead events, the counts per status, an affiliate's ledger (oldest and
//! newest first) and children pages, and an order — every one served from
//! an index or a tally.
use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ReadsArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    #[arg(long, env = "KOMISI_STOREFRONT_KEY", default_value = "loadtest")]
    storefront_key: String,
    #[arg(long, env = "KOMISI_ADMIN_KEY", default_value = "loadtest-admin")]
    admin_key: String,
    /// Affiliates in the tree (as `setup` and `seed` make it: 100 roots,
    /// 900 mid-level, the rest leaves).
    #[arg(long, default_value_t = 10_000)]
    affiliates: usize,
    /// Requests per second of EACH read, open loop.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
}

/// The reads, in the order they are sent round-robin.
/// `ledger_page` is an affiliate's oldest 50 entries; `ledger_newest` its
/// newest 50 (`order=newest`, the console's affiliate page).
const READS: [&str; 6] = ["dead_events", "event_counts", "ledger_page", "ledger_newest", "children_page", "order"];

pub async fn run(a: ReadsArgs) -> Result<()> {
    if a.affiliates < 1001 || a.rate <= 0.0 {
        bail!("--affiliates above 1000 and --rate above 0");
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    // Orders to read: those of the newest events.
    let page: Value = http
        .get(format!("{}/admin/events?limit=500", a.base_url))
        .bearer_auth(&a.admin_key)
        .send()
        .await?
        .error_for_status()
        .context("GET /admin/events")?
        .json()
        .await?;
    let orders: Vec<String> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["order_id"].as_str().filter(|o| !o.is_empty()).map(str::to_owned))
        .collect();
    if orders.is_empty() {
        bail!("no orders to read: run some load first");
    }
    let latency: Arc<Vec<Mutex<Histogram<u64>>>> = Arc::new(
        READS.iter().map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).map(Mutex::new)).collect::<Result<_, _>>()?,
    );
    let errors = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let interval = Duration::from_secs_f64(1.0 / (a.rate * READS.len() as f64));
    let total = (a.rate * READS.len() as f64 * a.duration_secs as f64) as u64;
    let started = Instant::now();
    let mut rng = rand::rng();
    let mut tasks = Vec::new();
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let which = i as usize % READS.len();
        let (path, key) = match READS[which] {
            "dead_events" => ("/admin/events?status=dead&limit=50".to_owned(), &a.admin_key),
            "event_counts" => ("/admin/events/counts".to_owned(), &a.admin_key),
            "ledger_page" => {
                let leaf = rng.random_range(1000..a.affiliates);
                (format!("/v1/affiliates/aff-{leaf}/commissions?limit=50"), &a.storefront_key)
            }
            "ledger_newest" => {
                let leaf = rng.random_range(1000..a.affiliates);
                (format!("/v1/affiliates/aff-{leaf}/commissions?limit=50&order=newest"), &a.storefront_key)
            }
            "children_page" => {
                let mid = rng.random_range(100..1000);
                (format!("/v1/affiliates/aff-{mid}/children?limit=50"), &a.storefront_key)
            }
            _ => (format!("/v1/orders/{}", orders[rng.random_range(0..orders.len())]), &a.storefront_key),
        };
        let request = http.get(format!("{}{path}", a.base_url)).bearer_auth(key);
        let (latency, errors) = (latency.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            // Open loop: the latency counts from the request's due time.
            let ok = match request.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                Ok(r) => {
                    *errors.lock().unwrap().entry(format!("{} {}", READS[which], r.status().as_u16())).or_default() +=
                        1;
                    false
                }
                Err(_) => {
                    *errors.lock().unwrap().entry(format!("{} transport", READS[which])).or_default() += 1;
                    false
                }
            };
            if ok {
                let _ = latency[which].lock().unwrap().record((due.elapsed().as_micros() as u64).max(1));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut per_read = serde_json::Map::new();
    for (i, name) in READS.iter().enumerate() {
        per_read.insert((*name).to_owned(), crate::quantiles_ms(&latency[i].lock().unwrap()));
    }
    let report = json!({
        "rate_per_read": a.rate,
        "duration_s": started.elapsed().as_secs_f64(),
        "latency": per_read,
        "errors": errors.lock().unwrap().clone(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
