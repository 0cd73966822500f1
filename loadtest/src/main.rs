//! Load generator for komisi (open loop, latency corrected for coordinated
//! omission) and the raw-database baseline it is compared with. Every loop is
//! bounded in count and time and targets loopback only.
mod baseline;
mod cpu;
mod metrics;
mod reads;
mod seed;
mod sink;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The seed's writers free on their threads what the generator allocated on
/// its own, millions of small strings a minute: glibc's allocator spent a
/// third of the seed's CPU on that (arena locks, consolidation); mimalloc
/// frees across threads without them. The load generator's requests gain
/// the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "loadtest", about = "Load generator for komisi and the raw-database baseline")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the affiliate tree (idempotent).
    Setup(SetupArgs),
    /// Offer a fixed arrival rate for a while, then report.
    Run(RunArgs),
    /// Ramp the rate up to the highest one komisi sustains.
    FindMax(FindMaxArgs),
    /// The same durable transactions komisi needs per order, straight to MariaDB.
    Baseline(baseline::BaselineArgs),
    /// The operator's and storefront's reads at a fixed rate each: their latency.
    Reads(reads::ReadsArgs),
    /// Write a realistic, consistent history straight into an empty database.
    Seed(seed::SeedArgs),
    /// A webhook receiver that answers at once and measures deliveries and lag.
    Sink(sink::SinkArgs),
}

#[derive(Args, Clone)]
struct Target {
    /// komisi's address; several comma-separated (`http://a:8081,http://b:8082`)
    /// spread the requests round-robin over the instances, and their metrics
    /// are summed.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',', num_args = 1..)]
    base_url: Vec<String>,
    #[arg(long, env = "KOMISI_STOREFRONT_KEY", default_value = "loadtest")]
    storefront_key: String,
    /// komisi's pid, to report its memory (VmRSS, VmHWM).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Affiliates in the tree (100 roots, 900 mid-level, the rest leaves).
    #[arg(long, default_value_t = 10_000)]
    affiliates: usize,
}

#[derive(Args)]
struct SetupArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Clone)]
struct Mix {
    /// Share of requests that refund one item of an earlier order.
    #[arg(long, default_value_t = 0.05)]
    refund_share: f64,
    /// Share of requests that complete an earlier order.
    #[arg(long, default_value_t = 0.10)]
    complete_share: f64,
    /// Requests in flight at most; beyond it a request is counted as dropped.
    #[arg(long, default_value_t = 4_000)]
    max_in_flight: usize,
    /// Buyers to spread orders over.
    #[arg(long, default_value_t = 1_000_000)]
    buyers: u64,
    /// How orders spread over the leaf affiliates: `uniform`; `zipf:S` (the
    /// leaf of rank r gets orders in proportion to 1/r^S; `zipf` alone is
    /// S = 1.1, a realistic skew); `hot` (one affiliate gets every order).
    #[arg(long, default_value = "uniform", value_parser = parse_dist)]
    affiliates_dist: Dist,
    /// Tracked clicks (`POST /v1/clicks`) per new order, on the same
    /// affiliates; a new order then carries the last click id its affiliate
    /// got, besides its referral code. 0: no clicks.
    #[arg(long, default_value_t = 0.0)]
    clicks_per_order: f64,
    /// A control for the click mix: the same number of requests, sent to
    /// `GET /healthz` instead of `POST /v1/clicks` (what the request rate
    /// costs, whatever the route).
    #[arg(long)]
    clicks_as_healthz: bool,
    /// Offer the clicks (or their `GET /healthz` control) from a thread of
    /// their own at this nice value (19: the lowest priority), with their
    /// own connections; the orders' mix stays on the main runtime at normal
    /// priority. On one machine this stands in for clicks sent from other
    /// hosts: the generator's cost of sending 5 000 clicks a second then
    /// takes CPU only when komisi, MariaDB and Redis leave it idle. Open
    /// loop only (`--rate`); the order mix gets rate / (1 + clicks per
    /// order), the clicks the rest.
    #[arg(long, allow_hyphen_values = true)]
    clicks_nice: Option<i32>,
    /// Send the clicks (or their control) to this komisi instead of
    /// `--base-url` (another instance that serves the clicks; the orders
    /// carry its click ids, which verify only where its click key is the
    /// same, i.e. on the same database).
    #[arg(long)]
    clicks_base_url: Option<String>,
    /// Orders in US dollars at this rate into the program's IDR (sent as
    /// the order's `fx_rate`): every order converted, each unit price the
    /// rupiah one / 15 000 in cents. Left out: orders in IDR.
    #[arg(long)]
    fx_rate: Option<String>,
}

