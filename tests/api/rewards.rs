//! Spending points: quotes, redemption holds (capture, release, expiry),
//! points expiry (oldest first), refunds after a redemption, replays — over
//! HTTP, on the backend of the run, each ending with a clean reconcile.
use crate::helpers::*;
use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The buyer's rewards view, read exactly.
#[derive(Debug, serde::Deserialize, PartialEq)]
struct Wallet {
    points: i128,
    held: i128,
    debt: i128,
    history: Vec<Value>,
}

async fn wallet(app: &TestApp, buyer: &str) -> Wallet {
    let r = app.get(&format!("/v1/buyers/{buyer}/rewards")).await;
    assert_eq!(r.status(), StatusCode::OK);
    serde_json::from_str(&r.text().await.expect("body")).expect("a wallet")
}

async fn hold(app: &TestApp, buyer: &str, rid: &str, points: i64) -> (StatusCode, Value) {
    let r =
        app.post(&format!("/v1/buyers/{buyer}/redemptions"), &json!({"redemption_id": rid, "points": points})).await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn act(app: &TestApp, buyer: &str, rid: &str, action: &str) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.url(&format!("/v1/buyers/{buyer}/redemptions/{rid}/{action}")))
        .bearer_auth(STOREFRONT_KEY)
        .send()
        .await
        .expect("POST");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Events of the wallet types, as the event log lists them.
async fn wallet_events(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    for kind in
        ["redemption.held", "redemption.captured", "redemption.released", "redemption.expired", "points.expired"]
    {
        let page = app.admin_get(&format!("/admin/events?type={kind}&limit=500")).await;
        all.extend(page["items"].as_array().expect("items").iter().cloned());
    }
    all
}

/// Σ of the history's points: with the debt, what the balance must be.
fn history_sum(w: &Wallet) -> i128 {
    w.history.iter().map(|e| i128::from(e["points"].as_i64().expect("points"))).sum()
}

async fn earn_worked_example(app: &TestApp, order: &str, buyer: &str) {
    app.accept(&worked_example_order(order, buyer, "code-C")).await;
    app.processed(order).await;
}

