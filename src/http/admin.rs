//! `/admin` money movement and checks: payout batches and reconciliation.
use super::error::ApiError;
use super::error::Problem;
use super::extract::{id_cursor, page_limit, Admin, ApiJson, ApiPath, ApiQuery, OptionalApiJson};
use super::views::{NothingToPay, Payout, PayoutAnswer, PayoutSummaryView, ReconcileStatus, Report, RunStarted};
use super::AppState;
use crate::domain::money::parse_amount;
use crate::domain::payout::CreatePayout;
use crate::domain::reconcile::RunKind;
use crate::engine::reconcile::Started;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payout, list_payouts))
        .routes(routes!(read_payout))
        .routes(routes!(complete_payout))
        .routes(routes!(payout_items_csv))
        .routes(routes!(list_orders))
        .routes(routes!(reconcile_status, start_reconcile))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PayoutBody {
    min_amount: String,
}

/// Builds a batch from approved balances ≥ `min_amount`. An `Idempotency-Key`
/// header makes a retried request (also one running at the same time) return
/// the batch the first one built; the key with another `min_amount` is 422.
/// When no balance reaches the minimum nothing is stored and the answer is
/// `{"status": "nothing_to_pay", "items": [], "total": "0"}`.
#[utoipa::path(post, path = "/admin/payouts", tag = "payouts", request_body = PayoutBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats return the first batch")),
    responses(
        (status = 200, description = "The batch, or nothing to pay", body = PayoutAnswer),
        (status = 400, description = "Malformed Idempotency-Key or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid min_amount, or the Idempotency-Key used with another min_amount", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn create_payout(
    admin: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PayoutBody>,
) -> Result<Json<PayoutAnswer>, ApiError> {
    let min_amount = parse_amount(&body.min_amount).map_err(|e| ApiError::field("min_amount", e.to_string()))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => Some(k.to_owned()),
            _ => return Err(ApiError::BadRequest("Idempotency-Key must be 1-128 visible ASCII characters".into())),
        },
    };
    match state.engine.create_payout(min_amount, key.as_deref(), &admin.actor(&state)).await? {
        CreatePayout::Created(p) | CreatePayout::Repeated(p) => Ok(Json(PayoutAnswer::Batch(p.into()))),
        CreatePayout::NothingToPay => Ok(Json(PayoutAnswer::Nothing(NothingToPay::new()))),
        CreatePayout::KeyReused { min_amount } => Err(ApiError::field(
            "min_amount",
            format!("this Idempotency-Key was used with min_amount {min_amount}; use a new key for another request"),
        )),
    }
}

