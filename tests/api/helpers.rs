//! spawn_app(): a real komisi instance on port 0 on the backend chosen by
//! `KOMISI_TEST_BACKEND` (`mysql`, the default: its own MariaDB database and
//! Redis key prefix; `sqlite`: the embedded mode, a SQLite file of its own),
//! running on its own runtime so a test can kill it outright (every task
//! dropped mid-flight, as with SIGKILL) and restart it.
//!
//! Tests read and tamper with the database through [`TestDb`], which speaks
//! to either backend: plain SQL both understand, cells read back as text, and
//! money added up in Rust (SQLite keeps it as TEXT and would sum in floating
//! point).
//!
//! Skips. A test that does not run returns early after one line on stderr,
//! `<test name>: skipped …(why)`. There are two kinds only:
//! - by design: a test of Redis or of MySQL itself on the sqlite backend
//!   ([`needs_redis`], [`needs_mysql_backend`]); the mysql run covers it;
//! - for want of something CI provides (a Redis Cluster, the browser): it goes
//!   through [`skip_missing_dependency`] with a `KOMISI_TEST_REQUIRE_*`
//!   switch that turns the skip into a failure. scripts/test.sh provides the
//!   dependency, or stops saying why, and sets the switch. A new dependency
//!   of that kind gets its switch here and in scripts/test.sh.
use komisi::actors::messages::{SupervisorMsg, TreeStats};
use komisi::config::Config;
use komisi::engine::faults::Faults;
use ractor::ActorRef;
use reqwest::{Response, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;
use std::collections::BTreeMap;
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

/// The backend the suite runs on (`KOMISI_TEST_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    MySql,
    Sqlite,
}

pub fn test_backend() -> TestBackend {
    match std::env::var("KOMISI_TEST_BACKEND").as_deref() {
        Ok("sqlite") => TestBackend::Sqlite,
        Ok("mysql") | Ok("") | Err(_) => TestBackend::MySql,
        Ok(other) => panic!("KOMISI_TEST_BACKEND must be mysql or sqlite, not {other:?}"),
    }
}

/// True when the test may run: tests of Redis itself (stream loss, claims,
/// an unreachable Redis) only mean something in the MySQL + Redis mode.
pub fn needs_redis(test: &str) -> bool {
    needs_mysql_backend(test, "it tests Redis")
}

/// True on the MySQL + Redis backend; on sqlite, says the test is skipped and why.
pub fn needs_mysql_backend(test: &str, why: &str) -> bool {
    let run = test_backend() == TestBackend::MySql;
    if !run {
        eprintln!("{test}: skipped on the sqlite backend ({why})");
    }
    run
}

/// For a test that cannot run here for want of something CI provides: fails
/// when `switch` (a `KOMISI_TEST_REQUIRE_*` that scripts/test.sh sets) is on,
/// else says the test is skipped and why. The caller then returns.
#[track_caller]
pub fn skip_missing_dependency(test: &str, switch: &str, why: &str) {
    let required = std::env::var(switch).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "{test}: {switch} is set but {why}");
    eprintln!("{test}: skipped: {why} ({switch}=1 makes this a failure; scripts/test.sh provides it)");
}

