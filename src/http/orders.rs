//! `/v1/orders`: intake (answers after the order's own commit, G4) and the
//! order view with its commissions, rewards and event statuses.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{id_field, ApiJson, ApiPath, Storefront};
use super::views::{OrderView, QuoteView};
use super::AppState;
use crate::domain::affiliate::EmailHash;
use crate::domain::attribution::{is_click_id_shape, CouponCode, MAX_CLICK_ID};
use crate::domain::currency;
use crate::domain::event::EventId;
use crate::domain::ids::{AffiliateId, BuyerId, Category, OrderId, ReferralCode, RefundId, Sku};
use crate::domain::money::parse_amount;
use crate::domain::order::{
    check_placed_at, check_total, Attribution, CreateOrder, LifecycleOutcome, NewItem, NewOrder, RefundProblem,
    RefundRequest, MAX_CLICKS, MAX_COUPONS,
};
use crate::domain::FieldError;
use crate::engine::quote::{QuoteOutcome, QuoteRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const MAX_ITEMS: usize = 500;
pub const MAX_QUANTITY: u64 = 1_000_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(read))
        .routes(routes!(refund))
        .routes(routes!(cancel))
        .routes(routes!(complete))
        .routes(routes!(quote))
}

/// An order body for a quote: as for `POST /v1/orders`, the id optional.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QuoteBody {
    /// The order's id when the storefront has one (it breaks ties with
    /// orders placed at the same instant, as it will for the order)
    #[serde(default)]
    id: Option<String>,
    buyer_id: String,
    #[serde(default)]
    referral_code: Option<String>,
    #[serde(default)]
    affiliate_id: Option<String>,
    /// Coupon codes the buyer used (at most 10; compared without regard to case)
    #[serde(default)]
    coupon_codes: Vec<String>,
    /// A click id from `POST /v1/clicks`
    #[serde(default)]
    click_id: Option<String>,
    /// Several click ids, newest last (at most 20); not with `click_id`
    #[serde(default)]
    click_ids: Vec<String>,
    /// SHA-256 of the buyer's e-mail address (trimmed, lowercased), 64 hex
    /// digits: the self-referral rule compares it with the affiliate's
    #[serde(default)]
    buyer_email_hash: Option<String>,
    /// An ISO 4217 code: the program's, or another when a rate is known
    currency: String,
    /// For an order in another currency than the program's: 1 unit of
    /// `currency` = this many units of the program's, a positive decimal
    /// string of at most 12 significant digits. Left out: the operator's
    /// rate table in force at `placed_at`.
    #[serde(default)]
    #[schema(example = "15650.25")]
    fx_rate: Option<String>,
    #[serde(default)]
    placed_at: Option<String>,
    items: Vec<ItemBody>,
}