#[tokio::test]
async fn a_quote_of_the_worked_example_pays_what_the_rules_say_and_stores_nothing() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let mut body = worked_example_order("unused", "x", "code-C");
    body.as_object_mut().unwrap().remove("id");
    let events_before = app.db.int("SELECT COUNT(*) FROM events", &[]).await;
    let r = app.post("/v1/quotes", &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let q: Value = r.json().await.unwrap();
    assert_eq!(q["eligible_amount"], "2150000");
    assert_eq!(q["affiliate_id"], "C");
    let mut lines: BTreeMap<(String, String), String> = BTreeMap::new();
    for l in q["commissions"].as_array().unwrap() {
        lines.insert(
            (l["affiliate_id"].as_str().unwrap().into(), l["kind"].as_str().unwrap().into()),
            l["amount"].as_str().unwrap().into(),
        );
    }
    // The SPEC's worked example: C 95 000, B 64 500, A 21 500; x 26 500 points.
    assert_eq!(lines[&("C".into(), "commission".into())], "95000");
    assert_eq!(lines[&("B".into(), "commission".into())], "64500");
    assert_eq!(lines[&("A".into(), "commission".into())], "21500");
    assert_eq!(q["points_to_earn"], 26500);
    assert_eq!(q["spendable_points"], 0);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM events", &[]).await, events_before, "a quote stores nothing");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders", &[]).await, 0);

    // Same validation as an order: wrong currency, bad items.
    let mut bad = body.clone();
    bad["currency"] = json!("USD");
    assert_eq!(app.post("/v1/quotes", &bad).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    bad["currency"] = json!("IDR");
    bad["items"] = json!([]);
    let r = app.post("/v1/quotes", &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

/// A generated order: items of three categories, one of four attributions.
#[derive(Debug, Clone)]
struct GenOrder {
    buyer: u8,
    attribution: u8,
    items: Vec<(u8, u32, u64)>,
    minutes: i64,
}

fn gen_order() -> impl Strategy<Value = GenOrder> {
    (0u8..3, 0u8..5, prop::collection::vec((0u8..3, 1u32..4, 1u64..400), 1..4), 0i64..600)
        .prop_map(|(buyer, attribution, items, minutes)| GenOrder { buyer, attribution, items, minutes })
}

impl GenOrder {
    fn body(&self, id: &str, base: chrono::DateTime<chrono::Utc>) -> Value {
        let categories = ["fashion", "electronics", "gift-card"];
        let items: Vec<Value> = self
            .items
            .iter()
            .enumerate()
            .map(|(n, (c, q, p))| {
                json!({"sku": format!("sku-{n}"), "category": categories[usize::from(*c)], "quantity": q,
                    "unit_price": (p * 5_000).to_string()})
            })
            .collect();
        let placed_at = (base + chrono::Duration::minutes(self.minutes)).to_rfc3339();
        let mut body = json!({"id": id, "buyer_id": format!("buyer-{}", self.buyer), "currency": "IDR",
            "placed_at": placed_at, "items": items});
        match self.attribution {
            0 => body["referral_code"] = json!("code-A"),
            1 => body["referral_code"] = json!("code-B"),
            2 => body["affiliate_id"] = json!("C"),
            3 => body["referral_code"] = json!("code-nobody"),
            _ => {}
        }
        body
    }
}

/// (affiliate, level, kind) → amount, and (kind) → points, of a quote.
type Lines = (BTreeMap<(String, u64, String), String>, BTreeMap<String, i64>);

fn quote_lines(q: &Value) -> Lines {
    let mut c = BTreeMap::new();
    for l in q["commissions"].as_array().unwrap() {
        c.insert(
            (
                l["affiliate_id"].as_str().unwrap().into(),
                l["level"].as_u64().unwrap(),
                l["kind"].as_str().unwrap().into(),
            ),
            l["amount"].as_str().unwrap().into(),
        );
    }
    let mut r = BTreeMap::new();
    for l in q["rewards"].as_array().unwrap() {
        r.insert(l["kind"].as_str().unwrap().into(), l["points"].as_i64().unwrap());
    }
    (c, r)
}

fn order_lines(o: &Value) -> Lines {
    let mut c: BTreeMap<(String, u64, String), rust_decimal::Decimal> = BTreeMap::new();
    for l in o["commissions"].as_array().unwrap() {
        *c.entry((
            l["affiliate_id"].as_str().unwrap().into(),
            l["level"].as_u64().unwrap(),
            l["kind"].as_str().unwrap().into(),
        ))
        .or_default() += dec(&l["amount"]);
    }
    let mut r: BTreeMap<String, i64> = BTreeMap::new();
    for l in o["rewards"].as_array().unwrap() {
        *r.entry(l["kind"].as_str().unwrap().into()).or_default() += l["points"].as_i64().unwrap();
    }
    (
        c.into_iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (k, v.normalize().to_string())).collect(),
        r.into_iter().filter(|(_, v)| *v != 0).collect(),
    )
}

/// Property: for any sequence of orders (tiers, milestones, first orders,
/// unknown codes, excluded categories), the quote taken just before an
/// order is placed equals the ledger and rewards the order then gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_equals_the_ledger_of_the_order_placed_after_it() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    // Tiers and milestones low enough for a handful of orders to reach them.
    app.set_program(|p| {
        p["tiers"] = json!([{"monthly_sales_from": "1000000", "bonus_rate": "0.02"}]);
        p["milestones"] =
            json!([{"nth_order_in_month": 2, "bonus": "25000"}, {"nth_order_in_month": 4, "bonus": "7000"}]);
        p["min_order_amount"] = json!("20000");
    })
    .await;
    let base = chrono::Utc::now() - chrono::Duration::hours(12);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 12,
        failure_persistence: None,
        ..Default::default()
    });
    let strategy = prop::collection::vec(gen_order(), 3..6);
    let seq = std::sync::atomic::AtomicU32::new(0);
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        runner
            .run(&strategy, |orders| {
                handle.block_on(async {
                    for order in &orders {
                        let id = format!("q-{}", seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
                        let body = order.body(&id, base);
                        let r = app.post("/v1/quotes", &body).await;
                        prop_assert_eq!(r.status(), StatusCode::OK);
                        let quote: Value = r.json().await.unwrap();
                        app.accept(&body).await;
                        let placed = app.processed(&id).await;
                        prop_assert_eq!(&quote["eligible_amount"], &placed["eligible_amount"]);
                        prop_assert_eq!(quote_lines(&quote), order_lines(&placed), "order {}: {}", id, body);
                    }
                    Ok(())
                })
            })
            .unwrap_or_else(|e| panic!("{e}"));
    });
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_hold_is_captured_or_released_once_and_every_repeat_is_idempotent() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    earn_worked_example(&app, "o-1", "x").await;
    assert_eq!(wallet(&app, "x").await.points, 26500);

    let (status, r1) = hold(&app, "x", "r-1", 500).await;
    assert_eq!(status, StatusCode::CREATED, "{r1}");
    assert_eq!((r1["status"].as_str(), r1["value"].as_str()), (Some("held"), Some("500")));
    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.held, w.debt), (26000, 500, 0));
    // The same hold again: 200, the same redemption; another body: 409.
    let (status, again) = hold(&app, "x", "r-1", 500).await;
    assert_eq!((status, &again["created_at"]), (StatusCode::OK, &r1["created_at"]));
    assert_eq!(hold(&app, "x", "r-1", 501).await.0, StatusCode::CONFLICT);

    let (status, captured) = act(&app, "x", "r-1", "capture").await;
    assert_eq!((status, captured["status"].as_str()), (StatusCode::OK, Some("captured")));
    assert_eq!(act(&app, "x", "r-1", "capture").await.0, StatusCode::OK, "capture is idempotent");
    assert_eq!(act(&app, "x", "r-1", "release").await.0, StatusCode::CONFLICT, "release after capture");

    assert_eq!(hold(&app, "x", "r-2", 1000).await.0, StatusCode::CREATED);
    assert_eq!(wallet(&app, "x").await.points, 25000);
    let (status, released) = act(&app, "x", "r-2", "release").await;
    assert_eq!((status, released["status"].as_str()), (StatusCode::OK, Some("released")));
    assert_eq!(act(&app, "x", "r-2", "release").await.0, StatusCode::OK, "release is idempotent");
    assert_eq!(act(&app, "x", "r-2", "capture").await.0, StatusCode::CONFLICT, "capture after release");
    assert_eq!(act(&app, "x", "r-9", "capture").await.0, StatusCode::NOT_FOUND);

    // More than spendable: 422, nothing written.
    let events = app.db.int("SELECT COUNT(*) FROM events", &[]).await;
    let (status, problem) = hold(&app, "x", "r-3", 26001).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "points");
    for bad in [
        json!({"redemption_id": "r-4", "points": 0}),
        json!({"redemption_id": "r 4", "points": 1}),
        json!({"redemption_id": "r-4", "points": -5}),
        json!({"redemption_id": "r-4", "points": 1e20}),
    ] {
        assert_eq!(
            app.post("/v1/buyers/x/redemptions", &bad).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    assert_eq!(hold(&app, "nobody", "r-5", 1).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM events", &[]).await, events, "refused holds store nothing");

    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.held, w.debt), (26000, 0, 0));
    assert_eq!(history_sum(&w), w.points - w.debt);
    let kinds: Vec<&str> = w.history.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["points", "first_order_bonus", "redemption", "redemption", "redemption_released"]);
    // Each change is an event in the log, applied (done), with no order.
    let events = wallet_events(&app).await;
    let mut types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["redemption.captured", "redemption.held", "redemption.held", "redemption.released"]);
    assert!(events.iter().all(|e| e["status"] == "done" && e["order_id"].is_null()), "{events:?}");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn an_uncaptured_hold_expires_after_its_hold_time_and_its_points_come_back() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.set_program(|p| p["buyer_rewards"]["redemption_hold_minutes"] = json!(5)).await;
    earn_worked_example(&app, "o-1", "x").await;
    let (status, r) = hold(&app, "x", "r-1", 6500).await;
    assert_eq!(status, StatusCode::CREATED);
    let until = chrono::DateTime::parse_from_rfc3339(r["hold_until"].as_str().unwrap()).unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(until - created, chrono::Duration::minutes(5));
    assert_eq!(wallet(&app, "x").await.held, 6500);

    // The hold time passes: the scheduler's sweep gives the points back.
    app.db.set_time("redemptions", "hold_until", "r-1", chrono::Utc::now() - chrono::Duration::seconds(1)).await;
    let back = poll(Duration::from_secs(15), || async { wallet(&app, "x").await.held == 0 }).await;
    assert!(back, "the expired hold was not given back");
    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.held), (26500, 0));
    let (status, problem) = act(&app, "x", "r-1", "capture").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(act(&app, "x", "r-1", "release").await.1["status"], "expired");
    assert_eq!(wallet_events(&app).await.iter().filter(|e| e["type"] == "redemption.expired").count(), 1);

    // A hold past its time that the sweep has not reached yet is not captured either.
    assert_eq!(hold(&app, "x", "r-2", 100).await.0, StatusCode::CREATED);
    app.db.set_time("redemptions", "hold_until", "r-2", chrono::Utc::now() - chrono::Duration::seconds(1)).await;
    let (status, _) = act(&app, "x", "r-2", "capture").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(wallet(&app, "x").await.points, 26500);
    app.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_holds_on_a_balance_that_covers_five_exactly_five_succeed() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    earn_worked_example(&app, "o-1", "x").await;
    assert_eq!(wallet(&app, "x").await.points, 26500);
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for n in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { hold(&app, "x", &format!("r-{n}"), 5300).await.0 }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count();
    assert_eq!((created, refused), (5, 15), "{statuses:?}");
    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.held), (0, 26500));
    assert_eq!(app.db.int("SELECT COUNT(*) FROM redemptions", &[]).await, 5);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn points_expire_oldest_first_and_released_points_of_an_expired_lot_expire_too() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.set_program(|p| p["buyer_rewards"]["points_expire_days"] = json!(30)).await;
    earn_worked_example(&app, "o-1", "x").await; // 26 500 (with the first-order bonus)
    earn_worked_example(&app, "o-2", "x").await; // 21 500
    let w = wallet(&app, "x").await;
    assert_eq!(w.points, 48000);
    let expiries: Vec<&Value> = w.history.iter().map(|e| &e["expires_at"]).collect();
    assert!(expiries.iter().all(|e| e.is_string()), "earned points carry their expiry: {expiries:?}");

    // 6 500 held: taken from the oldest lot (o-1's), which expires first.
    assert_eq!(hold(&app, "x", "r-1", 6500).await.0, StatusCode::CREATED);
    // o-1's lot reaches its expiry.
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    app.db.set_time_where("reward_entries", "expires_at", "order_id", "o-1", past).await;
    app.db.set_time("buyers", "expire_due_at", "x", past).await;
    let expired = poll(Duration::from_secs(15), || async { wallet(&app, "x").await.points == 21500 }).await;
    assert!(expired, "o-1's remaining 20 000 points did not expire: {:?}", wallet(&app, "x").await);
    let w = wallet(&app, "x").await;
    let last = w.history.last().unwrap();
    assert_eq!((last["kind"].as_str(), last["points"].as_i64()), (Some("expired"), Some(-20000)));

    // The hold is released: its points go back to o-1's lot, which has expired.
    assert_eq!(act(&app, "x", "r-1", "release").await.0, StatusCode::OK);
    let again = poll(Duration::from_secs(15), || async {
        let w = wallet(&app, "x").await;
        w.points == 21500 && w.history.last().is_some_and(|e| e["kind"] == "expired")
    })
    .await;
    assert!(again, "released points of an expired lot did not expire: {:?}", wallet(&app, "x").await);
    let w = wallet(&app, "x").await;
    assert_eq!(history_sum(&w), 21500);
    assert_eq!(
        w.history.iter().filter(|e| e["kind"] == "expired").map(|e| e["points"].as_i64().unwrap()).sum::<i64>(),
        -26500
    );
    assert_eq!(wallet_events(&app).await.iter().filter(|e| e["type"] == "points.expired").count(), 2);
    // o-2's points stay until their own expiry.
    assert_eq!(app.db.int("SELECT COUNT(*) FROM buyers WHERE expire_due_at IS NOT NULL", &[]).await, 1);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_refund_after_a_redemption_leaves_a_debt_that_later_earnings_pay() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    earn_worked_example(&app, "o-1", "x").await;
    assert_eq!(hold(&app, "x", "r-1", 26000).await.0, StatusCode::CREATED);
    assert_eq!(act(&app, "x", "r-1", "capture").await.0, StatusCode::OK);
    // The electronics item comes back: −20 000 points, of which 19 500 were spent.
    let r = app
        .post("/v1/orders/o-1/refunds", &json!({"refund_id": "rf-1", "items": [{"sku": "phone", "quantity": 1}]}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let reversed = poll(Duration::from_secs(15), || async { wallet(&app, "x").await.debt == 19500 }).await;
    assert!(reversed, "{:?}", wallet(&app, "x").await);
    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.debt), (0, 19500), "the balance never goes negative; the rest is a debt");
    assert_eq!(history_sum(&w), -19500);
    assert_eq!(hold(&app, "x", "r-2", 1).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    app.assert_reconciled().await;

    // The next order's 21 500 points pay the debt first.
    earn_worked_example(&app, "o-2", "x").await;
    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.debt), (2000, 0));
    assert_eq!(hold(&app, "x", "r-3", 2000).await.0, StatusCode::CREATED);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn replaying_every_wallet_event_changes_nothing() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    earn_worked_example(&app, "o-1", "x").await;
    hold(&app, "x", "r-1", 100).await;
    act(&app, "x", "r-1", "capture").await;
    hold(&app, "x", "r-2", 200).await;
    act(&app, "x", "r-2", "release").await;
    hold(&app, "x", "r-3", 300).await;
    let before = wallet(&app, "x").await;
    let events = wallet_events(&app).await;
    assert_eq!(events.len(), 5);
    for e in &events {
        let id = e["id"].as_str().unwrap();
        let r = app.admin_post(&format!("/admin/events/{id}/replay"), &json!({})).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "replay {id}");
        let detail = app.admin_get(&format!("/admin/events/{id}")).await;
        assert_eq!(detail["replay_history"].as_array().unwrap().len(), 1, "the replay is recorded");
        assert_eq!(detail["status"], "done");
    }
    // Order events are replayed too, for good measure: unlike wallet events
    // they are journaled again and processed again (found done).
    let order = app.get_json("/v1/orders/o-1").await;
    let order_events = order["events"].as_array().unwrap();
    // Nothing else of this instance's is in flight or left to settle (only
    // order events are journaled), so the settled count grows by the replays only.
    let quiet = poll(Duration::from_secs(15), || async { app.tree_stats().await.inflight == 0 }).await;
    assert!(quiet, "entries still in flight before the replays: {:?}", app.tree_stats().await);
    let settled_before = app.tree_stats().await.settled;
    for e in order_events {
        let r = app.admin_post(&format!("/admin/events/{}/replay", e["id"].as_str().unwrap()), &json!({})).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "replay {e}");
    }
    let replayed = order_events.len() as u64;
    let processed_again = poll(Duration::from_secs(15), || async {
        let stats = app.tree_stats().await;
        stats.settled >= settled_before + replayed && stats.inflight == 0
    })
    .await;
    assert!(
        processed_again,
        "the {replayed} replayed order event(s) were not journaled and processed again within 15 s \
         (settled before: {settled_before}, now: {:?})",
        app.tree_stats().await
    );
    assert_eq!(wallet(&app, "x").await, before);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM reward_entries", &[]).await, 2 + 4);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn reconcile_names_a_wallet_whose_entries_disagree_with_its_redemption() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    earn_worked_example(&app, "o-1", "x").await;
    hold(&app, "x", "r-1", 100).await;
    app.assert_reconciled().await;
    // Tampering: the hold is marked released but no points came back.
    app.db.exec("UPDATE redemptions SET status = 'released' WHERE id = 'r-1'", &[]).await;
    let report = app.reconcile().await;
    assert_eq!(report["ok"], false);
    let kinds: Vec<&str> =
        report["violations"].as_array().unwrap().iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"redemption_entries_mismatch"), "{report}");
    assert!(kinds.contains(&"wallet_balance_mismatch"), "{report}");
    assert_eq!(report["checked"]["wallets"], 1);
}

