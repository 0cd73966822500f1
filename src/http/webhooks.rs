//! `/admin/webhooks` and `/admin/webhook-messages`: endpoints that receive
//! a signed message for every money change, and the messages with their
//! attempts (docs/API.md "Webhooks").
use super::error::{ApiError, Problem};
use super::extract::{id_cursor, page_limit, rfc3339, Admin, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::domain::webhook::{Attempt, Endpoint, Message, MessageFilter, MessageStatus, MessageType};
use crate::domain::FieldError;
use crate::engine::webhooks::{EndpointPatch, NewEndpoint, Refused};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(read_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(recover))
        .routes(routes!(list_messages))
        .routes(routes!(read_message))
        .routes(routes!(resend))
        .routes(routes!(prune))
}

/// An endpoint's description, at most this many characters.
pub const MAX_DESCRIPTION: usize = 500;
/// An endpoint id: `ep_` and 32 hex digits.
pub const ENDPOINT_ID_PATTERN: &str = "^ep_[0-9a-f]{32}$";
/// A message id (the `webhook-id` header): `msg_` and 32 hex digits.
pub const MESSAGE_ID_PATTERN: &str = "^msg_[0-9a-f]{32}$";

fn endpoint_id(raw: &str) -> Result<&str, ApiError> {
    let ok =
        raw.len() == 35 && raw.starts_with("ep_") && raw[3..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(raw).ok_or(ApiError::NotFound("webhook endpoint"))
}

fn message_id(raw: &str) -> Result<&str, ApiError> {
    let ok =
        raw.len() == 36 && raw.starts_with("msg_") && raw[4..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(raw).ok_or(ApiError::NotFound("webhook message"))
}

/// An endpoint as the API shows it (its secret only when just made).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    id: String,
    url: String,
    event_types: Vec<String>,
    description: Option<String>,
    disabled: bool,
    disabled_reason: Option<String>,
    /// The first failed attempt since the last success.
    failing_since: Option<DateTime<Utc>>,
    /// After a rotation, the old secret also signs until then.
    previous_secret_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// `whsec_…`: only in the answers of create and rotate-secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl EndpointView {
    fn of(e: Endpoint, secret: Option<String>) -> Self {
        Self {
            id: e.id,
            url: e.url,
            event_types: e.event_types,
            description: e.description,
            disabled: e.disabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            previous_secret_expires_at: e.previous_secret_expires_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
            secret,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AttemptView {
    at: DateTime<Utc>,
    /// None: no answer (refused, timed out, address not allowed).
    status_code: Option<u16>,
    duration_ms: u64,
    /// The first 1 KB of the answer's body.
    response: Option<String>,
    error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self { at: a.at, status_code: a.status_code, duration_ms: a.duration_ms, response: a.response, error: a.error }
    }
}

/// A message to one endpoint, with every attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// The `webhook-id` header, the same on every attempt.
    id: String,
    endpoint_id: String,
    #[serde(rename = "type")]
    kind: String,
    /// pending, delivered or failed.
    status: String,
    attempts: u32,
    next_attempt_at: Option<DateTime<Utc>>,
    /// When the change committed.
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    /// affiliate, buyer, payout or event.
    subject_kind: String,
    subject_id: String,
    /// Increases with each message of one subject, in commit order.
    sequence: u64,
    /// The body every attempt sends: `{type, timestamp, data}`.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    attempt_log: Vec<AttemptView>,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        let payload = serde_json::from_str(&m.body()).unwrap_or_default();
        Self {
            id: m.id,
            endpoint_id: m.endpoint_id,
            kind: m.kind,
            status: m.status.as_str().to_owned(),
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            created_at: m.created_at,
            delivered_at: m.delivered_at,
            subject_kind: m.subject_kind,
            subject_id: m.subject_id,
            sequence: m.row,
            payload,
            attempt_log: m.log.into_iter().map(Into::into).collect(),
        }
    }
}

fn refused(r: Refused) -> ApiError {
    ApiError::Validation(r.into_iter().map(|(field, why)| FieldError::new(field, why)).collect())
}

fn description(raw: Option<String>, errors: &mut Vec<FieldError>) -> Option<String> {
    match raw {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => {
            errors.push(FieldError::new("description", format!("at most {MAX_DESCRIPTION} characters")));
            None
        }
        Some(d) if d.is_empty() => None,
        other => other,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookEndpointBody {
    /// `https://…` (plain `http` and private addresses only with KOMISI_WEBHOOK_ALLOW_PRIVATE=true).
    url: String,
    /// Types (`commission.created`), families (`commission.*`) or `*`.
    event_types: Vec<String>,
    description: Option<String>,
}

/// Registers an endpoint. The answer holds its signing secret, shown only
/// here (and after a rotation). The endpoint receives a message for every
/// change committed from now on.
#[utoipa::path(post, path = "/admin/webhooks", tag = "webhooks", request_body = WebhookEndpointBody,
    responses(
        (status = 201, description = "Registered, with its secret", body = EndpointView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A URL not allowed, unknown types", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn create_endpoint(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<WebhookEndpointBody>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let mut errors = Vec::new();
    let description = description(body.description, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let new = NewEndpoint { url: body.url, event_types: body.event_types, description };
    match state.engine.create_endpoint(new, &admin.actor(&state)).await? {
        Ok((e, secret)) => Ok((StatusCode::CREATED, Json(EndpointView::of(e, Some(secret))))),
        Err(r) => Err(refused(r)),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EndpointList {
    items: Vec<EndpointView>,
}

/// Every endpoint, oldest first (without secrets).
#[utoipa::path(get, path = "/admin/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn list_endpoints(_: Admin, State(state): State<AppState>) -> Result<Json<EndpointList>, ApiError> {
    let items = state.engine.endpoints().await?.into_iter().map(|e| EndpointView::of(e, None)).collect();
    Ok(Json(EndpointList { items }))
}

/// One endpoint (without its secret).
#[utoipa::path(get, path = "/admin/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read_endpoint(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let e = state.engine.endpoint(endpoint_id(&id)?).await?.ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(Json(EndpointView::of(e, None)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookPatchBody {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    /// An empty string removes it.
    description: Option<String>,
    /// true: no message is sent to it (they wait, pending); false: enabled
    /// again (its failure streak forgotten).
    disabled: Option<bool>,
}

/// Changes an endpoint: its URL, types, description, or whether it is disabled.
#[utoipa::path(patch, path = "/admin/webhooks/{id}", tag = "webhooks", request_body = WebhookPatchBody,
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint after the change", body = EndpointView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A URL not allowed, unknown types", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn update_endpoint(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<WebhookPatchBody>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = endpoint_id(&id)?;
    let mut errors = Vec::new();
    let patch = EndpointPatch {
        url: body.url,
        event_types: body.event_types,
        description: body.description.map(|d| description(Some(d), &mut errors)),
        disabled: body.disabled,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    match state.engine.update_endpoint(id, patch, &admin.actor(&state)).await? {
        None => Err(ApiError::NotFound("webhook endpoint")),
        Some(Err(r)) => Err(refused(r)),
        Some(Ok(e)) => Ok(Json(EndpointView::of(e, None))),
    }
}

/// Deletes an endpoint with its messages and their attempts.
#[utoipa::path(delete, path = "/admin/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn delete_endpoint(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.engine.delete_endpoint(endpoint_id(&id)?, &admin.actor(&state)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook endpoint"))
    }
}

/// A new signing secret (in the answer, shown only here). For 24 hours the
/// old one signs too: each message carries both signatures, space-separated.
#[utoipa::path(post, path = "/admin/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint with its new secret", body = EndpointView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn rotate_secret(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let (e, secret) = state
        .engine
        .rotate_secret(endpoint_id(&id)?, &admin.actor(&state))
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(Json(EndpointView::of(e, Some(secret))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    /// Messages created at or after this (RFC 3339).
    since: String,
    /// ... and before this (default: now).
    until: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Requeued {
    requeued: u64,
}

/// Sends the endpoint's failed messages created in the window again, each
/// with a fresh retry schedule.
#[utoipa::path(post, path = "/admin/webhooks/{id}/recover", tag = "webhooks", request_body = RecoverBody,
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "How many were queued again", body = Requeued),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad times", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn recover(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RecoverBody>,
) -> Result<Json<Requeued>, ApiError> {
    let id = endpoint_id(&id)?;
    let mut errors = Vec::new();
    let since = rfc3339("since", Some(&body.since), &mut errors);
    let until = rfc3339("until", body.until.as_deref(), &mut errors);
    let Some(since) = since.filter(|_| errors.is_empty()) else { return Err(ApiError::Validation(errors)) };
    let requeued = state
        .engine
        .recover_messages(id, since, until, &admin.actor(&state))
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(Json(Requeued { requeued }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MessagesQuery {
    /// An endpoint id.
    endpoint: Option<String>,
    /// pending, delivered or failed.
    status: Option<String>,
    /// A message type (`commission.created`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Created at or after (RFC 3339).
    since: Option<String>,
    /// Created before (RFC 3339).
    until: Option<String>,
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MessagePage {
    items: Vec<MessageView>,
    next_cursor: Option<String>,
}

/// Messages, newest first, a page at a time, each with its attempts (time,
/// status code, duration, the first 1 KB of the answer).
#[utoipa::path(get, path = "/admin/webhook-messages", tag = "webhooks", params(MessagesQuery),
    responses(
        (status = 200, description = "One page of messages", body = MessagePage),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn list_messages(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let status = q.status.as_deref().and_then(|s| {
        MessageStatus::parse(s).or_else(|| {
            errors.push(FieldError::new("status", "one of pending, delivered, failed"));
            None
        })
    });
    let kind = q.kind.as_deref().and_then(|k| {
        MessageType::parse(k).map(|t| t.as_str().to_owned()).or_else(|| {
            errors.push(FieldError::new("type", "not a message type"));
            None
        })
    });
    if q.endpoint.as_deref().is_some_and(|e| endpoint_id(e).is_err()) {
        errors.push(FieldError::new("endpoint", "not an endpoint id"));
    }
    let since = rfc3339("since", q.since.as_deref(), &mut errors);
    let until = rfc3339("until", q.until.as_deref(), &mut errors);
    let before = id_cursor(q.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = MessageFilter { endpoint: q.endpoint, status, kind, since, until };
    let messages = state.engine.webhook_messages(&filter, before, limit).await?;
    let next_cursor = (messages.len() == limit as usize).then(|| messages.last().map(|m| m.row.to_string())).flatten();
    Ok(Json(MessagePage { items: messages.into_iter().map(Into::into).collect(), next_cursor }))
}

/// One message with its attempts.
#[utoipa::path(get, path = "/admin/webhook-messages/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Message id (the webhook-id header)")),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read_message(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MessageView>, ApiError> {
    let m = state.engine.webhook_message(message_id(&id)?).await?.ok_or(ApiError::NotFound("webhook message"))?;
    Ok(Json(m.into()))
}

/// Sends a message again (also a delivered one: receivers ask for this),
/// with the same `webhook-id` and body and a fresh retry schedule.
#[utoipa::path(post, path = "/admin/webhook-messages/{id}/resend", tag = "webhooks",
    params(("id" = String, Path, description = "Message id (the webhook-id header)")),
    responses(
        (status = 200, description = "The message, queued again", body = MessageView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn resend(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MessageView>, ApiError> {
    let m = state
        .engine
        .resend_message(message_id(&id)?, &admin.actor(&state))
        .await?
        .ok_or(ApiError::NotFound("webhook message"))?;
    Ok(Json(m.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PruneMessagesBody {
    /// Failed messages created before this (RFC 3339) are deleted.
    before: String,
    /// Only this endpoint's.
    endpoint: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Pruned {
    deleted: u64,
}

/// Deletes failed messages created before a time (delivered ones are
/// deleted after KOMISI_WEBHOOK_RETENTION_DAYS by themselves).
#[utoipa::path(post, path = "/admin/webhook-messages/prune", tag = "webhooks", request_body = PruneMessagesBody,
    responses(
        (status = 200, description = "How many were deleted", body = Pruned),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad time or endpoint", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn prune(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PruneMessagesBody>,
) -> Result<Json<Pruned>, ApiError> {
    let mut errors = Vec::new();
    let before = rfc3339("before", Some(&body.before), &mut errors);
    if body.endpoint.as_deref().is_some_and(|e| endpoint_id(e).is_err()) {
        errors.push(FieldError::new("endpoint", "not an endpoint id"));
    }
    let Some(before) = before.filter(|_| errors.is_empty()) else { return Err(ApiError::Validation(errors)) };
    let deleted = state.engine.prune_failed(before, body.endpoint.as_deref(), &admin.actor(&state)).await?;
    Ok(Json(Pruned { deleted }))
}
