//! Coalesces the commission actors' events into shared transactions: each
//! actor still applies its own partition's events one at a time, in order, but
//! the events of many partitions that are ready at the same moment are applied
//! in one transaction (one commit, one round trip per statement kind). A batch
//! that fails is rolled back whole and its events are applied one by one, so a
//! failing event fails alone and every other event of the batch still lands
//! exactly once.
use crate::coalesce::Coalescer;
use crate::event::EventId;
use crate::faults::Faults;
use crate::metrics as m;
use crate::store::processing::Outcome;
use crate::store::{EventStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

type Applied = Result<Outcome, StoreError>;

#[derive(Clone)]
pub struct Applier {
    batches: Coalescer<EventId, Applied>,
}

impl Applier {
    /// `workers` transactions at most at once, each of up to `max_batch`
    /// events, started at most `linger` after its first event was ready.
    pub fn start(
        store: Arc<dyn EventStore>,
        faults: Arc<Faults>,
        workers: usize,
        max_batch: usize,
        linger: Duration,
    ) -> Self {
        let batches = Coalescer::start(workers, max_batch, linger, move |ids: Vec<EventId>| {
            let (store, faults) = (store.clone(), faults.clone());
            async move { apply_batch(store.as_ref(), &faults, ids).await }
        });
        Self { batches }
    }

    /// Applies one event (possibly together with other partitions' events).
    pub async fn apply(&self, id: EventId) -> Applied {
        self.batches.submit(id).await.ok_or_else(|| StoreError::Corrupt("event processing is shutting down".into()))?
    }
}

pub async fn apply_batch(store: &dyn EventStore, faults: &Faults, ids: Vec<EventId>) -> Vec<Applied> {
    metrics::histogram!(m::EVENT_BATCH_SIZE).record(ids.len() as f64);
    if ids.len() > 1 {
        match store.process_events(&ids, faults).await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(e) => {
                metrics::counter!(m::EVENT_BATCH_FALLBACKS_TOTAL).increment(1);
                tracing::info!(error = %e, events = ids.len(), "batch rolled back; applying its events one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        results.push(store.process_event(id, faults).await);
    }
    results
}
