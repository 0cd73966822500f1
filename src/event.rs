//! The vocabulary shared by intake, the journal and the actors: event ids,
//! types, statuses, and the partition an event is processed in.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
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
}

impl EventType {
    pub const ALL: [EventType; 5] =
        [Self::OrderPlaced, Self::OrderRefunded, Self::OrderCancelled, Self::OrderCompleted, Self::OrderRecomputed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order.placed",
            Self::OrderRefunded => "order.refunded",
            Self::OrderCancelled => "order.cancelled",
            Self::OrderCompleted => "order.completed",
            Self::OrderRecomputed => "order.recomputed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "order.placed" => Some(Self::OrderPlaced),
            "order.refunded" => Some(Self::OrderRefunded),
            "order.cancelled" => Some(Self::OrderCancelled),
            "order.completed" => Some(Self::OrderCompleted),
            "order.recomputed" => Some(Self::OrderRecomputed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Pending,
    Processing,
    Done,
    Failed,
    Dead,
}

impl EventStatus {
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
    pub fn affiliate(id: &str) -> Self {
        Self(format!("a:{id}"))
    }
    pub fn buyer(id: &str) -> Self {
        Self(format!("b:{id}"))
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

/// What the journal carries: which event, and where to process it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub id: EventId,
    pub partition: PartitionKey,
}
