//! `/v1/buyers/{id}/rewards`: a buyer's points and their history.
use super::error::ApiError;
use super::extract::Storefront;
use super::AppState;
use crate::domain::ids::BuyerId;
use crate::store::ledger::BuyerRewards;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/buyers/{id}/rewards", get(rewards))
}

async fn rewards(
    _: Storefront,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BuyerRewards>, ApiError> {
    let id = BuyerId::parse(&id).map_err(|_| ApiError::NotFound("buyer"))?;
    Ok(Json(state.store.buyer_rewards(&id).await?))
}
