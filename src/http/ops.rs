//! Operations endpoints that need no key: liveness, readiness, metrics.
use super::error::ApiError;
use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when both MySQL and the journal answer.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (db, journal) = tokio::join!(state.store.ping(), state.journal.ping());
    if db && journal {
        Ok(Json(json!({"status": "ready", "database": "ok", "journal": "ok"})))
    } else {
        Err(ApiError::Unavailable(format!(
            "database: {}, journal: {}",
            if db { "ok" } else { "unreachable" },
            if journal { "ok" } else { "unreachable" }
        )))
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