/// How orders spread over affiliates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dist {
    Uniform,
    Zipf(f64),
    Hot,
}

fn parse_dist(s: &str) -> Result<Dist, String> {
    match s.split_once(':') {
        None if s == "uniform" => Ok(Dist::Uniform),
        None if s == "hot" => Ok(Dist::Hot),
        None if s == "zipf" => Ok(Dist::Zipf(1.1)),
        Some(("zipf", exp)) => match exp.parse::<f64>() {
            Ok(e) if e > 0.0 && e.is_finite() => Ok(Dist::Zipf(e)),
            _ => Err(format!("zipf exponent {exp:?} must be a number > 0")),
        },
        _ => Err(format!("{s:?}: expected uniform, zipf, zipf:S or hot")),
    }
}

/// Picks the leaf affiliate of each new order (leaves pay every level, so
/// only the skew differs between distributions).
#[derive(Clone)]
struct Leaves {
    first: usize,
    count: usize,
    dist: Dist,
    zipf: Option<rand_distr::Zipf<f64>>,
}

impl Leaves {
    fn new(affiliates: usize, dist: Dist) -> Result<Self> {
        let first = 1000.min(affiliates.saturating_sub(1));
        let count = affiliates - first;
        let zipf = match dist {
            Dist::Zipf(s) => Some(rand_distr::Zipf::new(count as f64, s).map_err(|e| anyhow::anyhow!("zipf: {e}"))?),
            _ => None,
        };
        Ok(Self { first, count, dist, zipf })
    }

    fn pick(&self, rng: &mut impl Rng) -> usize {
        match (self.dist, &self.zipf) {
            (Dist::Hot, _) => self.first,
            (Dist::Zipf(_), Some(z)) => {
                // Ranks are 1..=count; rank 1 is the first leaf.
                let rank = rng.sample(z) as usize;
                self.first + rank.clamp(1, self.count) - 1
            }
            _ => rng.random_range(self.first..self.first + self.count),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    mix: Mix,
    /// Requests per second offered (open loop).
    #[arg(long, required_unless_present = "clients", conflicts_with = "clients")]
    rate: Option<f64>,
    /// Closed loop instead: this many clients, each sending its next request
    /// when the last is answered (saturation, whatever komisi's capacity).
    #[arg(long)]
    clients: Option<usize>,
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Longest wait for the backlog to drain after the run.
    #[arg(long, default_value_t = 300)]
    drain_timeout_secs: u64,
}

#[derive(Args)]
struct FindMaxArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    mix: Mix,
    #[arg(long, default_value_t = 100.0)]
    start_rate: f64,
    #[arg(long, default_value_t = 1.25)]
    factor: f64,
    #[arg(long, default_value_t = 20_000.0)]
    max_rate: f64,
    #[arg(long, default_value_t = 20)]
    step_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup(a) => setup(&a.target).await,
        Cmd::Run(a) => {
            let offer = match (a.rate, a.clients) {
                (Some(rate), _) => Offer::Rate(rate),
                (None, Some(clients)) => Offer::Clients(clients),
                (None, None) => bail!("--rate or --clients"),
            };
            let report = run(
                &a.target,
                &a.mix,
                offer,
                Duration::from_secs(a.duration_secs),
                Duration::from_secs(a.drain_timeout_secs),
            )
            .await?;
            println!("{}", compact(&report));
            Ok(())
        }
        Cmd::FindMax(a) => find_max(a).await,
        Cmd::Baseline(a) => baseline::run(a).await,
        Cmd::Reads(a) => reads::run(a).await,
        Cmd::Seed(a) => seed::run(a).await,
        Cmd::Sink(a) => sink::run(a).await,
    }
}

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(4_096).timeout(Duration::from_secs(30)).build()?)
}

