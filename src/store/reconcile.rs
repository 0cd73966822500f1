//! What reconcile reads of the stored invariants (the engine recomputes
//! the entitlements and replays the wallets itself).
use super::Result;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// Rows that break a stored-balance invariant.
#[derive(Debug, Clone, Default)]
pub struct ReconcileFacts {
    pub affiliates: u64,
    pub buyers: u64,
    pub events: u64,
    pub payouts: u64,
    /// (affiliate, stored [pending, approved, paid], ledger sums)
    pub balance_mismatches: Vec<(String, [Decimal; 3], [Decimal; 3])>,
    /// (buyer, stored points, reward sum)
    pub points_mismatches: Vec<(String, i128, i128)>,
    /// (event, affiliate, kind)
    pub duplicate_entries: Vec<(String, String, String)>,
    /// (event, order, status, attempts) open and created before the cutoff
    pub stuck_events: Vec<(String, String, String, u32)>,
    /// (payout, affiliate, item amount, entries' sum)
    pub payout_item_mismatches: Vec<(u64, String, Decimal, Decimal)>,
    /// (entry, affiliate, payout, entry status, batch status)
    pub payout_entry_statuses: Vec<(u64, String, u64, String, String)>,
}

#[async_trait::async_trait]
pub trait Reconcile: Send + Sync {
    /// The balance, points, duplicate, stuck-event and payout checks;
    /// `stuck_before`: open events created earlier are stuck.
    async fn reconcile_facts(&self, stuck_before: DateTime<Utc>) -> Result<ReconcileFacts>;
}
