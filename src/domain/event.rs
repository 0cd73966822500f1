//! The vocabulary shared by intake, the journal and the actors: event ids,
//! types, statuses, the partition an event is processed in (one routing
//! rule), and the event log's records as the operator sees them.
use super::ids::{AffiliateId, BuyerId, OrderId};
use chrono::{DateTime, Utc};
use std::fmt;
use uuid::Uuid;

/// An event's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = Uuid)]
pub struct EventId(Uuid);

impl EventId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().map(Self)
    }

    /// One of `n` shards, from the id's random low bits.
    pub fn shard(&self, n: u16) -> u16 {
        (self.0.as_u128() % u128::from(n.max(1))) as u16
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "order.placed")]
    OrderPlaced,
    #[serde(rename = "order.refunded")]
    OrderRefunded,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.completed")]
    OrderCompleted,
    /// An operator's recompute that found the ledger off its entitlement.
    #[serde(rename = "order.recomputed")]
    OrderRecomputed,
    /// An operator moved the order to another affiliate.
    #[serde(rename = "order.reattributed")]
    OrderReattributed,
    /// A buyer's wallet: points held for a redemption, the hold captured,
    /// released, or expired uncaptured; earned points expired. Each is
    /// applied in the transaction that records it (stored `done`).
    #[serde(rename = "redemption.held")]
    RedemptionHeld,
    #[serde(rename = "redemption.captured")]
    RedemptionCaptured,
    #[serde(rename = "redemption.released")]
    RedemptionReleased,
    #[serde(rename = "redemption.expired")]
    RedemptionExpired,
    #[serde(rename = "points.expired")]
    PointsExpired,
    /// An operator's manual adjustment of an affiliate's commission or a
    /// buyer's points; applied in the transaction that records it (`done`).
    #[serde(rename = "commission.adjusted")]
    CommissionAdjusted,
    #[serde(rename = "points.adjusted")]
    PointsAdjusted,
}

impl EventType {
    pub const ALL: [EventType; 13] = [
        Self::OrderPlaced,
        Self::OrderRefunded,
        Self::OrderCancelled,
        Self::OrderCompleted,
        Self::OrderRecomputed,
        Self::OrderReattributed,
        Self::RedemptionHeld,
        Self::RedemptionCaptured,
        Self::RedemptionReleased,
        Self::RedemptionExpired,
        Self::PointsExpired,
        Self::CommissionAdjusted,
        Self::PointsAdjusted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order.placed",
            Self::OrderRefunded => "order.refunded",
            Self::OrderCancelled => "order.cancelled",
            Self::OrderCompleted => "order.completed",
            Self::OrderRecomputed => "order.recomputed",
            Self::OrderReattributed => "order.reattributed",
            Self::RedemptionHeld => "redemption.held",
            Self::RedemptionCaptured => "redemption.captured",
            Self::RedemptionReleased => "redemption.released",
            Self::RedemptionExpired => "redemption.expired",
            Self::PointsExpired => "points.expired",
            Self::CommissionAdjusted => "commission.adjusted",
            Self::PointsAdjusted => "points.adjusted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Pending,
    Processing,
    Done,
    Failed,
    Dead,
}

impl EventStatus {
    /// Done or dead: nothing more happens to the event by itself (a failed
    /// attempt recorded now changes nothing).
    pub fn settled(self) -> bool {
        matches!(self, Self::Done | Self::Dead)
    }

    /// The replay rule: a failed or dead event goes back to pending with a
    /// fresh attempt budget; any other is only recorded as replayed (a done
    /// one is journaled again and applying it is a no-op).
    pub fn reopens_on_replay(self) -> bool {
        matches!(self, Self::Failed | Self::Dead)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "processing" => Some(Self::Processing),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// Events of one partition are processed one at a time by one actor: the
/// direct affiliate's, else the buyer's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey(String);

impl PartitionKey {
    /// The routing rule: an order's events go to its direct affiliate's
    /// partition, or to its buyer's when it is unattributed.
    pub fn of(affiliate: Option<&AffiliateId>, buyer: &BuyerId) -> Self {
        match affiliate {
            Some(a) => Self(format!("a:{a}")),
            None => Self(format!("b:{buyer}")),
        }
    }
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A journal partition's fencing token, as held by the instance that owns
/// the partition: an event transaction commits only while its tokens are
/// still the current ones (see `journal_fences`, docs/SCALING.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub part: u16,
    pub token: u64,
}

/// Which journal partitions a recovery read is about: `owned` of `of`.
/// With every partition owned (one instance, the embedded mode) there is
/// nothing to filter.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub of: u16,
    pub owned: &'a [u16],
}

impl Parts<'_> {
    /// Every partition (no filter).
    pub const ALL: Parts<'static> = Parts { of: 1, owned: &[0] };
    pub fn is_all(&self) -> bool {
        usize::from(self.of) <= self.owned.len()
    }
}

/// What the journal carries: which event, where to process it, and its
/// order (events of one order are applied one after another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub id: EventId,
    pub partition: PartitionKey,
    pub order_id: OrderId,
}

/// Open and dead events, for the gauges (read from the record, so they stay
/// true across restarts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// pending, processing or failed (waiting for a retry)
    pub open: u64,
    pub dead: u64,
}

/// How many events there are in each status (of those matching a filter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub pending: u64,
    pub processing: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
}

impl EventCounts {
    /// Adds `n` events of this status.
    pub fn add(&mut self, status: EventStatus, n: u64) {
        let slot = match status {
            EventStatus::Pending => &mut self.pending,
            EventStatus::Processing => &mut self.processing,
            EventStatus::Done => &mut self.done,
            EventStatus::Failed => &mut self.failed,
            EventStatus::Dead => &mut self.dead,
        };
        *slot += n;
    }
}

/// What an operator filters the event log by.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub kind: Option<EventType>,
    pub order_id: Option<OrderId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One event as listed.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: EventId,
    pub kind: EventType,
    /// None for a buyer's wallet event.
    pub order_id: Option<OrderId>,
    pub status: EventStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub error: String,
}

#[derive(Debug, Clone)]
pub struct Replay {
    pub at: DateTime<Utc>,
    pub previous_status: String,
}

/// One event with everything an operator may need to see.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event: EventRecord,
    pub partition: String,
    pub applied_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    /// The stored payload (JSON text).
    pub payload: String,
    pub attempt_history: Vec<Attempt>,
    pub replay_history: Vec<Replay>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_routed_to_its_affiliate_else_its_buyer() {
        let buyer = BuyerId::parse("x").unwrap();
        let affiliate = AffiliateId::parse("C").unwrap();
        assert_eq!(PartitionKey::of(Some(&affiliate), &buyer).as_str(), "a:C");
        assert_eq!(PartitionKey::of(None, &buyer).as_str(), "b:x");
        // An affiliate and a buyer with the same id never share a partition.
        let same = AffiliateId::parse("x").unwrap();
        assert_ne!(PartitionKey::of(Some(&same), &buyer), PartitionKey::of(None, &buyer));
    }

    #[test]
    fn only_failed_and_dead_events_reopen_on_replay_and_only_done_and_dead_are_settled() {
        use EventStatus::*;
        for (status, reopens, settled) in [
            (Pending, false, false),
            (Processing, false, false),
            (Failed, true, false),
            (Done, false, true),
            (Dead, true, true),
        ] {
            assert_eq!(status.reopens_on_replay(), reopens, "{status:?}");
            assert_eq!(status.settled(), settled, "{status:?}");
        }
    }
}
