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
    let app =
        spawn_app_with(|c| c.redis_url = Some("redis://127.0.0.1:1".into()), komisi::faults::Faults::default()).await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}
