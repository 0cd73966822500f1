//! Manual adjustments' rows (see `domain::adjustment`): the request kept
//! for idempotency, and — for a commission adjustment — its ledger entry,
//! balance move and event, all in the caller's transaction.
use super::{Arg, Conn, Sql};
use crate::domain::adjustment::{Adjusted, Adjustment, AdjustmentRequest};
use crate::domain::entitlement::CommissionKind;
use crate::domain::event::{EventType, PartitionKey};
use crate::domain::ids::{AdjustmentId, AffiliateId, BuyerId};
use crate::domain::ledger::EntryStatus;
use crate::store::{corrupt, Result};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The adjustment stored under `id`, if any. Not locked: the subject's row
/// lock orders writers of one subject, and a twin of another subject fails
/// on the primary key at its insert.
pub async fn select(conn: &mut dyn Conn, id: &AdjustmentId) -> Result<Option<Adjustment>> {
    let q = Sql::new(
        "SELECT id, subject_kind, subject_id, amount, points, reason, event_id, actor, created_at FROM adjustments \
         WHERE id = ?",
    )
    .arg(id);
    let Some(r) = conn.optional(&q).await? else { return Ok(None) };
    let subject = r.text("subject_id")?;
    let adjusted = match r.text("subject_kind")?.as_str() {
        "affiliate" => {
            Adjusted::Commission { affiliate_id: AffiliateId::from_trusted(subject), amount: r.money("amount")? }
        }
        "buyer" => Adjusted::Points {
            buyer_id: BuyerId::from_trusted(subject),
            points: r.opt_int("points")?.ok_or_else(|| corrupt("a points adjustment without points"))?,
        },
        other => return Err(corrupt(format!("adjustment of an unknown subject {other}"))),
    };
    Ok(Some(Adjustment {
        request: AdjustmentRequest {
            id: AdjustmentId::from_trusted(r.text("id")?),
            adjusted,
            reason: r.text("reason")?,
        },
        event_id: super::rows::event_id(&r.text("event_id")?)?,
        actor: r.text("actor")?,
        created_at: r.time("created_at")?,
    }))
}

/// Stores the request (its id is the primary key: a concurrent twin fails
/// with a duplicate key and nothing of it is written).
pub async fn insert(conn: &mut dyn Conn, a: &Adjustment) -> Result<()> {
    let (amount, points) = match &a.request.adjusted {
        Adjusted::Commission { amount, .. } => (Arg::Money(*amount), Arg::Null),
        Adjusted::Points { points, .. } => (Arg::Null, Arg::Int(*points)),
    };
    let q = Sql::new(
        "INSERT INTO adjustments (id, subject_kind, subject_id, amount, points, reason, event_id, actor, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .arg(&a.request.id)
    .arg(a.request.adjusted.subject_kind())
    .arg(a.request.adjusted.subject_id())
    .arg(amount)
    .arg(points)
    .arg(a.request.reason.as_str())
    .arg(a.event_id)
    .arg(a.actor.as_str())
    .arg(a.created_at);
    conn.execute(&q).await?;
    Ok(())
}

/// A commission adjustment's effect: its event (stored done), a ledger
/// entry (approved at once, level 0, no order) and the approved balance
/// moved by it; then the event's tally.
pub async fn commission(
    conn: &mut dyn Conn,
    a: &Adjustment,
    payload: &str,
    rule_version: u64,
    now: DateTime<Utc>,
) -> Result<()> {
    let Adjusted::Commission { affiliate_id, amount } = &a.request.adjusted else {
        return Err(corrupt("not a commission adjustment"));
    };
    let kind = EventType::CommissionAdjusted;
    let q = Sql::new(
        "INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, \
         created_at, updated_at, applied_at) VALUES (?, ?, '', ?, 'done', 1, ?, ?, ?, ?, ?)",
    )
    .arg(a.event_id)
    .arg(kind.as_str())
    .arg(&PartitionKey::from_stored(format!("a:{affiliate_id}")))
    .arg(payload)
    .arg(now)
    .arg(now)
    .arg(now)
    .arg(now);
    conn.execute(&q).await?;
    let q = Sql::new(
        "INSERT INTO ledger_entries (affiliate_id, order_id, event_id, level, kind, amount, status, rule_version, \
         created_at) VALUES (?, '', ?, 0, ?, ?, ?, ?, ?)",
    )
    .arg(affiliate_id)
    .arg(a.event_id)
    .arg(CommissionKind::Adjustment.as_str())
    .arg(*amount)
    .arg(EntryStatus::Approved.as_str())
    .arg(super::uint(rule_version)?)
    .arg(now);
    conn.execute(&q).await?;
    let moves = BTreeMap::from([(affiliate_id.clone(), BTreeMap::from([(EntryStatus::Approved, *amount)]))]);
    conn.move_balances(&moves).await?;
    super::events::tally(conn, kind, 1, a.event_id).await
}
