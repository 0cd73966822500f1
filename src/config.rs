//! Runtime configuration: one struct, read once from flags or environment
//! variables (each with a default), validated at start.
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// HTTP listen address.
    #[arg(long, help_heading = "Server", env = "KOMISI_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// System of record: `sqlite://FILE` (embedded, one instance; created when
    /// missing) or `mysql://user:pass@host/db` (production).
    #[arg(long, help_heading = "Database", env = "DATABASE_URL", default_value = "sqlite://komisi.db")]
    pub database_url: String,

    /// Dispatch journal (Redis Streams), required with MySQL. Unset with
    /// SQLite: the journal lives in the same file. Several comma-separated
    /// URLs (`redis://h1:6379,redis://h2:6379,…`) name a Redis Cluster.
    #[arg(long, help_heading = "Journal", env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Journal partitions (Redis streams), 1–1024. Each is read by one live
    /// instance at a time; every instance of a deployment must use the same
    /// count (change it only with every instance stopped). The embedded mode
    /// has one.
    #[arg(long, help_heading = "Journal", env = "KOMISI_JOURNAL_PARTITIONS", default_value_t = 16)]
    pub journal_partitions: u16,

    /// A partition lease's time to live: a killed instance's partitions are
    /// taken over this long after its last renewal (renewals every third of it).
    #[arg(long, help_heading = "Journal", env = "KOMISI_LEASE_TTL_MS", default_value_t = 5_000)]
    pub lease_ttl_ms: u64,

    /// This instance's name: its journal consumer, the holder named in its
    /// leases and fencing tokens, `applied_by` of the events it applies.
    /// Letters, digits and `.` `_` `:` `-`, at most 128. [default: komisi-<uuid>]
    #[arg(long, help_heading = "Server", env = "KOMISI_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Prefix of every Redis key, so deployments and tests can share one Redis.
    #[arg(long, help_heading = "Journal", env = "KOMISI_REDIS_PREFIX", default_value = "komisi")]
    pub redis_prefix: String,

    /// Comma-separated bearer keys for `/v1/*`, each `name:key` or a bare key
    /// (named storefront-<n>); generated and printed once when unset.
    #[arg(long, help_heading = "Server", env = "KOMISI_STOREFRONT_KEYS", value_delimiter = ',')]
    pub storefront_keys: Vec<String>,

    /// Comma-separated bearer keys for `/admin/*`, each `name:key` (the name
    /// is who the access log says made a request) or a bare key (named
    /// admin-<n>); generated and printed once when unset.
    #[arg(long, help_heading = "Server", env = "KOMISI_ADMIN_KEYS", value_delimiter = ',')]
    pub admin_keys: Vec<String>,

    /// One log line per request at info (method, route, status, duration,
    /// request id); `false` turns it off.
    #[arg(long, help_heading = "Server", env = "KOMISI_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,

    /// Attempts before an event is dead.
    #[arg(long, help_heading = "Events, retries and reconcile", env = "KOMISI_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: u32,

    /// First retry delay; doubles each attempt (with jitter) up to the maximum.
    #[arg(long, help_heading = "Events, retries and reconcile", env = "KOMISI_RETRY_BASE_MS", default_value_t = 1_000)]
    pub retry_base_ms: u64,

    /// Longest retry delay.
    #[arg(
        long,
        help_heading = "Events, retries and reconcile",
        env = "KOMISI_RETRY_MAX_MS",
        default_value_t = 300_000
    )]
    pub retry_max_ms: u64,

    /// A pending event not applied this long after it was journaled is journaled again.
    #[arg(
        long,
        help_heading = "Events, retries and reconcile",
        env = "KOMISI_REDELIVER_AFTER_MS",
        default_value_t = 60_000
    )]
    pub redeliver_after_ms: u64,

    /// A journal entry unacknowledged this long is claimed from its (presumed dead) consumer.
    #[arg(
        long,
        help_heading = "Events, retries and reconcile",
        env = "KOMISI_CLAIM_IDLE_MS",
        default_value_t = 60_000
    )]
    pub claim_idle_ms: u64,

    /// How often the recovery sweep runs.
    #[arg(
        long,
        help_heading = "Events, retries and reconcile",
        env = "KOMISI_RECOVERY_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub recovery_interval_ms: u64,

    /// An incremental reconcile run (what changed since the runs before) this
    /// often; 0: only on demand (`POST /admin/reconcile`).
    #[arg(
        long,
        help_heading = "Events, retries and reconcile",
        env = "KOMISI_RECONCILE_EVERY_MS",
        default_value_t = 60_000
    )]
    pub reconcile_every_ms: u64,

    /// A full reconcile sweep (every order, affiliate, buyer) this often; 0:
    /// only on demand. The first one runs at once when none ever finished.
    #[arg(
        long,
        help_heading = "Events, retries and reconcile",
        env = "KOMISI_RECONCILE_FULL_EVERY_MS",
        default_value_t = 86_400_000
    )]
    pub reconcile_full_every_ms: u64,

    /// An incremental run whose window spans more ledger and reward entries
    /// than this (the first run on a database with history, or the first
    /// after a long pause) runs as a full sweep instead: an incremental run
    /// holds what its window touched in memory, a sweep pages through it.
    #[arg(
        long,
        help_heading = "Events, retries and reconcile",
        env = "KOMISI_RECONCILE_INCREMENTAL_MAX_ENTRIES",
        default_value_t = 1_000_000
    )]
    pub reconcile_incremental_max_entries: u64,

    /// A commission actor with no work for this long stops (it is respawned on demand).
    #[arg(long, help_heading = "Tuning", env = "KOMISI_ACTOR_IDLE_MS", default_value_t = 1_000)]
    pub actor_idle_ms: u64,

    /// Journal entries handed to actors and not yet finished, at most.
    #[arg(long, help_heading = "Tuning", env = "KOMISI_MAX_INFLIGHT", default_value_t = 2_000)]
    pub max_inflight: usize,

    /// Of those, one partition's (one affiliate's) at most: a hot affiliate's
    /// backlog never takes every place, so other affiliates' events keep
    /// flowing. Its further entries wait, read but not counted (up to 50 ×
    /// KOMISI_MAX_INFLIGHT in all).
    #[arg(long, help_heading = "Tuning", env = "KOMISI_PARTITION_INFLIGHT", default_value_t = 256)]
    pub partition_inflight: usize,

    /// Backpressure: when this many events are open (not yet applied; as the
    /// recovery sweep last counted them), `POST /v1/orders` answers 503 with
    /// Retry-After and stores nothing, and /readyz reports the backlog.
    /// Lifecycle requests (refund, cancel, complete) are still taken. 0: off.
    #[arg(long, help_heading = "Limits", env = "KOMISI_MAX_BACKLOG", default_value_t = 100_000)]
    pub max_backlog: u64,

    /// Requests per second one API key may make (a token bucket per key;
    /// past it: 429 with Retry-After). 0: off. The default is above what one
    /// instance takes on a small server (about 2 000 orders a second on 2
    /// cores): it stops a runaway client, not a flash sale; overload is
    /// KOMISI_MAX_BACKLOG's (503 with Retry-After).
    #[arg(long, help_heading = "Limits", env = "KOMISI_RATE_LIMIT_PER_SEC", default_value_t = 5_000)]
    pub rate_limit_per_sec: u32,

    /// Requests one key may make at once above its rate (the bucket's size).
    #[arg(long, help_heading = "Limits", env = "KOMISI_RATE_LIMIT_BURST", default_value_t = 10_000)]
    pub rate_limit_burst: u32,

    /// Failed authentications (missing or wrong key) per minute from one
    /// client address; past them every request from it is 429 until a token
    /// is back. 0: off.
    #[arg(long, help_heading = "Limits", env = "KOMISI_AUTH_FAILURES_PER_MIN", default_value_t = 60)]
    pub auth_failures_per_min: u32,

    /// Failed authentications one address may make at once.
    #[arg(long, help_heading = "Limits", env = "KOMISI_AUTH_FAILURES_BURST", default_value_t = 20)]
    pub auth_failures_burst: u32,

    /// MySQL connections for requests (lifecycle changes and reads; intake's
    /// workers keep their own, see KOMISI_INTAKE_WORKERS). With SQLite: the
    /// read-only connections.
    #[arg(long, help_heading = "Database", env = "KOMISI_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// MySQL connections for event processing, approval and recovery.
    #[arg(long, help_heading = "Database", env = "KOMISI_DB_WORKER_CONNECTIONS", default_value_t = 20)]
    pub db_worker_connections: u32,

    /// Intake transactions at once, each taking every order waiting then
    /// (up to 64). Few and large beat many and small, as for events: each
    /// shares its round trips and commit over more orders. Each keeps a
    /// MySQL connection of its own besides KOMISI_DB_MAX_CONNECTIONS.
    /// [default: 4 with MySQL, 2 with SQLite (one writer)]
    #[arg(long, help_heading = "Tuning", env = "KOMISI_INTAKE_WORKERS")]
    pub intake_workers: Option<usize>,

    /// Transactions applying events at once. Few and large beat many and
    /// small: each shares its commit and statements over more events, and
    /// leaves the database's CPU to intake. At most KOMISI_DB_WORKER_CONNECTIONS.
    /// [default: 8 with MySQL, 1 with SQLite (one writer)]
    #[arg(long, help_heading = "Tuning", env = "KOMISI_EVENT_WORKERS")]
    pub event_workers: Option<usize>,

    /// Events of different partitions applied in one transaction, at most
    /// (batches form only when events wait; 1 turns batching off).
    /// [default: 64 with MySQL, 128 with SQLite]
    #[arg(long, help_heading = "Tuning", env = "KOMISI_EVENT_BATCH")]
    pub event_batch: Option<usize>,

    /// How long a worker waits after an event is ready for more to share its
    /// transaction. Trades a little lag for less database work per event at
    /// moderate load, which keeps intake fast; 0 turns it off.
    /// [default: 25 with MySQL, 50 with SQLite]
    #[arg(long, help_heading = "Tuning", env = "KOMISI_EVENT_LINGER_MS")]
    pub event_linger_ms: Option<u64>,

    /// Webhook endpoints may be plain `http` and name loopback, private and
    /// link-local addresses (local development and tests only: it lets an
    /// admin key make this server call into its own network).
    #[arg(long, help_heading = "Webhooks", env = "KOMISI_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Pauses after each failed webhook attempt (comma-separated: `5s`,
    /// `5m`, `2h`…; ±10 % jitter); after the last one the message has failed.
    #[arg(
        long,
        help_heading = "Webhooks",
        env = "KOMISI_WEBHOOK_RETRY_DELAYS",
        default_value = "5s,5m,30m,2h,5h,10h,10h"
    )]
    pub webhook_retry_delays: String,

    /// A webhook attempt's answer must come within this.
    #[arg(long, help_heading = "Webhooks", env = "KOMISI_WEBHOOK_TIMEOUT_MS", default_value_t = 15_000)]
    pub webhook_timeout_ms: u64,

    /// A webhook endpoint whose every attempt failed for this long is disabled.
    #[arg(long, help_heading = "Webhooks", env = "KOMISI_WEBHOOK_DISABLE_AFTER", default_value = "5d")]
    pub webhook_disable_after: String,

    /// Webhook attempts in flight per endpoint (per instance), at most.
    #[arg(long, help_heading = "Webhooks", env = "KOMISI_WEBHOOK_CONCURRENCY", default_value_t = 8)]
    pub webhook_concurrency: usize,

    /// How often each instance looks for due webhook messages.
    #[arg(long, help_heading = "Webhooks", env = "KOMISI_WEBHOOK_POLL_MS", default_value_t = 200)]
    pub webhook_poll_ms: u64,

    /// Delivered webhook messages are deleted this many days after they were
    /// created (failed ones are kept until resent or pruned).
    #[arg(long, help_heading = "Webhooks", env = "KOMISI_WEBHOOK_RETENTION_DAYS", default_value_t = 30)]
    pub webhook_retention_days: u32,

    /// Seals webhook signing secrets at rest (AES-256-GCM): the base64 of 32
    /// random bytes (`openssl rand -base64 32`). Unset: secrets are stored
    /// as they are, and a copy of the database can sign messages.
    #[arg(long, help_heading = "Webhooks", env = "KOMISI_WEBHOOK_SECRET_KEY", hide_env_values = true)]
    pub webhook_secret_key: Option<String>,

    /// Benchmark only: sleep this long before every commission computation
    /// (outside any transaction). Off (0) by default.
    #[arg(long, help_heading = "Tuning", env = "KOMISI_BENCH_COMMISSION_DELAY_MS", default_value_t = 0)]
    pub bench_commission_delay_ms: u64,
}

