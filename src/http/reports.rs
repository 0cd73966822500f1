//! `/admin/reports`: what was booked per day, and the top affiliates of a
//! window — read from the maintained aggregates (`domain::report`).
use super::error::{ApiError, Problem};
use super::extract::{Admin, ApiQuery};
use super::AppState;
use crate::domain::money::decimal_str;
use crate::domain::report::Figures;
use crate::domain::FieldError;
use crate::engine::reports::RankBy;
use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(daily)).routes(routes!(top_affiliates))
}

/// The longest list of top affiliates.
pub const MAX_TOP: usize = 100;
const DATE_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DailyQuery {
    /// First day (YYYY-MM-DD, a local date of `tz`); default: 30 days before `until`
    since: Option<String>,
    /// Day after the last (YYYY-MM-DD); default: tomorrow in `tz` (the window ends with today)
    until: Option<String>,
    /// IANA time zone of the days (e.g. `Asia/Jakarta`); default: the program's
    tz: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TopQuery {
    /// First day (YYYY-MM-DD, in the program's time zone); default: 30 days before `until`
    since: Option<String>,
    /// Day after the last (YYYY-MM-DD); default: tomorrow (the window ends with today)
    until: Option<String>,
    /// `commission` (default), `sales` or `orders`
    by: Option<String>,
    /// 1-100, default 10
    limit: Option<String>,
}

/// What was booked in a day (or a window).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FiguresView {
    /// Orders whose `order.placed` event was applied.
    pub orders: i64,
    /// Their eligible amount as placed.
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "2150000")]
    pub eligible_sales: Decimal,
    /// Credits booked, by kind.
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "181000")]
    pub commission: Decimal,
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "0")]
    pub tier_bonus: Decimal,
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "0")]
    pub milestone_bonus: Decimal,
    /// Debits booked (refunds, cancels, reattributions, clawbacks): 0 or less.
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "-9500")]
    pub reversals: Decimal,
    /// Manual commission adjustments, net.
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "0")]
    pub adjustments: Decimal,
    /// Points earned by orders.
    pub points_earned: i64,
    /// Points spent (redemptions captured).
    pub points_spent: i64,
}

