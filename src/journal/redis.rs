//! The journal on Redis Streams: one stream per partition, XADD to publish, a
//! consumer group per stream, XACK after commit, XAUTOCLAIM when a partition
//! changes hands. Beside each stream a hash holds each open event's one live
//! entry (written with the XADD and removed with the XACK, atomically, in
//! Lua), so recovery can tell an event that is still queued from one whose
//! entry was lost. Every key of one partition shares one hash tag, so all of
//! this works unchanged on a Redis Cluster (`REDIS_URL` listing several
//! nodes, comma-separated).
//!
//! Leases: `{prefix:pNN}:lease` holds the id of the instance that reads the
//! partition, with a TTL (SET NX PX, renewed by a script that checks the
//! value). The lease only decides who reads; who may commit is decided by the
//! fencing token in the database (see `actors::leases`).
use super::keys::Keys;
use super::{Delivery, Journal, JournalError};
use crate::domain::event::{EventId, EventRef, PartitionKey};
use crate::domain::ids::OrderId;
use futures::future::{join_all, try_join_all};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamReadReply};
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Entries kept in each stream, roughly: acknowledged ones are trimmed away,
/// and an unread entry trimmed by a huge backlog is journaled again from MySQL.
const STREAM_MAX_LEN: usize = 200_000;

/// How long a cluster read waits when every owned stream was empty (a
/// cluster connection is shared, so reads there do not block on the server).
const CLUSTER_IDLE_POLL: Duration = Duration::from_millis(20);

/// XADD each event that has no live entry (its marker names an entry still in
/// the stream), and record the new entry as its live one. Returns how many
/// were added. Atomic, so intake's dispatcher and recovery can never both
/// journal one event.
/// KEYS: stream, live hash. ARGV: max length, then (event, partition, order) triples.
const PUBLISH: &str = r"
local added = 0
for i = 2, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[2], ARGV[i])
  if not (cur and #redis.call('XRANGE', KEYS[1], cur, cur) > 0) then
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i], 'p', ARGV[i+1], 'o', ARGV[i+2])
    redis.call('HSET', KEYS[2], ARGV[i], id)
    added = added + 1
  end
end
return added";

/// XACK each entry, and forget it as its event's live entry (only if it still
/// is: a newer entry of the event stays live).
/// KEYS: stream, live hash. ARGV: group, then (entry, event) pairs.
const ACK: &str = r"
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('HGET', KEYS[2], ARGV[i+1]) == ARGV[i] then
    redis.call('HDEL', KEYS[2], ARGV[i+1])
  end
end
return 0";

/// Takes a free lease (or extends one already ours). KEYS: lease. ARGV: instance, ttl ms.
const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// Extends a lease that is still ours. KEYS: lease. ARGV: instance, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// Deletes a lease that is still ours. KEYS: lease. ARGV: instance.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0";

/// Records this instance as alive until now + ttl (the server's clock, so
/// instances' clocks need not agree), forgets expired ones, counts the rest.
/// KEYS: members. ARGV: instance, ttl ms.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])";

/// Records the partition count when none is, or when no other instance is
/// alive; answers the count in force. KEYS: partitions, members. ARGV: count, instance.
const AGREE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return cur end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local others = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do
  if m ~= ARGV[2] then others = others + 1 end
end
if (not cur) or others == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return cur";

/// A connection to one Redis or to a Redis Cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisJournal {
    keys: Keys,
    consumer: String,
    partitions: u16,
    /// Commands that answer at once.
    conn: Conn,
    /// Reads get their own connection: a blocked XREADGROUP would otherwise
    /// hold up every command pipelined behind it.
    reader: Conn,
    cluster: bool,
    publish: Script,
    ack: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    heartbeat: Script,
    agree: Script,
}

fn err(e: redis::RedisError) -> JournalError {
    JournalError(e.to_string())
}

/// The node URLs of a cluster `REDIS_URL` (several, comma-separated), or None for one Redis.
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let nodes: Vec<String> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    (nodes.len() > 1).then_some(nodes)
}

