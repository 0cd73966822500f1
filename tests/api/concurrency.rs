//! Many orders at once for affiliates sharing uplines: every one applied,
//! balances equal ledger sums, every order's entries equal its entitlement.
use crate::helpers::*;
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;

#[tokio::test]
async fn two_hundred_concurrent_orders_sharing_uplines() {
    let app = spawn_app().await;
    // No tiers or milestones, so each order's entitlement depends on itself alone.
    app.set_program(|p| {
        p["tiers"] = json!([]);
        p["milestones"] = json!([]);
    })
    .await;
    // R ← M0..M3 ← L0..L11 (leaf k under M(k % 4)).
    app.create_affiliate("R", None).await;
    for m in 0..4 {
        app.create_affiliate(&format!("M{m}"), Some("R")).await;
    }
    for l in 0..12 {
        app.create_affiliate(&format!("L{l}"), Some(&format!("M{}", l % 4))).await;
    }
    let parent = |a: &str| -> Option<String> {
        match a.as_bytes()[0] {
            b'L' => Some(format!("M{}", a[1..].parse::<u32>().unwrap() % 4)),
            b'M' => Some("R".into()),
            _ => None,
        }
    };

    // Order n goes to a leaf or a mid-level affiliate, for a price with cents that floors.
    let orders: Vec<(String, String, Decimal)> = (0..200)
        .map(|n| {
            let affiliate = if n % 5 == 0 { format!("M{}", n % 4) } else { format!("L{}", n % 12) };
            let price = Decimal::from(50_000 + n * 1_337) + Decimal::new(55, 2);
            (format!("c-{n}"), affiliate, price)
        })
        .collect();
    let app_ref = &app;
    let statuses: Vec<u16> = futures::stream::iter(orders.iter())
        .map(|(id, affiliate, price)| async move {
            let app = app_ref;
            let (status, _) = app
                .place(&simple_order(
                    id,
                    &format!("buyer-{id}"),
                    Some(&format!("code-{affiliate}")),
                    &price.to_string(),
                ))
                .await;
            status.as_u16()
        })
        .buffer_unordered(50)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    for (id, _, _) in &orders {
        app.processed(id).await;
    }

    // Expected, from the rules: direct 10 %, parent 3 %, grandparent 1 %, each floored.
    let floor = |x: Decimal| x.floor();
    let mut expected_balance: BTreeMap<String, Decimal> = BTreeMap::new();
    for (id, affiliate, price) in &orders {
        let mut expected = vec![(affiliate.clone(), "commission".to_string(), floor(*price * Decimal::new(10, 2)))];
        let mut up = parent(affiliate);
        for rate in [Decimal::new(3, 2), Decimal::new(1, 2)] {
            let Some(a) = up else { break };
            expected.push((a.clone(), "commission".into(), floor(*price * rate)));
            up = parent(&a);
        }
        for (a, _, amount) in &expected {
            *expected_balance.entry(a.clone()).or_default() += *amount;
        }
        expected.sort();
        assert_eq!(app.order_amounts(id).await, expected, "order {id}");
        let buyer = format!("buyer-{id}");
        let points = (*price * Decimal::new(1, 2)).floor();
        assert_eq!(Decimal::from(app.points(&buyer).await), points + Decimal::from(5000), "{buyer}");
    }
    for (affiliate, total) in expected_balance {
        assert_eq!(app.balance(&affiliate, "pending").await, total, "{affiliate}");
    }
    app.assert_ledger_consistent().await;
}
