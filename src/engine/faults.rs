//! Failure injection for tests and benchmarks. Every switch is off by default;
//! production code only pays an atomic load per check.
use crate::domain::event::EventRef;
use crate::journal::{Delivery, Journal, JournalError};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Faults {
    /// This many next commission transactions fail with a real database error
    /// after writing their ledger rows and before commit (u32::MAX: all of them).
    db_error_mid_tx: AtomicU32,
    /// This many next commission computations panic inside the actor.
    panic_in_actor: AtomicU32,
    /// Transactions holding this order's event fail like `db_error_mid_tx`,
    /// this many times.
    failing_order: std::sync::Mutex<Option<(String, u32)>>,
    /// This many next event batches panic inside the batch worker that
    /// applies them (before their transaction begins).
    panic_in_batch: AtomicU32,
    /// Intake parks every request after its commit and before the journal write,
    /// as if the process died there.
    hold_after_commit: AtomicBool,
    /// Every journal call fails, as when Redis is unreachable (see
    /// [`Switchable`]); in the embedded mode, where the journal cannot fail
    /// apart from the database, this is the only way to hold events back.
    journal_down: AtomicBool,
    /// This many next wallet transactions (holds, captures, releases,
    /// expiry) fail after writing everything and before commit.
    wallet_error_mid_tx: AtomicU32,
    /// This many next rounds of the webhook deliverer panic.
    panic_in_webhooks: AtomicU32,
    /// The leaser takes no partition while on (renewals go on), as in the
    /// moments after a start before the first lease tick.
    hold_leases: AtomicBool,
    /// The next lease renewal finds every held lease lost, as after ticks
    /// slower than the lease TTL.
    lose_leases: AtomicBool,
    /// This many next entries a commission actor takes find their
    /// partition's fence gone, as when its lease is lost between the read
    /// and the apply: each is left unapplied and unacknowledged.
    unfenced_entries: AtomicU32,
    /// Simulations: `Some(n)` lets the runner read n more pages of orders and
    /// holds it before the next one (a test watches progress between pages);
    /// None: no hold.
    simulation_pages: std::sync::Mutex<Option<u32>>,
    /// Simulations read this many orders a page instead of the default (0).
    simulation_page_size: AtomicU32,
    /// A full sweep waits before reading its stored totals while on (a test
    /// watches a long phase's heartbeat).
    hold_reconcile_totals: AtomicBool,
    /// Benchmark only: sleep before every commission computation, holding no
    /// connection and no lock (KOMISI_BENCH_COMMISSION_DELAY_MS).
    commission_delay: Duration,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 => None,
            u32::MAX => Some(u32::MAX),
            n => Some(n - 1),
        })
        .is_ok()
}