#[tokio::test]
async fn a_wallet_transaction_failing_before_its_commit_changes_nothing_and_a_retry_lands_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.set_program(|p| p["buyer_rewards"]["points_expire_days"] = json!(30)).await;
    earn_worked_example(&app, "o-1", "x").await;
    let before = wallet(&app, "x").await;
    let events = app.db.int("SELECT COUNT(*) FROM events", &[]).await;

    // A hold whose transaction fails after writing everything: 500, nothing kept.
    app.faults.fail_wallet_mid_tx(1);
    let (status, problem) = hold(&app, "x", "r-1", 500).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{problem}");
    assert_eq!(wallet(&app, "x").await, before);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM redemptions", &[]).await, 0);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM events", &[]).await, events);
    // The storefront retries: the hold lands once.
    assert_eq!(hold(&app, "x", "r-1", 500).await.0, StatusCode::CREATED);
    assert_eq!(hold(&app, "x", "r-1", 500).await.0, StatusCode::OK);

    // A capture and a release that fail leave the hold as it was.
    app.faults.fail_wallet_mid_tx(1);
    assert_eq!(act(&app, "x", "r-1", "capture").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.db.one("SELECT status FROM redemptions WHERE id = 'r-1'", &[]).await, "held");
    assert_eq!(act(&app, "x", "r-1", "capture").await.0, StatusCode::OK);
    assert_eq!(hold(&app, "x", "r-2", 700).await.0, StatusCode::CREATED);
    app.faults.fail_wallet_mid_tx(1);
    assert_eq!(act(&app, "x", "r-2", "release").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.held), (25300, 700));
    assert_eq!(act(&app, "x", "r-2", "release").await.0, StatusCode::OK);

    // The expiry sweep fails three times; the fourth sweep expires the lot once.
    app.faults.fail_wallet_mid_tx(3);
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    app.db.set_time_where("reward_entries", "expires_at", "order_id", "o-1", past).await;
    app.db.set_time("buyers", "expire_due_at", "x", past).await;
    let expired = poll(Duration::from_secs(15), || async { wallet(&app, "x").await.points == 0 }).await;
    assert!(expired, "{:?}", wallet(&app, "x").await);
    assert_eq!(app.faults.wallet_failures_left(), 0, "the sweep met every injected failure");
    let w = wallet(&app, "x").await;
    let expired: Vec<i64> =
        w.history.iter().filter(|e| e["kind"] == "expired").map(|e| e["points"].as_i64().unwrap()).collect();
    assert_eq!(expired, [-26000], "expired exactly once: what was left after the captured 500");
    assert_eq!(history_sum(&w), 0);
    app.assert_reconciled().await;
}

