//! spawn_app(): a real komisi instance on port 0, with its own MariaDB database
//! and Redis key prefix, running on its own runtime so a test can kill it
//! outright (every task dropped mid-flight, as with SIGKILL) and restart it.
use komisi::actors::messages::{SupervisorMsg, TreeStats};
use komisi::config::Config;
use komisi::engine::faults::Faults;
use ractor::ActorRef;
use reqwest::{Response, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::mysql::MySqlPool;
use sqlx::Row;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const STOREFRONT_KEY: &str = "sf-test-key";
pub const ADMIN_KEY: &str = "admin-test-key";

fn mysql_base() -> String {
    std::env::var("KOMISI_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn redis_url() -> String {
    std::env::var("KOMISI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

enum Stop {
    Kill,
    Graceful,
}

pub struct Instance {
    stop: Option<tokio::sync::oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    /// Kills the instance outright (every task dropped, as with SIGKILL) and waits for it.
    pub async fn kill(mut self) {
        self.stop(Stop::Kill);
        tokio::task::spawn_blocking(move || self.join()).await.expect("join app thread");
    }

    fn stop(&mut self, how: Stop) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(how);
        }
    }
    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: MySqlPool,
    pub db_name: String,
    pub prefix: String,
    pub config: Config,
    pub faults: Arc<Faults>,
    pub supervisor: ActorRef<SupervisorMsg>,
    instance: Instance,
}

/// Test tuning: quick retries and sweeps, so recovery paths finish in seconds.
pub fn test_config(db_url: String, prefix: String) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().expect("address"),
        database_url: db_url,
        redis_url: Some(redis_url()),
        redis_prefix: prefix,
        storefront_keys: vec![STOREFRONT_KEY.into()],
        admin_keys: vec![ADMIN_KEY.into()],
        max_attempts: 8,
        retry_base_ms: 50,
        retry_max_ms: 400,
        redeliver_after_ms: 3_000,
        claim_idle_ms: 3_000,
        recovery_interval_ms: 200,
        actor_idle_ms: 1_000,
        max_inflight: 10_000,
        partition_inflight: 256,
        db_max_connections: 4,
        db_worker_connections: 4,
        event_workers: 2,
        event_batch: 32,
        event_linger_ms: 2,
        bench_commission_delay_ms: 0,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, Faults::default()).await
}

pub async fn spawn_app_with(tune: impl FnOnce(&mut Config), faults: Faults) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let id = uuid::Uuid::now_v7().simple().to_string();
    let db_name = format!("komisi_t_{}", &id[id.len() - 20..]);
    let prefix = format!("komisi_t_{}", &id[id.len() - 20..]);
    let admin = MySqlPool::connect(&mysql_base()).await.expect("MariaDB reachable (KOMISI_TEST_MYSQL_URL)");
    sqlx::query(&format!("CREATE DATABASE `{db_name}`")).execute(&admin).await.expect("create test database");
    admin.close().await;
    let db_url = format!("{}/{db_name}", mysql_base());
    let mut config = test_config(db_url.clone(), prefix.clone());
    tune(&mut config);
    let faults = Arc::new(faults);
    let (instance, addr, supervisor) = start_instance(config.clone(), faults.clone()).await;
    let db = MySqlPool::connect(&db_url).await.expect("connect test database");
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        db,
        db_name,
        prefix,
        config,
        faults,
        supervisor,
        instance,
    }
}

pub async fn start_instance(config: Config, faults: Arc<Faults>) -> (Instance, SocketAddr, ActorRef<SupervisorMsg>) {
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Stop>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let app = match komisi::app::start(config, faults).await {
                Ok(app) => app,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = addr_tx.send(Ok((app.addr, app.supervisor.clone())));
            if let Ok(Stop::Graceful) = stop_rx.await {
                app.shutdown();
                let _ = app.wait().await;
            }
        });
        // Drops every task still running: actors, handlers, open transactions.
        rt.shutdown_background();
    });
    let (addr, supervisor) = addr_rx.await.expect("app thread alive").expect("app starts");
    (Instance { stop: Some(stop_tx), thread: Some(thread) }, addr, supervisor)
}

impl TestApp {
    /// Kills the instance outright: nothing drains, nothing is acked.
    pub async fn kill(&mut self) {
        self.instance.stop(Stop::Kill);
        let mut instance = std::mem::replace(&mut self.instance, Instance { stop: None, thread: None });
        tokio::task::spawn_blocking(move || instance.join()).await.expect("join app thread");
    }

    /// Stops gracefully (drain), as on SIGTERM.
    pub async fn shutdown(&mut self) {
        self.instance.stop(Stop::Graceful);
        let mut instance = std::mem::replace(&mut self.instance, Instance { stop: None, thread: None });
        tokio::task::spawn_blocking(move || instance.join()).await.expect("join app thread");
    }

