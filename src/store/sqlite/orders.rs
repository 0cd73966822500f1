//! Order intake (orders, items and `order.placed` events, batched) and the
//! stored order with its ledger, rewards and events.
use super::codec::{encode_money, encode_time, money, time};
use super::{
    int, is_unique_violation, parse_event_id, parse_event_status, parse_event_type, parse_order_status, push_list,
    rows_per_insert, SqliteStore, IN_CHUNK,
};
use crate::domain::event::{EventId, EventRef, EventType, PartitionKey};
use crate::domain::ids::{AffiliateId, BuyerId, Category, OrderId, ReferralCode, Sku};
use crate::domain::order::{
    eligible, Attribution, CommissionStatus, CreateOrder, EventSummary, NewItem, NewOrder, OrderItem, OrderRecord,
    OrderState, OrderStatus,
};
use crate::store::{corrupt, Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::collections::{HashMap, HashSet};

/// One order of an intake batch, as its rows will hold it.
struct IntakeRow {
    n: usize,
    affiliate_id: Option<AffiliateId>,
    note: Option<&'static str>,
    placed_at: String,
    total: String,
    eligible: String,
    event: EventRef,
}

impl SqliteStore {
    /// Intake of several orders (one or more) in ONE write transaction: the
    /// lookup (program version, ids taken, attributions), the multi-row
    /// inserts (chunked within SQLite's parameter limit) and the commit. Each
    /// order is answered on its own (accepted, duplicate, conflict, wrong
    /// currency). If a statement of the batch fails (a row the database
    /// refuses), nothing of the batch is kept and each order is taken again
    /// in a transaction of its own, so one bad order fails alone. The single
    /// writer means no other writer can take an id between lookup and insert.
    pub async fn create_orders(&self, orders: &[NewOrder]) -> Vec<Result<CreateOrder>> {
        if orders.is_empty() {
            return Vec::new();
        }
        let failed = match self.create_orders_tx(orders).await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
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
            StoreError::Db(e) if is_unique_violation(&e) => vec![self.existing_outcome(&orders[0]).await],
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

    /// One order in a transaction of its own (after its batch failed).
    async fn create_order(&self, order: &NewOrder) -> Result<CreateOrder> {
        match self.create_orders_tx(std::slice::from_ref(order)).await {
            Ok(mut outcomes) => outcomes.pop().ok_or_else(|| corrupt("no outcome for the order")),
            Err(StoreError::Db(e)) if is_unique_violation(&e) => self.existing_outcome(order).await,
            Err(e) => Err(e),
        }
    }

    async fn existing_outcome(&self, order: &NewOrder) -> Result<CreateOrder> {
        existing_order_outcome(&mut *self.readers.acquire().await?, order).await
    }

    /// The batch of `create_orders`, all or nothing (dropping the transaction
    /// on an error rolls it back).
    async fn create_orders_tx(&self, orders: &[NewOrder]) -> Result<Vec<CreateOrder>> {
        let mut tx = self.begin_write().await?;
        let known = intake_lookup(&mut tx, orders).await?;
        let version = known.version;
        let program = self.program_in(&mut tx, version).await?;
        let mut outcomes: Vec<Option<CreateOrder>> = orders.iter().map(|_| None).collect();

        let mut later = Vec::new(); // the id is taken, or already earlier in this batch
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
            let stamp = encode_time(now)?;
            let lease_end = encode_time(now + self.lease)?;
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
                rows.push(IntakeRow {
                    n,
                    affiliate_id,
                    note,
                    placed_at: encode_time(o.placed_at.unwrap_or(now))?,
                    total: encode_money(state.total())?,
                    eligible: encode_money(eligible(&state, &program))?,
                    event: EventRef { id: EventId::new(), partition, order_id: o.id.clone() },
                });
            }
            let version = int(version)?;
            for chunk in rows.chunks(rows_per_insert(15)) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO orders (id, buyer_id, affiliate_id, referral_code, attribution_note, currency, \
                     placed_at, status, total, original_eligible, program_version, request_hash, commission_status, \
                     created_at, updated_at) ",
                );
                q.push_values(chunk, |mut v, r| {
                    let o = &orders[r.n];
                    v.push_bind(o.id.as_str())
                        .push_bind(o.buyer_id.as_str())
                        .push_bind(r.affiliate_id.as_ref().map(|a| a.as_str()))
                        .push_bind(match &o.attribution {
                            Some(Attribution::ReferralCode(c)) => Some(c.as_str()),
                            _ => None,
                        })
                        .push_bind(r.note)
                        .push_bind(o.currency.as_str())
                        .push_bind(r.placed_at.as_str())
                        .push_bind("placed")
                        .push_bind(r.total.as_str())
                        .push_bind(r.eligible.as_str())
                        .push_bind(version)
                        .push_bind(&o.request_hash[..])
                        .push_bind("pending")
                        .push_bind(stamp.as_str())
                        .push_bind(stamp.as_str());
                });
                q.build().execute(&mut *tx).await?;
            }
            let mut items: Vec<(&OrderId, u16, &NewItem, String)> = Vec::new();
            for r in &rows {
                let o = &orders[r.n];
                for (k, item) in o.items.iter().enumerate() {
                    let line = u16::try_from(k).map_err(|_| corrupt("too many lines in an order"))?;
                    items.push((&o.id, line, item, encode_money(item.unit_price)?));
                }
            }
            for chunk in items.chunks(rows_per_insert(6)) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO order_items (order_id, sku, line_no, category, quantity, unit_price) ",
                );
                q.push_values(chunk, |mut v, (order_id, line, item, price)| {
                    v.push_bind(order_id.as_str())
                        .push_bind(item.sku.as_str())
                        .push_bind(*line)
                        .push_bind(item.category.as_str())
                        .push_bind(item.quantity)
                        .push_bind(price.as_str());
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in rows.chunks(rows_per_insert(10)) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, \
                     next_attempt_at, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut v, r| {
                    let o = &orders[r.n];
                    v.push_bind(r.event.id.to_string())
                        .push_bind(EventType::OrderPlaced.as_str())
                        .push_bind(o.id.as_str())
                        .push_bind(r.event.partition.as_str())
                        .push_bind("pending")
                        .push_bind(0i64)
                        .push_bind(o.payload.as_str())
                        .push_bind(lease_end.as_str())
                        .push_bind(stamp.as_str())
                        .push_bind(stamp.as_str());
                });
                q.build().execute(&mut *tx).await?;
            }
            for r in rows {
                outcomes[r.n] = Some(CreateOrder::Accepted(r.event));
            }
        }
        // Read in the transaction, so an id first seen in this very batch is found.
        for n in later {
            outcomes[n] = Some(existing_order_outcome(&mut tx, &orders[n]).await?);
        }
        tx.commit().await?;
        outcomes.into_iter().map(|o| o.ok_or_else(|| corrupt("an order of the batch got no outcome"))).collect()
    }

    /// The stored order with its items, ledger entries, rewards and events,
    /// read in one read transaction (one consistent snapshot).
    pub async fn order(&self, id: &OrderId) -> Result<Option<OrderRecord>> {
        let mut tx = self.readers.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT id, buyer_id, affiliate_id, referral_code, attribution_note, status, currency, placed_at, total, \
             program_version, commission_status, no_commission_reason FROM orders WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let status = parse_order_status(row.try_get("status")?)?;
        let items = load_items(&mut tx, &[id]).await?.remove(id).unwrap_or_default();
        let state = OrderState {
            buyer_id: BuyerId::from_trusted(row.try_get("buyer_id")?),
            items,
            cancelled: status == OrderStatus::Cancelled,
        };
        let events = sqlx::query("SELECT id, type, status FROM events WHERE order_id = ? ORDER BY created_at, id")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
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
        let commissions = super::ledger::order_ledger_in(&mut tx, id).await?;
        let rewards = super::ledger::order_rewards_in(&mut tx, id).await?;
        tx.commit().await?;
        let commission_status: &str = row.try_get("commission_status")?;
        Ok(Some(OrderRecord {
            id: id.clone(),
            affiliate_id: row.try_get::<Option<String>, _>("affiliate_id")?.map(AffiliateId::from_trusted),
            referral_code: row.try_get::<Option<String>, _>("referral_code")?.map(ReferralCode::from_trusted),
            attribution_note: row.try_get("attribution_note")?,
            status,
            currency: row.try_get("currency")?,
            placed_at: time(&row, "placed_at")?,
            total: money(&row, "total")?,
            program_version: row.try_get("program_version")?,
            commission_status: CommissionStatus::parse(commission_status)
                .ok_or_else(|| corrupt(format!("commission status {commission_status:?}")))?,
            no_commission_reason: row.try_get("no_commission_reason")?,
            state,
            commissions,
            rewards,
            events,
        }))
    }
}