impl Faults {
    pub fn with_commission_delay(delay: Duration) -> Self {
        Self { commission_delay: delay, ..Self::default() }
    }
    /// Starts with [`Faults::hold_leases`] on.
    pub fn with_leases_held() -> Self {
        Self { hold_leases: AtomicBool::new(true), ..Self::default() }
    }
    pub fn hold_leases(&self, on: bool) {
        self.hold_leases.store(on, Ordering::SeqCst);
    }
    /// Every lease held is lost at the next renewal (once).
    pub fn lose_leases(&self) {
        self.lose_leases.store(true, Ordering::SeqCst);
    }
    /// Whether a [`Faults::lose_leases`] is still to happen.
    pub fn losing_leases(&self) -> bool {
        self.lose_leases.load(Ordering::SeqCst)
    }
    /// The next `times` entries taken by commission actors find no fence.
    pub fn unfence_entries(&self, times: u32) {
        self.unfenced_entries.store(times, Ordering::SeqCst);
    }
    /// How many entries are still to find no fence.
    pub fn unfenced_left(&self) -> u32 {
        self.unfenced_entries.load(Ordering::SeqCst)
    }
    pub fn fail_db_mid_tx(&self, times: u32) {
        self.db_error_mid_tx.store(times, Ordering::SeqCst);
    }
    pub fn panic_in_actor(&self, times: u32) {
        self.panic_in_actor.store(times, Ordering::SeqCst);
    }
    pub fn fail_order_mid_tx(&self, order_id: &str, times: u32) {
        *self.failing_order.lock().expect("faults lock") = Some((order_id.to_owned(), times));
    }
    pub fn fail_wallet_mid_tx(&self, times: u32) {
        self.wallet_error_mid_tx.store(times, Ordering::SeqCst);
    }
    /// How many injected wallet failures are still to come.
    pub fn wallet_failures_left(&self) -> u32 {
        self.wallet_error_mid_tx.load(Ordering::SeqCst)
    }
    pub fn panic_in_webhooks(&self, times: u32) {
        self.panic_in_webhooks.store(times, Ordering::SeqCst);
    }
    /// How many injected deliverer panics are still to come.
    pub fn webhook_panics_left(&self) -> u32 {
        self.panic_in_webhooks.load(Ordering::SeqCst)
    }
    pub fn panic_in_batch(&self, times: u32) {
        self.panic_in_batch.store(times, Ordering::SeqCst);
    }
    pub fn hold_after_commit(&self, on: bool) {
        self.hold_after_commit.store(on, Ordering::SeqCst);
    }
    pub fn journal_down(&self, down: bool) {
        self.journal_down.store(down, Ordering::SeqCst);
    }
    /// Holds simulations before their next page until
    /// [`Faults::allow_simulation_pages`] (None: release them).
    pub fn hold_simulations(&self, pages: Option<u32>) {
        *self.simulation_pages.lock().expect("faults lock") = pages;
    }
    /// Lets held simulations read this many more pages.
    pub fn allow_simulation_pages(&self, pages: u32) {
        if let Some(n) = self.simulation_pages.lock().expect("faults lock").as_mut() {
            *n += pages;
        }
    }
    pub fn hold_reconcile_totals(&self, on: bool) {
        self.hold_reconcile_totals.store(on, Ordering::SeqCst);
    }
    pub fn simulation_page_size(&self, orders: u32) {
        self.simulation_page_size.store(orders, Ordering::SeqCst);
    }
    pub fn clear(&self) {
        self.fail_db_mid_tx(0);
        self.panic_in_actor(0);
        self.panic_in_batch(0);
        self.panic_in_webhooks(0);
        self.fail_wallet_mid_tx(0);
        *self.failing_order.lock().expect("faults lock") = None;
        self.hold_after_commit(false);
        self.journal_down(false);
        self.hold_leases(false);
        self.lose_leases.store(false, Ordering::SeqCst);
        self.unfence_entries(0);
        self.hold_simulations(None);
        self.hold_reconcile_totals(false);
    }

