//! The journal on Redis Streams: XADD to publish, a consumer group to share
//! entries between instances, XACK after commit, claims for dead consumers.
//! Beside the stream a hash holds each open event's one live entry (written
//! with the XADD and removed with the XACK, atomically, in Lua), so recovery
//! can tell an event that is still queued from one whose entry was lost.
use super::keys::Keys;
use super::{Delivery, Journal, JournalError};
use crate::domain::event::{EventId, EventRef, PartitionKey};
use crate::domain::ids::OrderId;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamClaimReply, StreamId, StreamInfoConsumersReply, StreamReadReply};
use redis::Script;
use std::time::Duration;

/// Entries kept in the stream, roughly: acknowledged ones are trimmed away,
/// and an unread entry trimmed by a huge backlog is journaled again from MySQL.
const STREAM_MAX_LEN: usize = 200_000;

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

pub struct RedisJournal {
    keys: Keys,
    consumer: String,
    /// Commands that answer at once.
    conn: ConnectionManager,
    /// Blocking reads get their own connection: a blocked XREADGROUP would
    /// otherwise hold up every command pipelined behind it.
    reader: ConnectionManager,
    publish: Script,
    ack: Script,
}

fn err(e: redis::RedisError) -> JournalError {
    JournalError(e.to_string())
}

impl RedisJournal {
    /// Connects lazily: komisi starts, and takes orders, while Redis is down.
    pub fn new(url: &str, prefix: &str, consumer: String) -> Result<Self, JournalError> {
        let client = redis::Client::open(url).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(err)?;
        let reader =
            ConnectionManager::new_lazy_with_config(client, config.set_response_timeout(Some(Duration::from_secs(10))))
                .map_err(err)?;
        Ok(Self {
            keys: Keys::new(prefix),
            consumer,
            conn,
            reader,
            publish: Script::new(PUBLISH),
            ack: Script::new(ACK),
        })
    }

    async fn create_group(&self) -> Result<(), JournalError> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.stream())
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

    fn delivery(&self, entry: &StreamId) -> Option<Delivery> {
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

    /// Claims the given entries for this consumer (whatever their idle time).
    async fn claim(&self, ids: &[String]) -> Result<Vec<Delivery>, JournalError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let reply: StreamClaimReply = redis::cmd("XCLAIM")
            .arg(self.keys.stream())
            .arg(self.keys.group())
            .arg(&self.consumer)
            .arg(0)
            .arg(ids)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(reply.ids.iter().filter_map(|e| self.delivery(e)).collect())
    }
}

#[async_trait::async_trait]
impl Journal for RedisJournal {
    async fn ensure(&self) -> Result<bool, JournalError> {
        let mut conn = self.conn.clone();
        let fresh: Option<String> = redis::cmd("SET")
            .arg(self.keys.epoch())
            .arg(uuid::Uuid::now_v7().to_string())
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        // Markers left by a half-deleted journal need no cleaning: `live`
        // checks each marker's entry, and one that is gone counts as lost.
        self.create_group().await?;
        Ok(fresh.is_some())
    }

    async fn publish(&self, events: &[EventRef]) -> Result<usize, JournalError> {
        let mut added = 0;
        let mut conn = self.conn.clone();
        for chunk in events.chunks(500) {
            let mut call = self.publish.key(self.keys.stream());
            call.key(self.keys.live()).arg(STREAM_MAX_LEN);
            for e in chunk {
                call.arg(e.id.to_string()).arg(e.partition.as_str()).arg(e.order_id.as_str());
            }
            added += call.invoke_async::<usize>(&mut conn).await.map_err(err)?;
        }
        Ok(added)
    }

    async fn read(&self, max: usize, block: Duration) -> Result<Vec<Delivery>, JournalError> {
        let mut conn = self.reader.clone();
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(self.keys.group())
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys.stream())
            .arg(">")
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or group vanished (deleted keys, flushed Redis):
                // recreate it; recovery journals the lost events again.
                self.create_group().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(err(e)),
        };
        Ok(reply
            .map(|r| r.keys.iter().flat_map(|k| k.ids.iter()).filter_map(|e| self.delivery(e)).collect())
            .unwrap_or_default())
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), JournalError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        for chunk in deliveries.chunks(500) {
            let mut call = self.ack.key(self.keys.stream());
            call.key(self.keys.live()).arg(self.keys.group());
            for d in chunk {
                call.arg(&d.entry_id).arg(d.event.id.to_string());
            }
            call.invoke_async::<()>(&mut conn).await.map_err(err)?;
        }
        Ok(())
    }

    async fn claim_idle(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let mut conn = self.conn.clone();
        let mut start = "0-0".to_owned();
        let mut out = Vec::new();
        loop {
            let reply: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.stream())
                .arg(self.keys.group())
                .arg(&self.consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(max.saturating_sub(out.len()).max(1))
                .query_async(&mut conn)
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) if e.code() == Some("NOGROUP") => return Ok(out),
                Err(e) => return Err(err(e)),
            };
            out.extend(reply.claimed.iter().filter_map(|e| self.delivery(e)));
            if reply.next_stream_id == "0-0" || out.len() >= max {
                return Ok(out);
            }
            start = reply.next_stream_id;
        }
    }

    async fn claim_dead(&self, max: usize) -> Result<Vec<Delivery>, JournalError> {
        let mut conn = self.conn.clone();
        let consumers: redis::RedisResult<StreamInfoConsumersReply> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(self.keys.stream())
            .arg(self.keys.group())
            .query_async(&mut conn)
            .await;
        let consumers = match consumers {
            Ok(c) => c.consumers,
            Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut out = Vec::new();
        for c in consumers.into_iter().filter(|c| c.name != self.consumer) {
            let alive: bool =
                redis::cmd("EXISTS").arg(self.keys.heartbeat(&c.name)).query_async(&mut conn).await.map_err(err)?;
            if alive {
                continue;
            }
            if c.pending == 0 {
                // Forget a dead consumer that holds nothing.
                let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(self.keys.stream())
                    .arg(self.keys.group())
                    .arg(&c.name)
                    .query_async(&mut conn)
                    .await;
                continue;
            }
            let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
                .arg(self.keys.stream())
                .arg(self.keys.group())
                .arg("-")
                .arg("+")
                .arg(max.saturating_sub(out.len()).max(1))
                .arg(&c.name)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let ids: Vec<String> = pending.into_iter().map(|(id, ..)| id).collect();
            out.extend(self.claim(&ids).await?);
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    async fn heartbeat(&self, ttl: Duration) -> Result<(), JournalError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.keys.heartbeat(&self.consumer))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }

    async fn live(&self, events: &[EventId]) -> Result<Vec<bool>, JournalError> {
        let mut out = Vec::with_capacity(events.len());
        let mut conn = self.conn.clone();
        for chunk in events.chunks(500) {
            let entries: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.keys.live())
                .arg(chunk.iter().map(|e| e.to_string()).collect::<Vec<_>>())
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
                pipe.cmd("XRANGE").arg(self.keys.stream()).arg(entry).arg(entry).arg("COUNT").arg(1);
            }
            let found: Vec<Vec<redis::Value>> = pipe.query_async(&mut conn).await.map_err(err)?;
            let mut found = found.into_iter();
            for entry in &entries {
                out.push(entry.is_some() && found.next().is_some_and(|r| !r.is_empty()));
            }
        }
        Ok(out)
    }

    async fn live_count(&self) -> Result<u64, JournalError> {
        let mut conn = self.conn.clone();
        redis::cmd("HLEN").arg(self.keys.live()).query_async(&mut conn).await.map_err(err)
    }

    async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }
}
