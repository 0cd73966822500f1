//! Coalesces concurrent order intakes into shared transactions: each worker
//! takes the first waiting order and whatever else is already queued, and
//! writes them with multi-row inserts and one commit. Under light load a batch
//! is one order and waits for nothing; under heavy load the commits (and their
//! fsyncs) are shared. Each request is still answered only after its own rows
//! are committed.
use crate::store::orders::{CreateOrder, NewOrder};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

type Reply = oneshot::Sender<Result<CreateOrder, StoreError>>;

#[derive(Clone)]
pub struct Intake {
    queue: mpsc::Sender<(NewOrder, Reply)>,
}

impl Intake {
    /// `workers` transactions at most at once, each of up to `max_batch` orders.
    pub fn start(store: Store, workers: usize, max_batch: usize) -> Self {
        let (queue, rx) = mpsc::channel::<(NewOrder, Reply)>(workers * max_batch * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let (store, rx) = (store.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(job) => batch.push(job),
                            None => return,
                        }
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                    }
                    let (orders, replies): (Vec<NewOrder>, Vec<Reply>) = batch.into_iter().unzip();
                    match store.create_orders(&orders).await {
                        Ok(outcomes) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                        }
                        Err(e) => {
                            // Nothing of the batch was committed; every request says so.
                            let message = e.to_string();
                            for reply in replies {
                                let _ = reply.send(Err(StoreError::Corrupt(format!("intake failed: {message}"))));
                            }
                        }
                    }
                }
            });
        }
        Self { queue }
    }

    pub async fn submit(&self, order: NewOrder) -> Result<CreateOrder, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((order, reply)).await.map_err(|_| StoreError::Corrupt("intake is shutting down".into()))?;
        answer.await.map_err(|_| StoreError::Corrupt("intake worker stopped".into()))?
    }
}