/// A payout id from the path: ids are stored as signed 64-bit integers, so
/// a larger one is never found.
fn payout_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or(ApiError::NotFound("payout"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PayoutsQuery {
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PayoutPage {
    items: Vec<PayoutSummaryView>,
    next_cursor: Option<String>,
}

/// Payout batches, newest first, a page at a time (each with its number of items).
#[utoipa::path(get, path = "/admin/payouts", tag = "payouts", params(PayoutsQuery),
    responses(
        (status = 200, description = "One page of batches", body = PayoutPage),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn list_payouts(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PayoutsQuery>,
) -> Result<Json<PayoutPage>, ApiError> {
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    let before = id_cursor(q.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let items: Vec<PayoutSummaryView> =
        state.engine.list_payouts(before, limit).await?.into_iter().map(Into::into).collect();
    let next_cursor = (items.len() == limit as usize).then(|| items.last().map(|p| p.id.to_string())).flatten();
    Ok(Json(PayoutPage { items, next_cursor }))
}

/// One batch with its items.
#[utoipa::path(get, path = "/admin/payouts/{id}", tag = "payouts",
    params(("id" = u64, Path, description = "Payout id")),
    responses(
        (status = 200, description = "The batch", body = Payout),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payout", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn read_payout(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Payout>, ApiError> {
    state.engine.payout(payout_id(&id)?).await?.map(|p| Json(p.into())).ok_or(ApiError::NotFound("payout"))
}

/// A batch's items as CSV for the bank or PayPal run: one line per
/// affiliate (`payout_id,affiliate_id,name,amount,currency,status`), by
/// affiliate id. komisi keeps no payout details (bank accounts, PayPal
/// addresses): join on `affiliate_id` in the system that holds them.
#[utoipa::path(get, path = "/admin/payouts/{id}/items.csv", tag = "payouts",
    params(("id" = u64, Path, description = "Payout id")),
    responses(
        (status = 200, description = "The batch's items (CSV, RFC 4180)", body = String, content_type = "text/csv"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payout", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn payout_items_csv(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let id = payout_id(&id)?;
    let (status, lines) = state.engine.payout_export(id).await?.ok_or(ApiError::NotFound("payout"))?;
    let currency = state.engine.currency().await?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    // Writing to memory: an error here is a bug, answered as a 500.
    let failed = |e: &dyn std::fmt::Display| ApiError::Internal(crate::engine::corrupt(format!("payout CSV: {e}")));
    let mut write = |record: &[&str]| csv.write_record(record).map_err(|e| failed(&e));
    write(&["payout_id", "affiliate_id", "name", "amount", "currency", "status"])?;
    let id = id.to_string();
    for l in &lines {
        let amount = l.amount.normalize().to_string();
        write(&[&id, l.affiliate_id.as_str(), &spreadsheet_safe(&l.name), &amount, &currency, &status])?;
    }
    let body = csv.into_inner().map_err(|e| failed(&e))?;
    let disposition = format!("attachment; filename=\"payout-{id}.csv\"");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    ))
}

/// A name as a spreadsheet shows it, never as a formula: a leading `=`, `+`,
/// `-`, `@`, tab or carriage return gets a `'` before it (OWASP "CSV
/// injection"). Names are the only free text in the export.
fn spreadsheet_safe(name: &str) -> std::borrow::Cow<'_, str> {
    if name.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{name}").into()
    } else {
        name.into()
    }
}

/// Marks a batch paid: its entries move approved → paid. Idempotent.
#[utoipa::path(post, path = "/admin/payouts/{id}/complete", tag = "payouts",
    params(("id" = u64, Path, description = "Payout id")),
    responses(
        (status = 200, description = "The completed batch", body = Payout),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payout", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn complete_payout(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Payout>, ApiError> {
    state
        .engine
        .complete_payout(payout_id(&id)?, &admin.actor(&state))
        .await?
        .map(|p| Json(p.into()))
        .ok_or(ApiError::NotFound("payout"))
}

/// The last finished reconcile run's report (what it covered, what it
/// found), and the running run's progress; read at once, nothing is
/// checked by this request. Runs are started by komisi's schedule (an
/// incremental run every minute, a full sweep daily) and by `POST`.
#[utoipa::path(get, path = "/admin/reconcile", tag = "operations",
    responses(
        (status = 200, description = "The last report and the running run", body = ReconcileStatus),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn reconcile_status(_: Admin, State(state): State<AppState>) -> Result<Json<ReconcileStatus>, ApiError> {
    Ok(Json(state.engine.reconcile_status().await?.into()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    /// `full` (default): every order, affiliate and buyer; `incremental`:
    /// what changed since the runs before.
    #[serde(default)]
    kind: Option<RunKind>,
    /// Answer when the run has finished, with its report (a full sweep of
    /// a large database takes minutes); a run already running is waited for
    /// first. Default: answer at once.
    #[serde(default)]
    wait: bool,
}

/// Starts a reconcile run. One runs at a time (on every instance): when
/// one is running, nothing starts and the answer names it.
#[utoipa::path(post, path = "/admin/reconcile", tag = "operations", request_body = Option<ReconcileBody>,
    responses(
        (status = 202, description = "Started (or the run already running)", body = RunStarted),
        (status = 200, description = "With `wait`: the run's report", body = Report),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown kind or field", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn start_reconcile(
    admin: Admin,
    State(state): State<AppState>,
    OptionalApiJson(body): OptionalApiJson<ReconcileBody>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let body = body.unwrap_or_default();
    let kind = body.kind.unwrap_or(RunKind::Full);
    if body.wait {
        return Ok(
            Json(Report::from(state.engine.reconcile_now(kind, Some(&admin.actor(&state))).await?)).into_response()
        );
    }
    let started = match state.engine.start_reconcile(kind, Some(&admin.actor(&state))).await? {
        Started::Started(run) => {
            let id = run.id;
            state.engine.run_in_background(*run);
            RunStarted { run_id: id, started: true }
        }
        Started::Busy(id) => RunStarted { run_id: id, started: false },
    };
    Ok((axum::http::StatusCode::ACCEPTED, Json(started)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OrdersQuery {
    /// The orders attributed to this affiliate (this or `buyer_id` is required)
    affiliate_id: Option<String>,
    /// The orders of this buyer
    buyer_id: Option<String>,
    /// `pending`, `processed`, `failed` or `dead`
    commission_status: Option<String>,
    /// Placed at or after (RFC 3339)
    since: Option<String>,
    /// Placed before (RFC 3339)
    until: Option<String>,
    /// 1-500, default 50
    limit: Option<String>,
    cursor: Option<String>,
}

/// An order in a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct OrderSummaryView {
    #[schema(value_type = String)]
    id: crate::domain::ids::OrderId,
    #[schema(value_type = String)]
    buyer_id: crate::domain::ids::BuyerId,
    #[schema(value_type = Option<String>)]
    affiliate_id: Option<crate::domain::ids::AffiliateId>,
    placed_at: chrono::DateTime<chrono::Utc>,
    currency: String,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "2250000", format = "decimal")]
    total: rust_decimal::Decimal,
    status: crate::domain::order::OrderStatus,
    commission_status: crate::domain::order::CommissionStatus,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct OrderPage {
    items: Vec<OrderSummaryView>,
    next_cursor: Option<String>,
}

/// An affiliate's or a buyer's orders, newest placed first, a page at a
/// time, narrowed by commission status and a window of `placed_at`. One of
/// `affiliate_id` and `buyer_id` is required: each has an index by
/// placement time; an index of every order by time would cost the order
/// path (docs/PERFORMANCE.md), and the newest events of all orders are
/// `GET /admin/events`.
#[utoipa::path(get, path = "/admin/orders", tag = "orders", params(OrdersQuery),
    responses(
        (status = 200, description = "One page of orders", body = OrderPage),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither or both of affiliate_id and buyer_id, or a bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn list_orders(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OrdersQuery>,
) -> Result<Json<OrderPage>, ApiError> {
    use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
    use crate::domain::FieldError;
    use crate::store::{OrderFilter, OrdersOf};
    let mut errors = Vec::new();
    let limit = page_limit(q.limit.as_deref(), &mut errors);
    // An empty value is a value (the schema's): refused like any other.
    let of = match (q.affiliate_id.clone(), q.buyer_id.clone()) {
        (Some(a), None) => {
            super::extract::id_field("affiliate_id", &a, AffiliateId::parse, &mut errors).map(OrdersOf::Affiliate)
        }
        (None, Some(b)) => super::extract::id_field("buyer_id", &b, BuyerId::parse, &mut errors).map(OrdersOf::Buyer),
        (None, None) => {
            errors.push(FieldError::new("affiliate_id", "affiliate_id or buyer_id is required"));
            None
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError::new("buyer_id", "give affiliate_id or buyer_id, not both"));
            None
        }
    };
    let commission_status = match q.commission_status.as_deref() {
        None => None,
        Some(s) => crate::domain::order::CommissionStatus::parse(s).or_else(|| {
            errors.push(FieldError::new("commission_status", "pending, processed, failed or dead"));
            None
        }),
    };
    let since = super::extract::rfc3339("since", q.since.as_deref(), &mut errors);
    let until = super::extract::rfc3339("until", q.until.as_deref(), &mut errors);
    // The cursor is `<placed_at in µs since the epoch>:<order id>`, as this API writes it.
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let parsed = c.split_once(':').and_then(|(micros, id)| {
                let digits = micros.strip_prefix('-').unwrap_or(micros);
                let micros: i64 = micros.parse().ok().filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))?;
                Some((chrono::DateTime::from_timestamp_micros(micros)?, OrderId::parse(id).ok()?))
            });
            if parsed.is_none() {
                errors.push(FieldError::new("cursor", "not a cursor returned by this API"));
            }
            parsed
        }
    };
    let Some(of) = of.filter(|_| errors.is_empty()) else { return Err(ApiError::Validation(errors)) };
    let filter = OrderFilter { of, commission_status, since, until };
    let items: Vec<OrderSummaryView> = state
        .engine
        .list_orders(&filter, before.as_ref(), limit)
        .await?
        .into_iter()
        .map(|o| OrderSummaryView {
            id: o.id,
            buyer_id: o.buyer_id,
            affiliate_id: o.affiliate_id,
            placed_at: o.placed_at,
            currency: o.currency,
            total: o.total,
            status: o.status,
            commission_status: o.commission_status,
        })
        .collect();
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|o| format!("{}:{}", o.placed_at.timestamp_micros(), o.id.as_str())))
        .flatten();
    Ok(Json(OrderPage { items, next_cursor }))
}
