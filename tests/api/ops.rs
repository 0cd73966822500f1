//! Auth, health, readiness and metrics.
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn keys_guard_the_api() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/v1/affiliates/A")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = app.client.get(app.url("/v1/affiliates/A")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.client.get(app.url("/admin/program")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.client.get(app.url("/admin/program")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .put(app.url("/admin/program"))
        .bearer_auth(STOREFRONT_KEY)
        .json(&default_program())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.client.get(app.url(open)).send().await.unwrap().status(), StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn metrics_count_requests_and_events() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    app.accept(&json!({"id": "m-1", "buyer_id": "x", "referral_code": "code-A", "currency": "IDR",
        "items": [{"sku": "s", "category": "fashion", "quantity": 1, "unit_price": "100000"}]}))
        .await;
    app.processed("m-1").await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "komisi_http_requests_total{method=\"POST\",route=\"/v1/orders\",status=\"202\"}",
        "komisi_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/orders\",le=\"0.005\"}",
        "komisi_events_total{type=\"order.placed\",outcome=\"done\"}",
        "komisi_event_lag_seconds_bucket",
        "komisi_event_processing_duration_seconds_bucket",
        "komisi_commission_amount_total{kind=\"commission\"}",
        "komisi_events_pending",
        "komisi_actors_active",
    ] {
        assert!(text.contains(needle), "missing {needle} in /metrics:\n{text}");
    }
    // Raw ids never become labels.
    assert!(!text.contains("m-1"));
}

#[tokio::test]
async fn readiness_reports_a_missing_journal() {
    let app = spawn_app_without_journal().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn commission_actors_are_spawned_per_partition_and_stop_when_idle() {
    let app = spawn_app_with(|c| c.actor_idle_ms = 300, komisi::engine::faults::Faults::default()).await;
    for n in 0..6 {
        app.create_affiliate(&format!("A{n}"), None).await;
    }
    for n in 0..6 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("b-{n}"), Some(&format!("code-A{n}")), "100000")).await;
    }
    // An actor per partition while there is work (6 affiliates), …
    let mut peak = 0;
    for n in 0..6 {
        peak = peak.max(app.tree_stats().await.commission_actors);
        app.processed(&format!("o-{n}")).await;
    }
    assert!(peak >= 1, "actors were spawned");
    // … and none once every partition has been idle for the idle time.
    let idle = poll(std::time::Duration::from_secs(10), || async {
        let s = app.tree_stats().await;
        s.commission_actors == 0 && s.inflight == 0
    })
    .await;
    assert!(idle, "idle actors stopped: {:?}", app.tree_stats().await);
    // A new event for a retired partition spawns its actor again.
    app.accept(&simple_order("o-again", "b-again", Some("code-A0"), "100000")).await;
    app.processed("o-again").await;
    assert_eq!(app.balance("A0", "pending").await, d("20000"));
}
