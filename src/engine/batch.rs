//! Coalescing concurrent work into shared batches: each worker takes the
//! first waiting job and whatever else is already queued (up to a limit) and
//! runs them together. Under light load a batch is one job and waits for
//! nothing; under load, batches grow exactly as fast as the work behind them
//! slows down. A `linger` makes a worker wait that long after the first job
//! for more to join (for background work, where a little latency buys fewer,
//! larger batches). Used for order intake (one transaction per batch of
//! orders) and for applying events (one transaction per batch of events).
//!
//! Jobs wait in lanes (for events: the partition), and a batch takes one job
//! from each lane in turn: a lane that queued hundreds of jobs at once (a hot
//! affiliate's run) shares every batch with the other lanes' jobs instead of
//! holding them up until it is through. This matters most where batches run
//! one at a time (the embedded mode's single writer).
//!
//! Workers are supervised: a panic while running a batch is caught and
//! counted (`komisi_worker_restarts_total`), the worker starts over, and the
//! batch's jobs are run again one by one, each still guarded, so one job that
//! panics every time fails alone (its caller gets no answer) and the others
//! are answered.
use crate::metrics as m;
use futures::FutureExt;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

type Job<J, R> = (J, oneshot::Sender<R>);

/// The waiting jobs, by lane, and the lanes in their turn order.
struct Lanes<L, J, R> {
    lanes: HashMap<L, VecDeque<Job<J, R>>>,
    /// Lanes with jobs, the next to give one first.
    turn: VecDeque<L>,
    closed: bool,
}

impl<L: Hash + Eq + Clone, J, R> Lanes<L, J, R> {
    /// Moves up to `max − batch.len()` jobs into `batch`, one lane at a time.
    fn take(&mut self, batch: &mut Vec<Job<J, R>>, max: usize) {
        while batch.len() < max {
            let Some(lane) = self.turn.pop_front() else { return };
            let Some(jobs) = self.lanes.get_mut(&lane) else { continue };
            if let Some(job) = jobs.pop_front() {
                batch.push(job);
            }
            if jobs.is_empty() {
                self.lanes.remove(&lane);
            } else {
                self.turn.push_back(lane);
            }
        }
    }
}

struct Shared<L, J, R> {
    lanes: Mutex<Lanes<L, J, R>>,
    ready: Notify,
}

impl<L, J, R> Shared<L, J, R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes<L, J, R>> {
        // A panic never happens while the lock is held (no user code runs
        // under it); recover the data all the same.
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Closes the queue when the last handle goes: the workers finish what is
/// queued and stop.
struct Handles<L, J, R>(Arc<Shared<L, J, R>>);

impl<L, J, R> Drop for Handles<L, J, R> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_waiters();
    }
}

pub struct Coalescer<J, R, L = ()> {
    handles: Arc<Handles<L, J, R>>,
}

impl<J, R, L> Clone for Coalescer<J, R, L> {
    fn clone(&self) -> Self {
        Self { handles: self.handles.clone() }
    }
}

/// The text of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl<J, R, L> Coalescer<J, R, L>
where
    J: Clone + Send + 'static,
    R: Send + 'static,
    L: Hash + Eq + Clone + Send + 'static,
{
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
        let shared = Arc::new(Shared {
            lanes: Mutex::new(Lanes { lanes: HashMap::new(), turn: VecDeque::new(), closed: false }),
            ready: Notify::new(),
        });
        let run = Arc::new(run);
        for _ in 0..workers.max(1) {
            let (shared, run) = (shared.clone(), run.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&shared, max_batch, linger).await {
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
        Self { handles: Arc::new(Handles(shared)) }
    }

    /// Queues a job in `lane` and waits for its result; None when the workers
    /// are gone (shutting down), the job panicked, or `run` answered fewer
    /// results than jobs.
    pub async fn submit(&self, lane: L, job: J) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let shared = &self.handles.0;
        {
            let mut lanes = shared.lock();
            if lanes.closed {
                return None;
            }
            let jobs = lanes.lanes.entry(lane.clone()).or_default();
            jobs.push_back((job, reply));
            if jobs.len() == 1 {
                lanes.turn.push_back(lane);
            }
        }
        shared.ready.notify_one();
        answer.await.ok()
    }
}

/// The next batch: the first waiting job, and what joins it within the
/// linger; None once the queue is closed and empty.
async fn next_batch<L: Hash + Eq + Clone, J, R>(
    shared: &Shared<L, J, R>,
    max_batch: usize,
    linger: Duration,
) -> Option<Vec<Job<J, R>>> {
    let mut batch = Vec::new();
    let mut deadline = None;
    loop {
        // Registered before looking, so a job queued in between wakes it.
        let ready = shared.ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        {
            let mut lanes = shared.lock();
            lanes.take(&mut batch, max_batch);
            let more_waiting = !lanes.turn.is_empty();
            if batch.len() >= max_batch || (!batch.is_empty() && (linger.is_zero() || lanes.closed)) {
                drop(lanes);
                if more_waiting {
                    // Another worker may start on what is left.
                    shared.ready.notify_one();
                }
                return Some(batch);
            }
            if batch.is_empty() && lanes.closed {
                return None;
            }
        }
        if batch.is_empty() {
            ready.await;
            continue;
        }
        let until = *deadline.get_or_insert_with(|| Instant::now() + linger);
        if tokio::time::timeout_at(until, ready).await.is_err() {
            let mut lanes = shared.lock();
            lanes.take(&mut batch, max_batch);
            return Some(batch);
        }
    }
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
            async move { c.submit((), j).await }
        }))
        .await;
        assert_eq!(answers, vec![Some(20), Some(22), Some(24), None, Some(28), Some(30)]);
        assert_eq!(c.submit((), 1).await, Some(2));
    }

    #[tokio::test]
    async fn a_lane_with_a_long_queue_shares_every_batch_with_the_others() {
        // 100 jobs of a hot lane queued before one job of a cold lane: the
        // cold job runs in the first batch, not after the hot lane's 100.
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let c = Coalescer::start("test", 1, 8, Duration::ZERO, move |jobs: Vec<(char, u32)>| {
            seen.lock().unwrap().push(jobs.clone());
            async move { jobs.into_iter().map(|(_, j)| j).collect::<Vec<_>>() }
        });
        let hot = (0..100).map(|j| {
            let c = c.clone();
            async move { c.submit('h', ('h', j)).await }
        });
        let cold = {
            let c = c.clone();
            async move { c.submit('c', ('c', 1000)).await }
        };
        let (hot, cold) = futures::future::join(futures::future::join_all(hot), cold).await;
        assert_eq!(hot, (0..100).map(Some).collect::<Vec<_>>());
        assert_eq!(cold, Some(1000));
        let batches = batches.lock().unwrap();
        assert!(batches[0].contains(&('c', 1000)), "first batch: {:?}", batches[0]);
        // Each lane's jobs keep their order across batches.
        let hot_order: Vec<u32> = batches.iter().flatten().filter(|(l, _)| *l == 'h').map(|(_, j)| *j).collect();
        assert_eq!(hot_order, (0..100).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.len() <= 8));
    }
}