/// Duplicate (same request: its event) or conflict (the id holds another request).
async fn existing_order_outcome(conn: &mut SqliteConnection, order: &NewOrder) -> Result<CreateOrder> {
    let row = sqlx::query(
        "SELECT o.request_hash, e.id AS event_id FROM orders o \
         JOIN events e ON e.order_id = o.id AND e.type = 'order.placed' WHERE o.id = ?",
    )
    .bind(order.id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| corrupt(format!("order {} exists without its order.placed event", order.id)))?;
    let hash: Vec<u8> = row.try_get("request_hash")?;
    if hash != order.request_hash {
        return Ok(CreateOrder::Conflict);
    }
    let event_id: String = row.try_get("event_id")?;
    Ok(CreateOrder::Duplicate(EventId::parse(&event_id).ok_or_else(|| corrupt("event id"))?))
}

/// The items of these orders, each order's in line order, keyed by order id.
pub(super) async fn load_items(
    conn: &mut SqliteConnection,
    orders: &[&OrderId],
) -> Result<HashMap<OrderId, Vec<OrderItem>>> {
    let mut items: HashMap<OrderId, Vec<OrderItem>> = HashMap::with_capacity(orders.len());
    for chunk in orders.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT order_id, sku, category, quantity, refunded, unit_price FROM order_items WHERE order_id IN (",
        );
        push_list(&mut q, chunk.iter().map(|o| o.as_str()));
        q.push(") ORDER BY order_id, line_no");
        for r in q.build().fetch_all(&mut *conn).await? {
            items.entry(OrderId::from_trusted(r.try_get("order_id")?)).or_default().push(OrderItem {
                sku: Sku::from_trusted(r.try_get("sku")?),
                category: Category::from_trusted(r.try_get("category")?),
                quantity: r.try_get("quantity")?,
                refunded: r.try_get("refunded")?,
                unit_price: money(&r, "unit_price")?,
            });
        }
    }
    Ok(items)
}

