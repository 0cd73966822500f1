//! Webhook endpoints, the outbox rows every money-moving transaction writes,
//! and the delivery worker's claims and attempts.
use super::rows;
use super::{Arg, Cols, Conn, Lane, Sql, SqlStore};
use crate::domain::audit::AuditEntry;
use crate::domain::webhook::{
    AfterAttempt, Attempt, Endpoint, Health, Message, MessageFilter, MessageStatus, OutboxRow, Subscriber,
};
use crate::store::{corrupt, Result, Webhooks};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

const ENDPOINT_COLUMNS: &str = "id, url, event_types, description, secret, previous_secret, \
     previous_secret_expires_at, disabled, disabled_reason, failing_since, created_at, updated_at";

const MESSAGE_COLUMNS: &str = "id, message_id, endpoint_id, type, subject_kind, subject_id, data, created_at, \
     status, tries, attempts, next_attempt_at, delivered_at";

fn patterns(json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("webhook event_types: {e}")))
}

fn endpoint(r: &dyn Cols) -> Result<Endpoint> {
    Ok(Endpoint {
        id: r.text("id")?,
        url: r.text("url")?,
        event_types: patterns(&r.text("event_types")?)?,
        description: r.opt_text("description")?,
        secret: r.text("secret")?,
        previous_secret: r.opt_text("previous_secret")?,
        previous_secret_expires_at: r.opt_time("previous_secret_expires_at")?,
        disabled: r.flag("disabled")?,
        disabled_reason: r.opt_text("disabled_reason")?,
        failing_since: r.opt_time("failing_since")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn message(r: &dyn Cols) -> Result<Message> {
    let data = match serde_json::from_str(&r.text("data")?) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(corrupt("a webhook message's data is not a JSON object")),
    };
    Ok(Message {
        row: r.uint("id")?,
        id: r.text("message_id")?,
        endpoint_id: r.text("endpoint_id")?,
        kind: r.text("type")?,
        subject_kind: r.text("subject_kind")?,
        subject_id: r.text("subject_id")?,
        data,
        created_at: r.time("created_at")?,
        status: MessageStatus::parse(&r.text("status")?).ok_or_else(|| corrupt("webhook message status"))?,
        tries: super::small(r, "tries")?,
        attempts: super::small(r, "attempts")?,
        next_attempt_at: r.opt_time("next_attempt_at")?,
        delivered_at: r.opt_time("delivered_at")?,
        log: Vec::new(),
    })
}

/// The messages of these rows, each with its attempts in order.
async fn with_attempts(conn: &mut dyn Conn, rows: &[super::Row]) -> Result<Vec<Message>> {
    let mut messages = rows::all(rows, message)?;
    if messages.is_empty() {
        return Ok(messages);
    }
    let ids: Vec<Arg> = messages.iter().map(|m| super::uint(m.row)).collect::<Result<_>>()?;
    let attempts = conn
        .fetch_chunked(&ids, 1, |chunk| {
            let mut q = Sql::new(
                "SELECT message_row, at, status_code, duration_ms, response, error FROM webhook_attempts \
                 WHERE message_row IN (",
            );
            q.list(chunk.iter().cloned()).push(") ORDER BY id");
            q
        })
        .await?;
    let mut by_row: HashMap<u64, Vec<Attempt>> = HashMap::new();
    for a in &attempts {
        by_row.entry(a.uint("message_row")?).or_default().push(Attempt {
            at: a.time("at")?,
            status_code: a.opt_int("status_code")?.and_then(|c| u16::try_from(c).ok()),
            duration_ms: a.uint("duration_ms")?,
            response: a.opt_text("response")?,
            error: a.opt_text("error")?,
        });
    }
    for m in &mut messages {
        m.log = by_row.remove(&m.row).unwrap_or_default();
    }
    Ok(messages)
}

fn endpoint_args(e: &Endpoint) -> Result<Vec<Arg>> {
    Ok(vec![
        e.url.as_str().into(),
        serde_json::to_string(&e.event_types).map_err(corrupt)?.into(),
        e.description.clone().into(),
        e.secret.as_str().into(),
        e.previous_secret.clone().into(),
        e.previous_secret_expires_at.into(),
        i64::from(e.disabled).into(),
        e.disabled_reason.clone().into(),
        e.failing_since.into(),
        e.updated_at.into(),
    ])
}

#[async_trait::async_trait]
impl Webhooks for SqlStore {
    async fn insert_endpoint(&self, e: &Endpoint, audit: &AuditEntry) -> Result<()> {
        let mut conn = self.write(Lane::Request).await?;
        let mut q = Sql::new(
            "INSERT INTO webhook_endpoints (url, event_types, description, secret, previous_secret, \
             previous_secret_expires_at, disabled, disabled_reason, failing_since, updated_at, id, created_at)",
        );
        let mut args = endpoint_args(e)?;
        args.push(e.id.as_str().into());
        args.push(e.created_at.into());
        q.values(&[args], Clone::clone);
        conn.execute(&q).await?;
        super::audit::insert(conn.as_mut(), audit, e.created_at).await?;
        conn.commit().await
    }

    async fn webhook_endpoints(&self) -> Result<Vec<Endpoint>> {
        let q = Sql::new(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"));
        rows::all(&self.read().await?.fetch(&q).await?, endpoint)
    }

    async fn webhook_endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        let q = Sql::new(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?")).arg(id);
        self.read().await?.optional(&q).await?.map(|r| endpoint(r.as_ref())).transpose()
    }

    async fn update_endpoint(&self, e: &Endpoint, audit: &AuditEntry) -> Result<bool> {
        let mut conn = self.write(Lane::Request).await?;
        let mut q = Sql::new("UPDATE webhook_endpoints SET ");
        let columns = [
            "url",
            "event_types",
            "description",
            "secret",
            "previous_secret",
            "previous_secret_expires_at",
            "disabled",
            "disabled_reason",
            "failing_since",
            "updated_at",
        ];
        for (i, (column, arg)) in columns.iter().zip(endpoint_args(e)?).enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push(column).push(" = ").bind(arg);
        }
        q.push(" WHERE id = ").bind(e.id.as_str());
        let done = conn.execute(&q).await?;
        if done.rows > 0 {
            super::audit::insert(conn.as_mut(), audit, e.updated_at).await?;
        }
        conn.commit().await?;
        Ok(done.rows > 0)
    }

    async fn delete_endpoint(&self, id: &str, audit: &AuditEntry) -> Result<bool> {
        let mut conn = self.write(Lane::Request).await?;
        conn.execute(&Sql::new(
            "DELETE FROM webhook_attempts WHERE message_row IN (SELECT id FROM webhook_messages WHERE endpoint_id = ?)",
        )
        .arg(id))
        .await?;
        conn.execute(&Sql::new("DELETE FROM webhook_messages WHERE endpoint_id = ?").arg(id)).await?;
        let done = conn.execute(&Sql::new("DELETE FROM webhook_endpoints WHERE id = ?").arg(id)).await?;
        if done.rows > 0 {
            super::audit::insert(conn.as_mut(), audit, Utc::now()).await?;
        }
        conn.commit().await?;
        Ok(done.rows > 0)
    }

    async fn webhook_messages(&self, f: &MessageFilter, before: Option<u64>, limit: u32) -> Result<Vec<Message>> {
        let mut q = Sql::new(format!("SELECT {MESSAGE_COLUMNS} FROM webhook_messages WHERE id < "));
        q.bind(before.map_or(Ok(Arg::Int(i64::MAX)), super::uint)?);
        if let Some(endpoint) = &f.endpoint {
            q.push(" AND endpoint_id = ").bind(endpoint.as_str());
        }
        if let Some(status) = f.status {
            q.push(" AND status = ").bind(status.as_str());
        }
        if let Some(kind) = &f.kind {
            q.push(" AND type = ").bind(kind.as_str());
        }
        if let Some(since) = f.since {
            q.push(" AND created_at >= ").bind(Arg::Bound(since));
        }
        if let Some(until) = f.until {
            q.push(" AND created_at < ").bind(Arg::Bound(until));
        }
        q.push(" ORDER BY id DESC LIMIT ").bind(limit);
        let mut conn = self.snapshot().await?;
        let rows = conn.fetch(&q).await?;
        let messages = with_attempts(conn.as_mut(), &rows).await?;
        conn.commit().await?;
        Ok(messages)
    }

    async fn webhook_message(&self, id: &str) -> Result<Option<Message>> {
        let mut conn = self.snapshot().await?;
        let q = Sql::new(format!("SELECT {MESSAGE_COLUMNS} FROM webhook_messages WHERE message_id = ?")).arg(id);
        let rows = conn.fetch(&q).await?;
        let message = with_attempts(conn.as_mut(), &rows).await?.pop();
        conn.commit().await?;
        Ok(message)
    }

    async fn requeue_message(&self, id: &str, now: DateTime<Utc>, audit: &AuditEntry) -> Result<bool> {
        let mut conn = self.write(Lane::Request).await?;
        let q = Sql::new(
            "UPDATE webhook_messages SET status = 'pending', tries = 0, next_attempt_at = ?, updated_at = ? \
             WHERE message_id = ?",
        )
        .arg(now)
        .arg(now)
        .arg(id);
        let done = conn.execute(&q).await?;
        if done.rows > 0 {
            super::audit::insert(conn.as_mut(), audit, now).await?;
        }
        conn.commit().await?;
        Ok(done.rows > 0)
    }

    async fn requeue_failed(
        &self,
        endpoint: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<u64> {
        let mut conn = self.write(Lane::Request).await?;
        let q = Sql::new(
            "UPDATE webhook_messages SET status = 'pending', tries = 0, next_attempt_at = ?, updated_at = ? \
             WHERE endpoint_id = ? AND status = 'failed' AND created_at >= ? AND created_at < ?",
        )
        .arg(now)
        .arg(now)
        .arg(endpoint)
        .arg(Arg::Bound(since))
        .arg(Arg::Bound(until));
        let done = conn.execute(&q).await?;
        if done.rows > 0 {
            super::audit::insert(conn.as_mut(), &audit.with("requeued", done.rows), now).await?;
        }
        conn.commit().await?;
        Ok(done.rows)
    }

    async fn claim_messages(
        &self,
        endpoint: &str,
        limit: u32,
        claim: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Message>> {
        let mut conn = self.write(Lane::Work).await?;
        let free = " AND status = 'pending' AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until < ?)";
        let q = Sql::new(format!(
            "SELECT id FROM webhook_messages WHERE endpoint_id = ?{free} ORDER BY next_attempt_at, id LIMIT ?"
        ))
        .arg(endpoint)
        .arg(now)
        .arg(now)
        .arg(limit);
        let ids: Vec<Arg> = conn.fetch(&q).await?.iter().map(|r| r.int("id").map(Arg::Int)).collect::<Result<_>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Taken only if still free: another instance's claim of the same
        // rows waits for this one's row locks and then finds them leased.
        let mut q = Sql::new("UPDATE webhook_messages SET leased_by = ");
        q.bind(claim).push(", leased_until = ").bind(until).push(" WHERE id IN (").list(ids.iter().cloned());
        q.push(") AND status = 'pending' AND next_attempt_at <= ").bind(now);
        q.push(" AND (leased_until IS NULL OR leased_until < ").bind(now).push(")");
        conn.execute(&q).await?;
        let mut q = Sql::new(format!("SELECT {MESSAGE_COLUMNS} FROM webhook_messages WHERE id IN ("));
        q.list(ids).push(") AND leased_by = ").bind(claim).push(" ORDER BY id");
        let rows = conn.fetch(&q).await?;
        conn.commit().await?;
        rows::all(&rows, message)
    }

    async fn record_attempts(
        &self,
        endpoint: &str,
        claim: &str,
        attempts: &[(u64, &Attempt, AfterAttempt)],
        health: &Health,
    ) -> Result<bool> {
        let mut conn = self.write(Lane::Work).await?;
        let rows: Vec<Vec<Arg>> = attempts
            .iter()
            .map(|(row, a, _)| {
                Ok(vec![
                    super::uint(*row)?,
                    a.at.into(),
                    a.status_code.map(i64::from).into(),
                    super::uint(a.duration_ms.min(u64::from(u32::MAX)))?,
                    a.response.as_deref().map(|r| truncate(r, 1024)).into(),
                    a.error.as_deref().map(|e| truncate(e, 500)).into(),
                ])
            })
            .collect::<Result<_>>()?;
        conn.execute_chunked(&rows, 6, |chunk| {
            let mut q =
                Sql::new("INSERT INTO webhook_attempts (message_row, at, status_code, duration_ms, response, error)");
            q.values(chunk, Clone::clone);
            q
        })
        .await?;
        // Each message's status, next attempt and delivery time: one statement a chunk.
        conn.execute_chunked(attempts, 8, |chunk| {
            let id = |q: &mut Sql, row: u64| {
                q.bind(i64::try_from(row).unwrap_or(i64::MAX));
            };
            let mut q = Sql::new("UPDATE webhook_messages SET status = CASE id");
            for (row, _, after) in chunk {
                q.push(" WHEN ");
                id(&mut q, *row);
                q.push(" THEN ").bind(match after {
                    AfterAttempt::Delivered => "delivered",
                    AfterAttempt::Retry(_) => "pending",
                    AfterAttempt::Failed => "failed",
                });
            }
            q.push(" END, next_attempt_at = CASE id");
            for (row, _, after) in chunk {
                q.push(" WHEN ");
                id(&mut q, *row);
                q.push(" THEN ").bind(match after {
                    AfterAttempt::Retry(at) => Arg::Time(*at),
                    _ => Arg::Null,
                });
            }
            q.push(" END, delivered_at = COALESCE(CASE id");
            for (row, a, after) in chunk {
                q.push(" WHEN ");
                id(&mut q, *row);
                q.push(" THEN ").bind(match after {
                    AfterAttempt::Delivered => Arg::Time(a.at),
                    _ => Arg::Null,
                });
            }
            q.push(" END, delivered_at), tries = tries + 1, attempts = attempts + 1, leased_by = NULL, ");
            q.push("leased_until = NULL, updated_at = ").bind(health.now).push(" WHERE id IN (");
            q.list(chunk.iter().map(|(row, _, _)| i64::try_from(*row).unwrap_or(i64::MAX)));
            q.push(") AND leased_by = ").bind(claim);
            q
        })
        .await?;
        let mut disabled = 0;
        if health.delivered {
            if health.was_failing {
                let q = Sql::new("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?").arg(endpoint);
                conn.execute(&q).await?;
            }
        } else {
            let q = Sql::new("UPDATE webhook_endpoints SET failing_since = ? WHERE id = ? AND failing_since IS NULL")
                .arg(health.now)
                .arg(endpoint);
            conn.execute(&q).await?;
            let q = if health.gone {
                Sql::new(
                    "UPDATE webhook_endpoints SET disabled = 1, disabled_reason = ?, updated_at = ? \
                     WHERE id = ? AND disabled = 0",
                )
                .arg("the endpoint answered 410 Gone")
                .arg(health.now)
                .arg(endpoint)
            } else {
                Sql::new(
                    "UPDATE webhook_endpoints SET disabled = 1, disabled_reason = ?, updated_at = ? \
                     WHERE id = ? AND disabled = 0 AND failing_since <= ?",
                )
                .arg("every attempt failed for too long (KOMISI_WEBHOOK_DISABLE_AFTER)")
                .arg(health.now)
                .arg(endpoint)
                .arg(health.disable_before)
            };
            disabled = conn.execute(&q).await?.rows;
        }
        conn.commit().await?;
        Ok(disabled > 0)
    }

    async fn prune_messages(
        &self,
        status: MessageStatus,
        before: DateTime<Utc>,
        endpoint: Option<&str>,
        limit: u32,
        audit: Option<&AuditEntry>,
    ) -> Result<u64> {
        let mut conn = self.write(Lane::Work).await?;
        let mut q = Sql::new("SELECT id FROM webhook_messages WHERE status = ");
        q.bind(status.as_str()).push(" AND created_at < ").bind(Arg::Bound(before));
        if let Some(endpoint) = endpoint {
            q.push(" AND endpoint_id = ").bind(endpoint);
        }
        q.push(" ORDER BY created_at LIMIT ").bind(limit);
        let ids: Vec<Arg> = conn.fetch(&q).await?.iter().map(|r| r.int("id").map(Arg::Int)).collect::<Result<_>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut q = Sql::new("DELETE FROM webhook_attempts WHERE message_row IN (");
        q.list(ids.iter().cloned()).push(")");
        conn.execute(&q).await?;
        let mut q = Sql::new("DELETE FROM webhook_messages WHERE id IN (");
        q.list(ids).push(")");
        let done = conn.execute(&q).await?;
        if let Some(audit) = audit {
            super::audit::insert(conn.as_mut(), &audit.with("deleted", done.rows), Utc::now()).await?;
        }
        conn.commit().await?;
        Ok(done.rows)
    }

    async fn pending_messages(&self) -> Result<u64> {
        let q = Sql::new("SELECT COUNT(*) AS n FROM webhook_messages WHERE status = 'pending'");
        self.read().await?.one(&q).await?.uint("n")
    }
}

fn truncate(s: &str, bytes: usize) -> String {
    if s.len() <= bytes {
        return s.to_owned();
    }
    let mut end = bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The enabled endpoints' subscriptions.
pub async fn subscribers(conn: &mut dyn Conn) -> Result<Vec<Subscriber>> {
    let q = Sql::new("SELECT id, event_types FROM webhook_endpoints WHERE disabled = 0");
    rows::all(&conn.fetch(&q).await?, |r| {
        Ok(Subscriber { id: r.text("id")?, patterns: patterns(&r.text("event_types")?)? })
    })
}

/// Writes the outbox rows, pending and due at once.
pub async fn enqueue(conn: &mut dyn Conn, rows: &[OutboxRow], now: DateTime<Utc>) -> Result<()> {
    let values: Vec<Vec<Arg>> = rows
        .iter()
        .map(|r| {
            vec![
                r.message_id.as_str().into(),
                r.endpoint_id.as_str().into(),
                r.kind.as_str().into(),
                r.subject_kind.as_str().into(),
                r.subject_id.as_str().into(),
                r.data.as_str().into(),
                now.into(),
                "pending".into(),
                now.into(),
                now.into(),
            ]
        })
        .collect();
    conn.execute_chunked(&values, 10, |chunk| {
        let mut q = Sql::new(
            "INSERT INTO webhook_messages (message_id, endpoint_id, type, subject_kind, subject_id, data, created_at, \
             status, next_attempt_at, updated_at)",
        );
        q.values(chunk, Clone::clone);
        q
    })
    .await?;
    Ok(())
}

/// [`NotifyTx`] for a transaction type holding its connection in `conn`.
macro_rules! notify_tx {
    ($($t:ty),*) => {$(
        #[async_trait::async_trait]
        impl crate::store::NotifyTx for $t {
            async fn subscribers(&mut self) -> crate::store::Result<Vec<crate::domain::webhook::Subscriber>> {
                crate::store::sql::webhooks::subscribers(self.conn.as_mut()).await
            }
            async fn enqueue(
                &mut self,
                rows: &[crate::domain::webhook::OutboxRow],
                now: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<()> {
                crate::store::sql::webhooks::enqueue(self.conn.as_mut(), rows, now).await
            }
        }
    )*};
}
pub(crate) use notify_tx;
