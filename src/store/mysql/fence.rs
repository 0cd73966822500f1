//! Fencing tokens of journal partitions (docs/SCALING.md): a takeover moves
//! a partition's token on, in its own transaction.
use super::classify;
use crate::store::{Result, StoreError};
use chrono::Utc;
use sqlx::MySqlPool;

/// The fence row's token moves on under its exclusive lock, which waits for
/// every event transaction still holding the old token (they hold the row
/// shared); a short lock wait, so a stalled old owner delays the takeover to
/// the next try rather than holding the new owner's tick.
pub async fn take(work: &MySqlPool, part: u16, owner: &str) -> Result<(u64, Option<String>)> {
    let mut conn = work.acquire().await.map_err(classify)?;
    sqlx::query("SET SESSION innodb_lock_wait_timeout = 2").execute(&mut *conn).await.map_err(classify)?;
    let taken = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let now = Utc::now().naive_utc();
        let previous: Option<(u64, String)> =
            sqlx::query_as("SELECT token, owner FROM journal_fences WHERE part = ? FOR UPDATE")
                .bind(part)
                .fetch_optional(&mut *tx)
                .await?;
        let token = previous.as_ref().map_or(1, |(t, _)| t + 1);
        sqlx::query(
            "INSERT INTO journal_fences (part, token, owner, taken_at) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE token = VALUES(token), owner = VALUES(owner), taken_at = VALUES(taken_at)",
        )
        .bind(part)
        .bind(token)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let previous_owner = previous.map(|(_, o)| o);
        sqlx::query(
            "INSERT INTO journal_fence_log (part, token, owner, previous_owner, taken_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(part)
        .bind(token)
        .bind(owner)
        .bind(previous_owner.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>((token, previous_owner))
    }
    .await
    .map_err(classify);
    // Back to the pool's setting (a connection that cannot be reset is dropped).
    if sqlx::query("SET SESSION innodb_lock_wait_timeout = 10").execute(&mut *conn).await.is_err() {
        conn.detach();
    }
    taken.map_err(|e: StoreError| e)
}
