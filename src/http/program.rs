//! `/admin/program`: read the program in force; store a new immutable version.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{id_cursor, page_limit, Admin, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::domain::program::ProgramDoc;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read, replace)).routes(routes!(versions)).routes(routes!(version))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Versioned {
    version: u64,
    #[serde(flatten)]
    program: ProgramDoc,
}

/// The program version in force.
#[utoipa::path(get, path = "/admin/program", tag = "program",
    responses(
        (status = 200, description = "The program and its version", body = Versioned),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read(_: Admin, State(state): State<AppState>) -> Result<Json<Versioned>, ApiError> {
    let (version, program) = state.engine.program().await?;
    Ok(Json(Versioned { version, program: program.to_doc() }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Stored {
    version: u64,
}

/// Validates a program and stores it as a new immutable version. `version`
/// and `created_at` (as `GET` answers a version) are accepted and ignored:
/// komisi numbers and dates the versions, so a read-edit-write round trip
/// works as is, from the version in force or an older one.
#[utoipa::path(put, path = "/admin/program", tag = "program", request_body = ProgramDoc,
    responses(
        (status = 200, description = "Stored", body = Stored),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid program", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn replace(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(mut body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Stored>, ApiError> {
    // As GET answers a version: its number and date are komisi's, not the program's.
    body.remove("version");
    body.remove("created_at");
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let doc: ProgramDoc = super::extract::parse_json(&bytes)?;
    let version = state.engine.put_program(&doc, &admin.actor(&state)).await?.map_err(ApiError::Validation)?;
    Ok(Json(Stored { version }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct VersionsQuery {
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

/// One stored version in the list.
#[derive(Serialize, utoipa::ToSchema)]
struct VersionSummary {
    version: u64,
    created_at: chrono::DateTime<chrono::Utc>,
    /// The version in force now (the newest).
    current: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct VersionPage {
    items: Vec<VersionSummary>,
    next_cursor: Option<String>,
}

/// Every stored program version, newest first, a page at a time (the cursor
/// is the last version's number). Versions are immutable: each `PUT` adds one.
#[utoipa::path(get, path = "/admin/program/versions", tag = "program", params(VersionsQuery),
    responses(
        (status = 200, description = "One page of versions", body = VersionPage),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn versions(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<VersionsQuery>,
) -> Result<Json<VersionPage>, ApiError> {
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let before = id_cursor(q.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (current, _) = state.engine.program().await?;
    let items: Vec<VersionSummary> = state
        .engine
        .program_versions(before, limit)
        .await?
        .into_iter()
        .map(|(version, created_at)| VersionSummary { version, created_at, current: version == current })
        .collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|v| v.version.to_string())).flatten();
    Ok(Json(VersionPage { items, next_cursor }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct StoredVersion {
    version: u64,
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    program: ProgramDoc,
}

/// One stored program version, as `GET /admin/program` answers the current
/// one, with when it was stored.
#[utoipa::path(get, path = "/admin/program/versions/{version}", tag = "program",
    params(("version" = u64, Path, description = "Version number")),
    responses(
        (status = 200, description = "The version", body = StoredVersion),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such version", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn version(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(version): ApiPath<String>,
) -> Result<Json<StoredVersion>, ApiError> {
    // Stored as signed 64-bit integers: a larger number is never found.
    let v: u64 = version
        .parse()
        .ok()
        .filter(|n| *n >= 1 && *n < i64::MAX as u64)
        .ok_or(ApiError::NotFound("program version"))?;
    let (created_at, program) = state.engine.program_version(v).await?.ok_or(ApiError::NotFound("program version"))?;
    Ok(Json(StoredVersion { version: v, created_at, program: program.to_doc() }))
}
