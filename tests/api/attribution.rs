//! Attribution beyond the referral code (docs/RULES.md "Attribution"):
//! coupons, customer links, signed clicks, their precedence, self-referral,
//! and moving an order to another affiliate by hand — on both backends.
use crate::helpers::*;
use chrono::{TimeDelta, Utc};
use komisi::domain::attribution::{sign_click, Click};
use komisi::domain::ids::AffiliateId;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn add_coupon(app: &TestApp, affiliate: &str, code: &str) -> (StatusCode, Value) {
    let r = app.post(&format!("/v1/affiliates/{affiliate}/coupons"), &json!({"code": code})).await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn click(app: &TestApp, code: &str) -> String {
    let r = app.post("/v1/clicks", &json!({"referral_code": code})).await;
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, StatusCode::CREATED, "click: {body}");
    body["click_id"].as_str().expect("click_id").to_owned()
}

/// A click of `affiliate` at `at`, signed with the database's own key (as
/// `POST /v1/clicks` would have signed it then).
async fn click_at(app: &TestApp, affiliate: &str, at: chrono::DateTime<Utc>) -> String {
    // The key exists once a click was recorded.
    click(app, &format!("code-{affiliate}")).await;
    let key = hex::decode(app.db.one("SELECT hex(secret) FROM click_keys WHERE id = 1", &[]).await).expect("hex");
    sign_click(&key, &Click { affiliate_id: AffiliateId::parse(affiliate).unwrap(), at })
}

fn with(mut order: Value, field: &str, value: Value) -> Value {
    order[field] = value;
    order
}

fn source(order: &Value) -> (&str, &str) {
    (
        order["attribution"]["affiliate_id"].as_str().unwrap_or("-"),
        order["attribution"]["source"].as_str().unwrap_or("-"),
    )
}

fn ignored(order: &Value) -> Vec<(String, String)> {
    order["attribution"]["ignored"]
        .as_array()
        .expect("ignored")
        .iter()
        .map(|i| (i["source"].as_str().unwrap().to_owned(), i["reason"].as_str().unwrap().to_owned()))
        .collect()
}

fn linking(days: Option<u32>, first_touch_only: bool) -> impl FnOnce(&mut Value) {
    move |p: &mut Value| {
        p["holding_days"] = json!(0);
        p["attribution"] = match days {
            Some(d) => json!({"customer_link": {"mode": "days", "days": d, "first_touch_only": first_touch_only}}),
            None => json!({"customer_link": {"mode": "lifetime"}}),
        };
    }
}

