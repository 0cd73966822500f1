//! The engine, unchanged, on the embedded SQLite backend: the worked example,
//! a refund, idempotency, reconcile; intake's outcomes; batched application
//! equal to one-by-one application; failure, replay and payouts; and
//! SQLite's busy error classified as a lock conflict.
use crate::helpers::{d, test_operator};
use komisi::domain::affiliate::{AffiliatePatch, AffiliateStatus, CreateAffiliate, NewAffiliate, PatchAffiliate};
use komisi::domain::event::{EventId, EventStatus};
use komisi::domain::ids::{AffiliateId, BuyerId, OrderId, ReferralCode, RefundId, Sku};
use komisi::domain::order::{CreateOrder, LifecycleOutcome, NewOrder, RefundRequest};
use komisi::domain::program::Program;
use komisi::domain::reconcile::RunKind;
use komisi::engine::apply::{apply_event, apply_events, Outcome};
use komisi::engine::faults::Faults;
use komisi::engine::intake::take_batch;
use komisi::engine::Engine;
use komisi::store::sql::SqlStore;
use komisi::store::sqlite::SqliteStore;
use komisi::store::StoreError;
use komisi::store::{Affiliates, Backend, Events, Orders, Parts, Wallets};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Executor, Row};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A database file of its own, removed (with its WAL files) at the end.
pub struct TempDb {
    pub path: PathBuf,
}

impl TempDb {
    pub fn new(what: &str) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        Self { path: std::env::temp_dir().join(format!("komisi_t_{what}_{id}.db")) }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// The SQLite file opened as the app opens it: the store, and the file's
/// writer for the test's own reads.
#[derive(Clone)]
struct Store {
    file: SqliteStore,
    store: Arc<SqlStore>,
}

impl std::ops::Deref for Store {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

impl Store {
    async fn open(url: &str, readers: u32) -> Self {
        let file = SqliteStore::connect(url, readers).await.expect("open the SQLite file");
        let store = Arc::new(SqlStore::new(Arc::new(file.clone())));
        store.migrate().await.expect("migrate");
        Self { file, store }
    }

    fn writer(&self) -> &sqlx::SqlitePool {
        self.file.writer()
    }

