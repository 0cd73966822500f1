//! The HTTP surface (axum): one module per resource, merged here, plus the
//! request metrics and logging middleware.
pub mod admin;
pub mod affiliates;
pub mod buyers;
pub mod error;
pub mod extract;
pub mod ops;
pub mod orders;
pub mod program;

use crate::actors::supervisor::SupervisorMsg;
use crate::faults::Faults;
use crate::journal::Journal;
use crate::metrics as m;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use error::InternalError;
use extract::ApiKeys;
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorRef;
use std::sync::Arc;
use std::time::Instant;

/// Request bodies above this are refused with 413 (SPEC §3).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler gets: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub journal: Arc<dyn Journal>,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub keys: Arc<ApiKeys>,
    pub faults: Arc<Faults>,
    pub metrics: PrometheusHandle,
    /// How long an event may stay open, retries included, before reconcile calls it stuck.
    pub retry_horizon: std::time::Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(affiliates::routes())
        .merge(orders::routes())
        .merge(buyers::routes())
        .merge(program::routes())
        .merge(admin::routes())
        .merge(ops::routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Counts and times every request by route template (never the raw path, so
/// label cardinality stays bounded), and logs the cause of every 5xx.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("http", %method, %route);
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = response.status();
    if let Some(InternalError(cause)) = response.extensions().get::<InternalError>() {
        span.in_scope(|| tracing::error!(status = status.as_u16(), cause, "request failed"));
    }
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "method" => method.clone(), "route" => route.clone(), "status" => status.as_u16().to_string())
        .increment(1);
    metrics::histogram!(m::HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serde for money: a JSON string holding a plain decimal ("95000", "-80000").
pub mod money_str {
    use rust_decimal::Decimal;
    pub fn serialize<S: serde::Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::domain::money::format(*amount))
    }
}
