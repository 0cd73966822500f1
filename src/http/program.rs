//! `/admin/program`: read the program in force; store a new immutable version.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{Admin, ApiJson};
use super::AppState;
use crate::domain::program::ProgramDoc;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read, replace))
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

/// Validates a program and stores it as a new immutable version. A `version`
/// field (as `GET` answers it) is accepted and ignored: komisi numbers the
/// versions, so a read-edit-write round trip works as is.
#[utoipa::path(put, path = "/admin/program", tag = "program", request_body = ProgramDoc,
    responses(
        (status = 200, description = "Stored", body = Stored),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid program", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn replace(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(mut body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Stored>, ApiError> {
    body.remove("version");
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let doc: ProgramDoc = super::extract::parse_json(&bytes)?;
    let version = state.engine.put_program(&doc).await?.map_err(ApiError::Validation)?;
    Ok(Json(Stored { version }))
}
