//! Wires store, journal, actor tree and router; runs until told to stop, then
//! drains: stop accepting, finish in-flight events, ack, exit.
use crate::actors::messages::SupervisorMsg;
use crate::actors::supervisor::Supervisor;
use crate::actors::{Deps, SupervisorOutbox, Tuning};
use crate::config::{BackendKind, Config};
use crate::engine::faults::{Faults, Switchable};
use crate::engine::retry::RetryPolicy;
use crate::engine::{Engine, EngineConfig};
use crate::http::extract::ApiKeys;
use crate::http::{router, AppState};
use crate::journal::memory::MemoryJournal;
use crate::journal::redis::RedisJournal;
use crate::journal::{Journal, JournalError};
use crate::store::mysql::MySqlStore;
use crate::store::sql::SqlStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Backend, StoreError};
use ractor::Actor;
use rand::distr::{Alphanumeric, SampleString};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Orders written by one intake transaction, at most.
const INTAKE_BATCH: usize = 64;

/// How long a graceful shutdown waits for actors to finish what they hold.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("actor system: {0}")]
    Actors(String),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr} (KOMISI_BIND / --bind): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A started instance.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub engine: Engine,
    pub keys: ApiKeys,
    /// The root of the actor tree (for inspection in tests and tools).
    pub supervisor: ractor::ActorRef<SupervisorMsg>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AppError>>,
}

impl RunningApp {
    /// Begins a graceful shutdown.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the instance has stopped.
    pub async fn wait(self) -> Result<(), AppError> {
        self.task.await.map_err(|e| AppError::Actors(e.to_string()))?
    }
}

fn generated_key(kind: &str) -> String {
    let key = format!("{kind}_{}", Alphanumeric.sample_string(&mut rand::rng(), 32));
    eprintln!("komisi: no {kind} keys configured; generated one for this run: {key}");
    key
}

/// Connects everything, applies migrations, starts the actor tree and the HTTP server.
pub async fn start(config: Config, faults: Arc<Faults>) -> Result<RunningApp, AppError> {
    config.validate().map_err(AppError::Config)?;
    let storefront = if config.storefront_keys.is_empty() {
        vec![generated_key("storefront")]
    } else {
        config.storefront_keys.clone()
    };
    let admin = if config.admin_keys.is_empty() { vec![generated_key("admin")] } else { config.admin_keys.clone() };
    let keys = ApiKeys::new(&storefront, &admin);
    let (backend, journal) = open(&config).await?;
    backend.migrate().await?;
    let journal: Arc<dyn Journal> = Arc::new(Switchable::new(journal, faults.clone()));
    let engine = Engine::new(backend, journal.clone(), faults.clone(), engine_config(&config));
    let deps = Arc::new(Deps {
        engine: engine.clone(),
        journal: journal.clone(),
        faults: faults.clone(),
        tuning: Tuning {
            actor_idle: config.actor_idle(),
            recovery_interval: config.recovery_interval(),
            claim_idle: config.claim_idle(),
            max_inflight: config.max_inflight,
            partition_inflight: config.partition_inflight,
            max_parked: config.max_inflight.saturating_mul(50),
            lease_ttl: config.lease_ttl(),
        },
        inflight: AtomicUsize::new(0),
        parked: AtomicUsize::new(0),
        empty_reads: Default::default(),
        routing: AtomicUsize::new(0),
        counts: Default::default(),
        ownership: Default::default(),
        webhooks: engine.deliverer(journal.instance()),
    });
    // The recorder first (it is installed on first use), then the gauge.
    let _ = crate::metrics::handle();
    metrics::gauge!(crate::metrics::INSTANCE_INFO, "instance_id" => journal.instance().to_owned()).set(1.0);
    metrics::gauge!(crate::metrics::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "git_sha" => env!("KOMISI_GIT_SHA"))
        .set(1.0);
    let (supervisor, supervisor_done) =
        Actor::spawn(None, Supervisor, deps).await.map_err(|e| AppError::Actors(e.to_string()))?;
    engine.connect_outbox(Arc::new(SupervisorOutbox(supervisor.clone())));

    let limits = crate::http::limit::LimitSettings {
        per_key_per_sec: config.rate_limit_per_sec,
        per_key_burst: config.rate_limit_burst,
        auth_failures_per_min: config.auth_failures_per_min,
        auth_failures_burst: config.auth_failures_burst,
    };
    let state = AppState {
        engine: engine.clone(),
        keys: Arc::new(keys.clone()),
        limits: Arc::new(crate::http::limit::Limits::new(limits)),
        metrics: crate::metrics::handle(),
        access_log: config.access_log,
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| AppError::Bind { addr: config.bind, source })?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let root = supervisor.clone();
    let task = tokio::spawn(serve_then_drain(listener, router(state), shutdown.clone(), supervisor, supervisor_done));
    tracing::info!(%addr, console = %format!("http://{addr}/console"), "komisi serving");
    if config.storefront_keys.is_empty() {
        // Keys were generated for this run: show how to use them.
        eprintln!("{}", quickstart(addr, &keys.storefront[0]));
    }
    Ok(RunningApp { addr, engine, keys, supervisor: root, shutdown, task })
}

