//! The audit trail's rows (see `store::audit`).
use super::{rows, Arg, Conn, Sql, SqlStore};
use crate::domain::audit::{Action, Actor, AuditEntry, AuditFilter, AuditRecord};
use crate::store::{corrupt, Audits, Result};
use chrono::{DateTime, Utc};

fn json(v: Option<&serde_json::Value>) -> Result<Option<String>> {
    v.map(serde_json::to_string).transpose().map_err(corrupt)
}

fn parsed(s: Option<String>) -> Result<Option<serde_json::Value>> {
    s.map(|s| serde_json::from_str(&s)).transpose().map_err(corrupt)
}

/// Writes `entry` on `conn`, in the transaction the caller holds.
pub async fn insert(conn: &mut dyn Conn, entry: &AuditEntry, now: DateTime<Utc>) -> Result<()> {
    let q = Sql::new(
        "INSERT INTO audit_log (at, actor, request_id, action, subject, before_state, after_state) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .arg(now)
    .arg(entry.actor.key.as_str())
    .arg(entry.actor.request_id.as_deref())
    .arg(entry.action.as_str())
    .arg(entry.subject.as_str())
    .arg(json(entry.before.as_ref())?)
    .arg(json(entry.after.as_ref())?);
    conn.execute(&q).await?;
    Ok(())
}

#[async_trait::async_trait]
impl Audits for SqlStore {
    async fn audit_log(&self, f: &AuditFilter, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>> {
        let mut q = Sql::new(
            "SELECT id, at, actor, request_id, action, subject, before_state, after_state FROM audit_log WHERE id < ",
        );
        q.bind(before.map_or(Ok(Arg::Int(i64::MAX)), super::uint)?);
        if let Some(actor) = &f.actor {
            q.push(" AND actor = ").bind(actor.as_str());
        }
        if let Some(action) = f.action {
            q.push(" AND action = ").bind(action.as_str());
        }
        if let Some(since) = f.since {
            q.push(" AND at >= ").bind(Arg::Bound(since));
        }
        q.push(" ORDER BY id DESC LIMIT ").bind(limit);
        rows::all(&self.read().await?.fetch(&q).await?, |r| {
            let action = r.text("action")?;
            Ok(AuditRecord {
                id: r.uint("id")?,
                at: r.time("at")?,
                entry: AuditEntry {
                    actor: Actor { key: r.text("actor")?, request_id: r.opt_text("request_id")? },
                    action: Action::parse(&action).ok_or_else(|| corrupt(format!("unknown audit action {action}")))?,
                    subject: r.text("subject")?,
                    before: parsed(r.opt_text("before_state")?)?,
                    after: parsed(r.opt_text("after_state")?)?,
                },
            })
        })
    }
}

/// [`crate::store::AuditTx`] for a transaction type holding its connection in `conn`.
macro_rules! audit_tx {
    ($($t:ty),*) => {$(
        #[async_trait::async_trait]
        impl crate::store::AuditTx for $t {
            async fn audit(
                &mut self,
                entry: &crate::domain::audit::AuditEntry,
                now: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<()> {
                crate::store::sql::audit::insert(self.conn.as_mut(), entry, now).await
            }
        }
    )*};
}
pub(crate) use audit_tx;
