//! `/admin/program`: read the program in force; store a new immutable version.
use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use super::AppState;
use crate::domain::program::{Program, ProgramDoc};
use crate::domain::FieldError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/program", get(read).put(replace))
}

#[derive(Serialize)]
struct Versioned {
    version: u64,
    #[serde(flatten)]
    program: ProgramDoc,
}

async fn read(_: Admin, State(state): State<AppState>) -> Result<Json<Versioned>, ApiError> {
    let (version, program) = state.store.current_program().await?;
    Ok(Json(Versioned { version, program: program.to_doc() }))
}

#[derive(Serialize)]
struct Stored {
    version: u64,
}

async fn replace(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(doc): ApiJson<ProgramDoc>,
) -> Result<Json<Stored>, ApiError> {
    let program = Program::parse(&doc).map_err(ApiError::Validation)?;
    let (_, current) = state.store.current_program().await?;
    if program.currency != current.currency {
        // Balances and open orders are in the program currency; switching it
        // would mix currencies in one ledger.
        return Err(ApiError::Validation(vec![FieldError::new(
            "currency",
            format!("the program currency is {} and cannot change", current.currency),
        )]));
    }
    let version = state.store.insert_program(&program).await?;
    Ok(Json(Stored { version }))
}