    /// Intake of a batch of orders, as intake's batch workers take one.
    async fn create_orders(&self, orders: &[NewOrder]) -> Vec<Result<CreateOrder, StoreError>> {
        take_batch(&*self.store, orders, Duration::from_secs(60)).await
    }
}

async fn fresh_store() -> (Store, TempDb) {
    let db = TempDb::new("sqlite");
    let store = Store::open(&db.url(), 2).await;
    (store, db)
}

fn engine(store: &Store) -> Engine {
    // Its journal is unreachable, and never needed: the test applies events itself.
    crate::helpers::engine_on(store.store.clone(), Duration::from_secs(60))
}

fn order(body: Value) -> NewOrder {
    match komisi::http::orders::parse_order_json(body.to_string().as_bytes()) {
        Ok(order) => order,
        Err(e) => panic!("order {body} does not parse: {e:?}"),
    }
}

fn worked_example(id: &str, buyer: &str, code: &str) -> NewOrder {
    order(json!({
        "id": id, "buyer_id": buyer, "referral_code": code, "currency": "IDR",
        "items": [
            {"sku": "shirt", "category": "fashion", "quantity": 2, "unit_price": "75000"},
            {"sku": "phone", "category": "electronics", "quantity": 1, "unit_price": "2000000"},
            {"sku": "voucher", "category": "gift-card", "quantity": 1, "unit_price": "100000"}
        ]
    }))
}

fn simple(id: &str, buyer: &str, code: Option<&str>, price: &str) -> NewOrder {
    let mut o = json!({
        "id": id, "buyer_id": buyer, "currency": "IDR",
        "items": [{"sku": "item", "category": "fashion", "quantity": 1, "unit_price": price}]
    });
    if let Some(code) = code {
        o["referral_code"] = json!(code);
    }
    order(o)
}

fn refund_request(order_id: &str, refund_id: &str, items: &[(&str, u32)]) -> RefundRequest {
    let lines: Vec<Value> = items.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect();
    let payload = json!({"refund_id": refund_id, "items": lines}).to_string();
    RefundRequest {
        order_id: OrderId::parse(order_id).expect("order id"),
        refund_id: RefundId::parse(refund_id).expect("refund id"),
        items: items.iter().map(|(sku, q)| (Sku::parse(sku).expect("sku"), *q)).collect(),
        request_hash: Sha256::digest(payload.as_bytes()).into(),
        payload,
    }
}

async fn create_affiliate(engine: &Engine, id: &str, parent: Option<&str>) {
    let new = NewAffiliate {
        id: AffiliateId::parse(id).expect("id"),
        name: format!("Affiliate {id}"),
        parent_id: parent.map(|p| AffiliateId::parse(p).expect("parent id")),
        referral_code: ReferralCode::parse(&format!("code-{id}")).expect("code"),
        buyer_id: None,
        email_hash: None,
    };
    let created = engine.create_affiliate(&new).await.expect("create affiliate");
    assert!(matches!(created, CreateAffiliate::Created(_)), "{created:?}");
}

async fn accept(engine: &Engine, order: NewOrder) -> EventId {
    accept_ref(engine, order).await.id
}

async fn accept_ref(engine: &Engine, order: NewOrder) -> komisi::domain::event::EventRef {
    match engine.place_order(order).await.expect("intake") {
        CreateOrder::Accepted(event) => event,
        other => panic!("order not accepted: {other:?}"),
    }
}

fn accepted(outcome: LifecycleOutcome) -> EventId {
    match outcome {
        LifecycleOutcome::Accepted(event) => event.id,
        other => panic!("not accepted: {other:?}"),
    }
}

async fn pending(store: &Store, id: &str) -> Decimal {
    store.affiliate(&AffiliateId::parse(id).unwrap()).await.expect("read").expect("affiliate").balances.pending
}

async fn points(store: &Store, buyer: &str) -> i128 {
    store.buyer_rewards(&BuyerId::parse(buyer).unwrap()).await.expect("rewards").points
}

fn is_applied(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Applied { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_on_sqlite() {
    let (store, _db) = fresh_store().await;
    let engine = engine(&store);
    create_affiliate(&engine, "A", None).await;
    create_affiliate(&engine, "B", Some("A")).await;
    create_affiliate(&engine, "C", Some("B")).await;

    let placed = order(json!({"id":"o-1","buyer_id":"x","referral_code":"code-C","currency":"IDR","items":[
        {"sku":"shirt","category":"fashion","quantity":2,"unit_price":"75000"},
        {"sku":"phone","category":"electronics","quantity":1,"unit_price":"2000000"},
        {"sku":"voucher","category":"gift-card","quantity":1,"unit_price":"100000"}]}));
    let event = accept(&engine, placed).await;
    let outcome = apply_event(&*store, &Faults::default(), event).await.expect("applies");
    assert!(is_applied(&outcome), "{outcome:?}");
    assert_eq!(pending(&store, "C").await, d("95000"));
    assert_eq!(pending(&store, "B").await, d("64500"));
    assert_eq!(pending(&store, "A").await, d("21500"));
    assert_eq!(points(&store, "x").await, 26500);
    let details = engine.order(&OrderId::parse("o-1").unwrap()).await.expect("read").expect("order");
    assert_eq!(details.record.total, d("2250000"));
    assert_eq!(details.eligible_amount, d("2150000"));
    assert_eq!(details.record.commission_status.as_str(), "processed");

    let refund = engine.refund(&refund_request("o-1", "r-1", &[("phone", 1)])).await.expect("refund");
    let refund_event = accepted(refund);
    let outcome = apply_event(&*store, &Faults::default(), refund_event).await.expect("applies");
    assert!(is_applied(&outcome), "{outcome:?}");
    assert_eq!(pending(&store, "C").await, d("15000"));
    assert_eq!(pending(&store, "B").await, d("4500"));
    assert_eq!(pending(&store, "A").await, d("1500"));
    assert_eq!(points(&store, "x").await, 6500);

    // Exactly once: the same event again writes nothing.
    let again = apply_event(&*store, &Faults::default(), refund_event).await.expect("no-op");
    assert!(matches!(again, Outcome::AlreadyDone { .. }), "{again:?}");
    assert_eq!(pending(&store, "C").await, d("15000"));
    // The same refund again is the same request: its first event.
    let repeat = engine.refund(&refund_request("o-1", "r-1", &[("phone", 1)])).await.expect("refund");
    assert!(matches!(repeat, LifecycleOutcome::Duplicate(id) if id == refund_event), "{repeat:?}");
    let other = engine.refund(&refund_request("o-1", "r-1", &[("shirt", 1)])).await.expect("refund");
    assert!(matches!(other, LifecycleOutcome::Conflict(_)), "{other:?}");

    // Stored money is the exact decimal text, as DECIMAL(28,4) holds it.
    let stored: String = sqlx::query_scalar("SELECT pending FROM affiliates WHERE id = 'C'")
        .fetch_one(store.writer())
        .await
        .expect("read");
    assert_eq!(stored, "15000.0000");

    let report = engine.reconcile().await.expect("reconcile");
    assert!(report.ok, "reconcile found violations: {:?}", report.violations);
    assert_eq!(report.checked.orders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_answers_each_order_of_a_batch_on_its_own() {
    let (store, _db) = fresh_store().await;
    let engine = engine(&store);
    create_affiliate(&engine, "A", None).await;
    let first_outcomes = store.create_orders(&[simple("o-1", "b-1", Some("code-A"), "100000")]).await;
    let Ok(CreateOrder::Accepted(first)) = &first_outcomes[0] else { panic!("{first_outcomes:?}") };

    let by_id = order(json!({"id": "o-4", "buyer_id": "b-4", "affiliate_id": "A", "currency": "IDR",
        "items": [{"sku": "item", "category": "fashion", "quantity": 1, "unit_price": "100000"}]}));
    let unknown_id = order(json!({"id": "o-5", "buyer_id": "b-5", "affiliate_id": "nobody", "currency": "IDR",
        "items": [{"sku": "item", "category": "fashion", "quantity": 1, "unit_price": "100000"}]}));
    let usd = order(json!({"id": "o-6", "buyer_id": "b-6", "currency": "USD",
        "items": [{"sku": "item", "category": "fashion", "quantity": 1, "unit_price": "10"}]}));
    let batch = [
        simple("o-1", "b-1", Some("code-A"), "100000"), // the same request again
        simple("o-1", "b-1", Some("code-A"), "999999"), // the same id, another request
        simple("o-2", "b-2", Some("code-nobody"), "100000"),
        simple("o-3", "b-3", None, "100000"),
        simple("o-3", "b-3", None, "100000"), // twice in one batch
        by_id,
        unknown_id,
        usd,
    ];
    let outcomes = store.create_orders(&batch).await;
    assert_eq!(outcomes.len(), batch.len());
    assert!(matches!(&outcomes[0], Ok(CreateOrder::Duplicate(id)) if *id == first.id), "{:?}", outcomes[0]);
    assert!(matches!(&outcomes[1], Ok(CreateOrder::Conflict)), "{:?}", outcomes[1]);
    for n in [2, 3, 5, 6] {
        assert!(matches!(&outcomes[n], Ok(CreateOrder::Accepted(_))), "{n}: {:?}", outcomes[n]);
    }
    let Ok(CreateOrder::Accepted(o3)) = &outcomes[3] else { panic!("{:?}", outcomes[3]) };
    assert!(matches!(&outcomes[4], Ok(CreateOrder::Duplicate(id)) if *id == o3.id), "{:?}", outcomes[4]);
    assert!(
        matches!(&outcomes[7], Ok(CreateOrder::Invalid(e)) if e[0].field == "currency" && e[0].message.contains("IDR"))
    );
    let record = |id: &str| {
        let (store, id) = (store.clone(), OrderId::parse(id).unwrap());
        async move { store.order(&id).await.expect("read").expect("order") }
    };
    let o2 = record("o-2").await;
    assert_eq!((o2.affiliate_id, o2.attribution_note.as_deref()), (None, Some("unknown_referral_code")));
    assert_eq!(o2.referral_code.map(|c| c.to_string()).as_deref(), Some("code-nobody"));
    let o4 = record("o-4").await;
    assert_eq!(o4.affiliate_id.map(|a| a.to_string()).as_deref(), Some("A"));
    let o5 = record("o-5").await;
    assert_eq!((o5.affiliate_id, o5.attribution_note.as_deref()), (None, Some("unknown_affiliate_id")));
    assert!(store.order(&OrderId::parse("o-6").unwrap()).await.expect("read").is_none());
    assert_eq!(o4.state.items[0].unit_price, d("100000"));

    // A batch bigger than SQLite's bound-parameter limit allows in one
    // statement (500 lines × 6 columns × 12 orders): inserted in chunks.
    let big: Vec<NewOrder> = (0..12)
        .map(|n| {
            let items: Vec<Value> = (0..500)
                .map(|k| json!({"sku": format!("s{k}"), "category": "fashion", "quantity": 1, "unit_price": "1000"}))
                .collect();
            order(json!({"id": format!("big-{n}"), "buyer_id": "b-big", "currency": "IDR", "items": items}))
        })
        .collect();
    let outcomes = store.create_orders(&big).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(CreateOrder::Accepted(_)))), "{outcomes:?}");
    assert_eq!(record("big-11").await.state.items.len(), 500);
}

/// Everything the ledger side of the database says, by order id (event ids
/// differ between databases).
async fn snapshot(store: &Store) -> Vec<String> {
    let queries = [
        "SELECT 'ledger|' || l.order_id || '|' || e.type || '|' || l.affiliate_id || '|' || l.level || '|' || l.kind \
         || '|' || l.amount || '|' || l.status || '|' || l.rule_version FROM ledger_entries l \
         JOIN events e ON e.id = l.event_id",
        "SELECT 'reward|' || r.order_id || '|' || e.type || '|' || r.buyer_id || '|' || r.kind || '|' || r.points \
         FROM reward_entries r JOIN events e ON e.id = r.event_id",
        "SELECT 'affiliate|' || id || '|' || pending || '|' || approved || '|' || paid FROM affiliates",
        "SELECT 'buyer|' || id || '|' || points FROM buyers",
        "SELECT 'order|' || id || '|' || commission_status || '|' || COALESCE(no_commission_reason, '-') || '|' \
         || COALESCE(context, '-') || '|' || (approved_at IS NULL) FROM orders",
        "SELECT 'event|' || order_id || '|' || type || '|' || status || '|' || attempts FROM events",
    ];
    let mut lines = Vec::new();
    for q in queries {
        let rows = sqlx::query(q).fetch_all(store.writer()).await.expect("snapshot");
        lines.extend(rows.iter().map(|r| r.get::<String, _>(0)));
    }
    lines.sort();
    lines
}

async fn open_events(store: &Store) -> Vec<EventId> {
    store.open_events(None, 10_000, Parts::ALL).await.expect("open events").into_iter().map(|e| e.id).collect()
}

async fn wave(engine: &Engine, n: u32) {
    let oid = |s: &str| OrderId::parse(s).unwrap();
    match n {
        1 => {
            let tree =
                [("A", None), ("B", Some("A")), ("C", Some("B")), ("X", None), ("Y", Some("X")), ("Z", Some("Y"))];
            for (id, parent) in tree {
                create_affiliate(engine, id, parent).await;
            }
            let suspend = AffiliatePatch { status: Some(AffiliateStatus::Suspended), ..AffiliatePatch::default() };
            let patched = engine
                .patch_affiliate(&AffiliateId::parse("Y").unwrap(), &suspend, &test_operator())
                .await
                .expect("patch");
            assert!(matches!(patched, PatchAffiliate::Updated(_)), "{patched:?}");
            accept(engine, worked_example("o-1", "b-1", "code-C")).await;
            accept(engine, simple("o-2", "b-2", Some("code-C"), "600000")).await;
            accept(engine, simple("o-3", "b-3", Some("code-C"), "80000")).await;
            accept(engine, worked_example("o-4", "b-1", "code-Z")).await;
            accept(engine, simple("o-5", "b-4", None, "300000")).await;
            accept(engine, simple("o-6", "b-5", Some("code-B"), "10000")).await;
            accept(engine, simple("o-7", "b-6", Some("code-A"), "900000")).await;
        }
        2 => {
            accepted(engine.refund(&refund_request("o-1", "r-1", &[("phone", 1)])).await.expect("refund"));
            accepted(engine.refund(&refund_request("o-4", "r-2", &[("shirt", 1)])).await.expect("refund"));
            accepted(engine.cancel(&oid("o-2")).await.expect("cancel"));
            accepted(engine.complete(&oid("o-7")).await.expect("complete"));
            let mut doc = Program::default_doc();
            doc.holding_days = 0;
            engine.put_program(&doc, &test_operator()).await.expect("program").expect("valid program");
            accept(engine, simple("o-8", "b-7", Some("code-C"), "250000")).await;
            accept(engine, simple("o-9", "b-2", Some("code-Z"), "400000")).await;
        }
        _ => {
            // Completed without a holding period: approved by the event's own transaction.
            accepted(engine.complete(&oid("o-8")).await.expect("complete"));
            accepted(engine.refund(&refund_request("o-9", "r-4", &[("item", 1)])).await.expect("refund"));
            accept(engine, simple("o-11", "b-9", Some("code-Z"), "120000")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_exactly_what_one_by_one_application_writes_on_sqlite() {
    let (batched, _db1) = fresh_store().await;
    let (alone, _db2) = fresh_store().await;
    let (batched_engine, alone_engine) = (engine(&batched), engine(&alone));
    let none = Faults::default();
    for n in 1..=3 {
        wave(&batched_engine, n).await;
        wave(&alone_engine, n).await;
        let ids = open_events(&batched).await;
        assert!(ids.len() >= 3, "a wave opens several events");
        let outcomes = apply_events(&*batched, &none, &ids).await.expect("batch applies");
        assert!(outcomes.iter().all(is_applied), "{outcomes:?}");
        for id in open_events(&alone).await {
            let outcome = apply_event(&*alone, &none, id).await.expect("applies");
            assert!(is_applied(&outcome), "{outcome:?}");
        }
        assert!(open_events(&batched).await.is_empty());
        assert_eq!(snapshot(&batched).await, snapshot(&alone).await, "after wave {n}");
    }
    // Not vacuous: levels, a milestone, a suspended ancestor skipped,
    // clawbacks, and an approval inside the event's transaction.
    let lines = snapshot(&batched).await;
    for needle in [
        "ledger|o-1|order.placed|C|1|commission|95000.0000|pending|1",
        "ledger|o-1|order.placed|A|3|commission|21500.0000|",
        "ledger|o-3|order.placed|C|1|milestone_bonus|",
        "ledger|o-4|order.placed|X|2|commission|",
        "ledger|o-1|order.refunded|C|1|commission|-",
        "ledger|o-2|order.cancelled|C|1|commission|-",
        "ledger|o-8|order.placed|C|1|commission|25000.0000|approved|",
        "ledger|o-9|order.refunded|Z|1|commission|-",
        "reward|o-5|order.placed|b-4|",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(needle)), "no line starting {needle} in {lines:#?}");
    }
    let report = batched_engine.reconcile().await.expect("reconcile");
    assert!(report.ok, "reconcile found violations: {:?}", report.violations);
    // Applying every event again changes nothing.
    let all: Vec<EventId> = sqlx::query_scalar::<_, String>("SELECT id FROM events")
        .fetch_all(batched.writer())
        .await
        .expect("events")
        .iter()
        .map(|id| EventId::parse(id).expect("event id"))
        .collect();
    let again = apply_events(&*batched, &none, &all).await.expect("replay");
    assert!(again.iter().all(|o| matches!(o, Outcome::AlreadyDone { .. })), "{again:?}");
    assert_eq!(snapshot(&batched).await, lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_recorded_replayed_and_then_applied_once() {
    let (store, _db) = fresh_store().await;
    let engine = engine(&store);
    create_affiliate(&engine, "A", None).await;
    let event = accept(&engine, simple("o-1", "b-1", Some("code-A"), "100000")).await;
    let before = snapshot(&store).await;

    let faults = Faults::default();
    faults.fail_db_mid_tx(1);
    let error = apply_event(&*store, &faults, event).await.expect_err("injected failure");
    assert_eq!(snapshot(&store).await, before, "a failed transaction writes nothing");
    let (status, _) = engine.record_failure(event, &error).await.expect("record failure");
    assert_eq!(status, EventStatus::Failed);
    let detail = engine.event_detail(event).await.expect("read").expect("event");
    assert_eq!((detail.event.attempts, detail.attempt_history.len()), (1, 1));
    assert!(detail.next_attempt_at > detail.event.created_at);
    let order = store.order(&OrderId::parse("o-1").unwrap()).await.expect("read").expect("order");
    assert_eq!(order.commission_status.as_str(), "failed");

    assert_eq!(engine.replay_one(event, &test_operator()).await.expect("replay"), Some(EventStatus::Pending));
    let outcome = apply_event(&*store, &Faults::default(), event).await.expect("applies");
    assert!(is_applied(&outcome), "{outcome:?}");
    assert_eq!(pending(&store, "A").await, d("10000"));
    let detail = engine.event_detail(event).await.expect("read").expect("event");
    assert_eq!(detail.replay_history.len(), 1);
    assert!(detail.applied_at.is_some());
    let report = engine.reconcile().await.expect("reconcile");
    assert!(report.ok, "reconcile found violations: {:?}", report.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_and_payouts_move_balances_exactly() {
    let (store, _db) = fresh_store().await;
    let engine = engine(&store);
    create_affiliate(&engine, "A", None).await;
    create_affiliate(&engine, "B", Some("A")).await;
    // Cents, no minimum, no milestone, no holding period: amounts with
    // decimals are added exactly (0.10 + 0.20 is 0.30, never a float's
    // 0.30000000000000004).
    let mut cents = Program::default_doc();
    cents.holding_days = 0;
    cents.scale = 2;
    cents.min_order_amount = "0".into();
    cents.milestones = Vec::new();
    engine.put_program(&cents, &test_operator()).await.expect("program").expect("valid program");
    // B (level 1, 0.10, floored to cents): 0.10 + 0.20 + 60000.05;
    // A (level 2, 0.03): 0.03 + 0.06 + 18000.01.
    for (n, price) in ["1.01", "2.02", "600000.55"].iter().enumerate() {
        let id = format!("o-{n}");
        let event = accept(&engine, simple(&id, &format!("b-{n}"), Some("code-B"), price)).await;
        assert!(is_applied(&apply_event(&*store, &Faults::default(), event).await.expect("applies")));
        let done = accepted(engine.complete(&OrderId::parse(&id).unwrap()).await.expect("complete"));
        assert!(is_applied(&apply_event(&*store, &Faults::default(), done).await.expect("applies")));
    }
    let b = store.affiliate(&AffiliateId::parse("B").unwrap()).await.expect("read").expect("B");
    assert_eq!((b.balances.pending, b.balances.approved), (d("0"), d("60000.35")));
    use komisi::domain::payout::CreatePayout;
    let CreatePayout::Created(payout) =
        engine.create_payout(d("0"), Some("key-1"), &test_operator()).await.expect("payout")
    else {
        panic!("a batch")
    };
    let CreatePayout::Repeated(same) =
        engine.create_payout(d("0"), Some("key-1"), &test_operator()).await.expect("payout")
    else {
        panic!("the same batch")
    };
    assert_eq!(payout.id, same.id);
    assert!(matches!(
        engine.create_payout(d("1"), Some("key-1"), &test_operator()).await.expect("payout"),
        CreatePayout::KeyReused { min_amount } if min_amount == d("0")
    ));
    assert_eq!(payout.total, d("78000.45"));
    assert_eq!(payout.items.len(), 2);
    let paid = engine.complete_payout(payout.id, &test_operator()).await.expect("complete").expect("payout");
    assert_eq!(paid.status, "completed");
    let b = store.affiliate(&AffiliateId::parse("B").unwrap()).await.expect("read").expect("B");
    assert_eq!((b.balances.approved, b.balances.paid), (d("0"), d("60000.35")));
    let a = store.affiliate(&AffiliateId::parse("A").unwrap()).await.expect("read").expect("A");
    assert_eq!(a.balances.paid, d("18000.10"));
    let stored: String =
        sqlx::query_scalar("SELECT paid FROM affiliates WHERE id = 'B'").fetch_one(store.writer()).await.expect("read");
    assert_eq!(stored, "60000.3500");
    assert!(engine.complete_payout(payout.id + 1, &test_operator()).await.expect("complete").is_none());
    let report = engine.reconcile().await.expect("reconcile");
    assert!(report.ok, "reconcile found violations: {:?}", report.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_busy_is_a_lock_conflict_and_other_errors_are_not() {
    let db = TempDb::new("busy");
    let options = SqliteConnectOptions::new().filename(&db.path).create_if_missing(true);
    let mut holder = sqlx::SqliteConnection::connect_with(&options).await.expect("connect");
    holder.execute("CREATE TABLE t (x INTEGER)").await.expect("create");
    let mut waiter =
        sqlx::SqliteConnection::connect_with(&options.clone().busy_timeout(Duration::ZERO)).await.expect("connect");
    holder.execute("BEGIN IMMEDIATE").await.expect("take the write lock");
    let busy = waiter.execute("BEGIN IMMEDIATE").await.expect_err("the file is locked");
    let busy = komisi::store::sqlite::classify(busy);
    assert!(busy.is_lock_conflict(), "{busy}");
    assert!(busy.is_transient(), "{busy}");
    holder.execute("ROLLBACK").await.expect("release");
    // Other errors are not.
    let syntax = komisi::store::sqlite::classify(waiter.execute("SELEKT 1").await.expect_err("syntax error"));
    assert!(!syntax.is_lock_conflict() && !syntax.is_transient(), "{syntax}");
    let unique = {
        waiter.execute("CREATE UNIQUE INDEX u ON t (x); INSERT INTO t VALUES (1)").await.expect("setup");
        komisi::store::sqlite::classify(waiter.execute("INSERT INTO t VALUES (1)").await.expect_err("duplicate"))
    };
    assert!(!unique.is_lock_conflict() && !unique.is_transient(), "{unique}");
    assert!(unique.is_duplicate(), "{unique}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_intake_and_application_share_the_one_writer() {
    let (store, _db) = fresh_store().await;
    let engine = engine(&store);
    create_affiliate(&engine, "A", None).await;
    create_affiliate(&engine, "B", Some("A")).await;
    // Requests and event applications at once: they queue for the writer,
    // none fails with SQLITE_BUSY, none is lost.
    let placed = futures::future::join_all((0..40).map(|n| {
        let engine = engine.clone();
        async move {
            let event =
                accept_ref(&engine, simple(&format!("o-{n}"), &format!("b-{}", n % 7), Some("code-B"), "100000")).await;
            engine.apply(&event, None).await.expect("applies")
        }
    }))
    .await;
    assert!(placed.iter().all(is_applied), "{placed:?}");
    // 40 orders of 100000 at level 1 (0.10) and level 2 (0.03), and the
    // milestone (25000) for B's third order of the month.
    assert_eq!(pending(&store, "B").await, d("425000"));
    assert_eq!(pending(&store, "A").await, d("120000"));
    let report = engine.reconcile().await.expect("reconcile");
    assert!(report.ok, "reconcile found violations: {:?}", report.violations);
    assert_eq!(report.checked.orders, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_is_served_by_the_writer_alone() {
    let store = Store::open("sqlite::memory:", 4).await;
    let engine = engine(&store);
    create_affiliate(&engine, "A", None).await;
    let event = accept(&engine, simple("o-1", "b-1", Some("code-A"), "100000")).await;
    assert!(is_applied(&apply_event(&*store, &Faults::default(), event).await.expect("applies")));
    assert_eq!(pending(&store, "A").await, d("10000"));
    assert!(engine.reconcile().await.expect("reconcile").ok);
    // An incremental run holds its one snapshot and finds no second
    // connection for the points check: it checks the points on the first,
    // and finds a wrong balance there.
    let event = accept(&engine, simple("o-2", "b-2", Some("code-A"), "100000")).await;
    assert!(is_applied(&apply_event(&*store, &Faults::default(), event).await.expect("applies")));
    sqlx::query("UPDATE buyers SET points = '999' WHERE id = 'b-2'").execute(store.writer()).await.unwrap();
    let run = engine.reconcile_now(RunKind::Incremental, None).await.expect("incremental reconcile");
    assert_eq!(run.checked.orders, 1);
    let kinds: Vec<_> = run.violations.iter().map(|v| (v.kind.as_str(), v.buyer_id.as_deref())).collect();
    assert!(kinds.contains(&("points_mismatch", Some("b-2"))), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_pages_reach_the_database_file_without_the_writer_checkpointing() {
    let (store, db) = fresh_store().await;
    let writer = store.writer();
    // Settle what the migrations wrote first, so only the test's rows remain.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(writer).await.unwrap();
    let before = std::fs::metadata(&db.path).unwrap().len();
    sqlx::query("CREATE TABLE t_pages (b BLOB NOT NULL)").execute(writer).await.unwrap();
    // About 2 MB in 64 commits: ~500 WAL pages, far below the writer's own
    // checkpoint mark (16 384), so only the checkpointer copies them.
    for _ in 0..64 {
        sqlx::query("INSERT INTO t_pages (b) VALUES (randomblob(32768))").execute(writer).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let grown = loop {
        let size = std::fs::metadata(&db.path).unwrap().len();
        if size >= before + 2_000_000 || std::time::Instant::now() > deadline {
            break size;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(grown >= before + 2_000_000, "the database file stayed at {grown} bytes (from {before})");
    // And the writer's statement journals are in memory, not temporary files.
    let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(writer).await.unwrap();
    assert_eq!(temp_store, 2);
}
