//! The HTTP surface (axum): one module per resource, merged here, plus the
//! request metrics and logging middleware.
pub mod adjustments;
pub mod admin;
pub mod affiliates;
pub mod attribution;
pub mod audit;
pub mod buyers;
pub mod caps;
pub mod console;
pub mod error;
pub mod events;
pub mod explain;
pub mod extract;
pub mod fx;
pub mod limit;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod program;
pub mod reports;
pub mod simulations;
pub mod views;
pub mod webhooks;

#[cfg(test)]
mod tests;

use crate::engine::Engine;
use crate::metrics as m;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use error::InternalError;
use extract::ApiKeys;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Instant;

/// Request bodies above this are refused with 413 (SPEC §3).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler gets: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Every use case; handlers call nothing else.
    pub engine: Engine,
    pub keys: Arc<ApiKeys>,
    pub limits: Arc<limit::Limits>,
    pub metrics: PrometheusHandle,
    /// One info line per request (KOMISI_ACCESS_LOG).
    pub access_log: bool,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "komisi", description = "Affiliate-commission and buyer-reward engine. Money is a JSON string holding a decimal."),
    modifiers(&BearerKeys),
    tags(
        (name = "affiliates", description = "The affiliate tree: register, change, look up balances, commissions, coupons and attribution"),
        (name = "orders", description = "The storefront's orders and what they pay: place, refund, cancel, complete, quote, explain; clicks"),
        (name = "buyers", description = "Buyers' reward points: balance, history, redemptions"),
        (name = "program", description = "The commission program, exchange rates, caps and budgets, backtests"),
        (name = "payouts", description = "Payout batches of approved commissions"),
        (name = "events", description = "The event journal: list, inspect, replay, bundle for offline reproduction"),
        (name = "operations", description = "Operator actions: recompute, reattribute, reconcile"),
        (name = "ops", description = "Health, readiness, metrics and this document (no key)"),
        (name = "webhooks", description = "Outbound webhook endpoints and their messages")
    )
)]
struct ApiDoc;

struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        for name in ["storefront", "admin"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(format!("a {name} key")))
                        .build(),
                ),
            );
        }
    }
}

/// Every route, each registered together with its OpenAPI operation: a route
/// cannot be served without being documented.
fn api() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(affiliates::routes())
        .merge(orders::routes())
        .merge(buyers::routes())
        .merge(program::routes())
        .merge(fx::routes())
        .merge(caps::routes())
        .merge(explain::routes())
        .merge(simulations::routes())
        .merge(admin::routes())
        .merge(events::routes())
        .merge(ops::routes())
        .merge(webhooks::routes())
        .merge(attribution::routes())
        .merge(audit::routes())
        .merge(adjustments::routes())
        .merge(reports::routes())
}

/// The OpenAPI document of every route, generated from the handlers' annotations.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| api().split_for_parts().1)
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = api().split_for_parts();
    let access_log = state.access_log;
    // The framework's own answers (no such route, a method the route does
    // not take) are problem+json like every other error.
    routes
        // The operator console's pages: HTML, not API operations.
        .merge(console::routes())
        .fallback(|| async { error::ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(move |req, next| observe(access_log, req, next)))
        .with_state(state)
}

tokio::task_local! {
    /// The current request's id, for error bodies.
    pub static REQUEST_ID: String;
}

/// The id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

const REQUEST_ID_HEADER: &str = "x-request-id";

/// The name of the key a request authenticated with (set by the auth
/// extractors; empty when none did), for the access log.
#[derive(Clone, Default)]
pub struct Actor(pub Arc<std::sync::OnceLock<String>>);

/// Counts and times every request by route template (never the raw path, so
/// label cardinality stays bounded), gives it a request id (the caller's
/// `X-Request-Id` when sane, else a new one) that every log line of the request
/// and every error body carries, logs the cause of every 5xx, and (with the
/// access log on) one line per request.
async fn observe(access_log: bool, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().as_str().to_owned();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("http", %method, %route, request_id = %request_id);
    // Who made the request, only when it is logged (no allocation otherwise).
    let actor = access_log.then(Actor::default);
    if let Some(actor) = &actor {
        req.extensions_mut().insert(actor.clone());
    }
    let mut response =
        REQUEST_ID.scope(request_id.clone(), tracing::Instrument::instrument(next.run(req), span.clone())).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status();
    if let Some(InternalError(cause)) = response.extensions().get::<InternalError>() {
        span.in_scope(|| tracing::error!(status = status.as_u16(), cause, "request failed"));
    }
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "method" => method.clone(), "route" => route.clone(), "status" => status.as_u16().to_string())
        .increment(1);
    let elapsed = started.elapsed();
    if access_log {
        tracing::info!(
            target: "komisi::access",
            %method,
            %route,
            status = status.as_u16(),
            ms = elapsed.as_secs_f64() * 1e3,
            %request_id,
            actor = actor.as_ref().and_then(|a| a.0.get()).map_or("-", String::as_str),
            "request"
        );
    }
    metrics::histogram!(m::HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    response
}
