//! Order intake (one transaction: order + items + event) and the order view.
use super::ledger::{LedgerEntry, RewardEntry};
use super::script::Script;
use super::{corrupt, mysql_error_number, Result, Store, StoreError, ER_DUP_ENTRY};
use crate::domain::ids::{AffiliateId, BuyerId, Category, OrderId, ReferralCode, Sku};
use crate::domain::order::{OrderItem, OrderState};
use crate::domain::program::Program;
use crate::event::{EventId, EventRef, EventStatus, EventType, PartitionKey};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row, Transaction};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    ReferralCode(ReferralCode),
    AffiliateId(AffiliateId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub sku: Sku,
    pub category: Category,
    pub quantity: u32,
    pub unit_price: Decimal,
}

/// A validated order request.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: OrderId,
    pub buyer_id: BuyerId,
    pub attribution: Option<Attribution>,
    pub currency: String,
    pub placed_at: Option<DateTime<Utc>>,
    pub items: Vec<NewItem>,
    /// SHA-256 of the normalised request: an identical retry has the same hash.
    pub request_hash: [u8; 32],
    /// The normalised request as JSON, kept as the event payload.
    pub payload: String,
}

#[derive(Debug)]
pub enum CreateOrder {
    Accepted(EventRef),
    /// The same request was accepted before: its event.
    Duplicate(EventId),
    /// The id is taken by an order with other data.
    Conflict,
    WrongCurrency {
        expected: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Completed,
    Cancelled,
    PartiallyRefunded,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }
    pub(super) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "placed" => Self::Placed,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "partially_refunded" => Self::PartiallyRefunded,
            "refunded" => Self::Refunded,
            other => return Err(corrupt(format!("order status {other:?}"))),
        })
    }
}

/// Where an order's commissions stand: `processed` once every event is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommissionStatus {
    Pending,
    Processed,
    Failed,
    Dead,
}

impl CommissionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processed => "processed",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "processed" => Self::Processed,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            other => return Err(corrupt(format!("commission status {other:?}"))),
        })
    }

    /// The order's commission status given the statuses of all its events.
    pub fn of(events: impl IntoIterator<Item = EventStatus>) -> Self {
        let (mut dead, mut failed, mut open) = (false, false, false);
        for s in events {
            match s {
                EventStatus::Dead => dead = true,
                EventStatus::Failed => failed = true,
                EventStatus::Pending | EventStatus::Processing => open = true,
                EventStatus::Done => {}
            }
        }
        if dead {
            Self::Dead
        } else if failed {
            Self::Failed
        } else if open {
            Self::Pending
        } else {
            Self::Processed
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub status: EventStatus,
}

/// `GET /v1/orders/{id}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: OrderId,
    pub buyer_id: BuyerId,
    pub affiliate_id: Option<AffiliateId>,
    pub referral_code: Option<ReferralCode>,
    pub attribution_note: Option<String>,
    pub status: OrderStatus,
    pub currency: String,
    pub placed_at: DateTime<Utc>,
    #[serde(with = "crate::http::money_str")]
    #[schema(value_type = String, example = "95000")]
    pub total: Decimal,
    /// Eligible amount of the current state (net of refunds; 0 when cancelled).
    #[serde(with = "crate::http::money_str")]
    #[schema(value_type = String, example = "95000")]
    pub eligible_amount: Decimal,
    pub rule_version: u64,
    pub commission_status: CommissionStatus,
    pub no_commission_reason: Option<String>,
    pub commissions: Vec<LedgerEntry>,
    pub rewards: Vec<RewardEntry>,
    pub events: Vec<EventSummary>,
}

