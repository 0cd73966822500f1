//! Period caps and program budgets (docs/RULES.md "Caps and budgets"): a
//! line past a cap is cut to what remains (or to zero), the cut is on the
//! ledger line, a refund gives its consumption back, a cut line is never
//! raised, and under concurrent load from several instances a cap is never
//! passed by one unit.
use crate::helpers::*;
use crate::lifecycle::refund;
use futures::StreamExt;
use komisi::engine::faults::Faults;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::sync::Arc;

/// The example program without month rules (an order's lines depend on it
/// alone, whatever order concurrent orders are processed in), with `change`.
async fn program(app: &TestApp, change: impl FnOnce(&mut Value)) {
    app.set_program(|p| {
        p["tiers"] = json!([]);
        p["milestones"] = json!([]);
        change(p);
    })
    .await;
}

/// C's (level-1) lines of an order: (amount, capped_by, cut).
async fn direct_lines(app: &TestApp, order: &str) -> Vec<(Decimal, Option<String>, Option<Decimal>)> {
    let o = app.get_json(&format!("/v1/orders/{order}")).await;
    o["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["level"] == 1)
        .map(|l| (dec(&l["amount"]), l["capped_by"].as_str().map(str::to_owned), l.get("cut").map(dec)))
        .collect()
}

async fn caps_of(app: &TestApp, affiliate: &str) -> Value {
    app.admin_get(&format!("/admin/affiliates/{affiliate}/caps")).await
}

/// A series' value in a Prometheus text exposition (NaN when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(f64::NAN)
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().map_or_else(Vec::new, |e| e.iter().map(|e| e["field"].as_str().unwrap().into()).collect())
}

