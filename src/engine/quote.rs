//! A checkout quote: what an order would pay now, computed by the event
//! transaction's own functions (`resolve_contexts`, `entitle`) on a
//! read-only view, storing nothing — so a quote and the order placed later
//! agree whenever nothing they read changed in between.
use super::apply::{resolve_contexts, ContextAsk, Plan};
use super::attribution::ClickKey;
use super::Result;
use crate::domain::attribution::{decide, Claims, ClickCheck, CouponCode, Decision, Link, LinkMode, Source};
use crate::domain::caps::Cut;
use crate::domain::currency::{decide_fx, Fx, FxAsk};
use crate::domain::entitlement::Entitlement;
use crate::domain::entitlement::{CommissionKind, RewardKind};
use crate::domain::ids::{AffiliateId, BuyerId, OrderId};
use crate::domain::order::{Attribution, NewItem, OrderState};
use crate::domain::program::Program;
use crate::domain::wallet::spendable_of;
use crate::domain::FieldError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// An order as a quote sees it.
#[derive(Debug, Clone)]
pub struct QuoteRequest {
    /// The order id, when the storefront has one already: it breaks ties
    /// with orders placed at the same instant, as it will for the order.
    pub id: Option<OrderId>,
    pub buyer_id: BuyerId,
    pub attribution: Option<Attribution>,
    pub coupons: Vec<CouponCode>,
    pub click_ids: Vec<String>,
    pub buyer_email_hash: Option<crate::domain::affiliate::EmailHash>,
    pub currency: String,
    pub fx_rate: Option<Decimal>,
    pub placed_at: Option<DateTime<Utc>>,
    pub items: Vec<NewItem>,
}

#[derive(Debug, Clone)]
pub struct Quote {
    pub program_version: u64,
    /// The program currency: every amount of the quote is in it.
    pub currency: String,
    /// The rate the order would be converted at (another currency than the program's).
    pub fx: Option<Fx>,
    /// The order's total as bought, in the program currency.
    pub converted_total: Decimal,
    /// The currency the order is in.
    pub order_currency: String,
    pub placed_at: DateTime<Utc>,
    /// The affiliate the order would be attributed to.
    pub affiliate_id: Option<AffiliateId>,
    /// How: the decision intake would take now.
    pub attribution: Decision,
    /// Its lines as the caps and budgets would pay them now.
    pub entitlement: Entitlement,
    /// What they would cut from each line.
    pub cuts: Cuts,
    /// The buyer's points that may be held now.
    pub spendable_points: i128,
    /// Currency per point when spent.
    pub points_value: Decimal,
}

/// A quote's cuts: per (affiliate, kind) and per reward kind.
#[derive(Debug, Clone, Default)]
pub struct Cuts {
    pub commissions: HashMap<(AffiliateId, CommissionKind), Option<Cut<Decimal>>>,
    pub rewards: HashMap<RewardKind, Option<Cut<i64>>>,
}

#[derive(Debug, Clone)]
pub enum QuoteOutcome {
    Quoted(Box<Quote>),
    /// Refused as intake would refuse the order (currency, minor units, no rate).
    Invalid(Vec<FieldError>),
}

/// Without an id a quote sorts after every order placed at the same instant
/// ('~' is above every character an id may hold).
const LAST_ID: &str = "~";

impl super::Engine {
    /// The attribution intake would decide for the order now, from the same
    /// rule (`attribution::decide`), read outside a transaction.
    async fn decide_for_quote(
        &self,
        req: &QuoteRequest,
        program: &Program,
        placed_at: DateTime<Utc>,
    ) -> Result<Decision> {
        let store = self.store();
        let code = match &req.attribution {
            Some(a @ Attribution::ReferralCode(c)) => {
                Some((Source::ReferralCode, c.as_str(), store.attributed(a).await?))
            }
            Some(a @ Attribution::AffiliateId(id)) => {
                Some((Source::AffiliateId, id.as_str(), store.attributed(a).await?))
            }
            None => None,
        };
        let holders = store.coupon_holders(&req.coupons.iter().collect::<Vec<_>>()).await?;
        let mut clicks = match req.click_ids.is_empty() {
            true => Vec::new(),
            false => ClickKey::check_ids(&self.inner.click_key.get(store).await?, &req.click_ids),
        };
        for (check, raw) in clicks.iter_mut().zip(&req.click_ids) {
            if let ClickCheck::Valid(c) = check {
                if store.attributed(&Attribution::AffiliateId(c.affiliate_id.clone())).await?.is_none() {
                    *check = ClickCheck::Invalid(raw.clone());
                }
            }
        }
        let link = match program.attribution.customer_link {
            LinkMode::Off => None,
            _ => store.customer_link(&req.buyer_id).await?.map(|(l, suspended)| Link {
                affiliate_id: l.affiliate_id,
                linked_at: l.linked_at,
                expires_at: l.expires_at,
                affiliate_suspended: suspended,
            }),
        };
        let claims = Claims {
            link: link.as_ref(),
            coupons: req.coupons.iter().map(|c| (c.as_str(), holders.get(c.as_str()).cloned())).collect(),
            clicks,
            code,
        };
        Ok(decide(&claims, &program.attribution, placed_at, Utc::now()))
    }