/// Which system of record `DATABASE_URL` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    MySql,
}

impl Config {
    pub fn backend(&self) -> Option<BackendKind> {
        let url = self.database_url.as_str();
        if url.starts_with("sqlite:") {
            Some(BackendKind::Sqlite)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(BackendKind::MySql)
        } else {
            None
        }
    }

    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }
    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }
    pub fn redeliver_after(&self) -> Duration {
        Duration::from_millis(self.redeliver_after_ms)
    }
    pub fn claim_idle(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms)
    }
    pub fn recovery_interval(&self) -> Duration {
        Duration::from_millis(self.recovery_interval_ms)
    }
    pub fn reconcile_every(&self) -> Duration {
        Duration::from_millis(self.reconcile_every_ms)
    }
    pub fn reconcile_full_every(&self) -> Duration {
        Duration::from_millis(self.reconcile_full_every_ms)
    }
    fn embedded(&self) -> bool {
        matches!(self.backend(), Some(BackendKind::Sqlite))
    }
    /// Intake batches in flight at once. The embedded mode has one writer:
    /// 16 (then one per MySQL connection) left batches of one or two orders
    /// and halved its rate; 1 and 2 apply about the same, 2 with the lower
    /// intake latency. On MySQL 4 rather than one per request connection
    /// (16): the same orders in fewer, larger transactions, +11 / +17 / +9 %
    /// at saturation (uniform / Zipf / hot, docs/PERFORMANCE.md).
    pub fn intake_workers(&self) -> usize {
        self.intake_workers.unwrap_or(if self.embedded() { 2 } else { 4 }).max(1)
    }
    /// Event-application settings by backend: the embedded mode has one
    /// writer connection, where one worker with large, lingering batches
    /// applies the most (docs/PERFORMANCE.md, "Embedded mode"); on MySQL 8
    /// workers of up to 64 events beat 16 of up to 32 at every rate measured
    /// (PERFORMANCE.md, sixteenth session).
    pub fn event_workers(&self) -> usize {
        self.event_workers.unwrap_or(if self.embedded() { 1 } else { 8 })
    }
    pub fn event_batch(&self) -> usize {
        self.event_batch.unwrap_or(if self.embedded() { 128 } else { 64 })
    }
    pub fn event_linger(&self) -> Duration {
        Duration::from_millis(self.event_linger_ms.unwrap_or(if self.embedded() { 50 } else { 25 }))
    }
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
    /// This instance's id: the configured one, or a fresh one per start.
    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| format!("komisi-{}", uuid::Uuid::now_v7()))
    }
    pub fn actor_idle(&self) -> Duration {
        Duration::from_millis(self.actor_idle_ms)
    }

    /// The longest an event can legitimately stay open: every backoff at its
    /// longest, plus a lease, a claim and a sweep. Older open events are stuck.
    pub fn retry_horizon(&self) -> Duration {
        let backoffs: Duration = (1..=self.max_attempts)
            .map(|k| self.retry_base().saturating_mul(1u32 << (k - 1).min(30)).min(self.retry_max()))
            .sum();
        backoffs + self.redeliver_after() + self.claim_idle() + self.recovery_interval()
    }

    /// Checks what clap cannot: consistent values and a supported backend.
    /// How webhooks are delivered.
    pub fn webhooks(&self) -> Result<crate::engine::webhooks::WebhookConfig, String> {
        use crate::domain::webhook::RetrySchedule;
        let retry = RetrySchedule::parse(&self.webhook_retry_delays)
            .map_err(|e| format!("KOMISI_WEBHOOK_RETRY_DELAYS: {e}"))?;
        let disable_after = humantime::parse_duration(&self.webhook_disable_after)
            .map_err(|e| format!("KOMISI_WEBHOOK_DISABLE_AFTER: {e}"))?;
        if self.webhook_timeout_ms == 0 || self.webhook_concurrency == 0 || self.webhook_poll_ms == 0 {
            return Err("KOMISI_WEBHOOK_TIMEOUT_MS, _CONCURRENCY and _POLL_MS must be at least 1".into());
        }
        Ok(crate::engine::webhooks::WebhookConfig {
            allow_private: self.webhook_allow_private,
            retry,
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            disable_after,
            per_endpoint: self.webhook_concurrency,
            poll: Duration::from_millis(self.webhook_poll_ms),
            retention: Duration::from_secs(u64::from(self.webhook_retention_days) * 24 * 3600),
            sealer: match &self.webhook_secret_key {
                Some(key) => crate::engine::webhooks::Sealer::from_base64(key)
                    .map_err(|e| format!("KOMISI_WEBHOOK_SECRET_KEY: {e}"))?,
                None => Default::default(),
            },
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.webhooks()?;
        if self.max_attempts == 0 {
            return Err("KOMISI_MAX_ATTEMPTS must be at least 1".into());
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err("KOMISI_RETRY_BASE_MS must be > 0 and ≤ KOMISI_RETRY_MAX_MS".into());
        }
        if self.recovery_interval_ms == 0
            || self.actor_idle_ms == 0
            || self.max_inflight == 0
            || self.partition_inflight == 0
            || self.event_batch() == 0
        {
            return Err(
                "intervals, KOMISI_MAX_INFLIGHT, KOMISI_PARTITION_INFLIGHT and KOMISI_EVENT_BATCH must be > 0".into()
            );
        }
        if !(1..=1024).contains(&self.journal_partitions) {
            return Err("KOMISI_JOURNAL_PARTITIONS must be 1–1024".into());
        }
        if !(1_000..=60_000).contains(&self.lease_ttl_ms) {
            return Err("KOMISI_LEASE_TTL_MS must be 1000–60000".into());
        }
        if let Some(id) = &self.instance_id {
            let ok = (1..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
            if !ok {
                return Err("KOMISI_INSTANCE_ID: 1–128 letters, digits, '.', '_', ':' or '-'".into());
            }
        }
        if self.redis_prefix.is_empty() {
            return Err("KOMISI_REDIS_PREFIX must not be empty".into());
        }
        match self.backend() {
            Some(BackendKind::Sqlite) if self.redis_url.is_some() => Err(
                "REDIS_URL is set but DATABASE_URL is SQLite: the embedded mode keeps its journal in the SQLite file \
                 and runs one instance; unset REDIS_URL, or use DATABASE_URL=mysql://… for the Redis journal"
                    .into(),
            ),
            Some(BackendKind::MySql) if self.redis_url.is_none() => {
                Err("REDIS_URL is required with a MySQL database (redis://host:port)".into())
            }
            Some(_) => Ok(()),
            None => Err(format!(
                "DATABASE_URL={} is not supported: use sqlite://FILE (embedded) or mysql://user:pass@host/db",
                self.database_url
            )),
        }
    }
}
