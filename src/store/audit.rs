//! The audit trail: entries written inside the transaction of the write
//! they record ([`AuditTx`], or the `audit` argument of a store method that
//! opens its own), and read back newest first.
use super::Result;
use crate::domain::audit::{AuditEntry, AuditFilter, AuditRecord};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait Audits: Send + Sync {
    /// One page of the trail, newest first: entries below `before` matching `f`.
    async fn audit_log(&self, f: &AuditFilter, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>>;
}

/// An entry in a transaction that changes what it records.
#[async_trait::async_trait]
pub trait AuditTx: Send {
    async fn audit(&mut self, entry: &AuditEntry, now: DateTime<Utc>) -> Result<()>;
}
