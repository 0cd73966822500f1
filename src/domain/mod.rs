//! The pure commission domain: identifiers, money, the program, order state,
//! entitlement (SPEC §4 rules 1–9) and ledger deltas. No I/O, no async.
pub mod entitlement;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod order;
pub mod program;

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
