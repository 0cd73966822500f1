//! Manual adjustments: support credits or debits an affiliate's commission
//! or a buyer's points, with a reason. Each is idempotent by its id, moves
//! the balance through a ledger (or reward) entry of kind `adjustment` of
//! its own event, and may not take the balance below zero.
use super::ids::{AdjustmentId, AffiliateId, BuyerId};
use super::money::{self, MoneyError};
use super::FieldError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// At most this many characters of reason.
pub const MAX_REASON: usize = 500;
/// Points of one adjustment: at most this much either way.
pub const MAX_POINTS: i64 = 1_000_000_000_000;

/// What an adjustment moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjusted {
    /// An affiliate's approved commission, in the program currency (±).
    Commission { affiliate_id: AffiliateId, amount: Decimal },
    /// A buyer's points (±).
    Points { buyer_id: BuyerId, points: i64 },
}

impl Adjusted {
    pub fn subject_kind(&self) -> &'static str {
        match self {
            Adjusted::Commission { .. } => "affiliate",
            Adjusted::Points { .. } => "buyer",
        }
    }

    pub fn subject_id(&self) -> &str {
        match self {
            Adjusted::Commission { affiliate_id, .. } => affiliate_id.as_str(),
            Adjusted::Points { buyer_id, .. } => buyer_id.as_str(),
        }
    }
}

/// An adjustment as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRequest {
    pub id: AdjustmentId,
    pub adjusted: Adjusted,
    pub reason: String,
}

/// An adjustment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub request: AdjustmentRequest,
    pub event_id: super::event::EventId,
    /// The name of the key that made it.
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

/// What asking for an adjustment did.
#[derive(Debug, Clone)]
pub enum AdjustOutcome {
    Created(Adjustment),
    /// The same id and body again: the first one, unchanged.
    Repeated(Adjustment),
    /// The id is taken by another body (or another subject).
    Conflict(Adjustment),
    /// No such affiliate, or a buyer komisi has never seen.
    NotFound,
    /// It would take the balance below zero.
    Overdraw(FieldError),
}

/// A repeat of `earlier`'s id: the same adjustment again, or a conflict.
pub fn repeated(earlier: Adjustment, req: &AdjustmentRequest) -> AdjustOutcome {
    if earlier.request == *req {
        AdjustOutcome::Repeated(earlier)
    } else {
        AdjustOutcome::Conflict(earlier)
    }
}

/// A debit of the approved balance may take it to zero, not below.
pub fn check_commission(approved: Decimal, amount: Decimal) -> Result<(), FieldError> {
    if approved + amount < Decimal::ZERO {
        return Err(FieldError::new(
            "amount",
            format!("would take the approved balance ({}) below zero", money::format(approved)),
        ));
    }
    Ok(())
}

/// A debit of points may take at most what the buyer can spend (held points excluded).
pub fn check_points(spendable: i128, points: i64) -> Result<(), FieldError> {
    if points < 0 && i128::from(points).unsigned_abs() > spendable.max(0).unsigned_abs() {
        return Err(FieldError::new("points", format!("would take the spendable points ({spendable}) below zero")));
    }
    Ok(())
}

/// A signed amount: an optional `-`, then a plain decimal of at most
/// `scale` places (the program currency's) below 10^12; never zero.
pub fn parse_signed_amount(s: &str, scale: u32) -> Result<Decimal, String> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let amount = money::parse_amount(digits).map_err(|e| match e {
        MoneyError::Syntax => "must be a decimal string such as \"-12.50\" or \"40\"".to_owned(),
        e => e.to_string(),
    })?;
    if amount.scale() > scale && amount.normalize().scale() > scale {
        return Err(format!("must have at most {scale} decimal places (the program currency's)"));
    }
    if amount.is_zero() {
        return Err("must not be zero".to_owned());
    }
    Ok(if negative { -amount } else { amount })
}

/// Points: a non-zero integer of at most [`MAX_POINTS`] either way.
pub fn check_points_value(points: i64) -> Result<i64, String> {
    if points == 0 {
        return Err("must not be zero".to_owned());
    }
    if points.unsigned_abs() > MAX_POINTS.unsigned_abs() {
        return Err(format!("must be between -{MAX_POINTS} and {MAX_POINTS}"));
    }
    Ok(points)
}

