//! Regressions of what a hostile client found (each failed before its fix):
//! order times outside any shop's clock, a leap second, JSON arrays read as
//! objects, the bearer scheme's case and the 401's challenge. Every refusal
//! is a 422 problem and stores nothing. Those that need no stored data
//! (doubled field paths, the framework's own refusals) are router tests in
//! src/http/tests.rs.
use crate::helpers::*;
use komisi::engine::faults::Faults;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

fn placed(id: &str, buyer: &str, at: &str) -> Value {
    let mut o = simple_order(id, buyer, Some("code-A"), "100000");
    o["placed_at"] = json!(at);
    o
}

#[tokio::test]
async fn placed_at_outside_a_shops_clock_or_on_a_leap_second_is_refused() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    let ahead = (chrono::Utc::now() + chrono::TimeDelta::hours(25)).to_rfc3339();
    // Before: three 2040 orders of one buyer each got the first-order bonus,
    // and a leap second was a 500.
    for (n, at) in
        ["2040-06-01T00:00:00Z", "1965-06-01T00:00:00Z", "1999-12-31T23:59:59Z", ahead.as_str(), "2026-06-30T23:59:60Z"]
            .iter()
            .enumerate()
    {
        let (status, body) = app.place(&placed(&format!("o-{n}"), "x", at)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{at}: {body}");
        assert_eq!(fields(&body), vec!["placed_at"], "{at}: {body}");
    }
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders", &[]).await, 0, "nothing stored");
    // The window's ends are accepted.
    let soon = (chrono::Utc::now() + chrono::TimeDelta::hours(23)).to_rfc3339();
    for (id, at) in [("first", "2000-01-01T00:00:00Z"), ("soon", soon.as_str())] {
        app.accept(&placed(id, &format!("b-{id}"), at)).await;
        app.processed(id).await;
    }
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    // Before: 202, serde read the array into an order by position.
    let array = json!(["arr1", "barr", null, null, "IDR", null, [["s1", "fashion", 1, "100000"]]]);
    for (method, path) in [("POST", "/v1/orders"), ("POST", "/v1/affiliates"), ("PATCH", "/v1/affiliates/A")] {
        for body in [array.clone(), json!("a string"), json!(42), json!(null)] {
            let request = match method {
                "POST" => app.client.post(app.url(path)),
                _ => app.client.patch(app.url(path)),
            };
            let r = request.bearer_auth(STOREFRONT_KEY).json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{method} {path} {body}");
            assert_eq!(r.headers()["content-type"], "application/problem+json");
        }
    }
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders", &[]).await, 0);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM affiliates", &[]).await, 1);
    assert_eq!(app.get_json("/v1/affiliates/A").await["status"], "active");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_a_401_names_it() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let r = app
            .client
            .get(app.url("/v1/affiliates/A"))
            .header("Authorization", format!("{scheme} {STOREFRONT_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    for header in [None, Some("Basic abc"), Some("Bearer wrong"), Some("Bearer "), Some("Bearer")] {
        let mut request = app.client.get(app.url("/v1/affiliates/A"));
        if let Some(h) = header {
            request = request.header("Authorization", h);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"komisi\"", "{header:?}");
    }
}

