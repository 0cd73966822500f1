//! Order intake: concurrent requests coalesced into shared backend batches
//! (multi-row inserts and one commit per batch, see `batch`). Each request is
//! still answered only after its own rows are committed.
use super::batch::Coalescer;
use super::{Committed, EngineError};
use crate::domain::order::{CreateOrder, NewOrder};
use crate::store::Backend;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Intake {
    batches: Coalescer<NewOrder, Result<CreateOrder, EngineError>>,
}

impl Intake {
    /// `workers` transactions at most at once, each of up to `max_batch`
    /// orders; the accepted orders' events of a batch are journaled together
    /// after its commit (one journal write per batch, not per order).
    pub(crate) fn start(backend: Arc<dyn Backend>, committed: Committed, workers: usize, max_batch: usize) -> Self {
        let batches = Coalescer::start("intake", workers, max_batch, Duration::ZERO, move |orders: Vec<NewOrder>| {
            let (backend, committed) = (backend.clone(), committed.clone());
            async move {
                let outcomes = backend.create_orders(&orders).await;
                let accepted = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        Ok(CreateOrder::Accepted(event)) => Some(event.clone()),
                        _ => None,
                    })
                    .collect();
                committed.publish(accepted).await;
                outcomes.into_iter().map(|r| r.map_err(EngineError::from)).collect()
            }
        });
        Self { batches }
    }

    pub async fn submit(&self, order: NewOrder) -> Result<CreateOrder, EngineError> {
        self.batches.submit((), order).await.ok_or(EngineError::NoAnswer("intake"))?
    }
}
