//! Orders in other currencies than the program's (docs/RULES.md
//! "Currencies"): a rate from the order or from the operator's table, frozen
//! on the order at intake and used by every later event of it.
use crate::helpers::*;
use crate::lifecycle::{lifecycle, refund};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// The worked example's order priced in US dollars (the voucher is a gift
/// card: excluded, as in IDR).
fn usd_worked_example(id: &str, buyer: &str, fx_rate: Option<&str>) -> Value {
    let mut o = json!({
        "id": id, "buyer_id": buyer, "referral_code": "code-C", "currency": "USD",
        "items": [
            {"sku": "shirt", "category": "fashion", "quantity": 2, "unit_price": "4.79"},
            {"sku": "phone", "category": "electronics", "quantity": 1, "unit_price": "127.80"},
            {"sku": "voucher", "category": "gift-card", "quantity": 1, "unit_price": "6.39"}
        ]
    });
    if let Some(r) = fx_rate {
        o["fx_rate"] = json!(r);
    }
    o
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map_or_else(Vec::new, |e| e.iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect())
}

fn amounts(list: &[(&str, &str, &str)]) -> Vec<(String, String, Decimal)> {
    list.iter().map(|(a, k, v)| (a.to_string(), k.to_string(), d(v))).collect()
}

async fn put_rates(app: &TestApp, rates: Value, as_of: &str) -> Value {
    let r = app.admin_put("/admin/fx-rates", &json!({"base": "IDR", "rates": rates, "as_of": as_of})).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_worked_example_in_dollars_pays_the_rupiah_its_rate_implies() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let order = usd_worked_example("o-1", "x", Some("15650.25"));
    // The quote says beforehand what the order pays.
    let mut body = order.clone();
    body.as_object_mut().unwrap().remove("id");
    let quote: Value = app.post("/v1/quotes", &body).await.json().await.unwrap();
    app.accept(&order).await;
    let o = app.processed("o-1").await;
    // Each line converted once, floored to whole rupiah (the program's scale 0, rounding floor):
    //   shirts 2 × 4.79 × 15650.25 = 149 929.395 → 149 929
    //   phone  127.80  × 15650.25 = 2 000 101.95 → 2 000 101
    //   voucher 6.39   × 15650.25 = 100 005.0975 → 100 005 (excluded)
    // eligible 2 150 030; C: 149 929 × 0.10 + 2 000 101 × 0.04 = 94 996.94 → 94 996;
    // B: × 0.03 = 64 500.9 → 64 500; A: × 0.01 = 21 500.3 → 21 500.
    assert_eq!(
        app.order_amounts("o-1").await,
        amounts(&[("A", "commission", "21500"), ("B", "commission", "64500"), ("C", "commission", "94996")])
    );
    assert_eq!(app.points("x").await, 21_500 + 5_000, "1 % of 2 150 030 floored, and the first-order bonus");
    assert_eq!(
        (&o["currency"], &o["total"], &o["eligible_amount"]),
        (&json!("USD"), &json!("143.77"), &json!("2150030"))
    );
    assert_eq!(
        o["fx"],
        json!({"currency": "USD", "program_currency": "IDR", "rate": "15650.25", "source": "order", "total": "2250035"})
    );
    // The quote agrees, line for line.
    assert_eq!(quote["currency"], "IDR");
    assert_eq!(quote["fx"], o["fx"]);
    assert_eq!(quote["eligible_amount"], "2150030");
    let lines: Vec<(&str, &str)> = quote["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["affiliate_id"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [("C", "94996"), ("B", "64500"), ("A", "21500")]);
    // A recompute converts at the frozen rate too: nothing differs.
    let recomputed: Value =
        app.admin_post("/admin/orders/o-1/recompute", &json!({"dry_run": true})).await.json().await.unwrap();
    assert_eq!(recomputed["delta"], json!([]), "{recomputed}");
    assert!(recomputed["entitled"]
        .as_array()
        .unwrap()
        .contains(&json!({"affiliate_id": "C", "level": 1, "kind": "commission", "amount": "94996"})));
    app.assert_ledger_consistent().await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("komisi_orders_converted_total{source=\"order\"}"), "{metrics}");
}