fn parent_of(n: usize) -> Option<usize> {
    match n {
        0..100 => None,
        100..1000 => Some(n % 100),
        _ => Some(100 + n % 900),
    }
}

async fn setup(t: &Target) -> Result<()> {
    let http = client()?;
    let started = Instant::now();
    // Parents before children: roots, then mid-level, then leaves.
    for range in
        [0..100.min(t.affiliates), 100.min(t.affiliates)..1000.min(t.affiliates), 1000.min(t.affiliates)..t.affiliates]
    {
        let results: Vec<Result<()>> = futures::stream::iter(range)
            .map(|n| {
                let http = http.clone();
                async move {
                    let body = json!({"id": format!("aff-{n}"), "name": format!("Affiliate {n}"),
                        "parent_id": parent_of(n).map(|p| format!("aff-{p}")), "referral_code": format!("code-{n}")});
                    let r = http
                        .post(format!("{}/v1/affiliates", t.base_url[0]))
                        .bearer_auth(&t.storefront_key)
                        .json(&body)
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        bail!("affiliate {n}: {} {}", r.status(), r.text().await.unwrap_or_default());
                    }
                    Ok(())
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<_>>>()?;
    }
    println!("{} affiliates ready in {:.1}s", t.affiliates, started.elapsed().as_secs_f64());
    Ok(())
}

use futures::StreamExt;

const CATEGORIES: [&str; 4] = ["fashion", "electronics", "food", "gift-card"];

fn new_order(id: &str, mix: &Mix, leaves: &Leaves, rng: &mut impl Rng) -> (Value, usize, usize) {
    let leaf = leaves.pick(rng);
    let items = rng.random_range(1..=5);
    // The same draws either way: only the currency differs.
    let price = |rupiah: u64| match mix.fx_rate {
        None => rupiah.to_string(),
        Some(_) => format!("{}.{:02}", rupiah / 15_000, rupiah % 15_000 * 100 / 15_000),
    };
    let mut body = json!({
        "id": id,
        "buyer_id": format!("buyer-{}", rng.random_range(0..mix.buyers)),
        "referral_code": format!("code-{leaf}"),
        "currency": if mix.fx_rate.is_some() { "USD" } else { "IDR" },
        "items": (0..items).map(|n| json!({
            "sku": format!("sku-{n}"),
            "category": CATEGORIES[rng.random_range(0..CATEGORIES.len())],
            "quantity": rng.random_range(1..=3),
            "unit_price": price(rng.random_range(10..2_000) * 1_000),
        })).collect::<Vec<_>>(),
    });
    if let Some(rate) = &mix.fx_rate {
        body["fx_rate"] = json!(rate);
    }
    (body, items, leaf)
}

#[derive(Default)]
struct Counters {
    orders_ok: AtomicU64,
    clicks_ok: AtomicU64,
    other_ok: AtomicU64,
    errors: AtomicU64,
    error_kinds: Mutex<std::collections::BTreeMap<String, u64>>,
    dropped: AtomicU64,
}

fn quantiles_ms(h: &Histogram<u64>) -> Value {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    json!({"p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": h.max() as f64 / 1000.0, "count": h.len()})
}

fn rss(pid: Option<u32>) -> Value {
    let Some(pid) = pid else { return Value::Null };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return Value::Null };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb as f64 / 1024.0)
    };
    json!({"rss_mb": field("VmRSS:"), "peak_rss_mb": field("VmHWM:")})
}

/// One request of the mix: a new order, or a refund or completion of an
/// earlier accepted one.
struct Request {
    url: String,
    body: Value,
    /// A new order: its id and item count (kept once accepted).
    order: Option<(String, usize)>,
    /// A click for this leaf (its id is kept for the leaf's next order).
    click: Option<usize>,
    /// A GET (the click mix's control), not a POST.
    get: bool,
}

