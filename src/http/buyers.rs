//! `/v1/buyers/{id}`: a buyer's points and history, and spending them —
//! a redemption holds points at checkout, then is captured or released.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{id_field, ApiJson, ApiPath, OptionalApiJson, Storefront};
use super::views::{BuyerRewards, RedemptionView};
use super::AppState;
use crate::domain::ids::{BuyerId, OrderId, RedemptionId};
use crate::domain::wallet::MAX_REDEMPTION_POINTS;
use crate::domain::FieldError;
use crate::engine::rewards::{ActionOutcome, HoldOutcome, HoldRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rewards))
        .routes(routes!(hold))
        .routes(routes!(capture))
        .routes(routes!(release))
}

fn buyer(id: &str) -> Result<BuyerId, ApiError> {
    BuyerId::parse(id).map_err(|_| ApiError::NotFound("buyer"))
}

fn redemption(id: &str) -> Result<RedemptionId, ApiError> {
    RedemptionId::parse(id).map_err(|_| ApiError::NotFound("redemption"))
}

/// A buyer's spendable points, held points, debt and history (an unknown buyer has none).
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
    let id = buyer(&id)?;
    Ok(Json(state.engine.buyer_wallet(&id).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    /// The storefront's id of this redemption (idempotency key, per buyer)
    redemption_id: String,
    /// Whole points to hold, 1-10^15
    points: i64,
    /// The checkout's order, when known
    #[serde(default)]
    order_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    /// The order the points paid for (when the hold did not name one)
    #[serde(default)]
    order_id: Option<String>,
}

/// Holds points for a redemption at checkout: they stop being spendable at
/// once. Idempotent on `redemption_id`. The answer carries `value`, the
/// points' worth in the program currency (komisi does not price the cart).
#[utoipa::path(post, path = "/v1/buyers/{id}/redemptions", tag = "buyers", request_body = HoldBody,
    params(("id" = String, Path, description = "Buyer id")),
    responses(
        (status = 201, description = "Held", body = RedemptionView),
        (status = 200, description = "The same redemption was held before", body = RedemptionView),
        (status = 409, description = "The redemption id was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or more points than are spendable", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn hold(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<(StatusCode, Json<RedemptionView>), ApiError> {
    let buyer_id = buyer(&id)?;
    let mut errors = Vec::new();
    let rid = id_field("redemption_id", &body.redemption_id, RedemptionId::parse, &mut errors);
    let order_id = body.order_id.as_deref().and_then(|o| id_field("order_id", o, OrderId::parse, &mut errors));
    if !(1..=MAX_REDEMPTION_POINTS).contains(&body.points) {
        errors.push(FieldError::new("points", format!("must be whole points, 1-{MAX_REDEMPTION_POINTS}")));
    }
    let (Some(rid), true) = (rid, errors.is_empty()) else { return Err(ApiError::Validation(errors)) };
    let req = HoldRequest { buyer_id, id: rid, points: body.points, order_id };
    match state.engine.hold_points(&req).await? {
        HoldOutcome::Created(r) => Ok((StatusCode::CREATED, Json(r.into()))),
        HoldOutcome::Existing(r) => Ok((StatusCode::OK, Json(r.into()))),
        HoldOutcome::Conflict(r) => Err(ApiError::Conflict(format!(
            "redemption {} was held with another body ({} points, order {})",
            r.id,
            r.points,
            r.order_id.as_ref().map_or("none", |o| o.as_str())
        ))),
        HoldOutcome::Insufficient { spendable } => {
            Err(ApiError::field("points", format!("{} points asked, {spendable} spendable", body.points)))
        }
    }
}

fn settled(outcome: ActionOutcome) -> Result<Json<RedemptionView>, ApiError> {
    match outcome {
        ActionOutcome::Done(r) | ActionOutcome::Unchanged(r) => Ok(Json(r.into())),
        ActionOutcome::NotFound => Err(ApiError::NotFound("redemption")),
        ActionOutcome::Conflict(r, why) => Err(ApiError::Conflict(format!("redemption {}: {why}", r.id))),
    }
}

/// Captures a hold: the checkout went through and the points are spent.
/// Idempotent; after a release or the hold's expiry → 409.
#[utoipa::path(post, path = "/v1/buyers/{id}/redemptions/{rid}/capture", tag = "buyers",
    request_body = Option<CaptureBody>,
    params(("id" = String, Path, description = "Buyer id"), ("rid" = String, Path, description = "Redemption id")),
    responses(
        (status = 200, description = "Captured", body = RedemptionView),
        (status = 409, description = "Released or expired, or captured for another order", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn capture(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath((id, rid)): ApiPath<(String, String)>,
    OptionalApiJson(body): OptionalApiJson<CaptureBody>,
) -> Result<Json<RedemptionView>, ApiError> {
    let (buyer_id, rid) = (buyer(&id)?, redemption(&rid)?);
    let mut errors = Vec::new();
    let order_id =
        body.unwrap_or_default().order_id.and_then(|o| id_field("order_id", &o, OrderId::parse, &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    settled(state.engine.capture_redemption(&buyer_id, &rid, order_id.as_ref()).await?)
}

/// Releases a hold: the checkout was abandoned and the points are spendable
/// again. Idempotent; after a capture → 409.
#[utoipa::path(post, path = "/v1/buyers/{id}/redemptions/{rid}/release", tag = "buyers",
    params(("id" = String, Path, description = "Buyer id"), ("rid" = String, Path, description = "Redemption id")),
    responses(
        (status = 200, description = "Released (or expired before)", body = RedemptionView),
        (status = 409, description = "Captured", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn release(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath((id, rid)): ApiPath<(String, String)>,
) -> Result<Json<RedemptionView>, ApiError> {
    let (buyer_id, rid) = (buyer(&id)?, redemption(&rid)?);
    settled(state.engine.release_redemption(&buyer_id, &rid).await?)
}