impl Store {
    pub async fn create_order(&self, order: &NewOrder) -> Result<CreateOrder> {
        let mut tx = self.pool.begin().await?;
        let version: u64 = sqlx::query_scalar("SELECT MAX(version) FROM program_versions").fetch_one(&mut *tx).await?;
        let program = self.program_in(&mut tx, version).await?;
        if order.currency != program.currency {
            return Ok(CreateOrder::WrongCurrency { expected: program.currency.clone() });
        }
        let (affiliate_id, note) = resolve_attribution(&mut tx, order.attribution.as_ref()).await?;
        let partition = match &affiliate_id {
            Some(a) => PartitionKey::affiliate(a),
            None => PartitionKey::buyer(order.buyer_id.as_str()),
        };
        let now = Utc::now();
        let placed_at = order.placed_at.unwrap_or(now);
        let state = new_state(order);
        let inserted = sqlx::query(
            "INSERT INTO orders (id, buyer_id, affiliate_id, referral_code, attribution_note, currency, placed_at, \
             status, total, original_eligible, program_version, request_hash, commission_status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'placed', ?, ?, ?, ?, 'pending', ?, ?)",
        )
        .bind(order.id.as_str())
        .bind(order.buyer_id.as_str())
        .bind(affiliate_id.as_deref())
        .bind(match &order.attribution {
            Some(Attribution::ReferralCode(c)) => Some(c.as_str()),
            _ => None,
        })
        .bind(note)
        .bind(&order.currency)
        .bind(placed_at)
        .bind(state.total())
        .bind(eligible(&state, &program))
        .bind(version)
        .bind(&order.request_hash[..])
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            if mysql_error_number(&e) != Some(ER_DUP_ENTRY) {
                return Err(e.into());
            }
            drop(tx);
            return self.existing_order_outcome(order).await;
        }

        let mut items = QueryBuilder::<MySql>::new(
            "INSERT INTO order_items (order_id, sku, line_no, category, quantity, unit_price) ",
        );
        items.push_values(order.items.iter().enumerate(), |mut b, (n, item)| {
            b.push_bind(order.id.as_str())
                .push_bind(item.sku.as_str())
                .push_bind(n as u16)
                .push_bind(item.category.as_str())
                .push_bind(item.quantity)
                .push_bind(item.unit_price);
        });
        items.build().execute(&mut *tx).await?;