impl From<Figures> for FiguresView {
    fn from(f: Figures) -> Self {
        Self {
            orders: f.orders,
            eligible_sales: f.eligible_sales,
            commission: f.commission,
            tier_bonus: f.tier_bonus,
            milestone_bonus: f.milestone_bonus,
            reversals: f.reversals,
            adjustments: f.adjustments,
            points_earned: f.points_earned,
            points_spent: f.points_spent,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DayView {
    /// The local date.
    #[schema(value_type = String, format = "date", example = "2026-12-01")]
    date: NaiveDate,
    /// When it starts and ends (a DST day is 23 or 25 hours).
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
    #[serde(flatten)]
    figures: FiguresView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DailyReport {
    tz: String,
    #[schema(value_type = String, format = "date")]
    since: NaiveDate,
    #[schema(value_type = String, format = "date")]
    until: NaiveDate,
    /// The program's: every amount is in it.
    currency: String,
    days: Vec<DayView>,
    /// The window's sums.
    totals: FiguresView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TopAffiliate {
    #[schema(value_type = String)]
    affiliate_id: crate::domain::ids::AffiliateId,
    /// Its name (null: the affiliate no longer exists).
    name: Option<String>,
    /// Orders it referred as direct affiliate, and their eligible sales.
    orders: i64,
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "2150000")]
    sales: Decimal,
    /// Net commission it booked at every level (adjustments included).
    #[serde(with = "decimal_str")]
    #[schema(value_type = String, format = "decimal", example = "95000")]
    commission: Decimal,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TopAffiliates {
    tz: String,
    #[schema(value_type = String, format = "date")]
    since: NaiveDate,
    #[schema(value_type = String, format = "date")]
    until: NaiveDate,
    by: String,
    currency: String,
    items: Vec<TopAffiliate>,
}

fn date(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<NaiveDate> {
    let s = raw?;
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) if s.len() == 10 => Some(d),
        _ => {
            errors.push(FieldError::new(field, "must be a date, YYYY-MM-DD"));
            None
        }
    }
}

/// The window: given dates, else the 30 days that end with today in `tz`.
fn window(since: Option<NaiveDate>, until: Option<NaiveDate>, tz: chrono_tz::Tz) -> Option<(NaiveDate, NaiveDate)> {
    let until = until.or_else(|| Utc::now().with_timezone(&tz).date_naive().checked_add_signed(TimeDelta::days(1)))?;
    let since = since.or_else(|| until.checked_sub_signed(TimeDelta::days(30)))?;
    Some((since, until))
}

/// What was booked per day — orders and their eligible sales, commissions
/// by kind, reversals, adjustments, points earned and spent — over at most
/// 366 days. Read from aggregates the money transactions maintain, never
/// from the ledger: the cost follows the window, not the history.
#[utoipa::path(get, path = "/admin/reports/daily", tag = "operations", params(DailyQuery),
    responses(
        (status = 200, description = "The window's days", body = DailyReport),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad date or time zone, or a window longer than 366 days", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn daily(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DailyQuery>,
) -> Result<Json<DailyReport>, ApiError> {
    let (_, program) = state.engine.program().await?;
    let mut errors = Vec::new();
    let since = date("since", q.since.as_deref(), &mut errors);
    let until = date("until", q.until.as_deref(), &mut errors);
    let tz = match q.tz.as_deref() {
        None => Some(program.timezone),
        Some(name) => name.parse::<chrono_tz::Tz>().ok().or_else(|| {
            errors.push(FieldError::new("tz", "not an IANA time zone name (e.g. Asia/Jakarta)"));
            None
        }),
    };
    let (Some(tz), true) = (tz, errors.is_empty()) else { return Err(ApiError::Validation(errors)) };
    let (since, until) =
        window(since, until, tz).ok_or_else(|| ApiError::Validation(vec![FieldError::new("until", "out of range")]))?;
    let days = state.engine.daily_report(since, until, tz).await?.map_err(|e| ApiError::Validation(vec![e]))?;
    let mut totals = Figures::default();
    for d in &days {
        totals.add(&d.figures);
    }
    Ok(Json(DailyReport {
        tz: tz.name().to_owned(),
        since,
        until,
        currency: program.currency.clone(),
        days: days
            .into_iter()
            .map(|d| DayView { date: d.date, start: d.start, end: d.end, figures: d.figures.into() })
            .collect(),
        totals: totals.into(),
    }))
}

/// The affiliates that booked most in a window of at most 366 days of the
/// program's time zone: by net commission at every level (default), by the
/// eligible sales of the orders they referred, or by those orders' count.
#[utoipa::path(get, path = "/admin/reports/top-affiliates", tag = "operations", params(TopQuery),
    responses(
        (status = 200, description = "The best first", body = TopAffiliates),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad date, ranking or limit, or a window longer than 366 days", body = Problem, content_type = "application/problem+json"),
    ), security(("admin" = [])))]
async fn top_affiliates(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TopQuery>,
) -> Result<Json<TopAffiliates>, ApiError> {
    let (_, program) = state.engine.program().await?;
    let mut errors = Vec::new();
    let since = date("since", q.since.as_deref(), &mut errors);
    let until = date("until", q.until.as_deref(), &mut errors);
    let by = match q.by.as_deref() {
        None | Some("commission") => RankBy::Commission,
        Some("sales") => RankBy::Sales,
        Some("orders") => RankBy::Orders,
        Some(_) => {
            errors.push(FieldError::new("by", "commission, sales or orders"));
            RankBy::Commission
        }
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=MAX_TOP).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new("limit", format!("must be 1-{MAX_TOP}")));
            10
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (since, until) = window(since, until, program.timezone)
        .ok_or_else(|| ApiError::Validation(vec![FieldError::new("until", "out of range")]))?;
    let top = state.engine.top_affiliates(since, until, by, limit).await?.map_err(|e| ApiError::Validation(vec![e]))?;
    Ok(Json(TopAffiliates {
        tz: program.timezone.name().to_owned(),
        since,
        until,
        by: match by {
            RankBy::Commission => "commission",
            RankBy::Sales => "sales",
            RankBy::Orders => "orders",
        }
        .to_owned(),
        currency: program.currency.clone(),
        items: top
            .into_iter()
            .map(|(id, day, a)| TopAffiliate {
                affiliate_id: id,
                name: a.map(|a| a.name),
                orders: day.orders,
                sales: day.sales,
                commission: day.commission,
            })
            .collect(),
    }))
}

/// The query constraints the OpenAPI document states (see `openapi::parameters`).
pub fn date_pattern() -> &'static str {
    DATE_PATTERN
}
