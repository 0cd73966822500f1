//! `/v1/buyers/{id}/rewards`: a buyer's points and their history.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{ApiPath, Storefront};
use super::views::BuyerRewards;
use super::AppState;
use crate::domain::ids::BuyerId;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(rewards))
}

/// A buyer's reward points and their history (an unknown buyer has none).
#[utoipa::path(get, path = "/v1/buyers/{id}/rewards", tag = "buyers",
    params(("id" = String, Path, description = "Buyer id")),
    responses(
        (status = 200, description = "Points and history", body = BuyerRewards),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn rewards(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BuyerRewards>, ApiError> {
    let id = BuyerId::parse(&id).map_err(|_| ApiError::NotFound("buyer"))?;
    Ok(Json(state.engine.buyer_rewards(&id).await?.into()))
}
