//! Money helpers: strict parsing of decimal strings and the rounding modes.
//! Money is always `rust_decimal::Decimal`, never a float.
use rust_decimal::{Decimal, RoundingStrategy};

/// How amounts are rounded to the program's scale (SPEC §4 rule 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    Floor,
    HalfEven,
    HalfUp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal string such as \"1250.50\" (no sign, exponent or spaces)")]
    Syntax,
    #[error("must have at most {0} decimal places")]
    TooManyDecimals(u32),
    #[error("must be below {0}")]
    TooLarge(String),
    #[error("must be at most 1")]
    RateAboveOne,
}

/// Parses a non-negative plain decimal string: `^[0-9]+(\.[0-9]+)?$`, with at most
/// `max_decimals` decimal places and strictly below 10^`max_int_digits`.
/// Rejects signs, exponents, whitespace, leading '.', trailing '.', empty strings.
pub fn parse_non_negative(s: &str, max_decimals: u32, max_int_digits: u32) -> Result<Decimal, MoneyError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(MoneyError::Syntax);
    }
    let frac = frac.unwrap_or("");
    if frac.len() as u32 > max_decimals {
        return Err(MoneyError::TooManyDecimals(max_decimals));
    }
    let significant = int.trim_start_matches('0');
    if significant.len() as u32 > max_int_digits {
        return Err(MoneyError::TooLarge(format!("10^{max_int_digits}")));
    }
    let int = if significant.is_empty() { "0" } else { significant };
    let text = if frac.is_empty() { int.to_owned() } else { format!("{int}.{frac}") };
    Decimal::from_str_exact(&text).map_err(|_| MoneyError::Syntax)
}

/// A unit price or order amount: ≥ 0, at most 4 decimals, below 10^12.
pub fn parse_amount(s: &str) -> Result<Decimal, MoneyError> {
    parse_non_negative(s, 4, 12)
}

/// A rate: a plain decimal string in [0, 1], at most 6 decimals.
pub fn parse_rate(s: &str) -> Result<Decimal, MoneyError> {
    // One integer digit bounds the work on absurd input; anything of two or more
    // digits is above 1, which is the message the user needs, not "below 10^1".
    match parse_non_negative(s, 6, 1) {
        Ok(r) if r > Decimal::ONE => Err(MoneyError::RateAboveOne),
        Err(MoneyError::TooLarge(_)) => Err(MoneyError::RateAboveOne),
        other => other,
    }
}

/// Rounds `amount` to `scale` decimal places with `mode`.
pub fn round(amount: Decimal, scale: u32, mode: Rounding) -> Decimal {
    let strategy = match mode {
        Rounding::Floor => RoundingStrategy::ToNegativeInfinity,
        Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
        Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
    };
    amount.round_dp_with_strategy(scale, strategy)
}

/// Formats an amount for JSON: a plain decimal string with no exponent and no
/// trailing zeros beyond `scale`' (e.g. 95000 with scale 0 → "95000", -80000 → "-80000").
pub fn format(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// Serde for money: a JSON string holding a plain decimal ("95000", "-80000"),
/// for `#[serde(with = "crate::domain::money::decimal_str")]`.
pub mod decimal_str {
    use rust_decimal::Decimal;
    pub fn serialize<S: serde::Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*amount))
    }
}

/// [`decimal_str`] for an optional amount (null when absent).
pub mod opt_decimal_str {
    use rust_decimal::Decimal;
    pub fn serialize<S: serde::Serializer>(amount: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match amount {
            Some(a) => s.serialize_str(&super::format(*a)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn parses_plain_decimal_strings() {
        assert_eq!(parse_amount("150000"), Ok(d("150000")));
        assert_eq!(parse_amount("1250.50"), Ok(d("1250.50")));
        assert_eq!(parse_amount("0"), Ok(d("0")));
        assert_eq!(parse_amount("007"), Ok(d("7")));
        assert_eq!(parse_amount("999999999999.9999"), Ok(d("999999999999.9999")));
        // Leading zeros do not count towards the size limit.
        assert_eq!(parse_amount("0000000000000000000001.5"), Ok(d("1.5")));
        assert_eq!(parse_non_negative("12.5", 1, 2), Ok(d("12.5")));
    }

    #[test]
    fn refuses_every_other_form() {
        for bad in ["", "1e5", "1E5", "-1", "+1", " 1", "1 ", "1.", ".5", "NaN", "inf", "1,5", "0x10", "1.2.3"] {
            assert_eq!(parse_amount(bad), Err(MoneyError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_amount("1.23456"), Err(MoneyError::TooManyDecimals(4)));
        assert_eq!(parse_amount("999999999999.99999"), Err(MoneyError::TooManyDecimals(4)));
        assert_eq!(parse_non_negative("100", 0, 2), Err(MoneyError::TooLarge("10^2".into())));
        assert_eq!(parse_amount("1000000000000"), Err(MoneyError::TooLarge("10^12".into())));
        assert_eq!(parse_amount(&"9".repeat(400)), Err(MoneyError::TooLarge("10^12".into())));
    }

    #[test]
    fn rates_lie_between_zero_and_one() {
        assert_eq!(parse_rate("0.10"), Ok(d("0.10")));
        assert_eq!(parse_rate("1"), Ok(d("1")));
        assert_eq!(parse_rate("1.5"), Err(MoneyError::RateAboveOne));
        assert_eq!(parse_rate("10"), Err(MoneyError::RateAboveOne));
        assert_eq!(parse_rate("0.1234567"), Err(MoneyError::TooManyDecimals(6)));
        assert_eq!(parse_rate("0"), Ok(d("0")));
        assert_eq!(parse_rate("1.0"), Ok(d("1")));
        assert_eq!(parse_rate("1.000001"), Err(MoneyError::RateAboveOne));
        assert_eq!(parse_rate("1234567890123456789012345678.123456"), Err(MoneyError::RateAboveOne));
        assert_eq!(parse_rate(&"9".repeat(400)), Err(MoneyError::RateAboveOne));
        for bad in ["", "-0.1", "1e-1", ".5", "0.", " 0.1", "NaN"] {
            assert_eq!(parse_rate(bad), Err(MoneyError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn rounds_with_each_mode() {
        assert_eq!(round(d("2.5"), 0, Rounding::Floor), d("2"));
        assert_eq!(round(d("2.5"), 0, Rounding::HalfEven), d("2"));
        assert_eq!(round(d("3.5"), 0, Rounding::HalfEven), d("4"));
        assert_eq!(round(d("2.5"), 0, Rounding::HalfUp), d("3"));
        assert_eq!(round(d("2.4999"), 0, Rounding::HalfUp), d("2"));
        assert_eq!(round(d("1.005"), 2, Rounding::HalfUp), d("1.01"));
        assert_eq!(round(d("1.005"), 2, Rounding::HalfEven), d("1.00"));
        assert_eq!(round(d("1.009"), 2, Rounding::Floor), d("1.00"));
        assert_eq!(round(d("-1.5"), 0, Rounding::Floor), d("-2"));
    }

    #[test]
    fn formats_without_exponent_or_trailing_zeros() {
        assert_eq!(format(d("95000")), "95000");
        assert_eq!(format(d("95000.00")), "95000");
        assert_eq!(format(d("1250.50")), "1250.5");
        assert_eq!(format(d("-80000")), "-80000");
        assert_eq!(format(d("0.000")), "0");
        assert_eq!(format(d("100000000000000000000")), "100000000000000000000");
    }
}
