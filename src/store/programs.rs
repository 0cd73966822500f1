//! Program versions: immutable once stored.
use super::Result;
use crate::domain::program::Program;
use std::sync::Arc;

/// The operator's exchange-rate tables (docs/RULES.md "Currencies").
#[async_trait::async_trait]
pub trait FxRates: Send + Sync {
    /// Stores a validated table as a new version; its id.
    async fn put_rate_table(
        &self,
        table: &crate::domain::currency::RateTable,
        audit: &crate::domain::audit::AuditEntry,
    ) -> Result<u64>;
    /// The table of `base` in force at `at` (the latest whose as_of is not
    /// after it), with its id.
    async fn rate_table_at(
        &self,
        base: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<(u64, crate::domain::currency::RateTable)>>;
}

#[async_trait::async_trait]
pub trait Programs: Send + Sync {
    async fn program(&self, version: u64) -> Result<Arc<Program>>;
    /// The version in force now and its program.
    async fn current_program(&self) -> Result<(u64, Arc<Program>)>;
    /// Stores a validated program as a new version.
    async fn insert_program(&self, program: &Program, audit: &crate::domain::audit::AuditEntry) -> Result<u64>;
    /// One page of the versions (number, stored at), newest first, numbers
    /// below `before`.
    async fn program_versions(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<(u64, chrono::DateTime<chrono::Utc>)>>;
    /// The cap and budget counters of `keys` as committed (a missing one: none).
    async fn cap_counters(
        &self,
        keys: &[crate::domain::caps::CounterKey],
    ) -> Result<std::collections::HashMap<crate::domain::caps::CounterKey, crate::domain::caps::Used>>;
}
