//! SPEC §4 over HTTP: the worked example and each commission rule.
use crate::helpers::*;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

#[tokio::test]
async fn worked_example_pays_every_level_and_the_buyer() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    abc_tree(&app).await;

    let event_id = app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    let order = app.processed("o-1").await;

    assert_eq!(order["status"], "placed");
    assert_eq!(dec(&order["total"]), d("2250000"));
    assert_eq!(dec(&order["eligible_amount"]), d("2150000"));
    assert_eq!(order["events"][0]["id"], event_id.as_str());
    assert_eq!(order["events"][0]["status"], "done");
    assert_eq!(
        app.order_amounts("o-1").await,
        vec![
            ("A".into(), "commission".into(), d("21500")),
            ("B".into(), "commission".into(), d("64500")),
            ("C".into(), "commission".into(), d("95000")),
        ]
    );
    let levels: Vec<(String, u64)> = order["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["affiliate_id"].as_str().unwrap().to_owned(), e["level"].as_u64().unwrap()))
        .collect();
    assert!(
        levels.contains(&("C".into(), 1)) && levels.contains(&("B".into(), 2)) && levels.contains(&("A".into(), 3))
    );
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    assert_eq!(app.balance("B", "pending").await, d("64500"));
    assert_eq!(app.balance("A", "pending").await, d("21500"));
    assert_eq!(app.points("x").await, 26500);
    let rewards = app.get_json("/v1/buyers/x/rewards").await;
    let kinds: Vec<(&str, i64)> = rewards["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["points"].as_i64().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("points", 21500), ("first_order_bonus", 5000)]);

    let page = app.get_json("/v1/affiliates/C/commissions?limit=10").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(dec(&page["items"][0]["amount"]), d("95000"));
    assert_eq!(page["items"][0]["rule_version"], 2);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn an_affiliates_ledger_pages_from_either_end() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    for i in 0..5 {
        app.accept(&simple_order(&format!("o-{i}"), "x", Some("code-C"), "100000")).await;
    }
    for i in 0..5 {
        app.processed(&format!("o-{i}")).await;
    }
    // Every page of 2 in one order, following next_cursor.
    let pages = |order: &'static str| {
        let app = &app;
        async move {
            let (mut ids, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
            loop {
                let after = cursor.as_deref().map(|c| format!("&cursor={c}")).unwrap_or_default();
                let page = app.get_json(&format!("/v1/affiliates/C/commissions?limit=2&order={order}{after}")).await;
                ids.extend(page["items"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()));
                pages += 1;
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return (ids, pages),
                }
            }
        }
    };
    let entries = app.db.int("SELECT COUNT(*) FROM ledger_entries WHERE affiliate_id = 'C'", &[]).await as usize;
    assert!(entries >= 5, "a commission of C for each order: {entries}");
    let (oldest, n) = pages("oldest").await;
    assert_eq!(oldest.len(), entries, "every entry of C once: {oldest:?}");
    assert!(n >= entries / 2, "in pages of 2: {n}");
    assert!(oldest.windows(2).all(|w| w[0] < w[1]), "oldest first: {oldest:?}");
    let (newest, _) = pages("newest").await;
    assert_eq!(newest, oldest.iter().rev().copied().collect::<Vec<_>>(), "the same entries, newest first");
    // No order is the oldest first; the newest first page starts at the last entry.
    let first = app.get_json("/v1/affiliates/C/commissions?limit=1").await;
    assert_eq!(first["items"][0]["id"].as_u64(), Some(oldest[0]));
    let last = app.get_json("/v1/affiliates/C/commissions?limit=1&order=newest").await;
    assert_eq!(last["items"][0]["id"].as_u64(), oldest.last().copied());
    // A bad order: 422 naming it; a cursor past any id: an empty page, not an error.
    let r = app.get("/v1/affiliates/C/commissions?order=upwards").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("order"));
    for order in ["oldest", "newest"] {
        let page =
            app.get_json(&format!("/v1/affiliates/C/commissions?order={order}&cursor=9999999999999999999")).await;
        let expect = if order == "oldest" { 0 } else { entries.min(50) };
        assert_eq!(page["items"].as_array().unwrap().len(), expect, "{order}: {page}");
    }
}

