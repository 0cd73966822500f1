//! Coalescing concurrent work into shared batches: each worker takes the
//! first waiting job and whatever else is already queued (up to a limit) and
//! runs them together. Under light load a batch is one job and waits for
//! nothing; under load, batches grow exactly as fast as the work behind them
//! slows down. A `linger` makes a worker wait that long after the first job
//! for more to join (for background work, where a little latency buys fewer,
//! larger batches). Used for order intake (one transaction per batch of
//! orders) and for applying events (one transaction per batch of events).
//!
//! Workers are supervised: a panic while running a batch is caught and
//! counted (`komisi_worker_restarts_total`), the worker starts over, and the
//! batch's jobs are run again one by one, each still guarded, so one job that
//! panics every time fails alone (its caller gets no answer) and the others
//! are answered.
use crate::metrics as m;
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
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

/// The text of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl<J: Clone + Send + 'static, R: Send + 'static> Coalescer<J, R> {
    /// `workers` batches run at once, each of up to `max_batch` jobs, started
    /// at most `linger` after its first job arrived; `run` answers a batch with
    /// one result per job, in order. `name` labels the restart counter. The
    /// workers stop when every handle is dropped.
    pub fn start<F, Fut>(name: &'static str, workers: usize, max_batch: usize, linger: Duration, run: F) -> Self
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
                while let Some(batch) = next_batch(&rx, max_batch, linger).await {
                    let (jobs, replies): (Vec<J>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                    match AssertUnwindSafe(run(jobs.clone())).catch_unwind().await {
                        Ok(results) => {
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(result);
                            }
                        }
                        Err(panic) => {
                            metrics::counter!(m::WORKER_RESTARTS_TOTAL, "worker" => name).increment(1);
                            tracing::error!(
                                worker = name,
                                jobs = jobs.len(),
                                panic = panic_text(panic.as_ref()),
                                "batch worker panicked; restarting it and running the batch's jobs one by one"
                            );
                            for (job, reply) in jobs.into_iter().zip(replies) {
                                match AssertUnwindSafe(run(vec![job])).catch_unwind().await {
                                    Ok(mut results) => {
                                        if let Some(result) = results.pop() {
                                            let _ = reply.send(result);
                                        }
                                    }
                                    Err(panic) => {
                                        metrics::counter!(m::WORKER_RESTARTS_TOTAL, "worker" => name).increment(1);
                                        tracing::error!(
                                            worker = name,
                                            panic = panic_text(panic.as_ref()),
                                            "a job panicked on its own; it is answered with nothing"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            });
        }
        Self { queue }
    }

    /// Queues a job and waits for its result; None when the workers are gone
    /// (shutting down), the job panicked, or `run` answered fewer results than jobs.
    pub async fn submit(&self, job: J) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((job, reply)).await.ok()?;
        answer.await.ok()
    }
}

/// The next batch: the first waiting job, and what joins it within the linger.
async fn next_batch<J, R>(
    rx: &Mutex<mpsc::Receiver<Job<J, R>>>,
    max_batch: usize,
    linger: Duration,
) -> Option<Vec<Job<J, R>>> {
    let mut rx = rx.lock().await;
    let mut batch = vec![rx.recv().await?];
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
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_batch_is_rerun_job_by_job_and_the_worker_goes_on() {
        // Panics whenever the batch holds job 13: job 13 alone gets no answer,
        // every other job is answered, and the worker keeps serving.
        let c = Coalescer::start("test", 1, 8, Duration::from_millis(20), |jobs: Vec<u32>| async move {
            assert!(!jobs.contains(&13), "job 13 panics");
            jobs.into_iter().map(|j| j * 2).collect::<Vec<_>>()
        });
        let answers = futures::future::join_all((10..16).map(|j| {
            let c = c.clone();
            async move { c.submit(j).await }
        }))
        .await;
        assert_eq!(answers, vec![Some(20), Some(22), Some(24), None, Some(28), Some(30)]);
        assert_eq!(c.submit(1).await, Some(2));
    }
}
