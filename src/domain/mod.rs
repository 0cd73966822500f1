//! The pure commission domain: identifiers, money, the program, orders,
//! affiliates, events, entitlement (SPEC §4 rules 1–9) and ledger deltas.
//! No I/O, no async: every rule lives here once, and the layers above only
//! fetch what a rule needs and write what it decided.
pub mod adjustment;
pub mod affiliate;
pub mod attribution;
pub mod audit;
pub mod bundle;
pub mod caps;
pub mod currency;
pub mod entitlement;
pub mod event;
pub mod explain;
pub mod ids;
pub mod intake;
pub mod ledger;
pub mod lifecycle;
pub mod money;
pub mod order;
pub mod payload;
pub mod payout;
pub mod program;
pub mod reconcile;
pub mod record;
pub mod report;
pub mod simulation;
pub mod wallet;
pub mod webhook;

/// One problem with one input field, reported in a 422 `errors` list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[cfg(test)]
mod proptests;
