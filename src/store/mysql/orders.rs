//! Order intake (orders, items and `order.placed` events, batched) and the
//! stored order with its ledger, rewards and events.
use super::script::Script;
use super::{
    mysql_error_number, parse_event_id, parse_event_status, parse_event_type, parse_order_status, MySqlStore,
    ER_DUP_ENTRY,
};
use crate::domain::event::{EventId, EventRef, EventType, PartitionKey};
use crate::domain::ids::{AffiliateId, BuyerId, Category, OrderId, ReferralCode, Sku};
use crate::domain::order::{
    eligible, Attribution, CommissionStatus, CreateOrder, EventSummary, NewOrder, OrderItem, OrderRecord, OrderState,
    OrderStatus,
};
use crate::store::{corrupt, Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row, Transaction};
use std::collections::{HashMap, HashSet};

impl MySqlStore {
    /// Intake of several orders (one or more) in ONE transaction of two round
    /// trips: one read (program version, ids taken, attributions), then the
    /// multi-row inserts and the commit sent together (`script`). Each order
    /// is answered on its own (accepted, duplicate, conflict, wrong currency).
    /// If a statement of the batch fails (a concurrent writer took one of the
    /// ids between the read and the insert, a row the database refuses),
    /// nothing of the batch is kept and each order is taken again in a
    /// transaction of its own, so one bad order fails alone. Runs on a
    /// connection intake keeps; one that failed is closed, not kept.
    pub async fn create_orders(&self, orders: &[NewOrder]) -> Vec<Result<CreateOrder>> {
        let failed = match self.take_kept().await {
            Ok(mut conn) => match self.create_orders_on(&mut conn, orders).await {
                Ok(outcomes) => {
                    self.give_back(conn);
                    return outcomes.into_iter().map(Ok).collect();
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        match failed {
            StoreError::Db(_) if orders.len() > 1 => {
                let mut out = Vec::with_capacity(orders.len());
                for order in orders {
                    out.push(self.create_order(order).await);
                }
                out
            }
            StoreError::Db(e) if mysql_error_number(&e) == Some(ER_DUP_ENTRY) => {
                vec![self.existing_order_outcome(&orders[0]).await]
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

    /// One order in a transaction of its own (after its batch failed). A
    /// concurrent writer that took the id first makes it a duplicate or a conflict.
    async fn create_order(&self, order: &NewOrder) -> Result<CreateOrder> {
        let mut conn = self.take_kept().await?;
        match self.create_orders_on(&mut conn, std::slice::from_ref(order)).await {
            Ok(mut outcomes) => {
                self.give_back(conn);
                outcomes.pop().ok_or_else(|| corrupt("no outcome for the order"))
            }
            Err(StoreError::Db(e)) if mysql_error_number(&e) == Some(ER_DUP_ENTRY) => {
                self.existing_order_outcome(order).await
            }
            Err(e) => Err(e),
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
                        Some(id) => (Some(AffiliateId::from_trusted(id.clone())), None),
                        None => (None, Some("unknown_referral_code")),
                    },
                    Some(Attribution::AffiliateId(a)) => match known.codes.get(&(false, a.as_str().to_owned())) {
                        Some(id) => (Some(AffiliateId::from_trusted(id.clone())), None),
                        None => (None, Some("unknown_affiliate_id")),
                    },
                };
                let partition = PartitionKey::of(affiliate_id.as_ref(), &o.buyer_id);
                let state = o.state();
                rows.push((
                    n,
                    affiliate_id,
                    note,
                    state.total(),
                    eligible(&state, &program),
                    EventRef { id: EventId::new(), partition, order_id: o.id.clone() },
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
                        .push(affiliate_id.as_ref().map(|a| a.as_str()))
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

    /// The stored order with its items, ledger entries, rewards and events.
    pub async fn order(&self, id: &OrderId) -> Result<Option<OrderRecord>> {
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
        let status = parse_order_status(row.try_get("status")?)?;
        let items = load_items(&self.pool, &[id]).await?.remove(id).unwrap_or_default();
        let state = OrderState {
            buyer_id: BuyerId::from_trusted(row.try_get("buyer_id")?),
            items,
            cancelled: status == OrderStatus::Cancelled,
        };
        let events = sqlx::query("SELECT id, type, status FROM events WHERE order_id = ? ORDER BY created_at, id")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(EventSummary {
                    id: parse_event_id(r.try_get("id")?)?,
                    kind: parse_event_type(r.try_get("type")?)?,
                    status: parse_event_status(r.try_get("status")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let commission_status: &str = row.try_get("commission_status")?;
        Ok(Some(OrderRecord {
            id: id.clone(),
            affiliate_id: row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted),
            referral_code: row.try_get::<Option<String>, _>("referral_code")?.map(ReferralCode::from_trusted),
            attribution_note: row.try_get("attribution_note")?,
            status,
            currency: row.try_get("currency")?,
            placed_at: row.try_get("placed_at")?,
            total: row.try_get("total")?,
            program_version: row.try_get("program_version")?,
            commission_status: CommissionStatus::parse(commission_status)
                .ok_or_else(|| corrupt(format!("commission status {commission_status:?}")))?,
            no_commission_reason: row.try_get("no_commission_reason")?,
            state,
            commissions: self.order_ledger(id).await?,
            rewards: self.order_rewards(id).await?,
            events,
        }))
    }
}

/// The items of these orders, each order's in line order, keyed by order id.
pub(super) async fn load_items<'e, E>(exec: E, orders: &[&OrderId]) -> Result<HashMap<OrderId, Vec<OrderItem>>>
where
    E: sqlx::Executor<'e, Database = MySql>,
{
    let mut items: HashMap<OrderId, Vec<OrderItem>> = HashMap::with_capacity(orders.len());
    if orders.is_empty() {
        return Ok(items);
    }
    let mut q = QueryBuilder::<MySql>::new(
        "SELECT order_id, sku, category, quantity, refunded, unit_price FROM order_items WHERE order_id IN (",
    );
    super::push_list(&mut q, orders.iter().map(|o| o.as_str()));
    q.push(") ORDER BY order_id, line_no");
    for r in q.build().fetch_all(exec).await? {
        items.entry(OrderId::from_trusted(r.try_get("order_id")?)).or_default().push(OrderItem {
            sku: Sku::from_trusted(r.try_get("sku")?),
            category: Category::from_trusted(r.try_get("category")?),
            quantity: r.try_get("quantity")?,
            refunded: r.try_get("refunded")?,
            unit_price: r.try_get("unit_price")?,
        });
    }
    Ok(items)
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
