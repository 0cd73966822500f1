//! Program versions: immutable once stored.
use super::Result;
use crate::domain::program::Program;
use std::sync::Arc;

#[async_trait::async_trait]
pub trait Programs: Send + Sync {
    async fn program(&self, version: u64) -> Result<Arc<Program>>;
    /// The version in force now and its program.
    async fn current_program(&self) -> Result<(u64, Arc<Program>)>;
    /// Stores a validated program as a new version.
    async fn insert_program(&self, program: &Program) -> Result<u64>;
}
