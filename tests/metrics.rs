//! `/metrics` after a scripted scenario shows exactly the expected counts.
//! A binary of its own: the metrics recorder is process-wide, so counters are
//! only exact when no other test's app runs in the same process.
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

type Series = (String, Vec<(String, String)>);

/// Parses the Prometheus text format into (name, sorted labels) → value.
fn samples(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut labels: Vec<(String, String)> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        labels.sort();
        out.insert((name.to_owned(), labels), value.parse().expect("value"));
    }
    out
}

fn get(s: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    *s.get(&(name.to_owned(), labels.clone())).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

#[tokio::test]
async fn metrics_after_a_scripted_scenario() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    for n in 0..5 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("b-{n}"), Some("code-A"), "100000")).await;
        app.processed(&format!("o-{n}")).await;
    }
    // One attempt fails and the retry succeeds.
    app.faults.fail_db_mid_tx(1);
    app.accept(&simple_order("o-5", "b-5", Some("code-A"), "100000")).await;
    app.processed("o-5").await;
    // One replay of a done event.
    let done = app.admin_get("/admin/events?order_id=o-0").await["items"][0]["id"].as_str().unwrap().to_owned();
    app.admin_post(&format!("/admin/events/{done}/replay"), &json!({})).await;
    let noop = poll(Duration::from_secs(5), || async {
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        get(&samples(&text), "komisi_events_total", &[("type", "order.placed"), ("outcome", "noop")]) == 1.0
    })
    .await;
    assert!(noop, "the replay was counted as a no-op");
    // One full reconcile sweep, finding nothing.
    let r = app.admin_post("/admin/reconcile", &json!({"kind": "full", "wait": true})).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let s = samples(&text);
    assert_eq!(get(&s, "komisi_reconcile_runs_total", &[("kind", "full"), ("outcome", "done")]), 1.0);
    assert_eq!(get(&s, "komisi_reconcile_runs_total", &[("kind", "incremental"), ("outcome", "done")]), 0.0);
    assert_eq!(get(&s, "komisi_reconcile_duration_seconds_count", &[("kind", "full")]), 1.0);
    assert_eq!(get(&s, "komisi_reconcile_violations", &[]), 0.0);
    assert!(get(&s, "komisi_reconcile_last_success_timestamp_seconds", &[("kind", "full")]) > 1.7e9);
    let placed = |outcome| get(&s, "komisi_events_total", &[("type", "order.placed"), ("outcome", outcome)]);
    assert_eq!((placed("done"), placed("noop"), placed("failed"), placed("dead")), (6.0, 1.0, 1.0, 0.0));
    assert_eq!(
        get(&s, "komisi_http_requests_total", &[("method", "POST"), ("route", "/v1/orders"), ("status", "202")]),
        6.0
    );
    assert_eq!(
        get(&s, "komisi_http_requests_total", &[("method", "POST"), ("route", "/v1/affiliates"), ("status", "201")]),
        1.0
    );
    assert_eq!(
        get(&s, "komisi_http_request_duration_seconds_count", &[("method", "POST"), ("route", "/v1/orders")]),
        6.0
    );
    // The 6 orders were attributed by their referral code; no click was recorded.
    assert_eq!(get(&s, "komisi_orders_attributed_total", &[("source", "referral_code")]), 6.0);
    assert_eq!(get(&s, "komisi_orders_attributed_total", &[("source", "coupon")]), 0.0);
    assert_eq!(get(&s, "komisi_clicks_total", &[]), 0.0);
    // All six in the program currency: nothing converted.
    assert_eq!(get(&s, "komisi_orders_converted_total", &[("source", "order")]), 0.0);
    // 6 orders × 10 % of 100 000, the 3rd of the month adds the 25 000 milestone.
    assert_eq!(get(&s, "komisi_commission_amount_total", &[("kind", "commission")]), 60_000.0);
    assert_eq!(get(&s, "komisi_commission_amount_total", &[("kind", "milestone_bonus")]), 25_000.0);
    assert_eq!(get(&s, "komisi_commission_reversed_amount_total", &[("kind", "commission")]), 0.0);
    assert_eq!(get(&s, "komisi_event_lag_seconds_count", &[]), 6.0);
    assert_eq!(get(&s, "komisi_event_processing_duration_seconds_count", &[("type", "order.placed")]), 6.0);
    assert_eq!(get(&s, "komisi_actor_restarts_total", &[]), 0.0);
    // Gauges read from the record: nothing open, nothing dead.
    let settled = poll(Duration::from_secs(5), || async {
        let s = samples(&app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap());
        get(&s, "komisi_events_pending", &[]) == 0.0
            && get(&s, "komisi_events_dead", &[]) == 0.0
            && get(&s, "komisi_ready", &[]) == 1.0
    })
    .await;
    assert!(settled);
    for (name, kind) in komisi::metrics::ALL {
        assert!(text.contains(&format!("# TYPE {name} {kind}")), "{name} is exported as a {kind}");
    }
}
