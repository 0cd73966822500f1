//! The operator console (`/console`) in headless Chromium: this test sets the
//! scene over HTTP on the suite's backend (dead events by fault injection, a
//! refund whose event is dead, a sku and a name that are markup, an approved
//! balance, an affiliate `hook` for the webhooks page's order, an order
//! attributed by `promo`'s coupon over A's referral code, and promo's tracked
//! clicks; the admin key is a named one), runs
//! `tests/console/console.mjs` (playwright-core driving Debian's chromium)
//! against the running komisi, and then checks the money side: the replayed
//! event paid exactly once, the bulk replay and the applied delta landed, the
//! payout moved approved → paid, the commission adjustment (sent twice, its
//! first answer lost) was recorded once and audited under the key's name,
//! and the ledger reconciles; the buyer's points credit (after a refused
//! debit) is the buyer's one points adjustment, audited under the key's
//! name; the daily report the reports step compared
//! with the page counts every order of the scene, A at the top. The webhooks page
//! is driven against a receiver the script runs on 127.0.0.1, so komisi runs
//! with private webhook addresses allowed. Screenshots go to
//! `target/console-screenshots/<backend>/`.
//!
//! Without node, the npm package (`npm ci` in tests/console) or chromium the
//! test says why and passes, unless `KOMISI_TEST_REQUIRE_BROWSER=1`
//! (`scripts/test.sh` sets it, after installing them). The pages' own
//! headers (CSP and the rest, 404, 405, HEAD) are router tests in
//! src/http/tests.rs.
use crate::helpers::*;
use komisi::engine::faults::Faults;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const XSS_SKU: &str = "<img src=x onerror=alert(1)>";
const XSS_NAME: &str = "<img src=x onerror=\"window.__xss=1\"> & <b>bold</b>";
/// The attribution step's order: promo's coupon, and A's referral code (ignored).
const COUPON_ORDER: &str = "o-coupon";
const COUPON: &str = "RAMADAN-PROMO";
const OUTRANKED_CODE: &str = "code-A";
/// The admin key's name (`KOMISI_ADMIN_KEYS=name:key`): the audit page's actor.
const ADMIN_NAME: &str = "support.dewi";
/// The adjustment step's affiliate (approved balance 0) and its credit; a
/// debit of more than 0 is refused first.
const ADJUSTED: &str = "C";
const CREDIT: &str = "12500";
/// The reports step's top affiliate by commission over the last 30 days:
/// A earns on o-pay (20 000), the three bulk orders (3 × 10 000) and o-dead
/// (3 000), ahead of C (95 000 on o-refund, 80 000 of it reversed, plus the
/// 12 500 credit), B and the rest.
const TOP_AFFILIATE: &str = "A";
/// The buyer step's buyer, opened from its order o-pay (where it earned
/// points), and the points it is credited by hand; a debit of more than it
/// can spend is refused first.
const BUYER: &str = "z";
const BUYER_ORDER: &str = "o-pay";
const POINTS_CREDIT: i64 = 750;

fn chromium() -> PathBuf {
    std::env::var_os("KOMISI_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into())
}

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// Why the browser test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed".into());
    }
    if !console_dir().join("node_modules/playwright-core/package.json").exists() {
        return Some("playwright-core is not installed (npm ci in tests/console)".into());
    }
    if !chromium().exists() {
        return Some(format!("{} is missing (apt-get install chromium)", chromium().display()));
    }
    None
}

/// True when the browser test may run; panics when it is required and cannot.
fn browser_here(test: &str) -> bool {
    let Some(why) = missing() else { return true };
    skip_missing_dependency(test, "KOMISI_TEST_REQUIRE_BROWSER", &why);
    false
}

async fn event_of(app: &TestApp, order: &str, kind: &str) -> String {
    let events = app.admin_get(&format!("/admin/events?order_id={order}&type={kind}")).await;
    events["items"][0]["id"].as_str().unwrap_or_else(|| panic!("no {kind} event of {order}")).to_owned()
}

async fn dead_count(app: &TestApp) -> u64 {
    app.admin_get("/admin/events/counts").await["dead"].as_u64().unwrap()
}

