//! The Redis journal on its own, on one Redis and on a real Redis Cluster
//! (`KOMISI_TEST_REDIS_CLUSTER_URL`, several comma-separated nodes; the
//! cluster variants skip without it unless `KOMISI_TEST_REQUIRE_CLUSTER=1`):
//! partitioned streams, consumer-group delivery, acks, the one live entry per
//! event, taking a partition over, leases, membership and the partition count.
use crate::helpers::cluster_url;
use komisi::domain::event::{EventId, EventRef, PartitionKey};
use komisi::domain::ids::{AffiliateId, BuyerId, OrderId};
use komisi::journal::keys::{partition_of, Keys};
use komisi::journal::redis::RedisJournal;
use komisi::journal::Journal;
use std::collections::BTreeSet;
use std::time::Duration;

const P: u16 = 4;

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

fn prefix() -> String {
    format!("komisi_t_j{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

fn all() -> Vec<u16> {
    (0..P).collect()
}

fn journal(url: &str, prefix: &str, consumer: &str) -> RedisJournal {
    RedisJournal::new(url, prefix, consumer.into(), P).unwrap()
}

/// Runs one command on whatever `url` names (one Redis or a cluster; a
/// cluster routes each single-key command to its slot's node).
async fn raw<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let nodes: Vec<&str> = url.split(',').collect();
    if nodes.len() > 1 {
        let client = redis::cluster::ClusterClient::new(nodes).unwrap();
        let mut conn = client.get_async_connection().await.unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    } else {
        let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }
}

/// Deletes every key of the prefix (key by key: keys of different
/// partitions live on different cluster nodes).
async fn cleanup(url: &str, prefix: &str) {
    let keys = Keys::new(prefix);
    let mut names = vec![keys.members(), keys.partitions()];
    for p in 0..P {
        names.extend([keys.stream(p), keys.live(p), keys.epoch(p), keys.lease(p)]);
    }
    for name in names {
        let _: i64 = raw(url, redis::cmd("DEL").arg(&name)).await;
    }
}

fn events_of(ds: &[komisi::journal::Delivery]) -> BTreeSet<EventId> {
    ds.iter().map(|d| d.event.id).collect()
}

fn ids(events: &[EventRef]) -> BTreeSet<EventId> {
    events.iter().map(|e| e.id).collect()
}

macro_rules! on_both {
    ($name:ident, $cluster:ident, $body:ident) => {
        #[tokio::test]
        async fn $name() {
            if crate::helpers::needs_redis(stringify!($name)) {
                $body(&redis_url()).await;
            }
        }
        #[tokio::test]
        async fn $cluster() {
            if !crate::helpers::needs_redis(stringify!($cluster)) {
                return;
            }
            if let Some(url) = cluster_url(stringify!($cluster)) {
                $body(&url).await;
            }
        }
    };
}

on_both!(events_go_to_their_partition_and_are_read_by_partition, cluster_events_by_partition, by_partition);
on_both!(unacked_entries_are_taken_over_with_the_partition, cluster_take_over, take_over);
on_both!(a_lost_partition_is_detected_and_recreated, cluster_lost_partition, lost_partition);
on_both!(each_event_has_one_live_entry_until_acked_or_lost, cluster_live_entries, live_entries);
on_both!(a_lease_has_one_holder_until_released_or_expired, cluster_leases, leases);
on_both!(members_and_the_partition_count_are_agreed, cluster_members, members);

async fn by_partition(url: &str) {
    let prefix = prefix();
    let j = journal(url, &prefix, "c");
    assert_eq!(j.ensure(&all()).await.unwrap(), all(), "new partitions report they were created");
    let events = refs(24);
    assert_eq!(j.publish(&events).await.unwrap(), 24);
    // Each partition's read returns exactly the events whose key hashes there.
    let mut seen = BTreeSet::new();
    for p in all() {
        let read = j.read(&[p], 100, Duration::from_millis(50)).await.unwrap();
        let want: BTreeSet<EventId> =
            events.iter().filter(|e| partition_of(e.partition.as_str(), P) == p).map(|e| e.id).collect();
        assert_eq!(events_of(&read), want, "partition {p}");
        seen.extend(events_of(&read));
    }
    assert_eq!(seen, ids(&events));
    assert!(seen.len() > 1 && (0..P).filter(|p| events.iter().any(|e| j.part_of(&e.partition) == *p)).count() > 1);
    // Reading several partitions at once takes from each.
    let more = refs(8);
    j.publish(&more).await.unwrap();
    let mut got = BTreeSet::new();
    for _ in 0..10 {
        got.extend(events_of(&j.read(&all(), 100, Duration::from_millis(50)).await.unwrap()));
        if got.len() == more.len() {
            break;
        }
    }
    assert_eq!(got, ids(&more));
    assert!(j.read(&[], 10, Duration::from_millis(10)).await.unwrap().is_empty(), "no partition, nothing read");
    cleanup(url, &prefix).await;
}

async fn take_over(url: &str) {
    let prefix = prefix();
    let dead = journal(url, &prefix, "dead");
    let alive = journal(url, &prefix, "alive");
    dead.ensure(&all()).await.unwrap();
    assert!(alive.ensure(&all()).await.unwrap().is_empty(), "existing partitions are not new");
    let events = refs(12);
    dead.publish(&events).await.unwrap();
    let mut taken = Vec::new();
    for _ in 0..10 {
        taken.extend(dead.read(&all(), 100, Duration::from_millis(50)).await.unwrap());
    }
    assert_eq!(events_of(&taken), ids(&events));
    // The consumer acks some and dies holding the rest.
    dead.ack(&taken[..4]).await.unwrap();
    assert!(
        alive.read(&all(), 10, Duration::from_millis(50)).await.unwrap().is_empty(),
        "delivered entries are not new"
    );
    assert!(alive.claim_idle(&all(), Duration::from_secs(60), 100).await.unwrap().is_empty(), "not idle long enough");
    // A new owner takes each partition's unacked entries at once, whatever their idle time.
    let mut claimed = Vec::new();
    for p in all() {
        claimed.extend(alive.take_over(p, 100).await.unwrap());
    }
    assert_eq!(events_of(&claimed), events_of(&taken[4..]));
    // Claimed, the entries are still each event's live one, now held by `alive`.
    let rest: Vec<EventRef> = taken[4..].iter().map(|d| d.event.clone()).collect();
    assert_eq!(alive.live(&rest).await.unwrap(), vec![true; rest.len()]);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let again = alive.claim_idle(&all(), Duration::from_millis(20), 100).await.unwrap();
    assert_eq!(events_of(&again), events_of(&claimed), "idle claims find what nobody acked");
    alive.ack(&again).await.unwrap();
    assert_eq!(alive.live_count().await.unwrap(), 0);
    cleanup(url, &prefix).await;
}

async fn lost_partition(url: &str) {
    let prefix = prefix();
    let j = journal(url, &prefix, "c");
    assert_eq!(j.ensure(&all()).await.unwrap(), all());
    assert!(j.ensure(&all()).await.unwrap().is_empty());
    // One partition's keys vanish (a lost cluster node, a flush): only it is new.
    let keys = Keys::new(&prefix);
    let lost = 2;
    for k in [keys.stream(lost), keys.live(lost), keys.epoch(lost)] {
        let _: i64 = raw(url, redis::cmd("DEL").arg(&k)).await;
    }
    // Reading a deleted stream recreates its group instead of failing.
    assert!(j.read(&[lost], 10, Duration::from_millis(50)).await.unwrap().is_empty());
    assert_eq!(j.ensure(&all()).await.unwrap(), vec![lost], "the missing epoch marks the partition as lost");
    let again: Vec<EventRef> = refs(40).into_iter().filter(|e| j.part_of(&e.partition) == lost).take(2).collect();
    assert!(!again.is_empty());
    j.publish(&again).await.unwrap();
    let read = j.read(&[lost], 10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(events_of(&read), ids(&again));
    cleanup(url, &prefix).await;
}

async fn live_entries(url: &str) {
    let prefix = prefix();
    let j = journal(url, &prefix, "c");
    j.ensure(&all()).await.unwrap();
    let events = refs(3);
    assert_eq!(j.live(&events).await.unwrap(), vec![false, false, false]);
    assert_eq!(j.publish(&events).await.unwrap(), 3);
    // Queued, not yet read: live, and journaling them again adds nothing.
    assert_eq!(j.publish(&events).await.unwrap(), 0);
    assert_eq!(j.live(&events).await.unwrap(), vec![true, true, true]);
    let mut taken = Vec::new();
    for _ in 0..10 {
        taken.extend(j.read(&all(), 10, Duration::from_millis(50)).await.unwrap());
    }
    let of = |e: &EventRef| taken.iter().find(|d| d.event.id == e.id).cloned().unwrap();
    let (t0, t1) = (of(&events[0]), of(&events[1]));
    // Delivered, not acked: still live; acked: not.
    j.ack(std::slice::from_ref(&t0)).await.unwrap();
    assert_eq!(j.live(&events).await.unwrap(), vec![false, true, true]);
    assert_eq!(j.live_count().await.unwrap(), 2);
    // Delivered and unacked is live too: no second copy. Once acked, the
    // event is journaled anew.
    assert_eq!(j.publish(&events[1..2]).await.unwrap(), 0);
    j.ack(std::slice::from_ref(&t1)).await.unwrap();
    assert_eq!(j.live(&events).await.unwrap(), vec![false, false, true]);
    assert_eq!(j.publish(&events[..2]).await.unwrap(), 2);
    assert_eq!(j.live(&events).await.unwrap(), vec![true, true, true]);
    // Acking a copy that is no longer the live one leaves the live one alone.
    j.ack(std::slice::from_ref(&t1)).await.unwrap();
    assert_eq!(j.live(&events).await.unwrap(), vec![true, true, true]);
    // Entries gone from the stream (trimmed, or a half-lost journal) are not live.
    let keys = Keys::new(&prefix);
    for p in all() {
        let _: i64 = raw(url, redis::cmd("DEL").arg(keys.stream(p))).await;
    }
    assert_eq!(j.live(&events).await.unwrap(), vec![false, false, false]);
    cleanup(url, &prefix).await;
}

async fn leases(url: &str) {
    let prefix = prefix();
    let a = journal(url, &prefix, "a");
    let b = journal(url, &prefix, "b");
    let ttl = Duration::from_millis(400);
    assert!(a.acquire(1, ttl).await.unwrap());
    assert!(a.acquire(1, ttl).await.unwrap(), "taking one's own lease again extends it");
    assert!(!b.acquire(1, ttl).await.unwrap(), "a held lease is not taken");
    assert!(b.acquire(2, ttl).await.unwrap());
    assert_eq!(a.renew(&[1, 2], ttl).await.unwrap(), vec![true, false], "only one's own leases renew");
    b.release(&[1]).await.unwrap();
    assert!(!b.acquire(1, ttl).await.unwrap(), "releasing another's lease does nothing");
    a.release(&[1]).await.unwrap();
    assert!(b.acquire(1, ttl).await.unwrap(), "a released lease is free at once");
    // An unrenewed lease expires after its TTL; renewed ones do not.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(b.renew(&[1], ttl).await.unwrap(), vec![true]);
    }
    assert!(!a.acquire(1, ttl).await.unwrap(), "b renewed 1");
    assert!(a.acquire(2, ttl).await.unwrap(), "b's unrenewed lease of 2 expired");
    assert_eq!(b.renew(&[1, 2], ttl).await.unwrap(), vec![true, false], "b lost 2");
    cleanup(url, &prefix).await;
}

async fn members(url: &str) {
    let prefix = prefix();
    let a = journal(url, &prefix, "a");
    let b = journal(url, &prefix, "b");
    let other = RedisJournal::new(url, &prefix, "c".into(), P * 2).unwrap();
    assert_eq!(a.heartbeat(Duration::from_secs(30)).await.unwrap(), 1);
    assert_eq!(b.heartbeat(Duration::from_millis(300)).await.unwrap(), 2);
    assert!(a.agree_partitions().await.unwrap());
    assert!(b.agree_partitions().await.unwrap());
    assert!(!other.agree_partitions().await.unwrap(), "live instances use another count");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.heartbeat(Duration::from_secs(30)).await.unwrap(), 1, "b's membership expired");
    a.leave().await.unwrap();
    // No other instance alive: a new count may be recorded.
    assert!(other.agree_partitions().await.unwrap());
    other.heartbeat(Duration::from_secs(30)).await.unwrap();
    assert!(!a.agree_partitions().await.unwrap(), "now the other count is in force among the live");
    cleanup(url, &prefix).await;
}
