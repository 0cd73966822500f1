//! Program versions: immutable once stored, so they are cached forever in memory.
use super::codec::encode_time;
use super::{int, SqliteStore};
use crate::domain::program::{Program, ProgramDoc};
use crate::store::{corrupt, Result};
use chrono::Utc;
use sqlx::{Row, SqliteConnection};
use std::sync::Arc;

impl SqliteStore {
    pub(super) async fn ensure_default_program(&self) -> Result<()> {
        let body = serde_json::to_string(&Program::default_doc()).map_err(corrupt)?;
        sqlx::query("INSERT INTO program_versions (version, body, created_at) VALUES (1, ?, ?) ON CONFLICT (version) DO NOTHING")
            .bind(body)
            .bind(encode_time(Utc::now())?)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The version in force now and its program.
    pub async fn current_program(&self) -> Result<(u64, Arc<Program>)> {
        let version: u64 =
            sqlx::query_scalar("SELECT MAX(version) FROM program_versions").fetch_one(&self.readers).await?;
        Ok((version, self.program(version).await?))
    }

    /// A program version, from the cache or the database.
    pub async fn program(&self, version: u64) -> Result<Arc<Program>> {
        let cached = self.programs.read().expect("program cache poisoned").get(&version).cloned();
        if let Some(p) = cached {
            return Ok(p);
        }
        self.program_in(&mut *self.readers.acquire().await?, version).await
    }

    /// `program`, read on a connection the caller already holds (inside its
    /// transaction: the writer has one connection, so it cannot ask for another).
    pub(super) async fn program_in(&self, conn: &mut SqliteConnection, version: u64) -> Result<Arc<Program>> {
        if let Some(p) = self.programs.read().expect("program cache poisoned").get(&version) {
            return Ok(p.clone());
        }
        let row = sqlx::query("SELECT body FROM program_versions WHERE version = ?")
            .bind(int(version)?)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| corrupt(format!("program version {version} does not exist")))?;
        let body: String = row.try_get("body")?;
        let doc: ProgramDoc = serde_json::from_str(&body).map_err(corrupt)?;
        let program = Arc::new(
            Program::parse(&doc).map_err(|e| corrupt(format!("program version {version} is invalid: {e:?}")))?,
        );
        self.programs.write().expect("program cache poisoned").insert(version, program.clone());
        Ok(program)
    }

    /// Stores a validated program as a new version.
    pub async fn insert_program(&self, program: &Program) -> Result<u64> {
        let body = serde_json::to_string(&program.to_doc()).map_err(corrupt)?;
        let done = sqlx::query("INSERT INTO program_versions (body, created_at) VALUES (?, ?)")
            .bind(body)
            .bind(encode_time(Utc::now())?)
            .execute(&self.writer)
            .await?;
        u64::try_from(done.last_insert_rowid()).map_err(corrupt)
    }
}