    pub async fn quote(&self, req: &QuoteRequest) -> Result<QuoteOutcome> {
        let (version, program) = self.program().await?;
        let placed_at = req.placed_at.unwrap_or_else(Utc::now);
        let table = match req.currency != program.currency && req.fx_rate.is_none() {
            true => self.store().rate_table_at(&program.currency, placed_at).await?.map(|(_, t)| t),
            false => None,
        };
        let ask = FxAsk { currency: &req.currency, fx_rate: req.fx_rate, items: &req.items };
        let fx = match decide_fx(ask, &program, table.as_ref(), placed_at) {
            Ok(fx) => fx,
            Err(errors) => return Ok(QuoteOutcome::Invalid(errors)),
        };
        let attribution = self.decide_for_quote(req, &program, placed_at).await?;
        let direct = attribution.affiliate_id.clone();
        let order_id = req.id.clone().unwrap_or_else(|| OrderId::from_trusted(LAST_ID.to_owned()));
        let ask = ContextAsk {
            order_id: &order_id,
            buyer_id: &req.buyer_id,
            direct: direct.as_ref(),
            placed_at,
            buyer_email_hash: req.buyer_email_hash.as_ref(),
        };
        let mut view = self.store().begin_read().await?;
        let mut contexts = resolve_contexts(view.as_mut(), &[(ask, program.as_ref())]).await?;
        let ctx = contexts.remove(&order_id).ok_or_else(|| super::corrupt("quote context missing"))?;
        let state =
            OrderState { fx_rate: fx.as_ref().map(|f| f.rate), ..OrderState::placed(&req.buyer_id, &req.items) };
        let converted_total = state.items.iter().map(|i| state.line_amount(i, i.quantity, &program)).sum();
        // The caps and budgets as they stand now (read, not locked).
        let plan = Plan::for_quote(program.clone(), state, ctx, placed_at);
        let mut keys = plan.counters();
        keys.sort();
        keys.dedup();
        let mut used = view.counters(&keys, false).await?;
        drop(view);
        let (commissions, points) = plan.charge(&mut used);
        let (mut entitlement, delta) = (plan.entitled().clone(), plan.delta());
        let mut cuts = Cuts::default();
        for (line, (pays, cut)) in delta.commissions.iter().zip(commissions) {
            if let Some(e) =
                entitlement.commissions.iter_mut().find(|e| e.affiliate_id == line.affiliate_id && e.kind == line.kind)
            {
                e.amount = pays;
                cuts.commissions.insert((line.affiliate_id.clone(), line.kind), cut);
            }
        }
        for (line, (pays, cut)) in delta.rewards.iter().zip(points) {
            if let Some(e) = entitlement.rewards.iter_mut().find(|e| e.kind == line.kind) {
                e.points = pays;
                cuts.rewards.insert(line.kind, cut);
            }
        }
        let spendable_points = spendable_of(self.store().buyer_rewards(&req.buyer_id).await?.points);
        Ok(QuoteOutcome::Quoted(Box::new(Quote {
            program_version: version,
            currency: program.currency.clone(),
            fx,
            converted_total,
            order_currency: req.currency.clone(),
            placed_at,
            affiliate_id: direct,
            attribution,
            entitlement,
            cuts,
            spendable_points,
            points_value: program.points_value,
        })))
    }
}
