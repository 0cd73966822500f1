//! The system of record behind one seam. The engine asks for what it needs
//! through one trait per aggregate ([`Programs`], [`Orders`], [`Events`],
//! [`Affiliates`], [`Wallets`], [`Payouts`], [`Reconcile`]; together
//! [`Backend`]) and, for every use case that writes, through a narrow
//! transaction trait ([`ApplyTx`], [`OrderTx`], [`EventTx`], [`IntakeTx`],
//! [`ApprovalTx`], [`AffiliateTx`], [`PayoutTx`], [`WalletTx`]): open, ask,
//! decide (in the engine, with the domain's rules), write, commit.
//!
//! Everything crosses the seam in domain types. The one implementation,
//! [`sql::SqlStore`], holds the SQL, written once; a database backend
//! (`mysql`, `sqlite`) provides only what differs: its connections, how its
//! columns hold each type, its error codes, and the statements its dialect
//! must write its own way (see `sql::query`).
pub mod affiliates;
pub mod apply;
pub mod attribution;
pub mod audit;
pub mod events;
pub mod mysql;
pub mod orders;
pub mod payouts;
pub mod programs;
pub mod reconcile;
pub mod reports;
pub mod simulations;
pub mod sql;
pub mod sqlite;
pub mod wallets;
pub mod webhooks;

pub use affiliates::{AffiliateFilter, AffiliateTx, Affiliates};
pub use apply::{ApplyTx, LedgerRow, LockedEvent, MonthAsk, MonthFacts, OrderUpdate, RewardRow, Writes};
pub use attribution::{Attributions, ClickCount};
pub use audit::{AuditTx, Audits};
pub use events::{EventHead, EventTx, Events, Fence, Lane, Parts};
pub use orders::{
    ApprovalTx, EntitlementInputs, IntakeTx, OrderAttribution, OrderChange, OrderFilter, OrderSummary, OrderTx, Orders,
    OrdersOf, Reattribution,
};
pub use payouts::{PayoutTx, Payouts};
pub use programs::{FxRates, Programs};
pub use reconcile::{
    BalanceCheck, Changes, ClaimTx, CounterCheck, CoveredOrder, MonthCheck, Reconcile, ReconcileFacts,
};
pub use reports::{ReportAdds, ReportTx, Reports};
pub use simulations::{SimulationRow, Simulations};
pub use wallets::{BuyerBalance, WalletTx, WalletWrite, Wallets};
pub use webhooks::{NotifyTx, Webhooks};

/// What went wrong in the store, classified by the backend that saw it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A lock the work needed was not granted (deadlock, lock wait timeout,
    /// SQLite BUSY/LOCKED): nothing was changed; worth an immediate retry.
    #[error("lock conflict: {0}")]
    LockConflict(sqlx::Error),
    /// The database could not be reached or the connection was lost (or the
    /// pool had none to give): try again later.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// A row with this key exists already (a unique key).
    #[error("duplicate key: {0}")]
    Duplicate(sqlx::Error),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A lock the work needs is held elsewhere and was not granted in time:
    /// nothing was changed; try again.
    #[error("busy: {0}")]
    Busy(&'static str),
}

impl StoreError {
    /// Whether trying the same work again may succeed, as opposed to a
    /// fault in the data or the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::LockConflict(_) | StoreError::Unavailable(_) | StoreError::Busy(_))
    }

    /// A deadlock or lock wait: worth an immediate retry.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, StoreError::LockConflict(_))
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, StoreError::Duplicate(_))
    }
}

/// What any sqlx driver says in the same words: lost connections, an empty
/// pool, a unique key. A backend classifies its own error codes first (see
/// `mysql::classify`, `sqlite::classify`) and hands the rest here.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                StoreError::Unavailable(e)
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(e),
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Everything the engine asks of the system of record.
#[async_trait::async_trait]
pub trait Backend:
    Programs
    + FxRates
    + Orders
    + Events
    + Affiliates
    + Attributions
    + Wallets
    + Payouts
    + Reconcile
    + Webhooks
    + Simulations
    + Audits
    + Reports
    + Send
    + Sync
    + 'static
{
    /// Applies pending migrations and makes sure program version 1 exists.
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> bool;
}

/// Migration progress for the log: what a start is about to apply (the
/// versions not yet in `applied`), then what it did. Nothing is logged above
/// debug when the schema is up to date.
pub(crate) struct MigrationLog {
    pending: Vec<i64>,
    started: std::time::Instant,
}

impl MigrationLog {
    pub(crate) fn begin(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Self {
        let pending: Vec<i64> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        if pending.is_empty() {
            tracing::debug!(version = applied.iter().max().copied().unwrap_or(0), "database schema up to date");
        } else {
            tracing::info!(
                pending = pending.len(),
                from = applied.iter().max().copied().unwrap_or(0),
                to = pending.iter().max().copied().unwrap_or(0),
                "applying database migrations (each in its own transaction; a stop in between resumes at the next start)"
            );
        }
        Self { pending, started: std::time::Instant::now() }
    }

    pub(crate) fn done(self) {
        if !self.pending.is_empty() {
            tracing::info!(
                applied = self.pending.len(),
                version = self.pending.iter().max().copied().unwrap_or(0),
                secs = self.started.elapsed().as_secs_f64(),
                "database migrations applied"
            );
        }
    }
}