#[tokio::test]
async fn a_full_refund_after_the_rate_table_changed_nets_every_account_to_zero() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let first = put_rates(&app, json!({"USD": "15650.25", "JPY": "104.5"}), "2026-01-01T00:00:00Z").await;
    assert_eq!(first["rates"]["USD"], "15650.25");
    app.accept(&usd_worked_example("o-1", "x", None)).await;
    let o = app.processed("o-1").await;
    assert_eq!(o["fx"]["source"], "table");
    assert_eq!(o["fx"]["as_of"], "2026-01-01T00:00:00Z");
    assert_eq!(o["fx"]["rate"], "15650.25");
    assert_eq!(app.balance("C", "pending").await, d("94996"));

    // The dollar rises; orders placed from now on take the new rate …
    put_rates(&app, json!({"USD": "16000"}), "2026-02-01T00:00:00Z").await;
    let then = app.admin_get("/admin/fx-rates?at=2026-01-15T00:00:00Z").await;
    assert_eq!((&then["id"], &then["rates"]["USD"]), (&first["id"], &json!("15650.25")));
    assert_eq!(app.admin_get("/admin/fx-rates").await["rates"], json!({"USD": "16000"}));
    let r =
        app.client.get(app.url("/admin/fx-rates?at=2025-12-31T00:00:00Z")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no table was in force then");

    // … but the order's refunds use the rate frozen on it. The phone back:
    // the shirts alone pay 14 992 / 4 497 / 1 499 (149 929 × 0.10, 0.03, 0.01 floored).
    let (status, _) = refund(&app, "o-1", "r-1", json!([{"sku": "phone", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.processed("o-1").await;
    assert_eq!(
        app.order_amounts("o-1").await,
        amounts(&[("A", "commission", "1499"), ("B", "commission", "4497"), ("C", "commission", "14992")])
    );
    assert_eq!(app.get_json("/v1/orders/o-1").await["fx"]["rate"], "15650.25");
    // The rest back: every balance and every point exactly zero.
    let (status, _) =
        refund(&app, "o-1", "r-2", json!([{"sku": "shirt", "quantity": 2}, {"sku": "voucher", "quantity": 1}])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.processed("o-1").await;
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, Decimal::ZERO, "{a}");
    }
    assert_eq!(app.points("x").await, 0);
    assert_eq!(app.order_amounts("o-1").await, vec![]);
    app.assert_ledger_consistent().await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn bad_currencies_rates_and_tables_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let refused = |order: Value| {
        let app = &app;
        async move {
            let (status, body) = app.place(&order).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{order}: {body}");
            fields(&body)
        }
    };
    for rate in ["0", "-1", "NaN", "1e3", "1234567890123", "0.1234567890123", "", "1.", "Infinity"] {
        assert_eq!(refused(usd_worked_example("o-1", "x", Some(rate))).await, ["fx_rate"], "{rate:?}");
    }
    let mut o = usd_worked_example("o-1", "x", Some("15650.25"));
    o["currency"] = json!("ABC");
    assert_eq!(refused(o).await, ["currency"]);
    // No rate: neither on the order nor in a table.
    assert_eq!(refused(usd_worked_example("o-1", "x", None)).await, ["currency"]);
    // Yen have no decimals, dinar three.
    let mut yen = usd_worked_example("o-1", "x", Some("104.5"));
    yen["currency"] = json!("JPY");
    assert_eq!(refused(yen.clone()).await, ["items[0].unit_price", "items[1].unit_price", "items[2].unit_price"]);
    let mut kwd = usd_worked_example("o-1", "x", Some("51000"));
    kwd["currency"] = json!("KWD");
    kwd["items"][0]["unit_price"] = json!("1.2345");
    assert_eq!(refused(kwd).await, ["items[0].unit_price"]);
    // Below 10^12 in dollars, not once converted.
    let mut huge = usd_worked_example("o-1", "x", Some("15650.25"));
    huge["items"][1]["unit_price"] = json!("70000000");
    assert_eq!(refused(huge).await, ["items"]);
    // A rate on an order in the program currency.
    let mut idr = worked_example_order("o-1", "x", "code-C");
    idr["fx_rate"] = json!("2");
    assert_eq!(refused(idr).await, ["fx_rate"]);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders", &[]).await, 0, "nothing stored");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM events", &[]).await, 0);
    // A yen order in whole yen is fine.
    for item in yen["items"].as_array_mut().unwrap() {
        item["unit_price"] = json!("700");
    }
    app.accept(&yen).await;

    // Tables: the program currency as base, ISO codes, valid rates, a sane as_of.
    for (table, field) in [
        (json!({"base": "USD", "rates": {"EUR": "1.1"}}), "base"),
        (json!({"base": "IDR", "rates": {"USD": "0"}}), "rates.USD"),
        (json!({"base": "IDR", "rates": {"ABC": "1"}}), "rates.ABC"),
        (json!({"base": "IDR", "rates": {"IDR": "1"}}), "rates.IDR"),
        (json!({"base": "IDR", "rates": {}}), "rates"),
        (json!({"base": "IDR", "rates": {"USD": "1"}, "as_of": "2999-01-01T00:00:00Z"}), "as_of"),
        (json!({"base": "IDR", "rates": {"USD": "1"}, "as_of": "yesterday"}), "as_of"),
    ] {
        let r = app.admin_put("/admin/fx-rates", &table).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{table}");
        assert_eq!(fields(&r.json().await.unwrap()), [field], "{table}");
    }
    assert_eq!(app.db.int("SELECT COUNT(*) FROM fx_rates", &[]).await, 0);
    let r = app.client.get(app.url("/admin/fx-rates?at=soon")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// One random order of the property below: its currency, rate, items
/// (quantity, price in the currency's minor units) and the partial refunds before the rest.
#[derive(Debug, Clone)]
struct Case {
    currency: &'static str,
    rate: Decimal,
    items: Vec<(u32, i64)>,
    partial: Vec<(usize, u32)>,
    cancel: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::sample::select(vec!["USD", "JPY", "KWD", "EUR"]),
        // Rates from 10^-12 to 10^6, up to 12 significant digits.
        (1i64..999_999_999_999, 6u32..=12),
        proptest::collection::vec((1u32..=5, 1i64..5_000_000), 1..=4),
        proptest::collection::vec((0usize..4, 1u32..=3), 0..=3),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(currency, (mantissa, scale), items, partial, cancel)| Case {
            currency,
            rate: Decimal::new(mantissa, scale),
            items,
            partial,
            cancel,
        })
}

/// For random orders in random currencies at random rates, partly refunded
/// and then reversed in full (the rest refunded, or cancelled): every
/// affiliate's balance and every buyer's points end at exactly zero, on the
/// backend under test. Cases come from proptest strategies (a deterministic
/// runner: the same cases every run).
#[tokio::test]
async fn random_orders_rates_and_partial_refunds_net_to_zero_after_a_full_reversal() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let cases: Vec<Case> = (0..12).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();
    let places = |c: &str| komisi::domain::currency::minor_units(c).unwrap();
    let mut reversed = 0;
    for (n, c) in cases.iter().enumerate() {
        let items: Vec<Value> = c
            .items
            .iter()
            .enumerate()
            .map(|(i, (q, minor))| {
                let price = Decimal::new(*minor, places(c.currency));
                let category = ["fashion", "electronics", "gift-card", "food"][i % 4];
                json!({"sku": format!("s{i}"), "category": category, "quantity": q, "unit_price": price.to_string()})
            })
            .collect();
        let order = json!({
            "id": format!("o-{n}"), "buyer_id": format!("b-{}", n % 3), "referral_code": "code-C",
            "currency": c.currency, "fx_rate": c.rate.to_string(), "items": items
        });
        let (status, body) = app.place(&order).await;
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            // Only a converted total past 10^12 may be refused.
            assert_eq!(fields(&body), ["items"], "{c:?}: {body}");
            continue;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{c:?}: {body}");
        let id = format!("o-{n}");
        app.processed(&id).await;
        let mut left: Vec<u32> = c.items.iter().map(|(q, _)| *q).collect();
        for (k, (item, qty)) in c.partial.iter().enumerate() {
            let i = item % left.len();
            let qty = (*qty).min(left[i]);
            if qty == 0 {
                continue;
            }
            left[i] -= qty;
            let (status, body) =
                refund(&app, &id, &format!("r-{k}"), json!([{"sku": format!("s{i}"), "quantity": qty}])).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            app.processed(&id).await;
        }
        if c.cancel && left.iter().any(|q| *q > 0) {
            assert_eq!(lifecycle(&app, &id, "cancel").await.0, StatusCode::ACCEPTED);
        } else {
            let rest: Vec<Value> = left
                .iter()
                .enumerate()
                .filter(|(_, q)| **q > 0)
                .map(|(i, q)| json!({"sku": format!("s{i}"), "quantity": q}))
                .collect();
            if !rest.is_empty() {
                assert_eq!(refund(&app, &id, "r-rest", json!(rest)).await.0, StatusCode::ACCEPTED);
            }
        }
        app.processed(&id).await;
        assert_eq!(app.order_amounts(&id).await, vec![], "{c:?}");
        reversed += 1;
    }
    assert!(reversed >= 8, "most cases are orders within the bounds: {reversed} of {}", cases.len());
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, Decimal::ZERO, "{a}");
    }
    for b in 0..3 {
        assert_eq!(app.points(&format!("b-{b}")).await, 0, "b-{b}");
    }
    app.assert_ledger_consistent().await;
}

