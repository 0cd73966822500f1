//! Coalesces concurrent order intakes into shared transactions: multi-row
//! inserts and one commit per batch (see `coalesce`). Each request is still
//! answered only after its own rows are committed.
//!
//! Intake keeps its own database connections, one per worker at most, instead
//! of taking one from the pool per batch: sqlx's pool pings every connection
//! given back to it (sqlx 0.8, "test on release"), a round trip as costly as
//! each of the batch's own two. A connection that failed is dropped; one idle
//! for a while is pinged before use.
use crate::coalesce::Coalescer;
use crate::store::orders::{CreateOrder, NewOrder};
use crate::store::{Store, StoreError, IDLE_BEFORE_PING};
use sqlx::{Connection, MySqlConnection};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Intake {
    batches: Coalescer<NewOrder, Result<CreateOrder, StoreError>>,
}

struct Kept {
    store: Store,
    idle: Mutex<Vec<(MySqlConnection, Instant)>>,
}

impl Kept {
    async fn take(&self) -> Result<MySqlConnection, StoreError> {
        loop {
            let Some((mut conn, since)) = self.idle.lock().expect("intake connections poisoned").pop() else {
                // Taken out of the pool for good (it no longer counts toward the pool's size).
                return Ok(self.store.pool().acquire().await?.detach());
            };
            if since.elapsed() < IDLE_BEFORE_PING || conn.ping().await.is_ok() {
                return Ok(conn);
            }
        }
    }

    fn give_back(&self, conn: MySqlConnection) {
        self.idle.lock().expect("intake connections poisoned").push((conn, Instant::now()));
    }
}

impl Intake {
    /// `workers` transactions at most at once, each of up to `max_batch` orders.
    pub fn start(store: Store, workers: usize, max_batch: usize) -> Self {
        let kept = Arc::new(Kept { store, idle: Mutex::new(Vec::new()) });
        let batches = Coalescer::start(workers, max_batch, Duration::ZERO, move |orders: Vec<NewOrder>| {
            let kept = kept.clone();
            async move {
                let (outcomes, conn) = kept.store.create_orders_with(kept.take().await, &orders).await;
                if let Some(conn) = conn {
                    kept.give_back(conn);
                }
                outcomes
            }
        });
        Self { batches }
    }

    pub async fn submit(&self, order: NewOrder) -> Result<CreateOrder, StoreError> {
        self.batches.submit(order).await.ok_or_else(|| StoreError::Corrupt("intake is shutting down".into()))?
    }
}
