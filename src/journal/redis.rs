//! The journal on Redis Streams: XADD to publish, a consumer group to share
//! entries between instances, XACK after commit, XAUTOCLAIM for dead consumers.
use super::keys::Keys;
use super::{Delivery, Journal, JournalError};
use crate::domain::event::{EventId, EventRef, PartitionKey};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use std::time::Duration;

/// Entries kept in the stream, roughly: acknowledged ones are trimmed away,
/// and an unread entry trimmed by a huge backlog is journaled again from MySQL.
const STREAM_MAX_LEN: usize = 200_000;

pub struct RedisJournal {
    keys: Keys,
    consumer: String,
    /// Commands that answer at once.
    conn: ConnectionManager,
    /// Blocking reads get their own connection: a blocked XREADGROUP would
    /// otherwise hold up every command pipelined behind it.
    reader: ConnectionManager,
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
        Ok(Self { keys: Keys::new(prefix), consumer, conn, reader })
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
        Some(Delivery {
            event: EventRef { id: EventId::parse(&id)?, partition: PartitionKey::from_stored(partition) },
            entry_id: entry.id.clone(),
        })
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
        self.create_group().await?;
        Ok(fresh.is_some())
    }

    async fn publish(&self, events: &[EventRef]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for e in events {
            pipe.cmd("XADD")
                .arg(self.keys.stream())
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg("e")
                .arg(e.id.to_string())
                .arg("p")
                .arg(e.partition.as_str())
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
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

    async fn ack(&self, entry_ids: &[String]) -> Result<(), JournalError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        redis::cmd("XACK")
            .arg(self.keys.stream())
            .arg(self.keys.group())
            .arg(entry_ids)
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
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

    async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }
}
