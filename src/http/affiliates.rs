//! `/v1/affiliates`: register, update, read an affiliate, and list its ledger.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{id_cursor, id_field, page_limit, ApiJson, ApiPath, ApiQuery, Storefront};
use super::views::{AffiliateView, LedgerEntry};
use super::AppState;
use crate::domain::affiliate::{
    Affiliate, AffiliatePatch, AffiliateStatus, CreateAffiliate, EmailHash, NewAffiliate, PatchAffiliate,
};
use crate::domain::ids::{AffiliateId, BuyerId, ReferralCode};
use crate::domain::FieldError;
use crate::store::affiliates::LedgerOrder;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, update))
        .routes(routes!(commissions))
        .routes(routes!(children))
        .routes(routes!(payouts))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: String,
    name: String,
    #[serde(default)]
    parent_id: Option<String>,
    referral_code: String,
    #[serde(default)]
    buyer_id: Option<String>,
    /// SHA-256 of the affiliate's e-mail address (trimmed, lowercased), 64 hex
    /// digits: an order carrying the same `buyer_email_hash` is a self-referral
    #[serde(default)]
    email_hash: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<AffiliateStatus>,
    /// Absent: unchanged; null: detach from the parent.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    parent_id: Option<Option<String>>,
    /// SHA-256 of the affiliate's e-mail address (trimmed, lowercased), 64
    /// hex digits. Absent: unchanged; null: cleared. Orders already
    /// processed keep the hash they were checked against.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    email_hash: Option<Option<String>>,
}

/// Distinguishes an absent field (None, via `default`) from an explicit null (Some(None)).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn view(state: &AppState, a: Affiliate) -> Result<AffiliateView, ApiError> {
    Ok(AffiliateView::new(a, state.engine.currency().await?))
}

fn parse_name(name: &str, errors: &mut Vec<FieldError>) -> String {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1-200 characters"));
    }
    trimmed.to_owned()
}

