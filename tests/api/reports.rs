//! Reports over time (docs/API.md "Reports"): the daily figures and the top
//! affiliates, from aggregates the money transactions maintain — checked
//! against the ledger itself, across time zones, and through a failure
//! injected mid-transaction (counted once).
use crate::helpers::*;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn sum(v: &Value, key: &str) -> Decimal {
    d(v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")))
}

/// What the ledger and the wallets hold, booked the report's way: credits by
/// kind, debits, adjustments; points earned by orders.
async fn from_the_ledger(app: &TestApp) -> Value {
    let mut by_kind = std::collections::BTreeMap::<String, Decimal>::new();
    let mut reversals = Decimal::ZERO;
    for row in app.db.rows("SELECT kind, amount FROM ledger_entries", &[]).await {
        let (kind, amount) = (row[0].clone().unwrap(), d(row[1].as_deref().unwrap()));
        if kind == "adjustment" {
            *by_kind.entry(kind).or_default() += amount;
        } else if amount < Decimal::ZERO {
            reversals += amount;
        } else {
            *by_kind.entry(kind).or_default() += amount;
        }
    }
    let earned = app
        .db
        .int("SELECT COALESCE(SUM(points), 0) FROM reward_entries WHERE kind IN ('points', 'first_order_bonus') AND points > 0", &[])
        .await;
    let spent = app.db.int("SELECT COALESCE(SUM(points), 0) FROM redemptions WHERE status = 'captured'", &[]).await;
    let get = |k: &str| by_kind.get(k).copied().unwrap_or_default().normalize().to_string();
    json!({"commission": get("commission"), "tier_bonus": get("tier_bonus"), "milestone_bonus": get("milestone_bonus"),
        "adjustments": get("adjustment"), "reversals": reversals.normalize().to_string(),
        "points_earned": earned, "points_spent": spent})
}

fn booked(totals: &Value) -> Value {
    let n = |k: &str| sum(totals, k).normalize().to_string();
    json!({"commission": n("commission"), "tier_bonus": n("tier_bonus"), "milestone_bonus": n("milestone_bonus"),
        "adjustments": n("adjustments"), "reversals": n("reversals"),
        "points_earned": totals["points_earned"], "points_spent": totals["points_spent"]})
}

#[tokio::test]
async fn the_daily_report_and_the_top_affiliates_add_up_to_the_ledger_in_any_time_zone() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let empty = app.admin_get("/admin/reports/daily").await;
    assert_eq!(empty["days"].as_array().unwrap().len(), 30, "the 30 days that end with today");
    assert_eq!((&empty["tz"], &empty["currency"]), (&json!("Asia/Jakarta"), &json!("IDR")));
    assert_eq!(empty["totals"]["orders"], 0);

    // The worked example, a partial refund, a second order, a capture and an adjustment.
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    app.accept(&simple_order("o-2", "y", Some("code-B"), "200000")).await;
    app.processed("o-2").await;
    let r = app
        .post("/v1/orders/o-1/refunds", &json!({"refund_id": "r-1", "items": [{"sku": "shirt", "quantity": 1}]}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.post("/v1/buyers/x/redemptions", &json!({"redemption_id": "h-1", "points": 4000})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.post("/v1/buyers/x/redemptions/h-1/capture", &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .admin_post(
            "/admin/affiliates/A/adjustments",
            &json!({"adjustment_id": "a-1", "amount": "1000", "reason": "promo"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(
        poll(std::time::Duration::from_secs(20), || async {
            app.admin_get("/admin/events?status=pending").await["items"].as_array().unwrap().is_empty()
        })
        .await,
        "every event applied"
    );

    let report = app.admin_get("/admin/reports/daily").await;
    let totals = &report["totals"];
    assert_eq!(totals["orders"], 2);
    assert_eq!(sum(totals, "eligible_sales"), d("2350000"), "2 150 000 + 200 000");
    assert_eq!(booked(totals), from_the_ledger(&app).await, "{report}");
    // The worked example's figures, booked: C 95 000, B 64 500 + 20 000, A 21 500 + 6 000.
    assert_eq!(sum(totals, "commission"), d("207000"));
    assert!(sum(totals, "reversals") < Decimal::ZERO);
    assert_eq!(totals["points_spent"], 4000);
    let days: Vec<&Value> = report["days"].as_array().unwrap().iter().filter(|d| d["orders"] != 0).collect();
    assert!(!days.is_empty() && days.len() <= 2, "today (or today and yesterday across a midnight)");

    // Another time zone cuts the days elsewhere, never the totals.
    for tz in ["UTC", "Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu"] {
        let other = app.admin_get(&format!("/admin/reports/daily?tz={tz}")).await;
        assert_eq!(other["tz"], tz);
        assert_eq!(booked(&other["totals"]), booked(totals), "{tz}");
        assert_eq!(other["totals"]["orders"], 2, "{tz}");
    }
    // A window before anything was booked is empty.
    let before = app.admin_get("/admin/reports/daily?since=2020-01-01&until=2020-02-01").await;
    assert_eq!((before["days"].as_array().unwrap().len(), &before["totals"]["orders"]), (31, &json!(0)));

    // Top affiliates: net commission at every level, sales and orders as direct affiliate.
    let top = app.admin_get("/admin/reports/top-affiliates").await;
    let rows: Vec<(String, String, i64, String)> = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["affiliate_id"].as_str().unwrap().into(),
                sum(i, "commission").normalize().to_string(),
                i["orders"].as_i64().unwrap(),
                sum(i, "sales").normalize().to_string(),
            )
        })
        .collect();
    let balance = |id: &'static str| {
        let app = &app;
        async move {
            let a = app.get_json(&format!("/v1/affiliates/{id}")).await;
            (sum(&a["balances"], "pending") + sum(&a["balances"], "approved") + sum(&a["balances"], "paid"))
                .normalize()
                .to_string()
        }
    };
    let (b, c, a) = (balance("B").await, balance("C").await, balance("A").await);
    assert_eq!(
        rows,
        [("C".into(), c, 1, "2150000".into()), ("B".into(), b, 1, "200000".into()), ("A".into(), a, 0, "0".into())],
        "{top}"
    );
    assert_eq!(top["items"][0]["name"], "Affiliate C");
    let by_sales = app.admin_get("/admin/reports/top-affiliates?by=sales&limit=1").await;
    assert_eq!(by_sales["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_sales["items"][0]["affiliate_id"], "C");

    for bad in [
        "/admin/reports/daily?since=2026-13-01",
        "/admin/reports/daily?since=2026-1-01",
        "/admin/reports/daily?since=2026-02-01&until=2026-02-01",
        "/admin/reports/daily?since=2025-01-01&until=2026-01-03",
        "/admin/reports/daily?tz=Mars/Olympus",
        "/admin/reports/top-affiliates?by=fame",
        "/admin/reports/top-affiliates?limit=0",
        "/admin/reports/top-affiliates?limit=101",
        "/admin/reports/top-affiliates?since=2024-01-01&until=2026-01-01",
    ] {
        let r = app.client.get(app.url(bad)).bearer_auth(ADMIN_KEY).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert!(app.get("/admin/reports/daily").await.status() == StatusCode::FORBIDDEN);
    // 366 days is the longest window.
    app.admin_get("/admin/reports/daily?since=2025-01-01&until=2026-01-02").await;
}

#[tokio::test]
async fn an_event_transaction_that_fails_adds_nothing_to_the_reports_and_its_retry_adds_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.faults.fail_db_mid_tx(1);
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let attempts = app.admin_get("/admin/events?order_id=o-1").await["items"][0]["attempts"].clone();
    assert!(attempts.as_u64().unwrap() >= 2, "the first attempt failed and was retried: {attempts}");
    let totals = app.admin_get("/admin/reports/daily").await["totals"].clone();
    assert_eq!(totals["orders"], 1);
    assert_eq!(sum(&totals, "commission"), d("181000"));
    assert_eq!(totals["points_earned"], 26500);
    assert_eq!(booked(&totals), from_the_ledger(&app).await);
}