/// Orders earning and refunds reversing a buyer's points while its
/// storefront holds, captures and releases them: every writer of the
/// buyer's entries takes the buyer's row first, so the history replays in
/// commit order and reconcile finds every lot exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_racing_the_event_transactions_of_the_same_buyer_keep_the_wallet_exact() {
    let app = std::sync::Arc::new(spawn_app().await);
    abc_tree(&app).await;
    app.set_program(|p| p["buyer_rewards"]["points_expire_days"] = json!(30)).await;
    earn_worked_example(&app, "o-0", "x").await;
    let orders = {
        let app = app.clone();
        tokio::spawn(async move {
            for n in 1..=30 {
                let id = format!("o-{n}");
                let code = ["code-A", "code-B", "code-C"][n % 3];
                app.accept(&simple_order(&id, "x", Some(code), "300000")).await;
                if n % 5 == 0 {
                    let r = app
                        .post(
                            &format!("/v1/orders/{id}/refunds"),
                            &json!({"refund_id": format!("rf-{n}"), "items": [{"sku": "item", "quantity": 1}]}),
                        )
                        .await;
                    assert!(r.status().is_success(), "refund {id}: {}", r.status());
                }
            }
        })
    };
    let holds = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut held = 0;
            // Each hold takes everything spendable, so a refund's reversal
            // landing next to it decides whether the lots cover the hold.
            for n in 0..60 {
                let rid = format!("r-{n}");
                let spendable = i64::try_from(wallet(&app, "x").await.points).unwrap();
                if spendable > 0 && hold(&app, "x", &rid, spendable).await.0 == StatusCode::CREATED {
                    held += 1;
                    let action = if n % 4 == 0 { "capture" } else { "release" };
                    assert_eq!(act(&app, "x", &rid, action).await.0, StatusCode::OK);
                }
            }
            held
        })
    };
    orders.await.expect("orders");
    let held = holds.await.expect("holds");
    assert!(held >= 3, "only {held} holds landed: the race did not happen");
    for n in 1..=30 {
        app.processed(&format!("o-{n}")).await;
    }
    let w = wallet(&app, "x").await;
    assert_eq!(history_sum(&w), w.points - w.debt);
    assert_eq!(w.held, 0);
    app.assert_reconciled().await;
}