/// A reason: 1–[`MAX_REASON`] characters once leading and trailing white
/// space (and byte-order marks) are trimmed, as a reattribution's.
pub fn check_reason(reason: &str) -> Result<String, String> {
    let r = reason.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if r.is_empty() || r.chars().count() > MAX_REASON {
        return Err(format!("must be 1-{MAX_REASON} characters (not counting spaces around them)"));
    }
    Ok(r.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn signed_amounts_parse_with_the_currency_scale_and_never_zero() {
        assert_eq!(parse_signed_amount("-12.50", 2), Ok(d("-12.50")));
        assert_eq!(parse_signed_amount("40", 0), Ok(d("40")));
        assert!(parse_signed_amount("1.5", 0).unwrap_err().contains("at most 0 decimal places"));
        assert!(parse_signed_amount("0", 2).unwrap_err().contains("zero"));
        assert!(parse_signed_amount("-0.00", 2).unwrap_err().contains("zero"));
        assert!(parse_signed_amount("+5", 2).is_err());
        assert!(parse_signed_amount("--5", 2).is_err());
        assert!(parse_signed_amount("1e3", 2).is_err());
        assert!(parse_signed_amount("1000000000000", 2).unwrap_err().contains("below"));
        assert_eq!(parse_signed_amount("-999999999999.99", 2), Ok(d("-999999999999.99")));
    }

    #[test]
    fn a_debit_may_empty_a_balance_but_not_overdraw_it() {
        assert!(check_commission(d("100"), d("-100")).is_ok());
        let e = check_commission(d("100"), d("-100.01")).unwrap_err();
        assert_eq!(e.field, "amount");
        assert!(check_commission(Decimal::ZERO, d("5")).is_ok());
        assert!(check_points(50, -50).is_ok());
        assert_eq!(check_points(50, -51).unwrap_err().field, "points");
        assert!(check_points(-20, 10).is_ok(), "a credit is fine even with a debt");
        assert!(check_points(-20, -1).is_err());
    }

    #[test]
    fn reasons_and_points_have_bounds() {
        assert_eq!(check_reason("  goodwill  "), Ok("goodwill".to_owned()));
        assert!(check_reason("   ").is_err());
        assert!(check_reason(&"x".repeat(MAX_REASON + 1)).is_err());
        assert!(check_reason("\u{feff} x \n").is_ok());
        assert!(check_points_value(0).is_err());
        assert!(check_points_value(MAX_POINTS).is_ok());
        assert!(check_points_value(-MAX_POINTS - 1).is_err());
        assert!(check_points_value(i64::MIN).is_err());
    }

    proptest! {
        /// Whatever the balance and the amount, an accepted adjustment
        /// leaves the balance at zero or above.
        #[test]
        fn an_accepted_adjustment_never_leaves_a_negative_balance(
            approved in 0i64..1_000_000_000, amount in -2_000_000_000i64..2_000_000_000,
        ) {
            let (approved, amount) = (Decimal::new(approved, 2), Decimal::new(amount, 2));
            if check_commission(approved, amount).is_ok() {
                prop_assert!(approved + amount >= Decimal::ZERO);
            } else {
                prop_assert!(approved + amount < Decimal::ZERO);
            }
        }

        #[test]
        fn a_points_debit_is_accepted_exactly_up_to_what_can_be_spent(
            net in -1_000_000i128..1_000_000, points in -2_000_000i64..2_000_000,
        ) {
            let ok = check_points(net.max(0), points).is_ok();
            prop_assert_eq!(ok, points >= 0 || i128::from(-points) <= net.max(0));
        }

        #[test]
        fn a_formatted_signed_amount_parses_back(cents in -99_999_999_999_999i64..99_999_999_999_999) {
            prop_assume!(cents != 0);
            let amount = Decimal::new(cents, 2);
            prop_assert_eq!(parse_signed_amount(&amount.to_string(), 2), Ok(amount));
        }
    }
}
