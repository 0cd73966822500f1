//! Manual adjustments (docs/API.md "Adjustments"): an operator credits or
//! debits an affiliate's approved commission or a buyer's points — idempotent
//! by id, refused past the balance, paid, reconciled and audited; an
//! injected failure mid-transaction leaves nothing behind.
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn adjust(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let r = app.admin_post(path, &body).await;
    let status = r.status();
    if (status.is_client_error() || status.is_server_error()) && status != StatusCode::INTERNAL_SERVER_ERROR {
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{path}");
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map_or_else(Vec::new, |e| e.iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect())
}

async fn approved(app: &TestApp, affiliate: &str) -> String {
    app.get_json(&format!("/v1/affiliates/{affiliate}")).await["balances"]["approved"].as_str().unwrap().to_owned()
}

async fn counts(app: &TestApp) -> (i64, i64, i64, i64) {
    (
        app.db.int("SELECT COUNT(*) FROM adjustments", &[]).await,
        app.db.int("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'adjustment'", &[]).await,
        app.db.int("SELECT COUNT(*) FROM reward_entries WHERE kind = 'adjustment'", &[]).await,
        app.db.int("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'adjustment.%'", &[]).await,
    )
}

#[tokio::test]
async fn a_commission_adjustment_moves_the_approved_balance_once_is_paid_reconciled_and_audited() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let path = "/admin/affiliates/A/adjustments";

    // A credit: approved at once, an entry of its own kind with no order.
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(ADMIN_KEY)
        .header("X-Request-Id", "support-ticket-41")
        .json(&json!({"adjustment_id": "adj-1", "amount": "50000", "reason": "  goodwill for a late payout "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let credit: Value = r.json().await.unwrap();
    assert_eq!(credit["affiliate_id"], "A");
    assert_eq!(credit["amount"], "50000");
    assert_eq!(credit["reason"], "goodwill for a late payout");
    assert_eq!(credit["actor"], "admin-1");
    assert_eq!(approved(&app, "A").await, "50000");
    let ledger = app.get_json("/v1/affiliates/A/commissions").await;
    let items = ledger["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{ledger}");
    assert_eq!(
        (&items[0]["kind"], &items[0]["level"], &items[0]["order_id"], &items[0]["status"], &items[0]["amount"]),
        (&json!("adjustment"), &json!(0), &Value::Null, &json!("approved"), &json!("50000"))
    );
    assert_eq!(items[0]["event_id"], credit["event_id"]);
    let event = app.admin_get(&format!("/admin/events/{}", credit["event_id"].as_str().unwrap())).await;
    assert_eq!((&event["type"], &event["status"]), (&json!("commission.adjusted"), &json!("done")));
    assert_eq!(event["payload"]["reason"], "goodwill for a late payout");

    // The same request again is the same adjustment; another body under its id is 409.
    let (status, again) = adjust(
        &app,
        path,
        json!({"adjustment_id": "adj-1", "amount": "50000", "reason": "goodwill for a late payout"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["event_id"], credit["event_id"]);
    let (status, _) = adjust(&app, path, json!({"adjustment_id": "adj-1", "amount": "50001", "reason": "x"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = adjust(
        &app,
        "/admin/affiliates/B/adjustments",
        json!({"adjustment_id": "adj-1", "amount": "50000", "reason": "goodwill for a late payout"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "an id is one adjustment, whatever the subject");
    assert_eq!(counts(&app).await, (1, 1, 0, 1));

    // A debit past the approved balance: 422 naming the amount, nothing written.
    let (status, body) =
        adjust(&app, path, json!({"adjustment_id": "adj-2", "amount": "-50001", "reason": "chargeback"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(fields(&body), ["amount"]);
    assert_eq!(counts(&app).await, (1, 1, 0, 1));
    assert_eq!(approved(&app, "A").await, "50000");
    // Bad input at every limit: zero, a scale finer than the program's (IDR, 0), a sign twice, a blank reason.
    for (amount, reason) in [("0", "r"), ("1.5", "r"), ("--5", "r"), ("1000000000000", "r"), ("5", "  "), ("-1e3", "r")]
    {
        let (status, body) =
            adjust(&app, path, json!({"adjustment_id": "adj-x", "amount": amount, "reason": reason})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{amount:?} {reason:?}: {body}");
    }
    let (status, _) = adjust(&app, path, json!({"adjustment_id": "adj-x", "amount": 5, "reason": "r"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an amount is a string");
    let (status, _) = adjust(
        &app,
        "/admin/affiliates/nobody/adjustments",
        json!({"adjustment_id": "adj-y", "amount": "5", "reason": "r"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let sf = app.post(path, &json!({"adjustment_id": "adj-z", "amount": "5", "reason": "r"})).await;
    assert_eq!(sf.status(), StatusCode::FORBIDDEN, "a storefront key adjusts nothing");
    assert_eq!(counts(&app).await, (1, 1, 0, 1));

    // A debit down to a balance the payout then pays.
    let (status, _) =
        adjust(&app, path, json!({"adjustment_id": "adj-3", "amount": "-20000", "reason": "chargeback"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(approved(&app, "A").await, "30000");
    let payout: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "1"})).await.json().await.unwrap();
    assert_eq!(payout["total"], "30000", "{payout}");
    assert_eq!(payout["items"].as_array().unwrap().len(), 1);
    let report = app.reconcile().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"]["adjustments"], 2);

    // The trail: each adjustment with the key's name, the request id and the balance before and after.
    let trail = app.admin_get("/admin/audit?action=adjustment.commission").await;
    let items = trail["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{trail}");
    assert_eq!((&items[1]["before"]["approved"], &items[1]["after"]["approved"]), (&json!("0"), &json!("50000")));
    assert_eq!(items[1]["request_id"], "support-ticket-41");
    assert_eq!(items[1]["subject"], "affiliate:A");
    assert_eq!((&items[0]["before"]["approved"], &items[0]["after"]["approved"]), (&json!("50000"), &json!("30000")));
    assert_eq!(items[0]["actor"], "admin-1");

    // Reconcile checks each adjustment against its entry: a changed entry is found.
    let entry = app.db.one("SELECT id FROM ledger_entries WHERE kind = 'adjustment' ORDER BY id LIMIT 1", &[]).await;
    app.db.add_money("ledger_entries", "amount", &entry, d("1")).await;
    let report = app.reconcile().await;
    let kinds: Vec<&str> =
        report["violations"].as_array().unwrap().iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"adjustment_mismatch"), "{report}");
}

#[tokio::test]
async fn a_points_adjustment_credits_a_lot_that_never_expires_and_debits_no_more_than_can_be_spent() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (status, _) =
        adjust(&app, "/admin/buyers/x/points-adjustments", json!({"adjustment_id": "p-0", "points": 5, "reason": "r"}))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a buyer komisi has never seen");
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let path = "/admin/buyers/x/points-adjustments";
    assert_eq!(app.get_json("/v1/buyers/x/rewards").await["points"], 26500);
    // 6 500 held by a redemption: 20 000 can be spent.
    let r = app.post("/v1/buyers/x/redemptions", &json!({"redemption_id": "r-1", "points": 6500})).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let (status, body) = adjust(&app, path, json!({"adjustment_id": "p-1", "points": -20001, "reason": "fraud"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), ["points"]);
    for points in [json!(0), json!(1_000_000_000_001i64), json!("5"), json!(1.5)] {
        let (status, _) = adjust(&app, path, json!({"adjustment_id": "p-x", "points": points, "reason": "r"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{points}");
    }
    assert_eq!(counts(&app).await, (0, 0, 0, 0));

    let (status, debit) =
        adjust(&app, path, json!({"adjustment_id": "p-1", "points": -20000, "reason": "fraud"})).await;
    assert_eq!(status, StatusCode::CREATED, "{debit}");
    assert_eq!((&debit["buyer_id"], &debit["points"]), (&json!("x"), &json!(-20000)));
    let (status, credit) = adjust(&app, path, json!({"adjustment_id": "p-2", "points": 1000, "reason": "sorry"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = adjust(&app, path, json!({"adjustment_id": "p-2", "points": 1000, "reason": "sorry"})).await;
    assert_eq!((status, &again["event_id"]), (StatusCode::OK, &credit["event_id"]));
    let (status, _) = adjust(&app, path, json!({"adjustment_id": "p-2", "points": 1001, "reason": "sorry"})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let w = app.get_json("/v1/buyers/x/rewards").await;
    assert_eq!((&w["points"], &w["held"]), (&json!(1000), &json!(6500)), "{w}");
    let adjusted: Vec<i64> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "adjustment")
        .map(|e| e["points"].as_i64().unwrap())
        .collect();
    assert_eq!(adjusted, [-20000, 1000]);
    // The held points stay held: released, they come back in full.
    let r = app.post("/v1/buyers/x/redemptions/r-1/release", &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.get_json("/v1/buyers/x/rewards").await["points"], 7500);
    let events = app.admin_get("/admin/events?type=points.adjusted").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 2);
    assert_eq!(counts(&app).await, (2, 0, 2, 2));
    let report = app.reconcile().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"]["adjustments"], 2);
    let trail = app.admin_get("/admin/audit?action=adjustment.points&actor=admin-1").await;
    assert_eq!(trail["items"][1]["before"]["points"], "20000", "{trail}");
    assert_eq!(trail["items"][1]["after"]["points"], "0");
}

#[tokio::test]
async fn an_adjustment_that_fails_mid_transaction_leaves_nothing_and_its_retry_applies_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let before = (approved(&app, "C").await, app.get_json("/v1/buyers/x/rewards").await["points"].clone());
    let commission = json!({"adjustment_id": "f-1", "amount": "7000", "reason": "promo"});
    let points = json!({"adjustment_id": "f-2", "points": 300, "reason": "promo"});
    for (path, body) in
        [("/admin/affiliates/C/adjustments", &commission), ("/admin/buyers/x/points-adjustments", &points)]
    {
        app.faults.fail_wallet_mid_tx(1);
        let (status, problem) = adjust(&app, path, body.clone()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{problem}");
        assert_eq!(app.faults.wallet_failures_left(), 0, "the failure was injected");
    }
    assert_eq!(counts(&app).await, (0, 0, 0, 0), "nothing of either adjustment was written");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM events WHERE type LIKE '%.adjusted'", &[]).await, 0);
    assert_eq!((approved(&app, "C").await, app.get_json("/v1/buyers/x/rewards").await["points"].clone()), before);
    app.assert_reconciled().await;

    for (path, body) in
        [("/admin/affiliates/C/adjustments", &commission), ("/admin/buyers/x/points-adjustments", &points)]
    {
        for expected in [StatusCode::CREATED, StatusCode::OK] {
            assert_eq!(adjust(&app, path, body.clone()).await.0, expected, "{path}");
        }
    }
    assert_eq!(counts(&app).await, (2, 1, 1, 2));
    assert_eq!(approved(&app, "C").await, "7000");
    assert_eq!(app.get_json("/v1/buyers/x/rewards").await["points"], 26800);
    app.assert_reconciled().await;
}
