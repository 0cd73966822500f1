//! `GET /admin/audit`: the audit trail of every write an operator (or a
//! storefront key, for its affiliate and coupon changes) made through the API.
use super::error::{ApiError, Problem};
use super::extract::{id_cursor, page_limit, rfc3339, Admin, ApiQuery};
use super::AppState;
use crate::domain::audit::{Action, AuditFilter, AuditRecord};
use crate::domain::FieldError;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// The name of the key that made the writes (`KOMISI_ADMIN_KEYS=name:key`)
    actor: Option<String>,
    /// One action, e.g. `program.replace`
    action: Option<String>,
    /// At or after (RFC 3339)
    since: Option<String>,
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

/// One audited write.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The key's name (never the key).
    pub actor: String,
    /// The request's `X-Request-Id` (the access log's too).
    pub request_id: Option<String>,
    pub action: Action,
    /// What the write was on: `kind:id` (`affiliate:A`, `payout:3`, `program`, …).
    pub subject: String,
    /// What the write changed, before it (only the fields it changed).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// … and after it.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        Self {
            id: r.id,
            at: r.at,
            actor: r.entry.actor.key,
            request_id: r.entry.actor.request_id,
            action: r.entry.action,
            subject: r.entry.subject,
            before: r.entry.before,
            after: r.entry.after,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AuditPage {
    items: Vec<AuditView>,
    next_cursor: Option<String>,
}

/// The audit trail, newest first: every write through the API — the program,
/// exchange rates, caps, affiliates' status and parent, coupons, customer
/// links, reattributions, replays, recomputes, payouts, reconcile runs,
/// webhooks, simulations and adjustments — with the key's name, the time,
/// the request id and what changed. Each entry was written in the
/// transaction of its write.
#[utoipa::path(get, path = "/admin/audit", tag = "operations", params(AuditQuery),
    responses(
        (status = 200, description = "One page of the trail", body = AuditPage),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown action, or a bad actor, time, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn list(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let before = id_cursor(q.cursor.as_deref(), &mut errors);
    let since = rfc3339("since", q.since.as_deref(), &mut errors);
    let action = q.action.as_deref().and_then(|a| {
        Action::parse(a).or_else(|| {
            errors.push(FieldError::new("action", "not an audited action (see the schema's list)"));
            None
        })
    });
    if let Some(actor) = &q.actor {
        if !is_key_name(actor) {
            errors.push(FieldError::new("actor", "a key name: 1-64 characters of A-Z a-z 0-9 _ . -"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = AuditFilter { actor: q.actor, action, since };
    let items: Vec<AuditView> =
        state.engine.audit_log(&filter, before, limit).await?.into_iter().map(Into::into).collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(Json(AuditPage { items, next_cursor }))
}

/// A key's name as `KOMISI_*_KEYS=name:key` takes it.
pub fn is_key_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}