/// What intake needs to know before writing a batch.
struct IntakeLookup {
    /// The current program version.
    version: u64,
    /// Ids of the batch already taken by stored orders.
    taken: HashSet<String>,
    /// (is referral code, code or affiliate id) → affiliate id, for those that exist.
    codes: HashMap<(bool, String), String>,
}

async fn intake_lookup(conn: &mut SqliteConnection, orders: &[NewOrder]) -> Result<IntakeLookup> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM program_versions").fetch_one(&mut *conn).await?;
    let version = version.ok_or_else(|| corrupt("no program version"))?;
    let mut found = IntakeLookup {
        version: u64::try_from(version).map_err(|_| corrupt("program version"))?,
        taken: HashSet::new(),
        codes: HashMap::new(),
    };
    for chunk in orders.chunks(IN_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id FROM orders WHERE id IN (");
        push_list(&mut q, chunk.iter().map(|o| o.id.as_str()));
        q.push(")");
        found.taken.extend(q.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    }
    let (mut codes, mut ids) = (Vec::new(), Vec::new());
    for o in orders {
        match &o.attribution {
            Some(Attribution::ReferralCode(c)) => codes.push(c.as_str()),
            Some(Attribution::AffiliateId(a)) => ids.push(a.as_str()),
            None => {}
        }
    }
    for (column, values) in [("referral_code", &codes), ("id", &ids)] {
        for chunk in values.chunks(IN_CHUNK) {
            let mut q =
                QueryBuilder::<Sqlite>::new(format!("SELECT id, referral_code FROM affiliates WHERE {column} IN ("));
            push_list(&mut q, chunk.iter().copied());
            q.push(")");
            for row in q.build().fetch_all(&mut *conn).await? {
                let id: String = row.try_get("id")?;
                let code: String = row.try_get("referral_code")?;
                found.codes.insert((true, code), id.clone());
                found.codes.insert((false, id.clone()), id);
            }
        }
    }
    Ok(found)
}

pub(super) async fn insert_event(
    conn: &mut SqliteConnection,
    event: &EventRef,
    kind: EventType,
    order_id: &OrderId,
    payload: &str,
    now: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
) -> Result<()> {
    let stamp = encode_time(now)?;
    sqlx::query(
        "INSERT INTO events (id, type, order_id, partition_key, status, attempts, payload, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
    )
    .bind(event.id.to_string())
    .bind(kind.as_str())
    .bind(order_id.as_str())
    .bind(event.partition.as_str())
    .bind(payload)
    .bind(encode_time(next_attempt_at)?)
    .bind(&stamp)
    .bind(&stamp)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