#[tokio::test]
async fn a_monthly_cap_clips_the_order_that_reaches_it_and_a_refund_gives_room_back_without_raising_cut_lines() {
    let app = spawn_app().await;
    program(&app, |p| p["affiliate_caps"] = json!([{"period": "month", "max_commission": "25000"}])).await;
    abc_tree(&app).await;
    // Each order of 100 000 pays C 10 000 (B 3 000, A 1 000: the cap is on
    // the direct affiliate's lines only).
    for i in 1..=2 {
        app.accept(&simple_order(&format!("o-{i}"), &format!("x-{i}"), Some("code-C"), "100000")).await;
        app.processed(&format!("o-{i}")).await;
    }
    // The quote of the third says beforehand that it would be clipped.
    let quote: Value =
        app.post("/v1/quotes", &simple_order("q", "x-q", Some("code-C"), "100000")).await.json().await.unwrap();
    let c = quote["commissions"].as_array().unwrap().iter().find(|l| l["affiliate_id"] == "C").unwrap().clone();
    assert_eq!((&c["amount"], &c["capped_by"], &c["cut"]), (&json!("5000"), &json!("affiliate_month"), &json!("5000")));
    // The order that reaches the cap fails once in the middle of its
    // transaction (after its counter moved): rolled back whole, retried, and
    // the counter and the ledger come out exact.
    app.faults.fail_order_mid_tx("o-3", 1);
    let event = app.accept(&simple_order("o-3", "x-3", Some("code-C"), "100000")).await;
    app.processed("o-3").await;
    let e = app.admin_get(&format!("/admin/events/{event}")).await;
    assert_eq!(e["attempt_history"].as_array().map(Vec::len), Some(1), "the injected failure happened: {e}");
    assert_eq!(direct_lines(&app, "o-3").await, [(d("5000"), Some("affiliate_month".into()), Some(d("5000")))]);
    assert_eq!(
        app.order_amounts("o-3").await,
        [
            ("A".into(), "commission".into(), d("1000")),
            ("B".into(), "commission".into(), d("3000")),
            ("C".into(), "commission".into(), d("5000"))
        ]
    );
    // Full: the next pays nothing and says so.
    app.accept(&simple_order("o-4", "x-4", Some("code-C"), "100000")).await;
    app.processed("o-4").await;
    assert_eq!(direct_lines(&app, "o-4").await, [(d("0"), Some("affiliate_month".into()), Some(d("10000")))]);
    assert_eq!(app.balance("C", "pending").await, d("25000"));
    let caps = caps_of(&app, "C").await;
    assert_eq!(caps["source"], "program");
    assert_eq!(
        (&caps["caps"][0]["max_commission"], &caps["caps"][0]["used_commission"]),
        (&json!("25000"), &json!("25000"))
    );

    // A full refund of o-1 gives its 10 000 back to the month; o-3 and o-4 stay cut.
    let (status, _) = refund(&app, "o-1", "r-1", json!([{"sku": "item", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.processed("o-1").await;
    assert_eq!(caps_of(&app, "C").await["caps"][0]["used_commission"], "15000");
    app.accept(&simple_order("o-5", "x-5", Some("code-C"), "100000")).await;
    app.processed("o-5").await;
    assert_eq!(direct_lines(&app, "o-5").await, [(d("10000"), None, None)]);
    assert_eq!(app.order_amounts("o-3").await[2], ("C".into(), "commission".into(), d("5000")), "not raised");
    assert_eq!(app.balance("C", "pending").await, d("25000"), "20 000 + 5 000 + 0 + 10 000 − 10 000");
    // A refund of a clipped order takes back what it paid, no more.
    let (status, _) = refund(&app, "o-3", "r-3", json!([{"sku": "item", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.processed("o-3").await;
    assert_eq!(app.order_amounts("o-3").await, Vec::<(String, String, Decimal)>::new(), "nets to zero");
    assert_eq!(caps_of(&app, "C").await["caps"][0]["used_commission"], "20000");

    // An affiliate's own caps replace the program's for its next orders.
    let bad =
        app.admin_put("/admin/affiliates/C/caps", &json!({"caps": [{"period": "year", "max_commission": "0"}]})).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(fields(&body), ["caps[0].max_commission", "caps[0].period"]);
    let r = app.admin_put("/admin/affiliates/nobody/caps", &json!({"caps": []})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .admin_put("/admin/affiliates/C/caps", &json!({"caps": [{"period": "day", "max_commission": "12345"}]}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let own: Value = r.json().await.unwrap();
    assert_eq!((&own["source"], &own["caps"][0]["period"]), (&json!("own"), &json!("day")));
    app.accept(&simple_order("o-6", "x-6", Some("code-C"), "100000")).await;
    app.accept(&simple_order("o-7", "x-7", Some("code-C"), "100000")).await;
    app.processed("o-6").await;
    app.processed("o-7").await;
    let mut paid: Vec<Decimal> = Vec::new();
    for o in ["o-6", "o-7"] {
        paid.extend(direct_lines(&app, o).await.into_iter().map(|l| l.0));
    }
    paid.sort();
    assert_eq!(paid, [d("2345"), d("10000")], "the day's 12 345, the month's cap no longer applies");
    assert_eq!(caps_of(&app, "C").await["caps"][0]["used_commission"], "12345");
    let r = app.admin_put("/admin/affiliates/C/caps", &json!({"caps": null})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["source"], "program");

    app.assert_ledger_consistent().await;
    // The full sweep checks C's day and month counters against its lines.
    let report = app.reconcile().await;
    assert_eq!((&report["ok"], &report["checked"]["counters"]), (&json!(true), &json!(2)), "{report}");
    // A counter off its lines is found.
    app.db.exec("UPDATE cap_counters SET used_commission = '1' WHERE period = 'day'", &[]).await;
    let report = app.reconcile().await;
    assert_eq!(report["ok"], false, "{report}");
    let v = &report["violations"][0];
    assert_eq!((&v["kind"], &v["affiliate_id"]), (&json!("cap_counter_mismatch"), &json!("C")), "{report}");
    app.db.exec("UPDATE cap_counters SET used_commission = '12345' WHERE period = 'day'", &[]).await;
    app.assert_reconciled().await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    // (Other tests in this process count too: at least this test's.)
    assert!(sample(&metrics, "komisi_caps_bound_total{bound=\"affiliate_month\"}") >= 2.0, "{metrics}");
    assert!(sample(&metrics, "komisi_caps_bound_total{bound=\"affiliate_day\"}") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn a_program_budget_cuts_commissions_and_points_and_zero_pays_nothing_past_it() {
    let app = spawn_app().await;
    program(&app, |p| {
        p["budgets"] = json!([{"period": "month", "max_commission": "20000", "max_points": "2500"}]);
        p["on_exhausted"] = json!("zero");
        p["buyer_rewards"]["first_order_bonus"] = json!("0");
    })
    .await;
    abc_tree(&app).await;
    // 14 000 of commission (C 10 000, B 3 000, A 1 000) and 1 000 points an order.
    app.accept(&simple_order("o-1", "x-1", Some("code-C"), "100000")).await;
    app.processed("o-1").await;
    app.accept(&simple_order("o-2", "x-2", Some("code-C"), "100000")).await;
    let o = app.processed("o-2").await;
    // Zero: C's 10 000 does not fit in the 6 000 left and pays nothing; B's
    // and A's lines fit and are paid.
    let lines: Vec<(String, Value, Value)> = o["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["affiliate_id"].as_str().unwrap().to_owned(), l["amount"].clone(), l["capped_by"].clone()))
        .collect();
    assert!(lines.contains(&("C".into(), json!("0"), json!("budget_month"))), "{lines:?}");
    assert!(lines.contains(&("B".into(), json!("3000"), Value::Null)), "{lines:?}");
    assert!(lines.contains(&("A".into(), json!("1000"), Value::Null)), "{lines:?}");
    assert_eq!(o["rewards"][0]["points"], 1000);
    app.accept(&simple_order("o-3", "x-3", Some("code-C"), "100000")).await;
    let o = app.processed("o-3").await;
    assert_eq!((&o["rewards"][0]["points"], &o["rewards"][0]["cut"]), (&json!(0), &json!(1000)), "{o}");
    let budgets = app.admin_get("/admin/budgets").await;
    assert_eq!(budgets["on_exhausted"], "zero");
    let b = &budgets["budgets"][0];
    assert_eq!(
        (&b["period"], &b["max_commission"], &b["used_commission"], &b["max_points"], &b["used_points"]),
        (&json!("month"), &json!("20000"), &json!("19000"), &json!(2500), &json!(2000))
    );
    assert_eq!(app.points("x-3").await, 0);
    // A program's budget of 0 or negative is refused, nothing stored.
    let mut bad = default_program();
    bad["budgets"] = json!([{"period": "month", "max_commission": "0"}, {"period": "week", "max_points": "-1"}]);
    bad["affiliate_caps"] = json!([{"period": "day", "max_commission": "-5"}]);
    let r = app.admin_put("/admin/program", &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        fields(&body),
        ["affiliate_caps[0].max_commission", "budgets[0].max_commission", "budgets[1].max_points", "budgets[1].period"]
    );
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    // The only month budget of the tests in this process.
    assert_eq!(sample(&metrics, "komisi_budget_used_ratio{period=\"month\",measure=\"commission\"}"), 0.95);
    assert_eq!(sample(&metrics, "komisi_budget_used_ratio{period=\"month\",measure=\"points\"}"), 0.8);
}

/// Posts `orders` (id, code) from 64 clients spread over `bases`.
async fn post_spread(app: &TestApp, bases: &[String], orders: Vec<(String, String)>) {
    let client = &app.client;
    let statuses: Vec<StatusCode> = futures::stream::iter(orders.into_iter().enumerate())
        .map(|(i, (id, code))| {
            let base = &bases[i % bases.len()];
            async move {
                let body = simple_order(&id, &format!("b-{id}"), Some(&code), "100000");
                let r = client.post(format!("{base}/v1/orders")).bearer_auth(STOREFRONT_KEY).json(&body).send().await;
                r.expect("POST /v1/orders").status()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let refused: std::collections::BTreeMap<u16, usize> =
        statuses.iter().filter(|s| **s != StatusCode::ACCEPTED).fold(Default::default(), |mut m, s| {
            *m.entry(s.as_u16()).or_default() += 1;
            m
        });
    assert!(refused.is_empty(), "every order accepted; answered otherwise (status: count): {refused:?}");
}

async fn all_done(app: &TestApp, n: i64) {
    let done = poll(std::time::Duration::from_secs(240), || async {
        app.db.int("SELECT COUNT(*) FROM events WHERE status = 'done'", &[]).await == n
    })
    .await;
    assert!(done, "every event applied");
}

/// Three instances share the database; 64 clients post 2 000 orders of one
/// hot affiliate whose monthly cap binds half-way (not a multiple of a
/// line: the order that reaches it is clipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_affiliates_cap_under_64_clients_and_3_instances_is_reached_to_the_unit_and_never_passed() {
    if !needs_mysql_backend("caps::a_hot_affiliates_cap…", "several instances share MySQL") {
        return;
    }
    let app = spawn_app().await;
    program(&app, |p| p["affiliate_caps"] = json!([{"period": "month", "max_commission": "10000500"}])).await;
    abc_tree(&app).await;
    let (second, a2, _) = start_instance(app.config.clone(), Arc::new(Faults::default())).await;
    let (third, a3, _) = start_instance(app.config.clone(), Arc::new(Faults::default())).await;
    let bases = vec![app.base.clone(), format!("http://{a2}"), format!("http://{a3}")];
    post_spread(&app, &bases, (0..2000).map(|i| (format!("h-{i:04}"), "code-C".to_owned())).collect()).await;
    all_done(&app, 2000).await;
    let direct = app
        .db
        .one("SELECT CAST(SUM(amount) AS CHAR) FROM ledger_entries WHERE affiliate_id = 'C' AND level = 1", &[])
        .await;
    assert_eq!(d(&direct), d("10000500"), "the month's cap, to the unit");
    // Every order paid 10 000, 500 (the one that reached it) or 0.
    let paid = app.db.column("SELECT CAST(amount AS CHAR) FROM ledger_entries WHERE affiliate_id = 'C'", &[]).await;
    let count = |x: &str| paid.iter().filter(|p| d(p) == d(x)).count();
    assert_eq!((count("10000"), count("500"), count("0")), (1000, 1, 999));
    // The upline is not capped.
    assert_eq!(app.balance("B", "pending").await, d("6000000"));
    assert_eq!(caps_of(&app, "C").await["caps"][0]["used_commission"], "10000500");
    drop((second, third));
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

/// The same for a program budget shared by 100 affiliates (no upline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_across_100_affiliates_under_64_clients_and_3_instances_is_reached_to_the_unit() {
    if !needs_mysql_backend("caps::a_budget_across_100_affiliates…", "several instances share MySQL") {
        return;
    }
    let app = spawn_app().await;
    program(&app, |p| {
        p["budgets"] = json!([{"period": "total", "max_commission": "10000500", "max_points": "1000500"}]);
        p["buyer_rewards"]["first_order_bonus"] = json!("0");
    })
    .await;
    for i in 0..100 {
        app.create_affiliate(&format!("f-{i:03}"), None).await;
    }
    let (second, a2, _) = start_instance(app.config.clone(), Arc::new(Faults::default())).await;
    let (third, a3, _) = start_instance(app.config.clone(), Arc::new(Faults::default())).await;
    let bases = vec![app.base.clone(), format!("http://{a2}"), format!("http://{a3}")];
    let orders = (0..2000).map(|i| (format!("o-{i:04}"), format!("code-f-{:03}", (i * 37) % 100))).collect();
    post_spread(&app, &bases, orders).await;
    all_done(&app, 2000).await;
    let total = app.db.one("SELECT CAST(SUM(amount) AS CHAR) FROM ledger_entries", &[]).await;
    assert_eq!(d(&total), d("10000500"));
    let points = app.db.one("SELECT CAST(SUM(points) AS CHAR) FROM reward_entries", &[]).await;
    assert_eq!(d(&points), d("1000500"));
    let b = &app.admin_get("/admin/budgets").await["budgets"][0];
    assert_eq!(
        (&b["used_commission"], &b["used_points"], &b["window_end"]),
        (&json!("10000500"), &json!(1000500), &Value::Null)
    );
    drop((second, third));
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}
