//! Events of different orders applied in one shared transaction: the ledger
//! must be exactly what applying them one by one writes, a failing batch must
//! write nothing, and its events must then land one by one.
use crate::helpers::*;
use crate::lifecycle::{lifecycle, refund};
use komisi::domain::event::EventId;
use komisi::engine::apply::{apply_batch, apply_event, apply_events, Outcome};
use komisi::engine::faults::Faults;
use komisi::store::Backend;
use reqwest::StatusCode;
use serde_json::json;

/// An instance whose journal is unreachable: orders are committed and their
/// events stay pending, so the test decides how they are applied.
async fn spawn_without_journal() -> (TestApp, Box<dyn Backend>) {
    let app = spawn_app_without_journal().await;
    let store = open_store(&app.config, 2).await;
    (app, store)
}

/// Open events, oldest first.
async fn open_events(db: &TestDb) -> Vec<EventId> {
    db.column("SELECT id FROM events WHERE status <> 'done' ORDER BY created_at, id", &[])
        .await
        .iter()
        .map(|id| EventId::parse(id).expect("event id"))
        .collect()
}

/// A tree with a suspended ancestor, and orders that exercise every rule:
/// levels, category rate, exclusion, minimum, milestone (C's 3rd order of the
/// month), a buyer's second order, an unattributed order.
async fn first_wave(app: &TestApp) {
    abc_tree(app).await;
    app.create_affiliate("X", None).await;
    app.create_affiliate("Y", Some("X")).await;
    app.create_affiliate("Z", Some("Y")).await;
    assert_eq!(app.patch("/v1/affiliates/Y", &json!({"status": "suspended"})).await.status(), StatusCode::OK);
    app.accept(&worked_example_order("o-1", "b-1", "code-C")).await;
    app.accept(&simple_order("o-2", "b-2", Some("code-C"), "600000")).await;
    app.accept(&simple_order("o-3", "b-3", Some("code-C"), "80000")).await;
    app.accept(&worked_example_order("o-4", "b-1", "code-Z")).await;
    app.accept(&simple_order("o-5", "b-4", None, "300000")).await;
    app.accept(&simple_order("o-6", "b-5", Some("code-B"), "10000")).await;
    app.accept(&simple_order("o-7", "b-6", Some("code-A"), "900000")).await;
}

