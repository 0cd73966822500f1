//! The chaos proof (issue 14): the real `komisi` binary, on a throwaway
//! MariaDB of its own and a Redis key prefix of its own, takes a steady stream
//! of orders, refunds, cancellations and completions while it is SIGKILLed and
//! restarted, its Redis keys are wiped and MariaDB is killed and restarted.
//! Then an independent checker recomputes every order's entitlement from the
//! client's own record of what was answered 2xx and the rules of
//! docs/RULES.md — written out in this file, nothing taken from komisi — and
//! compares it with every order, balance and points total the server reports.
//!
//! The run also proves the webhook outbox under those faults: one endpoint,
//! registered before the stream, receives every `commission.*` and
//! `reward.*` message at the receiver of the API tests
//! (tests/api/webhook_receiver.rs: node and the official `standardwebhooks`
//! library, `npm ci` in tests/webhooks). Before each SIGKILL the receiver
//! holds its answers, so the kill lands mid-attempt. After the checker, once
//! komisi has no pending message (and none failed), every delivery must be
//! verified by the library, a `webhook-id` delivered twice must carry the same
//! bytes, the ids delivered must be exactly the messages stored for the
//! endpoint, and per order the distinct messages' lines must add up to the
//! checker's expected lines (per affiliate, level and kind) and points (per
//! kind), with the (pending, approved) split the checker expects: a message
//! from a rolled-back transaction, or a lost one, breaks these sums.
//!
//! ```sh
//! cargo test --test chaos -- --ignored --nocapture
//! ```
//!
//! `KOMISI_CHAOS_SECS` (default 60) is the stream's duration,
//! `KOMISI_CHAOS_FAULTS=0` runs the same stream without faults (the soak),
//! `KOMISI_CHAOS_RATE` the orders per second (default 80), `KOMISI_CHAOS_SEED`
//! the random seed, `KOMISI_CHAOS_KEEP=1` keeps the temp dir (logs, data);
//! Redis is `KOMISI_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//! What it proves and the figures measured: docs/RELIABILITY.md.
//!
//! Determinism: tiers, milestones and the first-order bonus depend on which
//! orders were placed earlier (RULES.md rules 4, 5, 8), frozen when an order
//! is first processed, and a buyer's link to an affiliate (RULES.md
//! "Attribution", `customer_link: lifetime`) is made by the buyer's first
//! attributed order at intake. So orders go out in *lanes*: each lane owns
//! some affiliates (their coupons and clicks, and every order attributed to
//! them, by whatever source) and some buyers, and sends one request at a
//! time, so a buyer's link is decided by its lane's send order. A lane
//! keeps two clocks for `placed_at`, neither ever going back: the *past*
//! one, a minute per order (every tenth repeats the previous instant, to
//! exercise the tie by order id), runs across the start of the previous
//! month; the *now* one is the real time of sending (ties within a second go
//! by order id), for orders carrying clicks, which komisi dates when they
//! happen and which attribute only orders placed after them (5 minutes of
//! skew) within `click_window_days`. A buyer uses one clock only (visitors
//! the now one, everyone else the past one), and the two clocks never share
//! a Jakarta month. When a lane's order is first processed, every earlier
//! order of its affiliate (in that month) and of its buyer is already
//! committed, and no later one can come before it: the facts are
//! unambiguous and can be recomputed from the record alone.
use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, TimeDelta, TimeZone, Utc};
use chrono_tz::Asia::Jakarta;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, MySqlConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use webhook_receiver::{Delivery, Receiver, Reply};

/// The webhook receiver of the API tests: a node server that checks every
/// delivery with the official `standardwebhooks` library.
#[path = "api/webhook_receiver.rs"]
mod webhook_receiver;

const STOREFRONT_KEY: &str = "chaos-storefront";
const ADMIN_KEY: &str = "chaos-admin";
/// Orders go out in this many sequential lanes.
const LANES: usize = 6;
/// Share of a lane's operations that place an order (the rest: refunds, cancels, completions).
const ORDER_SHARE: f64 = 0.70;
/// A request is retried (connection refused, timeout, 5xx) this long at most.
const RETRY_DEADLINE: Duration = Duration::from_secs(180);
const RETRY_WAIT: Duration = Duration::from_millis(150);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(600);
/// The komisi of the run retries a webhook attempt after these pauses
/// (`KOMISI_WEBHOOK_RETRY_DELAYS`): eight attempts within about two minutes.
const WEBHOOK_RETRY_DELAYS: &str = "1s,2s,5s,10s,20s,30s,60s";
/// Signing secrets sealed at rest (`KOMISI_WEBHOOK_SECRET_KEY`, 32 bytes):
/// every restarted process must open the stored secret again.
const WEBHOOK_SECRET_KEY: &str = "Y2hhb3MtcnVuLXdlYmhvb2stc2VhbGluZy1rZXkhISE=";
/// The endpoint's subscription: every ledger change and every approval
/// (approvals are not ledger changes: they are checked apart).
const WEBHOOK_TYPES: [&str; 2] = ["commission.*", "reward.*"];
/// After the checker, komisi must have delivered every message within this.
const WEBHOOK_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Before each SIGKILL of komisi the receiver holds its next answers this
/// long (as many as komisi has attempts in flight per endpoint), and the
/// kill comes [`WEBHOOK_HOLD_BEFORE_KILL`] later: it lands in the middle of
/// attempts the receiver has logged and komisi has not recorded, which are
/// sent again once their lease runs out — the duplicates to check.
const WEBHOOK_HOLD: Duration = Duration::from_secs(2);
const WEBHOOK_HELD_ANSWERS: usize = 8;
const WEBHOOK_HOLD_BEFORE_KILL: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ settings

struct Settings {
    secs: u64,
    faults: bool,
    rate: u64,
    seed: u64,
    keep: bool,
}

/// The shared Redis (as for the rest of the suite: `KOMISI_TEST_REDIS_URL`).
fn redis_url() -> String {
    std::env::var("KOMISI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let seed = env_u64("KOMISI_CHAOS_SEED", rand::rng().random_range(0..1_000_000));
        Self {
            secs: env_u64("KOMISI_CHAOS_SECS", 60).max(10),
            faults: env_u64("KOMISI_CHAOS_FAULTS", 1) != 0,
            rate: env_u64("KOMISI_CHAOS_RATE", 80).max(1),
            seed,
            keep: env_u64("KOMISI_CHAOS_KEEP", 0) != 0,
        }
    }
}

// ------------------------------------------------------------------ the program

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

/// The commission program of the run, in the checker's own terms: it is PUT
/// to komisi as JSON and used by [`expect`] to recompute every order.
struct Program {
    levels: Vec<Decimal>,
    category_rates: BTreeMap<&'static str, Decimal>,
    excluded: BTreeSet<&'static str>,
    min_order_amount: Decimal,
    cap: Decimal,
    /// (monthly_sales_from, bonus_rate), increasing.
    tiers: Vec<(Decimal, Decimal)>,
    /// (nth_order_in_month, bonus).
    milestones: Vec<(u32, Decimal)>,
    points_rate: Decimal,
    first_order_bonus: i64,
    /// Rule 7's qualification: an ancestor's own sales in the month before
    /// the order must reach this.
    qualification: Decimal,
}

/// The affiliate whose own monthly cap (`PUT /admin/affiliates/{id}/caps`)
/// binds during the run, and the cap.
const CAPPED: &str = "a4-1";
const CAP: &str = "150000";

impl Program {
    /// Every rule in play: three levels, two category rates, an excluded
    /// category, a minimum, a cap, three tiers, three milestones, suspended
    /// uplines skipped, holding_days 0 (completion approves at once), points.
    /// Half-even rounding at scale 0, so prices with cents round both ways.
    fn chaos() -> Self {
        Self {
            levels: vec![dec("0.10"), dec("0.03"), dec("0.01")],
            category_rates: [("electronics", dec("0.04")), ("beauty", dec("0.15"))].into(),
            excluded: ["gift-card"].into(),
            min_order_amount: dec("50000"),
            cap: dec("1000000"),
            tiers: vec![(dec("5000000"), dec("0.01")), (dec("30000000"), dec("0.02")), (dec("100000000"), dec("0.03"))],
            milestones: vec![(3, dec("25000")), (10, dec("50000")), (40, dec("200000"))],
            points_rate: dec("0.01"),
            first_order_bonus: 5000,
            qualification: dec("300000"),
        }
    }

    fn json(&self) -> Value {
        let s = |d: &Decimal| d.to_string();
        json!({
            "currency": "IDR",
            "scale": 0,
            "rounding": "half_even",
            "timezone": "Asia/Jakarta",
            "levels": self.levels.iter().map(s).collect::<Vec<_>>(),
            "category_rates": self.category_rates.iter().map(|(c, r)| (c.to_string(), json!(s(r)))).collect::<serde_json::Map<_, _>>(),
            "excluded_categories": self.excluded.iter().collect::<Vec<_>>(),
            "min_order_amount": s(&self.min_order_amount),
            "max_commission_per_order": s(&self.cap),
            "tiers": self.tiers.iter().map(|(from, rate)| json!({"monthly_sales_from": s(from), "bonus_rate": s(rate)})).collect::<Vec<_>>(),
            "milestones": self.milestones.iter().map(|(n, b)| json!({"nth_order_in_month": n, "bonus": s(b)})).collect::<Vec<_>>(),
            "skip_inactive_upline": true,
            "holding_days": 0,
            "buyer_rewards": {"points_rate": s(&self.points_rate), "first_order_bonus": self.first_order_bonus.to_string()},
            // The default precedence (customer_link, coupon, click,
            // referral_code), the default 30-day last-click window, and
            // buyers linked for life to the affiliate of their first
            // attributed order: what [`decide`] recomputes.
            "attribution": {"customer_link": {"mode": "lifetime"}},
            "upline_qualification": {"min_personal_month_sales": s(&self.qualification)},
        })
    }

    /// Rule 9: scale 0, half-even.
    fn round(&self, x: Decimal) -> Decimal {
        x.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
    }

    fn level1_rate(&self, category: &str) -> Decimal {
        self.category_rates.get(category).copied().unwrap_or(self.levels[0])
    }
}

// ------------------------------------------------------------------ the tree

struct Affiliate {
    id: String,
    code: String,
    parent: Option<usize>,
    suspended: bool,
    /// The affiliate's own shopper account (self-referral).
    buyer_id: Option<String>,
    /// A coupon code the affiliate holds, as given to komisi (mixed case).
    coupon: Option<String>,
}

/// Five levels: 2 roots, then 4, 8, 12 and 16 affiliates (42 in all).
const LEVEL_SIZES: [usize; 5] = [2, 4, 8, 12, 16];
/// Suspended before the stream: chains with one, two and three suspended
/// ancestors in a row (a4-6 → a3-4 → a2-2 → a1-1 → a0-0), and one leaf.
const SUSPENDED: [&str; 6] = ["a1-1", "a2-2", "a2-5", "a3-4", "a3-9", "a4-3"];
const WITH_OWN_BUYER: [&str; 3] = ["a4-0", "a4-5", "a3-7"];

/// Five of each lane's seven affiliates hold a coupon code (four of the
/// suspended ones among them: a coupon of a suspended affiliate attributes
/// the order, which then pays nobody).
fn holds_coupon(index: usize) -> bool {
    (index / LANES) % 3 != 1
}

fn tree() -> Vec<Affiliate> {
    let mut out: Vec<Affiliate> = Vec::new();
    let mut first_of_level = 0;
    for (level, &size) in LEVEL_SIZES.iter().enumerate() {
        let parent_first = first_of_level - if level > 0 { LEVEL_SIZES[level - 1] } else { 0 };
        for j in 0..size {
            let id = format!("a{level}-{j}");
            let parent = (level > 0).then(|| parent_first + j * LEVEL_SIZES[level - 1] / size);
            out.push(Affiliate {
                code: format!("code-{id}"),
                parent,
                suspended: SUSPENDED.contains(&id.as_str()),
                buyer_id: WITH_OWN_BUYER.contains(&id.as_str()).then(|| format!("self-{id}")),
                coupon: holds_coupon(out.len()).then(|| format!("Promo-{id}")),
                id,
            });
        }
        first_of_level += size;
    }
    out
}

fn lane_of_affiliate(index: usize) -> usize {
    index % LANES
}

// ------------------------------------------------------------------ the client-side record

#[derive(Clone, Debug)]
struct Item {
    sku: String,
    category: &'static str,
    quantity: u32,
    unit_price: Decimal,
}

/// The order's `referral_code` or `affiliate_id` field.
#[derive(Clone, Debug)]
enum Via {
    Code(usize),
    Id(usize),
    UnknownCode,
    UnknownId,
    Nobody,
}

/// One of the order's `coupon_codes`.
#[derive(Clone, Debug)]
enum CouponSent {
    /// The affiliate's code, spelled as sent (in some case).
    Held(usize, String),
    Unknown(String),
}

/// One of the order's click ids, as `POST /v1/clicks` answered it.
#[derive(Clone, Debug)]
struct ClickSent {
    id: String,
    /// The affiliate and time of the click (komisi's answer).
    affiliate: usize,
    at: DateTime<Utc>,
    /// Changed by the lane after komisi signed it: the signature cannot verify.
    tampered: bool,
}

impl ClickSent {
    /// The same id with its last character changed (in the signature).
    fn tampered(&self) -> Self {
        let mut id = self.id.clone();
        let last = id.pop().expect("a click id");
        id.push(if last == 'A' { 'B' } else { 'A' });
        Self { id, tampered: true, ..self.clone() }
    }
}

/// The rate table the run puts before its stream (in force since 2000, so
/// for every order): an order in one of these currencies without `fx_rate`
/// takes its rate from it.
const TABLE_RATES: [(&str, &str); 3] = [("USD", "15650.25"), ("JPY", "104.5"), ("KWD", "51000.125")];