/// Redis gone (the journal unreachable; in the embedded mode, held back):
/// holds, captures and releases need no journal and still land exactly
/// once; orders accepted meanwhile earn their points once it is back.
#[tokio::test]
async fn holds_work_while_the_journal_is_gone_and_the_ledger_stays_exact() {
    let mut app = spawn_app().await;
    abc_tree(&app).await;
    earn_worked_example(&app, "o-1", "x").await;
    app.shutdown().await;
    let faults = komisi::engine::faults::Faults::default();
    match test_backend() {
        TestBackend::MySql => app.config.redis_url = Some("redis://127.0.0.1:1".into()),
        TestBackend::Sqlite => faults.journal_down(true),
    }
    app.restart(faults).await;

    assert_eq!(hold(&app, "x", "r-1", 6500).await.0, StatusCode::CREATED);
    assert_eq!(act(&app, "x", "r-1", "capture").await.0, StatusCode::OK);
    assert_eq!(hold(&app, "x", "r-2", 1000).await.0, StatusCode::CREATED);
    assert_eq!(act(&app, "x", "r-2", "release").await.0, StatusCode::OK);
    // Holds journal nothing: the only journal write from here is o-2's.
    let failures_before = app.tree_stats().await.publish_failures;
    app.accept(&worked_example_order("o-2", "x", "code-C")).await;
    let tried =
        poll(Duration::from_secs(15), || async { app.tree_stats().await.publish_failures > failures_before }).await;
    assert!(
        tried,
        "o-2's event was not offered to the (unreachable) journal within 15 s: {:?}",
        app.tree_stats().await
    );
    assert_eq!(app.get_json("/v1/orders/o-2").await["commission_status"], "pending", "o-2 waits for the journal");
    let w = wallet(&app, "x").await;
    assert_eq!((w.points, w.held), (20000, 0), "o-2 waits for the journal; the holds did not");

    app.shutdown().await;
    app.journal_back();
    app.restart(komisi::engine::faults::Faults::default()).await;
    app.processed("o-2").await;
    let w = wallet(&app, "x").await;
    assert_eq!(w.points, 20000 + 21500);
    assert_eq!(history_sum(&w), w.points);
    app.assert_reconciled().await;
}

