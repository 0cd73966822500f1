//! Month facts (rules 4 and 5) from the stored month sums: the same as
//! summing the earlier orders, also for an order that arrives after later
//! ones, on a counted month (read from `affiliate_months`) and on one that
//! is not counted (read from the orders table); a change of the program's
//! time zone moves the counted months past it; reconcile checks the sums.
use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

async fn since(app: &TestApp) -> DateTime<Utc> {
    app.db.time("SELECT since FROM affiliate_months_since WHERE id = 1", &[]).await
}

/// Orders of 600 000 for T in March 2026 (Jakarta), placed in this order of
/// arrival; a tier from 1 000 000 and a milestone on the 3rd order.
async fn late_arrivals(app: &TestApp) {
    app.set_program(|p| {
        p["tiers"] = json!([{"monthly_sales_from": "1000000", "bonus_rate": "0.02"}]);
        p["milestones"] = json!([{"nth_order_in_month": 3, "bonus": "25000"}]);
    })
    .await;
    app.create_affiliate("T", None).await;
    for (id, day) in [("o-a", 5), ("o-b", 20), ("o-c", 9), ("o-d", 25), ("o-e", 1), ("o-f", 7)] {
        let mut o = simple_order(id, &format!("buyer-{id}"), Some("code-T"), "600000");
        o["placed_at"] = json!(format!("2026-03-{day:02}T03:00:00Z"));
        app.accept(&o).await;
        app.processed(id).await;
    }
}

/// What rules 4 and 5 pay each order of [`late_arrivals`]: its place among
/// the orders stored when it was first applied, by `placed_at`.
fn expected(order: &str) -> Vec<(String, String, rust_decimal::Decimal)> {
    let line = |kind: &str, amount: &str| ("T".to_string(), kind.to_string(), d(amount));
    match order {
        // Before it: nothing; o-a; o-a (o-b is later); a, c, b (1 800 000).
        "o-a" | "o-b" | "o-c" | "o-e" => vec![line("commission", "60000")],
        "o-d" => vec![line("commission", "60000"), line("tier_bonus", "12000")],
        // Before it: o-e, o-a (1 200 000): the third order of the month.
        "o-f" => vec![line("commission", "60000"), line("milestone_bonus", "25000"), line("tier_bonus", "12000")],
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn an_order_arriving_after_later_ones_gets_its_places_facts_counted_or_not() {
    for counted in [true, false] {
        let app = spawn_app().await;
        assert_eq!(since(&app).await, DateTime::<Utc>::UNIX_EPOCH, "a database without orders counts every month");
        if !counted {
            // As on a database upgraded with history: these months are read
            // from the orders table.
            let far = DateTime::parse_from_rfc3339("2100-01-01T00:00:00Z").unwrap().to_utc();
            app.db.set_time("affiliate_months_since", "since", "1", far).await;
        }
        late_arrivals(&app).await;
        for order in ["o-a", "o-b", "o-c", "o-d", "o-e", "o-f"] {
            assert_eq!(app.order_amounts(order).await, expected(order), "{order}, counted: {counted}");
        }
        // Intake counted every order of the month either way.
        let row = app.db.rows("SELECT volume, orders FROM affiliate_months WHERE affiliate_id = 'T'", &[]).await;
        assert_eq!(row.len(), 1, "one month: {row:?}");
        assert_eq!((d(row[0][0].as_deref().unwrap()), row[0][1].as_deref()), (d("3600000"), Some("6")));
        let report = app.reconcile().await;
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["checked"]["months"], if counted { 1 } else { 0 }, "{report}");
    }
}

#[tokio::test]
async fn a_time_zone_change_moves_the_counted_months_past_it() {
    let app = spawn_app().await;
    app.set_program(|p| p["milestones"] = json!([{"nth_order_in_month": 3, "bonus": "25000"}])).await;
    assert_eq!(since(&app).await, DateTime::<Utc>::UNIX_EPOCH, "the same time zone moves nothing");
    app.create_affiliate("T", None).await;
    app.accept(&simple_order("o-1", "b-1", Some("code-T"), "600000")).await;
    app.processed("o-1").await;

    app.set_program(|p| {
        p["timezone"] = json!("Europe/Berlin");
        p["milestones"] = json!([{"nth_order_in_month": 3, "bonus": "25000"}]);
    })
    .await;
    let moved = since(&app).await;
    let two_days = Utc::now() + TimeDelta::days(2);
    assert!((two_days - moved).abs() < TimeDelta::minutes(1), "two days from now: {moved}");

    // This month is read from the orders table now; the facts are the same.
    for (n, id) in ["o-2", "o-3"].iter().enumerate() {
        app.accept(&simple_order(id, &format!("b-{}", n + 2), Some("code-T"), "600000")).await;
        app.processed(id).await;
    }
    let milestone = ("T".to_string(), "milestone_bonus".to_string(), d("25000"));
    assert!(!app.order_amounts("o-2").await.contains(&milestone));
    assert!(app.order_amounts("o-3").await.contains(&milestone), "the third order of the month");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_database_with_orders_counts_the_months_from_two_days_after_the_upgrade() {
    let app = spawn_app().await;
    app.create_affiliate("T", None).await;
    app.accept(&simple_order("o-1", "b", Some("code-T"), "600000")).await;
    app.processed("o-1").await;
    // As before migration 0024: no row. Starting komisi writes it.
    app.db.exec("DELETE FROM affiliate_months_since", &[]).await;
    open_store(&app.config, 1).await.migrate().await.expect("migrate");
    let since = since(&app).await;
    assert!((Utc::now() + TimeDelta::days(2) - since).abs() < TimeDelta::minutes(1), "{since}");
}

#[tokio::test]
async fn reconcile_names_a_month_whose_sums_differ_from_its_orders() {
    let app = spawn_app().await;
    app.create_affiliate("T", None).await;
    app.create_affiliate("U", None).await;
    for (id, code) in [("o-1", "code-T"), ("o-2", "code-T"), ("o-3", "code-U")] {
        app.accept(&simple_order(id, "b", Some(code), "100000")).await;
        app.processed(id).await;
    }
    let report = app.reconcile().await;
    assert_eq!((report["ok"].as_bool(), report["checked"]["months"].as_u64()), (Some(true), Some(2)), "{report}");

    app.db.exec("UPDATE affiliate_months SET orders = orders + 1 WHERE affiliate_id = 'T'", &[]).await;
    app.db.exec("DELETE FROM affiliate_months WHERE affiliate_id = 'U'", &[]).await;
    let report = app.reconcile().await;
    let found: Vec<(String, Option<String>)> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["kind"].as_str().unwrap().to_owned(), v["affiliate_id"].as_str().map(str::to_owned)))
        .collect();
    assert_eq!(
        found,
        vec![
            ("month_volume_mismatch".into(), Some("T".into())),
            ("month_volume_mismatch".into(), Some("T".into())),
            ("month_volume_mismatch".into(), Some("U".into()))
        ],
        "T's month, T's total and U's orders counted nowhere: {report}"
    );
}