/// What an order would pay under the current program and the stored state
/// now — affiliate lines, buyer points, the buyer's spendable points — from
/// the same functions that later process the order. Stores nothing.
#[utoipa::path(post, path = "/v1/quotes", tag = "orders", request_body = QuoteBody,
    responses(
        (status = 200, description = "The quote", body = QuoteView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (as for an order)", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn quote(
    _: Storefront,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<QuoteBody>,
) -> Result<Json<QuoteView>, ApiError> {
    let as_order = OrderBody {
        id: body.id.clone().unwrap_or_else(|| "quote".to_owned()),
        buyer_id: body.buyer_id,
        referral_code: body.referral_code,
        affiliate_id: body.affiliate_id,
        coupon_codes: body.coupon_codes,
        click_id: body.click_id,
        click_ids: body.click_ids,
        buyer_email_hash: body.buyer_email_hash,
        currency: body.currency,
        fx_rate: body.fx_rate,
        placed_at: body.placed_at,
        items: body.items,
    };
    let order = parse_order(&as_order)?;
    let req = QuoteRequest {
        id: body.id.is_some().then(|| order.id.clone()),
        buyer_id: order.buyer_id,
        attribution: order.attribution,
        coupons: order.coupons,
        click_ids: order.click_ids,
        buyer_email_hash: order.buyer_email_hash,
        currency: order.currency,
        fx_rate: order.fx_rate,
        placed_at: order.placed_at,
        items: order.items,
    };
    match state.engine.quote(&req).await? {
        QuoteOutcome::Quoted(q) => Ok(Json((*q).into())),
        QuoteOutcome::Invalid(errors) => Err(ApiError::Validation(errors)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    id: String,
    buyer_id: String,
    #[serde(default)]
    referral_code: Option<String>,
    #[serde(default)]
    affiliate_id: Option<String>,
    /// Coupon codes the buyer used (at most 10; compared without regard to case)
    #[serde(default)]
    coupon_codes: Vec<String>,
    /// A click id from `POST /v1/clicks`
    #[serde(default)]
    click_id: Option<String>,
    /// Several click ids, newest last (at most 20); not with `click_id`
    #[serde(default)]
    click_ids: Vec<String>,
    /// SHA-256 of the buyer's e-mail address (trimmed, lowercased), 64 hex
    /// digits: the self-referral rule compares it with the affiliate's
    #[serde(default)]
    buyer_email_hash: Option<String>,
    /// An ISO 4217 code: the program's, or another when a rate is known
    currency: String,
    /// For an order in another currency than the program's: 1 unit of
    /// `currency` = this many units of the program's, a positive decimal
    /// string of at most 12 significant digits. Left out: the operator's
    /// rate table in force at `placed_at`.
    #[serde(default)]
    #[schema(example = "15650.25")]
    fx_rate: Option<String>,
    #[serde(default)]
    placed_at: Option<String>,
    items: Vec<ItemBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    sku: String,
    category: String,
    /// 1-1 000 000
    quantity: u64,
    /// A decimal string: ≥ 0, at most 4 decimals, below 10^12
    #[schema(example = "75000")]
    unit_price: String,
}

/// The normalised request: what "the same body" means for idempotency, and
/// the event payload operators see.
#[derive(Debug, Serialize)]
struct Normalised<'a> {
    id: &'a str,
    buyer_id: &'a str,
    referral_code: Option<&'a str>,
    affiliate_id: Option<&'a str>,
    // Left out when empty: an order without them hashes as before they existed.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    coupon_codes: &'a [CouponCode],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    click_ids: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    buyer_email_hash: Option<&'a str>,
    currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fx_rate: Option<String>,
    placed_at: Option<String>,
    items: Vec<NormalisedItem<'a>>,
}

#[derive(Debug, Serialize)]
struct NormalisedItem<'a> {
    sku: &'a str,
    category: &'a str,
    quantity: u64,
    unit_price: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Accepted {
    order_id: OrderId,
    event_id: EventId,
    status: &'static str,
}

/// Parses and validates a `POST /v1/orders` body (JSON bytes) into an order
/// ready for intake. Public for the benchmarks.
pub fn parse_order_json(bytes: &[u8]) -> Result<NewOrder, ApiError> {
    parse_order(&super::extract::parse_json::<OrderBody>(bytes)?)
}

/// Parses every field, collecting every problem, so one 422 lists them all.
fn parse_order(body: &OrderBody) -> Result<NewOrder, ApiError> {
    let mut errors = Vec::new();
    let id = id_field("id", &body.id, OrderId::parse, &mut errors);
    let buyer_id = id_field("buyer_id", &body.buyer_id, BuyerId::parse, &mut errors);
    let attribution = match (&body.referral_code, &body.affiliate_id) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new("affiliate_id", "give referral_code or affiliate_id, not both"));
            None
        }
        (Some(code), None) => {
            id_field("referral_code", code, ReferralCode::parse, &mut errors).map(Attribution::ReferralCode)
        }
        (None, Some(a)) => id_field("affiliate_id", a, AffiliateId::parse, &mut errors).map(Attribution::AffiliateId),
        (None, None) => None,
    };
    if body.coupon_codes.len() > MAX_COUPONS {
        errors.push(FieldError::new("coupon_codes", format!("at most {MAX_COUPONS} codes")));
    }
    let mut coupons: Vec<CouponCode> = Vec::with_capacity(body.coupon_codes.len());
    for (n, code) in body.coupon_codes.iter().enumerate() {
        if let Some(c) = id_field(format!("coupon_codes[{n}]"), code, CouponCode::parse, &mut errors) {
            // The same code twice counts once.
            if !coupons.contains(&c) {
                coupons.push(c);
            }
        }
    }
    let click_ids: Vec<String> = match (&body.click_id, body.click_ids.is_empty()) {
        (Some(_), false) => {
            errors.push(FieldError::new("click_id", "give click_id or click_ids, not both"));
            Vec::new()
        }
        (Some(one), true) => vec![one.clone()],
        (None, _) => body.click_ids.clone(),
    };
    if click_ids.len() > MAX_CLICKS {
        errors.push(FieldError::new("click_ids", format!("at most {MAX_CLICKS} click ids")));
    }
    for (n, id) in click_ids.iter().enumerate() {
        if !is_click_id_shape(id) {
            let field = if body.click_id.is_some() { "click_id".to_owned() } else { format!("click_ids[{n}]") };
            errors.push(FieldError::new(
                field,
                format!("must be 1-{MAX_CLICK_ID} characters of A-Z, a-z, 0-9, '_', '.' or '-'"),
            ));
        }
    }
    let buyer_email_hash = body
        .buyer_email_hash
        .as_deref()
        .and_then(|h| EmailHash::parse(h).map_err(|why| errors.push(FieldError::new("buyer_email_hash", why))).ok());
    let currency_ok = body.currency.len() == 3 && body.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        errors.push(FieldError::new("currency", "must be a 3-letter uppercase currency code"));
    } else if !currency::is_iso(&body.currency) {
        errors.push(FieldError::new("currency", "must be an ISO 4217 currency code"));
    }
    let fx_rate = body
        .fx_rate
        .as_deref()
        .and_then(|r| currency::parse_rate(r).map_err(|why| errors.push(FieldError::new("fx_rate", why))).ok());
    let placed_at = body.placed_at.as_deref().and_then(|p| match DateTime::parse_from_rfc3339(p) {
        Ok(t) => match check_placed_at(t.with_timezone(&Utc), Utc::now()) {
            Ok(()) => Some(t.with_timezone(&Utc)),
            Err(why) => {
                errors.push(FieldError::new("placed_at", why));
                None
            }
        },
        Err(_) => {
            errors.push(FieldError::new("placed_at", "must be an RFC 3339 timestamp"));
            None
        }
    });
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        errors.push(FieldError::new("items", format!("must hold 1-{MAX_ITEMS} items")));
    }
    let items = parse_items(&body.items, &mut errors);
    if items.len() == body.items.len() {
        if let Err(why) = check_total(&items) {
            errors.push(FieldError::new("items", why));
        }
    }
    let (Some(id), Some(buyer_id), true) = (id, buyer_id, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let normalised = Normalised {
        id: id.as_str(),
        buyer_id: buyer_id.as_str(),
        referral_code: body.referral_code.as_deref(),
        affiliate_id: body.affiliate_id.as_deref(),
        coupon_codes: &coupons,
        click_ids: &click_ids,
        buyer_email_hash: buyer_email_hash.as_ref().map(|h| h.as_str()),
        currency: &body.currency,
        fx_rate: fx_rate.map(crate::domain::money::format),
        placed_at: placed_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        items: items
            .iter()
            .map(|i| NormalisedItem {
                sku: i.sku.as_str(),
                category: i.category.as_str(),
                quantity: u64::from(i.quantity),
                unit_price: crate::domain::money::format(i.unit_price),
            })
            .collect(),
    };
    let payload = serde_json::to_string(&normalised).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let request_hash: [u8; 32] = Sha256::digest(payload.as_bytes()).into();
    Ok(NewOrder {
        id,
        buyer_id,
        attribution,
        coupons,
        click_ids,
        buyer_email_hash,
        currency: body.currency.clone(),
        fx_rate,
        placed_at,
        items,
        request_hash,
        payload,
    })
}