async fn payout(app: &TestApp, key: Option<&str>, min_amount: &str) -> (StatusCode, Value) {
    let mut r = app.client.post(app.url("/admin/payouts")).bearer_auth(ADMIN_KEY);
    if let Some(key) = key {
        r = r.header("idempotency-key", key);
    }
    let r = r.json(&json!({"min_amount": min_amount})).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// C, B and A with approved balances (the worked example, completed, no holding).
async fn approved_balances(app: &TestApp) {
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    assert_eq!(crate::lifecycle::lifecycle(app, "o-1", "complete").await.0, StatusCode::ACCEPTED);
    assert!(
        poll(std::time::Duration::from_secs(20), || async { app.balance("C", "approved").await == d("95000") }).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payouts_with_one_key_build_one_batch_and_a_reused_key_is_refused() {
    let app = spawn_app().await;
    approved_balances(&app).await;
    // Before: 9 of 10 answered 500 (duplicate key).
    let answers = futures::future::join_all((0..10).map(|_| payout(&app, Some("run-1"), "0"))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], answers[0].1["id"], "{body}");
        assert_eq!(body["total"], "181000", "{body}");
    }
    assert_eq!(app.db.int("SELECT COUNT(*) FROM payouts", &[]).await, 1);
    // Before: the old batch, as if the request had been the same.
    let (status, body) = payout(&app, Some("run-1"), "5").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "min_amount", "{body}");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM payouts", &[]).await, 1);
    app.assert_ledger_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_with_nothing_to_pay_stores_no_batch() {
    let app = spawn_app().await;
    // Before: 20 empty batches.
    let answers = futures::future::join_all((0..20).map(|_| payout(&app, None, "0"))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body, &json!({"status": "nothing_to_pay", "items": [], "total": "0"}));
    }
    assert_eq!(app.db.int("SELECT COUNT(*) FROM payouts", &[]).await, 0);
    // With balances, 20 at once: one batch takes them, the others find nothing.
    approved_balances(&app).await;
    let answers = futures::future::join_all((0..20).map(|_| payout(&app, None, "0"))).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    let batches: Vec<&Value> = answers.iter().map(|(_, b)| b).filter(|b| b["status"] != "nothing_to_pay").collect();
    assert_eq!(batches.len(), 1, "{answers:?}");
    assert_eq!(batches[0]["total"], "181000");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM payouts", &[]).await, 1);
    // A key with nothing to pay stores nothing either.
    assert_eq!(payout(&app, Some("empty"), "0").await.1["status"], "nothing_to_pay");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM payouts", &[]).await, 1);
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_lock_is_this_databases_and_a_lock_not_granted_changes_nothing() {
    use sqlx::Connection;
    if !needs_mysql_backend(
        "the_tree_lock_is_this_databases_and_a_lock_not_granted_changes_nothing",
        "it tests MySQL's row locks",
    ) {
        return;
    }
    let app = spawn_app().await;
    for id in ["A", "B", "C"] {
        app.create_affiliate(id, None).await;
    }
    // Another komisi database's re-parenting in progress (its tree lock
    // held) does not hold this one up: the lock is a row of each database's
    // own `locks` table, not a server-wide name.
    let other = spawn_app().await;
    let mut elsewhere = sqlx::MySqlConnection::connect(&other.config.database_url).await.unwrap();
    let mut other_tx = elsewhere.begin().await.unwrap();
    sqlx::query("SELECT name FROM locks WHERE name = 'tree' FOR UPDATE").fetch_one(&mut *other_tx).await.unwrap();
    let started = std::time::Instant::now();
    let r = app.patch("/v1/affiliates/B", &json!({"parent_id": "A"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "held up by another database's lock");
    other_tx.rollback().await.unwrap();
    let mut holder = sqlx::MySqlConnection::connect(&app.config.database_url).await.unwrap();
    // This database's tree lock held by another transaction: after the
    // lock wait, 503 with Retry-After and nothing changed.
    let mut tx = holder.begin().await.unwrap();
    let held: String =
        sqlx::query_scalar("SELECT name FROM locks WHERE name = 'tree' FOR UPDATE").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(held, "tree");
    let r = app.patch("/v1/affiliates/C", &json!({"parent_id": "B"})).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(app.get_json("/v1/affiliates/C").await["parent_id"], Value::Null);
    // A change that is no re-parenting does not take the tree's lock.
    let r = app.patch("/v1/affiliates/C", &json!({"name": "Cee"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    tx.rollback().await.unwrap();
    holder.close().await.unwrap();
    let r = app.patch("/v1/affiliates/C", &json!({"parent_id": "B"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.get_json("/v1/affiliates/C").await["parent_id"], "B");
}

#[tokio::test]
async fn the_program_read_back_can_be_written_back_as_is() {
    let app = spawn_app().await;
    // Before: 422, `version` was an unknown field.
    let read = app.admin_get("/admin/program").await;
    assert_eq!(read["version"], 1);
    let r = app.admin_put("/admin/program", &read).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 2);
    let mut again = app.admin_get("/admin/program").await;
    assert_eq!(again["version"], 2);
    again["version"] = json!(99);
    again["holding_days"] = json!(3);
    let r = app.admin_put("/admin/program", &again).await;
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 3, "komisi numbers the versions");
    assert_eq!(app.admin_get("/admin/program").await["holding_days"], 3);
    // Other unknown fields are still refused.
    again["colour"] = json!("red");
    let r = app.admin_put("/admin/program", &again).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_a_422_naming_it() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    for body in [json!({"status": 1}), json!({"status": "sleeping"}), json!({"name": 7})] {
        let r = app.patch("/v1/affiliates/A", &body).await;
        let status = r.status();
        let problem: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        let field = body.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(fields(&problem), vec![field], "{problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_refused_with_503_while_the_backlog_is_over_its_bound() {
    // Events pile up (the journal is down); past KOMISI_MAX_BACKLOG new
    // orders get 503 + Retry-After and are not stored. Before: no bound, the
    // backlog grew without limit (1 040 orders/s taken, 190/s applied).
    let mut app = spawn_app_journal_down(|c| c.max_backlog = 3, komisi::engine::faults::Faults::default()).await;
    abc_tree(&app).await;
    for n in 0..3 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("b-{n}"), Some("code-C"), "100000")).await;
    }
    // The recovery sweep counts the backlog (every 200 ms in tests).
    let counted = poll(std::time::Duration::from_secs(10), || async {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        ready.text().await.unwrap().contains("KOMISI_MAX_BACKLOG")
    })
    .await;
    assert!(counted, "/readyz reports the backlog");
    let r = app.post("/v1/orders", &simple_order("late", "b-late", Some("code-C"), "100000")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(app.get("/v1/orders/late").await.status(), StatusCode::NOT_FOUND, "nothing stored");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders", &[]).await, 3);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let refused: f64 = metrics
        .lines()
        .find(|l| l.starts_with("komisi_intake_refused_total{reason=\"backlog\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("the refusal counter is exported");
    assert!(refused >= 1.0, "the refusal was counted: {refused}");
    // A refund is still taken (it only adds an event to an order that exists).
    let (status, _) = crate::lifecycle::refund(&app, "o-0", "r-1", json!([{"sku": "item", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Once the backlog drains, orders are taken again.
    app.kill().await;
    app.journal_back();
    app.restart(komisi::engine::faults::Faults::default()).await;
    let taken = poll(std::time::Duration::from_secs(20), || async {
        app.place(&simple_order("late", "b-late", Some("code-C"), "100000")).await.0 == StatusCode::ACCEPTED
    })
    .await;
    assert!(taken, "accepted again after the drain");
    app.processed("late").await;
    app.assert_ledger_consistent().await;
}

/// The largest order the API accepts: one item at the largest unit price
/// (the total must stay below 10^12).
fn largest_order(id: &str, buyer: &str) -> Value {
    simple_order(id, buyer, Some("code-C"), "999999999999.9999")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_total_of_10_to_the_12_or_more_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    // Before: 10 × 1 000 000 × 999999999999 was accepted (10^19 eligible): its
    // points were clamped to i64::MAX and the next such order's event died.
    let mut too_big = simple_order("o-1", "x", Some("code-C"), "999999999999");
    too_big["items"][0]["quantity"] = json!(1_000_000);
    let mut at_bound = simple_order("o-2", "x", Some("code-C"), "500000000000");
    at_bound["items"][0]["quantity"] = json!(2);
    let mut summed = simple_order("o-3", "x", Some("code-C"), "999999999999.9999");
    summed["items"]
        .as_array_mut()
        .unwrap()
        .push(json!({"sku": "cent", "category": "fashion", "quantity": 1, "unit_price": "0.0001"}));
    for order in [&too_big, &at_bound, &summed] {
        let (status, body) = app.place(order).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{order}: {body}");
        assert_eq!(fields(&body), vec!["items"], "{body}");
    }
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders", &[]).await, 0, "nothing stored");
    let (status, body) = app.place(&largest_order("o-4", "x")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Every rate at 1, a milestone on each month's first order, a point per
/// unit of currency and the largest first-order bonus: the most an order can
/// earn.
fn richest_program(p: &mut Value) {
    p["scale"] = json!(4);
    p["levels"] = json!(["1", "1", "1"]);
    p["category_rates"] = json!({});
    p["min_order_amount"] = json!("0");
    p["max_commission_per_order"] = json!("999999999999.9999");
    p["tiers"] = json!([{"monthly_sales_from": "0", "bonus_rate": "1"}]);
    p["milestones"] = json!([{"nth_order_in_month": 1, "bonus": "999999999999.9999"}]);
    p["buyer_rewards"] = json!({"points_rate": "1", "first_order_bonus": "1000000000"});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_order_many_times_over_pays_exactly_and_a_points_balance_past_i64_fits() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.set_program(richest_program).await;
    let per_order_points: i128 = 999_999_999_999; // floor(999999999999.9999 × 1)
    let first_order_bonus: i128 = 1_000_000_000;

    app.accept(&largest_order("o-0", "x")).await;
    app.processed("o-0").await;
    assert_eq!(app.points("x").await, per_order_points + first_order_bonus);
    // As if the buyer had earned ~18 million of the largest orders before:
    // both of o-0's reward entries are raised close to i64::MAX (each entry
    // still fits its BIGINT), and the balance with them — past i64.
    let raised: i128 = i64::MAX as i128 - 2 * per_order_points;
    for kind in ["points", "first_order_bonus"] {
        app.db
            .exec(&format!("UPDATE reward_entries SET points = {raised} WHERE order_id = 'o-0' AND kind = ?"), &[kind])
            .await;
    }
    let balance_before = 2 * raised;
    // A string: SQLite would read a number past i64 as a float.
    app.db.exec(&format!("UPDATE buyers SET points = '{balance_before}' WHERE id = 'x'"), &[]).await;
    assert_eq!(app.points("x").await, balance_before);

    // Before: this failed with `1690 BIGINT value is out of range` until the
    // events were dead and the affiliates were never paid.
    let n = 30;
    for i in 1..=n {
        app.accept(&largest_order(&format!("o-{i}"), "x")).await;
    }
    for i in 1..=n {
        let order = app.processed(&format!("o-{i}")).await;
        assert_eq!(order["commission_status"], "processed", "{order}");
    }
    assert_eq!(app.points("x").await, balance_before + n as i128 * per_order_points);

    // Each affiliate's balance is the exact sum of what its orders show.
    for affiliate in ["A", "B", "C"] {
        let mut earned = d("0");
        for i in 0..=n {
            for (who, _, amount) in app.order_amounts(&format!("o-{i}")).await {
                if who == affiliate {
                    earned += amount;
                }
            }
        }
        assert!(earned >= d("999999999999.9999") * rust_decimal::Decimal::from(n + 1), "{affiliate}: {earned}");
        assert_eq!(app.balance(affiliate, "pending").await, earned, "{affiliate}");
    }

    // A refund of the largest order takes its points back exactly.
    let r = app
        .post("/v1/orders/o-1/refunds", &json!({"refund_id": "r-1", "items": [{"sku": "item", "quantity": 1}]}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(
        poll(std::time::Duration::from_secs(10), || async {
            app.points("x").await == balance_before + (n as i128 - 1) * per_order_points
        })
        .await,
        "the refund's points were not taken back"
    );
    app.assert_ledger_consistent().await;
    // Reconcile: the sums hold past i64 (no points_mismatch); the one thing it
    // reports is o-0's raised entries, which no rule computed.
    let report = app.reconcile().await;
    let violations = report["violations"].as_array().expect("violations").clone();
    assert!(!violations.is_empty(), "the raised entries are reported: {report}");
    for v in &violations {
        assert_ne!(v["kind"], "points_mismatch", "{report}");
        assert!(v.to_string().contains("o-0"), "only o-0's raised entries: {v}");
    }
}

#[tokio::test]
async fn an_event_filter_bound_past_2038_still_matches() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    app.accept(&simple_order("o-1", "x", Some("code-A"), "100000")).await;
    // Before: on MySQL a bound past the TIMESTAMP range (2038) matched nothing.
    for (query, expected) in [
        ("until=2039-01-01T00:00:00Z", 1),
        ("until=9999-12-31T00:00:00Z", 1),
        ("since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z", 1),
        ("since=2039-01-01T00:00:00Z", 0),
        ("until=1990-01-01T00:00:00Z", 0),
    ] {
        let page = app.admin_get(&format!("/admin/events?{query}")).await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(expected), "{query}: {page}");
    }
}

async fn get_with(app: &TestApp, key: &str) -> reqwest::Response {
    app.client.get(app.url("/v1/affiliates/A")).bearer_auth(key).send().await.unwrap()
}

async fn assert_429(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().expect("Retry-After in seconds");
    assert!(wait >= 1, "{what}: Retry-After {wait}");
    assert_eq!(r.headers()["content-type"], "application/problem+json", "{what}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429, "{what}: {body}");
}

#[tokio::test]
async fn a_key_past_its_rate_gets_429_and_other_keys_keep_theirs() {
    // Before: 2 000 requests with one key at 758 req/s, no 429.
    let app = spawn_app_with(
        |c| {
            c.rate_limit_per_sec = 2;
            c.rate_limit_burst = 10;
        },
        Faults::default(),
    )
    .await;
    app.create_affiliate("A", None).await; // one of the storefront key's tokens
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(get_with(&app, STOREFRONT_KEY).await.status());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((8..=11).contains(&ok), "the rest of the burst of 10 (and what refilled meanwhile): {statuses:?}");
    assert_429(get_with(&app, STOREFRONT_KEY).await, "past the burst").await;
    // The admin key has its own bucket.
    assert_eq!(get_with(&app, ADMIN_KEY).await.status(), StatusCode::OK);
    // And the key's bucket refills at its rate.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(get_with(&app, STOREFRONT_KEY).await.status(), StatusCode::OK);
}

/// Over real TCP, so it also checks that app.rs hands the peer address to
/// the limiter (src/http/tests.rs checks the limiter through the router).
#[tokio::test]
async fn an_address_failing_authentication_too_often_is_refused_whatever_key_it_sends() {
    // Before: 2 000 requests with a wrong key at 7 400 req/s, all 401.
    let app = spawn_app_with(
        |c| {
            c.auth_failures_per_min = 1;
            c.auth_failures_burst = 5;
        },
        Faults::default(),
    )
    .await;
    app.create_affiliate("A", None).await;
    for n in 0..5 {
        assert_eq!(get_with(&app, "wrong").await.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    assert_429(get_with(&app, "wrong").await, "the sixth failure").await;
    // Refused before the key is compared: a right guess now learns nothing.
    assert_429(get_with(&app, STOREFRONT_KEY).await, "a valid key from the refused address").await;
    // What the limiter counts is checked by the router test of the same name.
}