/// What every request of a run shares: the mix, the client, the counts.
struct Load {
    http: reqwest::Client,
    key: String,
    bases: Vec<String>,
    mix: Mix,
    leaves: Leaves,
    run_id: String,
    counters: Counters,
    latency: Mutex<Histogram<u64>>,
    accepted: Mutex<Vec<(String, usize)>>,
    in_flight: AtomicUsize,
    /// Clicks in flight from the click thread (`--clicks-nice`), counted
    /// apart: a click backlog there never drops the orders' mix.
    clicks_in_flight: AtomicUsize,
    /// The last click id each leaf got.
    clicks: Mutex<std::collections::HashMap<usize, String>>,
}

impl Load {
    /// Request `i` of the run (`i` is unique within the run).
    fn next(&self, i: u64, rng: &mut impl Rng) -> Request {
        let roll: f64 = rng.random();
        let earlier = {
            let list = self.accepted.lock().unwrap();
            (!list.is_empty()).then(|| list[rng.random_range(0..list.len())].clone())
        };
        let base = &self.bases[i as usize % self.bases.len()];
        let cpo = self.mix.clicks_per_order;
        if cpo > 0.0 && self.mix.clicks_nice.is_none() && rng.random::<f64>() < cpo / (cpo + 1.0) {
            return self.click(i, rng);
        }
        match earlier {
            Some((order, items)) if roll < self.mix.refund_share => Request {
                url: format!("{base}/v1/orders/{order}/refunds"),
                body: json!({"refund_id": format!("r-{}-{i}", self.run_id), "items": [{"sku": format!("sku-{}", rng.random_range(0..items)), "quantity": 1}]}),
                order: None,
                click: None,
                get: false,
            },
            Some((order, _)) if roll < self.mix.refund_share + self.mix.complete_share => Request {
                url: format!("{base}/v1/orders/{order}/complete"),
                body: Value::Null,
                order: None,
                click: None,
                get: false,
            },
            _ => {
                let id = format!("lt-{}-{i}", self.run_id);
                let (mut body, items, leaf) = new_order(&id, &self.mix, &self.leaves, rng);
                if let Some(click) = self.clicks.lock().unwrap().get(&leaf) {
                    body["click_id"] = json!(click);
                }
                Request { url: format!("{base}/v1/orders"), body, order: Some((id, items)), click: None, get: false }
            }
        }
    }

    /// Click `i` of the run (or its control, a `GET /healthz`).
    fn click(&self, i: u64, rng: &mut impl Rng) -> Request {
        let base = self.mix.clicks_base_url.as_ref().unwrap_or(&self.bases[i as usize % self.bases.len()]);
        let leaf = self.leaves.pick(rng);
        if self.mix.clicks_as_healthz {
            return Request { url: format!("{base}/healthz"), body: Value::Null, order: None, click: None, get: true };
        }
        Request {
            url: format!("{base}/v1/clicks"),
            body: json!({"referral_code": format!("code-{leaf}")}),
            order: None,
            click: Some(leaf),
            get: false,
        }
    }

    /// The count `r` is in flight in: the click thread's own for its clicks.
    fn in_flight_of(&self, r: &Request) -> &AtomicUsize {
        match self.mix.clicks_nice.is_some() && (r.click.is_some() || r.get) {
            true => &self.clicks_in_flight,
            false => &self.in_flight,
        }
    }

    /// Sends a request counted in flight (see [`Load::in_flight_of`]) by the caller, and counts its
    /// answer; an order's latency counts from `since`.
    async fn send(&self, r: Request, since: Instant) {
        self.send_with(&self.http, r, since).await
    }