#[tokio::test]
async fn the_console_finds_replays_recomputes_and_pays_in_a_browser() {
    if !browser_here("the_console_finds_replays_recomputes_and_pays_in_a_browser") {
        return;
    }
    let started = Instant::now();
    // One attempt: an event that fails is dead at once. The webhooks step's
    // receiver listens on 127.0.0.1 (retries come fast in test_config).
    let app = spawn_app_with(
        |c| {
            c.max_attempts = 1;
            c.webhook_allow_private = true;
            c.admin_keys = vec![format!("{ADMIN_NAME}:{ADMIN_KEY}")];
        },
        Faults::default(),
    )
    .await;
    app.set_program(|p| {
        p["holding_days"] = json!(0);
        // Room enough for every order of the run: the program page shows how much is used.
        // (A total budget: the month's gauge is caps::a_program_budget_…'s alone in this process.)
        p["budgets"] = json!([{"period": "total", "max_commission": "1000000", "max_points": "100000000"}]);
        p["affiliate_caps"] = json!([{"period": "month", "max_commission": "50000000"}]);
    })
    .await;
    abc_tree(&app).await;
    app.create_affiliate_with(json!({"id": "xss", "name": XSS_NAME, "parent_id": "C", "referral_code": "code-xss"}))
        .await;
    // The webhooks step's order (o-hook, placed by the script) pays hook alone.
    app.create_affiliate("hook", None).await;

    // Applied as they come: the refund's order, the markup sku's order, an approved balance for A.
    app.accept(&worked_example_order("o-refund", "x", "code-C")).await;
    app.accept(&simple_order("o-xss", "y", None, "60000")).await;
    app.accept(&simple_order("o-pay", "z", Some("code-A"), "200000")).await;
    // A rate table for orders in other currencies (the program page shows it).
    let r = app.admin_put("/admin/fx-rates", &json!({"base": "IDR", "rates": {"USD": "15650.25"}})).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // An unattributed order in dollars at its own rate: 10.00 × 15 650.25 → 156 502 IDR (floored).
    app.accept(&json!({"id": "o-usd", "buyer_id": "usd-buyer", "currency": "USD", "fx_rate": "15650.25",
        "items": [{"sku": "mug", "category": "home", "quantity": 1, "unit_price": "10.00"}]}))
        .await;
    for o in ["o-refund", "o-xss", "o-pay", "o-usd"] {
        app.processed(o).await;
    }
    // The API refuses such a sku (ids are 1-64 of A-Z a-z 0-9 _ . : -); one
    // written behind its back must still show as text.
    app.db.exec("UPDATE order_items SET sku = ? WHERE order_id = 'o-xss'", &[XSS_SKU]).await;
    let r = app.client.post(app.url("/v1/orders/o-pay/complete")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    assert!(poll(Duration::from_secs(15), || async { app.balance("A", "approved").await == d("20000") }).await);

    // Attribution: `promo` (top of its own tree) holds a coupon and has 2
    // tracked clicks; an order carrying the coupon and A's referral code is
    // promo's (a coupon comes before a referral code), A's code ignored.
    app.create_affiliate("promo", None).await;
    let r = app.post("/v1/affiliates/promo/coupons", &json!({"code": COUPON.to_lowercase()})).await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    for _ in 0..2 {
        let r = app.post("/v1/clicks", &json!({"referral_code": "code-promo"})).await;
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    }
    // promo's own monthly cap clips the coupon order's 5 000 line to 3 000 (the order page shows the cut).
    let r = app
        .admin_put("/admin/affiliates/promo/caps", &json!({"caps": [{"period": "month", "max_commission": "3000"}]}))
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let mut coupon_order = simple_order(COUPON_ORDER, "u", Some(OUTRANKED_CODE), "50000");
    coupon_order["coupon_codes"] = json!([COUPON.to_lowercase()]);
    app.accept(&coupon_order).await;
    let placed = app.processed(COUPON_ORDER).await;
    assert_eq!(
        (&placed["attribution"]["affiliate_id"], &placed["attribution"]["source"]),
        (&json!("promo"), &json!("coupon")),
        "{placed}"
    );
    assert_eq!(placed["attribution"]["ignored"].as_array().map(Vec::len), Some(1), "{placed}");
    // Click counts reach the database every 5 seconds.
    assert!(
        poll(Duration::from_secs(30), || async {
            app.get_json("/v1/affiliates/promo/attribution").await["clicks"] == 2
        })
        .await,
        "promo's 2 clicks are counted"
    );

    // Every event transaction fails: the refund's event, o-dead's and three more go dead.
    app.faults.fail_db_mid_tx(u32::MAX);
    let r = app
        .post("/v1/orders/o-refund/refunds", &json!({"refund_id": "r-1", "items": [{"sku": "phone", "quantity": 1}]}))
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    app.accept(&simple_order("o-dead", "w", Some("code-B"), "100000")).await;
    for n in 1..=3 {
        app.accept(&simple_order(&format!("o-bulk-{n}"), "v", Some("code-A"), "100000")).await;
    }
    assert!(poll(Duration::from_secs(30), || async { dead_count(&app).await == 5 }).await, "5 dead events");
    app.faults.clear();
    let dead_event = event_of(&app, "o-dead", "order.placed").await;
    let b_before = app.balance("B", "pending").await;
    assert_eq!(b_before, d("64500"), "B's level-2 share of o-refund only");
    let scene = started.elapsed();

    let backend = match test_backend() {
        TestBackend::MySql => "mysql",
        TestBackend::Sqlite => "sqlite",
    };
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots").join(backend);
    let browser_started = Instant::now();
    let out = tokio::process::Command::new("node")
        .arg(console_dir().join("console.mjs"))
        .current_dir(console_dir())
        .env("KOMISI_URL", &app.base)
        .env("KOMISI_ADMIN_KEY", ADMIN_KEY)
        .env("KOMISI_STOREFRONT_KEY", STOREFRONT_KEY)
        .env("KOMISI_DEAD_EVENT", &dead_event)
        .env("KOMISI_XSS_SKU", XSS_SKU)
        .env("KOMISI_XSS_NAME", XSS_NAME)
        .env("KOMISI_COUPON_ORDER", COUPON_ORDER)
        .env("KOMISI_COUPON_AFFILIATE", "promo")
        .env("KOMISI_COUPON", COUPON)
        .env("KOMISI_OUTRANKED_CODE", OUTRANKED_CODE)
        .env("KOMISI_ADMIN_NAME", ADMIN_NAME)
        .env("KOMISI_ADJUST_AFFILIATE", ADJUSTED)
        .env("KOMISI_ADJUST_CREDIT", CREDIT)
        .env("KOMISI_TOP_AFFILIATE", TOP_AFFILIATE)
        .env("KOMISI_BUYER", BUYER)
        .env("KOMISI_BUYER_ORDER", BUYER_ORDER)
        .env("KOMISI_POINTS_CREDIT", POINTS_CREDIT.to_string())
        .env("KOMISI_SCREENSHOTS", &shots)
        .env("KOMISI_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("the browser run ends in 3 min")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed ({}):\n{stderr}\n--- its log:\n{stdout}", out.status);
    eprintln!("{stdout}console [{backend}]: scene {scene:.1?}, browser {:.1?}", browser_started.elapsed());

    // The replayed event paid B exactly once: 10 % of 100 000, one ledger line per beneficiary.
    app.processed("o-dead").await;
    assert_eq!(
        app.event_entries(&dead_event).await,
        vec![
            ("A".into(), "commission".into(), d("3000"), "pending".into()),
            ("B".into(), "commission".into(), d("10000"), "pending".into())
        ]
    );
    for n in 1..=3 {
        app.processed(&format!("o-bulk-{n}")).await;
    }
    // The delta the browser applied reversed the refunded phone's share
    // (C 80 000, B 60 000, A 20 000, 20 000 points); the refund's own event
    // stays dead and would change nothing now.
    let recomputed = event_of(&app, "o-refund", "order.recomputed").await;
    assert!(
        poll(Duration::from_secs(15), || async {
            app.admin_get(&format!("/admin/events/{recomputed}")).await["status"] == "done"
        })
        .await
    );
    assert_eq!(app.balance("C", "pending").await, d("15000"));
    assert_eq!(app.balance("B", "pending").await, b_before - d("60000") + d("10000"), "B: the delta, and o-dead once");
    let dry: Value =
        app.admin_post("/admin/orders/o-refund/recompute", &json!({"dry_run": true})).await.json().await.unwrap();
    assert_eq!(dry["delta"], json!([]));
    // The batch the browser built and marked paid.
    assert_eq!((app.balance("A", "approved").await, app.balance("A", "paid").await), (d("0"), d("20000")));
    assert_eq!(app.admin_get("/admin/payouts").await["items"][0]["status"], "completed");
    assert_eq!(dead_count(&app).await, 1, "only the refund's event is left dead");
    // The orders the webhooks step placed.
    app.processed("o-hook").await;
    app.processed("o-hook-2").await;
    // The attribution step only read: promo alone earned on its coupon's
    // order, clipped to its cap of 3 000.
    assert_eq!(app.balance("promo", "pending").await, d("3000"));
    // The adjustment step: the refused debit wrote nothing; the credit, sent
    // twice under one id (the first answer lost), is one approved entry and
    // one audit entry by the key's name.
    assert_eq!(app.balance(ADJUSTED, "approved").await, d(CREDIT));
    let ledger = app.get_json(&format!("/v1/affiliates/{ADJUSTED}/commissions?limit=100")).await;
    let adjustments: Vec<&Value> =
        ledger["items"].as_array().expect("items").iter().filter(|e| e["kind"] == "adjustment").collect();
    assert_eq!(adjustments.len(), 1, "{ledger}");
    assert_eq!(
        (&adjustments[0]["amount"], &adjustments[0]["status"], &adjustments[0]["order_id"]),
        (&json!(CREDIT), &json!("approved"), &Value::Null)
    );
    let trail = app.admin_get("/admin/audit?action=adjustment.commission").await;
    assert_eq!(trail["items"].as_array().map(Vec::len), Some(1), "{trail}");
    assert_eq!(
        (&trail["items"][0]["actor"], &trail["items"][0]["subject"], &trail["items"][0]["after"]["amount"]),
        (&json!(ADMIN_NAME), &json!(format!("affiliate:{ADJUSTED}")), &json!(CREDIT))
    );
    // The buyer step: the refused debit wrote nothing; the credit is the
    // buyer's one points adjustment (one `adjustment` entry in the wallet's
    // history, never expiring) and one audit entry by the key's name.
    let wallet = app.get_json(&format!("/v1/buyers/{BUYER}/rewards")).await;
    let adjusted: Vec<&Value> =
        wallet["history"].as_array().expect("history").iter().filter(|e| e["kind"] == "adjustment").collect();
    assert_eq!(adjusted.len(), 1, "{wallet}");
    assert_eq!(
        (&adjusted[0]["points"], &adjusted[0]["order_id"], &adjusted[0]["expires_at"]),
        (&json!(POINTS_CREDIT), &Value::Null, &Value::Null)
    );
    let trail = app.admin_get("/admin/audit?action=adjustment.points").await;
    assert_eq!(trail["items"].as_array().map(Vec::len), Some(1), "{trail}");
    assert_eq!(
        (&trail["items"][0]["actor"], &trail["items"][0]["subject"]),
        (&json!(ADMIN_NAME), &json!(format!("buyer:{BUYER}")))
    );
    // The reports step compared the page with the API; the API's figures are the scene's:
    // every order placed (o-refund, o-xss, o-pay, o-usd, the coupon's, o-dead,
    // 3 bulk, 2 of hook's) in the 30 days, and A at the top.
    let daily = app.admin_get("/admin/reports/daily").await;
    assert_eq!(daily["totals"]["orders"], 11, "{}", daily["totals"]);
    let top = app.admin_get("/admin/reports/top-affiliates").await;
    assert_eq!(top["items"][0]["affiliate_id"], TOP_AFFILIATE, "{top}");
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
    for name in [
        "sign-in",
        "overview",
        "events-dead",
        "event-done",
        "order-recompute",
        "affiliate",
        "order-attribution",
        "affiliate-attribution",
        "program",
        "simulation",
        "payout",
        "webhooks",
        "webhook",
        "webhook-resent",
        "webhook-failed",
        "overview-phone",
        "webhooks-phone",
        "affiliate-phone",
        "affiliate-adjusted",
        "audit",
        "audit-phone",
        "reports",
        "reports-week",
        "reports-phone",
        "buyer",
        "buyer-adjust-refused",
        "buyer-adjusted",
        "buyer-unknown",
        "orders-open-buyer",
        "buyer-phone",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "screenshot {name}");
    }
}
