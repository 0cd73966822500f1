//! `/admin/fx-rates`: the operator's exchange-rate tables (docs/RULES.md
//! "Currencies"). Each PUT stores a whole table as a new version; orders
//! take the table in force when they were placed.
use super::error::{ApiError, Problem};
use super::extract::{rfc3339, Admin, ApiJson, ApiQuery};
use super::AppState;
use crate::domain::currency::{check_as_of, RateTable};
use crate::domain::FieldError;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read, replace))
}

/// A rate table: what one unit of each currency is worth in `base`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RatesBody {
    /// The program currency
    #[schema(example = "IDR")]
    base: String,
    /// ISO 4217 code → units of `base` per unit (a positive decimal string,
    /// at most 12 significant digits); 1-200 currencies. A currency left out
    /// has no table rate from `as_of` on.
    #[schema(example = json!({"USD": "15650.25", "JPY": "104.5"}))]
    rates: BTreeMap<String, String>,
    /// From when the table is in force (RFC 3339; default now; at most a year ahead)
    #[serde(default)]
    as_of: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RatesView {
    id: u64,
    base: String,
    as_of: DateTime<Utc>,
    #[schema(example = json!({"USD": "15650.25"}))]
    rates: BTreeMap<String, String>,
}

impl RatesView {
    fn new(id: u64, t: RateTable) -> Self {
        let rates = t.rates.into_iter().map(|(c, r)| (c, crate::domain::money::format(r))).collect();
        Self { id, base: t.base, as_of: t.as_of, rates }
    }
}

/// Stores a rate table as a new version (every version is kept).
#[utoipa::path(put, path = "/admin/fx-rates", tag = "program", request_body = RatesBody,
    responses(
        (status = 200, description = "Stored", body = RatesView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid table", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn replace(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RatesBody>,
) -> Result<Json<RatesView>, ApiError> {
    let mut errors = Vec::new();
    let now = Utc::now();
    let as_of = match rfc3339("as_of", body.as_of.as_deref(), &mut errors) {
        Some(t) => match check_as_of(t, now) {
            Ok(()) => t,
            Err(why) => {
                errors.push(FieldError::new("as_of", why));
                now
            }
        },
        None => now,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (id, table) = state
        .engine
        .put_rate_table(&body.base, &body.rates, as_of, &admin.actor(&state))
        .await?
        .map_err(ApiError::Validation)?;
    Ok(Json(RatesView::new(id, table)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AtQuery {
    /// The instant (RFC 3339; default now)
    at: Option<String>,
}

/// The rate table in force at `at`: the latest whose as_of is not after it.
#[utoipa::path(get, path = "/admin/fx-rates", tag = "program", params(AtQuery),
    responses(
        (status = 200, description = "The table in force", body = RatesView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No table in force then", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `at`", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AtQuery>,
) -> Result<Json<RatesView>, ApiError> {
    let mut errors = Vec::new();
    let at = rfc3339("at", q.at.as_deref(), &mut errors).unwrap_or_else(Utc::now);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (id, table) = state.engine.rate_table_at(at).await?.ok_or(ApiError::NotFound("rate table"))?;
    Ok(Json(RatesView::new(id, table)))
}
