//! Simulations' rows (see `store::simulations`).
use super::{rows, Arg, Sql, SqlStore};
use crate::domain::ids::OrderId;
use crate::store::{Result, SimulationRow, Simulations};
use chrono::{DateTime, Utc};

const COLUMNS: &str =
    "id, status, request, created_at, started_at, heartbeat_at, finished_at, done_count, total_count, \
                       result, error";

fn row(r: &dyn super::Cols) -> Result<SimulationRow> {
    Ok(SimulationRow {
        id: r.uint("id")?,
        status: r.text("status")?,
        request: r.text("request")?,
        created_at: r.time("created_at")?,
        started_at: r.opt_time("started_at")?,
        heartbeat_at: r.opt_time("heartbeat_at")?,
        finished_at: r.opt_time("finished_at")?,
        done: r.uint("done_count")?,
        total: r.uint("total_count")?,
        result: r.opt_text("result")?,
        error: r.opt_text("error")?,
    })
}

#[async_trait::async_trait]
impl Simulations for SqlStore {
    async fn insert_simulation(
        &self,
        request: &str,
        now: DateTime<Utc>,
        audit: &crate::domain::audit::AuditEntry,
    ) -> Result<u64> {
        let mut conn = self.write(super::Lane::Request).await?;
        let q = Sql::new("INSERT INTO simulations (status, request, created_at) VALUES ('queued', ?, ?)")
            .arg(request)
            .arg(now);
        let done = conn.execute(&q).await?;
        super::audit::insert(conn.as_mut(), &audit.created("simulation_id", done.last_id), now).await?;
        conn.commit().await?;
        Ok(done.last_id)
    }

    async fn open_simulations(&self) -> Result<u64> {
        let q = Sql::new("SELECT COUNT(*) AS n FROM simulations WHERE status IN ('queued', 'running')");
        self.read().await?.one(&q).await?.uint("n")
    }

    async fn simulation(&self, id: u64) -> Result<Option<SimulationRow>> {
        let q = Sql::new(format!("SELECT {COLUMNS} FROM simulations WHERE id = ?")).arg(super::uint(id)?);
        self.read().await?.optional(&q).await?.map(|r| row(r.as_ref())).transpose()
    }

    async fn claim_simulation(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<SimulationRow>> {
        let mut conn = self.write(super::Lane::Request).await?;
        let q = Sql::new(
            "SELECT id FROM simulations WHERE status = 'queued' OR (status = 'running' AND heartbeat_at < ?) \
             ORDER BY id LIMIT 1",
        )
        .arg(Arg::Bound(stale_before));
        let Some(found) = conn.optional(&q).await? else { return Ok(None) };
        let id = found.uint("id")?;
        let q = Sql::new(
            "UPDATE simulations SET status = 'running', owner = ?, started_at = ?, heartbeat_at = ?, done_count = 0 \
             WHERE id = ? AND (status = 'queued' OR (status = 'running' AND heartbeat_at < ?))",
        )
        .arg(owner)
        .arg(now)
        .arg(now)
        .arg(super::uint(id)?)
        .arg(Arg::Bound(stale_before));
        let claimed = conn.execute(&q).await?.rows == 1;
        let got = conn
            .one(&Sql::new(format!("SELECT {COLUMNS} FROM simulations WHERE id = ?")).arg(super::uint(id)?))
            .await?;
        conn.commit().await?;
        if !claimed {
            // Another instance took it first.
            return Ok(None);
        }
        Ok(Some(row(got.as_ref())?))
    }

    async fn simulation_progress(&self, id: u64, done: u64, total: u64, now: DateTime<Utc>) -> Result<bool> {
        let mut conn = self.write(super::Lane::Request).await?;
        let q = Sql::new(
            "UPDATE simulations SET done_count = ?, total_count = ?, heartbeat_at = ? WHERE id = ? AND status = 'running'",
        )
        .arg(super::uint(done)?)
        .arg(super::uint(total)?)
        .arg(now)
        .arg(super::uint(id)?);
        let running = conn.execute(&q).await?.rows == 1;
        conn.commit().await?;
        Ok(running)
    }

    async fn finish_simulation(
        &self,
        id: u64,
        result: std::result::Result<&str, &str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut conn = self.write(super::Lane::Request).await?;
        let (status, result, error) = match result {
            Ok(r) => ("done", Some(r), None),
            Err(e) => ("failed", None, Some(e)),
        };
        let q = Sql::new(
            "UPDATE simulations SET status = ?, result = ?, error = ?, finished_at = ?, heartbeat_at = ? \
             WHERE id = ? AND status = 'running'",
        )
        .arg(status)
        .arg(result)
        .arg(error)
        .arg(now)
        .arg(now)
        .arg(super::uint(id)?);
        conn.execute(&q).await?;
        conn.commit().await
    }

    async fn cancel_simulation(
        &self,
        id: u64,
        now: DateTime<Utc>,
        audit: &crate::domain::audit::AuditEntry,
    ) -> Result<Option<String>> {
        let mut conn = self.write(super::Lane::Request).await?;
        let q = Sql::new(
            "UPDATE simulations SET status = 'cancelled', finished_at = ? WHERE id = ? AND status IN ('queued', 'running')",
        )
        .arg(now)
        .arg(super::uint(id)?);
        if conn.execute(&q).await?.rows > 0 {
            super::audit::insert(conn.as_mut(), audit, now).await?;
        }
        let status = conn
            .optional(&Sql::new("SELECT status FROM simulations WHERE id = ?").arg(super::uint(id)?))
            .await?
            .map(|r| r.text("status"))
            .transpose()?;
        conn.commit().await?;
        Ok(status)
    }

    async fn orders_placed_between(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<u64> {
        let q = Sql::new("SELECT COUNT(*) AS n FROM orders WHERE placed_at >= ? AND placed_at < ?")
            .arg(Arg::Bound(since))
            .arg(Arg::Bound(until));
        self.read().await?.one(&q).await?.uint("n")
    }

    async fn orders_placed_page(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<&OrderId>,
        limit: u32,
    ) -> Result<Vec<(OrderId, DateTime<Utc>)>> {
        let mut q = Sql::new("SELECT id, placed_at FROM orders WHERE placed_at >= ");
        q.bind(Arg::Bound(since)).push(" AND placed_at < ").bind(Arg::Bound(until));
        if let Some(id) = after {
            q.push(" AND id > ").bind(id);
        }
        q.push(" ORDER BY id LIMIT ").bind(limit);
        let rows = self.read().await?.fetch(&q).await?;
        rows::all(&rows, |r| Ok((OrderId::from_trusted(r.text("id")?), r.time("placed_at")?)))
    }
}