/// Live entries the embedded journal holds at most: twice the default
/// backlog bound, about 40 MB. Past it, events wait in the file for recovery.
const MEMORY_JOURNAL_CAPACITY: usize = 200_000;

/// The store and the journal of the configured backend: one SQLite file and
/// a queue in memory (the embedded mode), or MySQL and Redis.
async fn open(config: &Config) -> Result<(Arc<dyn Backend>, Arc<dyn Journal>), AppError> {
    let consumer = config.instance();
    Ok(match config.backend() {
        Some(BackendKind::Sqlite) => {
            // One file is the record; the journal is a queue in memory (open
            // events are journaled again from the file at every start).
            let store = SqliteStore::connect(&config.database_url, config.db_max_connections).await?;
            let journal = Arc::new(MemoryJournal::new(consumer, MEMORY_JOURNAL_CAPACITY));
            (Arc::new(SqlStore::new(Arc::new(store))), journal)
        }
        _ => {
            // A worker connection whose transaction sits idle for a lease's
            // TTL (5 s at least) belongs to a stalled process: the server
            // ends it (MariaDB), so a takeover's fence update does not wait
            // for it for long.
            let store = MySqlStore::connect_split(
                &config.database_url,
                config.db_max_connections,
                config.db_worker_connections,
                Some(config.lease_ttl().max(Duration::from_secs(5))),
            )
            .await?;
            let redis_url =
                config.redis_url.as_deref().ok_or_else(|| AppError::Config("REDIS_URL is required".into()))?;
            let journal = RedisJournal::new(redis_url, &config.redis_prefix, consumer, config.journal_partitions)?;
            (Arc::new(SqlStore::new(Arc::new(store))), Arc::new(journal))
        }
    })
}

fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        intake_workers: config.intake_workers(),
        intake_batch: INTAKE_BATCH,
        event_workers: config.event_workers(),
        event_batch: config.event_batch(),
        event_linger: config.event_linger(),
        retry: RetryPolicy { max_attempts: config.max_attempts, base: config.retry_base(), max: config.retry_max() },
        retry_horizon: config.retry_horizon(),
        max_backlog: config.max_backlog,
        redeliver_after: config.redeliver_after(),
        reconcile_every: config.reconcile_every(),
        reconcile_full_every: config.reconcile_full_every(),
        reconcile_incremental_max_entries: config.reconcile_incremental_max_entries,
        // Validated at start.
        webhooks: config.webhooks().unwrap_or_default(),
    }
}

/// Serves HTTP until `shutdown`, then drains the actor tree: no new orders,
/// the actors finish and acknowledge what they hold.
async fn serve_then_drain(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
    supervisor: ractor::ActorRef<SupervisorMsg>,
    supervisor_done: tokio::task::JoinHandle<()>,
) -> Result<(), AppError> {
    // The peer address feeds the failed-authentication limit.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(5), async {
        ractor::call!(supervisor, SupervisorMsg::Drain, DRAIN_TIMEOUT)
    })
    .await;
    if !matches!(drained, Ok(Ok(()))) {
        tracing::warn!("drain did not complete in time; stopping anyway (unacked entries are claimed later)");
        supervisor.kill();
    }
    if tokio::time::timeout(Duration::from_secs(5), supervisor_done).await.is_err() {
        tracing::warn!("actor tree did not stop in time; exiting anyway");
    }
    served.map_err(AppError::Io)
}

