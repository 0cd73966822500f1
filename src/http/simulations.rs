//! `/admin/simulations`: backtests of a candidate program over past orders
//! (docs/API.md "Simulations"), run in the background.
use super::error::{ApiError, Problem};
use super::extract::{rfc3339, Admin, ApiJson, ApiPath};
use super::AppState;
use crate::domain::program::ProgramDoc;
use crate::domain::simulation::{Change, Total};
use crate::domain::FieldError;
use crate::engine::simulate::{CompareTo, SimulationRequest, SimulationResult, Submitted};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(submit)).routes(routes!(read, cancel)).routes(routes!(affiliates_csv))
}

/// A candidate program to run over the orders placed in a window.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SimulationBody {
    /// A whole program document (validated as `PUT /admin/program` does; not stored as a version).
    program: ProgramDoc,
    /// The window's start (RFC 3339), inclusive.
    since: String,
    /// The window's end (RFC 3339), exclusive; at most 366 days after `since`.
    until: String,
    /// `"applied"` (default: what the ledger holds) or a program version (integer).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    compare_to: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Queued {
    id: u64,
    status: &'static str,
}

/// Queues a simulation; 202 with its id. It runs in the background, one at
/// a time per instance, and writes nothing to the ledger.
#[utoipa::path(post, path = "/admin/simulations", tag = "program", request_body = SimulationBody,
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid program, window or compare_to", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many simulations queued or running (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn submit(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SimulationBody>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let mut errors = Vec::new();
    let since = rfc3339("since", Some(&body.since), &mut errors);
    let until = rfc3339("until", Some(&body.until), &mut errors);
    let compare_to = match &body.compare_to {
        None => Some(CompareTo::Applied),
        Some(serde_json::Value::String(s)) if s == "applied" => Some(CompareTo::Applied),
        Some(v) => match v.as_u64() {
            Some(n) => Some(CompareTo::Version(n)),
            None => {
                errors.push(FieldError::new("compare_to", "must be \"applied\" or a program version (an integer)"));
                None
            }
        },
    };
    let (Some(since), Some(until), Some(compare_to), true) = (since, until, compare_to, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    match state
        .engine
        .submit_simulation(SimulationRequest { program: body.program, since, until, compare_to }, &admin.actor(&state))
        .await?
    {
        Submitted::Queued(id) => Ok((StatusCode::ACCEPTED, Json(Queued { id, status: "queued" }))),
        Submitted::Invalid(errors) => Err(ApiError::Validation(errors)),
        Submitted::Busy(_) => Err(ApiError::TooManyRequests(std::time::Duration::from_secs(30))),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Progress {
    done: u64,
    total: u64,
    /// Seconds left at the pace so far (null: not running, or not yet known).
    eta_secs: Option<f64>,
}

/// A finished simulation's result (the list of every affiliate is the CSV).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ResultView {
    /// Orders recomputed.
    orders: u64,
    /// Orders in the window never processed: left out.
    skipped: u64,
    #[schema(value_type = Object)]
    totals: Vec<Total>,
    #[schema(value_type = String, format = "decimal")]
    baseline_total: rust_decimal::Decimal,
    #[schema(value_type = String, format = "decimal")]
    candidate_total: rust_decimal::Decimal,
    points_baseline: i64,
    points_candidate: i64,
    #[schema(value_type = Object)]
    top_affiliates: Vec<Change>,
    #[schema(value_type = Object)]
    top_orders: Vec<Change>,
    affiliates_reaching_a_tier: u64,
    affiliates_losing_a_tier: u64,
    affiliates_reaching_a_milestone: u64,
    affiliates_losing_a_milestone: u64,
    /// The candidate's caps and budgets that its windows' lines would pass
    /// (before any cut), the most passed first (100 at most).
    #[schema(value_type = Object)]
    caps_that_would_bind: Vec<crate::domain::simulation::WouldBind>,
    windows_that_would_bind: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SimulationView {
    id: u64,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    status: String,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    /// `"applied"` or a program version.
    #[schema(value_type = Object)]
    compare_to: serde_json::Value,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    progress: Progress,
    result: Option<ResultView>,
    error: Option<String>,
}

async fn load(state: &AppState, id: &str) -> Result<(crate::store::SimulationRow, SimulationRequest), ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::NotFound("simulation"))?;
    let row = state.engine.simulation(id).await?.ok_or(ApiError::NotFound("simulation"))?;
    let req: SimulationRequest =
        serde_json::from_str(&row.request).map_err(|e| ApiError::Internal(crate::engine::corrupt(e)))?;
    Ok((row, req))
}

