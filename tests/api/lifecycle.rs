//! Refunds, cancellation, completion, holding, payouts, clawbacks, reconcile.
use crate::helpers::*;
use komisi::engine::faults::Faults;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) async fn refund(app: &TestApp, order: &str, refund_id: &str, items: Value) -> (StatusCode, Value) {
    let r = app.post(&format!("/v1/orders/{order}/refunds"), &json!({"refund_id": refund_id, "items": items})).await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn lifecycle(app: &TestApp, order: &str, action: &str) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.url(&format!("/v1/orders/{order}/{action}")))
        .bearer_auth(STOREFRONT_KEY)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST /admin/payouts` with an Idempotency-Key.
async fn payout_with_key(app: &TestApp, key: &str, min_amount: &str) -> Value {
    let r = app
        .client
        .post(app.url("/admin/payouts"))
        .bearer_auth(ADMIN_KEY)
        .header("idempotency-key", key)
        .json(&json!({"min_amount": min_amount}))
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

fn amounts(list: &[(&str, &str, &str)]) -> Vec<(String, String, rust_decimal::Decimal)> {
    list.iter().map(|(a, k, v)| (a.to_string(), k.to_string(), d(v))).collect()
}

#[tokio::test]
async fn refunds_reverse_exactly_down_to_zero() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;

    // The SPEC's refund of the electronics item.
    let (status, body) = refund(&app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let refund_event = body["event_id"].as_str().unwrap().to_owned();
    let order = app.processed("o-1").await;
    assert_eq!(order["status"], "partially_refunded");
    assert_eq!(dec(&order["eligible_amount"]), d("150000"));
    let deltas: Vec<(String, String, rust_decimal::Decimal)> =
        app.event_entries(&refund_event).await.into_iter().map(|(a, k, v, _)| (a, k, v)).collect();
    assert_eq!(
        deltas,
        amounts(&[("A", "commission", "-20000"), ("B", "commission", "-60000"), ("C", "commission", "-80000")])
    );
    assert_eq!(app.points("x").await, 6500);
    let history: Vec<(String, i64)> = app.get_json("/v1/buyers/x/rewards").await["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap().to_owned(), r["points"].as_i64().unwrap()))
        .collect();
    assert_eq!(history, vec![("points".into(), 21500), ("first_order_bonus".into(), 5000), ("points".into(), -20000)]);

    // Idempotent on refund_id; the same id with other items conflicts; over-refunds are refused.
    let (status, again) = refund(&app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await;
    assert_eq!((status, again["event_id"].as_str()), (StatusCode::OK, Some(refund_event.as_str())));
    assert_eq!(refund(&app, "o-1", "r-1", json!([{"sku": "shirt", "quantity": 1}])).await.0, StatusCode::CONFLICT);
    let (status, body) = refund(&app, "o-1", "r-2", json!([{"sku": "shirt", "quantity": 3}])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "items[0].quantity");
    assert_eq!(
        refund(&app, "o-1", "r-2", json!([{"sku": "phone", "quantity": 1}])).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        refund(&app, "o-1", "r-2", json!([{"sku": "nope", "quantity": 1}])).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(refund(&app, "missing", "r-2", json!([{"sku": "shirt", "quantity": 1}])).await.0, StatusCode::NOT_FOUND);

    // A second partial refund: one shirt of two.
    assert_eq!(refund(&app, "o-1", "r-2", json!([{"sku": "shirt", "quantity": 1}])).await.0, StatusCode::ACCEPTED);
    app.processed("o-1").await;
    assert_eq!(
        app.order_amounts("o-1").await,
        amounts(&[("A", "commission", "750"), ("B", "commission", "2250"), ("C", "commission", "7500")])
    );
    assert_eq!(app.points("x").await, 750 + 5000);

    // The rest: every beneficiary back to exactly zero, first-order bonus included.
    let (status, _) =
        refund(&app, "o-1", "r-3", json!([{"sku": "voucher", "quantity": 1}, {"sku": "shirt", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let order = app.processed("o-1").await;
    assert_eq!(order["status"], "refunded");
    assert!(app.order_amounts("o-1").await.is_empty());
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, d("0"), "{a}");
    }
    assert_eq!(app.points("x").await, 0);
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn cancel_zeroes_everything_and_is_refused_after_completion() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let (status, body) = lifecycle(&app, "o-1", "cancel").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (again, body2) = lifecycle(&app, "o-1", "cancel").await;
    assert_eq!((again, &body2["event_id"]), (StatusCode::OK, &body["event_id"]));
    let order = app.processed("o-1").await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(dec(&order["eligible_amount"]), d("0"));
    assert!(app.order_amounts("o-1").await.is_empty());
    assert_eq!(app.points("x").await, 0);
    assert_eq!(lifecycle(&app, "o-1", "complete").await.0, StatusCode::CONFLICT);
    assert_eq!(refund(&app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await.0, StatusCode::CONFLICT);

    app.accept(&simple_order("o-2", "y", Some("code-C"), "100000")).await;
    assert_eq!(lifecycle(&app, "o-2", "complete").await.0, StatusCode::ACCEPTED);
    assert_eq!(lifecycle(&app, "o-2", "complete").await.0, StatusCode::OK);
    let (status, body) = lifecycle(&app, "o-2", "cancel").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(app.processed("o-2").await["status"], "completed");
    assert_eq!(app.balance("C", "pending").await, d("10000"));
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_refund_after_payout_is_a_clawback_that_the_next_payout_nets() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    lifecycle(&app, "o-1", "complete").await;
    app.processed("o-1").await;
    assert_eq!(app.balance("C", "approved").await, d("95000"));
    assert_eq!(app.balance("C", "pending").await, d("0"));

    let batch: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "50000"})).await.json().await.unwrap();
    // B 64 500 and C 95 000 reach the minimum; A's 21 500 waits.
    assert_eq!(
        batch["items"],
        json!([{"affiliate_id": "B", "amount": "64500"}, {"affiliate_id": "C", "amount": "95000"}])
    );
    assert_eq!(batch["total"], "159500");
    let id = batch["id"].as_u64().unwrap();
    // A second batch finds nothing new: no entry is in two batches.
    let second: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "50000"})).await.json().await.unwrap();
    assert_eq!(second["items"], json!([]));
    let done: Value = app.admin_post(&format!("/admin/payouts/{id}/complete"), &json!({})).await.json().await.unwrap();
    assert_eq!(done["status"], "completed");
    let again: Value = app.admin_post(&format!("/admin/payouts/{id}/complete"), &json!({})).await.json().await.unwrap();
    assert_eq!(again["completed_at"], done["completed_at"]);
    assert_eq!(app.balance("C", "paid").await, d("95000"));
    assert_eq!(app.balance("C", "approved").await, d("0"));
    assert_eq!(app.balance("A", "approved").await, d("21500"));

    // The electronics item comes back after C was paid: an approved negative entry.
    let (_, body) = refund(&app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await;
    app.processed("o-1").await;
    let clawback = app.event_entries(body["event_id"].as_str().unwrap()).await;
    assert!(clawback.contains(&("C".into(), "commission".into(), d("-80000"), "approved".into())), "{clawback:?}");
    assert_eq!(app.balance("C", "approved").await, d("-80000"));
    assert_eq!(app.balance("C", "paid").await, d("95000"));
    // A negative balance is not paid out; it stays and nets later.
    let nothing: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "0"})).await.json().await.unwrap();
    assert!(nothing["items"].as_array().unwrap().iter().all(|i| i["affiliate_id"] != "C"), "{nothing}");

    app.accept(&simple_order("o-2", "y", Some("code-C"), "1000000")).await;
    lifecycle(&app, "o-2", "complete").await;
    app.processed("o-2").await;
    let netted = payout_with_key(&app, "net-1", "1").await;
    let c: Vec<&Value> = netted["items"].as_array().unwrap().iter().filter(|i| i["affiliate_id"] == "C").collect();
    assert_eq!(c, vec![&json!({"affiliate_id": "C", "amount": "20000"})], "100 000 earned − 80 000 clawed back");
    let replay = payout_with_key(&app, "net-1", "1").await;
    assert_eq!(replay["id"], netted["id"]);
    app.admin_post(&format!("/admin/payouts/{}/complete", netted["id"]), &json!({})).await;
    assert_eq!(app.balance("C", "approved").await, d("0"));
    assert_eq!(app.balance("C", "paid").await, d("115000"));
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

/// Intake of placed → refund → complete with nothing processed, then the
/// events applied through the real transaction code in `order`.
async fn ledger_after(
    order: [usize; 3],
) -> (Vec<(String, String, rust_decimal::Decimal)>, Vec<(String, String, String, String)>) {
    let mut app = spawn_app_without_journal().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    refund(&app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await;
    lifecycle(&app, "o-1", "complete").await;
    app.kill().await;
    let events = app.db.column("SELECT id FROM events WHERE order_id = 'o-1' ORDER BY id", &[]).await;
    assert_eq!(events.len(), 3);
    let store = open_store(&app.config, 2).await;
    for i in order {
        let id = komisi::domain::event::EventId::parse(&events[i]).unwrap();
        komisi::engine::apply::apply_event(store.as_ref(), &Faults::default(), id).await.unwrap();
    }
    let balances = app
        .db
        .rows("SELECT id, pending, approved, paid FROM affiliates ORDER BY id", &[])
        .await
        .into_iter()
        .map(|r| {
            let f = |i: usize| r[i].clone().expect("not null");
            (f(0), f(1), f(2), f(3))
        })
        .collect();
    app.restart(Faults::default()).await;
    let status = app.processed("o-1").await;
    assert_eq!(status["status"], "partially_refunded");
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
    (app.order_amounts("o-1").await, balances)
}

#[tokio::test]
async fn events_applied_out_of_order_converge_to_the_in_order_ledger() {
    let in_order = ledger_after([0, 1, 2]).await;
    assert_eq!(
        in_order.0,
        amounts(&[("A", "commission", "1500"), ("B", "commission", "4500"), ("C", "commission", "15000")])
    );
    assert_eq!(
        in_order.1,
        vec![
            ("A".into(), "0".into(), "1500".into(), "0".into()),
            ("B".into(), "0".into(), "4500".into(), "0".into()),
            ("C".into(), "0".into(), "15000".into(), "0".into()),
        ]
    );
    // Refund before placed; complete before refund; complete first of all.
    assert_eq!(ledger_after([1, 0, 2]).await, in_order);
    assert_eq!(ledger_after([2, 1, 0]).await, in_order);
    assert_eq!(ledger_after([0, 2, 1]).await, in_order);
}

#[tokio::test]
async fn entries_stay_pending_until_the_holding_period_ends_across_a_restart() {
    let mut app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(1)).await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    assert_eq!(lifecycle(&app, "o-1", "complete").await.0, StatusCode::ACCEPTED);
    let order = app.processed("o-1").await;
    assert_eq!(order["status"], "completed");
    let approve_at = app.db.time("SELECT approve_at FROM orders WHERE id = 'o-1'", &[]).await;
    let wait = approve_at - chrono::Utc::now();
    assert!(wait > chrono::TimeDelta::hours(23), "due a day after completion: {wait}");
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    assert_eq!(app.balance("C", "approved").await, d("0"));

    // The server is down when the due time passes.
    app.kill().await;
    app.db.set_time("orders", "approve_at", "o-1", chrono::Utc::now() - chrono::TimeDelta::seconds(1)).await;
    app.restart(Faults::default()).await;
    let approved = poll(Duration::from_secs(10), || async { app.balance("C", "approved").await == d("95000") }).await;
    assert!(approved, "approved after the restart");
    assert_eq!(app.balance("C", "pending").await, d("0"));
    assert_eq!(app.balance("A", "approved").await, d("21500"));
    let statuses: Vec<String> = app.get_json("/v1/orders/o-1").await["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, vec!["approved"; 3]);
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn reconcile_reports_a_corrupted_balance() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    app.assert_reconciled().await;
    app.db.add_money("affiliates", "pending", "C", d("1")).await;
    app.db.exec("UPDATE buyers SET points = points - 7 WHERE id = 'x'", &[]).await;
    app.db.exec("DELETE FROM ledger_entries WHERE affiliate_id = 'A'", &[]).await;
    let report = app.reconcile().await;
    assert_eq!(report["ok"], false);
    let found: Vec<(String, String)> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let who = v["affiliate_id"].as_str().or(v["buyer_id"].as_str()).unwrap_or("").to_owned();
            (v["kind"].as_str().unwrap().to_owned(), who)
        })
        .collect();
    for expected in [
        ("balance_mismatch".to_string(), "C".to_string()),
        ("balance_mismatch".into(), "A".into()),
        ("points_mismatch".into(), "x".into()),
        ("ledger_differs_from_entitlement".into(), "A".into()),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {report}");
    }
    assert!(report["checked"]["orders"].as_u64().unwrap() >= 1);
}