/// A copy-paste first try: the tree A ← B ← C, the worked example's order
/// through C's code, and its commissions read back.
fn quickstart(addr: SocketAddr, key: &str) -> String {
    let base = format!("http://{addr}");
    let order = r#"{"id":"o-1","buyer_id":"x","referral_code":"code-C","currency":"IDR","items":[{"sku":"shirt","category":"fashion","quantity":2,"unit_price":"75000"},{"sku":"phone","category":"electronics","quantity":1,"unit_price":"2000000"},{"sku":"voucher","category":"gift-card","quantity":1,"unit_price":"100000"}]}"#;
    format!(
        "\nkomisi is serving on {base}. Try it (copy and paste):\n\n\
         K={key}\n\
         for a in A: B:A C:B; do p=${{a#*:}}; curl -s -X POST {base}/v1/affiliates -H \"Authorization: Bearer $K\" \
         -H 'Content-Type: application/json' -d \"{{\\\"id\\\":\\\"${{a%%:*}}\\\",\\\"name\\\":\\\"${{a%%:*}}\\\",\\\"referral_code\\\":\\\"code-${{a%%:*}}\\\"${{p:+,\\\"parent_id\\\":\\\"$p\\\"}}}}\"; echo; done\n\
         curl -s -X POST {base}/v1/orders -H \"Authorization: Bearer $K\" -H 'Content-Type: application/json' -d '{order}'; echo\n\
         sleep 1; curl -s {base}/v1/orders/o-1 -H \"Authorization: Bearer $K\"; echo\n\n\
         The order pays C 95000, B 64500 and A 21500 (pending for the program's 14 holding days after\n\
         completion) and buyer x 21500 + 5000 points. docs/RULES.md explains the example.\n\n\
         The operator console: {base}/console (sign in with an admin key).\n"
    )
}

/// `komisi serve`: runs until SIGTERM or Ctrl-C, then drains.
pub async fn serve(config: Config) -> Result<(), AppError> {
    let delay = Duration::from_millis(config.bench_commission_delay_ms);
    if !delay.is_zero() {
        tracing::warn!(?delay, "benchmark setting: every commission computation is delayed");
    }
    let app = start(config, Arc::new(Faults::with_commission_delay(delay))).await?;
    let stop = app.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        stop.cancel();
    });
    app.wait().await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `komisi migrate`: applies pending migrations and exits.
pub async fn migrate(config: Config) -> Result<(), AppError> {
    config.validate().map_err(AppError::Config)?;
    match config.backend() {
        Some(BackendKind::Sqlite) => {
            SqlStore::new(Arc::new(SqliteStore::connect(&config.database_url, 1).await?)).migrate().await?
        }
        _ => SqlStore::new(Arc::new(MySqlStore::connect(&config.database_url, 2).await?)).migrate().await?,
    }
    Ok(())
}

/// `komisi reproduce FILE`: runs the rules on an event's bundle (`GET
/// /admin/events/{id}/bundle`) with no database and no network, prints the
/// entitlement, what the ledger holds, the delta and the explanation as
/// JSON, and returns the exit code: 0 when the ledger equals the
/// entitlement, 1 when they differ, 2 when the bundle is unreadable or
/// invalid.
pub fn reproduce(path: &std::path::Path) -> i32 {
    use crate::domain::bundle::{reproduce, Bundle};
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("komisi reproduce: cannot read {}: {e}", path.display());
            return 2;
        }
    };
    let bundle: Bundle = match serde_json::from_str(&text) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("komisi reproduce: {} is not an event bundle: {e}", path.display());
            return 2;
        }
    };
    let r = match reproduce(&bundle) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("komisi reproduce: {e}");
            return 2;
        }
    };
    let f = crate::domain::money::format;
    let lines = |ls: &[crate::domain::entitlement::CommissionLine]| -> Vec<serde_json::Value> {
        ls.iter()
            .map(|l| {
                serde_json::json!({"affiliate_id": l.affiliate_id, "level": l.level, "kind": l.kind, "amount": f(l.amount)})
            })
            .collect()
    };
    let points = |ls: &[crate::domain::entitlement::RewardLine]| -> Vec<serde_json::Value> {
        ls.iter().map(|l| serde_json::json!({"buyer_id": l.buyer_id, "kind": l.kind, "points": l.points})).collect()
    };
    let out = serde_json::json!({
        "event": {"id": bundle.event.id, "type": bundle.event.kind, "status": bundle.event.status},
        "order_id": bundle.order.id,
        "program_version": bundle.program_version,
        "context_frozen": bundle.context_frozen,
        "entitled": lines(&r.entitled.commissions),
        "entitled_points": points(&r.entitled.rewards),
        "applied": bundle.applied.iter().map(|a| serde_json::json!({"affiliate_id": a.affiliate_id, "level": a.level, "kind": a.kind, "amount": f(a.amount)})).collect::<Vec<_>>(),
        "applied_points": bundle.applied_points,
        "delta": lines(&r.delta.commissions),
        "delta_points": points(&r.delta.rewards),
        "explanation": r.explanation.commissions.iter().map(|l| serde_json::json!({
            "summary": l.summary,
            "steps": l.steps.iter().map(|s| format!("rule {}: {}", s.rule, s.text)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
    if r.delta.is_empty() {
        eprintln!("komisi reproduce: the ledger equals the entitlement");
        0
    } else {
        eprintln!(
            "komisi reproduce: the ledger differs from the entitlement by {} line(s)",
            r.delta.commissions.len() + r.delta.rewards.len()
        );
        1
    }
}
