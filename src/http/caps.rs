//! `/admin/budgets` and `/admin/affiliates/{id}/caps`: the program's budgets
//! and an affiliate's caps with their use in the current window
//! (docs/RULES.md "Caps and budgets").
use super::error::{ApiError, Problem};
use super::extract::{Admin, ApiJson, ApiPath};
use super::AppState;
use crate::domain::caps::{CapDoc, OnExhausted, Period};
use crate::domain::ids::AffiliateId;
use crate::engine::caps::{AffiliateCaps, SetCaps, WindowUse};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(budgets)).routes(routes!(read_caps, replace_caps))
}

/// A cap's or budget's current window and what it used of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WindowView {
    period: Period,
    window_start: DateTime<Utc>,
    /// null: the program's whole life (`total`).
    window_end: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::money::opt_decimal_str")]
    #[schema(value_type = Option<String>, example = "5000000", format = "decimal")]
    max_commission: Option<Decimal>,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "1250000", format = "decimal")]
    used_commission: Decimal,
    max_points: Option<i64>,
    used_points: i64,
}

impl From<WindowUse> for WindowView {
    fn from(w: WindowUse) -> Self {
        Self {
            period: w.period,
            window_start: w.window_start,
            window_end: w.window_end,
            max_commission: w.max_commission,
            used_commission: w.used_commission,
            max_points: w.max_points,
            used_points: w.used_points,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BudgetsView {
    program_version: u64,
    /// The program currency.
    currency: String,
    on_exhausted: OnExhausted,
    budgets: Vec<WindowView>,
    /// The program's caps on each direct affiliate (an affiliate's own replace them).
    affiliate_caps: Vec<CapDoc>,
}

/// The program's budgets and their use in the current window.
#[utoipa::path(get, path = "/admin/budgets", tag = "program",
    responses(
        (status = 200, description = "The budgets in force", body = BudgetsView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn budgets(_: Admin, State(state): State<AppState>) -> Result<Json<BudgetsView>, ApiError> {
    let b = state.engine.budgets().await?;
    Ok(Json(BudgetsView {
        program_version: b.version,
        currency: b.program.currency.clone(),
        on_exhausted: b.program.on_exhausted,
        budgets: b.budgets.into_iter().map(Into::into).collect(),
        affiliate_caps: crate::domain::caps::cap_docs(&b.program.affiliate_caps),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CapsView {
    affiliate_id: AffiliateId,
    /// `own` (set for this affiliate) or `program`.
    #[schema(example = "own")]
    source: &'static str,
    caps: Vec<WindowView>,
}

impl From<AffiliateCaps> for CapsView {
    fn from(c: AffiliateCaps) -> Self {
        Self {
            affiliate_id: c.affiliate_id,
            source: if c.own { "own" } else { "program" },
            caps: c.caps.into_iter().map(Into::into).collect(),
        }
    }
}

/// An affiliate's own caps, replacing the program's for its next orders.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CapsBody {
    /// `[{period: "day" | "month", max_commission}]`, each period at most
    /// once (an empty list: no caps); null: back to the program's.
    caps: Option<Vec<CapDoc>>,
}

/// An affiliate's caps in force (its own or the program's) and their use now.
#[utoipa::path(get, path = "/admin/affiliates/{id}/caps", tag = "program",
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 200, description = "The caps and their use", body = CapsView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read_caps(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CapsView>, ApiError> {
    let id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    let caps = state.engine.affiliate_caps(&id).await?.ok_or(ApiError::NotFound("affiliate"))?;
    Ok(Json(caps.into()))
}

/// Sets an affiliate's own caps. Orders already processed keep the caps
/// they were counted against.
#[utoipa::path(put, path = "/admin/affiliates/{id}/caps", tag = "program", request_body = CapsBody,
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 200, description = "Set", body = CapsView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid caps", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn replace_caps(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CapsBody>,
) -> Result<Json<CapsView>, ApiError> {
    let id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    match state.engine.set_affiliate_caps(&id, body.caps.as_deref(), &admin.actor(&state)).await? {
        SetCaps::Set(caps) => Ok(Json(caps.into())),
        SetCaps::NotFound => Err(ApiError::NotFound("affiliate")),
        SetCaps::Invalid(errors) => Err(ApiError::Validation(errors)),
    }
}