/// Registers an affiliate: 201, or 200 when the same id was registered with the same data.
#[utoipa::path(post, path = "/v1/affiliates", tag = "affiliates", request_body = CreateBody,
    responses(
        (status = 201, description = "Registered", body = AffiliateView),
        (status = 200, description = "Already registered with the same data", body = AffiliateView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Id or referral code taken with other data", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or unknown parent", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn create(
    _: Storefront,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<AffiliateView>), ApiError> {
    let mut errors = Vec::new();
    let id = id_field("id", &body.id, AffiliateId::parse, &mut errors);
    let name = parse_name(&body.name, &mut errors);
    let parent_id = body.parent_id.as_deref().and_then(|p| id_field("parent_id", p, AffiliateId::parse, &mut errors));
    let referral_code = id_field("referral_code", &body.referral_code, ReferralCode::parse, &mut errors);
    let buyer_id = body.buyer_id.as_deref().and_then(|b| id_field("buyer_id", b, BuyerId::parse, &mut errors));
    if body.parent_id.is_some() && body.parent_id == Some(body.id.clone()) {
        errors.push(FieldError::new("parent_id", "an affiliate cannot be its own parent"));
    }
    let email_hash = body
        .email_hash
        .as_deref()
        .and_then(|h| EmailHash::parse(h).map_err(|why| errors.push(FieldError::new("email_hash", why))).ok());
    let (Some(id), Some(referral_code), true) = (id, referral_code, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let new = NewAffiliate { id, name, parent_id, referral_code, buyer_id, email_hash };
    match state.engine.create_affiliate(&new).await? {
        CreateAffiliate::Created(a) => Ok((StatusCode::CREATED, Json(view(&state, a).await?))),
        CreateAffiliate::Unchanged(a) => Ok((StatusCode::OK, Json(view(&state, a).await?))),
        CreateAffiliate::Conflict(why) => Err(ApiError::Conflict(why.to_owned())),
        CreateAffiliate::UnknownParent => Err(ApiError::field("parent_id", "no affiliate has this id")),
    }
}

/// Renames, suspends or re-parents an affiliate (`parent_id: null` detaches it).
#[utoipa::path(patch, path = "/v1/affiliates/{id}", tag = "affiliates", request_body = PatchBody,
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 200, description = "Updated", body = AffiliateView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, unknown parent or a cycle", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tree lock was not granted in time (MySQL); nothing changed, retry", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn update(
    caller: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Json<AffiliateView>, ApiError> {
    let id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    let mut errors = Vec::new();
    let name = body.name.as_deref().map(|n| parse_name(n, &mut errors));
    let parent_id = match &body.parent_id {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => Some(id_field("parent_id", p, AffiliateId::parse, &mut errors)),
    };
    let email_hash = match &body.email_hash {
        None => None,
        Some(None) => Some(None),
        Some(Some(h)) => Some(EmailHash::parse(h).map_err(|why| errors.push(FieldError::new("email_hash", why))).ok()),
    };
    if matches!(&parent_id, Some(Some(p)) if *p == id) {
        errors.push(FieldError::new("parent_id", "an affiliate cannot be its own parent"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let patch = AffiliatePatch { name, status: body.status, parent_id, email_hash };
    match state.engine.patch_affiliate(&id, &patch, &caller.actor(&state)).await? {
        PatchAffiliate::Updated(a) => Ok(Json(view(&state, *a).await?)),
        PatchAffiliate::NotFound => Err(ApiError::NotFound("affiliate")),
        PatchAffiliate::UnknownParent => Err(ApiError::field("parent_id", "no affiliate has this id")),
        PatchAffiliate::Cycle => {
            Err(ApiError::field("parent_id", "this parent would make a cycle in the referral tree"))
        }
    }
}

/// An affiliate with its balances.
#[utoipa::path(get, path = "/v1/affiliates/{id}", tag = "affiliates",
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 200, description = "The affiliate", body = AffiliateView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn read(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AffiliateView>, ApiError> {
    let id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    let a = state.engine.affiliate(&id).await?.ok_or(ApiError::NotFound("affiliate"))?;
    Ok(Json(view(&state, a).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LedgerQuery {
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
    /// `oldest` (the default) or `newest`: which end the pages start from
    order: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

/// The affiliate's ledger entries, a page at a time: oldest first, or newest
/// first with `order=newest`.
#[utoipa::path(get, path = "/v1/affiliates/{id}/commissions", tag = "affiliates",
    params(("id" = String, Path, description = "Affiliate id"), LedgerQuery),
    responses(
        (status = 200, description = "One page of entries", body = Page<LedgerEntry>),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit, cursor or order", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn commissions(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> Result<Json<Page<LedgerEntry>>, ApiError> {
    let id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    // The cursor is the last entry's id of the page before.
    let after = id_cursor(q.cursor.as_deref(), &mut errors);
    let order = match q.order.as_deref() {
        None | Some("oldest") => LedgerOrder::OldestFirst,
        Some("newest") => LedgerOrder::NewestFirst,
        Some(_) => {
            errors.push(FieldError::new("order", "must be oldest or newest"));
            LedgerOrder::OldestFirst
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let items: Vec<LedgerEntry> = state
        .engine
        .affiliate_ledger(&id, order, after, limit)
        .await?
        .ok_or(ApiError::NotFound("affiliate"))?
        .into_iter()
        .map(Into::into)
        .collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// The affiliate's direct children (with their balances), by id, a page at a time.
#[utoipa::path(get, path = "/v1/affiliates/{id}/children", tag = "affiliates",
    params(("id" = String, Path, description = "Affiliate id"), PageQuery),
    responses(
        (status = 200, description = "One page of children", body = Page<AffiliateView>),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn children(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<AffiliateView>>, ApiError> {
    let id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    // The cursor is the last child's id.
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => id_field("cursor", c, AffiliateId::parse, &mut errors),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let children =
        state.engine.affiliate_children(&id, after.as_ref(), limit).await?.ok_or(ApiError::NotFound("affiliate"))?;
    let currency = state.engine.currency().await?;
    let items: Vec<AffiliateView> = children.into_iter().map(|a| AffiliateView::new(a, currency.clone())).collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|a| a.id.to_string())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// One batch that paid the affiliate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AffiliatePayoutView {
    payout_id: u64,
    /// What the batch pays this affiliate.
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    amount: rust_decimal::Decimal,
    #[schema(example = "IDR")]
    currency: String,
    /// `open` (built, to be paid) or `completed` (marked paid by the operator).
    #[schema(example = "completed")]
    status: String,
    created_at: chrono::DateTime<chrono::Utc>,
    completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AffiliatePayoutPage {
    items: Vec<AffiliatePayoutView>,
    next_cursor: Option<String>,
}

/// The affiliate's payout history: the batches that paid it, newest first,
/// a page at a time (the cursor is the last batch's id).
#[utoipa::path(get, path = "/v1/affiliates/{id}/payouts", tag = "affiliates",
    params(("id" = String, Path, description = "Affiliate id"), PageQuery),
    responses(
        (status = 200, description = "One page of batches", body = AffiliatePayoutPage),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn payouts(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AffiliatePayoutPage>, ApiError> {
    let id = AffiliateId::parse(&id).map_err(|_| ApiError::NotFound("affiliate"))?;
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let before = id_cursor(q.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = state.engine.affiliate_payouts(&id, before, limit).await?.ok_or(ApiError::NotFound("affiliate"))?;
    let currency = state.engine.currency().await?;
    let items: Vec<AffiliatePayoutView> = page
        .into_iter()
        .map(|p| AffiliatePayoutView {
            payout_id: p.payout_id,
            amount: p.amount,
            currency: currency.clone(),
            status: p.status,
            created_at: p.created_at,
            completed_at: p.completed_at,
        })
        .collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|p| p.payout_id.to_string())).flatten();
    Ok(Json(AffiliatePayoutPage { items, next_cursor }))
}

/// The longest search string.
pub const MAX_QUERY: usize = 64;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// A prefix of the id, the referral code (both as written) or the name
    /// (ASCII letters in either case); 1-64 characters.
    q: Option<String>,
    /// `active` or `suspended`
    status: Option<String>,
    /// Only the direct children of this affiliate
    parent_id: Option<String>,
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

/// Affiliates by id, a page at a time, narrowed by a search string, a status
/// and a parent (each optional; the cursor is the last affiliate's id). Each
/// part is an index range, never a scan of every affiliate.
#[utoipa::path(get, path = "/v1/affiliates", tag = "affiliates", params(ListQuery),
    responses(
        (status = 200, description = "One page of affiliates", body = Page<AffiliateView>),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A search string over 64 characters, an unknown status, a bad parent id, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn list(
    _: Storefront,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<AffiliateView>>, ApiError> {
    use crate::domain::affiliate::AffiliateStatus;
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let text = match q.q.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.chars().count() > MAX_QUERY => {
            errors.push(FieldError::new("q", format!("at most {MAX_QUERY} characters")));
            None
        }
        Some(t) if t.chars().any(char::is_control) => {
            errors.push(FieldError::new("q", "no control characters"));
            None
        }
        Some(t) => Some(t.to_owned()),
    };
    // An empty value is a value (the schema's): refused like any other.
    let status = match q.status.as_deref() {
        None => None,
        Some("active") => Some(AffiliateStatus::Active),
        Some("suspended") => Some(AffiliateStatus::Suspended),
        Some(_) => {
            errors.push(FieldError::new("status", "active or suspended"));
            None
        }
    };
    let parent_id = match q.parent_id.as_deref() {
        None => None,
        Some(p) => id_field("parent_id", p, AffiliateId::parse, &mut errors),
    };
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => id_field("cursor", c, AffiliateId::parse, &mut errors),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = crate::store::AffiliateFilter { q: text, status, parent_id };
    let found = state.engine.search_affiliates(&filter, after.as_ref(), limit).await?;
    let currency = state.engine.currency().await?;
    let items: Vec<AffiliateView> = found.into_iter().map(|a| AffiliateView::new(a, currency.clone())).collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|a| a.id.to_string())).flatten();
    Ok(Json(Page { items, next_cursor }))
}
