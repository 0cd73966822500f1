//! `/admin` money movement and checks: payout batches and reconciliation.
use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use super::AppState;
use crate::domain::money::parse_amount;
use crate::store::payouts::Payout;
use crate::store::reconcile::Report;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/payouts", post(create_payout))
        .route("/admin/payouts/{id}/complete", post(complete_payout))
        .route("/admin/reconcile", get(reconcile))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayoutBody {
    min_amount: String,
}

/// Builds a batch from approved balances ≥ `min_amount`. An `Idempotency-Key`
/// header makes a retried request return the batch the first one built.
async fn create_payout(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PayoutBody>,
) -> Result<Json<Payout>, ApiError> {
    let min_amount = parse_amount(&body.min_amount).map_err(|e| ApiError::field("min_amount", e.to_string()))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if (1..=128).contains(&k.len()) => Some(k.to_owned()),
            _ => return Err(ApiError::BadRequest("Idempotency-Key must be 1-128 visible ASCII characters".into())),
        },
    };
    Ok(Json(state.store.create_payout(min_amount, key.as_deref()).await?))
}

async fn complete_payout(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Payout>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::NotFound("payout"))?;
    state.store.complete_payout(id).await?.map(Json).ok_or(ApiError::NotFound("payout"))
}

async fn reconcile(_: Admin, State(state): State<AppState>) -> Result<Json<Report>, ApiError> {
    Ok(Json(state.store.reconcile(state.retry_horizon).await?))
}