    /// Starts a new instance on the same database and Redis prefix (a new port).
    pub async fn restart(&mut self, faults: Faults) {
        self.faults = Arc::new(faults);
        let (instance, addr, supervisor) = start_instance(self.config.clone(), self.faults.clone()).await;
        self.instance = instance;
        self.supervisor = supervisor;
        self.base = format!("http://{addr}");
    }

    /// The actor tree's own count of live commission actors and entries in flight.
    pub async fn tree_stats(&self) -> TreeStats {
        ractor::call!(self.supervisor, SupervisorMsg::Stats).expect("supervisor answers")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).bearer_auth(STOREFRONT_KEY).json(body).send().await.expect("POST")
    }

    pub async fn admin_put(&self, path: &str, body: &Value) -> Response {
        self.client.put(self.url(path)).bearer_auth(ADMIN_KEY).json(body).send().await.expect("PUT")
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).bearer_auth(ADMIN_KEY).json(body).send().await.expect("POST")
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self.client.get(self.url(path)).bearer_auth(ADMIN_KEY).send().await.expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.expect("json")
    }

    /// `GET /admin/reconcile` must find nothing wrong.
    pub async fn assert_reconciled(&self) {
        let report = self.admin_get("/admin/reconcile").await;
        assert_eq!(report["ok"], true, "reconcile found violations: {report}");
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.client.patch(self.url(path)).bearer_auth(STOREFRONT_KEY).json(body).send().await.expect("PATCH")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(STOREFRONT_KEY).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.expect("json")
    }

    /// Replaces the program with the SPEC example changed by `change`.
    pub async fn set_program(&self, change: impl FnOnce(&mut Value)) -> u64 {
        let mut program = default_program();
        change(&mut program);
        let r = self.admin_put("/admin/program", &program).await;
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "PUT /admin/program: {body}");
        body["version"].as_u64().expect("version")
    }

    pub async fn create_affiliate(&self, id: &str, parent: Option<&str>) {
        self.create_affiliate_with(json!({"id": id, "name": format!("Affiliate {id}"), "parent_id": parent, "referral_code": format!("code-{id}")})).await;
    }

    pub async fn create_affiliate_with(&self, body: Value) {
        let r = self.post("/v1/affiliates", &body).await;
        let status = r.status();
        assert_eq!(status, StatusCode::CREATED, "create affiliate: {}", r.text().await.unwrap_or_default());
    }

    /// Posts an order and returns (status, body).
    pub async fn place(&self, order: &Value) -> (StatusCode, Value) {
        let r = self.post("/v1/orders", order).await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts an order that must be accepted (202); returns its event id.
    pub async fn accept(&self, order: &Value) -> String {
        let (status, body) = self.place(order).await;
        assert_eq!(status, StatusCode::ACCEPTED, "order not accepted: {body}");
        body["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Waits until the order's commissions are final (or `deadline` passes).
    pub async fn processed(&self, order_id: &str) -> Value {
        self.order_in_status(order_id, "processed", Duration::from_secs(30)).await
    }

    pub async fn order_in_status(&self, order_id: &str, status: &str, deadline: Duration) -> Value {
        let path = format!("/v1/orders/{order_id}");
        let until = Instant::now() + deadline;
        loop {
            let r = self.get(&path).await;
            let last: Value = if r.status() == StatusCode::OK { r.json().await.expect("json") } else { Value::Null };
            if last["commission_status"] == status {
                return last;
            }
            assert!(Instant::now() < until, "order {order_id} did not reach commission_status {status}: {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn balance(&self, affiliate: &str, which: &str) -> Decimal {
        let a = self.get_json(&format!("/v1/affiliates/{affiliate}")).await;
        dec(&a["balances"][which])
    }

    pub async fn points(&self, buyer: &str) -> i64 {
        self.get_json(&format!("/v1/buyers/{buyer}/rewards")).await["points"].as_i64().expect("points")
    }

    /// Σ ledger amount per (affiliate, kind) for one order, read from the API.
    pub async fn order_amounts(&self, order_id: &str) -> Vec<(String, String, Decimal)> {
        let order = self.get_json(&format!("/v1/orders/{order_id}")).await;
        let mut sums: std::collections::BTreeMap<(String, String), Decimal> = Default::default();
        for e in order["commissions"].as_array().expect("commissions") {
            *sums
                .entry((e["affiliate_id"].as_str().unwrap().to_owned(), e["kind"].as_str().unwrap().to_owned()))
                .or_default() += dec(&e["amount"]);
        }
        sums.into_iter().filter(|(_, v)| !v.is_zero()).map(|((a, k), v)| (a, k, v)).collect()
    }

    /// Ledger entries of one event: (affiliate, kind, amount, status).
    pub async fn event_entries(&self, event_id: &str) -> Vec<(String, String, Decimal, String)> {
        sqlx::query("SELECT affiliate_id, kind, amount, status FROM ledger_entries WHERE event_id = ? ORDER BY affiliate_id, kind")
            .bind(event_id)
            .fetch_all(&self.db)
            .await
            .expect("entries")
            .iter()
            .map(|r| (r.get("affiliate_id"), r.get("kind"), r.get("amount"), r.get("status")))
            .collect()
    }

    /// The invariants every test ends with: balances equal ledger sums, points
    /// equal reward sums, no event wrote two entries for one (beneficiary, kind).
    pub async fn assert_ledger_consistent(&self) {
        let mismatched: Vec<String> = sqlx::query(
            "SELECT a.id FROM affiliates a LEFT JOIN ( \
               SELECT affiliate_id, SUM(CASE WHEN status='pending' THEN amount ELSE 0 END) p, \
                      SUM(CASE WHEN status='approved' THEN amount ELSE 0 END) ap, \
                      SUM(CASE WHEN status='paid' THEN amount ELSE 0 END) pd \
               FROM ledger_entries GROUP BY affiliate_id) l ON l.affiliate_id = a.id \
             WHERE a.pending <> COALESCE(l.p, 0) OR a.approved <> COALESCE(l.ap, 0) OR a.paid <> COALESCE(l.pd, 0)",
        )
        .fetch_all(&self.db)
        .await
        .expect("balance check")
        .iter()
        .map(|r| r.get::<String, _>("id"))
        .collect();
        assert!(mismatched.is_empty(), "balances differ from ledger sums for {mismatched:?}");
        let points_off: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM buyers b LEFT JOIN (SELECT buyer_id, SUM(points) s FROM reward_entries GROUP BY buyer_id) r \
             ON r.buyer_id = b.id WHERE b.points <> COALESCE(r.s, 0)",
        )
        .fetch_one(&self.db)
        .await
        .expect("points check");
        assert_eq!(points_off, 0, "buyer points differ from reward sums");
        let doubled: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT event_id FROM ledger_entries GROUP BY event_id, affiliate_id, kind HAVING COUNT(*) > 1) d",
        )
        .fetch_one(&self.db)
        .await
        .expect("duplicate check");
        assert_eq!(doubled, 0, "an event wrote two entries for one (beneficiary, kind)");
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis reachable")
    }

    /// Deletes every Redis key of this test's prefix (tests share one Redis: never FLUSHALL).
    pub async fn delete_redis_keys(&self) -> usize {
        let mut conn = self.redis().await;
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query_async(&mut conn).await.expect("KEYS");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("DEL");
        }
        keys.len()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.instance.stop(Stop::Kill);
        // Leave the database for post-mortems only when a test failed.
        if std::thread::panicking() {
            eprintln!("test database kept: {}", self.db_name);
            return;
        }
        let db_name = self.db_name.clone();
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(pool) = MySqlPool::connect(&mysql_base()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{db_name}`")).execute(&pool).await;
                }
                if let Ok(client) = redis::Client::open(redis_url()) {
                    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{prefix}:*"))
                            .query_async(&mut conn)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// Polls `check` until it is true or `deadline` passes. No sleeps as assertions.
pub async fn poll<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("money must be a string, got {v}"))).expect("decimal")
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

/// The SPEC §4 example program.
pub fn default_program() -> Value {
    json!({
        "currency": "IDR", "scale": 0, "rounding": "floor",
        "timezone": "Asia/Jakarta",
        "levels": ["0.10", "0.03", "0.01"],
        "category_rates": {"electronics": "0.04"},
        "excluded_categories": ["gift-card"],
        "min_order_amount": "50000",
        "max_commission_per_order": "1000000",
        "tiers": [{"monthly_sales_from": "10000000", "bonus_rate": "0.02"}],
        "milestones": [{"nth_order_in_month": 3, "bonus": "25000"}],
        "skip_inactive_upline": true,
        "holding_days": 14,
        "buyer_rewards": {"points_rate": "0.01", "first_order_bonus": "5000"}
    })
}

/// The SPEC §4 worked example's order.
pub fn worked_example_order(id: &str, buyer: &str, code: &str) -> Value {
    json!({
        "id": id, "buyer_id": buyer, "referral_code": code, "currency": "IDR",
        "items": [
            {"sku": "shirt", "category": "fashion", "quantity": 2, "unit_price": "75000"},
            {"sku": "phone", "category": "electronics", "quantity": 1, "unit_price": "2000000"},
            {"sku": "voucher", "category": "gift-card", "quantity": 1, "unit_price": "100000"}
        ]
    })
}

/// A one-item order (category fashion: level-1 rate 0.10).
pub fn simple_order(id: &str, buyer: &str, code: Option<&str>, price: &str) -> Value {
    let mut o = json!({
        "id": id, "buyer_id": buyer, "currency": "IDR",
        "items": [{"sku": "item", "category": "fashion", "quantity": 1, "unit_price": price}]
    });
    if let Some(code) = code {
        o["referral_code"] = json!(code);
    }
    o
}

/// A → B → C (C's parent is B, B's parent is A), codes code-A, code-B, code-C.
pub async fn abc_tree(app: &TestApp) {
    app.create_affiliate("A", None).await;
    app.create_affiliate("B", Some("A")).await;
    app.create_affiliate("C", Some("B")).await;
}
