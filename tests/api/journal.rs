//! The Redis journal on its own: consumer-group delivery, acks, claiming the
//! entries of a dead consumer, and recreating a lost journal.
use komisi::domain::event::{EventId, EventRef, PartitionKey};
use komisi::domain::ids::{AffiliateId, BuyerId};
use komisi::journal::redis::RedisJournal;
use komisi::journal::Journal;
use std::time::Duration;

fn redis_url() -> String {
    std::env::var("KOMISI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn refs(n: usize) -> Vec<EventRef> {
    (0..n)
        .map(|i| EventRef {
            id: EventId::new(),
            partition: PartitionKey::of(
                Some(&AffiliateId::parse(&format!("a{i}")).unwrap()),
                &BuyerId::parse("b").unwrap(),
            ),
        })
        .collect()
}

async fn cleanup(prefix: &str) {
    let mut conn = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }
}

#[tokio::test]
async fn entries_of_a_dead_consumer_are_claimed_by_another() {
    let prefix = format!("komisi_t_j{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let dead = RedisJournal::new(&redis_url(), &prefix, "dead".into()).unwrap();
    let alive = RedisJournal::new(&redis_url(), &prefix, "alive".into()).unwrap();
    assert!(dead.ensure().await.unwrap(), "a new journal reports it was created");
    assert!(!alive.ensure().await.unwrap(), "an existing journal does not");

    let events = refs(5);
    dead.publish(&events).await.unwrap();
    let taken = dead.read(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(taken.iter().map(|d| d.event.clone()).collect::<Vec<_>>(), events);
    // The consumer acks two and dies holding three.
    dead.ack(&[taken[0].entry_id.clone(), taken[1].entry_id.clone()]).await.unwrap();
    assert!(alive.read(10, Duration::from_millis(50)).await.unwrap().is_empty(), "delivered entries are not new");
    assert!(alive.claim_idle(Duration::from_secs(60), 10).await.unwrap().is_empty(), "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let claimed = alive.claim_idle(Duration::from_millis(20), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.event.clone()).collect::<Vec<_>>(), events[2..].to_vec());
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_lost_journal_is_detected_and_recreated() {
    let prefix = format!("komisi_t_j{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let journal = RedisJournal::new(&redis_url(), &prefix, "c".into()).unwrap();
    assert!(journal.ensure().await.unwrap());
    journal.publish(&refs(2)).await.unwrap();
    cleanup(&prefix).await;
    // Reading a deleted stream recreates the group instead of failing.
    assert!(journal.read(10, Duration::from_millis(50)).await.unwrap().is_empty());
    assert!(journal.ensure().await.unwrap(), "the missing epoch marks the journal as lost");
    let again = refs(1);
    journal.publish(&again).await.unwrap();
    let read = journal.read(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(read.iter().map(|d| d.event.clone()).collect::<Vec<_>>(), again);
    cleanup(&prefix).await;
}
