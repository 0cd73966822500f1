//! Order and affiliate intake: idempotency, conflicts, validation (422 with
//! field lists, 400, 413, 415), and that a refused request writes nothing.
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn count(app: &TestApp, table: &str) -> i64 {
    app.db.int(&format!("SELECT COUNT(*) FROM {table}"), &[]).await
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn identical_retry_returns_the_same_event_and_other_data_conflicts() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let order = worked_example_order("o-1", "x", "code-C");
    let event_id = app.accept(&order).await;

    // The same body, keys in another order and the price written with trailing zeros: same request.
    let same = json!({
        "items": [
            {"unit_price": "75000.00", "quantity": 2, "category": "fashion", "sku": "shirt"},
            {"sku": "phone", "category": "electronics", "quantity": 1, "unit_price": "2000000"},
            {"sku": "voucher", "category": "gift-card", "quantity": 1, "unit_price": "100000"}
        ],
        "currency": "IDR", "referral_code": "code-C", "buyer_id": "x", "id": "o-1"
    });
    let (status, body) = app.place(&same).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event_id"], event_id.as_str());

    let mut other = order.clone();
    other["items"][0]["quantity"] = json!(3);
    let (status, body) = app.place(&other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], 409);

    app.processed("o-1").await;
    // Paid once, whatever the retries.
    assert_eq!(count(&app, "events").await, 1);
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn concurrent_duplicates_are_accepted_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let order = worked_example_order("o-1", "x", "code-C");
    let results = futures::future::join_all((0..8).map(|_| app.place(&order))).await;
    let accepted = results.iter().filter(|(s, _)| *s == StatusCode::ACCEPTED).count();
    let replayed = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!((accepted, replayed), (1, 7), "{results:?}");
    let ids: std::collections::HashSet<_> = results.iter().map(|(_, b)| b["event_id"].clone()).collect();
    assert_eq!(ids.len(), 1);
    app.processed("o-1").await;
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn invalid_orders_get_problem_details_and_write_nothing() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let base = simple_order("o-1", "x", Some("code-C"), "100000");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"unit_price": 100000}), "items[0].unit_price"),
        (json!({"unit_price": "1e5"}), "items[0].unit_price"),
        (json!({"unit_price": "-1"}), "items[0].unit_price"),
        (json!({"unit_price": "NaN"}), "items[0].unit_price"),
        (json!({"unit_price": "1.00001"}), "items[0].unit_price"),
        (json!({"unit_price": "1000000000000"}), "items[0].unit_price"),
        (json!({"quantity": 0}), "items[0].quantity"),
        (json!({"quantity": 1000001}), "items[0].quantity"),
        (json!({"quantity": 1.5}), "items[0].quantity"),
        (json!({"sku": "bad sku!"}), "items[0].sku"),
    ];
    for (change, field) in cases {
        let mut o = base.clone();
        for (k, v) in change.as_object().unwrap() {
            o["items"][0][k] = v.clone();
        }
        let r = app.post("/v1/orders", &o).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{change}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], 422);
        assert!(fields(&body).contains(&field.to_owned()), "{change}: {body}");
    }

    let mut o = base.clone();
    o["currency"] = json!("USD");
    let r = app.post("/v1/orders", &o).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&r.json().await.unwrap()), vec!["currency"]);

    let mut o = base.clone();
    o["id"] = json!("x".repeat(65));
    o["items"] = json!([]);
    let body: Value = app.post("/v1/orders", &o).await.json().await.unwrap();
    assert_eq!(fields(&body), vec!["id", "items"], "every problem is listed: {body}");

    let mut o = base.clone();
    o["items"] = json!([
        {"sku": "a", "category": "fashion", "quantity": 1, "unit_price": "1"},
        {"sku": "a", "category": "fashion", "quantity": 1, "unit_price": "1"}
    ]);
    let body: Value = app.post("/v1/orders", &o).await.json().await.unwrap();
    assert_eq!(fields(&body), vec!["items[1].sku"]);

    let mut o = base.clone();
    o["items"] = Value::Array(
        (0..501).map(|n| json!({"sku": format!("s{n}"), "category": "c", "quantity": 1, "unit_price": "1"})).collect(),
    );
    let body: Value = app.post("/v1/orders", &o).await.json().await.unwrap();
    assert_eq!(fields(&body), vec!["items"]);

    let mut o = base.clone();
    o.as_object_mut().unwrap().remove("buyer_id");
    let body: Value = app.post("/v1/orders", &o).await.json().await.unwrap();
    assert_eq!(fields(&body), vec!["buyer_id"]);

    let mut o = base.clone();
    o["coupon"] = json!("X");
    assert_eq!(app.post("/v1/orders", &o).await.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Malformed JSON → 400; wrong content type → 415; over 1 MiB → 413.
    let r = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(STOREFRONT_KEY)
        .header("content-type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r =
        app.client.post(app.url("/v1/orders")).bearer_auth(STOREFRONT_KEY).body(base.to_string()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut o = base.clone();
    o["buyer_id"] = json!("y".repeat(1024 * 1024 + 10));
    let r = app.post("/v1/orders", &o).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(count(&app, "orders").await, 0);
    assert_eq!(count(&app, "events").await, 0);
    assert_eq!(count(&app, "order_items").await, 0);
}

#[tokio::test]
async fn affiliate_registration_is_idempotent_and_guards_the_tree() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    let body = json!({"id": "B", "name": "Bee", "parent_id": "A", "referral_code": "bee"});
    assert_eq!(app.post("/v1/affiliates", &body).await.status(), StatusCode::CREATED);
    assert_eq!(app.post("/v1/affiliates", &body).await.status(), StatusCode::OK);
    let mut other = body.clone();
    other["name"] = json!("Someone else");
    assert_eq!(app.post("/v1/affiliates", &other).await.status(), StatusCode::CONFLICT);
    // The same code under another id.
    let stolen = json!({"id": "Z", "name": "Zed", "referral_code": "bee"});
    assert_eq!(app.post("/v1/affiliates", &stolen).await.status(), StatusCode::CONFLICT);
    let orphan = json!({"id": "O", "name": "Orphan", "parent_id": "nobody", "referral_code": "o"});
    let r = app.post("/v1/affiliates", &orphan).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&r.json().await.unwrap()), vec!["parent_id"]);

    // A → B; making A a child of B closes a loop.
    let r = app.patch("/v1/affiliates/A", &json!({"parent_id": "B"})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.patch("/v1/affiliates/B", &json!({"parent_id": null, "name": "Bee 2"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["parent_id"], Value::Null);
    assert_eq!(b["name"], "Bee 2");
    assert_eq!(b["currency"], "IDR");
    assert_eq!(b["balances"], json!({"pending": "0", "approved": "0", "paid": "0"}));
    // Now A may move under B.
    assert_eq!(app.patch("/v1/affiliates/A", &json!({"parent_id": "B"})).await.status(), StatusCode::OK);
    assert_eq!(
        app.patch("/v1/affiliates/A", &json!({"status": "gone"})).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.patch("/v1/affiliates/nobody", &json!({"name": "N"})).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(count(&app, "affiliates").await, 2);
}

#[tokio::test]
async fn program_versions_are_validated_and_immutable() {
    let app = spawn_app().await;
    let current = app.client.get(app.url("/admin/program")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    let current: Value = current.json().await.unwrap();
    assert_eq!(current["version"], 1);
    assert_eq!(current["levels"], json!(["0.1", "0.03", "0.01"]));

    let mut bad = default_program();
    bad["levels"] = json!(["1.5"]);
    bad["timezone"] = json!("Mars/Olympus");
    let r = app.admin_put("/admin/program", &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    let f = fields(&body);
    assert!(f.contains(&"levels[0]".to_owned()) && f.contains(&"timezone".to_owned()), "{body}");

    let mut usd = default_program();
    usd["currency"] = json!("USD");
    assert_eq!(app.admin_put("/admin/program", &usd).await.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // An order is stamped with the version in force at intake.
    app.create_affiliate("A", None).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    let v2 = app.set_program(|p| p["levels"] = json!(["0.20"])).await;
    assert_eq!(v2, 2);
    app.accept(&simple_order("o-2", "y", Some("code-A"), "100000")).await;
    assert_eq!(app.processed("o-1").await["rule_version"], 1);
    assert_eq!(app.processed("o-2").await["rule_version"], 2);
    assert_eq!(app.order_amounts("o-1").await, vec![("A".into(), "commission".into(), d("10000"))]);
    assert_eq!(app.order_amounts("o-2").await, vec![("A".into(), "commission".into(), d("20000"))]);
}

#[tokio::test]
async fn a_coalesced_intake_batch_answers_each_order_on_its_own() {
    use komisi::domain::order::CreateOrder;
    use komisi::engine::intake::take_batch;
    use komisi::http::orders::parse_order_json;
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    app.accept(&simple_order("taken", "x", Some("code-A"), "100000")).await;
    let store = open_store(&app.config, 2).await;
    let parse = |v: Value| parse_order_json(v.to_string().as_bytes()).unwrap();
    let mut usd = simple_order("usd", "y", None, "5");
    usd["currency"] = json!("USD");
    let batch = vec![
        parse(simple_order("new-1", "y", Some("code-A"), "100000")),
        parse(simple_order("new-1", "y", Some("code-A"), "100000")), // the same request twice in one batch
        parse(simple_order("new-2", "z", Some("no-such-code"), "100000")),
        parse(usd),
        parse(simple_order("taken", "x", Some("code-A"), "100000")), // a retry of an earlier order
        parse(simple_order("taken", "x", Some("code-A"), "999")),    // the same id, another body
    ];
    let lease = std::time::Duration::from_millis(500);
    let outcomes: Vec<_> = take_batch(store.as_ref(), &batch, lease).await.into_iter().map(Result::unwrap).collect();
    let first = match &outcomes[0] {
        CreateOrder::Accepted(e) => e.id,
        other => panic!("{other:?}"),
    };
    assert!(matches!(&outcomes[1], CreateOrder::Duplicate(id) if id == &first), "{:?}", outcomes[1]);
    assert!(matches!(&outcomes[2], CreateOrder::Accepted(_)));
    // Another currency with no rate known: refused on `currency`.
    assert!(matches!(&outcomes[3], CreateOrder::Invalid(e) if e[0].field == "currency"), "{:?}", outcomes[3]);
    assert!(matches!(&outcomes[4], CreateOrder::Duplicate(_)));
    assert!(matches!(&outcomes[5], CreateOrder::Conflict));
    assert_eq!(count(&app, "orders").await, 3);
    assert_eq!(count(&app, "events").await, 3);
    let unattributed = app.db.rows("SELECT affiliate_id, attribution_note FROM orders WHERE id = 'new-2'", &[]).await;
    assert_eq!(unattributed, vec![vec![None, Some("unknown_referral_code".into())]]);
    // The events reach the journal through recovery (they were not cast by a handler).
    let _ = (app.processed("new-1").await, app.processed("new-2").await);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_failing_intake_batch_keeps_nothing_and_each_order_is_answered_alone() {
    use komisi::domain::order::CreateOrder;
    use komisi::engine::intake::take_batch;
    use komisi::http::orders::parse_order_json;
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    // A pool of ONE connection, with the program not yet cached: intake must
    // never need a second connection while it holds one (it would wait for
    // itself), and the failed batch's connection is replaced.
    let store = open_store(&app.config, 1).await;
    let parse = |v: Value| parse_order_json(v.to_string().as_bytes()).unwrap();
    let good = parse(simple_order("good", "x", Some("code-A"), "100000"));
    let mut bad = parse(simple_order("bad", "y", Some("code-A"), "100000"));
    // The same sku twice: both order rows go in, then the database refuses the item rows.
    bad.items.push(bad.items[0].clone());
    let lease = std::time::Duration::from_millis(500);
    let outcomes = take_batch(store.as_ref(), &[good, bad], lease).await;
    assert!(matches!(&outcomes[0], Ok(CreateOrder::Accepted(_))), "{:?}", outcomes[0]);
    assert!(outcomes[1].is_err(), "{:?}", outcomes[1]);
    let orders = app.db.column("SELECT id FROM orders", &[]).await;
    assert_eq!(orders, vec!["good".to_string()]);
    assert_eq!(count(&app, "events").await, 1);
    assert_eq!(count(&app, "order_items").await, 1);
    // The pool works on: the next intake commits.
    let next = take_batch(store.as_ref(), &[parse(simple_order("next", "z", None, "5"))], lease).await;
    assert!(matches!(&next[0], Ok(CreateOrder::Accepted(_))), "{:?}", next[0]);
    assert_eq!(count(&app, "orders").await, 2);
    let _ = (app.processed("good").await, app.processed("next").await);
    app.assert_ledger_consistent().await;
    // The same for a lifecycle request on another fresh one-connection store.
    let fresh = engine_on(open_store(&app.config, 1).await.into(), lease);
    let completed = fresh.complete(&komisi::domain::ids::OrderId::parse("good").unwrap()).await.unwrap();
    assert!(matches!(completed, komisi::domain::order::LifecycleOutcome::Accepted(_)), "{completed:?}");
}