/// `/admin/events/counts` reads the done events as the tallies less the
/// open ones: every writer of events (intake, the order lifecycle, wallets)
/// adds to them in its own transaction, reconcile's full sweep checks them,
/// and migration 0025 fills them from the events already stored.
#[tokio::test]
async fn event_counts_come_from_tallies_every_writer_keeps_and_reconcile_checks() {
    use crate::lifecycle::{lifecycle, refund};
    let app = spawn_app().await;
    abc_tree(&app).await;
    for order in ["o-1", "o-2", "o-3"] {
        earn_worked_example(&app, order, "x").await;
    }
    assert_eq!(lifecycle(&app, "o-1", "complete").await.0, StatusCode::ACCEPTED);
    assert_eq!(refund(&app, "o-2", "r-1", json!([{"sku": "shirt", "quantity": 1}])).await.0, StatusCode::ACCEPTED);
    assert_eq!(lifecycle(&app, "o-3", "cancel").await.0, StatusCode::ACCEPTED);
    assert_eq!(hold(&app, "x", "h-1", 500).await.0, StatusCode::CREATED);
    assert_eq!(act(&app, "x", "h-1", "capture").await.0, StatusCode::OK);
    let settled = poll(Duration::from_secs(15), || async {
        app.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await == 0
    })
    .await;
    assert!(settled, "{}", app.admin_get("/admin/events/counts").await);

    let kinds = ["order.placed", "order.completed", "order.refunded", "order.cancelled"]
        .into_iter()
        .chain(["redemption.held", "redemption.captured"]);
    let mut all = 0;
    for kind in kinds {
        let stored = app.db.int("SELECT COUNT(*) FROM events WHERE type = ?", &[kind]).await;
        let counts = app.admin_get(&format!("/admin/events/counts?type={kind}")).await;
        assert!(stored > 0, "the test makes {kind} events");
        assert_eq!(counts["done"].as_i64(), Some(stored), "{kind}: {counts}");
        all += stored;
    }
    assert_eq!(app.admin_get("/admin/events/counts").await["done"].as_i64(), Some(all));
    app.assert_reconciled().await;

    // One tally off: the counts show it, and reconcile names it.
    app.db.exec("INSERT INTO event_tallies (type, shard, n) VALUES ('order.refunded', 999, 1)", &[]).await;
    assert_eq!(app.admin_get("/admin/events/counts").await["done"].as_i64(), Some(all + 1));
    let report = app.reconcile().await;
    let kinds: Vec<&str> =
        report["violations"].as_array().unwrap().iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["event_tally_mismatch"], "{report}");
    assert!(report["violations"][0]["detail"].as_str().unwrap().contains("order.refunded"), "{report}");

    // The migration's fill, on a database whose events were stored before it.
    app.db.exec("DELETE FROM event_tallies", &[]).await;
    assert_eq!(app.admin_get("/admin/events/counts").await["done"].as_i64(), Some(0), "no scan behind the tallies");
    let backend = match test_backend() {
        TestBackend::MySql => "mysql",
        TestBackend::Sqlite => "sqlite",
    };
    let migration =
        std::fs::read_to_string(format!("{}/migrations/{backend}/0025_event_tallies.sql", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let fill = migration.lines().find(|l| l.starts_with("INSERT INTO event_tallies")).expect("the fill");
    app.db.exec(fill.trim_end_matches(';'), &[]).await;
    assert_eq!(app.admin_get("/admin/events/counts").await["done"].as_i64(), Some(all));
    app.assert_reconciled().await;
}
