//! The store's SQL, written once for every backend: [`SqlStore`] implements
//! each aggregate's trait and transaction on a backend's [`Db`] (see
//! `query` for what a backend provides). One module per aggregate.
mod adjustments;
mod affiliates;
mod apply;
pub mod attribution;
pub(crate) mod audit;
mod caps;
pub(crate) mod events;
mod fx;
pub mod intake;
mod month;
mod orders;
mod payouts;
mod programs;
pub mod query;
mod reconcile;
pub(crate) mod reports;
mod rows;
mod simulations;
mod wallets;
pub(crate) mod webhooks;

pub use query::{
    like_prefix, small, uint, Arg, BalanceMoves, Cols, Conn, Db, Dialect, Done, Lane, PointsMoves, Row, Sql,
};

use super::Result;
use std::sync::Arc;

/// The store: a backend's database and the cache of program versions.
#[derive(Clone)]
pub struct SqlStore {
    db: Arc<dyn Db>,
    programs: programs::ProgramCache,
    since: month::CountedSince,
}

impl SqlStore {
    pub fn new(db: Arc<dyn Db>) -> Self {
        Self { db, programs: programs::ProgramCache::default(), since: month::CountedSince::default() }
    }

    async fn write(&self, lane: Lane) -> Result<Box<dyn Conn>> {
        self.db.write(lane).await
    }

    /// Statement-by-statement reads on the request lane.
    async fn read(&self) -> Result<Box<dyn Conn>> {
        self.db.read(Lane::Request, false).await
    }

    /// Reads in one snapshot on the request lane.
    async fn snapshot(&self) -> Result<Box<dyn Conn>> {
        self.db.read(Lane::Request, true).await
    }
}

#[async_trait::async_trait]
impl super::Backend for SqlStore {
    async fn migrate(&self) -> Result<()> {
        self.db.migrate().await?;
        programs::ensure_default(self.write(Lane::Request).await?).await?;
        month::ensure_since(self.write(Lane::Request).await?, chrono::Utc::now()).await
    }

    async fn ping(&self) -> bool {
        self.db.ping().await
    }
}