    pub(crate) fn take_db_error(&self) -> bool {
        take(&self.db_error_mid_tx)
    }
    /// Whether a transaction holding these orders' events is to fail.
    pub(crate) fn take_order_error<'a>(&self, mut orders: impl Iterator<Item = &'a str>) -> bool {
        let mut failing = self.failing_order.lock().expect("faults lock");
        match failing.as_mut() {
            Some((order, times)) if *times > 0 && orders.any(|o| o == order) => {
                *times -= 1;
                true
            }
            _ => false,
        }
    }
    pub(crate) fn take_wallet_error(&self) -> bool {
        take(&self.wallet_error_mid_tx)
    }
    pub(crate) fn take_webhook_panic(&self) -> bool {
        take(&self.panic_in_webhooks)
    }
    pub(crate) fn take_batch_panic(&self) -> bool {
        take(&self.panic_in_batch)
    }
    pub(crate) fn take_panic(&self) -> bool {
        take(&self.panic_in_actor)
    }
    pub(crate) fn holding_after_commit(&self) -> bool {
        self.hold_after_commit.load(Ordering::SeqCst)
    }
    pub(crate) fn take_lease_loss(&self) -> bool {
        self.lose_leases.swap(false, Ordering::SeqCst)
    }
    pub(crate) fn take_unfenced(&self) -> bool {
        take(&self.unfenced_entries)
    }
    pub(crate) fn holding_leases(&self) -> bool {
        self.hold_leases.load(Ordering::SeqCst)
    }
    /// Waits while a sweep's totals are held.
    pub(crate) async fn reconcile_totals(&self) {
        while self.hold_reconcile_totals.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    /// Waits while simulations are held, then takes one page.
    pub(crate) async fn simulation_page(&self) {
        loop {
            {
                let mut pages = self.simulation_pages.lock().expect("faults lock");
                match pages.as_mut() {
                    None => return,
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        return;
                    }
                    Some(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    /// The page size of simulations, when a test sets one.
    pub(crate) fn simulation_page_size_or(&self, default: u32) -> u32 {
        match self.simulation_page_size.load(Ordering::SeqCst) {
            0 => default,
            n => n,
        }
    }
    pub(crate) fn commission_delay(&self) -> Duration {
        self.commission_delay
    }
}

/// A journal that fails every call while [`Faults::journal_down`] is on and
/// passes every call through otherwise (one atomic load per call).
pub struct Switchable {
    inner: Arc<dyn Journal>,
    faults: Arc<Faults>,
}

impl Switchable {
    pub fn new(inner: Arc<dyn Journal>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }

    fn check(&self) -> Result<(), JournalError> {
        if self.faults.journal_down.load(Ordering::SeqCst) {
            Err(JournalError("injected failure: the journal is unreachable".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Journal for Switchable {
    fn instance(&self) -> &str {
        self.inner.instance()
    }
    fn partitions(&self) -> u16 {
        self.inner.partitions()
    }
    async fn ensure(&self, parts: &[u16]) -> Result<Vec<u16>, JournalError> {
        self.check()?;
        self.inner.ensure(parts).await
    }
    async fn publish(&self, events: &[EventRef]) -> Result<usize, JournalError> {
        self.check()?;
        self.inner.publish(events).await
    }
    async fn read(&self, parts: &[u16], max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError> {
        if self.check().is_err() {
            // A blocking read against a dead server does not return at once either.
            tokio::time::sleep(block.min(Duration::from_millis(100))).await;
        }
        self.check()?;
        self.inner.read(parts, max, block).await
    }
    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), JournalError> {
        self.check()?;
        self.inner.ack(deliveries).await
    }
    async fn claim_idle(&self, parts: &[u16], min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError> {
        self.check()?;
        self.inner.claim_idle(parts, min_idle, max).await
    }
    async fn claim_dead(&self, max: usize) -> Result<Vec<Delivery>, JournalError> {
        self.check()?;
        self.inner.claim_dead(max).await
    }
    async fn take_over(&self, part: u16, max: usize) -> Result<Vec<Delivery>, JournalError> {
        self.check()?;
        self.inner.take_over(part, max).await
    }
    async fn heartbeat(&self, ttl: Duration) -> Result<usize, JournalError> {
        self.check()?;
        self.inner.heartbeat(ttl).await
    }
    async fn leave(&self) -> Result<(), JournalError> {
        self.check()?;
        self.inner.leave().await
    }
    async fn agree_partitions(&self) -> Result<bool, JournalError> {
        self.check()?;
        self.inner.agree_partitions().await
    }
    async fn acquire(&self, part: u16, ttl: Duration) -> Result<bool, JournalError> {
        self.check()?;
        self.inner.acquire(part, ttl).await
    }
    async fn renew(&self, parts: &[u16], ttl: Duration) -> Result<Vec<bool>, JournalError> {
        self.check()?;
        self.inner.renew(parts, ttl).await
    }
    async fn release(&self, parts: &[u16]) -> Result<(), JournalError> {
        self.check()?;
        self.inner.release(parts).await
    }
    async fn live(&self, events: &[EventRef]) -> Result<Vec<bool>, JournalError> {
        self.check()?;
        self.inner.live(events).await
    }
    async fn live_count(&self) -> Result<u64, JournalError> {
        self.check()?;
        self.inner.live_count().await
    }
    async fn ping(&self) -> bool {
        self.check().is_ok() && self.inner.ping().await
    }
}