    /// [`Load::send`] on the given client (the click thread has its own).
    async fn send_with(&self, http: &reqwest::Client, r: Request, since: Instant) {
        let in_flight = self.in_flight_of(&r);
        let mut req = if r.get { http.get(r.url) } else { http.post(r.url) }.bearer_auth(&self.key);
        if !r.body.is_null() {
            req = req.json(&r.body);
        }
        let result = req.send().await;
        let elapsed = since.elapsed().as_micros() as u64;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        let counters = &self.counters;
        match result {
            Ok(answer) if answer.status().is_success() => match r.order {
                Some(order) => {
                    counters.orders_ok.fetch_add(1, Ordering::Relaxed);
                    let _ = self.latency.lock().unwrap().record(elapsed.max(1));
                    self.accepted.lock().unwrap().push(order);
                }
                None => {
                    counters.other_ok.fetch_add(1, Ordering::Relaxed);
                    if let Some(leaf) = r.click {
                        counters.clicks_ok.fetch_add(1, Ordering::Relaxed);
                        if let Ok(v) = answer.json::<Value>().await {
                            if let Some(id) = v["click_id"].as_str() {
                                self.clicks.lock().unwrap().insert(leaf, id.to_owned());
                            }
                        }
                    }
                }
            },
            // Refunding an item already fully refunded is a legitimate 422 in the mix.
            Ok(answer) if answer.status() == 422 && r.order.is_none() => {
                counters.other_ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                // What went wrong, by status (or the client's error kind).
                let what = match other {
                    Ok(answer) => answer.status().as_u16().to_string(),
                    Err(e) if e.is_timeout() => "timeout".into(),
                    Err(e) if e.is_connect() => "connect".into(),
                    Err(_) => "transport".into(),
                };
                *counters.error_kinds.lock().unwrap().entry(what).or_default() += 1;
            }
        }
    }
}

/// How the requests are offered.
#[derive(Debug, Clone, Copy)]
enum Offer {
    /// Open loop: request i is due at i / rate whatever happened before.
    Rate(f64),
    /// Closed loop: this many clients, each sending its next request as soon
    /// as the last is answered — komisi's saturation, whatever it is.
    Clients(usize),
}

