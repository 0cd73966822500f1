//! Order intake: concurrent requests coalesced into shared backend batches
//! (multi-row inserts and one commit per batch, see `batch`). Each request is
//! still answered only after its own rows are committed.
use super::batch::Coalescer;
use super::EngineError;
use crate::domain::order::{CreateOrder, NewOrder};
use crate::store::Backend;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Intake {
    batches: Coalescer<NewOrder, Result<CreateOrder, EngineError>>,
}

impl Intake {
    /// `workers` transactions at most at once, each of up to `max_batch` orders.
    pub fn start(backend: Arc<dyn Backend>, workers: usize, max_batch: usize) -> Self {
        let batches = Coalescer::start("intake", workers, max_batch, Duration::ZERO, move |orders: Vec<NewOrder>| {
            let backend = backend.clone();
            async move { backend.create_orders(&orders).await.into_iter().map(|r| r.map_err(EngineError::from)).collect() }
        });
        Self { batches }
    }

    pub async fn submit(&self, order: NewOrder) -> Result<CreateOrder, EngineError> {
        self.batches.submit(order).await.ok_or(EngineError::NoAnswer("intake"))?
    }
}