/// An order in another currency than the program's (RULES.md "Currencies").
#[derive(Clone, Debug)]
struct FxSent {
    currency: &'static str,
    /// 1 unit of `currency` = `rate` IDR.
    rate: Decimal,
    /// Sent as the order's `fx_rate` (else the table's).
    in_body: bool,
}

/// An order answered 2xx, with every lifecycle request on it answered 2xx.
#[derive(Clone, Debug)]
struct OrderRec {
    id: String,
    buyer: String,
    via: Via,
    coupons: Vec<CouponSent>,
    /// In the order the lane put them (not always newest last: komisi's
    /// choice goes by the clicks' own time, the list order only breaks ties).
    clicks: Vec<ClickSent>,
    placed_at: DateTime<Utc>,
    /// Another currency than the program's, at this rate.
    fx: Option<FxSent>,
    /// Unit prices in the order's currency.
    items: Vec<Item>,
    /// Refunded quantity per item.
    refunded: Vec<u32>,
    refunds: u32,
    cancelled: bool,
    completed: bool,
    /// When its first attempt was sent, and when the last was answered 2xx:
    /// an order answered before another was sent was stored before that
    /// one was processed (rule 7's qualification reads such orders).
    sent_at: Instant,
    accepted_at: Instant,
}

impl OrderRec {
    fn body(&self, affs: &[Affiliate]) -> Value {
        let mut body = json!({
            "id": self.id,
            "buyer_id": self.buyer,
            "currency": self.fx.as_ref().map_or("IDR", |f| f.currency),
            "placed_at": self.placed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "items": self.items.iter().map(|i| json!({
                "sku": i.sku, "category": i.category, "quantity": i.quantity, "unit_price": i.unit_price.to_string(),
            })).collect::<Vec<_>>(),
        });
        if let Some(fx) = self.fx.as_ref().filter(|f| f.in_body) {
            body["fx_rate"] = json!(fx.rate.to_string());
        }
        match self.via {
            Via::Code(a) => body["referral_code"] = json!(affs[a].code),
            Via::Id(a) => body["affiliate_id"] = json!(affs[a].id),
            Via::UnknownCode => body["referral_code"] = json!("code-nobody"),
            Via::UnknownId => body["affiliate_id"] = json!("nobody"),
            Via::Nobody => {}
        }
        if !self.coupons.is_empty() {
            let codes: Vec<&str> = self
                .coupons
                .iter()
                .map(|c| match c {
                    CouponSent::Held(_, code) | CouponSent::Unknown(code) => code.as_str(),
                })
                .collect();
            body["coupon_codes"] = json!(codes);
        }
        match self.clicks.as_slice() {
            [] => {}
            [one] => body["click_id"] = json!(one.id),
            many => body["click_ids"] = json!(many.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()),
        }
        body
    }

    fn left(&self, i: usize) -> u32 {
        self.items[i].quantity - self.refunded[i]
    }

    /// `quantity` units of item `i` in IDR: each line converted once at the
    /// order's rate, rounded as the program rounds (RULES.md "Currencies").
    fn line(&self, i: usize, quantity: u32, p: &Program) -> Decimal {
        let amount = Decimal::from(quantity) * self.items[i].unit_price;
        match &self.fx {
            None => amount,
            Some(fx) => p.round(amount * fx.rate),
        }
    }

    fn fully_refunded(&self) -> bool {
        (0..self.items.len()).all(|i| self.left(i) == 0)
    }

    /// Cancelled or fully refunded: entitled to nothing.
    fn voided(&self) -> bool {
        self.cancelled || self.fully_refunded()
    }

    fn status(&self) -> &'static str {
        if self.cancelled {
            "cancelled"
        } else if self.fully_refunded() {
            "refunded"
        } else if self.refunded.iter().any(|&r| r > 0) {
            "partially_refunded"
        } else if self.completed {
            "completed"
        } else {
            "placed"
        }
    }
}

/// What one lane had answered 2xx.
#[derive(Default)]
struct Tally {
    orders: u64,
    refunds: u64,
    cancels: u64,
    completes: u64,
    /// Clicks asked for (`POST /v1/clicks` answered 201).
    clicks: u64,
    /// Requests sent again after a connection error, a timeout or a 5xx.
    retries: u64,
    /// Of those, ones finally answered 200 "already accepted" (the first try had committed).
    already: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.orders += o.orders;
        self.refunds += o.refunds;
        self.cancels += o.cancels;
        self.completes += o.completes;
        self.clicks += o.clicks;
        self.retries += o.retries;
        self.already += o.already;
    }
}

// ------------------------------------------------------------------ HTTP client

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: StatusCode,
    body: Value,
    retries: u32,
}

impl Api {
    fn new(port: u16) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        Self { http, base: format!("http://127.0.0.1:{port}") }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(StatusCode, Value), String> {
        let key = if path.starts_with("/admin") { ADMIN_KEY } else { STOREFRONT_KEY };
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("{e:?}"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Sends until answered 2xx: a connection error, a timeout, a 5xx or a
    /// 429 is retried with the same request after a short wait. Any other
    /// 4xx is a failure.
    async fn until_2xx(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let deadline = Instant::now() + RETRY_DEADLINE;
        let mut retries = 0;
        loop {
            let last = match self.send(method.clone(), path, body).await {
                Ok((status, body)) if status.is_success() => return Answer { status, body, retries },
                // 429: the key's rate limit (the checker reads fast); the
                // bucket refills within the wait.
                Ok((status, answer)) if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                    format!("{status} {answer}")
                }
                Ok((status, answer)) => panic!("{method} {path} {}: answered {status} {answer}", opt_json(body)),
                Err(e) => e,
            };
            assert!(Instant::now() < deadline, "{method} {path}: no 2xx within {RETRY_DEADLINE:?}; last: {last}");
            retries += 1;
            tokio::time::sleep(RETRY_WAIT).await;
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.until_2xx(Method::GET, path, None).await.body
    }
}

fn opt_json(v: Option<&Value>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

// ------------------------------------------------------------------ processes

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().expect("addr").port()
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        if name.starts_with('/') {
            if Path::new(name).is_file() {
                return Some(PathBuf::from(name));
            }
            continue;
        }
        if let Some(p) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()) {
            return Some(p);
        }
    }
    None
}

