//! The SQLite journal on its own, each test on its own temporary database
//! file: delivery, acks, one live entry per event, claiming the entries of
//! idle and dead consumers, waking blocked readers, and redelivery after a
//! crash.
use komisi::domain::event::{EventId, EventRef, PartitionKey};
use komisi::domain::ids::{AffiliateId, BuyerId, OrderId};
use komisi::journal::sqlite::SqliteJournal;
use komisi::journal::{Delivery, Journal};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIGRATION: &str = include_str!("../../migrations/sqlite/0100_journal.sql");

/// A temporary database file, removed (with its WAL files) when dropped.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    async fn new() -> Self {
        let path = std::env::temp_dir().join(format!("komisi_t_j{}.db", uuid::Uuid::now_v7().simple()));
        let db = Self { path };
        let pool = db.pool().await;
        sqlx::raw_sql(MIGRATION).execute(&pool).await.unwrap();
        pool.close().await;
        db
    }

    /// A writer pool as the store opens one: WAL, synchronous=FULL, a busy
    /// timeout, one connection.
    async fn pool(&self) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn refs(n: usize) -> Vec<EventRef> {
    (0..n)
        .map(|i| EventRef {
            id: EventId::new(),
            order_id: OrderId::parse(&format!("o{i}")).unwrap(),
            partition: PartitionKey::of(
                Some(&AffiliateId::parse(&format!("a{i}")).unwrap()),
                &BuyerId::parse("b").unwrap(),
            ),
        })
        .collect()
}

fn events(deliveries: &[Delivery]) -> Vec<EventRef> {
    deliveries.iter().map(|d| d.event.clone()).collect()
}

async fn consumers(pool: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM journal_consumers ORDER BY name").fetch_all(pool).await.unwrap()
}

#[tokio::test]
async fn entries_of_an_idle_consumer_are_claimed_by_another() {
    let db = TempDb::new().await;
    let pool = db.pool().await;
    let dead = SqliteJournal::new(pool.clone(), "dead".into());
    let alive = SqliteJournal::new(pool.clone(), "alive".into());
    assert!(!dead.ensure(&[0]).await.unwrap().is_empty(), "a new journal reports it was created");
    assert!(alive.ensure(&[0]).await.unwrap().is_empty(), "an existing journal does not");

    let events_ = refs(5);
    assert_eq!(dead.publish(&events_).await.unwrap(), 5);
    let taken = dead.read(&[0], 10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(events(&taken), events_);
    // The consumer acks two and dies holding three.
    dead.ack(&taken[..2]).await.unwrap();
    assert!(alive.read(&[0], 10, Duration::from_millis(50)).await.unwrap().is_empty(), "delivered entries are not new");
    assert!(alive.claim_idle(&[0], Duration::from_secs(60), 10).await.unwrap().is_empty(), "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let claimed = alive.claim_idle(&[0], Duration::from_millis(20), 10).await.unwrap();
    assert_eq!(events(&claimed), events_[2..].to_vec());
    // The same entries, now held by `alive`: acking the claimed copies
    // empties the journal.
    assert_eq!(
        claimed.iter().map(|d| &d.entry_id).collect::<Vec<_>>(),
        taken[2..].iter().map(|d| &d.entry_id).collect::<Vec<_>>()
    );
    assert!(alive.claim_idle(&[0], Duration::from_secs(60), 10).await.unwrap().is_empty(), "a claim delivers anew");
    alive.ack(&claimed).await.unwrap();
    assert_eq!(alive.live_count().await.unwrap(), 0);
}

#[tokio::test]
async fn ensure_is_true_once_per_database() {
    let db = TempDb::new().await;
    let pool = db.pool().await;
    let journal = SqliteJournal::new(pool.clone(), "c".into());
    assert!(!journal.ensure(&[0]).await.unwrap().is_empty(), "a new journal reports it was created");
    assert!(journal.ensure(&[0]).await.unwrap().is_empty());
    pool.close().await;
    // Reopened (a restart), the journal is the same one.
    let journal = SqliteJournal::new(db.pool().await, "c2".into());
    assert!(journal.ensure(&[0]).await.unwrap().is_empty());
    assert!(journal.ping().await);
}

#[tokio::test]
async fn each_event_has_one_live_entry_until_it_is_acked() {
    let db = TempDb::new().await;
    let journal = SqliteJournal::new(db.pool().await, "c".into());
    journal.ensure(&[0]).await.unwrap();
    let events_ = refs(3);
    let ids: Vec<EventRef> = events_.to_vec();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![false, false, false]);
    assert_eq!(journal.publish(&events_).await.unwrap(), 3);
    // Queued, not yet read: live, and journaling them again adds nothing.
    assert_eq!(journal.publish(&events_).await.unwrap(), 0);
    assert_eq!(journal.live(&ids).await.unwrap(), vec![true, true, true]);
    assert_eq!(journal.live_count().await.unwrap(), 3);
    let taken = journal.read(&[0], 10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(events(&taken), events_);
    // Delivered, not acked: still live; acked: not.
    journal.ack(&taken[..1]).await.unwrap();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![false, true, true]);
    assert_eq!(journal.live_count().await.unwrap(), 2);
    // Delivered and unacked is live too: no second copy. Once acked (say its
    // attempt failed and is due again), the event is journaled anew.
    assert_eq!(journal.publish(&events_[1..2]).await.unwrap(), 0);
    journal.ack(&taken[1..2]).await.unwrap();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![false, false, true]);
    assert_eq!(journal.publish(&events_[..2]).await.unwrap(), 2);
    assert_eq!(journal.live(&ids).await.unwrap(), vec![true, true, true]);
    // Acking a copy that is no longer the live one leaves the live one alone,
    // and so does an entry id this journal never gave out.
    journal.ack(&taken[1..2]).await.unwrap();
    let mut stranger = taken[2].clone();
    stranger.entry_id = "not-an-entry".into();
    journal.ack(&[stranger]).await.unwrap();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![true, true, true]);
    // The new entries are new deliveries, with new entry ids.
    let again = journal.read(&[0], 10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(events(&again), events_[..2].to_vec());
    assert!(again.iter().all(|d| taken.iter().all(|t| t.entry_id != d.entry_id)));
    // Duplicates within one publish journal the event once.
    let one = refs(1);
    assert_eq!(journal.publish(&[one[0].clone(), one[0].clone()]).await.unwrap(), 1);
}