/// The minimum order and the month volume of tiers count converted amounts.
#[tokio::test]
async fn the_minimum_and_the_tier_volume_count_the_converted_amounts() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.set_program(|p| {
        p["tiers"] = json!([{"monthly_sales_from": "1000000", "bonus_rate": "0.02"}]);
        p["milestones"] = json!([]);
    })
    .await;
    let usd = |id: &str, price: &str| {
        json!({"id": id, "buyer_id": format!("b-{id}"), "referral_code": "code-C", "currency": "USD", "fx_rate": "15000",
               "items": [{"sku": "item", "category": "fashion", "quantity": 1, "unit_price": price}]})
    };
    // USD 3.00 = IDR 45 000: below the 50 000 minimum (3.40 would be 51 000).
    app.accept(&usd("o-small", "3.00")).await;
    assert_eq!(app.processed("o-small").await["no_commission_reason"], "below_minimum");
    // USD 100.00 = IDR 1 500 000: C earns 150 000, and its month reaches the tier.
    app.accept(&usd("o-big", "100.00")).await;
    app.processed("o-big").await;
    assert_eq!(app.order_amounts("o-big").await[2], ("C".into(), "commission".into(), d("150000")));
    // The next order of C (in rupiah) gets the 2 % tier bonus: 2 000 on 100 000.
    app.accept(&simple_order("o-next", "b-next", Some("code-C"), "100000")).await;
    app.processed("o-next").await;
    let c: Vec<(String, String, Decimal)> =
        app.order_amounts("o-next").await.into_iter().filter(|(a, _, _)| a == "C").collect();
    assert_eq!(c, vec![("C".into(), "commission".into(), d("10000")), ("C".into(), "tier_bonus".into(), d("2000"))]);
}
