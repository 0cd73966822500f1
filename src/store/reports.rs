//! Reports over time (`domain::report`): the maintained aggregates, added
//! to by the transactions that move money and read by window.
use super::Result;
use crate::domain::ids::AffiliateId;
use crate::domain::report::{AffiliateDay, Figures};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// What a transaction adds: per (bucket, shard), and per (day, affiliate).
#[derive(Debug, Default, Clone)]
pub struct ReportAdds {
    pub buckets: BTreeMap<(DateTime<Utc>, u16), Figures>,
    pub days: BTreeMap<(DateTime<Utc>, AffiliateId), AffiliateDay>,
}

impl ReportAdds {
    /// A transaction's figures alone, in `at`'s bucket (the shard by `by`).
    pub fn of(at: DateTime<Utc>, by: crate::domain::event::EventId, f: Figures) -> Self {
        let key = (crate::domain::report::bucket(at), by.shard(crate::domain::report::SHARDS));
        Self { buckets: BTreeMap::from([(key, f)]), days: BTreeMap::new() }
    }
}

#[async_trait::async_trait]
pub trait Reports: Send + Sync {
    /// The buckets starting in [from, to), each summed over its shards, in time order.
    async fn report_buckets(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, Figures)>>;
    /// Every affiliate with a day in [from, to): its days summed.
    async fn affiliate_days(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(AffiliateId, AffiliateDay)>>;
}

/// Adds to the aggregates inside a transaction that moves money.
#[async_trait::async_trait]
pub trait ReportTx: Send {
    async fn add_report(&mut self, adds: &ReportAdds) -> Result<()>;
}
