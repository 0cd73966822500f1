//! `GET /v1/orders/{id}/explanation`: why each line of an order is what it
//! is (docs/RULES.md), step by step, with the ledger entries that wrote it.
use super::error::{ApiError, Problem};
use super::extract::{ApiPath, Storefront};
use super::AppState;
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::explain::Step;
use crate::domain::ids::{AffiliateId, OrderId};
use crate::engine::Explained;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(explanation))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StepView {
    /// The rule as numbered in docs/RULES.md ("1"–"9"), or "caps".
    rule: &'static str,
    text: String,
}

impl From<&Step> for StepView {
    fn from(s: &Step) -> Self {
        Self { rule: s.rule, text: s.text.clone() }
    }
}

/// A ledger entry of the line: what one event wrote.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EntryView {
    #[schema(value_type = crate::domain::event::EventId)]
    event_id: String,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    amount: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    capped_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "crate::domain::money::opt_decimal_str")]
    #[schema(value_type = Option<String>, example = "5000", format = "decimal")]
    cut: Option<Decimal>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ExplainedLine {
    affiliate_id: AffiliateId,
    level: u8,
    kind: CommissionKind,
    /// What the rules entitle the line to now (0: nothing any more).
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    amount: Decimal,
    /// Σ of its ledger entries: equal to `amount` once the order's events are applied.
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "95000", format = "decimal")]
    paid: Decimal,
    summary: String,
    steps: Vec<StepView>,
    entries: Vec<EntryView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PointsView {
    kind: RewardKind,
    points: i64,
    /// Σ of its reward entries.
    paid: i64,
    summary: String,
    steps: Vec<StepView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ItemView {
    sku: String,
    category: String,
    quantity: u32,
    refunded: u32,
    /// Net quantity × unit price, in the program currency.
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "150000", format = "decimal")]
    amount: Decimal,
    excluded: bool,
    #[serde(with = "crate::domain::money::opt_decimal_str")]
    #[schema(value_type = Option<String>, example = "0.1", format = "decimal")]
    level1_rate: Option<Decimal>,
    /// `category_rates` or `levels[0]` (null: excluded).
    rate_from: Option<&'static str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ExplanationView {
    order_id: OrderId,
    program_version: u64,
    /// The program currency: every amount is in it.
    currency: String,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "2150000", format = "decimal")]
    eligible_amount: Decimal,
    #[serde(with = "crate::domain::money::decimal_str")]
    #[schema(value_type = String, example = "2150000", format = "decimal")]
    original_eligible_amount: Decimal,
    items: Vec<ItemView>,
    /// Why no commission is paid (rule 2; null: they are).
    no_commission_reason: Option<String>,
    commissions: Vec<ExplainedLine>,
    rewards: Vec<PointsView>,
}

/// Why each line of an order is what it is: for every commission and reward
/// line, the rules that produced it with their inputs and amounts, under the
/// order's frozen context, program version and caps; and the ledger entries
/// each event wrote for it.
#[utoipa::path(get, path = "/v1/orders/{id}/explanation", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The explanation", body = ExplanationView),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No event of the order was applied yet", body = Problem, content_type = "application/problem+json"),
    ), security(("storefront" = [])))]
async fn explanation(
    _: Storefront,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExplanationView>, ApiError> {
    let id = OrderId::parse(&id).map_err(|_| ApiError::NotFound("order"))?;
    let x = match state.engine.explain(&id).await? {
        Explained::Explained(x) => *x,
        Explained::NotFound => return Err(ApiError::NotFound("order")),
        Explained::NotProcessed => {
            return Err(ApiError::Conflict("the order is not processed yet: nothing to explain".into()))
        }
    };
    let (r, e) = (x.record, x.explanation);
    let entries_of = |a: &AffiliateId, k: CommissionKind| -> Vec<EntryView> {
        r.commissions
            .iter()
            .filter(|c| &c.affiliate_id == a && c.kind == k)
            .map(|c| EntryView {
                event_id: c.event_id.clone(),
                amount: c.amount,
                capped_by: c.cut.map(|cut| cut.by.as_str().to_owned()),
                cut: c.cut.map(|cut| cut.amount),
                created_at: c.created_at,
            })
            .collect()
    };
    let mut commissions: Vec<ExplainedLine> = e
        .commissions
        .iter()
        .map(|l| {
            let entries = entries_of(&l.affiliate_id, l.kind);
            ExplainedLine {
                affiliate_id: l.affiliate_id.clone(),
                level: l.level,
                kind: l.kind,
                amount: l.amount,
                paid: entries.iter().map(|e| e.amount).sum(),
                summary: l.summary.clone(),
                steps: l.steps.iter().map(Into::into).collect(),
                entries,
            }
        })
        .collect();
    // Lines the order paid before and is entitled to nothing now (refunded,
    // cancelled, or moved to another affiliate).
    let mut gone: Vec<(AffiliateId, CommissionKind, u8)> = Vec::new();
    for c in &r.commissions {
        let known = commissions.iter().any(|l| l.affiliate_id == c.affiliate_id && l.kind == c.kind);
        if !known && !gone.iter().any(|(a, k, _)| *a == c.affiliate_id && *k == c.kind) {
            gone.push((c.affiliate_id.clone(), c.kind, c.level));
        }
    }
    for (a, k, level) in gone {
        let entries = entries_of(&a, k);
        commissions.push(ExplainedLine {
            summary: format!(
                "{} is entitled to nothing on the order now: its entries reverse what was paid",
                a.as_str()
            ),
            affiliate_id: a,
            level,
            kind: k,
            amount: Decimal::ZERO,
            paid: entries.iter().map(|e| e.amount).sum(),
            steps: Vec::new(),
            entries,
        });
    }
    let rewards = e
        .rewards
        .iter()
        .map(|p| PointsView {
            kind: p.kind,
            points: p.points,
            paid: r.rewards.iter().filter(|w| w.kind == p.kind).map(|w| w.points).sum(),
            summary: p.summary.clone(),
            steps: p.steps.iter().map(Into::into).collect(),
        })
        .collect();
    Ok(Json(ExplanationView {
        order_id: r.id,
        program_version: r.program_version,
        currency: x.currency,
        eligible_amount: e.eligible_amount,
        original_eligible_amount: e.original_eligible_amount,
        items: e
            .items
            .into_iter()
            .map(|i| ItemView {
                sku: i.sku,
                category: i.category,
                quantity: i.quantity,
                refunded: i.refunded,
                amount: i.amount,
                excluded: i.excluded,
                level1_rate: i.level1_rate,
                rate_from: i.rate_from,
            })
            .collect(),
        no_commission_reason: e.no_commission_reason.map(|r| r.as_str().to_owned()),
        commissions,
        rewards,
    }))
}