async fn run(t: &Target, mix: &Mix, offer: Offer, duration: Duration, drain_timeout: Duration) -> Result<Value> {
    if mix.clicks_nice.is_some() && matches!(offer, Offer::Clients(_)) {
        bail!("--clicks-nice needs the open loop (--rate)");
    }
    let http = client()?;
    let before = metrics::scrape_all(&http, &t.base_url).await.context("komisi /metrics")?;
    let load = Arc::new(Load {
        http: http.clone(),
        key: t.storefront_key.clone(),
        bases: t.base_url.clone(),
        mix: mix.clone(),
        leaves: Leaves::new(t.affiliates, mix.affiliates_dist)?,
        run_id: uuid::Uuid::now_v7().simple().to_string(),
        counters: Counters::default(),
        latency: Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?),
        accepted: Mutex::new(Vec::new()),
        in_flight: AtomicUsize::new(0),
        clicks_in_flight: AtomicUsize::new(0),
        clicks: Mutex::new(Default::default()),
    });
    let backlog = Arc::new(Mutex::new(Vec::new()));
    let base_open = metrics::open_events(&before);
    let cpu_before = cpu::Sample::take(t.server_pid);
    let sampler = {
        let (http, base, backlog) = (http.clone(), t.base_url.clone(), backlog.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                if let Ok(m) = metrics::scrape_all(&http, &base).await {
                    backlog.lock().unwrap().push((started.elapsed().as_secs(), metrics::open_events(&m) - base_open));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut click_thread = None;
    match offer {
        Offer::Rate(mut rate) => {
            if let (Some(nice), cpo) = (mix.clicks_nice, mix.clicks_per_order) {
                if cpo > 0.0 {
                    let clicks_rate = rate * cpo / (1.0 + cpo);
                    click_thread = Some(clicks_apart(load.clone(), clicks_rate, duration, nice, started));
                    rate -= clicks_rate;
                }
            }
            let interval = Duration::from_secs_f64(1.0 / rate);
            let total = (rate * duration.as_secs_f64()) as u64;
            let mut rng = rand::rng();
            for i in 0..total {
                // Open loop: request i is due at a fixed time whatever happened
                // before, and its latency counts from then (no coordinated omission).
                let due = started + interval.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                if load.in_flight.load(Ordering::Relaxed) >= mix.max_in_flight {
                    load.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let request = load.next(i, &mut rng);
                load.in_flight.fetch_add(1, Ordering::Relaxed);
                let load = load.clone();
                tasks.push(tokio::spawn(async move { load.send(request, due).await }));
            }
        }
        Offer::Clients(clients) => {
            let until = started + duration;
            for c in 0..clients {
                let load = load.clone();
                tasks.push(tokio::spawn(async move {
                    use rand::SeedableRng;
                    let mut rng = rand::rngs::StdRng::from_os_rng();
                    let mut i = c as u64;
                    while Instant::now() < until {
                        let request = load.next(i, &mut rng);
                        load.in_flight.fetch_add(1, Ordering::Relaxed);
                        load.send(request, Instant::now()).await;
                        i += clients as u64;
                    }
                }));
            }
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    if let Some(thread) = click_thread {
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the click thread panicked"))??;
    }
    let offered_for = started.elapsed();
    // Drain: until every accepted event is applied.
    let drain_started = Instant::now();
    let mut drained = false;
    while drain_started.elapsed() < drain_timeout {
        if metrics::open_events(&metrics::scrape_all(&http, &t.base_url).await?) - base_open <= 0.0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = drain_started.elapsed();
    let cpu_after = cpu::Sample::take(t.server_pid);
    sampler.abort();
    let after = metrics::scrape_all(&http, &t.base_url).await?;
    let done = after.sum("komisi_events_total", &[("outcome", "done")])
        - before.sum("komisi_events_total", &[("outcome", "done")]);
    let lag = metrics::histogram_delta(&before, &after, "komisi_event_lag_seconds");
    let orders_server = metrics::histogram_delta_with(
        &before,
        &after,
        "komisi_http_request_duration_seconds",
        &[("method", "POST"), ("route", "/v1/orders")],
    );
    let counters = &load.counters;
    let orders_ok = counters.orders_ok.load(Ordering::Relaxed);
    let h = load.latency.lock().unwrap();
    let (offered_rate, clients) = match offer {
        Offer::Rate(r) => (Some(r), None),
        Offer::Clients(c) => (None, Some(c)),
    };
    Ok(json!({
        "affiliates_dist": format!("{:?}", mix.affiliates_dist),
        "offered_rate": offered_rate,
        "closed_loop_clients": clients,
        "duration_s": offered_for.as_secs_f64(),
        "orders_accepted": orders_ok,
        "other_requests_ok": counters.other_ok.load(Ordering::Relaxed),
        "clicks_ok": counters.clicks_ok.load(Ordering::Relaxed),
        "clicks_per_s": counters.clicks_ok.load(Ordering::Relaxed) as f64 / offered_for.as_secs_f64(),
        "errors": counters.errors.load(Ordering::Relaxed),
        "errors_by_kind": counters.error_kinds.lock().unwrap().clone(),
        "dropped": counters.dropped.load(Ordering::Relaxed),
        "accepted_per_s": orders_ok as f64 / offered_for.as_secs_f64(),
        "intake_latency": quantiles_ms(&h),
        // komisi's own view of the same orders (its histogram's bucket bounds).
        "server_orders_upper_bound_s": {
            "p50": metrics::quantile(&orders_server, 0.5),
            "p99": metrics::quantile(&orders_server, 0.99),
        },
        "events_applied": done,
        "drained": drained,
        "drain_s": drain.as_secs_f64(),
        "end_to_end_events_per_s": done / (offered_for + drain).as_secs_f64(),
        "lag_upper_bound_s": {"p50": metrics::quantile(&lag, 0.5), "p99": metrics::quantile(&lag, 0.99)},
        "backlog_every_s": backlog.lock().unwrap().iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        "server_memory": rss(t.server_pid),
        "cpu_ms_per_event": cpu_before.per_event(&cpu_after, done),
    }))
}

/// Offers `rate` clicks a second for `duration` from `started`, open loop,
/// from a thread of its own at nice value `nice` with a runtime and
/// connections of its own (see `--clicks-nice`).
fn clicks_apart(
    load: Arc<Load>,
    rate: f64,
    duration: Duration,
    nice: i32,
    started: Instant,
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || {
        // On Linux a nice value belongs to a thread: `who` = this thread's id
        // sets it for this thread (and the threads it starts) only.
        // SAFETY: plain system calls on this thread's own id.
        let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if set != 0 {
            bail!("setpriority({nice}): {}", std::io::Error::last_os_error());
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            use rand::SeedableRng;
            let http = client()?;
            let mut rng = rand::rngs::StdRng::from_os_rng();
            let interval = Duration::from_secs_f64(1.0 / rate);
            let total = (rate * duration.as_secs_f64()) as u64;
            let mut tasks = Vec::with_capacity(total as usize);
            for i in 0..total {
                let due = started + interval.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                if load.clicks_in_flight.load(Ordering::Relaxed) >= load.mix.max_in_flight {
                    load.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let request = load.click(i, &mut rng);
                load.clicks_in_flight.fetch_add(1, Ordering::Relaxed);
                let (load, http) = (load.clone(), http.clone());
                tasks.push(tokio::spawn(async move { load.send_with(&http, request, due).await }));
            }
            for task in tasks {
                let _ = task.await;
            }
            Ok(())
        })
    })
}

async fn find_max(a: FindMaxArgs) -> Result<()> {
    let mut rate = a.start_rate;
    let mut best: Option<Value> = None;
    while rate <= a.max_rate {
        let report =
            run(&a.target, &a.mix, Offer::Rate(rate), Duration::from_secs(a.step_secs), Duration::from_secs(60))
                .await?;
        let lag_p99 = report["lag_upper_bound_s"]["p99"].as_f64().unwrap_or(f64::INFINITY);
        let drain = report["drain_s"].as_f64().unwrap_or(f64::INFINITY);
        let errors = report["errors"].as_u64().unwrap_or(0) + report["dropped"].as_u64().unwrap_or(0);
        // Sustained: the backlog drains within 2 s of the end, lag p99 under 1 s, no errors.
        let sustained = drain <= 2.0 && lag_p99 <= 1.0 && errors == 0;
        eprintln!(
            "rate {rate:.0}/s: accepted {:.0}/s, intake p99 {} ms, lag p99 ≤ {lag_p99} s, drain {drain:.1} s, errors {errors} → {}",
            report["accepted_per_s"].as_f64().unwrap_or(0.0),
            report["intake_latency"]["p99_ms"],
            if sustained { "sustained" } else { "NOT sustained" }
        );
        if !sustained {
            break;
        }
        best = Some(report);
        rate *= a.factor;
    }
    println!("{}", compact(&json!({"max_sustained": best})));
    Ok(())
}

/// Pretty JSON, with number arrays (the backlog series) kept on one line.
fn compact(v: &Value) -> String {
    let mut v = v.clone();
    fn flatten(v: &mut Value) {
        match v {
            Value::Object(m) => m.values_mut().for_each(flatten),
            Value::Array(a) if a.iter().all(Value::is_number) => {
                *v = Value::String(serde_json::to_string(a).unwrap_or_default())
            }
            _ => {}
        }
    }
    flatten(&mut v);
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse_and_skew_as_named() {
        assert_eq!(parse_dist("uniform"), Ok(Dist::Uniform));
        assert_eq!(parse_dist("hot"), Ok(Dist::Hot));
        assert_eq!(parse_dist("zipf"), Ok(Dist::Zipf(1.1)));
        assert_eq!(parse_dist("zipf:0.8"), Ok(Dist::Zipf(0.8)));
        assert!(parse_dist("zipf:-1").is_err() && parse_dist("pareto").is_err());
        let mut rng = rand::rng();
        let hot = Leaves::new(10_000, Dist::Hot).unwrap();
        assert!((0..100).all(|_| hot.pick(&mut rng) == 1000));
        let zipf = Leaves::new(10_000, Dist::Zipf(1.1)).unwrap();
        let mut counts = std::collections::HashMap::<usize, u32>::new();
        for _ in 0..20_000 {
            let leaf = zipf.pick(&mut rng);
            assert!((1000..10_000).contains(&leaf));
            *counts.entry(leaf).or_default() += 1;
        }
        // Rank 1 gets ~1/H(9000, 1.1) ≈ 1/5.3 of the orders; rank 10 ~8 % of that.
        let top = counts[&1000];
        assert!(top > 2_500 && top < 5_500, "{top}");
        assert!(counts.get(&1009).copied().unwrap_or(0) < top / 5);
        let uniform = Leaves::new(10_000, Dist::Uniform).unwrap();
        assert!((0..1000).all(|_| (1000..10_000).contains(&uniform.pick(&mut rng))));
    }
}