/// The test's own database, read and changed behind komisi's back.
#[derive(Clone)]
pub enum TestDb {
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// One cell as text: NULL is None, money normalised (`25000.0000` and
/// `25000` both read `25000`), times as the backend stores them.
fn mysql_cell(row: &MySqlRow, i: usize) -> Option<String> {
    use sqlx::ValueRef;
    if row.try_get_raw(i).expect("column").is_null() {
        return None;
    }
    if let Ok(v) = row.try_get::<Decimal, _>(i) {
        return Some(v.normalize().to_string());
    }
    if let Ok(v) = row.try_get::<String, _>(i) {
        return Some(v);
    }
    if let Ok(v) = row.try_get::<i64, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(v) = row.try_get::<u64, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(v) = row.try_get::<u32, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(v) = row.try_get::<i32, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(v) = row.try_get::<i8, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(v) = row.try_get::<chrono::NaiveDateTime, _>(i) {
        return Some(v.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    }
    panic!("cannot read column {i} as text");
}

fn sqlite_cell(row: &SqliteRow, i: usize) -> Option<String> {
    use sqlx::ValueRef;
    if row.try_get_raw(i).expect("column").is_null() {
        return None;
    }
    if let Ok(v) = row.try_get::<i64, _>(i) {
        return Some(v.to_string());
    }
    let text: String = row.try_get(i).expect("an INTEGER or TEXT column");
    // Money is TEXT: normalise it as the MySQL side's DECIMAL is.
    match Decimal::from_str(&text) {
        Ok(v) if text.contains('.') => Some(v.normalize().to_string()),
        _ => Some(text),
    }
}

impl TestDb {
    /// Every row of a query, each cell as text (None for NULL). `?` binds text.
    pub async fn rows(&self, sql: &str, binds: &[&str]) -> Vec<Vec<Option<String>>> {
        match self {
            TestDb::MySql(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                let rows = q.fetch_all(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter().map(|r| (0..r.len()).map(|i| mysql_cell(r, i)).collect()).collect()
            }
            TestDb::Sqlite(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                let rows = q.fetch_all(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter().map(|r| (0..r.len()).map(|i| sqlite_cell(r, i)).collect()).collect()
            }
        }
    }

    /// The first column of every row (NULL as "NULL").
    pub async fn column(&self, sql: &str, binds: &[&str]) -> Vec<String> {
        self.rows(sql, binds).await.into_iter().map(|r| r[0].clone().unwrap_or_else(|| "NULL".into())).collect()
    }

    /// The one value of a one-row, one-column query.
    pub async fn one(&self, sql: &str, binds: &[&str]) -> String {
        let rows = self.column(sql, binds).await;
        assert_eq!(rows.len(), 1, "{sql}: one row expected, got {rows:?}");
        rows.into_iter().next().expect("one row")
    }

    /// A COUNT(*) or other integer.
    pub async fn int(&self, sql: &str, binds: &[&str]) -> i64 {
        let v = self.one(sql, binds).await;
        v.parse().unwrap_or_else(|_| panic!("{sql}: not an integer: {v}"))
    }

    /// Runs a statement both backends understand.
    pub async fn exec(&self, sql: &str, binds: &[&str]) {
        match self {
            TestDb::MySql(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            TestDb::Sqlite(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// A time column as a UTC time.
    pub async fn time(&self, sql: &str, binds: &[&str]) -> chrono::DateTime<chrono::Utc> {
        let v = self.one(sql, binds).await;
        chrono::DateTime::parse_from_rfc3339(&v).unwrap_or_else(|e| panic!("{sql}: {v}: {e}")).to_utc()
    }

    /// Sets a time column of the row with this id to `t`.
    pub async fn set_time(&self, table: &str, column: &str, id: &str, t: chrono::DateTime<chrono::Utc>) {
        self.set_time_where(table, column, "id", id, t).await
    }

    /// Sets a time column of the rows whose `key` is `value` to `t`.
    pub async fn set_time_where(
        &self,
        table: &str,
        column: &str,
        key: &str,
        value: &str,
        t: chrono::DateTime<chrono::Utc>,
    ) {
        let (id, sql) = (value, format!("UPDATE {table} SET {column} = ? WHERE {key} = ?"));
        match self {
            TestDb::MySql(pool) => {
                sqlx::query(&sql).bind(t.naive_utc()).bind(id).execute(pool).await.expect("set time");
            }
            TestDb::Sqlite(pool) => {
                let t = komisi::store::sqlite::codec::encode_time(t).expect("encodable time");
                sqlx::query(&sql).bind(t).bind(id).execute(pool).await.expect("set time");
            }
        }
    }

    /// Adds `delta` to a money column of the row with this id (read, add in
    /// Rust, write: SQLite's `+` on TEXT would go through floating point).
    pub async fn add_money(&self, table: &str, column: &str, id: &str, delta: Decimal) {
        let now = d(&self.one(&format!("SELECT {column} FROM {table} WHERE id = ?"), &[id]).await);
        let sql = format!("UPDATE {table} SET {column} = ? WHERE id = ?");
        let new = (now + delta).to_string();
        match self {
            TestDb::MySql(pool) => {
                sqlx::query(&sql).bind(Decimal::from_str(&new).unwrap()).bind(id).execute(pool).await.expect("set");
            }
            TestDb::Sqlite(_) => self.exec(&sql, &[&new, id]).await,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    /// The MariaDB database, or the SQLite file.
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
        // A restarted instance is a new one: it takes the partitions when
        // the old one's leases expire.
        journal_partitions: 4,
        lease_ttl_ms: 1_000,
        instance_id: None,
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
        max_backlog: 0,
        rate_limit_per_sec: 0,
        // Reconcile runs when a test asks (`TestApp::reconcile`), not by itself.
        reconcile_every_ms: 0,
        reconcile_full_every_ms: 0,
        reconcile_incremental_max_entries: 1_000_000,
        rate_limit_burst: 0,
        auth_failures_per_min: 0,
        auth_failures_burst: 0,
        partition_inflight: 256,
        db_max_connections: 4,
        db_worker_connections: 4,
        intake_workers: None,
        event_workers: Some(2),
        event_batch: Some(32),
        event_linger_ms: Some(2),
        bench_commission_delay_ms: 0,
        // Receivers in the tests listen on 127.0.0.1; retries come fast.
        webhook_allow_private: true,
        webhook_retry_delays: "150ms,150ms,150ms,150ms".into(),
        webhook_timeout_ms: 2_000,
        webhook_disable_after: "5d".into(),
        webhook_concurrency: 8,
        webhook_poll_ms: 50,
        webhook_retention_days: 30,
        webhook_secret_key: None,
        access_log: true,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, Faults::default()).await
}

/// The message of the panic this thread is unwinding from, kept so that a
/// failed test's last line names its assertion (CI shows the end of a
/// failure's output, after the backtrace).
mod last_panic {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local!(static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) });

    pub fn install() {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let text = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                MESSAGE
                    .with(|m| *m.borrow_mut() = Some(format!("{}{at}", text.chars().take(2000).collect::<String>())));
                previous(info);
            }));
        });
    }

    pub fn take() -> Option<String> {
        MESSAGE.with(|m| m.borrow_mut().take())
    }
}

pub async fn spawn_app_with(tune: impl FnOnce(&mut Config), faults: Faults) -> TestApp {
    last_panic::install();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let id = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("komisi_t_{}", &id[id.len() - 20..]);
    let (db_name, db_url) = match test_backend() {
        TestBackend::MySql => {
            let db_name = prefix.clone();
            let admin = MySqlPool::connect(&mysql_base()).await.expect("MariaDB reachable (KOMISI_TEST_MYSQL_URL)");
            sqlx::query(&format!("CREATE DATABASE `{db_name}`")).execute(&admin).await.expect("create test database");
            admin.close().await;
            let url = format!("{}/{db_name}", mysql_base());
            (db_name, url)
        }
        TestBackend::Sqlite => {
            let file = std::env::temp_dir().join(format!("{prefix}.db")).display().to_string();
            (file.clone(), format!("sqlite://{file}"))
        }
    };
    let mut config = test_config(db_url.clone(), prefix.clone());
    if test_backend() == TestBackend::Sqlite {
        config.redis_url = None;
    }
    tune(&mut config);
    let faults = Arc::new(faults);
    let (instance, addr, supervisor) = start_instance(config.clone(), faults.clone()).await;
    let db = match test_backend() {
        TestBackend::MySql => TestDb::MySql(MySqlPool::connect(&db_url).await.expect("connect test database")),
        TestBackend::Sqlite => {
            // A connection of the test's own beside komisi's writer: it waits
            // for the writer's lock like any second process would.
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db_url)
                .expect("sqlite url")
                .busy_timeout(Duration::from_secs(30));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await
                .expect("open the test's SQLite file");
            TestDb::Sqlite(pool)
        }
    };
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

/// The cluster's node list, or None (the cluster variant is skipped, or
/// fails when a cluster is required).
pub fn cluster_url(test: &str) -> Option<String> {
    match std::env::var("KOMISI_TEST_REDIS_CLUSTER_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_missing_dependency(test, "KOMISI_TEST_REQUIRE_CLUSTER", "KOMISI_TEST_REDIS_CLUSTER_URL is not set");
            None
        }
    }
}

/// A fresh MariaDB database `name`: the test's handle on it and its URL.
pub async fn create_mysql_database(name: &str) -> (TestDb, String) {
    let admin = MySqlPool::connect(&mysql_base()).await.expect("MariaDB reachable (KOMISI_TEST_MYSQL_URL)");
    sqlx::query(&format!("CREATE DATABASE `{name}`")).execute(&admin).await.expect("create test database");
    admin.close().await;
    let url = format!("{}/{name}", mysql_base());
    (TestDb::MySql(MySqlPool::connect(&url).await.expect("connect test database")), url)
}

/// Drops a test database from any context (a thread and runtime of its own,
/// so it works in `Drop` inside a runtime).
pub fn drop_mysql_database(name: &str) {
    let name = name.to_owned();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            if let Ok(pool) = MySqlPool::connect(&mysql_base()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`")).execute(&pool).await;
            }
        });
    })
    .join();
}

/// Holds events back: on MySQL + Redis the journal points at a closed port
/// (Redis really unreachable); in the embedded mode, where the journal lives
/// in the database file, the journal fault switch fails its every call.
/// Orders are committed and their events stay pending for the test to apply.
pub async fn spawn_app_without_journal() -> TestApp {
    spawn_app_journal_down(|_| {}, Faults::default()).await
}

/// [`spawn_app_with`], with the journal unreachable (see
/// [`spawn_app_without_journal`]) until [`TestApp::journal_back`] and a restart.
pub async fn spawn_app_journal_down(tune: impl FnOnce(&mut Config), faults: Faults) -> TestApp {
    match test_backend() {
        TestBackend::MySql => {
            spawn_app_with(
                |c| {
                    tune(c);
                    c.redis_url = Some("redis://127.0.0.1:1".into());
                },
                faults,
            )
            .await
        }
        TestBackend::Sqlite => {
            faults.journal_down(true);
            spawn_app_with(tune, faults).await
        }
    }
}

/// A store of the test's own on the app's database (`connections` of them),
/// as a second process would open it.
pub async fn open_store(config: &Config, connections: u32) -> Box<dyn komisi::store::Backend> {
    let db: Arc<dyn komisi::store::sql::Db> = match config.backend() {
        Some(komisi::config::BackendKind::Sqlite) => Arc::new(
            komisi::store::sqlite::SqliteStore::connect(&config.database_url, connections)
                .await
                .expect("open the SQLite store"),
        ),
        _ => Arc::new(
            komisi::store::mysql::MySqlStore::connect(&config.database_url, connections)
                .await
                .expect("open the MySQL store"),
        ),
    };
    Box::new(komisi::store::sql::SqlStore::new(db))
}

/// An engine on a store of the test's own, for use cases a test runs
/// itself: its journal is unreachable (nothing it commits is journaled
/// but by recovery), and its events are due again after `redeliver_after`.
pub fn engine_on(store: Arc<dyn komisi::store::Backend>, redeliver_after: Duration) -> komisi::engine::Engine {
    use komisi::engine::retry::RetryPolicy;
    let journal = komisi::journal::redis::RedisJournal::new("redis://127.0.0.1:1", "unused", "c".into(), 1)
        .expect("journal handle");
    komisi::engine::Engine::new(
        store,
        Arc::new(journal),
        Arc::new(Faults::default()),
        komisi::engine::EngineConfig {
            intake_workers: 2,
            intake_batch: 64,
            event_workers: 1,
            event_batch: 32,
            event_linger: Duration::from_millis(2),
            max_backlog: 0,
            retry: RetryPolicy { max_attempts: 8, base: Duration::from_millis(50), max: Duration::from_millis(400) },
            retry_horizon: Duration::from_secs(3600),
            redeliver_after,
            reconcile_every: Duration::ZERO,
            reconcile_full_every: Duration::ZERO,
            reconcile_incremental_max_entries: 1_000_000,
            webhooks: komisi::engine::webhooks::WebhookConfig { allow_private: true, ..Default::default() },
        },
    )
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

    /// Makes the journal reachable again for the next [`TestApp::restart`]
    /// (and at once in the embedded mode).
    pub fn journal_back(&mut self) {
        match test_backend() {
            TestBackend::MySql => self.config.redis_url = Some(redis_url()),
            TestBackend::Sqlite => self.faults.journal_down(false),
        }
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

    /// A full reconcile sweep now (`POST /admin/reconcile` with `wait`): its report.
    pub async fn reconcile(&self) -> Value {
        self.reconcile_kind("full").await
    }

    /// A reconcile run of `kind` (`full`, `incremental`) now: its report.
    pub async fn reconcile_kind(&self, kind: &str) -> Value {
        let r = self
            .client
            .post(self.url("/admin/reconcile"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"kind": kind, "wait": true}))
            .send()
            .await
            .expect("POST /admin/reconcile");
        assert_eq!(r.status(), StatusCode::OK, "POST /admin/reconcile");
        r.json().await.expect("json")
    }

    /// A full reconcile sweep must find nothing wrong.
    pub async fn assert_reconciled(&self) {
        let report = self.reconcile().await;
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

    /// A buyer's points balance, read exactly (a `Value` would hold a
    /// balance past u64 as a float).
    pub async fn points(&self, buyer: &str) -> i128 {
        #[derive(serde::Deserialize)]
        struct Balance {
            points: i128,
        }
        let r = self.get(&format!("/v1/buyers/{buyer}/rewards")).await;
        assert_eq!(r.status(), StatusCode::OK, "GET rewards of {buyer}");
        let body = r.text().await.expect("body");
        serde_json::from_str::<Balance>(&body).expect("whole points").points
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
        self.db
            .rows(
                "SELECT affiliate_id, kind, amount, status FROM ledger_entries WHERE event_id = ? \
                 ORDER BY affiliate_id, kind",
                &[event_id],
            )
            .await
            .into_iter()
            .map(|r| {
                let cell = |i: usize| r[i].clone().expect("not null");
                (cell(0), cell(1), d(&cell(2)), cell(3))
            })
            .collect()
    }

    /// The invariants every test ends with: balances equal ledger sums, points
    /// equal reward sums, no event wrote two entries for one (beneficiary, kind).
    /// The sums are taken in Rust, exactly, on either backend.
    pub async fn assert_ledger_consistent(&self) {
        let mut sums: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for r in self.db.rows("SELECT affiliate_id, status, amount FROM ledger_entries", &[]).await {
            let cell = |i: usize| r[i].clone().expect("not null");
            *sums.entry((cell(0), cell(1))).or_default() += d(&cell(2));
        }
        let mut mismatched = Vec::new();
        for r in self.db.rows("SELECT id, pending, approved, paid FROM affiliates", &[]).await {
            let id = r[0].clone().expect("id");
            for (i, status) in [(1, "pending"), (2, "approved"), (3, "paid")] {
                let balance = d(r[i].as_deref().expect("balance"));
                let ledger = sums.get(&(id.clone(), status.to_owned())).copied().unwrap_or_default();
                if balance != ledger {
                    mismatched.push(format!("{id} {status}: balance {balance}, ledger {ledger}"));
                }
            }
        }
        assert!(mismatched.is_empty(), "balances differ from ledger sums: {mismatched:?}");
        let mut earned: BTreeMap<String, i128> = BTreeMap::new();
        for r in self.db.rows("SELECT buyer_id, points FROM reward_entries", &[]).await {
            let cell = |i: usize| r[i].clone().expect("not null");
            *earned.entry(cell(0)).or_default() += cell(1).parse::<i128>().expect("whole points");
        }
        let points_off: Vec<String> = self
            .db
            .rows("SELECT id, points FROM buyers", &[])
            .await
            .into_iter()
            .filter_map(|r| {
                let (id, stored) = (r[0].clone().expect("id"), r[1].as_deref().expect("points").parse::<i128>());
                let sum = earned.get(&id).copied().unwrap_or(0);
                (stored != Ok(sum)).then(|| format!("{id}: stored {stored:?}, rewards {sum}"))
            })
            .collect();
        assert!(points_off.is_empty(), "buyer points differ from reward sums: {points_off:?}");
        let doubled = self
            .db
            .int(
                "SELECT COUNT(*) FROM (SELECT event_id FROM ledger_entries GROUP BY event_id, affiliate_id, kind \
                 HAVING COUNT(*) > 1) d",
                &[],
            )
            .await;
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
        // Every key carries the prefix in its hash tag: `{prefix:pNN}:…` or `{prefix}:…`.
        let mut keys: Vec<String> = Vec::new();
        for pattern in [format!("{{{}:*", self.prefix), format!("{{{}}}:*", self.prefix)] {
            let found: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.expect("KEYS");
            keys.extend(found);
        }
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
            if let Some(message) = last_panic::take() {
                eprintln!("the test failed with: {message}");
            }
            return;
        }
        let db_name = self.db_name.clone();
        let prefix = self.prefix.clone();
        // (The test's own pool is not closed here: its connections belong to
        // the test's runtime, which this thread blocks.)
        let mysql = matches!(self.db, TestDb::MySql(_));
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if !mysql {
                    // Open connections keep an unlinked file alive until they close.
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{db_name}{suffix}"));
                    }
                    return;
                }
                if let Ok(pool) = MySqlPool::connect(&mysql_base()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{db_name}`")).execute(&pool).await;
                }
                if let Ok(client) = redis::Client::open(redis_url()) {
                    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("*{prefix}*"))
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

/// The operator a test's direct engine calls are audited as.
pub fn test_operator() -> komisi::domain::audit::Actor {
    komisi::domain::audit::Actor { key: "test-operator".into(), request_id: None }
}