        let event = EventRef { id: EventId::new(), partition };
        insert_event(&mut tx, &event, EventType::OrderPlaced, &order.id, &order.payload, now, now + self.lease).await?;
        tx.commit().await?;
        Ok(CreateOrder::Accepted(event))
    }

    /// Intake of several orders (one or more) in ONE transaction of two round
    /// trips: one read (program version, ids taken, attributions), then the
    /// multi-row inserts and the commit sent together (`script`). Each order
    /// is answered on its own (accepted, duplicate, conflict, wrong currency).
    /// If a statement of the batch fails (a concurrent writer took one of the
    /// ids between the read and the insert, a row the database refuses),
    /// nothing of the batch is kept and each order is taken again in a
    /// transaction of its own, so one bad order fails alone.
    ///
    /// On a connection of its own, closed after use (for tests and tools); the
    /// server's intake keeps its connections and calls `create_orders_with`.
    pub async fn create_orders(&self, orders: &[NewOrder]) -> Vec<Result<CreateOrder>> {
        let conn = self.pool.acquire().await.map(|c| c.detach()).map_err(StoreError::from);
        self.create_orders_with(conn, orders).await.0
    }

    /// `create_orders` on `conn` (or, when none could be had, each order
    /// alone). The connection comes back only when the batch succeeded: after
    /// a failure it may hold the failed transaction, and is closed.
    pub async fn create_orders_with(
        &self,
        conn: Result<MySqlConnection>,
        orders: &[NewOrder],
    ) -> (Vec<Result<CreateOrder>>, Option<MySqlConnection>) {
        let failed = match conn {
            Ok(mut conn) => match self.create_orders_on(&mut conn, orders).await {
                Ok(outcomes) => return (outcomes.into_iter().map(Ok).collect(), Some(conn)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        (self.create_orders_apart(orders, failed).await, None)
    }

    /// After a batch failed with `error`: each order alone (see `create_orders`).
    async fn create_orders_apart(&self, orders: &[NewOrder], error: StoreError) -> Vec<Result<CreateOrder>> {
        match error {
            StoreError::Db(e) if orders.len() > 1 || mysql_error_number(&e) == Some(ER_DUP_ENTRY) => {
                let mut out = Vec::with_capacity(orders.len());
                for order in orders {
                    out.push(self.create_order(order).await);
                }
                out
            }
            e => {
                let message = e.to_string();
                let mut out = vec![Err(e)];
                out.extend(
                    orders.iter().skip(1).map(|_| Err(StoreError::Corrupt(format!("intake failed: {message}")))),
                );
                out
            }
        }
    }

    /// The batch of `create_orders` on a given connection, all or nothing; after
    /// an error the connection should be dropped (it may hold a transaction).
    async fn create_orders_on(&self, conn: &mut MySqlConnection, orders: &[NewOrder]) -> Result<Vec<CreateOrder>> {
        // Round trip 1: what the batch depends on (program version, ids taken, attributions).
        let known = intake_lookup(&mut *conn, orders).await?;
        let version = known.version;
        let program = self.program_in(conn, version).await?;
        let mut outcomes: Vec<Option<CreateOrder>> = orders.iter().map(|_| None).collect();

        let mut later = Vec::new(); // the same id twice in one batch: answered after the first commits
        let mut seen = HashSet::new();
        let mut insert = Vec::new();
        for (n, o) in orders.iter().enumerate() {
            if o.currency != program.currency {
                outcomes[n] = Some(CreateOrder::WrongCurrency { expected: program.currency.clone() });
            } else if known.taken.contains(o.id.as_str()) || !seen.insert(o.id.as_str()) {
                later.push(n);
            } else {
                insert.push(n);
            }
        }

        if !insert.is_empty() {
            let now = Utc::now();
            let mut rows = Vec::with_capacity(insert.len());
            for &n in &insert {
                let o = &orders[n];
                let (affiliate_id, note) = match &o.attribution {
                    None => (None, None),
                    Some(Attribution::ReferralCode(c)) => match known.codes.get(&(true, c.as_str().to_owned())) {
                        Some(id) => (Some(id.clone()), None),
                        None => (None, Some("unknown_referral_code")),
                    },
                    Some(Attribution::AffiliateId(a)) => match known.codes.get(&(false, a.as_str().to_owned())) {
                        Some(id) => (Some(id.clone()), None),
                        None => (None, Some("unknown_affiliate_id")),
                    },
                };
                let partition = match &affiliate_id {
                    Some(a) => PartitionKey::affiliate(a),
                    None => PartitionKey::buyer(o.buyer_id.as_str()),
                };
                let state = new_state(o);
                rows.push((
                    n,
                    affiliate_id,
                    note,
                    state.total(),
                    eligible(&state, &program),
                    EventRef { id: EventId::new(), partition },
                ));
            }
            // Round trip 2: the order rows, their items and events, and the commit.
            let mut script = Script::new();
            script.insert(
                "orders (id, buyer_id, affiliate_id, referral_code, attribution_note, currency, placed_at, \
                 status, total, original_eligible, program_version, request_hash, commission_status, created_at, updated_at)",
                &rows,
                |v, (n, affiliate_id, note, total, eligible, _)| {
                    let o = &orders[*n];
                    v.push(o.id.as_str())
                        .push(o.buyer_id.as_str())
                        .push(affiliate_id.as_deref())
                        .push(match &o.attribution {
                            Some(Attribution::ReferralCode(c)) => Some(c.as_str()),
                            _ => None,
                        })
                        .push(*note)
                        .push(o.currency.as_str())
                        .push(o.placed_at.unwrap_or(now))
                        .push("placed")
                        .push(*total)
                        .push(*eligible)
                        .push(version)
                        .push(&o.request_hash[..])
                        .push("pending")
                        .push(now)
                        .push(now);
                },
            );
            let items =
                rows.iter().flat_map(|(n, ..)| orders[*n].items.iter().enumerate().map(move |(k, i)| (*n, k, i)));
            script.insert(
                "order_items (order_id, sku, line_no, category, quantity, unit_price)",
                items,
                |v, (n, k, item)| {
                    v.push(orders[n].id.as_str())
                        .push(item.sku.as_str())
                        .push(k as u16)
                        .push(item.category.as_str())
                        .push(item.quantity)
                        .push(item.unit_price);
                },
            );
            script.insert(
                "events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, created_at, updated_at)",
                &rows,
                |v, (n, .., event)| {
                    v.push(event.id.to_string())
                        .push(EventType::OrderPlaced.as_str())
                        .push(orders[*n].id.as_str())
                        .push(event.partition.as_str())
                        .push("pending")
                        .push(0u32)
                        .push(orders[*n].payload.as_str())
                        .push(now + self.lease)
                        .push(now)
                        .push(now);
                },
            );
            script.commit(conn).await?;
            for (n, .., event) in rows {
                outcomes[n] = Some(CreateOrder::Accepted(event));
            }
        }
        for n in later {
            outcomes[n] = Some(self.existing_order_outcome(&orders[n]).await?);
        }
        outcomes.into_iter().map(|o| o.ok_or_else(|| corrupt("an order of the batch got no outcome"))).collect()
    }

    async fn existing_order_outcome(&self, order: &NewOrder) -> Result<CreateOrder> {
        let row = sqlx::query(
            "SELECT o.request_hash, e.id AS event_id FROM orders o \
             JOIN events e ON e.order_id = o.id AND e.type = 'order.placed' WHERE o.id = ?",
        )
        .bind(order.id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| corrupt(format!("order {} exists without its order.placed event", order.id)))?;
        let hash: Vec<u8> = row.try_get("request_hash")?;
        if hash != order.request_hash {
            return Ok(CreateOrder::Conflict);
        }
        let event_id: String = row.try_get("event_id")?;
        Ok(CreateOrder::Duplicate(EventId::parse(&event_id).ok_or_else(|| corrupt("event id"))?))
    }

    pub async fn order_view(&self, id: &OrderId) -> Result<Option<OrderView>> {
        let Some(row) = sqlx::query(
            "SELECT id, buyer_id, affiliate_id, referral_code, attribution_note, status, currency, placed_at, total, \
             program_version, commission_status, no_commission_reason FROM orders WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let version: u64 = row.try_get("program_version")?;
        let program = self.program(version).await?;
        let state = load_state(&self.pool, id, BuyerId::from_trusted(row.try_get("buyer_id")?), &row).await?;
        let events = sqlx::query("SELECT id, type, status FROM events WHERE order_id = ? ORDER BY created_at, id")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(EventSummary {
                    id: EventId::parse(r.try_get("id")?).ok_or_else(|| corrupt("event id"))?,
                    kind: EventType::parse(r.try_get("type")?).ok_or_else(|| corrupt("event type"))?,
                    status: EventStatus::parse(r.try_get("status")?).ok_or_else(|| corrupt("event status"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(OrderView {
            id: id.clone(),
            buyer_id: state.buyer_id.clone(),
            affiliate_id: row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted),
            referral_code: row.try_get::<Option<String>, _>("referral_code")?.map(ReferralCode::from_trusted),
            attribution_note: row.try_get("attribution_note")?,
            status: OrderStatus::parse(row.try_get("status")?)?,
            currency: row.try_get("currency")?,
            placed_at: row.try_get("placed_at")?,
            total: row.try_get("total")?,
            eligible_amount: eligible(&state, &program),
            rule_version: version,
            commission_status: CommissionStatus::parse(row.try_get("commission_status")?)?,
            no_commission_reason: row.try_get("no_commission_reason")?,
            commissions: self.order_ledger(id).await?,
            rewards: self.order_rewards(id).await?,
            events,
        }))
    }
}

/// Σ net quantity × unit price over items not excluded by the program; 0 when cancelled.
pub fn eligible(state: &OrderState, program: &Program) -> Decimal {
    if state.cancelled {
        return Decimal::ZERO;
    }
    state
        .items
        .iter()
        .filter(|i| !program.is_excluded(i.category.as_str()))
        .map(|i| Decimal::from(i.net_quantity()) * i.unit_price)
        .sum()
}

/// The items of these orders, each order's in line order, keyed by order id.
pub(super) async fn load_items<'e, E>(exec: E, orders: &[&OrderId]) -> Result<HashMap<String, Vec<OrderItem>>>
where
    E: sqlx::Executor<'e, Database = MySql>,
{
    let mut items: HashMap<String, Vec<OrderItem>> = HashMap::with_capacity(orders.len());
    if orders.is_empty() {
        return Ok(items);
    }
    let mut q = QueryBuilder::<MySql>::new(
        "SELECT order_id, sku, category, quantity, refunded, unit_price FROM order_items WHERE order_id IN (",
    );
    let mut list = q.separated(", ");
    for o in orders {
        list.push_bind(o.as_str());
    }
    q.push(") ORDER BY order_id, line_no");
    for r in q.build().fetch_all(exec).await? {
        items.entry(r.try_get("order_id")?).or_default().push(OrderItem {
            sku: Sku::from_trusted(r.try_get("sku")?),
            category: Category::from_trusted(r.try_get("category")?),
            quantity: r.try_get("quantity")?,
            refunded: r.try_get("refunded")?,
            unit_price: r.try_get("unit_price")?,
        });
    }
    Ok(items)
}

/// Loads an order's items and cancellation into the engine's view of it.
pub(super) async fn load_state<'e, E>(
    exec: E,
    id: &OrderId,
    buyer_id: BuyerId,
    order: &sqlx::mysql::MySqlRow,
) -> Result<OrderState>
where
    E: sqlx::Executor<'e, Database = MySql>,
{
    let status: String = order.try_get("status")?;
    let items = load_items(exec, &[id]).await?.remove(id.as_str()).unwrap_or_default();
    Ok(OrderState { buyer_id, items, cancelled: status == OrderStatus::Cancelled.as_str() })
}

fn new_state(order: &NewOrder) -> OrderState {
    OrderState {
        buyer_id: order.buyer_id.clone(),
        items: order
            .items
            .iter()
            .map(|i| OrderItem {
                sku: i.sku.clone(),
                category: i.category.clone(),
                quantity: i.quantity,
                refunded: 0,
                unit_price: i.unit_price,
            })
            .collect(),
        cancelled: false,
    }
}

/// What intake needs to know before writing a batch, read in one statement.
struct IntakeLookup {
    /// The current program version.
    version: u64,
    /// Ids of the batch already taken by stored orders.
    taken: HashSet<String>,
    /// (is referral code, code or affiliate id) → affiliate id, for those that exist.
    codes: HashMap<(bool, String), String>,
}

async fn intake_lookup(conn: &mut MySqlConnection, orders: &[NewOrder]) -> Result<IntakeLookup> {
    let mut q = QueryBuilder::<MySql>::new(
        "SELECT 'v' AS kind, CAST(MAX(version) AS CHAR) AS a, NULL AS b FROM program_versions \
         UNION ALL SELECT 't', id, NULL FROM orders WHERE id IN (",
    );
    let mut sep = q.separated(", ");
    for o in orders {
        sep.push_bind(o.id.as_str());
    }
    let (mut codes, mut ids) = (Vec::new(), Vec::new());
    for o in orders {
        match &o.attribution {
            Some(Attribution::ReferralCode(c)) => codes.push(c.as_str()),
            Some(Attribution::AffiliateId(a)) => ids.push(a.as_str()),
            None => {}
        }
    }
    q.push(")");
    if !codes.is_empty() || !ids.is_empty() {
        q.push(" UNION ALL SELECT 'c', id, referral_code FROM affiliates WHERE referral_code IN (");
        let mut sep = q.separated(", ");
        for c in codes.iter().chain(std::iter::once(&"")) {
            sep.push_bind(*c);
        }
        q.push(") OR id IN (");
        let mut sep = q.separated(", ");
        for i in ids.iter().chain(std::iter::once(&"")) {
            sep.push_bind(*i);
        }
        q.push(")");
    }
    let mut found = IntakeLookup { version: 0, taken: HashSet::new(), codes: HashMap::new() };
    for row in q.build().fetch_all(conn).await? {
        let kind: String = row.try_get("kind")?;
        let a: Option<String> = row.try_get("a")?;
        let b: Option<String> = row.try_get("b")?;
        match (kind.as_str(), a, b) {
            ("v", Some(v), _) => found.version = v.parse().map_err(|_| corrupt("program version"))?,
            ("v", None, _) => return Err(corrupt("no program version")),
            ("t", Some(id), _) => {
                found.taken.insert(id);
            }
            ("c", Some(id), Some(code)) => {
                found.codes.insert((true, code), id.clone());
                found.codes.insert((false, id.clone()), id);
            }
            _ => return Err(corrupt("intake lookup row")),
        }
    }
    Ok(found)
}

async fn resolve_attribution(
    tx: &mut Transaction<'_, MySql>,
    attribution: Option<&Attribution>,
) -> Result<(Option<String>, Option<&'static str>)> {
    Ok(match attribution {
        None => (None, None),
        Some(Attribution::ReferralCode(code)) => {
            match sqlx::query_scalar::<_, String>("SELECT id FROM affiliates WHERE referral_code = ?")
                .bind(code.as_str())
                .fetch_optional(&mut **tx)
                .await?
            {
                Some(id) => (Some(id), None),
                None => (None, Some("unknown_referral_code")),
            }
        }
        Some(Attribution::AffiliateId(id)) => {
            match sqlx::query_scalar::<_, String>("SELECT id FROM affiliates WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&mut **tx)
                .await?
            {
                Some(id) => (Some(id), None),
                None => (None, Some("unknown_affiliate_id")),
            }
        }
    })
}

pub(super) async fn insert_event(
    tx: &mut Transaction<'_, MySql>,
    event: &EventRef,
    kind: EventType,
    order_id: &OrderId,
    payload: &str,
    now: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
    )
    .bind(event.id.to_string())
    .bind(kind.as_str())
    .bind(order_id.as_str())
    .bind(event.partition.as_str())
    .bind(payload)
    .bind(next_attempt_at)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
