//! Coalescing concurrent requests into shared batches: each worker takes the
//! first waiting job and whatever else is already queued (up to a limit) and
//! runs them together. Under light load a batch is one job and waits for
//! nothing; under load, batches grow exactly as fast as the work behind them
//! slows down. A `linger` makes a worker wait that long after the first job
//! for more to join (for background work, where a little latency buys fewer,
//! larger batches). Used for order intake (one transaction per batch of orders) and
//! for applying events (one transaction per batch of events).
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

type Job<J, R> = (J, oneshot::Sender<R>);

pub struct Coalescer<J, R> {
    queue: mpsc::Sender<Job<J, R>>,
}

impl<J, R> Clone for Coalescer<J, R> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<J: Send + 'static, R: Send + 'static> Coalescer<J, R> {
    /// `workers` batches run at once, each of up to `max_batch` jobs, started
    /// at most `linger` after its first job arrived; `run` answers a batch with
    /// one result per job, in order. The workers stop when every handle is
    /// dropped.
    pub fn start<F, Fut>(workers: usize, max_batch: usize, linger: Duration, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let max_batch = max_batch.max(1);
        let (queue, rx) = mpsc::channel::<Job<J, R>>(workers.max(1) * max_batch * 4);
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        for _ in 0..workers.max(1) {
            let (rx, run) = (rx.clone(), run.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(job) => batch.push(job),
                            None => return,
                        }
                        let deadline = Instant::now() + linger;
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) if linger.is_zero() => break,
                                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                                    Ok(Some(job)) => batch.push(job),
                                    Ok(None) | Err(_) => break,
                                },
                            }
                        }
                    }
                    let (jobs, replies): (Vec<J>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                    for (reply, result) in replies.into_iter().zip(run(jobs).await) {
                        let _ = reply.send(result);
                    }
                }
            });
        }
        Self { queue }
    }

    /// Queues a job and waits for its result; None when the workers are gone
    /// (shutting down) or `run` answered fewer results than jobs.
    pub async fn submit(&self, job: J) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((job, reply)).await.ok()?;
        answer.await.ok()
    }
}