fn result_of(row: &crate::store::SimulationRow) -> Result<Option<SimulationResult>, ApiError> {
    row.result
        .as_deref()
        .map(serde_json::from_str::<SimulationResult>)
        .transpose()
        .map_err(|e| ApiError::Internal(crate::engine::corrupt(e)))
}

/// A simulation: its status and progress, and its result once done.
#[utoipa::path(get, path = "/admin/simulations/{id}", tag = "program",
    params(("id" = String, Path, description = "Simulation id")),
    responses(
        (status = 200, description = "The simulation", body = SimulationView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such simulation", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SimulationView>, ApiError> {
    let (row, req) = load(&state, &id).await?;
    let eta_secs = match (row.status.as_str(), row.started_at) {
        ("running", Some(started)) if row.done > 0 => {
            let spent = (Utc::now() - started).num_milliseconds().max(0) as f64 / 1000.0;
            Some(spent / row.done as f64 * row.total.saturating_sub(row.done) as f64)
        }
        _ => None,
    };
    let result = result_of(&row)?.map(|r| {
        let o = r.outcome;
        ResultView {
            orders: o.orders,
            skipped: r.skipped,
            totals: o.totals,
            baseline_total: o.baseline_total,
            candidate_total: o.candidate_total,
            points_baseline: o.points_baseline,
            points_candidate: o.points_candidate,
            top_affiliates: o.top_affiliates,
            top_orders: o.top_orders,
            affiliates_reaching_a_tier: o.affiliates_reaching_a_tier,
            affiliates_losing_a_tier: o.affiliates_losing_a_tier,
            affiliates_reaching_a_milestone: o.affiliates_reaching_a_milestone,
            affiliates_losing_a_milestone: o.affiliates_losing_a_milestone,
            caps_that_would_bind: o.caps_that_would_bind,
            windows_that_would_bind: o.windows_that_would_bind,
        }
    });
    Ok(Json(SimulationView {
        id: row.id,
        status: row.status,
        since: req.since,
        until: req.until,
        compare_to: match req.compare_to {
            CompareTo::Applied => serde_json::json!("applied"),
            CompareTo::Version(v) => serde_json::json!(v),
        },
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        progress: Progress { done: row.done, total: row.total, eta_secs },
        result,
        error: row.error,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Cancelled {
    id: u64,
    status: String,
}

/// Cancels a queued or running simulation (a finished one stays as it is).
#[utoipa::path(delete, path = "/admin/simulations/{id}", tag = "program",
    params(("id" = String, Path, description = "Simulation id")),
    responses(
        (status = 200, description = "Its status now", body = Cancelled),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such simulation", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn cancel(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Cancelled>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::NotFound("simulation"))?;
    let status =
        state.engine.cancel_simulation(id, &admin.actor(&state)).await?.ok_or(ApiError::NotFound("simulation"))?;
    Ok(Json(Cancelled { id, status }))
}

/// Every affiliate with a line on either side: `affiliate_id,baseline,candidate,delta`.
#[utoipa::path(get, path = "/admin/simulations/{id}/affiliates.csv", tag = "program",
    params(("id" = String, Path, description = "Simulation id")),
    responses(
        (status = 200, description = "The affiliates (CSV)", body = String, content_type = "text/csv"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such simulation, or not done", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn affiliates_csv(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (row, _) = load(&state, &id).await?;
    let result = result_of(&row)?.ok_or(ApiError::NotFound("simulation result"))?;
    let f = crate::domain::money::format;
    let mut csv = String::from("affiliate_id,baseline,candidate,delta\n");
    for (a, b, c) in &result.outcome.affiliates {
        // Ids are [A-Za-z0-9_.:-]: nothing to quote.
        csv.push_str(&format!("{},{},{},{}\n", a.as_str(), f(*b), f(*c), f(c - b)));
    }
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}