/// Refunds, a cancellation, a completion, and orders under a new program
/// version without a holding period (approved inside the same transaction).
async fn second_wave(app: &TestApp) {
    let (status, body) = refund(app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = refund(app, "o-4", "r-2", json!([{"sku": "shirt", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(lifecycle(app, "o-2", "cancel").await.0, StatusCode::ACCEPTED);
    assert_eq!(lifecycle(app, "o-7", "complete").await.0, StatusCode::ACCEPTED);
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    app.accept(&simple_order("o-8", "b-7", Some("code-C"), "250000")).await;
    app.accept(&simple_order("o-9", "b-2", Some("code-Z"), "400000")).await;
}

/// A completion without a holding period (approved by the same transaction,
/// unless the scheduler gets there first), a refund, a new order.
async fn third_wave(app: &TestApp) {
    assert_eq!(lifecycle(app, "o-8", "complete").await.0, StatusCode::ACCEPTED);
    let (status, body) = refund(app, "o-9", "r-4", json!([{"sku": "item", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.accept(&simple_order("o-11", "b-9", Some("code-Z"), "120000")).await;
}

/// Everything the ledger side of the database says, by order id (event ids
/// differ between databases).
async fn snapshot(db: &TestDb) -> Vec<String> {
    let queries = [
        "SELECT 'ledger', l.order_id, e.type, l.affiliate_id, l.level, l.kind, l.amount, l.status, l.rule_version \
         FROM ledger_entries l JOIN events e ON e.id = l.event_id",
        "SELECT 'reward', r.order_id, e.type, r.buyer_id, r.kind, r.points \
         FROM reward_entries r JOIN events e ON e.id = r.event_id",
        "SELECT 'affiliate', id, pending, approved, paid FROM affiliates",
        "SELECT 'buyer', id, points FROM buyers",
        "SELECT 'order', id, commission_status, COALESCE(no_commission_reason, '-'), COALESCE(context, '-'), \
         approved_at IS NULL FROM orders",
        "SELECT 'event', order_id, type, status, attempts FROM events",
    ];
    let mut lines = Vec::new();
    for q in queries {
        // NULL cells are left out, as CONCAT_WS leaves them out.
        lines.extend(db.rows(q, &[]).await.into_iter().map(|r| r.into_iter().flatten().collect::<Vec<_>>().join("|")));
    }
    lines.sort();
    lines
}

fn applied(outcomes: &[Outcome]) -> usize {
    outcomes.iter().filter(|o| matches!(o, Outcome::Applied { .. })).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_exactly_what_one_by_one_application_writes() {
    let (batched, batch_store) = spawn_without_journal().await;
    let (alone, alone_store) = spawn_without_journal().await;
    let none = Faults::default();
    for wave in 1..=3 {
        for app in [&batched, &alone] {
            match wave {
                1 => first_wave(app).await,
                2 => second_wave(app).await,
                _ => third_wave(app).await,
            }
        }
        let ids = open_events(&batched.db).await;
        assert!(ids.len() >= 3, "a wave opens several events");
        let outcomes = apply_events(batch_store.as_ref(), &none, &ids).await.expect("batch applies");
        assert_eq!(applied(&outcomes), ids.len());
        for id in open_events(&alone.db).await {
            let outcome = apply_event(alone_store.as_ref(), &none, id).await.expect("applies");
            assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
        }
        assert!(open_events(&batched.db).await.is_empty());
        assert_eq!(snapshot(&batched.db).await, snapshot(&alone.db).await);
    }
    // Not vacuous: the waves paid levels, bonuses and rewards, clawed some
    // back, and approved the orders without a holding period.
    let lines = snapshot(&batched.db).await;
    for needle in [
        "ledger|o-1|order.placed|C|1|commission|",
        "ledger|o-1|order.placed|A|3|commission|",
        "ledger|o-3|order.placed|C|1|milestone_bonus|",
        "ledger|o-4|order.placed|X|2|commission|",
        "ledger|o-1|order.refunded|C|1|commission|-",
        "ledger|o-2|order.cancelled|C|1|commission|-",
        "ledger|o-8|order.placed|C|1|commission|25000|approved|",
        "ledger|o-9|order.refunded|Z|1|commission|-",
        "reward|o-5|order.placed|b-4|",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(needle)), "no line starting {needle} in {lines:#?}");
    }
    batched.assert_ledger_consistent().await;
    // Replaying the batch changes nothing.
    let ids: Vec<EventId> =
        batched.db.column("SELECT id FROM events", &[]).await.iter().map(|id| EventId::parse(id).unwrap()).collect();
    let again = apply_events(batch_store.as_ref(), &none, &ids).await.expect("replay");
    assert!(again.iter().all(|o| matches!(o, Outcome::AlreadyDone { .. })), "{again:?}");
    assert_eq!(snapshot(&batched.db).await, lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_writes_nothing_and_its_events_then_land_one_by_one() {
    let (batched, store) = spawn_without_journal().await;
    let (alone, alone_store) = spawn_without_journal().await;
    first_wave(&batched).await;
    first_wave(&alone).await;
    let untouched = snapshot(&batched.db).await;
    let ids = open_events(&batched.db).await;

    // A database error in the middle of the shared transaction: nothing of
    // any event survives, no attempt is counted.
    let faults = Faults::default();
    faults.fail_db_mid_tx(1);
    assert!(apply_events(store.as_ref(), &faults, &ids).await.is_err());
    assert_eq!(snapshot(&batched.db).await, untouched);

    // Every transaction failing: the batch and then each event alone fail,
    // and still nothing is written.
    faults.fail_db_mid_tx(u32::MAX);
    let results = apply_batch(store.as_ref(), &faults, ids.clone()).await;
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert_eq!(snapshot(&batched.db).await, untouched);

    // One failure: the batch rolls back, then every event lands on its own.
    faults.fail_db_mid_tx(1);
    let results = apply_batch(store.as_ref(), &faults, ids.clone()).await;
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(Outcome::Applied { .. }))).count(), ids.len(), "{results:?}");
    for id in open_events(&alone.db).await {
        apply_event(alone_store.as_ref(), &Faults::default(), id).await.expect("applies");
    }
    assert_eq!(snapshot(&batched.db).await, snapshot(&alone.db).await);

    // The rest of the lifecycle, batched.
    second_wave(&batched).await;
    second_wave(&alone).await;
    let ids = open_events(&batched.db).await;
    let outcomes = apply_events(store.as_ref(), &Faults::default(), &ids).await.expect("batch applies");
    assert_eq!(applied(&outcomes), ids.len());
    for id in open_events(&alone.db).await {
        apply_event(alone_store.as_ref(), &Faults::default(), id).await.expect("applies");
    }
    assert_eq!(snapshot(&batched.db).await, snapshot(&alone.db).await);

    // Two events of one order cannot share a transaction: the batch is
    // refused whole, and applied one by one they land in order.
    for app in [&batched, &alone] {
        app.accept(&worked_example_order("o-10", "b-8", "code-B")).await;
        let (status, body) = refund(app, "o-10", "r-3", json!([{"sku": "shirt", "quantity": 2}])).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let ids = open_events(&batched.db).await;
    assert_eq!(ids.len(), 2);
    let before = snapshot(&batched.db).await;
    assert!(apply_events(store.as_ref(), &Faults::default(), &ids).await.is_err());
    assert!(apply_events(store.as_ref(), &Faults::default(), &[ids[0], ids[0]]).await.is_err());
    assert_eq!(snapshot(&batched.db).await, before);
    let results = apply_batch(store.as_ref(), &Faults::default(), ids.clone()).await;
    assert!(results.iter().all(|r| matches!(r, Ok(Outcome::Applied { .. }))), "{results:?}");
    for id in open_events(&batched.db).await {
        apply_event(store.as_ref(), &Faults::default(), id).await.expect("applies");
    }
    for id in open_events(&alone.db).await {
        apply_event(alone_store.as_ref(), &Faults::default(), id).await.expect("applies");
    }
    assert_eq!(snapshot(&batched.db).await, snapshot(&alone.db).await);
    batched.assert_ledger_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_one_affiliate_gets_the_month_facts_one_by_one_application_gets() {
    // Tiers from 150 000 of earlier volume, a milestone on the 3rd order: the
    // facts of every order of the run must be those of its place in the month.
    let (batched, batch_store) = spawn_without_journal().await;
    let (alone, alone_store) = spawn_without_journal().await;
    for app in [&batched, &alone] {
        app.set_program(|p| p["tiers"] = json!([{"monthly_sales_from": "150000", "bonus_rate": "0.02"}])).await;
        app.create_affiliate("C", None).await;
        // Placed out of id order, two at the same instant (ties by id), one in
        // the month before (Asia/Jakarta: 2026-10-31 20:00 UTC is November).
        for (id, at) in [
            ("m-1", "2026-11-10T10:00:00Z"),
            ("m-2", "2026-11-10T09:00:00Z"),
            ("m-3", "2026-11-10T11:00:00Z"),
            ("m-4", "2026-11-10T09:00:00Z"),
            ("m-5", "2026-10-31T20:00:00Z"),
            ("m-6", "2026-10-31T16:00:00Z"),
            ("m-7", "2026-11-12T00:00:00Z"),
        ] {
            let mut o = simple_order(id, &format!("b-{id}"), Some("code-C"), "100000");
            o["placed_at"] = json!(at);
            app.accept(&o).await;
        }
    }
    let ids = open_events(&batched.db).await;
    assert_eq!(applied(&apply_events(batch_store.as_ref(), &Faults::default(), &ids).await.expect("one run")), 7);
    for id in open_events(&alone.db).await {
        apply_event(alone_store.as_ref(), &Faults::default(), id).await.expect("applies");
    }
    let lines = snapshot(&batched.db).await;
    assert_eq!(lines, snapshot(&alone.db).await);
    // November by (placed_at, id): m-5, m-2, m-4, m-1, m-3, m-7 (m-6 is October).
    // m-4 is the 3rd (milestone); tiers from m-4 on (volume before ≥ 150 000).
    for needle in [
        "ledger|m-4|order.placed|C|1|milestone_bonus|",
        "ledger|m-4|order.placed|C|1|tier_bonus|",
        "ledger|m-7|order.placed|C|1|tier_bonus|",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(needle)), "no line starting {needle} in {lines:#?}");
    }
    for absent in ["ledger|m-2|order.placed|C|1|tier_bonus|", "ledger|m-6|order.placed|C|1|tier_bonus|"] {
        assert!(!lines.iter().any(|l| l.starts_with(absent)), "{absent} in {lines:#?}");
    }
    assert_eq!(lines.iter().filter(|l| l.contains("milestone_bonus")).count(), 1);
}
