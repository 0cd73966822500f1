//! Manual adjustments (`domain::adjustment`): an operator credits or
//! debits an affiliate's approved commission or a buyer's points, with a
//! reason; idempotent by `adjustment_id`.
use super::error::{ApiError, Problem};
use super::extract::{id_field, Admin, ApiJson, ApiPath};
use super::AppState;
use crate::domain::adjustment::{
    check_points_value, check_reason, parse_signed_amount, AdjustOutcome, Adjusted, Adjustment, AdjustmentRequest,
};
use crate::domain::ids::{AdjustmentId, AffiliateId, BuyerId};
use crate::domain::FieldError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(adjust_commission)).routes(routes!(adjust_points))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CommissionAdjustmentBody {
    /// Your id for this adjustment: a repeat with the same body answers the
    /// first; with another body, 409
    adjustment_id: String,
    /// Signed, in the program currency, no finer than its scale; not zero
    #[schema(example = "-12500")]
    amount: String,
    /// Why: 1-500 characters
    reason: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PointsAdjustmentBody {
    /// Your id for this adjustment (as above)
    adjustment_id: String,
    /// Signed; not zero
    #[schema(example = 500)]
    points: i64,
    /// Why: 1-500 characters
    reason: String,
}

/// A stored adjustment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdjustmentView {
    pub adjustment_id: String,
    /// A commission adjustment's affiliate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_id: Option<String>,
    /// A commission adjustment's amount, in the program currency.
    #[serde(skip_serializing_if = "Option::is_none", with = "crate::domain::money::opt_decimal_str")]
    #[schema(value_type = Option<String>, format = "decimal", example = "-12500")]
    pub amount: Option<rust_decimal::Decimal>,
    /// A points adjustment's buyer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    pub reason: String,
    /// Its event (`commission.adjusted` or `points.adjusted`), which its
    /// ledger or reward entry carries.
    pub event_id: crate::domain::event::EventId,
    /// The name of the key that made it.
    pub actor: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Adjustment> for AdjustmentView {
    fn from(a: Adjustment) -> Self {
        let (affiliate_id, amount, buyer_id, points) = match a.request.adjusted {
            Adjusted::Commission { affiliate_id, amount } => (Some(affiliate_id.to_string()), Some(amount), None, None),
            Adjusted::Points { buyer_id, points } => (None, None, Some(buyer_id.to_string()), Some(points)),
        };
        Self {
            adjustment_id: a.request.id.to_string(),
            affiliate_id,
            amount,
            buyer_id,
            points,
            reason: a.request.reason,
            event_id: a.event_id,
            actor: a.actor,
            created_at: a.created_at,
        }
    }
}

fn answer(outcome: AdjustOutcome) -> Result<(StatusCode, Json<AdjustmentView>), ApiError> {
    match outcome {
        AdjustOutcome::Created(a) => Ok((StatusCode::CREATED, Json(a.into()))),
        AdjustOutcome::Repeated(a) => Ok((StatusCode::OK, Json(a.into()))),
        AdjustOutcome::Conflict(a) => Err(ApiError::Conflict(format!(
            "adjustment_id {} was used for another adjustment (of {} {})",
            a.request.id,
            a.request.adjusted.subject_kind(),
            a.request.adjusted.subject_id()
        ))),
        AdjustOutcome::NotFound => Err(ApiError::NotFound("subject")),
        AdjustOutcome::Overdraw(e) => Err(ApiError::Validation(vec![e])),
    }
}

fn reason(raw: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    check_reason(raw).map_err(|why| errors.push(FieldError::new("reason", why))).ok()
}

/// Credits (a positive amount) or debits (a negative one) an affiliate's
/// approved commission: an approved ledger entry of kind `adjustment`
/// (level 0, no order), paid with the next payout batch, reconciled and
/// audited like every entry. A debit may take the approved balance to zero,
/// not below (422 naming `amount`).
#[utoipa::path(post, path = "/admin/affiliates/{id}/adjustments", tag = "payouts", request_body = CommissionAdjustmentBody,
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 201, description = "Adjusted", body = AdjustmentView),
        (status = 200, description = "This adjustment was made already (the same id and body)", body = AdjustmentView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The adjustment_id was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a debit past the approved balance", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn adjust_commission(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CommissionAdjustmentBody>,
) -> Result<(StatusCode, Json<AdjustmentView>), ApiError> {
    let affiliate_id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    let (_, program) = state.engine.program().await?;
    let mut errors = Vec::new();
    let adjustment_id = id_field("adjustment_id", &body.adjustment_id, AdjustmentId::parse, &mut errors);
    let amount = parse_signed_amount(&body.amount, program.scale)
        .map_err(|why| errors.push(FieldError::new("amount", why)))
        .ok();
    let reason = reason(&body.reason, &mut errors);
    let (Some(id), Some(amount), Some(reason)) = (adjustment_id, amount, reason) else {
        return Err(ApiError::Validation(errors));
    };
    let req = AdjustmentRequest { id, adjusted: Adjusted::Commission { affiliate_id, amount }, reason };
    match state.engine.adjust_commission(req, &admin.actor(&state)).await? {
        AdjustOutcome::NotFound => Err(ApiError::NotFound("affiliate")),
        outcome => answer(outcome),
    }
}

/// Credits (positive points) or debits (negative) a buyer's points: a
/// reward entry of kind `adjustment`. A credit never expires; a debit takes
/// the points that expire soonest first and may take at most what the buyer
/// can spend (points held by open redemptions excluded; 422 naming
/// `points`). A buyer komisi has never seen (no order, no points) is 404.
#[utoipa::path(post, path = "/admin/buyers/{id}/points-adjustments", tag = "buyers", request_body = PointsAdjustmentBody,
    params(("id" = String, Path, description = "Buyer id")),
    responses(
        (status = 201, description = "Adjusted", body = AdjustmentView),
        (status = 200, description = "This adjustment was made already (the same id and body)", body = AdjustmentView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such buyer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The adjustment_id was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a debit past the spendable points", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn adjust_points(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PointsAdjustmentBody>,
) -> Result<(StatusCode, Json<AdjustmentView>), ApiError> {
    let buyer_id = BuyerId::parse(&id).map_err(|_| ApiError::NotFound("buyer"))?;
    let mut errors = Vec::new();
    let adjustment_id = id_field("adjustment_id", &body.adjustment_id, AdjustmentId::parse, &mut errors);
    let points = check_points_value(body.points).map_err(|why| errors.push(FieldError::new("points", why))).ok();
    let reason = reason(&body.reason, &mut errors);
    let (Some(id), Some(points), Some(reason)) = (adjustment_id, points, reason) else {
        return Err(ApiError::Validation(errors));
    };
    let req = AdjustmentRequest { id, adjusted: Adjusted::Points { buyer_id, points }, reason };
    match state.engine.adjust_points(req, &admin.actor(&state)).await? {
        AdjustOutcome::NotFound => Err(ApiError::NotFound("buyer")),
        outcome => answer(outcome),
    }
}