#[tokio::test]
async fn unknown_referral_code_is_accepted_unattributed() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "no-such-code")).await;
    let order = app.processed("o-1").await;
    assert_eq!(order["affiliate_id"], serde_json::Value::Null);
    assert_eq!(order["attribution_note"], "unknown_referral_code");
    assert_eq!(order["no_commission_reason"], "unattributed");
    assert!(order["commissions"].as_array().unwrap().is_empty());
    // Buyer rewards do not depend on attribution.
    assert_eq!(app.points("x").await, 26500);
    assert_eq!(app.balance("C", "pending").await, d("0"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn self_referral_pays_no_commission() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    app.create_affiliate_with(
        json!({"id": "S", "name": "Self", "parent_id": "A", "referral_code": "code-S", "buyer_id": "shopper-s"}),
    )
    .await;
    app.accept(&simple_order("o-1", "shopper-s", Some("code-S"), "500000")).await;
    let order = app.processed("o-1").await;
    assert_eq!(order["no_commission_reason"], "self_referral");
    assert!(app.order_amounts("o-1").await.is_empty());
    assert_eq!(app.balance("A", "pending").await, d("0"));
    // Another buyer through the same code is paid.
    app.accept(&simple_order("o-2", "someone-else", Some("code-S"), "500000")).await;
    app.processed("o-2").await;
    assert_eq!(app.balance("S", "pending").await, d("50000"));
    assert_eq!(app.balance("A", "pending").await, d("15000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn suspended_direct_affiliate_pays_nobody() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let r = app.patch("/v1/affiliates/C", &json!({"status": "suspended"})).await;
    assert_eq!(r.status(), 200);
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    let order = app.processed("o-1").await;
    assert_eq!(order["no_commission_reason"], "affiliate_suspended");
    assert!(app.order_amounts("o-1").await.is_empty());
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, d("0"), "{a}");
    }
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn suspended_ancestor_is_skipped_and_the_next_one_up_takes_its_level() {
    let app = spawn_app().await;
    app.create_affiliate("R", None).await;
    app.create_affiliate("A", Some("R")).await;
    app.create_affiliate("B", Some("A")).await;
    app.create_affiliate("C", Some("B")).await;
    app.patch("/v1/affiliates/B", &json!({"status": "suspended"})).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    // Level 2 (3 %) goes to A in B's place, level 3 (1 %) to R.
    assert_eq!(
        app.order_amounts("o-1").await,
        vec![
            ("A".into(), "commission".into(), d("64500")),
            ("C".into(), "commission".into(), d("95000")),
            ("R".into(), "commission".into(), d("21500")),
        ]
    );
    assert_eq!(app.balance("B", "pending").await, d("0"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn without_skipping_a_suspended_ancestors_level_is_forfeited() {
    let app = spawn_app().await;
    app.set_program(|p| p["skip_inactive_upline"] = json!(false)).await;
    abc_tree(&app).await;
    app.patch("/v1/affiliates/B", &json!({"status": "suspended"})).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    assert_eq!(
        app.order_amounts("o-1").await,
        vec![("A".into(), "commission".into(), d("21500")), ("C".into(), "commission".into(), d("95000"))]
    );
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn tier_and_milestone_bonuses_follow_the_month_volume() {
    let app = spawn_app().await;
    app.set_program(|p| {
        p["tiers"] = json!([{"monthly_sales_from": "1000000", "bonus_rate": "0.02"}]);
        p["milestones"] = json!([{"nth_order_in_month": 3, "bonus": "25000"}]);
    })
    .await;
    app.create_affiliate("T", None).await;
    // Four orders of 600 000 in March (Jakarta time), one in April.
    let placed = [
        "2026-03-02T03:00:00Z",
        "2026-03-05T03:00:00Z",
        "2026-03-09T03:00:00Z",
        "2026-03-20T03:00:00Z",
        "2026-04-01T03:00:00Z",
    ];
    for (n, at) in placed.iter().enumerate() {
        let mut o = simple_order(&format!("t-{n}"), &format!("buyer-{n}"), Some("code-T"), "600000");
        o["placed_at"] = json!(at);
        app.accept(&o).await;
        app.processed(&format!("t-{n}")).await;
    }
    let commission = |amount: &str| ("T".to_string(), "commission".to_string(), d(amount));
    // 1st: volume before 0. 2nd: 600 000 < 1 000 000.
    assert_eq!(app.order_amounts("t-0").await, vec![commission("60000")]);
    assert_eq!(app.order_amounts("t-1").await, vec![commission("60000")]);
    // 3rd: volume 1 200 000 ≥ 1 000 000 → 2 % tier bonus; and the 3rd-order milestone.
    assert_eq!(
        app.order_amounts("t-2").await,
        vec![
            commission("60000"),
            ("T".into(), "milestone_bonus".into(), d("25000")),
            ("T".into(), "tier_bonus".into(), d("12000"))
        ]
    );
    assert_eq!(
        app.order_amounts("t-3").await,
        vec![commission("60000"), ("T".into(), "tier_bonus".into(), d("12000"))]
    );
    // April starts from zero again.
    assert_eq!(app.order_amounts("t-4").await, vec![commission("60000")]);
    assert_eq!(app.balance("T", "pending").await, d("349000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn per_order_cap_limits_level_one_commission_and_tier_bonus() {
    let app = spawn_app().await;
    app.set_program(|p| {
        p["max_commission_per_order"] = json!("70000");
        p["tiers"] = json!([{"monthly_sales_from": "0", "bonus_rate": "0.02"}]);
    })
    .await;
    abc_tree(&app).await;
    // Commission 60 000 + tier 12 000 = 72 000 → capped to 70 000: tier 10 000.
    app.accept(&simple_order("o-1", "x", Some("code-C"), "600000")).await;
    app.processed("o-1").await;
    assert_eq!(
        app.order_amounts("o-1").await,
        vec![
            ("A".into(), "commission".into(), d("6000")),
            ("B".into(), "commission".into(), d("18000")),
            ("C".into(), "commission".into(), d("60000")),
            ("C".into(), "tier_bonus".into(), d("10000")),
        ]
    );
    // Commission alone above the cap: 100 000 → 70 000, no tier bonus.
    app.accept(&simple_order("o-2", "y", Some("code-C"), "1000000")).await;
    app.processed("o-2").await;
    let c: Vec<_> = app.order_amounts("o-2").await.into_iter().filter(|(a, _, _)| a == "C").collect();
    assert_eq!(c, vec![("C".into(), "commission".into(), d("70000"))]);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn orders_below_the_minimum_pay_no_commission() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&simple_order("o-1", "x", Some("code-C"), "40000")).await;
    let order = app.processed("o-1").await;
    assert_eq!(order["no_commission_reason"], "below_minimum");
    assert!(app.order_amounts("o-1").await.is_empty());
    // The buyer still earns points: 1 % of 40 000 plus the first-order bonus.
    assert_eq!(app.points("x").await, 5400);
    // Exactly at the minimum pays.
    app.accept(&simple_order("o-2", "y", Some("code-C"), "50000")).await;
    app.processed("o-2").await;
    assert_eq!(app.balance("C", "pending").await, d("5000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_long_run_of_suspended_ancestors_is_walked_past() {
    let app = spawn_app().await;
    // T ← S0 ← S1 ← … ← S7 ← C: eight suspended ancestors between C and T.
    app.create_affiliate("T", None).await;
    let mut parent = "T".to_owned();
    for n in (0..8).rev() {
        let id = format!("S{n}");
        app.create_affiliate(&id, Some(&parent)).await;
        app.patch(&format!("/v1/affiliates/{id}"), &json!({"status": "suspended"})).await;
        parent = id;
    }
    app.create_affiliate("C", Some(&parent)).await;
    app.accept(&simple_order("o-1", "x", Some("code-C"), "1000000")).await;
    app.processed("o-1").await;
    assert_eq!(
        app.order_amounts("o-1").await,
        vec![("C".into(), "commission".into(), d("100000")), ("T".into(), "commission".into(), d("30000"))]
    );
    app.assert_ledger_consistent().await;
}

/// The program's upline qualification (RULES.md rule 7): an ancestor earns
/// its level on an order only once its own attributed sales in the month,
/// before the order, reach the minimum; until then it is skipped.
#[tokio::test]
async fn an_ancestor_earns_its_level_from_the_first_order_after_its_own_sales_reach_the_minimum() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.set_program(|p| {
        p["upline_qualification"] = json!({"min_personal_month_sales": "200000"});
        p["milestones"] = json!([]);
    })
    .await;
    let c = |id: &str| simple_order(id, &format!("buyer-{id}"), Some("code-C"), "100000");
    let mut steps: Vec<(Value, Vec<(&str, &str)>)> = vec![
        // Nobody above C has sold anything yet: only C earns (10 %).
        (c("o-1"), vec![("C", "10000")]),
        // B sells 150 000 itself (10 %); A has sold nothing: no level 2 for A.
        (simple_order("o-2", "b-2", Some("code-B"), "150000"), vec![("B", "15000")]),
        // B's 150 000 is below 200 000: B is skipped, and A too.
        (c("o-3"), vec![("C", "10000")]),
        (simple_order("o-4", "b-4", Some("code-B"), "60000"), vec![("B", "6000")]),
        // B's month now holds 210 000: B earns level 2 (3 %).
        (c("o-5"), vec![("B", "3000"), ("C", "10000")]),
        (simple_order("o-6", "b-6", Some("code-A"), "250000"), vec![("A", "25000")]),
        // A has sold 250 000: A earns level 3 (1 %) as well.
        (c("o-7"), vec![("A", "1000"), ("B", "3000"), ("C", "10000")]),
    ];
    for (order, expected) in steps.drain(..) {
        let id = order["id"].as_str().unwrap().to_owned();
        app.accept(&order).await;
        app.processed(&id).await;
        let want: Vec<(String, String, Decimal)> =
            expected.iter().map(|(a, v)| (a.to_string(), "commission".to_string(), d(v))).collect();
        assert_eq!(app.order_amounts(&id).await, want, "{id}");
    }
    // The qualification is frozen with the order: a refund recomputes with it.
    let r = app
        .post("/v1/orders/o-3/refunds", &json!({"refund_id": "r-1", "items": [{"sku": "item", "quantity": 1}]}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.processed("o-3").await;
    assert_eq!(app.order_amounts("o-3").await, vec![], "o-3 reversed: C's 10 000 only, nothing for B");
    app.assert_ledger_consistent().await;
}

/// Without skipping, an unqualified ancestor forfeits its level and the
/// next one keeps its own; with skipping, the next one moves up.
#[tokio::test]
async fn an_unqualified_ancestor_forfeits_its_level_unless_the_program_skips_inactive_ones() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let qualify = |skip: bool| {
        move |p: &mut Value| {
            p["upline_qualification"] = json!({"min_personal_month_sales": "200000"});
            p["skip_inactive_upline"] = json!(skip);
            p["milestones"] = json!([]);
        }
    };
    app.set_program(qualify(false)).await;
    app.accept(&simple_order("o-a", "b-a", Some("code-A"), "250000")).await;
    app.processed("o-a").await;
    app.accept(&simple_order("o-1", "x", Some("code-C"), "100000")).await;
    app.processed("o-1").await;
    // B (nothing sold) forfeits level 2; A keeps level 3 (1 %).
    assert_eq!(
        app.order_amounts("o-1").await,
        vec![("A".into(), "commission".into(), d("1000")), ("C".into(), "commission".into(), d("10000"))]
    );
    // The order says why B earns nothing.
    let o = app.get_json("/v1/orders/o-1").await;
    assert_eq!(
        o["upline"],
        json!([
            {"affiliate_id": "B", "level": 2, "earns": false, "passed_over": "unqualified"},
            {"affiliate_id": "A", "level": 3, "earns": true}
        ])
    );
    app.set_program(qualify(true)).await;
    app.accept(&simple_order("o-2", "y", Some("code-C"), "100000")).await;
    app.processed("o-2").await;
    // B is skipped: A moves up to level 2 (3 %).
    assert_eq!(
        app.order_amounts("o-2").await,
        vec![("A".into(), "commission".into(), d("3000")), ("C".into(), "commission".into(), d("10000"))]
    );
    let o = app.get_json("/v1/orders/o-2").await;
    assert_eq!(
        o["upline"],
        json!([
            {"affiliate_id": "B", "level": 2, "earns": false, "passed_over": "unqualified"},
            {"affiliate_id": "A", "level": 2, "earns": true}
        ])
    );
    // Bad settings are refused with their field.
    let mut bad = default_program();
    bad["upline_qualification"] = json!({"min_personal_month_sales": "0"});
    let r = app.admin_put("/admin/program", &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "upline_qualification.min_personal_month_sales", "{body}");
}
