//! The Redis journal on its own: consumer-group delivery, acks, claiming the
//! entries of a dead consumer, and recreating a lost journal.
use komisi::domain::event::{EventId, EventRef, PartitionKey};
use komisi::domain::ids::{AffiliateId, BuyerId, OrderId};
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
            order_id: OrderId::parse(&format!("o{i}")).unwrap(),
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
    if !crate::helpers::needs_redis("entries_of_a_dead_consumer_are_claimed_by_another") {
        return;
    }
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
    dead.ack(&taken[..2]).await.unwrap();
    assert!(alive.read(10, Duration::from_millis(50)).await.unwrap().is_empty(), "delivered entries are not new");
    assert!(alive.claim_idle(Duration::from_secs(60), 10).await.unwrap().is_empty(), "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let claimed = alive.claim_idle(Duration::from_millis(20), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.event.clone()).collect::<Vec<_>>(), events[2..].to_vec());
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_lost_journal_is_detected_and_recreated() {
    if !crate::helpers::needs_redis("a_lost_journal_is_detected_and_recreated") {
        return;
    }
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

#[tokio::test]
async fn each_event_has_one_live_entry_until_it_is_acked_or_its_entry_is_lost() {
    if !crate::helpers::needs_redis("each_event_has_one_live_entry_until_it_is_acked_or_its_entry_is_lost") {
        return;
    }
    let prefix = format!("komisi_t_j{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let journal = RedisJournal::new(&redis_url(), &prefix, "c".into()).unwrap();
    journal.ensure().await.unwrap();
    let events = refs(3);
    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![false, false, false]);
    assert_eq!(journal.publish(&events).await.unwrap(), 3);
    // Queued, not yet read: live, and journaling them again adds nothing.
    assert_eq!(journal.publish(&events).await.unwrap(), 0);
    assert_eq!(journal.live(&ids).await.unwrap(), vec![true, true, true]);
    let taken = journal.read(10, Duration::from_millis(100)).await.unwrap();
    // Delivered, not acked: still live; acked: not.
    journal.ack(&taken[..1]).await.unwrap();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![false, true, true]);
    assert_eq!(journal.live_count().await.unwrap(), 2);
    // Delivered and unacked is live too: no second copy. Once acked (say its
    // attempt failed and is due again), the event is journaled anew.
    assert_eq!(journal.publish(&events[1..2]).await.unwrap(), 0);
    journal.ack(&taken[1..2]).await.unwrap();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![false, false, true]);
    assert_eq!(journal.publish(&events[..2]).await.unwrap(), 2);
    assert_eq!(journal.live(&ids).await.unwrap(), vec![true, true, true]);
    // Acking a copy that is no longer the live one leaves the live one alone.
    journal.ack(&taken[1..2]).await.unwrap();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![true, true, true]);
    // Entries gone from the stream (trimmed, or a half-lost journal) are not live.
    let mut conn = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{prefix}:journal")).query_async(&mut conn).await.unwrap();
    assert_eq!(journal.live(&ids).await.unwrap(), vec![false, false, false]);
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_consumer_that_stops_beating_loses_its_entries_to_a_live_one_at_once() {
    if !crate::helpers::needs_redis("a_consumer_that_stops_beating_loses_its_entries_to_a_live_one_at_once") {
        return;
    }
    let prefix = format!("komisi_t_j{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let dead = RedisJournal::new(&redis_url(), &prefix, "dead".into()).unwrap();
    let alive = RedisJournal::new(&redis_url(), &prefix, "alive".into()).unwrap();
    dead.ensure().await.unwrap();
    dead.heartbeat(Duration::from_millis(300)).await.unwrap();
    alive.heartbeat(Duration::from_secs(60)).await.unwrap();
    let events = refs(4);
    dead.publish(&events).await.unwrap();
    let held = dead.read(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(held.len(), 4);
    assert!(alive.claim_dead(10).await.unwrap().is_empty(), "its heartbeat is fresh: not dead");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = alive.claim_dead(10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.event.clone()).collect::<Vec<_>>(), events);
    // Claimed, the entries are still each event's live one, now held by `alive`.
    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(alive.live(&ids).await.unwrap(), vec![true; 4]);
    assert!(dead.claim_dead(10).await.unwrap().is_empty(), "a live consumer's entries are never taken");
    cleanup(&prefix).await;
}
