//! Attribution: tracked clicks (`POST /v1/clicks`), an affiliate's coupons
//! and attribution figures, a buyer's link to an affiliate (read, and set by
//! an operator), and moving an order to another affiliate by hand.
use super::error::{ApiError, Problem};
use super::extract::{id_field, Admin, ApiJson, ApiPath, Storefront};
use super::AppState;
use crate::domain::attribution::{AddCoupon, Coupon, CouponCode, CustomerLink};
use crate::domain::ids::{AffiliateId, BuyerId, ReferralCode};
use crate::domain::FieldError;
use crate::engine::attribution::SetLink;
use crate::engine::lifecycle::Reassign;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(click))
        .routes(routes!(add_coupon, list_coupons))
        .routes(routes!(delete_coupon))
        .routes(routes!(stats))
        .routes(routes!(read_buyer))
        .routes(routes!(set_buyer_affiliate))
        .routes(routes!(reattribute))
}

/// A reason without the spaces around it: Unicode white space, and U+FEFF
/// (white space to a JSON Schema pattern's `\s`).
fn trim_reason(reason: &str) -> &str {
    reason.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// The longest landing URL a click may carry.
const MAX_URL: usize = 2048;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ClickBody {
    /// The affiliate's referral code
    #[serde(default)]
    referral_code: Option<String>,
    /// Or the affiliate link the visitor followed: its `ref` query parameter is the referral code
    #[serde(default)]
    link: Option<String>,
    /// The storefront's visitor id (checked, not stored)
    #[serde(default)]
    visitor_id: Option<String>,
    /// The page the visitor landed on (checked, not stored)
    #[serde(default)]
    landing_url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ClickView {
    /// Signed by komisi: give it back on the order (`click_id` / `click_ids`).
    click_id: String,
    affiliate_id: AffiliateId,
    clicked_at: DateTime<Utc>,
    /// An order placed after this is not attributed by the click (the
    /// program's `click_window_days`, as it is now).
    expires_at: DateTime<Utc>,
}

/// An http(s) address without spaces or control characters.
fn web_address(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The referral code of an affiliate link: its `ref` query parameter (an
/// http(s) address; only its query is read).
fn code_of_link(link: &str) -> Result<String, &'static str> {
    if link.len() > MAX_URL {
        return Err("must be at most 2048 characters");
    }
    if !web_address(link) {
        return Err("must be an http or https address");
    }
    let query = link.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "ref")
        .map(|(_, v)| v.into_owned())
        .ok_or("has no ref query parameter")
}

/// Records a tracked click of an affiliate link and answers its signed
/// click id. No row is written per click: the id carries the affiliate and
/// the time, and clicks are counted per affiliate and day.
#[utoipa::path(post, path = "/v1/clicks", tag = "attribution", request_body = ClickBody,
    responses(
        (status = 201, description = "The click's signed id", body = ClickView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No affiliate has the referral code", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn click(
    _: Storefront,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ClickBody>,
) -> Result<(StatusCode, Json<ClickView>), ApiError> {
    let mut errors = Vec::new();
    let (field, raw) = match (&body.referral_code, &body.link) {
        (Some(c), None) => ("referral_code", Some(c.clone())),
        (None, Some(l)) => match code_of_link(l) {
            Ok(code) => ("link", Some(code)),
            Err(why) => {
                errors.push(FieldError::new("link", why));
                ("link", None)
            }
        },
        _ => {
            errors.push(FieldError::new("referral_code", "give referral_code or link (one of them)"));
            ("referral_code", None)
        }
    };
    let code = raw.and_then(|c| id_field(field, &c, ReferralCode::parse, &mut errors));
    if let Some(v) = &body.visitor_id {
        if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) {
            errors.push(FieldError::new("visitor_id", "must be 1-128 characters, no control characters"));
        }
    }
    if let Some(u) = &body.landing_url {
        if u.len() > MAX_URL || !web_address(u) {
            errors.push(FieldError::new("landing_url", "must be an http or https address of at most 2048 characters"));
        }
    }
    let (Some(code), true) = (code, errors.is_empty()) else { return Err(ApiError::Validation(errors)) };
    // A link to no affiliate: nothing to track (404, like any unknown resource).
    let issued = state.engine.record_click(&code).await?.ok_or(ApiError::NotFound("affiliate"))?;
    Ok((
        StatusCode::CREATED,
        Json(ClickView {
            click_id: issued.click_id,
            affiliate_id: issued.affiliate_id,
            clicked_at: issued.clicked_at,
            expires_at: issued.expires_at,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CouponBody {
    /// 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'; stored uppercase
    code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CouponView {
    code: CouponCode,
    affiliate_id: AffiliateId,
    created_at: DateTime<Utc>,
    /// Set once deleted: the code no longer attributes (and may be given to another affiliate).
    deleted_at: Option<DateTime<Utc>>,
}

impl From<Coupon> for CouponView {
    fn from(c: Coupon) -> Self {
        Self { code: c.code, affiliate_id: c.affiliate_id, created_at: c.created_at, deleted_at: c.deleted_at }
    }
}

fn affiliate(id: &str) -> Result<AffiliateId, ApiError> {
    AffiliateId::parse(id).map_err(|_| ApiError::NotFound("affiliate"))
}

/// Gives an affiliate a coupon code: an order carrying it is attributed to
/// the affiliate (docs/RULES.md "Attribution"). 201, or 200 when it holds the code already.
#[utoipa::path(post, path = "/v1/affiliates/{id}/coupons", tag = "attribution", request_body = CouponBody,
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 201, description = "Added", body = CouponView),
        (status = 200, description = "The affiliate holds this code already", body = CouponView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another affiliate holds the code", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid code", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn add_coupon(
    caller: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CouponBody>,
) -> Result<(StatusCode, Json<CouponView>), ApiError> {
    let id = affiliate(&id)?;
    let mut errors = Vec::new();
    let Some(code) = id_field("code", &body.code, CouponCode::parse, &mut errors) else {
        return Err(ApiError::Validation(errors));
    };
    match state.engine.add_coupon(&id, &code, &caller.actor(&state)).await? {
        AddCoupon::Added(c) => Ok((StatusCode::CREATED, Json(c.into()))),
        AddCoupon::Exists(c) => Ok((StatusCode::OK, Json(c.into()))),
        AddCoupon::Taken(_) => {
            Err(ApiError::Conflict(format!("another affiliate holds the coupon code {}", code.as_str())))
        }
        AddCoupon::NoAffiliate => Err(ApiError::NotFound("affiliate")),
    }
}

/// An affiliate's coupons, deleted ones included, newest first (at most 1 000).
#[utoipa::path(get, path = "/v1/affiliates/{id}/coupons", tag = "attribution",
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 200, description = "The coupons", body = [CouponView]),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn list_coupons(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<CouponView>>, ApiError> {
    let id = affiliate(&id)?;
    let coupons = state.engine.coupons(&id).await?.ok_or(ApiError::NotFound("affiliate"))?;
    Ok(Json(coupons.into_iter().map(Into::into).collect()))
}

/// Deletes a coupon: new orders carrying it are no longer attributed by it;
/// orders it attributed keep their attribution.
#[utoipa::path(delete, path = "/v1/affiliates/{id}/coupons/{code}", tag = "attribution",
    params(("id" = String, Path, description = "Affiliate id"), ("code" = String, Path, description = "Coupon code (any case)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The affiliate holds no such active coupon", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn delete_coupon(
    caller: Storefront,
    State(state): State<AppState>,
    ApiPath((id, code)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = affiliate(&id)?;
    let code = CouponCode::parse(&code).map_err(|_| ApiError::NotFound("coupon"))?;
    match state.engine.delete_coupon(&id, &code, &caller.actor(&state)).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound("coupon")),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ClickDay {
    /// The UTC day.
    day: chrono::NaiveDate,
    clicks: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AttributionStatsView {
    affiliate_id: AffiliateId,
    coupons: Vec<CouponView>,
    /// The window of the figures below: from the start of last month (program time zone).
    since: DateTime<Utc>,
    clicks: u64,
    /// Orders attributed to the affiliate (any source) placed in the window.
    orders: u64,
    /// orders / clicks in the window, as a decimal string with 4 decimals; null without clicks.
    #[schema(format = "decimal")]
    conversion_rate: Option<String>,
    /// Buyers linked to the affiliate (expired links included).
    linked_customers: u64,
    /// Days with clicks in the window, oldest first.
    clicks_by_day: Vec<ClickDay>,
}

/// An affiliate's coupons, clicks per day, conversion rate and linked customers.
#[utoipa::path(get, path = "/v1/affiliates/{id}/attribution", tag = "attribution",
    params(("id" = String, Path, description = "Affiliate id")),
    responses(
        (status = 200, description = "The figures", body = AttributionStatsView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such affiliate", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn stats(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AttributionStatsView>, ApiError> {
    let id = affiliate(&id)?;
    let s = state.engine.attribution_stats(&id).await?.ok_or(ApiError::NotFound("affiliate"))?;
    let conversion_rate = (s.clicks > 0).then(|| {
        let rate = rust_decimal::Decimal::from(s.orders) / rust_decimal::Decimal::from(s.clicks);
        format!("{:.4}", rate.round_dp(4))
    });
    Ok(Json(AttributionStatsView {
        affiliate_id: id,
        coupons: s.coupons.into_iter().map(Into::into).collect(),
        since: s.since,
        clicks: s.clicks,
        orders: s.orders,
        conversion_rate,
        linked_customers: s.linked_customers,
        clicks_by_day: s.clicks_by_day.into_iter().map(|(d, n)| ClickDay { day: d.date_naive(), clicks: n }).collect(),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CustomerLinkView {
    affiliate_id: AffiliateId,
    /// `order` (the buyer's first attributed order) or `manual`
    source: String,
    order_id: Option<String>,
    /// A manual link's reason
    reason: Option<String>,
    linked_at: DateTime<Utc>,
    /// null: for the buyer's lifetime
    expires_at: Option<DateTime<Utc>>,
    /// Whether it attributes the buyer's orders now (not expired, affiliate
    /// not suspended; and the program links customers).
    active: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BuyerView {
    id: BuyerId,
    /// The affiliate the buyer is linked to (null: none).
    customer_link: Option<CustomerLinkView>,
}

async fn buyer_view(state: &AppState, id: BuyerId) -> Result<BuyerView, ApiError> {
    let link = state.engine.customer_link(&id).await?;
    let linking = state.engine.links_customers().await?;
    let now = Utc::now();
    let customer_link = link.map(|(l, suspended): (CustomerLink, bool)| CustomerLinkView {
        active: linking && !suspended && l.expires_at.is_none_or(|e| now < e),
        affiliate_id: l.affiliate_id,
        source: l.source,
        order_id: l.order_id,
        reason: l.reason,
        linked_at: l.linked_at,
        expires_at: l.expires_at,
    });
    Ok(BuyerView { id, customer_link })
}

/// A buyer's link to an affiliate (points are under `/rewards`).
#[utoipa::path(get, path = "/v1/buyers/{id}", tag = "buyers",
    params(("id" = String, Path, description = "Buyer id")),
    responses(
        (status = 200, description = "The buyer (an unknown buyer has no link)", body = BuyerView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn read_buyer(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BuyerView>, ApiError> {
    let id = BuyerId::parse(&id).map_err(|_| ApiError::NotFound("buyer"))?;
    Ok(Json(buyer_view(&state, id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetAffiliateBody {
    /// The affiliate to link the buyer to; null clears the link
    affiliate_id: Option<String>,
    /// Why (kept with the link, and logged): 1-500 characters
    reason: String,
}

/// Links a buyer to an affiliate by hand, or clears the link (`affiliate_id:
/// null`); the buyer's orders from now on follow it. Orders already taken
/// keep their attribution (to move one, `POST /admin/orders/{id}/attribution`).
#[utoipa::path(put, path = "/admin/buyers/{id}/affiliate", tag = "attribution", request_body = SetAffiliateBody,
    params(("id" = String, Path, description = "Buyer id")),
    responses(
        (status = 200, description = "The buyer with its link", body = BuyerView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An invalid buyer id, or no such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn set_buyer_affiliate(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetAffiliateBody>,
) -> Result<Json<BuyerView>, ApiError> {
    let id = BuyerId::parse(&id).map_err(|_| ApiError::NotFound("buyer"))?;
    let mut errors = Vec::new();
    let to = body.affiliate_id.as_deref().and_then(|a| id_field("affiliate_id", a, AffiliateId::parse, &mut errors));
    let reason = trim_reason(&body.reason);
    if reason.is_empty() || reason.chars().count() > 500 {
        errors.push(FieldError::new("reason", "must be 1-500 characters"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    match state.engine.set_customer_link(&id, to.as_ref(), reason, &admin.actor(&state)).await? {
        SetLink::Done => Ok(Json(buyer_view(&state, id).await?)),
        SetLink::NoAffiliate => Err(ApiError::NotFound("affiliate")),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReattributeBody {
    /// The affiliate the order's commissions move to
    affiliate_id: String,
    /// Why (stored with the order's attribution, and logged): 1-500 characters
    reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReattributeView {
    order_id: crate::domain::ids::OrderId,
    /// The `order.reattributed` event that moves the commissions (null: the
    /// order was attributed to that affiliate already).
    event_id: Option<crate::domain::event::EventId>,
    /// `accepted` or `unchanged`
    status: &'static str,
}

/// Moves an order to another affiliate before its commissions are approved:
/// one `order.reattributed` event reverses the old affiliate's (and its
/// upline's) commissions and credits the new affiliate's, exactly once.
/// 409 once the order's commissions are approved or paid.
#[utoipa::path(post, path = "/admin/orders/{id}/attribution", tag = "attribution", request_body = ReattributeBody,
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 202, description = "Accepted: the event moves the commissions in the background", body = ReattributeView),
        (status = 200, description = "The order is attributed to that affiliate already", body = ReattributeView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order, or no such affiliate", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order's commissions are approved or paid", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn reattribute(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReattributeBody>,
) -> Result<(StatusCode, Json<ReattributeView>), ApiError> {
    let id = crate::domain::ids::OrderId::parse(&id).map_err(|_| ApiError::NotFound("order"))?;
    let mut errors = Vec::new();
    let to = id_field("affiliate_id", &body.affiliate_id, AffiliateId::parse, &mut errors);
    let reason = trim_reason(&body.reason);
    if reason.is_empty() || reason.chars().count() > 500 {
        errors.push(FieldError::new("reason", "must be 1-500 characters"));
    }
    let (Some(to), true) = (to, errors.is_empty()) else { return Err(ApiError::Validation(errors)) };
    match state.engine.reattribute(&id, &to, reason, &admin.actor(&state)).await? {
        Reassign::Accepted(event) => Ok((
            StatusCode::ACCEPTED,
            Json(ReattributeView { order_id: id, event_id: Some(event.id), status: "accepted" }),
        )),
        Reassign::Unchanged => {
            Ok((StatusCode::OK, Json(ReattributeView { order_id: id, event_id: None, status: "unchanged" })))
        }
        Reassign::NotFound => Err(ApiError::NotFound("order")),
        Reassign::NoAffiliate => Err(ApiError::NotFound("affiliate")),
        Reassign::Approved => Err(ApiError::Conflict(format!(
            "the commissions of order {id} are approved (or paid): an order is moved only before approval"
        ))),
    }
}