fn running_as_root() -> bool {
    // /proc/self/status: "Uid:	<real> <effective> …"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill(); // SIGKILL
        let _ = c.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A MariaDB of the run's own: its data dir survives a SIGKILL and a restart
/// on the same port (durable: `--innodb-flush-log-at-trx-commit=1`).
struct MariaDb {
    server: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl MariaDb {
    fn install(dir: &Path) -> Self {
        let server =
            find_binary(&["mariadbd", "/usr/sbin/mariadbd", "/usr/libexec/mariadbd", "mysqld", "/usr/sbin/mysqld"])
                .expect("no mariadbd binary found (scripts/test.sh installs MariaDB on a fresh machine)");
        let install = find_binary(&["mariadb-install-db", "mysql_install_db"])
            .expect("no mariadb-install-db (or mysql_install_db) found");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut cmd = Command::new(install);
        cmd.arg("--no-defaults");
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let out = cmd
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect("run mariadb-install-db");
        assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
        Self { server, dir: dir.to_owned(), port: free_port(), child: None }
    }

    fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.server);
        cmd.arg("--no-defaults");
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let d = &self.dir;
        let log = OpenOptions::new().create(true).append(true).open(d.join("mariadb.log")).expect("log");
        cmd.arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--innodb-flush-log-at-trx-commit=1",
                "--max-connections=500",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start mariadbd"));
    }

    /// Waits until the server answers a query (crash recovery included).
    async fn wait_ready(&mut self) -> Duration {
        let start = Instant::now();
        loop {
            if let Ok(mut c) = MySqlConnection::connect(&self.url("")).await {
                if sqlx::query("SELECT 1").execute(&mut c).await.is_ok() {
                    let _ = c.close().await;
                    return start.elapsed();
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mariadbd exited ({status}):\n{}", tail(&self.dir.join("mariadb.log"), 30));
            }
            assert!(start.elapsed() < Duration::from_secs(90), "mariadbd did not answer within 90 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The komisi server binary, restarted on the same address and database.
struct Komisi {
    port: u16,
    database_url: String,
    prefix: String,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Komisi {
    fn spawn(&mut self) {
        self.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log).expect("komisi log");
        writeln!(log, "==== chaos: start {} ====", self.starts).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_komisi"))
            .args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", redis_url())
            .env("KOMISI_REDIS_PREFIX", &self.prefix)
            .env("KOMISI_STOREFRONT_KEYS", STOREFRONT_KEY)
            .env("KOMISI_ADMIN_KEYS", ADMIN_KEY)
            // The run's webhook receiver listens on plain http on 127.0.0.1.
            .env("KOMISI_WEBHOOK_ALLOW_PRIVATE", "true")
            .env("KOMISI_WEBHOOK_RETRY_DELAYS", WEBHOOK_RETRY_DELAYS)
            .env("KOMISI_WEBHOOK_SECRET_KEY", WEBHOOK_SECRET_KEY)
            // A 5 s timeout (the receiver answers at once, or after the 2 s
            // hold): a killed process's batch lease is 8 × 5 s + 5 s = 45 s
            // instead of the default's 2 min 7.5 s, so the run waits less.
            .env("KOMISI_WEBHOOK_TIMEOUT_MS", "5000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start komisi");
        self.child = Some(child);
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status, when the process has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for `/readyz` to answer 200; Err when the process exits or the time is up.
    async fn wait_ready(&mut self, api: &Api, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if let Ok((StatusCode::OK, _)) = api.send(Method::GET, "/readyz", None).await {
                return Ok(start.elapsed());
            }
            if let Some(status) = self.exited() {
                return Err(format!("komisi exited ({status}); log tail:\n{}", tail(&self.log, 20)));
            }
            if start.elapsed() > timeout {
                return Err(format!("komisi not ready after {timeout:?}; log tail:\n{}", tail(&self.log, 20)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Deletes every Redis key of the prefix (each carries it in its hash tag:
/// `{prefix:pNN}:…`, `{prefix}:…`; SCAN MATCH + DEL); the count deleted.
fn wipe_redis(prefix: &str) -> redis::RedisResult<u64> {
    let mut con = redis::Client::open(redis_url())?.get_connection()?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{{{prefix}[:}}]*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)?;
        if !keys.is_empty() {
            deleted += redis::cmd("DEL").arg(&keys).query::<u64>(&mut con)?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Everything the run started. Dropping it (also on panic) kills komisi and
/// mariadbd, deletes the run's Redis keys and removes the temp dir.
struct Servers {
    dir: PathBuf,
    keep: bool,
    mariadb: MariaDb,
    komisi: Komisi,
}

impl Drop for Servers {
    fn drop(&mut self) {
        kill(&mut self.komisi.child);
        kill(&mut self.mariadb.child);
        if let Err(e) = wipe_redis(&self.komisi.prefix) {
            eprintln!("chaos: could not delete the Redis keys of {}: {e}", self.komisi.prefix);
        }
        if self.keep {
            eprintln!("chaos: kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------------ set-up

async fn start_servers(settings: &Settings) -> Servers {
    let tag = format!("{:08x}", rand::rng().random::<u32>());
    let dir = std::env::temp_dir().join(format!("komisi_chaos_{tag}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mariadb = MariaDb::install(&dir);
    let komisi = Komisi {
        port: free_port(),
        database_url: mariadb.url("komisi"),
        prefix: format!("komisi_chaos_{tag}"),
        log: dir.join("komisi.log"),
        child: None,
        starts: 0,
    };
    let mut servers = Servers { dir, keep: settings.keep, mariadb, komisi };
    servers.mariadb.spawn();
    servers.mariadb.wait_ready().await;
    let mut c = MySqlConnection::connect(&servers.mariadb.url("")).await.expect("connect");
    sqlx::query("CREATE DATABASE komisi").execute(&mut c).await.expect("create database");
    c.close().await.expect("close");
    servers
}

async fn register_tree(api: &Api, affs: &[Affiliate]) {
    for a in affs {
        let mut body = json!({"id": a.id, "name": format!("Affiliate {}", a.id), "referral_code": a.code});
        if let Some(p) = a.parent {
            body["parent_id"] = json!(affs[p].id);
        }
        if let Some(b) = &a.buyer_id {
            body["buyer_id"] = json!(b);
        }
        api.until_2xx(Method::POST, "/v1/affiliates", Some(&body)).await;
    }
    for a in affs.iter().filter(|a| a.suspended) {
        api.until_2xx(Method::PATCH, &format!("/v1/affiliates/{}", a.id), Some(&json!({"status": "suspended"}))).await;
    }
    // Coupons: 201, or 200 when a retried request had committed.
    for a in affs {
        let Some(code) = &a.coupon else { continue };
        let path = format!("/v1/affiliates/{}/coupons", a.id);
        let got = api.until_2xx(Method::POST, &path, Some(&json!({"code": code}))).await.body;
        assert_eq!(
            (got["code"].as_str(), got["affiliate_id"].as_str()),
            (Some(code.to_uppercase().as_str()), Some(a.id.as_str())),
            "POST {path}: {got}"
        );
    }
}

// ------------------------------------------------------------------ the order stream

/// The first instant of the calendar month before the current one, in
/// Jakarta: the lanes' `placed_at` run across it (and across the 7 hours in
/// which it is already the new month in Jakarta but not yet in UTC).
fn month_boundary() -> DateTime<Utc> {
    let now = Utc::now().with_timezone(&Jakarta);
    let (y, m) = if now.month() == 1 { (now.year() - 1, 12) } else { (now.year(), now.month() - 1) };
    let midnight = NaiveDate::from_ymd_opt(y, m, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("date");
    Jakarta.from_local_datetime(&midnight).single().expect("no DST in Jakarta").with_timezone(&Utc)
}

struct LaneSetup {
    lane: usize,
    api: Api,
    affs: Arc<Vec<Affiliate>>,
    seed: u64,
    period: Duration,
    first_placed_at: DateTime<Utc>,
    /// About how many orders the lane will send (sizes its buyer pools).
    expected_orders: usize,
    stop: Arc<AtomicBool>,
}

struct LaneResult {
    orders: Vec<OrderRec>,
    tally: Tally,
    /// `POST /v1/clicks` answers that did not name the affiliate asked for,
    /// or gave an unreadable time (differences for the report).
    wrong_clicks: Vec<String>,
}

const CATEGORIES: [&str; 5] = ["fashion", "electronics", "books", "beauty", "gift-card"];

fn price(rng: &mut StdRng, low: i64, high: i64) -> Decimal {
    if rng.random_bool(0.2) {
        Decimal::new(rng.random_range(low * 100..high * 100), 2) // with cents
    } else {
        Decimal::from(rng.random_range(low..high))
    }
}

/// A basket priced in IDR, priced again in `currency` at about `rate`
/// (each price to the currency's minor units, at least one of them).
fn priced_in(items: Vec<Item>, currency: &str, rate: Decimal) -> Vec<Item> {
    let places = match currency {
        "JPY" => 0,
        "KWD" => 3,
        _ => 2,
    };
    items
        .into_iter()
        .map(|i| Item { unit_price: (i.unit_price / rate).round_dp(places).max(Decimal::new(1, places)), ..i })
        .collect()
}

/// Some orders in dollars, yen or dinar: 10 % with their own rate (the
/// table's ± 10 %, 3 decimals), 5 % at the table's.
fn currency_of(rng: &mut StdRng) -> Option<FxSent> {
    let r: f64 = rng.random();
    if r >= 0.15 {
        return None;
    }
    let (currency, table) = TABLE_RATES[rng.random_range(0..TABLE_RATES.len())];
    let table = dec(table);
    if r < 0.10 {
        let factor = Decimal::new(rng.random_range(900..=1100), 3);
        Some(FxSent { currency, rate: (table * factor).round_dp(3), in_body: true })
    } else {
        Some(FxSent { currency, rate: table, in_body: false })
    }
}

fn item(n: usize, category: &'static str, quantity: u32, unit_price: Decimal) -> Item {
    Item { sku: format!("{category}-{n}"), category, quantity, unit_price }
}

/// Mostly ordinary baskets; some below the minimum, some big enough for the
/// cap, some of gift cards only.
fn basket(rng: &mut StdRng) -> Vec<Item> {
    let r: f64 = rng.random();
    if r < 0.08 {
        let mut items = vec![item(0, "books", 1, price(rng, 1_000, 45_000))];
        if rng.random_bool(0.5) {
            items.push(item(1, "gift-card", 1, Decimal::from(100_000))); // total above, eligible below the minimum
        }
        items
    } else if r < 0.12 {
        vec![
            item(0, "electronics", 1, price(rng, 15_000_000, 40_000_000)),
            item(1, "fashion", 2, price(rng, 50_000, 300_000)),
        ]
    } else if r < 0.15 {
        vec![item(0, "fashion", rng.random_range(1..3), price(rng, 4_000_000, 9_000_000))]
    } else if r < 0.16 {
        vec![item(0, "gift-card", rng.random_range(1..4), Decimal::from(250_000))]
    } else {
        (0..rng.random_range(1..=4))
            .map(|n| {
                let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
                item(n, category, rng.random_range(1..=3), price(rng, 1_000, 400_000))
            })
            .collect()
    }
}

/// Shares of a lane's orders by what they carry. Visitors' orders (on the
/// now clock) carry clicks, coupons, codes and combinations of them;
/// coupon orders (on the past clock) carry coupons, sometimes with a code
/// or a click (dated after the order); the rest carry what orders carried
/// before attribution had sources: a referral code or affiliate id, an
/// unknown one, or nothing.
const VISITOR_SHARE: f64 = 0.20;
const COUPON_SHARE: f64 = 0.10;
/// Regular buyers per lane: they come back, and are soon linked.
const REGULARS: usize = 150;
/// Share of past-clock orders (other than the affiliates' own buyers') by
/// a guest, from a pool about half the lane's orders: mostly first orders,
/// decided by what they carry rather than by a link.
const GUEST_SHARE: f64 = 0.35;
/// A click the lane kept for an affiliate is used again, or a fresh one asked for.
const FRESH_CLICK: f64 = 0.3;

struct LaneWorld {
    lane: usize,
    /// Indexes of the lane's affiliates.
    affiliates: Vec<usize>,
    /// Of those, the ones with an own buyer account.
    with_buyer: Vec<usize>,
    /// Of the lane's affiliates, the ones holding a coupon.
    with_coupon: Vec<usize>,
    buyers: Vec<String>,
    guests: usize,
    visitors: usize,
}

/// A click an order is to carry: the lane's kept click for the affiliate or
/// a fresh one, perhaps tampered with.
#[derive(Clone, Copy, Debug)]
struct ClickWant {
    affiliate: usize,
    fresh: bool,
    tampered: bool,
}

/// What the lane decides about an order before sending it.
struct Plan {
    buyer: String,
    /// On the now clock (a visitor's order), else on the past clock.
    now_clock: bool,
    via: Via,
    coupons: Vec<CouponSent>,
    clicks: Vec<ClickWant>,
}

impl LaneWorld {
    fn new(lane: usize, affs: &[Affiliate], expected_orders: usize) -> Self {
        let affiliates: Vec<usize> = (0..affs.len()).filter(|&i| lane_of_affiliate(i) == lane).collect();
        let with_buyer = affiliates.iter().copied().filter(|&i| affs[i].buyer_id.is_some()).collect();
        let with_coupon = affiliates.iter().copied().filter(|&i| affs[i].coupon.is_some()).collect();
        Self {
            lane,
            affiliates,
            with_buyer,
            with_coupon,
            buyers: (0..REGULARS).map(|j| format!("buyer-{lane}-{j}")).collect(),
            guests: (expected_orders / 2).max(100),
            visitors: (expected_orders / 8).max(50),
        }
    }

    fn plan(&self, rng: &mut StdRng, affs: &[Affiliate]) -> Plan {
        let r: f64 = rng.random();
        if r < VISITOR_SHARE {
            self.visitor(rng, affs)
        } else if r < VISITOR_SHARE + COUPON_SHARE {
            self.coupon_order(rng, affs)
        } else {
            self.classic(rng, affs)
        }
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        self.affiliates[rng.random_range(0..self.affiliates.len())]
    }

    /// Another affiliate of the lane than `a`.
    fn other(&self, rng: &mut StdRng, a: usize) -> usize {
        loop {
            let b = self.pick(rng);
            if b != a {
                return b;
            }
        }
    }

    fn holder(&self, rng: &mut StdRng) -> usize {
        self.with_coupon[rng.random_range(0..self.with_coupon.len())]
    }

    /// The affiliate's referral code, or now and then its id.
    fn code_of(rng: &mut StdRng, a: usize) -> Via {
        if rng.random_bool(0.85) {
            Via::Code(a)
        } else {
            Via::Id(a)
        }
    }

    /// The affiliate's coupon as the buyer typed it: as given, upper or lower case.
    fn coupon(rng: &mut StdRng, affs: &[Affiliate], a: usize) -> CouponSent {
        let code = affs[a].coupon.as_deref().expect("a coupon holder");
        let typed = match rng.random_range(0..3) {
            0 => code.to_string(),
            1 => code.to_uppercase(),
            _ => code.to_lowercase(),
        };
        CouponSent::Held(a, typed)
    }

    fn unknown_coupon(rng: &mut StdRng) -> CouponSent {
        CouponSent::Unknown(format!("NoSuch-{}", rng.random_range(0..5)))
    }

    fn click(rng: &mut StdRng, affiliate: usize, tampered: bool) -> ClickWant {
        ClickWant { affiliate, fresh: rng.random_bool(FRESH_CLICK), tampered }
    }

    /// A regular buyer, or a guest.
    fn past_buyer(&self, rng: &mut StdRng) -> String {
        if rng.random_bool(GUEST_SHARE) {
            format!("guest-{}-{}", self.lane, rng.random_range(0..self.guests))
        } else {
            self.buyers[rng.random_range(0..self.buyers.len())].clone()
        }
    }

    /// What orders carried before attribution had sources, on the past clock.
    fn classic(&self, rng: &mut StdRng, affs: &[Affiliate]) -> Plan {
        let (buyer, via) = if !self.with_buyer.is_empty() && rng.random_bool(0.05) {
            let a = self.with_buyer[rng.random_range(0..self.with_buyer.len())];
            (affs[a].buyer_id.clone().expect("own buyer"), Via::Code(a)) // self-referral
        } else {
            let buyer = if !self.with_buyer.is_empty() && rng.random_bool(0.03) {
                let a = self.with_buyer[rng.random_range(0..self.with_buyer.len())];
                affs[a].buyer_id.clone().expect("own buyer") // shopping through someone else
            } else {
                self.past_buyer(rng)
            };
            let r: f64 = rng.random();
            let via = if r < 0.78 {
                Via::Code(self.pick(rng))
            } else if r < 0.85 {
                Via::Id(self.pick(rng))
            } else if r < 0.88 {
                Via::UnknownCode
            } else if r < 0.90 {
                Via::UnknownId
            } else {
                Via::Nobody
            };
            (buyer, via)
        };
        Plan { buyer, now_clock: false, via, coupons: Vec::new(), clicks: Vec::new() }
    }

    /// A coupon order on the past clock: a held coupon, sometimes beside an
    /// unknown one, another affiliate's code (outranked) or a click (dated
    /// after the order: `click_after_order`); or an unknown coupon beside a code.
    fn coupon_order(&self, rng: &mut StdRng, affs: &[Affiliate]) -> Plan {
        let buyer = self.past_buyer(rng);
        let h = self.holder(rng);
        let mut coupons = vec![Self::coupon(rng, affs, h)];
        if rng.random_bool(0.25) {
            coupons.insert(rng.random_range(0..=1), Self::unknown_coupon(rng));
        }
        let r: f64 = rng.random();
        let via = if r < 0.40 {
            let b = self.other(rng, h);
            Self::code_of(rng, b)
        } else if r < 0.50 {
            let b = self.other(rng, h);
            if self.with_coupon.contains(&b) {
                coupons.push(Self::coupon(rng, affs, b)); // a second holder's coupon: outranked
            }
            Via::Nobody
        } else if r < 0.60 {
            coupons = vec![Self::unknown_coupon(rng)];
            Self::code_of(rng, h)
        } else {
            Via::Nobody
        };
        let clicks = if rng.random_bool(0.15) {
            let a = self.pick(rng);
            vec![Self::click(rng, a, false)]
        } else {
            Vec::new()
        };
        Plan { buyer, now_clock: false, via, coupons, clicks }
    }

    /// A visitor's order on the now clock: clicks, alone or with a code
    /// (the click wins), two clicks (the newer wins), a tampered click
    /// (`invalid_click`), a coupon beside a click and a code (the coupon
    /// wins); or a code alone, or nothing (the link decides, if any).
    fn visitor(&self, rng: &mut StdRng, affs: &[Affiliate]) -> Plan {
        let buyer = format!("visitor-{}-{}", self.lane, rng.random_range(0..self.visitors));
        let a = self.pick(rng);
        let r: f64 = rng.random();
        let (via, coupons, clicks) = if r < 0.30 {
            (Via::Nobody, Vec::new(), vec![Self::click(rng, a, false)])
        } else if r < 0.50 {
            let b = self.other(rng, a);
            (Self::code_of(rng, b), Vec::new(), vec![Self::click(rng, a, false)])
        } else if r < 0.60 {
            let b = self.other(rng, a);
            (Via::Nobody, Vec::new(), vec![Self::click(rng, b, false), Self::click(rng, a, false)])
        } else if r < 0.70 {
            let via = if rng.random_bool(0.7) {
                let b = self.other(rng, a);
                Self::code_of(rng, b)
            } else {
                Via::Nobody
            };
            (via, Vec::new(), vec![Self::click(rng, a, true)])
        } else if r < 0.80 {
            let h = self.holder(rng);
            let b = self.other(rng, h);
            (Self::code_of(rng, b), vec![Self::coupon(rng, affs, h)], vec![Self::click(rng, a, false)])
        } else if r < 0.90 {
            (Self::code_of(rng, a), Vec::new(), Vec::new())
        } else {
            (Via::Nobody, Vec::new(), Vec::new())
        };
        Plan { buyer, now_clock: true, via, coupons, clicks }
    }
}

/// A fresh click for the affiliate, retried as any request; what komisi
/// answered (a wrong affiliate or time goes into `wrong`).
async fn new_click(
    api: &Api,
    affs: &[Affiliate],
    a: usize,
    visitor: &str,
    tally: &mut Tally,
    wrong: &mut Vec<String>,
) -> ClickSent {
    let body = json!({"referral_code": affs[a].code, "visitor_id": visitor});
    let answer = api.until_2xx(Method::POST, "/v1/clicks", Some(&body)).await;
    tally.clicks += 1;
    tally.retries += u64::from(answer.retries);
    let got = &answer.body;
    let time = |field: &str| {
        got[field].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
    };
    let named = affs.iter().position(|x| got["affiliate_id"].as_str() == Some(x.id.as_str()));
    let (at, expires) = (time("clicked_at"), time("expires_at"));
    let id = got["click_id"].as_str().unwrap_or_default().to_string();
    if named != Some(a) || id.is_empty() || at.is_none() || expires != at.map(|t| t + CLICK_WINDOW) {
        wrong.push(format!("POST /v1/clicks {body}: answered {got}"));
    }
    ClickSent { id, affiliate: named.unwrap_or(a), at: at.unwrap_or_else(Utc::now), tampered: false }
}

/// A random order of the lane meeting `ok`, among the latest `window`.
fn pick_order(rng: &mut StdRng, orders: &[OrderRec], window: usize, ok: impl Fn(&OrderRec) -> bool) -> Option<usize> {
    let from = orders.len().saturating_sub(window);
    (0..20).map(|_| rng.random_range(from..orders.len().max(from + 1))).find(|&i| i < orders.len() && ok(&orders[i]))
}

/// Items to refund: everything left (a full refund), or part of one item.
fn refund_items(rng: &mut StdRng, o: &OrderRec) -> Vec<(usize, u32)> {
    if rng.random_bool(0.3) {
        (0..o.items.len()).filter(|&i| o.left(i) > 0).map(|i| (i, o.left(i))).collect()
    } else {
        let open: Vec<usize> = (0..o.items.len()).filter(|&i| o.left(i) > 0).collect();
        let i = open[rng.random_range(0..open.len())];
        vec![(i, rng.random_range(1..=o.left(i)))]
    }
}

async fn run_lane(s: LaneSetup) -> LaneResult {
    let mut rng = StdRng::seed_from_u64(s.seed.wrapping_mul(1_000_003).wrapping_add(s.lane as u64));
    let world = LaneWorld::new(s.lane, &s.affs, s.expected_orders);
    let mut orders: Vec<OrderRec> = Vec::new();
    let mut tally = Tally::default();
    let mut wrong_clicks = Vec::new();
    // The lane's latest click per affiliate.
    let mut kept: HashMap<usize, ClickSent> = HashMap::new();
    let (mut past_clock, mut past_orders) = (s.first_placed_at, 0u64);
    let mut now_clock = DateTime::<Utc>::MIN_UTC;
    let mut tick = tokio::time::interval(s.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !s.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let r: f64 = rng.random();
        let answer = if r < ORDER_SHARE || orders.is_empty() {
            let k = orders.len();
            let plan = world.plan(&mut rng, &s.affs);
            let fx = currency_of(&mut rng);
            let items = match &fx {
                Some(fx) => priced_in(basket(&mut rng), fx.currency, fx.rate),
                None => basket(&mut rng),
            };
            let mut clicks = Vec::new();
            for want in &plan.clicks {
                let click = match kept.get(&want.affiliate) {
                    Some(c) if !want.fresh => c.clone(),
                    _ => {
                        let c = new_click(&s.api, &s.affs, want.affiliate, &plan.buyer, &mut tally, &mut wrong_clicks)
                            .await;
                        kept.insert(want.affiliate, c.clone());
                        c
                    }
                };
                clicks.push(if want.tampered { click.tampered() } else { click });
            }
            let placed_at = if plan.now_clock {
                // After every click it carries (the body has whole seconds).
                now_clock = now_clock.max(Utc::now().trunc_subsecs(0));
                now_clock
            } else {
                if past_orders % 10 != 9 {
                    past_clock += TimeDelta::seconds(60); // every tenth order ties with the previous one
                }
                past_orders += 1;
                past_clock
            };
            let mut o = OrderRec {
                sent_at: Instant::now(),
                accepted_at: Instant::now(),
                id: format!("o{}-{k:06}", s.lane),
                buyer: plan.buyer,
                via: plan.via,
                coupons: plan.coupons,
                clicks,
                placed_at,
                fx,
                refunded: vec![0; items.len()],
                items,
                refunds: 0,
                cancelled: false,
                completed: false,
            };
            o.sent_at = Instant::now();
            let a = s.api.until_2xx(Method::POST, "/v1/orders", Some(&o.body(&s.affs))).await;
            o.accepted_at = Instant::now();
            tally.orders += 1;
            orders.push(o);
            a
        } else if r < ORDER_SHARE + 0.10 {
            let Some(i) = pick_order(&mut rng, &orders, 400, |o| !o.cancelled && !o.fully_refunded()) else { continue };
            let o = &mut orders[i];
            let items = refund_items(&mut rng, o);
            o.refunds += 1;
            let body = json!({
                "refund_id": format!("r{}", o.refunds),
                "items": items.iter().map(|&(i, q)| json!({"sku": o.items[i].sku, "quantity": q})).collect::<Vec<_>>(),
            });
            let a = s.api.until_2xx(Method::POST, &format!("/v1/orders/{}/refunds", o.id), Some(&body)).await;
            for (i, q) in items {
                o.refunded[i] += q;
            }
            tally.refunds += 1;
            a
        } else if r < ORDER_SHARE + 0.16 {
            let Some(i) = pick_order(&mut rng, &orders, 50, |o| !o.cancelled && !o.completed) else { continue };
            let a = s.api.until_2xx(Method::POST, &format!("/v1/orders/{}/cancel", orders[i].id), None).await;
            orders[i].cancelled = true;
            tally.cancels += 1;
            a
        } else {
            let Some(i) = pick_order(&mut rng, &orders, 400, |o| !o.cancelled && !o.completed) else { continue };
            let a = s.api.until_2xx(Method::POST, &format!("/v1/orders/{}/complete", orders[i].id), None).await;
            orders[i].completed = true;
            tally.completes += 1;
            a
        };
        if answer.retries > 0 {
            tally.retries += u64::from(answer.retries);
            if answer.status == StatusCode::OK {
                tally.already += 1;
            }
        }
    }
    LaneResult { orders, tally, wrong_clicks }
}

// ------------------------------------------------------------------ faults

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillKomisi,
    WipeRedis,
    RestartMariaDb,
}

/// Per 60 s window (one window for shorter runs): SIGKILL at 15 %, SIGKILL
/// at 30 %, Redis wipe at 45 %, MariaDB restart at 60 %, SIGKILL at 75 %.
fn schedule(secs: u64) -> Vec<(Duration, Fault)> {
    let windows = (secs / 60).max(1);
    let len = secs as f64 / windows as f64;
    let pattern = [
        (0.15, Fault::KillKomisi),
        (0.30, Fault::KillKomisi),
        (0.45, Fault::WipeRedis),
        (0.60, Fault::RestartMariaDb),
        (0.75, Fault::KillKomisi),
    ];
    (0..windows)
        .flat_map(|w| pattern.iter().map(move |&(f, fault)| (Duration::from_secs_f64(len * (w as f64 + f)), fault)))
        .collect()
}

struct Timeline {
    start: Instant,
    lines: Vec<String>,
    /// Things that went wrong and must fail the run (komisi not riding through).
    findings: Vec<String>,
}

impl Timeline {
    fn log(&mut self, line: String) {
        let line = format!("t={:6.1}s  {line}", self.start.elapsed().as_secs_f64());
        println!("chaos: {line}");
        self.lines.push(line);
    }
}

async fn open_events(pool: &MySqlPool) -> Option<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE status <> 'done'").fetch_one(pool).await.ok()
}

/// Holds the receiver's next answers, so that attempts are in flight when
/// komisi is killed; how many messages are under a lease then (this
/// process's claims, and those of earlier killed ones still running).
async fn hold_webhook_attempts(receiver: &Receiver, pool: &MySqlPool) -> String {
    let held = vec![Reply::status(200).delay_ms(WEBHOOK_HOLD.as_millis() as u64); WEBHOOK_HELD_ANSWERS];
    receiver.script("/chaos", &held).await;
    tokio::time::sleep(WEBHOOK_HOLD_BEFORE_KILL).await;
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM webhook_messages WHERE status = 'pending' AND leased_until > ?")
        .bind(Utc::now())
        .fetch_one(pool)
        .await
        .map_or("?".into(), |n| n.to_string())
}

async fn inject(
    fault: Fault,
    servers: &Mutex<Servers>,
    api: &Api,
    pool: &MySqlPool,
    receiver: &Receiver,
    tl: &Mutex<Timeline>,
) {
    let claimed = match fault {
        Fault::KillKomisi => hold_webhook_attempts(receiver, pool).await,
        _ => String::new(),
    };
    let open = open_events(pool).await.map_or("?".into(), |n| n.to_string());
    let mut s = servers.lock().await;
    match fault {
        Fault::KillKomisi => {
            let pid = s.komisi.pid();
            kill(&mut s.komisi.child);
            s.komisi.spawn();
            let ready = s.komisi.wait_ready(api, Duration::from_secs(60)).await;
            let mut tl = tl.lock().await;
            match ready {
                Ok(d) => tl.log(format!(
                    "SIGKILL komisi (pid {pid:?}, {open} open events, {claimed} webhook messages leased), \
                     restarted, ready in {d:.1?}"
                )),
                Err(e) => {
                    tl.log(format!("SIGKILL komisi (pid {pid:?}), restart FAILED: {e}"));
                    tl.findings.push(format!("komisi did not come back after a SIGKILL: {e}"));
                }
            }
        }
        Fault::WipeRedis => {
            let prefix = s.komisi.prefix.clone();
            drop(s);
            let deleted = tokio::task::spawn_blocking(move || wipe_redis(&prefix)).await.expect("join");
            tl.lock().await.log(format!("Redis keys of the prefix deleted: {deleted:?} ({open} open events)"));
        }
        Fault::RestartMariaDb => {
            kill(&mut s.mariadb.child);
            let down = Instant::now();
            tokio::time::sleep(Duration::from_secs(2)).await; // an outage, not only a restart
            s.mariadb.spawn();
            let up = s.mariadb.wait_ready().await;
            // komisi must ride through by itself: no restart here.
            let ready = s.komisi.wait_ready(api, Duration::from_secs(60)).await;
            let mut tl = tl.lock().await;
            match ready {
                Ok(_) => tl.log(format!(
                    "SIGKILL mariadbd ({open} open events), restarted, answering in {up:.1?}; komisi ready again {:.1?} after the kill",
                    down.elapsed()
                )),
                Err(e) => {
                    tl.log(format!("SIGKILL mariadbd, restarted in {up:.1?}; komisi did NOT recover: {e}"));
                    tl.findings.push(format!("komisi did not ride through a MariaDB restart: {e}"));
                    // Restarted only so the rest of the run can be checked; the run fails.
                    kill(&mut s.komisi.child);
                    s.komisi.spawn();
                    let again = s.komisi.wait_ready(api, Duration::from_secs(60)).await;
                    tl.log(format!("komisi restarted by the test after that finding: {again:?}"));
                }
            }
        }
    }
}

async fn run_faults(
    start: Instant,
    servers: Arc<Mutex<Servers>>,
    api: Api,
    pool: MySqlPool,
    receiver: Arc<Receiver>,
    tl: Arc<Mutex<Timeline>>,
    secs: u64,
) {
    for (at, fault) in schedule(secs) {
        if let Some(wait) = (start + at).checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        inject(fault, &servers, &api, &pool, &receiver, &tl).await;
    }
}

// ------------------------------------------------------------------ samples

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    t: u64,
    rss_kb: Option<u64>,
    connections: Option<i64>,
    backlog: Option<i64>,
    /// Webhook messages not delivered yet.
    webhooks: Option<i64>,
}

async fn take_sample(start: Instant, servers: &Mutex<Servers>, pool: &MySqlPool) -> Sample {
    // Not while a fault holds the servers (a restart in progress).
    let rss_kb = servers.try_lock().ok().and_then(|s| s.komisi.rss_kb());
    let connections = sqlx::query_as::<_, (String, String)>("SHOW STATUS LIKE 'Threads_connected'")
        .fetch_one(pool)
        .await
        .ok()
        .and_then(|(_, v)| v.parse().ok());
    let webhooks =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_messages WHERE status = 'pending'").fetch_one(pool).await.ok();
    Sample { t: start.elapsed().as_secs(), rss_kb, connections, backlog: open_events(pool).await, webhooks }
}

async fn run_sampler(
    start: Instant,
    servers: Arc<Mutex<Servers>>,
    pool: MySqlPool,
    stop: CancellationToken,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    let mut last = false;
    while !last {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => last = true, // one more sample, after the drain
        }
        let s = take_sample(start, &servers, &pool).await;
        println!(
            "chaos: sample t={:4}s  komisi RSS {:>7} kB  MariaDB connections {:>4}  open events {:>6}  pending webhooks {:>6}",
            s.t,
            opt(s.rss_kb),
            opt(s.connections),
            opt(s.backlog),
            opt(s.webhooks)
        );
        out.push(s);
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn summarize(name: &str, values: &[Option<i64>]) -> String {
    let known: Vec<i64> = values.iter().flatten().copied().collect();
    if known.is_empty() {
        return format!("{name}: no samples");
    }
    format!(
        "{name}: first {} middle {} last {} max {}",
        known[0],
        known[known.len() / 2],
        known[known.len() - 1],
        known.iter().max().expect("one")
    )
}

// ------------------------------------------------------------------ drain

/// Waits until no event is pending, processing or failed (per the admin API);
/// a dead event fails at once.
async fn drain(api: &Api) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let dead = api.get("/admin/events?status=dead&limit=5").await;
        if !dead["items"].as_array().is_none_or(|a| a.is_empty()) {
            return Err(format!("dead events: {}", dead["items"]));
        }
        let mut open = false;
        for status in ["pending", "processing", "failed"] {
            let page = api.get(&format!("/admin/events?status={status}&limit=1")).await;
            open |= !page["items"].as_array().is_none_or(|a| a.is_empty());
        }
        if !open {
            return Ok(start.elapsed());
        }
        if start.elapsed() > DRAIN_TIMEOUT {
            return Err(format!("events still open after {DRAIN_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ------------------------------------------------------------------ the independent checker

/// How far a click may be dated after the order's `placed_at` (RULES.md
/// "Sources"), and the program's click window (`click_window_days`, 30 by default).
const CLICK_SKEW: TimeDelta = TimeDelta::minutes(5);
const CLICK_WINDOW: TimeDelta = TimeDelta::days(30);

/// An order's attribution as RULES.md "Attribution" decides it.
#[derive(Debug, Clone, Default)]
struct Attr {
    /// The direct affiliate (None: unattributed).
    affiliate: Option<usize>,
    source: Option<&'static str>,
    /// (source, reason, the affiliate it named) of everything else the
    /// order carried, and of the buyer's link when it did not attribute.
    ignored: Vec<(&'static str, &'static str, Option<usize>)>,
}

/// A buyer's link: the affiliate, and the order that made it.
type Links = HashMap<String, (usize, String)>;

/// RULES.md "Sources", with the program's default `attribution.order`: the
/// first source that names an affiliate wins — the buyer's link (unless its
/// affiliate is suspended), then the first coupon code an affiliate holds,
/// then the newest valid click, then the referral code or affiliate id —
/// and everything else is ignored with its reason. Suspension matters for
/// the link only.
fn decide(o: &OrderRec, link: Option<usize>, affs: &[Affiliate]) -> Attr {
    let mut ignored = Vec::new();
    let linked: Vec<usize> = match link {
        Some(a) if affs[a].suspended => {
            ignored.push(("customer_link", "linked_affiliate_suspended", Some(a)));
            Vec::new()
        }
        other => other.into_iter().collect(),
    };
    let mut coupons = Vec::new();
    for c in &o.coupons {
        match c {
            CouponSent::Held(a, _) => coupons.push(*a),
            CouponSent::Unknown(_) => ignored.push(("coupon", "unknown_coupon", None)),
        }
    }
    // A tampered id does not verify; a click dated more than the skew after
    // the order, or older than the window at the order's time, does not
    // count; of the valid ones the newest is chosen (the later given on a tie).
    let mut valid: Vec<(usize, &ClickSent)> = Vec::new();
    for (i, c) in o.clicks.iter().enumerate() {
        if c.tampered {
            ignored.push(("click", "invalid_click", None));
        } else if c.at > o.placed_at + CLICK_SKEW {
            ignored.push(("click", "click_after_order", Some(c.affiliate)));
        } else if o.placed_at - c.at > CLICK_WINDOW {
            ignored.push(("click", "click_expired", Some(c.affiliate)));
        } else {
            valid.push((i, c));
        }
    }
    let chosen = valid.iter().max_by_key(|(i, c)| (c.at, *i)).map(|&(i, _)| i);
    let mut clicked = Vec::new();
    for (i, c) in valid {
        if Some(i) == chosen {
            clicked.push(c.affiliate);
        } else {
            ignored.push(("click", "click_not_chosen", Some(c.affiliate)));
        }
    }
    let (code_source, coded) = match o.via {
        Via::Code(a) => ("referral_code", vec![a]),
        Via::Id(a) => ("affiliate_id", vec![a]),
        Via::UnknownCode => {
            ignored.push(("referral_code", "unknown_referral_code", None));
            ("referral_code", Vec::new())
        }
        Via::UnknownId => {
            ignored.push(("affiliate_id", "unknown_affiliate_id", None));
            ("affiliate_id", Vec::new())
        }
        Via::Nobody => ("referral_code", Vec::new()),
    };
    let mut attr = Attr::default();
    for (source, named) in [("customer_link", linked), ("coupon", coupons), ("click", clicked), (code_source, coded)] {
        for a in named {
            if attr.affiliate.is_none() {
                (attr.affiliate, attr.source) = (Some(a), Some(source));
            } else {
                ignored.push((source, "outranked", Some(a)));
            }
        }
    }
    attr.ignored = ignored;
    attr
}

/// Every order's attribution, and every buyer's link, taking each lane's
/// orders in the order it sent them (a buyer's orders all come from one
/// lane, one at a time): a buyer without a link is linked, for life, to the
/// affiliate of their first order attributed by anything but a link, be
/// that affiliate suspended or not.
fn attribute(orders: &[OrderRec], affs: &[Affiliate]) -> (HashMap<String, Attr>, Links) {
    let mut links: Links = HashMap::new();
    let mut out = HashMap::new();
    for o in orders {
        let link = links.get(&o.buyer).map(|&(a, _)| a);
        let attr = decide(o, link, affs);
        if let (None, Some(a)) = (link, attr.affiliate) {
            links.insert(o.buyer.clone(), (a, o.id.clone()));
        }
        out.insert(o.id.clone(), attr);
    }
    (out, links)
}

/// Facts of an order that depend on other orders (RULES.md rules 4, 5, 8).
#[derive(Debug, Default, Clone, Copy)]
struct Facts {
    /// Σ eligible amount as bought of the affiliate's attributed orders placed
    /// earlier in the same Jakarta month (ties by order id).
    volume_before: Decimal,
    /// 1-based position among them.
    nth_in_month: u32,
    /// The buyer has no order placed before this one.
    first_of_buyer: bool,
}

fn eligible_as_bought(o: &OrderRec, p: &Program) -> Decimal {
    (0..o.items.len())
        .filter(|&i| !p.excluded.contains(o.items[i].category))
        .map(|i| o.line(i, o.items[i].quantity, p))
        .sum()
}

fn eligible_now(o: &OrderRec, p: &Program) -> Decimal {
    if o.cancelled {
        return Decimal::ZERO;
    }
    (0..o.items.len()).filter(|&i| !p.excluded.contains(o.items[i].category)).map(|i| o.line(i, o.left(i), p)).sum()
}

fn facts(orders: &[OrderRec], attrs: &HashMap<String, Attr>, p: &Program) -> HashMap<String, Facts> {
    let mut sorted: Vec<&OrderRec> = orders.iter().collect();
    sorted.sort_by(|a, b| (a.placed_at, &a.id).cmp(&(b.placed_at, &b.id)));
    let mut month: HashMap<(usize, i32, u32), (Decimal, u32)> = HashMap::new();
    let mut buyers_seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = HashMap::new();
    for o in sorted {
        let mut f = Facts { first_of_buyer: buyers_seen.insert(&o.buyer), ..Facts::default() };
        if let Some(a) = attrs[&o.id].affiliate {
            let local = o.placed_at.with_timezone(&Jakarta);
            let slot = month.entry((a, local.year(), local.month())).or_default();
            f.volume_before = slot.0;
            f.nth_in_month = slot.1 + 1;
            slot.0 += eligible_as_bought(o, p);
            slot.1 += 1;
        }
        out.insert(o.id.clone(), f);
    }
    out
}

/// What one order is entitled to, by RULES.md.
#[derive(Debug, Default)]
struct Expected {
    /// (affiliate, level, kind) → amount; no zero lines.
    commissions: BTreeMap<(String, u64, String), Decimal>,
    /// kind → points; no zero lines.
    rewards: BTreeMap<String, i64>,
    no_commission_reason: Option<&'static str>,
    /// For the coverage line only: the cap cut something; a suspended ancestor was skipped.
    capped: bool,
    skipped_ancestor: bool,
    /// Rule 7's walk: (ancestor, level, passed over why); empty when the order pays no commission.
    upline: Vec<(String, u64, Option<&'static str>)>,
    /// Ancestors passed over as unqualified; of the qualification decisions,
    /// those the record could not settle (komisi's was checked against
    /// both bounds).
    unqualified: usize,
    open_decisions: usize,
    /// The capped affiliate's level-1 lines this order was entitled to, and
    /// what the cut left (the expected lines hold the latter).
    capped_entitled: Decimal,
    capped_paid: Decimal,
    capped_cut: bool,
    /// Attributed to the capped affiliate.
    capped_order: bool,
}

/// Each affiliate's attributed orders per Jakarta month, in (placed_at, id)
/// order: (placed_at, id, eligible as bought, answered at).
struct Sales(HashMap<(usize, i32, u32), Vec<Sale>>);

/// (placed_at, id, eligible as bought, answered at).
type Sale = (DateTime<Utc>, String, Decimal, Instant);

impl Sales {
    fn new(orders: &[OrderRec], attrs: &HashMap<String, Attr>, p: &Program) -> Self {
        let mut by: HashMap<(usize, i32, u32), Vec<Sale>> = HashMap::new();
        for o in orders {
            if let Some(a) = attrs[&o.id].affiliate {
                let local = o.placed_at.with_timezone(&Jakarta);
                by.entry((a, local.year(), local.month())).or_default().push((
                    o.placed_at,
                    o.id.clone(),
                    eligible_as_bought(o, p),
                    o.accepted_at,
                ));
            }
        }
        for v in by.values_mut() {
            v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        }
        Self(by)
    }

    /// What `u` had sold in `o`'s month before `o` when `o` was first
    /// processed: at least the orders answered before `o` was sent, at most
    /// all of them.
    fn before(&self, u: usize, o: &OrderRec) -> (Decimal, Decimal) {
        let local = o.placed_at.with_timezone(&Jakarta);
        let (mut lo, mut hi) = (Decimal::ZERO, Decimal::ZERO);
        for (at, id, amount, answered) in self.0.get(&(u, local.year(), local.month())).into_iter().flatten() {
            if (*at, id.as_str()) >= (o.placed_at, o.id.as_str()) {
                break;
            }
            hi += amount;
            if *answered < o.sent_at {
                lo += amount;
            }
        }
        (lo, hi)
    }
}

/// Rule 2.
fn no_commission_reason(o: &OrderRec, attr: &Attr, p: &Program, affs: &[Affiliate]) -> Option<&'static str> {
    let Some(a) = attr.affiliate else { return Some("unattributed") };
    if affs[a].suspended {
        Some("affiliate_suspended")
    } else if affs[a].buyer_id.as_deref() == Some(o.buyer.as_str()) {
        Some("self_referral")
    } else if eligible_as_bought(o, p) < p.min_order_amount {
        Some("below_minimum")
    } else {
        None
    }
}

/// `qualified(u)`: whether ancestor `u` met rule 7's qualification for
/// this order (settled by the caller from the record, or komisi's answer
/// checked against it).
fn expect(
    o: &OrderRec,
    attr: &Attr,
    f: &Facts,
    p: &Program,
    affs: &[Affiliate],
    qualified: &mut dyn FnMut(usize) -> bool,
) -> Expected {
    let mut e = Expected { no_commission_reason: no_commission_reason(o, attr, p, affs), ..Expected::default() };
    // Rule 7's walk up the tree, frozen at the first processing (shown even
    // when the order is voided since).
    let mut paid_levels: Vec<(usize, u64)> = Vec::new();
    if let (None, Some(a)) = (e.no_commission_reason, attr.affiliate) {
        let mut up = affs[a].parent;
        let mut k = 1;
        while k < p.levels.len() {
            let Some(u) = up else { break };
            let passed = if affs[u].suspended {
                Some("suspended")
            } else if !qualified(u) {
                Some("unqualified")
            } else {
                None
            };
            e.upline.push((affs[u].id.clone(), k as u64 + 1, passed));
            match passed {
                // Skipped (skip_inactive_upline): the next one up takes the level.
                Some(why) => {
                    e.skipped_ancestor = true;
                    e.unqualified += usize::from(why == "unqualified");
                }
                None => {
                    paid_levels.push((u, k as u64 + 1));
                    k += 1;
                }
            }
            up = affs[u].parent;
        }
    }
    if o.voided() {
        return e;
    }
    let eligible = eligible_now(o, p);
    let mut line = |aff: usize, level: u64, kind: &str, amount: Decimal| {
        if !amount.is_zero() {
            e.commissions.insert((affs[aff].id.clone(), level, kind.to_string()), amount);
        }
    };
    if let (None, Some(a)) = (e.no_commission_reason, attr.affiliate) {
        // Rule 3: Σ net quantity × price × the item's rate, rounded once.
        let raw: Decimal = (0..o.items.len())
            .filter(|&i| !p.excluded.contains(o.items[i].category))
            .map(|i| o.line(i, o.left(i), p) * p.level1_rate(o.items[i].category))
            .sum();
        let mut commission = p.round(raw);
        // Rule 4: the highest tier reached by the volume before this order.
        let rate = p.tiers.iter().filter(|(from, _)| *from <= f.volume_before).map(|&(_, r)| r).next_back();
        let mut tier = p.round(eligible * rate.unwrap_or_default());
        // Rule 6: the cap on commission + tier bonus.
        e.capped = commission + tier > p.cap;
        if commission > p.cap {
            commission = p.cap;
            tier = Decimal::ZERO;
        } else {
            tier = tier.min(p.cap - commission);
        }
        // Rule 5: the milestone of the n-th order of the month.
        let milestone = p.milestones.iter().find(|(n, _)| *n == f.nth_in_month).map(|&(_, b)| b).unwrap_or_default();
        line(a, 1, "commission", commission);
        line(a, 1, "tier_bonus", tier);
        line(a, 1, "milestone_bonus", milestone);
        // Rule 7: the levels of the walk above.
        for &(u, level) in &paid_levels {
            line(u, level, "commission", p.round(eligible * p.levels[level as usize - 1]));
        }
    }
    // Rule 8: points floored; the first-order bonus.
    let points = (eligible * p.points_rate).floor().to_i64().expect("points fit");
    if points != 0 {
        e.rewards.insert("points".into(), points);
    }
    if f.first_of_buyer && p.first_order_bonus != 0 {
        e.rewards.insert("first_order_bonus".into(), p.first_order_bonus);
    }
    e
}

/// How often each rule was in play, so a green run shows what it proved.
fn coverage(orders: &[OrderRec], expected: &HashMap<String, Expected>, p: &Program) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut months: BTreeMap<String, usize> = BTreeMap::new();
    let (mut capped, mut skipped, mut first, mut voided, mut only_excluded_left) = (0, 0, 0, 0, 0);
    let (mut unqualified, mut open_decisions, mut capped_orders, mut capped_cut) = (0, 0, 0, 0);
    let (mut capped_entitled, mut capped_paid) = (Decimal::ZERO, Decimal::ZERO);
    for o in orders {
        let e = &expected[&o.id];
        for (_, level, kind) in e.commissions.keys() {
            *kinds.entry(format!("{kind}@{level}")).or_default() += 1;
        }
        *reasons.entry(e.no_commission_reason.unwrap_or("paid")).or_default() += 1;
        *months.entry(o.placed_at.with_timezone(&Jakarta).format("%Y-%m").to_string()).or_default() += 1;
        capped += usize::from(e.capped);
        unqualified += e.unqualified;
        open_decisions += e.open_decisions;
        capped_orders += usize::from(e.capped_order);
        capped_cut += usize::from(e.capped_cut);
        capped_entitled += e.capped_entitled;
        capped_paid += e.capped_paid;
        skipped += usize::from(e.skipped_ancestor && !e.commissions.is_empty());
        first += usize::from(e.rewards.contains_key("first_order_bonus"));
        voided += usize::from(o.voided());
        only_excluded_left +=
            usize::from(!o.voided() && o.refunded.iter().any(|&r| r > 0) && eligible_now(o, p).is_zero());
    }
    format!(
        "lines {kinds:?}; rule 2 {reasons:?}; capped {capped}; suspended ancestor skipped {skipped}; \
         first-order bonuses {first}; cancelled or fully refunded {voided}; refunded down to excluded items {only_excluded_left}; \
         orders per Jakarta month {months:?}; upline qualification: {unqualified} ancestors passed over as \
         unqualified, {open_decisions} decisions settled by komisi within the record's bounds; {CAPPED}'s cap of \
         {CAP} a month: {capped_orders} orders attributed to it, {capped_cut} of them cut, entitled {capped_entitled}, \
         paid {capped_paid}")
}

/// What the orders carried, what attributed them and what was ignored, so
/// a green run shows which attribution rules it proved.
fn attribution_coverage(
    orders: &[OrderRec],
    attrs: &HashMap<String, Attr>,
    links: &Links,
    affs: &[Affiliate],
) -> String {
    let mut carried: BTreeMap<String, usize> = BTreeMap::new();
    let mut sources: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ignored: BTreeMap<String, usize> = BTreeMap::new();
    for o in orders {
        let mut kind = Vec::new();
        if o.coupons.iter().any(|c| matches!(c, CouponSent::Held(..))) {
            kind.push("coupon");
        }
        if o.coupons.iter().any(|c| matches!(c, CouponSent::Unknown(_))) {
            kind.push("unknown coupon");
        }
        match o.clicks.len() {
            0 => {}
            1 => kind.push("click"),
            _ => kind.push("clicks"),
        }
        if !matches!(o.via, Via::Nobody) {
            kind.push("code");
        }
        let kind = if kind.is_empty() { "nothing".to_string() } else { kind.join("+") };
        *carried.entry(kind).or_default() += 1;
        let a = &attrs[&o.id];
        *sources.entry(a.source.unwrap_or("none")).or_default() += 1;
        for (source, reason, _) in &a.ignored {
            *ignored.entry(format!("{source}/{reason}")).or_default() += 1;
        }
    }
    let now_clock = orders.iter().filter(|o| o.buyer.starts_with("visitor-")).count();
    let suspended = links.values().filter(|(a, _)| affs[*a].suspended).count();
    format!(
        "orders carried {carried:?} ({now_clock} on the now clock); attributed by {sources:?}; ignored {ignored:?}; \
         {} buyers linked ({suspended} to a suspended affiliate)",
        links.len()
    )
}

fn money(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("money as a string, got {v}"))).expect("decimal")
}

/// Compares one order as komisi reports it with its recomputation; the
/// differences, and the order's commission amounts by entry status.
fn compare_order(o: &OrderRec, attr: &Attr, e: &Expected, got: &Value, p: &Program, affs: &[Affiliate]) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, want: String, have: String| {
        if want != have {
            diffs.push(format!("order {}: {what}: expected {want}, komisi {have}", o.id));
        }
    };
    check("status", o.status().into(), got["status"].as_str().unwrap_or("?").into());
    check("commission_status", "processed".into(), got["commission_status"].as_str().unwrap_or("?").into());
    check(
        "eligible_amount",
        eligible_now(o, p).normalize().to_string(),
        money(&got["eligible_amount"]).normalize().to_string(),
    );
    let total: Decimal = o.items.iter().map(|i| Decimal::from(i.quantity) * i.unit_price).sum();
    check("total", total.normalize().to_string(), money(&got["total"]).normalize().to_string());
    // The rate frozen at intake: the order's own, or the table's.
    let fx = o.fx.as_ref().map_or("-".to_owned(), |f| {
        format!("{} {} {}", f.currency, f.rate.normalize(), if f.in_body { "order" } else { "table" })
    });
    let got_fx = match &got["fx"] {
        Value::Null => "-".to_owned(),
        v => format!(
            "{} {} {}",
            v["currency"].as_str().unwrap_or("?"),
            money(&v["rate"]).normalize(),
            v["source"].as_str().unwrap_or("?")
        ),
    };
    check("fx", fx, got_fx);
    let id_of = |a: Option<usize>| a.map_or("-", |a| affs[a].id.as_str());
    check("affiliate_id", id_of(attr.affiliate).into(), got["affiliate_id"].as_str().unwrap_or("-").into());
    // The attribution decided at intake: the winner, its source, and what was ignored why.
    let decided = &got["attribution"];
    check(
        "attribution.affiliate_id",
        id_of(attr.affiliate).into(),
        decided["affiliate_id"].as_str().unwrap_or("-").into(),
    );
    check("attribution.source", attr.source.unwrap_or("-").into(), decided["source"].as_str().unwrap_or("-").into());
    let mut want: Vec<String> = attr.ignored.iter().map(|&(s, r, a)| format!("{s}/{r}/{}", id_of(a))).collect();
    want.sort();
    let mut have: Vec<String> = decided["ignored"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let field = |f: &str| i[f].as_str().unwrap_or("-").to_string();
            format!("{}/{}/{}", field("source"), field("reason"), field("affiliate_id"))
        })
        .collect();
    have.sort();
    check("attribution.ignored", format!("{want:?}"), format!("{have:?}"));
    check(
        "no_commission_reason",
        format!("{:?}", e.no_commission_reason),
        format!("{:?}", got["no_commission_reason"].as_str()),
    );
    let upline: Vec<(String, u64, Option<&str>)> = got["upline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let passed = s["passed_over"].as_str();
            (s["affiliate_id"].as_str().unwrap_or("?").to_owned(), s["level"].as_u64().unwrap_or(0), passed)
        })
        .collect();
    check("upline", format!("{:?}", e.upline), format!("{upline:?}"));

    let mut lines: BTreeMap<(String, u64, String), Decimal> = BTreeMap::new();
    let want_status = if o.completed { "approved" } else { "pending" };
    for c in got["commissions"].as_array().expect("commissions") {
        let key = (
            c["affiliate_id"].as_str().expect("id").to_string(),
            c["level"].as_u64().expect("level"),
            c["kind"].as_str().expect("kind").to_string(),
        );
        *lines.entry(key).or_default() += money(&c["amount"]);
        if c["status"] != want_status {
            check("entry status", want_status.into(), format!("{} (entry {})", c["status"], c["id"]));
        }
    }
    lines.retain(|_, v| !v.is_zero());
    check("commissions", format!("{:?}", e.commissions), format!("{lines:?}"));
    let mut rewards: BTreeMap<String, i64> = BTreeMap::new();
    for r in got["rewards"].as_array().expect("rewards") {
        *rewards.entry(r["kind"].as_str().expect("kind").to_string()).or_default() +=
            r["points"].as_i64().expect("points");
    }
    rewards.retain(|_, v| *v != 0);
    check("rewards", format!("{:?}", e.rewards), format!("{rewards:?}"));
    diffs
}

#[derive(Default)]
struct CheckReport {
    orders: usize,
    affiliates: usize,
    buyers: usize,
    /// Of the differences: in orders' attribution, and in buyers' links.
    attribution_diffs: usize,
    link_diffs: usize,
    diffs: Vec<String>,
}

async fn check_orders(
    api: &Api,
    orders: &[OrderRec],
    attrs: &HashMap<String, Attr>,
    p: &Program,
    affs: &[Affiliate],
) -> (CheckReport, HashMap<String, Expected>) {
    let facts = facts(orders, attrs, p);
    let sales = Sales::new(orders, attrs, p);
    let capped = affs.iter().position(|a| a.id == CAPPED).expect("the capped affiliate");
    let fetched: Vec<(usize, Value, Value)> = futures::stream::iter(orders.iter().enumerate())
        .map(|(i, o)| async move {
            let got = api.get(&format!("/v1/orders/{}", o.id)).await;
            (i, got, api.get(&format!("/v1/orders/{}/explanation", o.id)).await)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut report = CheckReport { orders: orders.len(), ..CheckReport::default() };
    let mut expected: HashMap<String, Expected> = HashMap::with_capacity(orders.len());
    // The capped affiliate's level-1 pay per Jakarta month.
    let mut capped_months: BTreeMap<String, Decimal> = BTreeMap::new();
    for (i, got, why) in fetched {
        let o = &orders[i];
        report.diffs.extend(compare_explanation(o, &got, &why));
        // komisi's qualification decisions, used only where the record
        // cannot settle one (another lane's order of the ancestor still on
        // its way), and then checked against both bounds.
        let said: HashMap<String, bool> = got["upline"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["affiliate_id"].as_str().unwrap_or("?").to_owned(), s["passed_over"] != "unqualified"))
            .collect();
        let mut open = 0;
        let mut qualified = |u: usize| {
            let (lo, hi) = sales.before(u, o);
            if hi < p.qualification {
                false
            } else if lo >= p.qualification {
                true
            } else {
                open += 1;
                said.get(&affs[u].id).copied().unwrap_or(true)
            }
        };
        let mut e = expect(o, &attrs[&o.id], &facts[&o.id], p, affs, &mut qualified);
        e.open_decisions = open;
        let mut diffs = cap_lines(o, &mut e, &got, capped, affs);
        if attrs[&o.id].affiliate == Some(capped) {
            e.capped_order = true;
            let month = o.placed_at.with_timezone(&Jakarta).format("%Y-%m").to_string();
            *capped_months.entry(month).or_default() += e.capped_paid;
        }
        diffs.extend(compare_order(o, &attrs[&o.id], &e, &got, p, affs));
        report.attribution_diffs += diffs.iter().filter(|d| d.contains(": attribution.")).count();
        report.diffs.extend(diffs);
        expected.insert(o.id.clone(), e);
    }
    for (month, paid) in capped_months {
        if paid > dec(CAP) {
            report
                .diffs
                .push(format!("{CAPPED}'s month {month}: paid {paid} as direct affiliate, above its cap {CAP}"));
        }
    }
    (report, expected)
}

/// The explanation's lines are the ledger's: each line's `amount` (what
/// the rules entitle it to) and `paid` (its entries) equal the order's
/// ledger sums, every line of the ledger is explained, and so for points.
fn compare_explanation(o: &OrderRec, got: &Value, why: &Value) -> Vec<String> {
    let mut ledger: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for c in got["commissions"].as_array().into_iter().flatten() {
        let key = (c["affiliate_id"].as_str().unwrap_or("?").to_owned(), c["kind"].as_str().unwrap_or("?").to_owned());
        *ledger.entry(key).or_default() += money(&c["amount"]);
    }
    let mut explained: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut diffs = Vec::new();
    for l in why["commissions"].as_array().into_iter().flatten() {
        let key = (l["affiliate_id"].as_str().unwrap_or("?").to_owned(), l["kind"].as_str().unwrap_or("?").to_owned());
        if money(&l["amount"]) != money(&l["paid"]) {
            diffs
                .push(format!("order {}: explanation of {key:?}: amount {} but paid {}", o.id, l["amount"], l["paid"]));
        }
        explained.insert(key, money(&l["amount"]));
    }
    ledger.retain(|_, v| !v.is_zero());
    explained.retain(|_, v| !v.is_zero());
    if ledger != explained {
        diffs.push(format!("order {}: explanation {explained:?}, ledger {ledger:?}", o.id));
    }
    let mut points: BTreeMap<String, i64> = BTreeMap::new();
    for r in got["rewards"].as_array().into_iter().flatten() {
        *points.entry(r["kind"].as_str().unwrap_or("?").to_owned()).or_default() += r["points"].as_i64().unwrap_or(0);
    }
    points.retain(|_, v| *v != 0);
    let said: BTreeMap<String, i64> = why["rewards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["kind"].as_str().unwrap_or("?").to_owned(), r["points"].as_i64().unwrap_or(0)))
        .filter(|(_, p)| *p != 0)
        .collect();
    if points != said {
        diffs.push(format!("order {}: explained points {said:?}, rewards {points:?}", o.id));
    }
    diffs
}

/// The capped affiliate's level-1 lines: komisi may pay less than the
/// entitlement only on a line it cut (`capped_by` on one of the order's
/// entries), never more; the expected lines take what it paid, so the
/// balances and webhooks are checked against it. (The month's total is
/// checked against the cap by the caller, and each counter against the
/// ledger by reconcile.)
fn cap_lines(o: &OrderRec, e: &mut Expected, got: &Value, capped: usize, affs: &[Affiliate]) -> Vec<String> {
    let mut diffs = Vec::new();
    let id = &affs[capped].id;
    let entries: Vec<&Value> = got["commissions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["affiliate_id"] == id.as_str() && c["level"] == 1)
        .collect();
    for kind in ["commission", "tier_bonus", "milestone_bonus"] {
        let key = (id.clone(), 1, kind.to_owned());
        let want = e.commissions.get(&key).copied().unwrap_or_default();
        let of_kind: Vec<&&Value> = entries.iter().filter(|c| c["kind"] == kind).collect();
        let paid: Decimal = of_kind.iter().map(|c| money(&c["amount"])).sum();
        let cut = of_kind.iter().any(|c| c["capped_by"] == "affiliate_month");
        e.capped_entitled += want;
        e.capped_paid += paid;
        e.capped_cut |= cut;
        if paid > want || (paid < want && !cut) || paid.is_sign_negative() {
            diffs.push(format!("order {}: {id} {kind}: entitled {want}, paid {paid}, cut recorded {cut}", o.id));
        }
        if paid.is_zero() {
            e.commissions.remove(&key);
        } else {
            e.commissions.insert(key, paid);
        }
    }
    diffs
}

async fn check_balances(
    api: &Api,
    orders: &[OrderRec],
    expected: &HashMap<String, Expected>,
    links: &Links,
    affs: &[Affiliate],
    report: &mut CheckReport,
) {
    // Every entry of a completed order is approved (holding_days 0), of any other pending.
    let mut want: HashMap<&str, (Decimal, Decimal)> = HashMap::new();
    let mut points: BTreeMap<&str, i64> = BTreeMap::new();
    for o in orders {
        let e = &expected[&o.id];
        for ((aff, _, _), amount) in &e.commissions {
            let slot = want.entry(aff.as_str()).or_default();
            if o.completed {
                slot.1 += amount;
            } else {
                slot.0 += amount;
            }
        }
        *points.entry(o.buyer.as_str()).or_default() += e.rewards.values().sum::<i64>();
    }
    for a in affs {
        let got = api.get(&format!("/v1/affiliates/{}", a.id)).await;
        let (pending, approved) = want.get(a.id.as_str()).copied().unwrap_or_default();
        let b = &got["balances"];
        let have = (money(&b["pending"]), money(&b["approved"]), money(&b["paid"]));
        if have != (pending, approved, Decimal::ZERO) {
            report.diffs.push(format!(
                "affiliate {}: balances expected pending {pending} approved {approved} paid 0, komisi {b}",
                a.id
            ));
        }
    }
    report.affiliates = affs.len();
    let fetched: Vec<(&str, Value, Value)> = futures::stream::iter(points.keys().copied())
        .map(|b| async move {
            (b, api.get(&format!("/v1/buyers/{b}/rewards")).await, api.get(&format!("/v1/buyers/{b}")).await)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (buyer, got, view) in fetched {
        if got["points"].as_i64() != Some(points[buyer]) {
            report.diffs.push(format!("buyer {buyer}: points expected {}, komisi {}", points[buyer], got["points"]));
        }
        // The buyer's link: made by the order, for life, active unless its affiliate is suspended.
        let want = links.get(buyer).map(|(a, order)| {
            format!("{} by order {order} (order), expires null, active {}", affs[*a].id, !affs[*a].suspended)
        });
        let l = &view["customer_link"];
        let have = (!l.is_null()).then(|| {
            format!(
                "{} by order {} ({}), expires {}, active {}",
                l["affiliate_id"].as_str().unwrap_or("?"),
                l["order_id"].as_str().unwrap_or("?"),
                l["source"].as_str().unwrap_or("?"),
                l["expires_at"],
                l["active"]
            )
        });
        if want != have {
            report.link_diffs += 1;
            report.diffs.push(format!("buyer {buyer}: customer_link expected {want:?}, komisi {have:?}"));
        }
    }
    report.buyers = points.len();
}

/// Row counts read straight from the database.
async fn check_database(pool: &MySqlPool, orders: &[OrderRec], tally: &Tally, report: &mut CheckReport) -> String {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM orders").fetch_all(pool).await.expect("orders");
    let stored: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let sent: BTreeSet<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    if stored != sent || ids.len() != orders.len() {
        let missing: Vec<_> = sent.difference(&stored).take(10).collect();
        let extra: Vec<_> = stored.difference(&sent).take(10).collect();
        report.diffs.push(format!(
            "orders: {} answered 2xx, {} stored; missing {missing:?}, not answered {extra:?}",
            orders.len(),
            ids.len()
        ));
    }
    let by: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT type, status, COUNT(*) FROM events GROUP BY type, status")
            .fetch_all(pool)
            .await
            .expect("events");
    let count = |t: &str| by.iter().filter(|(ty, _, _)| ty == t).map(|r| r.2).sum::<i64>() as u64;
    for (t, want) in [
        ("order.placed", tally.orders),
        ("order.refunded", tally.refunds),
        ("order.cancelled", tally.cancels),
        ("order.completed", tally.completes),
    ] {
        if count(t) != want {
            report.diffs.push(format!("events {t}: {want} requests answered 2xx, {} events stored", count(t)));
        }
    }
    if let Some(r) = by.iter().find(|r| r.1 != "done") {
        report.diffs.push(format!("events not done: {by:?} (first: {r:?})"));
    }
    for (table, who) in [("ledger_entries", "affiliate_id"), ("reward_entries", "buyer_id")] {
        let dup: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {table} GROUP BY event_id, {who}, kind HAVING COUNT(*) > 1) d"
        ))
        .fetch_one(pool)
        .await
        .expect("duplicates");
        if dup != 0 {
            report.diffs.push(format!("{table}: {dup} (event, beneficiary, kind) with two entries"));
        }
    }
    let attempts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM event_attempts").fetch_one(pool).await.expect("attempts");
    let ledger: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries").fetch_one(pool).await.expect("ledger");
    let events: i64 = by.iter().map(|r| r.2).sum();
    format!("{events} events (all done), {ledger} ledger entries, {attempts} failed attempts recorded")
}

/// One request, with the time reconcile needs (it recomputes every order:
/// tens of seconds for tens of thousands of orders); a retry would only start
/// a second one beside the first.
async fn check_reconcile(api: &Api, report: &mut CheckReport) -> String {
    let start = Instant::now();
    let req = api
        .http
        .post(format!("{}/admin/reconcile", api.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"wait": true}))
        .timeout(RECONCILE_TIMEOUT);
    let r: Value = match req.send().await {
        Ok(resp) => resp.json().await.unwrap_or_else(|e| json!({"error": e.to_string()})),
        Err(e) => json!({"error": e.to_string()}),
    };
    let took = start.elapsed();
    let violations = r["violations"].as_array().map_or(usize::MAX, Vec::len);
    if r["ok"] != json!(true) || violations != 0 {
        report.diffs.push(format!("reconcile: ok={} with {violations} violations: {r}", r["ok"]));
    }
    format!("reconcile ok={} checked {} in {took:.1?}", r["ok"], r["checked"])
}

// ------------------------------------------------------------------ webhooks

/// The run's webhook endpoint and its receiver.
struct Webhooks {
    endpoint: String,
    receiver: Arc<Receiver>,
}

/// Registers one endpoint for every ledger change and approval, and starts
/// the receiver with its secret. The secret is only known from the 201, so
/// the endpoint is registered on a placeholder URL first and then moved to
/// the receiver, before any change is written. Sent once each (no retry): a
/// second POST would register a second endpoint.
async fn register_webhooks(api: &Api) -> Webhooks {
    let body = json!({"url": "http://127.0.0.1:9/not-yet", "event_types": WEBHOOK_TYPES});
    let (status, e) = api.send(Method::POST, "/admin/webhooks", Some(&body)).await.expect("register the endpoint");
    assert_eq!(status, StatusCode::CREATED, "POST /admin/webhooks: {e}");
    let endpoint = e["id"].as_str().expect("endpoint id").to_string();
    let receiver = Receiver::start(&[e["secret"].as_str().expect("secret")]).await;
    let patch = json!({"url": receiver.url("/chaos")});
    let (status, e) = api
        .send(Method::PATCH, &format!("/admin/webhooks/{endpoint}"), Some(&patch))
        .await
        .expect("point the endpoint at the receiver");
    assert_eq!(status, StatusCode::OK, "PATCH /admin/webhooks/{endpoint}: {e}");
    Webhooks { endpoint, receiver: Arc::new(receiver) }
}

/// Waits until komisi has no pending webhook message; a failed message (or
/// a disabled endpoint) is an Err with what komisi recorded.
async fn drain_webhooks(api: &Api, endpoint: &str) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let failed = api.get(&format!("/admin/webhook-messages?endpoint={endpoint}&status=failed&limit=5")).await;
        if let Some(items) = failed["items"].as_array().filter(|a| !a.is_empty()) {
            let shown: Vec<String> = items
                .iter()
                .map(|m| {
                    format!("{} {} {} attempts, attempt_log {}", m["id"], m["type"], m["attempts"], m["attempt_log"])
                })
                .collect();
            return Err(format!("failed webhook messages (newest first): {}", shown.join("; ")));
        }
        let pending = api.get(&format!("/admin/webhook-messages?endpoint={endpoint}&status=pending&limit=1")).await;
        if pending["items"].as_array().is_some_and(|a| a.is_empty()) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > WEBHOOK_DRAIN_TIMEOUT {
            let e = api.get(&format!("/admin/webhooks/{endpoint}")).await;
            return Err(format!(
                "webhook messages still pending after {WEBHOOK_DRAIN_TIMEOUT:?}; the oldest listed: {}; the endpoint: {e}",
                pending["items"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the messages of one order add up to: every (affiliate, level,
/// kind) → amount and reward kind → points; per affiliate its (pending,
/// approved) balance as a receiver following `status` and
/// `commission.approved` keeps it, and its approval messages.
#[derive(Default)]
struct Told {
    commissions: BTreeMap<(String, u64, String), Decimal>,
    rewards: BTreeMap<String, i64>,
    balances: BTreeMap<String, (Decimal, Decimal)>,
    approvals: BTreeMap<String, u32>,
    /// A commission.created for the first event already `approved`: the
    /// order was approved before its first event was applied.
    approved_before_applied: bool,
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("webhook data without a string {field}: {v}"))
}

fn points(v: &Value) -> i64 {
    text(v, "points").parse().unwrap_or_else(|_| panic!("points not an integer string: {v}"))
}

/// The receiver's log against what komisi stored and what the checker
/// expects: every delivery verified by the library under the endpoint's
/// secret; one body per `webhook-id`; the ids delivered exactly the ids
/// stored for the endpoint; and per order, the distinct messages' lines
/// summed per (affiliate, level, kind) and per reward kind equal to the
/// checker's expected ledger and points. Differences go into the report.
async fn check_webhooks(
    webhooks: &Webhooks,
    pool: &MySqlPool,
    orders: &[OrderRec],
    expected: &HashMap<String, Expected>,
    report: &mut CheckReport,
) -> String {
    let deliveries = webhooks.receiver.log().await;
    let mut diffs: Vec<String> = Vec::new();

    // Signatures (the official library) and the request target.
    let bad: Vec<&Delivery> =
        deliveries.iter().filter(|d| d.verified_by != [0] || d.path != "/chaos" || d.webhook_id.is_empty()).collect();
    if !bad.is_empty() {
        diffs.push(format!(
            "{} of {} deliveries not verified under the secret (or not to /chaos)",
            bad.len(),
            deliveries.len()
        ));
        diffs.extend(bad.iter().take(3).map(|d| {
            format!("delivery {} to {}: verified_by {:?}, {:?}", d.webhook_id, d.path, d.verified_by, d.verify_error)
        }));
    }

    // Duplicates only with the same webhook-id and the same bytes.
    let mut by_id: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
    for d in &deliveries {
        by_id.entry(d.webhook_id.as_str()).or_default().push(d);
    }
    let repeated = by_id.values().filter(|v| v.len() > 1).count();
    let most = by_id.values().map(Vec::len).max().unwrap_or(0);
    for (id, ds) in &by_id {
        if ds.iter().any(|d| d.body != ds[0].body) {
            diffs.push(format!("{id}: delivered {} times with different bodies", ds.len()));
        }
    }

    // Every stored message delivered, none delivered that is not stored.
    let stored: Vec<(String, String, String, u64)> =
        sqlx::query_as("SELECT message_id, type, status, id FROM webhook_messages WHERE endpoint_id = ?")
            .bind(&webhooks.endpoint)
            .fetch_all(pool)
            .await
            .expect("webhook messages");
    let stored_ids: BTreeMap<&str, (&str, &str, u64)> =
        stored.iter().map(|(m, t, s, row)| (m.as_str(), (t.as_str(), s.as_str(), *row))).collect();
    let missing: Vec<&&str> = stored_ids.keys().filter(|m| !by_id.contains_key(*m)).take(10).collect();
    let extra: Vec<&&str> = by_id.keys().filter(|m| !stored_ids.contains_key(*m)).take(10).collect();
    if stored_ids.len() != by_id.len() || !missing.is_empty() || !extra.is_empty() {
        diffs.push(format!(
            "{} messages stored for the endpoint, {} webhook-ids delivered; not delivered {missing:?}, not stored {extra:?}",
            stored_ids.len(),
            by_id.len()
        ));
    }
    let undelivered = stored.iter().filter(|m| m.2 != "delivered").count();
    if undelivered != 0 {
        diffs.push(format!("{undelivered} stored messages not `delivered`"));
    }

    // Each distinct message, by order.
    let mut told: HashMap<String, Told> = HashMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    // (type, event, beneficiary): one message each.
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    let buyer_of: HashMap<&str, &str> = orders.iter().map(|o| (o.id.as_str(), o.buyer.as_str())).collect();
    for (id, ds) in &by_id {
        let body = ds[0].json();
        let kind = body["type"].as_str().unwrap_or_default().to_string();
        let data = &body["data"];
        *kinds.entry(kind.clone()).or_default() += 1;
        if let Some((t, _, row)) = stored_ids.get(id) {
            if *t != kind || data["sequence"].as_u64() != Some(*row) {
                diffs.push(format!("{id}: stored as {t} row {row}, delivered as {kind} sequence {}", data["sequence"]));
            }
        }
        let order = text(data, "order_id").to_string();
        let mut wrong = |what: String| diffs.push(format!("order {order}: message {id} {kind}: {what}"));
        let slot = told.entry(order.clone()).or_default();
        match kind.as_str() {
            "commission.created" | "commission.reversed" => {
                let affiliate = text(data, "affiliate_id").to_string();
                if buyer_of.get(order.as_str()) != Some(&text(data, "buyer_id")) {
                    wrong(format!("buyer {} is not the order's", data["buyer_id"]));
                }
                let amount = money(&data["amount"]);
                let mut sum = Decimal::ZERO;
                for l in data["lines"].as_array().into_iter().flatten() {
                    let line = money(&l["amount"]);
                    sum += line;
                    let key = (affiliate.clone(), l["level"].as_u64().expect("level"), text(l, "kind").to_string());
                    *slot.commissions.entry(key).or_default() += line;
                }
                if sum != amount || (kind == "commission.created") != amount.is_sign_positive() || amount.is_zero() {
                    wrong(format!("amount {amount}, its lines sum to {sum}"));
                }
                let balance = slot.balances.entry(affiliate.clone()).or_default();
                match text(data, "status") {
                    "pending" => balance.0 += amount,
                    "approved" => balance.1 += amount,
                    other => wrong(format!("status {other}")),
                }
                slot.approved_before_applied |= data["status"] == "approved" && data["event_type"] == "order.placed";
                if !seen.insert((kind.clone(), text(data, "event_id").to_string(), affiliate)) {
                    wrong("a second message for the same event and affiliate".into());
                }
            }
            "reward.earned" | "reward.reversed" => {
                let buyer = text(data, "buyer_id").to_string();
                if buyer_of.get(order.as_str()) != Some(&buyer.as_str()) {
                    wrong(format!("buyer {buyer} is not the order's"));
                }
                let total = points(data);
                let mut sum = 0;
                for l in data["lines"].as_array().into_iter().flatten() {
                    sum += points(l);
                    *slot.rewards.entry(text(l, "kind").to_string()).or_default() += points(l);
                }
                if sum != total || (kind == "reward.earned") != (total > 0) || total == 0 {
                    wrong(format!("points {total}, its lines sum to {sum}"));
                }
                if !seen.insert((kind.clone(), text(data, "event_id").to_string(), buyer)) {
                    wrong("a second message for the same event and buyer".into());
                }
            }
            "commission.approved" => {
                let affiliate = text(data, "affiliate_id").to_string();
                let amount = money(&data["amount"]);
                let balance = slot.balances.entry(affiliate.clone()).or_default();
                balance.0 -= amount;
                balance.1 += amount;
                *slot.approvals.entry(affiliate).or_default() += 1;
            }
            _ => wrong("a type the endpoint is not subscribed to".into()),
        }
    }

    // Per order: the messages add up to the checker's expected lines.
    let mut with_messages = 0;
    let mut approved_early = 0;
    for o in orders {
        let e = &expected[&o.id];
        let Some(mut t) = told.remove(&o.id) else {
            if !e.commissions.is_empty() || !e.rewards.is_empty() {
                diffs.push(format!(
                    "order {}: no message, expected lines {:?} and points {:?}",
                    o.id, e.commissions, e.rewards
                ));
            }
            continue;
        };
        with_messages += 1;
        t.commissions.retain(|_, v| !v.is_zero());
        t.rewards.retain(|_, v| *v != 0);
        if t.commissions != e.commissions {
            diffs.push(format!(
                "order {}: commission messages add up to {:?}, expected {:?}",
                o.id, t.commissions, e.commissions
            ));
        }
        if t.rewards != e.rewards {
            diffs.push(format!("order {}: reward messages add up to {:?}, expected {:?}", o.id, t.rewards, e.rewards));
        }
        // By status, as check_balances: a completed order's entries are
        // all approved (holding_days 0), any other order's pending. An
        // approval is sent once, for what was pending then (none when the
        // order was approved before its first event was applied: its
        // entries were written approved).
        let mut want: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
        for ((aff, _, _), amount) in &e.commissions {
            let slot = want.entry(aff.clone()).or_default();
            if o.completed {
                slot.1 += amount;
            } else {
                slot.0 += amount;
            }
        }
        t.balances.retain(|_, (pending, approved)| !pending.is_zero() || !approved.is_zero());
        if t.balances != want || t.approvals.values().any(|&n| n > 1) {
            diffs.push(format!(
                "order {} (completed: {}): (pending, approved) per affiliate from the messages {:?}, approvals {:?}; \
                 expected {want:?}",
                o.id, o.completed, t.balances, t.approvals
            ));
        }
        approved_early += usize::from(t.approved_before_applied);
    }
    for order in told.keys().take(10) {
        diffs.push(format!("order {order}: messages, but no such order was answered 2xx"));
    }

    let summary = format!(
        "webhooks: {} messages stored, {} webhook-ids delivered {kinds:?}; {} deliveries, {repeated} webhook-ids delivered \
         more than once (at most {most} times, same body each time); every signature verified by standardwebhooks: {}; \
         {} orders checked ({with_messages} with messages; {approved_early} approved before their first event was \
         applied, so no commission.approved); {} differences",
        stored_ids.len(),
        by_id.len(),
        deliveries.len(),
        bad.is_empty(),
        orders.len(),
        diffs.len()
    );
    report.diffs.extend(diffs.into_iter().map(|d| format!("webhooks: {d}")));
    summary
}

// ------------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts its own MariaDB and runs for KOMISI_CHAOS_SECS (60): cargo test --test chaos -- --ignored --nocapture"]
async fn chaos() {
    let began = Instant::now();
    let settings = Settings::from_env();
    let mode = if settings.faults { "chaos" } else { "soak (no faults)" };
    println!(
        "chaos: {mode}, {} s at {} orders/s in {LANES} lanes, seed {} (KOMISI_CHAOS_SEED)",
        settings.secs, settings.rate, settings.seed
    );
    let program = Program::chaos();
    let affs = Arc::new(tree());

    let servers = start_servers(&settings).await;
    println!(
        "chaos: temp dir {}, MariaDB on port {}, komisi on port {}, Redis prefix {}",
        servers.dir.display(),
        servers.mariadb.port,
        servers.komisi.port,
        servers.komisi.prefix
    );
    let servers = Arc::new(Mutex::new(servers));
    let api = Api::new(servers.lock().await.komisi.port);
    let pool = {
        let url = servers.lock().await.mariadb.url("komisi");
        MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(&url)
            .expect("pool")
    };
    {
        let mut s = servers.lock().await;
        s.komisi.spawn();
        s.komisi.wait_ready(&api, Duration::from_secs(60)).await.expect("komisi starts");
    }
    api.until_2xx(Method::PUT, "/admin/program", Some(&program.json())).await;
    let rates: BTreeMap<&str, &str> = TABLE_RATES.into_iter().collect();
    let table = json!({"base": "IDR", "rates": rates, "as_of": "2000-01-01T00:00:00Z"});
    api.until_2xx(Method::PUT, "/admin/fx-rates", Some(&table)).await;
    register_tree(&api, &affs).await;
    let caps = json!({"caps": [{"period": "month", "max_commission": CAP}]});
    api.until_2xx(Method::PUT, &format!("/admin/affiliates/{CAPPED}/caps"), Some(&caps)).await;
    let webhooks = register_webhooks(&api).await;

    let setup = began.elapsed();
    println!(
        "chaos: set up in {setup:.1?} (MariaDB installed and started, komisi started, program and {} affiliates, \
         webhook endpoint {} to the receiver on port {})",
        affs.len(),
        webhooks.endpoint,
        webhooks.receiver.port()
    );

    // The stream, the faults and the sampler.
    let start = Instant::now();
    let timeline = Arc::new(Mutex::new(Timeline { start, lines: Vec::new(), findings: Vec::new() }));
    let stop = Arc::new(AtomicBool::new(false));
    let lane_orders = (settings.rate * settings.secs) as i64 / LANES as i64;
    let first_placed_at = month_boundary() - TimeDelta::seconds(lane_orders * 60 / 2);
    // The past clock (at most a minute per order) must stay out of the
    // current Jakarta month, the now clock's.
    let past_end = first_placed_at + TimeDelta::seconds(lane_orders * 60);
    let this_month = month_boundary() + TimeDelta::days(28);
    assert!(
        past_end < this_month,
        "the past clock would run to {past_end}, into the current month: lower KOMISI_CHAOS_SECS or KOMISI_CHAOS_RATE"
    );
    let period = Duration::from_secs_f64(LANES as f64 * ORDER_SHARE / settings.rate as f64);
    let lanes: Vec<_> = (0..LANES)
        .map(|lane| {
            tokio::spawn(run_lane(LaneSetup {
                lane,
                api: api.clone(),
                affs: affs.clone(),
                seed: settings.seed,
                period,
                first_placed_at,
                expected_orders: lane_orders as usize,
                stop: stop.clone(),
            }))
        })
        .collect();
    let sampler_stop = CancellationToken::new();
    let sampler = tokio::spawn(run_sampler(start, servers.clone(), pool.clone(), sampler_stop.clone()));
    let faults = settings.faults.then(|| {
        tokio::spawn(run_faults(
            start,
            servers.clone(),
            api.clone(),
            pool.clone(),
            webhooks.receiver.clone(),
            timeline.clone(),
            settings.secs,
        ))
    });
    tokio::time::sleep(Duration::from_secs(settings.secs)).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(f) = faults {
        f.await.expect("fault task");
    }
    let mut orders = Vec::new();
    let mut tally = Tally::default();
    let mut wrong_clicks = Vec::new();
    for lane in lanes {
        let r = lane.await.expect("lane");
        orders.extend(r.orders); // each lane's in the order sent
        tally.add(&r.tally);
        wrong_clicks.extend(r.wrong_clicks);
    }
    let stream_end = start.elapsed();
    timeline.lock().await.log(format!("stream stopped ({} orders)", tally.orders));

    // Drain, then check.
    let drained = drain(&api).await;
    timeline.lock().await.log(format!("drained: {drained:?}"));
    sampler_stop.cancel();
    let samples = sampler.await.expect("sampler");
    let checking = Instant::now();
    let (attrs, links) = attribute(&orders, &affs);
    let (mut report, expected) = check_orders(&api, &orders, &attrs, &program, &affs).await;
    report.diffs.extend(wrong_clicks.iter().map(|w| format!("click: {w}")));
    let progress = |what: &str, r: &CheckReport| {
        println!("chaos: {what} checked at {:.1?} ({} differences so far)", checking.elapsed(), r.diffs.len());
    };
    progress("orders", &report);
    check_balances(&api, &orders, &expected, &links, &affs, &mut report).await;
    progress("balances, points and links", &report);
    let db = check_database(&pool, &orders, &tally, &mut report).await;
    progress("database rows", &report);
    let reconcile = check_reconcile(&api, &mut report).await;
    progress("reconcile", &report);
    let webhooks_drained = drain_webhooks(&api, &webhooks.endpoint).await;
    println!("chaos: webhook messages delivered at {:.1?}: {webhooks_drained:?}", checking.elapsed());
    let webhook_summary = check_webhooks(&webhooks, &pool, &orders, &expected, &mut report).await;
    progress("webhook deliveries", &report);
    let checked_in = checking.elapsed();

    // Summary.
    let tl = timeline.lock().await;
    println!("\n==== chaos summary ({mode}, {} s, seed {}) ====", settings.secs, settings.seed);
    println!(
        "answered 2xx: {} orders, {} refunds, {} cancels, {} completes, {} clicks in {:.1?}",
        tally.orders, tally.refunds, tally.cancels, tally.completes, tally.clicks, stream_end
    );
    println!(
        "retried requests: {} retries; {} finally answered 200 \"already accepted\"",
        tally.retries, tally.already
    );
    let kills = tl.lines.iter().filter(|l| l.contains("SIGKILL komisi")).count();
    let wipes = tl.lines.iter().filter(|l| l.contains("Redis keys")).count();
    let restarts = tl.lines.iter().filter(|l| l.contains("SIGKILL mariadbd")).count();
    println!("faults: {kills} SIGKILLs of komisi, {wipes} Redis wipes, {restarts} MariaDB restarts");
    for line in &tl.lines {
        println!("  {line}");
    }
    println!("drain after the stream stopped: {drained:?}");
    println!("{}", summarize("komisi RSS kB", &samples.iter().map(|s| s.rss_kb.map(|v| v as i64)).collect::<Vec<_>>()));
    println!("{}", summarize("MariaDB Threads_connected", &samples.iter().map(|s| s.connections).collect::<Vec<_>>()));
    println!("{}", summarize("open events", &samples.iter().map(|s| s.backlog).collect::<Vec<_>>()));
    println!("{}", summarize("pending webhook messages", &samples.iter().map(|s| s.webhooks).collect::<Vec<_>>()));
    println!("rules exercised: {}", coverage(&orders, &expected, &program));
    println!("attribution exercised: {}", attribution_coverage(&orders, &attrs, &links, &affs));
    let mut currencies: BTreeMap<String, usize> = BTreeMap::new();
    for o in &orders {
        let key = o.fx.as_ref().map_or("IDR".to_owned(), |f| {
            format!("{} ({})", f.currency, if f.in_body { "own rate" } else { "table rate" })
        });
        *currencies.entry(key).or_default() += 1;
    }
    println!("currencies exercised (orders): {currencies:?}");
    println!("database: {db}");
    println!("{reconcile}");
    println!("{webhook_summary}");
    println!("webhook messages all delivered, after the reconcile: {webhooks_drained:?}");
    println!(
        "attribution: {} orders' source, affiliate and ignored list compared, {} differences; {} buyers' links \
         compared ({} linked), {} differences; {} click answers wrong",
        report.orders,
        report.attribution_diffs,
        report.buyers,
        links.len(),
        report.link_diffs,
        wrong_clicks.len()
    );
    println!(
        "checker: {} orders (and their explanations), {} affiliates, {} buyers recomputed in {checked_in:.1?}; {} differences",
        report.orders,
        report.affiliates,
        report.buyers,
        report.diffs.len()
    );
    println!("set-up {setup:.1?}, stream {stream_end:.1?}, whole run {:.1?}", began.elapsed());
    for d in report.diffs.iter().take(30) {
        println!("  DIFF {d}");
    }
    for f in &tl.findings {
        println!("  FINDING {f}");
    }
    if !report.diffs.is_empty() || !tl.findings.is_empty() || drained.is_err() || webhooks_drained.is_err() {
        println!("komisi log tail:\n{}", tail(&servers.lock().await.komisi.log, 40));
    }
    assert!(drained.is_ok(), "the backlog did not drain: {drained:?}");
    assert!(webhooks_drained.is_ok(), "the webhook messages were not all delivered: {webhooks_drained:?}");
    assert!(tl.findings.is_empty(), "findings: {:?}", tl.findings);
    assert!(report.diffs.is_empty(), "{} differences between komisi and the recomputation", report.diffs.len());
}