impl RedisJournal {
    /// Connects lazily: komisi starts, and takes orders, while Redis is down.
    /// `url` is one Redis URL, or several comma-separated: a Redis Cluster.
    pub fn new(url: &str, prefix: &str, consumer: String, partitions: u16) -> Result<Self, JournalError> {
        let (conn, reader, cluster) = match cluster_nodes(url) {
            Some(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes).retries(3).build().map_err(err)?;
                let config = |response: Duration| {
                    redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(Duration::from_secs(2))
                        .set_response_timeout(response)
                };
                let conn = client.get_pending_async_connection_with_config(config(Duration::from_secs(2)));
                let reader = client.get_pending_async_connection_with_config(config(Duration::from_secs(10)));
                (Conn::Cluster(conn), Conn::Cluster(reader), true)
            }
            None => {
                let client = redis::Client::open(url).map_err(err)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2);
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(err)?;
                let reader = ConnectionManager::new_lazy_with_config(
                    client,
                    config.set_response_timeout(Some(Duration::from_secs(10))),
                )
                .map_err(err)?;
                (Conn::Single(conn), Conn::Single(reader), false)
            }
        };
        Ok(Self {
            keys: Keys::new(prefix),
            consumer,
            partitions: partitions.max(1),
            conn,
            reader,
            cluster,
            publish: Script::new(PUBLISH),
            ack: Script::new(ACK),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            heartbeat: Script::new(HEARTBEAT),
            agree: Script::new(AGREE),
        })
    }

    /// Whether `REDIS_URL` named a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    async fn create_group(&self, part: u16) -> Result<(), JournalError> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.stream(part))
            .arg(self.keys.group())
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    fn delivery(entry: &StreamId) -> Option<Delivery> {
        let id: String = entry.get("e")?;
        let partition: String = entry.get("p")?;
        // Entries journaled before the order id was carried: the event id
        // stands in, so such an event is only kept apart from itself.
        let order: String = entry.get("o").unwrap_or_else(|| id.clone());
        Some(Delivery {
            event: EventRef {
                id: EventId::parse(&id)?,
                partition: PartitionKey::from_stored(partition),
                order_id: OrderId::from_trusted(order),
            },
            entry_id: entry.id.clone(),
        })
    }

    /// Items grouped by partition (each group keeps the items' order).
    fn by_part<'a, T>(&self, items: &'a [T], key: impl Fn(&T) -> &PartitionKey) -> BTreeMap<u16, Vec<&'a T>> {
        let mut out: BTreeMap<u16, Vec<&T>> = BTreeMap::new();
        for item in items {
            out.entry(self.part_of(key(item))).or_default().push(item);
        }
        out
    }

    async fn read_one(&self, part: u16, max: usize, block: Option<Duration>) -> Result<Vec<Delivery>, JournalError> {
        self.read_streams(&[part], max, block).await
    }

    /// XREADGROUP over the streams of `parts` (one slot each: on a cluster,
    /// one partition per call).
    async fn read_streams(
        &self,
        parts: &[u16],
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>, JournalError> {
        let mut conn = self.reader.clone();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(self.keys.group()).arg(&self.consumer).arg("COUNT").arg(max.max(1));
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        for p in parts {
            cmd.arg(self.keys.stream(*p));
        }
        for _ in parts {
            cmd.arg(">");
        }
        let reply: redis::RedisResult<Option<StreamReadReply>> = cmd.query_async(&mut conn).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                // A stream or its group vanished (deleted keys, flushed Redis,
                // a lost cluster node): recreate them; recovery journals the
                // lost events again.
                for p in parts {
                    self.create_group(*p).await?;
                }
                return Ok(Vec::new());
            }
            Err(e) => return Err(err(e)),
        };
        Ok(reply
            .map(|r| r.keys.iter().flat_map(|k| k.ids.iter()).filter_map(Self::delivery).collect())
            .unwrap_or_default())
    }

    async fn claim_part(&self, part: u16, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let mut conn = self.conn.clone();
        let mut start = "0-0".to_owned();
        let mut out = Vec::new();
        loop {
            let reply: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.stream(part))
                .arg(self.keys.group())
                .arg(&self.consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(max.saturating_sub(out.len()).clamp(1, 1000))
                .query_async(&mut conn)
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) if e.code() == Some("NOGROUP") => return Ok(out),
                Err(e) => return Err(err(e)),
            };
            out.extend(reply.claimed.iter().filter_map(Self::delivery));
            if reply.next_stream_id == "0-0" || out.len() >= max {
                return Ok(out);
            }
            start = reply.next_stream_id;
        }
    }

    async fn live_part(&self, part: u16, events: &[&EventRef]) -> Result<Vec<bool>, JournalError> {
        let mut out = Vec::with_capacity(events.len());
        let mut conn = self.conn.clone();
        for chunk in events.chunks(500) {
            let entries: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.keys.live(part))
                .arg(chunk.iter().map(|e| e.id.to_string()).collect::<Vec<_>>())
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            // A marker is only as good as its entry: one trimmed away or lost
            // with the stream is no live entry.
            if entries.iter().all(Option::is_none) {
                out.extend(entries.iter().map(|_| false));
                continue;
            }
            let mut pipe = redis::pipe();
            for entry in entries.iter().flatten() {
                pipe.cmd("XRANGE").arg(self.keys.stream(part)).arg(entry).arg(entry).arg("COUNT").arg(1);
            }
            let found: Vec<Vec<redis::Value>> = pipe.query_async(&mut conn).await.map_err(err)?;
            let mut found = found.into_iter();
            for entry in &entries {
                out.push(entry.is_some() && found.next().is_some_and(|r| !r.is_empty()));
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Journal for RedisJournal {
    fn instance(&self) -> &str {
        &self.consumer
    }

    fn partitions(&self) -> u16 {
        self.partitions
    }

    async fn ensure(&self, parts: &[u16]) -> Result<Vec<u16>, JournalError> {
        let checks = parts.iter().map(|&p| async move {
            let mut conn = self.conn.clone();
            let fresh: Option<String> = redis::cmd("SET")
                .arg(self.keys.epoch(p))
                .arg(uuid::Uuid::now_v7().to_string())
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            // Markers left by a half-deleted journal need no cleaning: `live`
            // checks each marker's entry, and one that is gone counts as lost.
            self.create_group(p).await?;
            Ok::<_, JournalError>(fresh.map(|_| p))
        });
        Ok(try_join_all(checks).await?.into_iter().flatten().collect())
    }

    async fn publish(&self, events: &[EventRef]) -> Result<usize, JournalError> {
        let calls = self.by_part(events, |e| &e.partition).into_iter().map(|(part, events)| async move {
            let mut conn = self.conn.clone();
            let mut added = 0;
            for chunk in events.chunks(500) {
                let mut call = self.publish.key(self.keys.stream(part));
                call.key(self.keys.live(part)).arg(STREAM_MAX_LEN);
                for e in chunk {
                    call.arg(e.id.to_string()).arg(e.partition.as_str()).arg(e.order_id.as_str());
                }
                added += call.invoke_async::<usize>(&mut conn).await.map_err(err)?;
            }
            Ok::<_, JournalError>(added)
        });
        Ok(try_join_all(calls).await?.into_iter().sum())
    }

    async fn read(&self, parts: &[u16], max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError> {
        if parts.is_empty() {
            tokio::time::sleep(block.min(Duration::from_millis(200))).await;
            return Ok(Vec::new());
        }
        let per_stream = max.div_ceil(parts.len()).max(1);
        if !self.cluster {
            // One blocking read over every owned stream.
            return self.read_streams(parts, per_stream, Some(block)).await;
        }
        // On a cluster each partition is its own slot: one read each, all at once.
        let reads = join_all(parts.iter().map(|&p| self.read_one(p, per_stream, None))).await;
        let mut out = Vec::new();
        let mut failed = None;
        for r in reads {
            match r {
                Ok(d) => out.extend(d),
                Err(e) => failed = Some(e),
            }
        }
        if out.is_empty() {
            if let Some(e) = failed {
                return Err(e);
            }
            tokio::time::sleep(CLUSTER_IDLE_POLL.min(block)).await;
        }
        Ok(out)
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), JournalError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let calls = self.by_part(deliveries, |d| &d.event.partition).into_iter().map(|(part, ds)| async move {
            let mut conn = self.conn.clone();
            for chunk in ds.chunks(500) {
                let mut call = self.ack.key(self.keys.stream(part));
                call.key(self.keys.live(part)).arg(self.keys.group());
                for d in chunk {
                    call.arg(&d.entry_id).arg(d.event.id.to_string());
                }
                call.invoke_async::<()>(&mut conn).await.map_err(err)?;
            }
            Ok::<_, JournalError>(())
        });
        try_join_all(calls).await?;
        Ok(())
    }

    async fn claim_idle(&self, parts: &[u16], min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let mut out = Vec::new();
        for &p in parts {
            if out.len() >= max {
                break;
            }
            out.extend(self.claim_part(p, min_idle, max - out.len()).await?);
        }
        Ok(out)
    }

    async fn claim_dead(&self, _max: usize) -> Result<Vec<Delivery>, JournalError> {
        // A dead instance's entries are taken over with its partitions' leases.
        Ok(Vec::new())
    }

    async fn take_over(&self, part: u16, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let claimed = self.claim_part(part, Duration::ZERO, max).await?;
        let mut conn = self.conn.clone();
        let consumers: redis::RedisResult<StreamInfoConsumersReply> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(self.keys.stream(part))
            .arg(self.keys.group())
            .query_async(&mut conn)
            .await;
        if let Ok(c) = consumers {
            for c in c.consumers.into_iter().filter(|c| c.name != self.consumer && c.pending == 0) {
                let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(self.keys.stream(part))
                    .arg(self.keys.group())
                    .arg(&c.name)
                    .query_async(&mut conn)
                    .await;
            }
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, ttl: Duration) -> Result<usize, JournalError> {
        let mut conn = self.conn.clone();
        self.heartbeat
            .key(self.keys.members())
            .arg(&self.consumer)
            .arg(ttl.as_millis() as u64)
            .invoke_async::<usize>(&mut conn)
            .await
            .map_err(err)
    }

    async fn leave(&self) -> Result<(), JournalError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM").arg(self.keys.members()).arg(&self.consumer).query_async::<()>(&mut conn).await.map_err(err)
    }

    async fn agree_partitions(&self) -> Result<bool, JournalError> {
        let mut conn = self.conn.clone();
        let count: String = self
            .agree
            .key(self.keys.partitions())
            .key(self.keys.members())
            .arg(self.partitions)
            .arg(&self.consumer)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(count == self.partitions.to_string())
    }

    async fn acquire(&self, part: u16, ttl: Duration) -> Result<bool, JournalError> {
        let mut conn = self.conn.clone();
        let got: i64 = self
            .acquire
            .key(self.keys.lease(part))
            .arg(&self.consumer)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(got == 1)
    }

    async fn renew(&self, parts: &[u16], ttl: Duration) -> Result<Vec<bool>, JournalError> {
        let calls = parts.iter().map(|&p| async move {
            let mut conn = self.conn.clone();
            let kept: i64 = self
                .renew
                .key(self.keys.lease(p))
                .arg(&self.consumer)
                .arg(ttl.as_millis() as u64)
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            Ok::<_, JournalError>(kept == 1)
        });
        try_join_all(calls).await
    }

    async fn release(&self, parts: &[u16]) -> Result<(), JournalError> {
        let calls = parts.iter().map(|&p| async move {
            let mut conn = self.conn.clone();
            self.release.key(self.keys.lease(p)).arg(&self.consumer).invoke_async::<()>(&mut conn).await.map_err(err)
        });
        try_join_all(calls).await?;
        Ok(())
    }

    async fn live(&self, events: &[EventRef]) -> Result<Vec<bool>, JournalError> {
        let mut live = std::collections::HashMap::with_capacity(events.len());
        for (part, group) in self.by_part(events, |e| &e.partition) {
            let found = self.live_part(part, &group).await?;
            for (e, l) in group.iter().zip(found) {
                live.insert(e.id, l);
            }
        }
        Ok(events.iter().map(|e| live.get(&e.id).copied().unwrap_or(false)).collect())
    }

    async fn live_count(&self) -> Result<u64, JournalError> {
        let counts = (0..self.partitions).map(|p| async move {
            let mut conn = self.conn.clone();
            redis::cmd("HLEN").arg(self.keys.live(p)).query_async::<u64>(&mut conn).await.map_err(err)
        });
        Ok(try_join_all(counts).await?.into_iter().sum())
    }

    async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }
}
