//! `/admin` money movement and checks: payout batches and reconciliation.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{page_limit, Admin, ApiJson, ApiPath, ApiQuery};
use super::views::{NothingToPay, Payout, PayoutAnswer, PayoutSummaryView, Report};
use super::AppState;
use crate::domain::money::parse_amount;
use crate::domain::payout::CreatePayout;
use crate::domain::FieldError;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payout, list_payouts))
        .routes(routes!(read_payout))
        .routes(routes!(complete_payout))
        .routes(routes!(reconcile))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PayoutBody {
    min_amount: String,
}

/// Builds a batch from approved balances ≥ `min_amount`. An `Idempotency-Key`
/// header makes a retried request (also one running at the same time) return
/// the batch the first one built; the key with another `min_amount` is 422.
/// When no balance reaches the minimum nothing is stored and the answer is
/// `{"status": "nothing_to_pay", "items": [], "total": "0"}`.
#[utoipa::path(post, path = "/admin/payouts", tag = "payouts", request_body = PayoutBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats return the first batch")),
    responses(
        (status = 200, description = "The batch, or nothing to pay", body = PayoutAnswer),
        (status = 400, description = "Malformed Idempotency-Key or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid min_amount, or the Idempotency-Key used with another min_amount", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn create_payout(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PayoutBody>,
) -> Result<Json<PayoutAnswer>, ApiError> {
    let min_amount = parse_amount(&body.min_amount).map_err(|e| ApiError::field("min_amount", e.to_string()))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => Some(k.to_owned()),
            _ => return Err(ApiError::BadRequest("Idempotency-Key must be 1-128 visible ASCII characters".into())),
        },
    };
    match state.engine.create_payout(min_amount, key.as_deref()).await? {
        CreatePayout::Created(p) | CreatePayout::Repeated(p) => Ok(Json(PayoutAnswer::Batch(p.into()))),
        CreatePayout::NothingToPay => Ok(Json(PayoutAnswer::Nothing(NothingToPay::new()))),
        CreatePayout::KeyReused { min_amount } => Err(ApiError::field(
            "min_amount",
            format!("this Idempotency-Key was used with min_amount {min_amount}; use a new key for another request"),
        )),
    }
}

/// A payout id from the path: ids are stored as signed 64-bit integers, so
/// a larger one is never found.
fn payout_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or(ApiError::NotFound("payout"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PayoutsQuery {
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PayoutPage {
    items: Vec<PayoutSummaryView>,
    next_cursor: Option<String>,
}

/// Payout batches, newest first, a page at a time (each with its number of items).
#[utoipa::path(get, path = "/admin/payouts", tag = "payouts", params(PayoutsQuery),
    responses(
        (status = 200, description = "One page of batches", body = PayoutPage),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn list_payouts(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PayoutsQuery>,
) -> Result<Json<PayoutPage>, ApiError> {
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        // Only the form this API writes: up to 19 digits (no sign); past the
        // largest stored id it is every batch.
        Some(s) => match s.parse::<u64>() {
            Ok(n) if s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) => Some(n.min(i64::MAX as u64)),
            _ => {
                errors.push(FieldError::new("cursor", "not a cursor returned by this API"));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let items: Vec<PayoutSummaryView> =
        state.engine.list_payouts(before, limit).await?.into_iter().map(Into::into).collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|p| p.id.to_string())).flatten();
    Ok(Json(PayoutPage { items, next_cursor }))
}

/// One batch with its items.
#[utoipa::path(get, path = "/admin/payouts/{id}", tag = "payouts",
    params(("id" = u64, Path, description = "Payout id")),
    responses(
        (status = 200, description = "The batch", body = Payout),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payout", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read_payout(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Payout>, ApiError> {
    state.engine.payout(payout_id(&id)?).await?.map(|p| Json(p.into())).ok_or(ApiError::NotFound("payout"))
}

/// Marks a batch paid: its entries move approved → paid. Idempotent.
#[utoipa::path(post, path = "/admin/payouts/{id}/complete", tag = "payouts",
    params(("id" = u64, Path, description = "Payout id")),
    responses(
        (status = 200, description = "The completed batch", body = Payout),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payout", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn complete_payout(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Payout>, ApiError> {
    state.engine.complete_payout(payout_id(&id)?).await?.map(|p| Json(p.into())).ok_or(ApiError::NotFound("payout"))
}

/// Checks every SPEC §5 invariant and lists each violation with the ids involved.
#[utoipa::path(get, path = "/admin/reconcile", tag = "operations",
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn reconcile(_: Admin, State(state): State<AppState>) -> Result<Json<Report>, ApiError> {
    Ok(Json(state.engine.reconcile().await?.into()))
}
