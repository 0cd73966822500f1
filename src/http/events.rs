//! `/admin/events` and `/admin/orders/{id}/recompute`: see every event, its
//! payload and attempt history; replay one or many; recompute an order.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{page_limit, rfc3339, Admin, ApiJson, ApiPath, ApiQuery};
use super::views::{EventCountsView, EventDetail, EventRow, Recompute};
use super::AppState;
use crate::domain::event::{EventFilter, EventId, EventStatus, EventType};
use crate::domain::ids::OrderId;
use crate::domain::FieldError;
use crate::engine::operator::RecomputeOutcome;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(counts))
        .routes(routes!(replay_many))
        .routes(routes!(detail))
        .routes(routes!(bundle))
        .routes(routes!(replay_one))
        .routes(routes!(recompute))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    order_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Page {
    items: Vec<EventRow>,
    next_cursor: Option<String>,
}

fn filter(
    status: Option<&str>,
    kind: Option<&str>,
    order_id: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> EventFilter {
    EventFilter {
        status: status.and_then(|s| {
            EventStatus::parse(s).or_else(|| {
                errors.push(FieldError::new("status", "one of pending, processing, done, failed, dead"));
                None
            })
        }),
        kind: kind.and_then(|k| {
            EventType::parse(k).or_else(|| {
                errors.push(FieldError::new("type", "not an event type"));
                None
            })
        }),
        order_id: order_id
            .and_then(|o| OrderId::parse(o).map_err(|e| errors.push(FieldError::new("order_id", e.to_string()))).ok()),
        since: rfc3339("since", since, errors),
        until: rfc3339("until", until, errors),
    }
}

/// Events, newest first, filtered by status, type, order and creation time.
#[utoipa::path(get, path = "/admin/events", tag = "events", params(ListQuery),
    responses(
        (status = 200, description = "One page of events", body = Page),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    let mut errors = Vec::new();
    let f = filter(
        q.status.as_deref(),
        q.kind.as_deref(),
        q.order_id.as_deref(),
        q.since.as_deref(),
        q.until.as_deref(),
        &mut errors,
    );
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        // Only the form this API writes (a hyphenated lower-case UUID).
        Some(c) => EventId::parse(c).filter(|id| id.to_string() == c).or_else(|| {
            errors.push(FieldError::new("cursor", "not a cursor returned by this API"));
            None
        }),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let items: Vec<EventRow> = state.engine.list_events(&f, before, limit).await?.into_iter().map(Into::into).collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CountsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    order_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// How many events are in each status, of those matching the filter (type,
/// order, creation time; the list's filters but `status`).
#[utoipa::path(get, path = "/admin/events/counts", tag = "events", params(CountsQuery),
    responses(
        (status = 200, description = "Events per status", body = EventCountsView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn counts(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CountsQuery>,
) -> Result<Json<EventCountsView>, ApiError> {
    let mut errors = Vec::new();
    let f = filter(None, q.kind.as_deref(), q.order_id.as_deref(), q.since.as_deref(), q.until.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Json(state.engine.event_counts(&f).await?.into()))
}

/// One event with its payload, attempt history and replays.
#[utoipa::path(get, path = "/admin/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event", body = EventDetail),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn detail(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let id = EventId::parse(&id).ok_or(ApiError::NotFound("event"))?;
    state.engine.event_detail(id).await?.map(|d| Json(d.into())).ok_or(ApiError::NotFound("event"))
}

/// An event's bundle (docs/API.md): a self-contained JSON document for
/// `komisi reproduce`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
struct BundleView(serde_json::Value);

/// An event taken out for offline reproduction: the event and its attempts,
/// the order and its items, the program version's document, the frozen
/// context, the order's caps and what its ledger holds — everything the
/// event transaction's rules read. `komisi reproduce bundle.json` runs the
/// rules on it without a database.
#[utoipa::path(get, path = "/admin/events/{id}/bundle", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The bundle", body = BundleView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A wallet event: it has no order to reproduce", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn bundle(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BundleView>, ApiError> {
    use crate::engine::events::BundleOutcome;
    let id = EventId::parse(&id).ok_or(ApiError::NotFound("event"))?;
    match state.engine.event_bundle(id).await? {
        BundleOutcome::Bundle(b) => {
            // Plain data with string keys: serialising cannot fail.
            Ok(Json(BundleView(serde_json::to_value(&*b).expect("a bundle serialises"))))
        }
        BundleOutcome::NotFound => Err(ApiError::NotFound("event")),
        BundleOutcome::NoOrder => Err(ApiError::Conflict("a wallet event has no order to reproduce".into())),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Replayed {
    event_id: EventId,
    status: EventStatus,
}

/// Replays one event: a failed or dead one gets a fresh attempt budget; a done
/// one is journaled again and its processing is a recorded no-op.
#[utoipa::path(post, path = "/admin/events/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 202, description = "Journaled again", body = Replayed),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn replay_one(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    let id = EventId::parse(&id).ok_or(ApiError::NotFound("event"))?;
    let status = state.engine.replay_one(id, &admin.actor(&state)).await?.ok_or(ApiError::NotFound("event"))?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { event_id: id, status })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkReplay {
    status: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BulkReplayed {
    replayed: usize,
}

/// Replays every failed or dead event matching the filter.
#[utoipa::path(post, path = "/admin/events/replay", tag = "events", request_body = BulkReplay,
    responses(
        (status = 200, description = "How many were replayed", body = BulkReplayed),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn replay_many(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BulkReplay>,
) -> Result<Json<BulkReplayed>, ApiError> {
    let mut errors = Vec::new();
    if body.status != "failed" && body.status != "dead" {
        errors.push(FieldError::new("status", "must be failed or dead"));
    }
    let f = filter(
        Some(&body.status),
        body.kind.as_deref(),
        body.order_id.as_deref(),
        body.since.as_deref(),
        body.until.as_deref(),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let replayed = state.engine.replay_matching(&f, &admin.actor(&state)).await?;
    Ok(Json(BulkReplayed { replayed }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RecomputeBody {
    dry_run: bool,
}

/// Entitlement vs. ledger of one order; without `dry_run` a new event writes the difference.
#[utoipa::path(post, path = "/admin/orders/{id}/recompute", tag = "operations", request_body = RecomputeBody,
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "entitled, applied, delta", body = Recompute),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not processed yet", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn recompute(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RecomputeBody>,
) -> Result<Json<Recompute>, ApiError> {
    let id = OrderId::parse(&id).map_err(|_| ApiError::NotFound("order"))?;
    match state.engine.recompute(&id, body.dry_run, &admin.actor(&state)).await? {
        RecomputeOutcome::Done(r) => Ok(Json(r.into())),
        RecomputeOutcome::NotFound => Err(ApiError::NotFound("order")),
        RecomputeOutcome::NotProcessed => {
            Err(ApiError::Conflict("the order has not been processed yet; nothing to recompute against".into()))
        }
    }
}