/// Every item, its problems added to `errors`; the items that parsed.
fn parse_items(body: &[ItemBody], errors: &mut Vec<FieldError>) -> Vec<NewItem> {
    let mut skus = HashSet::new();
    let mut items = Vec::with_capacity(body.len());
    for (n, item) in body.iter().enumerate() {
        let sku = id_field(format!("items[{n}].sku"), &item.sku, Sku::parse, errors);
        if sku.is_some() && !skus.insert(item.sku.as_str()) {
            errors.push(FieldError::new(format!("items[{n}].sku"), "each sku may appear only once"));
        }
        let category = id_field(format!("items[{n}].category"), &item.category, Category::parse, errors);
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            errors
                .push(FieldError::new(format!("items[{n}].quantity"), format!("must be an integer 1-{MAX_QUANTITY}")));
        }
        let unit_price = parse_amount(&item.unit_price)
            .map_err(|e| errors.push(FieldError::new(format!("items[{n}].unit_price"), e.to_string())))
            .ok();
        if let (Some(sku), Some(category), Some(unit_price)) = (sku, category, unit_price) {
            items.push(NewItem { sku, category, quantity: item.quantity as u32, unit_price });
        }
    }
    items
}

/// Accepts an order: 202 once the order, its items and its event are committed.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = OrderBody,
    responses(
        (status = 202, description = "Accepted; commissions follow in the background", body = Accepted),
        (status = 200, description = "The identical request was accepted before", body = Accepted),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id was accepted with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body above 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Backpressure: the backlog passed KOMISI_MAX_BACKLOG; not stored, retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn create(
    _: Storefront,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<OrderBody>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let order = parse_order(&body)?;
    let order_id = order.id.clone();
    match state.engine.place_order(order).await? {
        CreateOrder::Accepted(event) => {
            Ok((StatusCode::ACCEPTED, Json(Accepted { order_id, event_id: event.id, status: "accepted" })))
        }
        CreateOrder::Duplicate(event_id) => {
            Ok((StatusCode::OK, Json(Accepted { order_id, event_id, status: "accepted" })))
        }
        CreateOrder::Conflict => {
            Err(ApiError::Conflict(format!("order {order_id} was already accepted with a different body")))
        }
        CreateOrder::Invalid(errors) => Err(ApiError::Validation(errors)),
    }
}

/// The order with its commission status, commissions, rewards and events.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn read(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderView>, ApiError> {
    let id = OrderId::parse(&id).map_err(|_| ApiError::NotFound("order"))?;
    let details = state.engine.order(&id).await?.ok_or(ApiError::NotFound("order"))?;
    Ok(Json(details.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    refund_id: String,
    items: Vec<RefundItemBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefundItemBody {
    sku: String,
    quantity: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EventAccepted {
    event_id: EventId,
}

/// First acceptance → 202 (after the commit; the engine journals the
/// event); an identical repeat → 200 with the same event.
fn answer(outcome: LifecycleOutcome) -> Result<(StatusCode, Json<EventAccepted>), ApiError> {
    match outcome {
        LifecycleOutcome::Accepted(event) => Ok((StatusCode::ACCEPTED, Json(EventAccepted { event_id: event.id }))),
        LifecycleOutcome::Duplicate(event_id) => Ok((StatusCode::OK, Json(EventAccepted { event_id }))),
        LifecycleOutcome::Conflict(why) => Err(ApiError::Conflict(why)),
        LifecycleOutcome::Invalid(problems) => Err(ApiError::Validation(
            problems
                .into_iter()
                .map(|p| match p {
                    RefundProblem::UnknownSku { line } => {
                        FieldError::new(format!("items[{line}].sku"), "this order has no such sku")
                    }
                    RefundProblem::MoreThanLeft { line, left } => {
                        FieldError::new(format!("items[{line}].quantity"), format!("only {left} left to refund"))
                    }
                })
                .collect(),
        )),
        LifecycleOutcome::NotFound => Err(ApiError::NotFound("order")),
    }
}

fn parse_refund(order_id: OrderId, body: &RefundBody) -> Result<RefundRequest, ApiError> {
    let mut errors = Vec::new();
    let refund_id = id_field("refund_id", &body.refund_id, RefundId::parse, &mut errors);
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        errors.push(FieldError::new("items", format!("must hold 1-{MAX_ITEMS} items")));
    }
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for (n, item) in body.items.iter().enumerate() {
        let sku = id_field(format!("items[{n}].sku"), &item.sku, Sku::parse, &mut errors);
        if sku.is_some() && !seen.insert(item.sku.as_str()) {
            errors.push(FieldError::new(format!("items[{n}].sku"), "each sku may appear only once"));
        }
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            errors
                .push(FieldError::new(format!("items[{n}].quantity"), format!("must be an integer 1-{MAX_QUANTITY}")));
        }
        if let Some(sku) = sku {
            items.push((sku, item.quantity as u32));
        }
    }
    let (Some(refund_id), true) = (refund_id, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // Normalised: the same refund with its lines in another order is the same request.
    let mut lines: Vec<(&str, u32)> = items.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    lines.sort();
    let lines: Vec<_> =
        lines.iter().map(|(sku, quantity)| serde_json::json!({"sku": sku, "quantity": quantity})).collect();
    let payload = serde_json::json!({"refund_id": refund_id, "items": lines}).to_string();
    let request_hash: [u8; 32] = Sha256::digest(payload.as_bytes()).into();
    Ok(RefundRequest { order_id, refund_id, items, request_hash, payload })
}

/// Refunds quantities of some items; idempotent on `refund_id`.
#[utoipa::path(post, path = "/v1/orders/{id}/refunds", tag = "orders", request_body = RefundBody,
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 202, description = "Accepted", body = EventAccepted),
        (status = 200, description = "This refund was accepted before", body = EventAccepted),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Refund id reused with other items, or the order is cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown sku or more than was bought", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn refund(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<(StatusCode, Json<EventAccepted>), ApiError> {
    let id = OrderId::parse(&id).map_err(|_| ApiError::NotFound("order"))?;
    let request = parse_refund(id, &body)?;
    answer(state.engine.refund(&request).await?)
}

/// Cancels the order (before completion); idempotent.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 202, description = "Accepted", body = EventAccepted),
        (status = 200, description = "Cancelled before", body = EventAccepted),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is completed: use refunds", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn cancel(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<EventAccepted>), ApiError> {
    let id = OrderId::parse(&id).map_err(|_| ApiError::NotFound("order"))?;
    answer(state.engine.cancel(&id).await?)
}

/// The return window is over: entries are approved `holding_days` later; idempotent.
#[utoipa::path(post, path = "/v1/orders/{id}/complete", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 202, description = "Accepted", body = EventAccepted),
        (status = 200, description = "Completed before", body = EventAccepted),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is cancelled", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn complete(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<EventAccepted>), ApiError> {
    let id = OrderId::parse(&id).map_err(|_| ApiError::NotFound("order"))?;
    answer(state.engine.complete(&id).await?)
}
