//! Coalesces concurrent order intakes into shared transactions: multi-row
//! inserts and one commit per batch (see `coalesce`). Each request is still
//! answered only after its own rows are committed.
use crate::coalesce::Coalescer;
use crate::store::orders::{CreateOrder, NewOrder};
use crate::store::{Store, StoreError};
use std::time::Duration;

#[derive(Clone)]
pub struct Intake {
    batches: Coalescer<NewOrder, Result<CreateOrder, StoreError>>,
}

impl Intake {
    /// `workers` transactions at most at once, each of up to `max_batch` orders.
    pub fn start(store: Store, workers: usize, max_batch: usize) -> Self {
        let batches = Coalescer::start(workers, max_batch, Duration::ZERO, move |orders: Vec<NewOrder>| {
            let store = store.clone();
            async move {
                match store.create_orders(&orders).await {
                    Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                    Err(e) => {
                        // Nothing of the batch was committed; every request says so.
                        let message = e.to_string();
                        orders.iter().map(|_| Err(StoreError::Corrupt(format!("intake failed: {message}")))).collect()
                    }
                }
            }
        });
        Self { batches }
    }

    pub async fn submit(&self, order: NewOrder) -> Result<CreateOrder, StoreError> {
        self.batches.submit(order).await.ok_or_else(|| StoreError::Corrupt("intake is shutting down".into()))?
    }
}
