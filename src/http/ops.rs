//! Operations endpoints that need no key: liveness, readiness, metrics.
use super::error::ApiError;
use super::error::Problem;
use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Object)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when both MySQL and the journal answer.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready", body = Object),
    (status = 503, description = "The database or the journal unreachable, or the backlog over KOMISI_MAX_BACKLOG (degraded: new orders refused)", body = Problem, content_type = "application/problem+json"),
))]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (db, journal) = state.engine.ready().await;
    let (open, max) = state.engine.backlog_level();
    let over = max > 0 && open >= max;
    if db && journal && !over {
        Ok(Json(json!({"status": "ready", "database": "ok", "journal": "ok", "backlog": "ok"})))
    } else {
        Err(ApiError::Unavailable(format!(
            "database: {}, journal: {}, backlog: {}",
            if db { "ok" } else { "unreachable" },
            if journal { "ok" } else { "unreachable" },
            if over {
                format!("{open} open events, at or over KOMISI_MAX_BACKLOG {max}: new orders refused")
            } else {
                "ok".into()
            }
        )))
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi_json() -> Json<&'static serde_json::Value> {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(|| super::openapi::document(super::openapi())))
}
