//! Program versions: immutable once stored, so they are cached forever in memory.
use super::{Conn, Lane, Sql, SqlStore};
use crate::domain::program::{Program, ProgramDoc};
use crate::store::{corrupt, Programs, Result};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Clone, Default)]
pub struct ProgramCache(Arc<RwLock<HashMap<u64, Arc<Program>>>>);

impl ProgramCache {
    fn cached(&self, version: u64) -> Option<Arc<Program>> {
        self.0.read().expect("program cache poisoned").get(&version).cloned()
    }

    /// A program version, read on a connection the caller already holds
    /// (inside its transaction) on a cache miss: no second connection is
    /// needed, which a full pool could not give while every holder waits.
    pub async fn get(&self, conn: &mut dyn Conn, version: u64) -> Result<Arc<Program>> {
        if let Some(p) = self.cached(version) {
            return Ok(p);
        }
        let row = conn
            .optional(&Sql::new("SELECT body FROM program_versions WHERE version = ?").arg(super::uint(version)?))
            .await?
            .ok_or_else(|| corrupt(format!("program version {version} does not exist")))?;
        let doc: ProgramDoc = serde_json::from_str(&row.text("body")?).map_err(corrupt)?;
        let program = Arc::new(
            Program::parse(&doc).map_err(|e| corrupt(format!("program version {version} is invalid: {e:?}")))?,
        );
        self.0.write().expect("program cache poisoned").insert(version, program.clone());
        Ok(program)
    }
}

/// Makes sure program version 1 (the default program) exists.
pub async fn ensure_default(mut conn: Box<dyn Conn>) -> Result<()> {
    let body = serde_json::to_string(&Program::default_doc()).map_err(corrupt)?;
    let insert =
        format!("{} INTO program_versions (version, body, created_at) VALUES (1, ?, ?)", conn.dialect().insert_ignore);
    conn.execute(&Sql::new(insert).arg(body).arg(Utc::now())).await?;
    conn.commit().await
}

#[async_trait::async_trait]
impl Programs for SqlStore {
    async fn program(&self, version: u64) -> Result<Arc<Program>> {
        if let Some(p) = self.programs.cached(version) {
            return Ok(p);
        }
        self.programs.get(self.read().await?.as_mut(), version).await
    }

    async fn program_versions(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<(u64, chrono::DateTime<chrono::Utc>)>> {
        let q = Sql::new(
            "SELECT version, created_at FROM program_versions WHERE version < ? ORDER BY version DESC LIMIT ?",
        )
        .arg(before.map_or(Ok(super::Arg::Int(i64::MAX)), super::uint)?)
        .arg(limit);
        super::rows::all(&self.read().await?.fetch(&q).await?, |r| Ok((r.uint("version")?, r.time("created_at")?)))
    }

    async fn cap_counters(
        &self,
        keys: &[crate::domain::caps::CounterKey],
    ) -> Result<HashMap<crate::domain::caps::CounterKey, crate::domain::caps::Used>> {
        super::caps::counters(self.read().await?.as_mut(), keys, false).await
    }

    async fn current_program(&self) -> Result<(u64, Arc<Program>)> {
        let mut conn = self.read().await?;
        let version = conn.one(&Sql::new("SELECT MAX(version) AS v FROM program_versions")).await?.uint("v")?;
        Ok((version, self.programs.get(conn.as_mut(), version).await?))
    }

    /// A version whose time zone differs from the version in force moves
    /// the start of the counted months (`affiliate_months_since`) two days
    /// past now, in the same transaction: no counted month mixes orders of
    /// two time zones (see `sql::month`).
    async fn insert_program(&self, program: &Program, audit: &crate::domain::audit::AuditEntry) -> Result<u64> {
        let body = serde_json::to_string(&program.to_doc()).map_err(corrupt)?;
        let mut conn = self.write(Lane::Request).await?;
        let lock = conn.dialect().for_update;
        let since = conn
            .one(&Sql::new(format!("SELECT since FROM affiliate_months_since WHERE id = 1{lock}")))
            .await?
            .time("since")?;
        let current = conn.one(&Sql::new("SELECT MAX(version) AS v FROM program_versions")).await?.uint("v")?;
        let now = Utc::now();
        if self.programs.get(conn.as_mut(), current).await?.timezone != program.timezone {
            let moved = since.max(now + chrono::TimeDelta::days(2));
            conn.execute(&Sql::new("UPDATE affiliate_months_since SET since = ? WHERE id = 1").arg(moved)).await?;
        }
        let done = conn
            .execute(
                &Sql::new("INSERT INTO program_versions (body, created_at) VALUES (?, ?)").arg(body).arg(Utc::now()),
            )
            .await?;
        let mut audit = audit.created("version", done.last_id);
        audit.before = Some(serde_json::json!({ "version": current }));
        super::audit::insert(conn.as_mut(), &audit, now).await?;
        conn.commit().await?;
        Ok(done.last_id)
    }
}