#[tokio::test]
async fn the_worked_example_paid_through_a_coupon_code() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    assert_eq!(add_coupon(&app, "C", "Ramadan-C").await.0, StatusCode::CREATED);
    let mut order = worked_example_order("o-1", "x", "unused");
    order.as_object_mut().unwrap().remove("referral_code");
    order["coupon_codes"] = json!(["ramadan-c"]);
    app.accept(&order).await;
    let o = app.processed("o-1").await;
    assert_eq!(source(&o), ("C", "coupon"));
    assert_eq!(o["attribution"]["detail"], "RAMADAN-C");
    assert_eq!(
        app.order_amounts("o-1").await,
        vec![
            ("A".into(), "commission".into(), d("21500")),
            ("B".into(), "commission".into(), d("64500")),
            ("C".into(), "commission".into(), d("95000")),
        ]
    );
    assert_eq!(app.points("x").await, 26500);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("komisi_orders_attributed_total{source=\"coupon\"}") && !l.ends_with(" 0")),
        "the coupon attribution is counted"
    );
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn coupons_are_added_listed_and_deleted_case_insensitively() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let (status, body) = add_coupon(&app, "B", "summer10").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CREATED, Some("SUMMER10")));
    assert_eq!(add_coupon(&app, "B", "Summer10").await.0, StatusCode::OK, "the same code again");
    let (status, body) = add_coupon(&app, "C", "SUMMER10").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(add_coupon(&app, "nobody", "X1").await.0, StatusCode::NOT_FOUND);
    let (status, body) = add_coupon(&app, "B", "has space").await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("code")));
    assert_eq!(app.db.int("SELECT COUNT(*) FROM coupons", &[]).await, 1, "nothing written by the refusals");

    app.accept(&with(simple_order("o-1", "x", None, "100000"), "coupon_codes", json!(["SUMMER10"]))).await;
    assert_eq!(source(&app.processed("o-1").await), ("B", "coupon"));

    let delete = |code: &str| {
        app.client.delete(app.url(&format!("/v1/affiliates/B/coupons/{code}"))).bearer_auth(STOREFRONT_KEY).send()
    };
    assert_eq!(delete("summer10").await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(delete("summer10").await.unwrap().status(), StatusCode::NOT_FOUND);
    // After the deletion the code attributes nothing; the earlier order keeps its attribution.
    app.accept(&with(simple_order("o-2", "y", None, "100000"), "coupon_codes", json!(["SUMMER10"]))).await;
    let o2 = app.processed("o-2").await;
    assert_eq!(o2["affiliate_id"], Value::Null);
    assert_eq!(ignored(&o2), vec![("coupon".to_owned(), "unknown_coupon".to_owned())]);
    assert_eq!(o2["no_commission_reason"], "unattributed");
    assert_eq!(source(&app.get_json("/v1/orders/o-1").await), ("B", "coupon"));
    // The code is free for another affiliate now; B's list keeps the history.
    assert_eq!(add_coupon(&app, "C", "summer10").await.0, StatusCode::CREATED);
    let listed = app.get_json("/v1/affiliates/B/coupons").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0]["deleted_at"].is_string());
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_linked_customer_beats_another_affiliates_coupon() {
    let app = spawn_app().await;
    app.set_program(linking(None, false)).await;
    abc_tree(&app).await;
    add_coupon(&app, "B", "B-SALE").await;
    // The first attributed order links x to C.
    app.accept(&simple_order("o-1", "x", Some("code-C"), "100000")).await;
    app.processed("o-1").await;
    let buyer = app.get_json("/v1/buyers/x").await;
    assert_eq!(buyer["customer_link"]["affiliate_id"], "C");
    assert_eq!(buyer["customer_link"]["order_id"], "o-1");
    assert_eq!(buyer["customer_link"]["active"], true);
    assert_eq!(buyer["customer_link"]["expires_at"], Value::Null, "lifetime");
    // Later orders are C's whatever they carry: a coupon, a click, a referral code.
    let b_click = click(&app, "code-B").await;
    let carried = with(simple_order("o-2", "x", Some("code-A"), "100000"), "coupon_codes", json!(["b-sale"]));
    app.accept(&with(carried, "click_id", json!(b_click))).await;
    let o2 = app.processed("o-2").await;
    assert_eq!(source(&o2), ("C", "customer_link"));
    assert_eq!(
        ignored(&o2),
        vec![
            ("coupon".to_owned(), "outranked".to_owned()),
            ("click".to_owned(), "outranked".to_owned()),
            ("referral_code".to_owned(), "outranked".to_owned())
        ]
    );
    assert_eq!(o2["attribution"]["ignored"][0]["message"], "coupon B-SALE ignored: customer_link (C) comes first");
    assert_eq!(app.balance("C", "pending").await, d("20000"));
    assert_eq!(app.balance("B", "pending").await, d("6000"), "B is paid as C's parent only");
    // A buyer placing both first orders in one batch-free sequence: y's first order through a coupon links y to B.
    app.accept(&with(simple_order("o-3", "y", None, "100000"), "coupon_codes", json!(["B-SALE"]))).await;
    app.processed("o-3").await;
    assert_eq!(app.get_json("/v1/buyers/y").await["customer_link"]["affiliate_id"], "B");
    // An operator moves x to A; x's orders follow from now on, o-1 and o-2 stay C's.
    let r =
        app.admin_put("/admin/buyers/x/affiliate", &json!({"affiliate_id": "A", "reason": "support ticket 7"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let buyer: Value = r.json().await.unwrap();
    assert_eq!(
        (buyer["customer_link"]["affiliate_id"].as_str(), buyer["customer_link"]["source"].as_str()),
        (Some("A"), Some("manual"))
    );
    app.accept(&simple_order("o-4", "x", Some("code-C"), "100000")).await;
    assert_eq!(source(&app.processed("o-4").await), ("A", "customer_link"));
    assert_eq!(source(&app.get_json("/v1/orders/o-2").await), ("C", "customer_link"));
    let r = app.admin_put("/admin/buyers/x/affiliate", &json!({"affiliate_id": "nobody", "reason": "typo"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.admin_put("/admin/buyers/x/affiliate", &json!({"affiliate_id": "A", "reason": "  "})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.admin_put("/admin/buyers/x/affiliate", &json!({"affiliate_id": null, "reason": "cleared"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.get_json("/v1/buyers/x").await["customer_link"], Value::Null);
    // A storefront key may not set links.
    let r = app
        .client
        .put(app.url("/admin/buyers/x/affiliate"))
        .bearer_auth(STOREFRONT_KEY)
        .json(&json!({"affiliate_id": "A", "reason": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_coupon_beats_a_click_which_beats_a_referral_code() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;
    add_coupon(&app, "B", "B-SALE").await;
    let c_click = click(&app, "code-C").await;
    let all = with(
        with(simple_order("o-1", "x", Some("code-A"), "100000"), "coupon_codes", json!(["B-SALE"])),
        "click_id",
        json!(c_click),
    );
    app.accept(&all).await;
    let o1 = app.processed("o-1").await;
    assert_eq!(source(&o1), ("B", "coupon"));
    assert_eq!(
        ignored(&o1),
        vec![("click".to_owned(), "outranked".to_owned()), ("referral_code".to_owned(), "outranked".to_owned())]
    );
    app.accept(&with(simple_order("o-2", "y", Some("code-A"), "100000"), "click_ids", json!([c_click]))).await;
    let o2 = app.processed("o-2").await;
    assert_eq!(source(&o2), ("C", "click"));
    assert!(o2["attribution"]["detail"].as_str().unwrap().starts_with("C at "));
    // The program decides the order: referral code first.
    app.set_program(|p| {
        p["holding_days"] = json!(0);
        p["attribution"] = json!({"order": ["referral_code", "click", "coupon"]});
    })
    .await;
    let mut again = all.clone();
    again["id"] = json!("o-3");
    app.accept(&again).await;
    assert_eq!(source(&app.processed("o-3").await), ("A", "referral_code"));
    // A quote shows the decision intake would take.
    let mut quote = all.clone();
    quote.as_object_mut().unwrap().remove("id");
    let q: Value = app.post("/v1/quotes", &quote).await.json().await.unwrap();
    assert_eq!(
        (q["attribution"]["affiliate_id"].as_str(), q["attribution"]["source"].as_str()),
        (Some("A"), Some("referral_code"))
    );
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn clicks_outside_the_window_are_ignored_and_the_model_picks_first_or_last() {
    let app = spawn_app().await;
    app.set_program(|p| {
        p["holding_days"] = json!(0);
        p["attribution"] = json!({"click_window_days": 7});
    })
    .await;
    abc_tree(&app).await;
    let now = Utc::now();
    let old = click_at(&app, "A", now - TimeDelta::days(8)).await;
    let b_early = click_at(&app, "B", now - TimeDelta::days(5)).await;
    let c_late = click_at(&app, "C", now - TimeDelta::days(1)).await;

    app.accept(&with(simple_order("o-1", "x", None, "100000"), "click_ids", json!([old]))).await;
    let o1 = app.processed("o-1").await;
    assert_eq!(o1["affiliate_id"], Value::Null);
    assert_eq!(ignored(&o1), vec![("click".to_owned(), "click_expired".to_owned())]);

    let clicks = json!([old, b_early, c_late]);
    app.accept(&with(simple_order("o-2", "y", None, "100000"), "click_ids", clicks.clone())).await;
    let o2 = app.processed("o-2").await;
    assert_eq!(source(&o2), ("C", "click"), "last click");
    assert_eq!(
        ignored(&o2),
        vec![("click".to_owned(), "click_expired".to_owned()), ("click".to_owned(), "click_not_chosen".to_owned())]
    );
    app.set_program(|p| {
        p["holding_days"] = json!(0);
        p["attribution"] = json!({"click_window_days": 7, "click_model": "first"});
    })
    .await;
    app.accept(&with(simple_order("o-3", "z", None, "100000"), "click_ids", clicks)).await;
    assert_eq!(source(&app.processed("o-3").await), ("B", "click"), "first click inside the window");
    // A click dated after the order (the order backdated two days) does not attribute.
    let mut backdated = with(simple_order("o-4", "w", None, "100000"), "click_id", json!(c_late));
    backdated["placed_at"] = json!((now - TimeDelta::days(2)).to_rfc3339());
    app.accept(&backdated).await;
    assert_eq!(ignored(&app.processed("o-4").await), vec![("click".to_owned(), "click_after_order".to_owned())]);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_forged_click_is_ignored_and_a_malformed_one_refused() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let real = click(&app, "code-C").await;
    // Another affiliate's name put into a real click id: the signature no longer verifies.
    let (body, mac) = real.rsplit_once('.').unwrap();
    let parts: Vec<&str> = body.split('.').collect();
    use base64::Engine as _;
    let forged_body =
        format!("{}.{}.{}", parts[0], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("A"), parts[2]);
    let forged = format!("{forged_body}.{mac}");
    app.accept(&with(simple_order("o-1", "x", None, "100000"), "click_id", json!(forged))).await;
    let o1 = app.processed("o-1").await;
    assert_eq!(o1["affiliate_id"], Value::Null);
    assert_eq!(ignored(&o1), vec![("click".to_owned(), "invalid_click".to_owned())]);
    // Nothing a click id may not hold, nothing too long, not both fields: 422, nothing written.
    for (field, bad) in [
        ("click_id", json!("has space")),
        ("click_id", json!("x".repeat(257))),
        ("click_ids", json!(vec!["a"; 21])),
        ("coupon_codes", json!(["ok", "not ok"])),
    ] {
        let (status, body) = app.place(&with(simple_order("o-bad", "x", None, "100000"), field, bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
    }
    let both = with(with(simple_order("o-bad", "x", None, "1"), "click_id", json!(real)), "click_ids", json!([real]));
    assert_eq!(app.place(&both).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders WHERE id = 'o-bad'", &[]).await, 0);
    // A click with neither field, both, or a link without `ref`: 422; for a code no affiliate has: 404.
    for body in [
        json!({}),
        json!({"referral_code": "code-B", "link": "https://shop.example/p?ref=code-B"}),
        json!({"link": "https://shop.example/p?x=1"}),
        json!({"link": "ftp://shop.example/p?ref=code-B"}),
    ] {
        assert_eq!(app.post("/v1/clicks", &body).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert_eq!(app.post("/v1/clicks", &json!({"referral_code": "nobody"})).await.status(), StatusCode::NOT_FOUND);
    // A link's `ref` names the affiliate.
    let r = app.post("/v1/clicks", &json!({"link": "https://shop.example/p?ref=code-B", "visitor_id": "v-1"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["affiliate_id"], "B");
    // Clicks are counted per affiliate and day (written every 5 seconds).
    let counted = poll(Duration::from_secs(30), || async {
        let s = app.get_json("/v1/affiliates/C/attribution").await;
        s["clicks"] == 1 && s["clicks_by_day"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    assert!(counted, "C's click is counted: {}", app.get_json("/v1/affiliates/C/attribution").await);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn self_referral_is_configurable() {
    let app = spawn_app().await;
    app.set_program(|p| {
        p["holding_days"] = json!(0);
        p["attribution"] = json!({"self_referral": "allowed"});
    })
    .await;
    app.create_affiliate_with(json!({"id": "S", "name": "Self", "referral_code": "code-S", "buyer_id": "shopper-s"}))
        .await;
    add_coupon(&app, "S", "SELF").await;
    app.accept(&with(simple_order("o-1", "shopper-s", None, "500000"), "coupon_codes", json!(["self"]))).await;
    let o1 = app.processed("o-1").await;
    assert_eq!(o1["no_commission_reason"], Value::Null);
    assert_eq!(app.balance("S", "pending").await, d("50000"));
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    app.accept(&with(simple_order("o-2", "shopper-s", None, "500000"), "coupon_codes", json!(["self"]))).await;
    let o2 = app.processed("o-2").await;
    assert_eq!(o2["no_commission_reason"], "self_referral");
    assert_eq!(app.balance("S", "pending").await, d("50000"), "the default blocks it again");
    // The same e-mail (hashed, either case) is a self-referral whatever the buyer id.
    let hash = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    app.create_affiliate_with(
        json!({"id": "M", "name": "Mail", "referral_code": "code-M", "email_hash": hash.to_lowercase()}),
    )
    .await;
    let mut own = simple_order("o-3", "guest-123", Some("code-M"), "500000");
    own["buyer_email_hash"] = json!(hash);
    app.accept(&own).await;
    assert_eq!(app.processed("o-3").await["no_commission_reason"], "self_referral");
    let mut other = simple_order("o-4", "guest-456", Some("code-M"), "500000");
    other["buyer_email_hash"] = json!("0".repeat(64));
    app.accept(&other).await;
    assert_eq!(app.processed("o-4").await["no_commission_reason"], Value::Null);
    assert_eq!(app.balance("M", "pending").await, d("50000"));
    let mut bad = simple_order("o-5", "guest", None, "1");
    bad["buyer_email_hash"] = json!("not-a-hash");
    assert_eq!(app.place(&bad).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // The hash changes by PATCH: o-4's address is M's now, and null clears it.
    let other_hash = "0".repeat(64);
    let r = app.patch("/v1/affiliates/M", &json!({"email_hash": other_hash})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut again = simple_order("o-6", "guest-789", Some("code-M"), "500000");
    again["buyer_email_hash"] = json!(other_hash);
    app.accept(&again).await;
    assert_eq!(app.processed("o-6").await["no_commission_reason"], "self_referral");
    assert_eq!(
        app.processed("o-4").await["no_commission_reason"],
        Value::Null,
        "o-4 keeps what it was checked against"
    );
    assert_eq!(app.patch("/v1/affiliates/M", &json!({"email_hash": null})).await.status(), StatusCode::OK);
    let mut cleared = simple_order("o-7", "guest-790", Some("code-M"), "500000");
    cleared["buyer_email_hash"] = json!(other_hash);
    app.accept(&cleared).await;
    assert_eq!(app.processed("o-7").await["no_commission_reason"], Value::Null);
    let r = app.patch("/v1/affiliates/M", &json!({"email_hash": "nope"})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "email_hash");
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_link_expires_after_its_days_and_first_touch_only_keeps_it_gone() {
    for first_touch_only in [false, true] {
        let app = spawn_app().await;
        app.set_program(linking(Some(30), first_touch_only)).await;
        abc_tree(&app).await;
        add_coupon(&app, "B", "B-SALE").await;
        app.accept(&simple_order("o-1", "x", Some("code-C"), "100000")).await;
        app.processed("o-1").await;
        let link = app.get_json("/v1/buyers/x").await["customer_link"].clone();
        let expires: chrono::DateTime<Utc> = link["expires_at"].as_str().unwrap().parse().unwrap();
        let linked: chrono::DateTime<Utc> = link["linked_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(expires - linked, TimeDelta::days(30));
        // 31 days pass.
        let past = Utc::now() - TimeDelta::days(1);
        app.db.set_time_where("customer_links", "expires_at", "buyer_id", "x", past).await;
        app.accept(&with(simple_order("o-2", "x", None, "100000"), "coupon_codes", json!(["B-SALE"]))).await;
        let o2 = app.processed("o-2").await;
        assert_eq!(source(&o2), ("B", "coupon"));
        assert_eq!(ignored(&o2), vec![("customer_link".to_owned(), "link_expired".to_owned())]);
        let now_linked = app.get_json("/v1/buyers/x").await["customer_link"]["affiliate_id"].clone();
        let expected = if first_touch_only { "C" } else { "B" };
        assert_eq!(now_linked, expected, "first_touch_only = {first_touch_only}");
        app.assert_reconciled().await;
    }
}

#[tokio::test]
async fn manual_reassignment_moves_the_commissions_exactly_once() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;
    app.create_affiliate("D", None).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let body = json!({"affiliate_id": "D", "reason": "the buyer used D's link, see ticket 12"});
    let r = app.admin_post("/admin/orders/o-1/attribution", &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let o = app.processed("o-1").await;
    assert_eq!(source(&o), ("D", "manual"));
    assert_eq!(o["attribution"]["reason"], "the buyer used D's link, see ticket 12");
    assert_eq!(ignored(&o), vec![("referral_code".to_owned(), "reassigned".to_owned())]);
    assert_eq!(app.order_amounts("o-1").await, vec![("D".into(), "commission".into(), d("95000"))]);
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, d("0"), "{a}");
    }
    assert_eq!(app.balance("D", "pending").await, d("95000"));
    assert_eq!(app.points("x").await, 26500, "the buyer's points do not move");
    // Again to D: nothing to do; to nobody, or an unknown order: refused.
    let r = app.admin_post("/admin/orders/o-1/attribution", &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.admin_post("/admin/orders/o-1/attribution", &json!({"affiliate_id": "Z", "reason": "x"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.admin_post("/admin/orders/o-9/attribution", &json!({"affiliate_id": "D", "reason": "x"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Once approved, an order stays where it is.
    assert_eq!(app.post("/v1/orders/o-1/complete", &json!({})).await.status(), StatusCode::ACCEPTED);
    let approved = poll(Duration::from_secs(30), || async {
        app.get_json("/v1/orders/o-1").await["commissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "approved")
    })
    .await;
    assert!(approved);
    let r = app.admin_post("/admin/orders/o-1/attribution", &json!({"affiliate_id": "C", "reason": "late"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(app.balance("D", "approved").await, d("95000"));
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_reassignment_racing_a_refund_leaves_an_exact_ledger() {
    let app = spawn_app().await;
    // No milestone or tier: which moved order is D's third of the month, or
    // past 10 000 000, depends on the order the moves commit in (each order's
    // month facts are resolved when it is moved, and not revisited).
    app.set_program(|p| {
        p["holding_days"] = json!(0);
        p["milestones"] = json!([]);
        p["tiers"] = json!([]);
    })
    .await;
    abc_tree(&app).await;
    app.create_affiliate("D", None).await;
    let n = 6;
    for i in 0..n {
        app.accept(&worked_example_order(&format!("o-{i}"), &format!("buyer-{i}"), "code-C")).await;
    }
    for i in 0..n {
        app.processed(&format!("o-{i}")).await;
    }
    // Each order: refund both shirts and move it to D, at the same time.
    let races = (0..n).map(|i| {
        let app = &app;
        async move {
            let refund = json!({"refund_id": "r-1", "items": [{"sku": "shirt", "quantity": 2}]});
            let move_it = json!({"affiliate_id": "D", "reason": "race"});
            let (refund_path, move_path) =
                (format!("/v1/orders/o-{i}/refunds"), format!("/admin/orders/o-{i}/attribution"));
            let (r, m) = tokio::join!(app.post(&refund_path, &refund), app.admin_post(&move_path, &move_it));
            assert_eq!((r.status(), m.status()), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
        }
    });
    futures::future::join_all(races).await;
    for i in 0..n {
        let id = format!("o-{i}");
        app.processed(&id).await;
        // D alone: the phone's 4 % of 2 000 000; the shirts are refunded; C, B and A hold nothing.
        assert_eq!(app.order_amounts(&id).await, vec![("D".into(), "commission".into(), d("80000"))], "{id}");
    }
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, d("0"), "{a}");
    }
    assert_eq!(app.balance("D", "pending").await, d("80000") * rust_decimal::Decimal::from(n));
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn attribution_settings_are_validated() {
    let app = spawn_app().await;
    for (attribution, field) in [
        (json!({"order": ["coupon", "coupon"]}), "attribution.order[1]"),
        (json!({"order": ["cookie"]}), "attribution.order[0]"),
        (json!({"customer_link": {"mode": "days"}}), "attribution.customer_link.days"),
        (json!({"customer_link": {"mode": "forever"}}), "attribution.customer_link.mode"),
        (json!({"click_window_days": 0}), "attribution.click_window_days"),
        (json!({"self_referral": "maybe"}), "attribution.self_referral"),
    ] {
        let mut program = default_program();
        program["attribution"] = attribution.clone();
        let r = app.admin_put("/admin/program", &program).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{attribution}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    // The defaults are left out of the stored document.
    let mut program = default_program();
    program["attribution"] = json!({"click_window_days": 30});
    assert_eq!(app.admin_put("/admin/program", &program).await.status(), StatusCode::OK);
    assert!(app.admin_get("/admin/program").await.get("attribution").is_none());
}

#[tokio::test]
async fn a_reassignment_whose_event_transaction_fails_is_applied_once_on_retry() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;
    app.create_affiliate("D", None).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    // The order.reattributed event's transaction fails twice after writing every row.
    app.faults.fail_order_mid_tx("o-1", 2);
    let r = app.admin_post("/admin/orders/o-1/attribution", &json!({"affiliate_id": "D", "reason": "fault"})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let o = app.processed("o-1").await;
    let moved = o["events"].as_array().unwrap().iter().find(|e| e["type"] == "order.reattributed").cloned().unwrap();
    let detail = app.admin_get(&format!("/admin/events/{}", moved["id"].as_str().unwrap())).await;
    assert!(detail["attempts"].as_u64().unwrap() >= 3, "two injected failures, then applied: {detail}");
    // Exactly once: C, B and A reversed once, D credited once.
    assert_eq!(app.order_amounts("o-1").await, vec![("D".into(), "commission".into(), d("95000"))]);
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, d("0"), "{a}");
    }
    assert_eq!(app.balance("D", "pending").await, d("95000"));
    let lines = app.db.int("SELECT COUNT(*) FROM ledger_entries WHERE order_id = 'o-1'", &[]).await;
    assert_eq!(lines, 7, "3 credits, 3 reversals, 1 credit for D: nothing written twice");
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}