#[tokio::test]
async fn many_events_are_published_and_read_in_chunks() {
    let db = TempDb::new().await;
    let journal = SqliteJournal::new(db.pool().await, "c".into());
    let events_ = refs(1_234);
    assert_eq!(journal.publish(&events_).await.unwrap(), 1_234);
    let ids: Vec<EventRef> = events_.to_vec();
    assert!(journal.live(&ids).await.unwrap().into_iter().all(|l| l));
    let mut taken = Vec::new();
    while taken.len() < events_.len() {
        let got = journal.read(&[0], 300, Duration::from_millis(50)).await.unwrap();
        assert!(!got.is_empty() && got.len() <= 300);
        taken.extend(got);
    }
    assert_eq!(events(&taken), events_, "entries come in the order they were journaled");
    journal.ack(&taken).await.unwrap();
    assert_eq!(journal.live_count().await.unwrap(), 0);
    assert!(journal.live(&ids).await.unwrap().into_iter().all(|l| !l));
}

#[tokio::test]
async fn a_consumer_that_stops_beating_loses_its_entries_to_a_live_one_at_once() {
    let db = TempDb::new().await;
    let pool = db.pool().await;
    let dead = SqliteJournal::new(pool.clone(), "dead".into());
    let alive = SqliteJournal::new(pool.clone(), "alive".into());
    dead.ensure(&[0]).await.unwrap();
    dead.heartbeat(Duration::from_millis(300)).await.unwrap();
    alive.heartbeat(Duration::from_secs(60)).await.unwrap();
    let events_ = refs(4);
    dead.publish(&events_).await.unwrap();
    let held = dead.read(&[0], 10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(held.len(), 4);
    assert!(alive.claim_dead(10).await.unwrap().is_empty(), "its heartbeat is fresh: not dead");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = alive.claim_dead(10).await.unwrap();
    assert_eq!(events(&claimed), events_);
    // Claimed, the entries are still each event's live one, now held by `alive`.
    let ids: Vec<EventRef> = events_.to_vec();
    assert_eq!(alive.live(&ids).await.unwrap(), vec![true; 4]);
    assert!(dead.claim_dead(10).await.unwrap().is_empty(), "a live consumer's entries are never taken");
    // The dead consumer, now holding nothing, is forgotten.
    assert_eq!(consumers(&pool).await, vec!["alive".to_owned()]);
}

#[tokio::test]
async fn claim_dead_takes_consumers_without_a_heartbeat_and_respects_max() {
    let db = TempDb::new().await;
    let pool = db.pool().await;
    let silent = SqliteJournal::new(pool.clone(), "silent".into());
    let alive = SqliteJournal::new(pool.clone(), "alive".into());
    alive.heartbeat(Duration::from_secs(60)).await.unwrap();
    let events_ = refs(5);
    silent.publish(&events_).await.unwrap();
    assert_eq!(silent.read(&[0], 10, Duration::from_millis(100)).await.unwrap().len(), 5);
    // It never beat: dead. Its entries move oldest first, `max` at a time.
    let first = alive.claim_dead(3).await.unwrap();
    assert_eq!(events(&first), events_[..3].to_vec());
    let rest = alive.claim_dead(3).await.unwrap();
    assert_eq!(events(&rest), events_[3..].to_vec());
    assert!(alive.claim_dead(3).await.unwrap().is_empty());
    assert_eq!(alive.live_count().await.unwrap(), 5);
}

#[tokio::test]
async fn a_blocked_read_wakes_on_publish() {
    let db = TempDb::new().await;
    let journal = Arc::new(SqliteJournal::new(db.pool().await, "c".into()));
    journal.ensure(&[0]).await.unwrap();
    let block = Duration::from_secs(10);
    let reader = {
        let journal = journal.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = journal.read(&[0], 10, block).await.unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!reader.is_finished(), "nothing journaled yet: the read waits");
    let events_ = refs(2);
    journal.publish(&events_).await.unwrap();
    let (got, waited) = tokio::time::timeout(Duration::from_secs(3), reader)
        .await
        .expect("the publish wakes the reader well before its block timeout")
        .unwrap();
    assert_eq!(events(&got), events_, "the woken read returns the new entries");
    assert!(waited < Duration::from_secs(3), "woken after {waited:?}");
}

#[tokio::test]
async fn entries_held_at_a_crash_are_delivered_again() {
    let db = TempDb::new().await;
    let events_ = refs(3);
    let held = {
        let pool = db.pool().await;
        let first = SqliteJournal::new(pool.clone(), "first".into());
        assert!(!first.ensure(&[0]).await.unwrap().is_empty());
        first.heartbeat(Duration::from_millis(300)).await.unwrap();
        first.publish(&events_).await.unwrap();
        let held = first.read(&[0], 10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(held.len(), 3);
        first.ack(&held[..1]).await.unwrap();
        // The instance dies holding two entries: its journal and connection go.
        drop(first);
        pool.close().await;
        held
    };
    let pool = db.pool().await;
    let second = SqliteJournal::new(pool.clone(), "second".into());
    assert!(second.ensure(&[0]).await.unwrap().is_empty(), "the journal survived");
    second.heartbeat(Duration::from_secs(60)).await.unwrap();
    assert!(second.read(&[0], 10, Duration::from_millis(50)).await.unwrap().is_empty(), "held entries are not new");
    assert!(second.claim_dead(10).await.unwrap().is_empty(), "the first's heartbeat has not expired yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = second.claim_dead(10).await.unwrap();
    assert_eq!(events(&claimed), events_[1..].to_vec());
    assert_eq!(
        claimed.iter().map(|d| &d.entry_id).collect::<Vec<_>>(),
        held[1..].iter().map(|d| &d.entry_id).collect::<Vec<_>>()
    );
    let ids: Vec<EventRef> = events_.to_vec();
    assert_eq!(second.live(&ids).await.unwrap(), vec![false, true, true]);
    second.ack(&claimed).await.unwrap();
    assert_eq!(second.live_count().await.unwrap(), 0);
    assert_eq!(consumers(&pool).await, vec!["second".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_arriving_together_are_all_deleted_and_only_theirs() {
    // 300 acks of one entry each, at once, as 300 actors send them: grouped
    // into few delete transactions, every acked entry goes, the rest stay.
    let db = TempDb::new().await;
    let pool = db.pool().await;
    let journal = Arc::new(SqliteJournal::new(pool.clone(), "c".into()));
    journal.ensure(&[0]).await.unwrap();
    assert_eq!(journal.publish(&refs(400)).await.unwrap(), 400);
    let delivered = journal.read(&[0], 400, Duration::ZERO).await.unwrap();
    assert_eq!(delivered.len(), 400);
    let acks = futures::future::join_all(delivered[..300].iter().map(|d| {
        let (journal, d) = (journal.clone(), d.clone());
        tokio::spawn(async move { journal.ack(&[d]).await })
    }))
    .await;
    assert!(acks.iter().all(|r| matches!(r, Ok(Ok(())))), "{acks:?}");
    assert_eq!(journal.live_count().await.unwrap(), 100);
    let ids: Vec<EventRef> = delivered.iter().map(|d| d.event.clone()).collect();
    let live = journal.live(&ids).await.unwrap();
    assert!(live[..300].iter().all(|l| !l) && live[300..].iter().all(|l| *l), "exactly the acked entries went");
}
