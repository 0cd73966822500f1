//! Orders in other currencies than the program's (docs/RULES.md
//! "Currencies"): the ISO 4217 table of minor units, exchange rates (from
//! the order, or from the operator's rate table), and the one conversion
//! rule — each item line converted once, at the rate frozen on the order at
//! intake, rounded with the program's rounding at the program's scale.
//! Every later event of the order converts with that same rate, so a full
//! refund reverses exactly what the order paid.
use super::money::{self, Rounding};
use super::order::{NewItem, NewOrder, MAX_ORDER_TOTAL_DIGITS};
use super::program::Program;
use super::FieldError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// ISO 4217 active codes and their minor units (decimal places), as
/// published by the maintenance agency (funds and precious metals left out:
/// nobody prices a basket in them). Sorted by code.
#[rustfmt::skip]
const MINOR_UNITS: &[(&str, u32)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2),
    ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0),
    ("BMD", 2), ("BND", 2), ("BOB", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2),
    ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHF", 2), ("CLP", 0), ("CNY", 2), ("COP", 2), ("CRC", 2),
    ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2),
    ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2),
    ("GIP", 2), ("GMD", 2), ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2),
    ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2),
    ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2),
    ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2),
    ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2),
    ("NGN", 2), ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2),
    ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2),
    ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2),
    ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2),
    ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2), ("UYU", 2), ("UZS", 2), ("VED", 2),
    ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XCG", 2), ("XOF", 0),
    ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// The decimal places of an ISO 4217 currency; None for a code not in the table.
pub fn minor_units(code: &str) -> Option<u32> {
    MINOR_UNITS.binary_search_by(|(c, _)| (*c).cmp(code)).ok().map(|i| MINOR_UNITS[i].1)
}

/// Whether `code` is an ISO 4217 currency code komisi knows.
pub fn is_iso(code: &str) -> bool {
    minor_units(code).is_some()
}

/// The most significant digits a rate may have.
pub const MAX_RATE_DIGITS: usize = 12;

/// Parses an exchange rate: a plain positive decimal string ("15650.25",
/// "0.0000638"), no sign or exponent, at most [`MAX_RATE_DIGITS`]
/// significant digits (leading zeros are not significant; trailing zeros
/// after the point are, as written).
pub fn parse_rate(s: &str) -> Result<Decimal, String> {
    let bad = || {
        format!("must be a positive decimal string with at most {MAX_RATE_DIGITS} significant digits, such as \"15650.25\" (no sign or exponent)")
    };
    // The syntax is an amount's; at most 12 integer digits, and (past
    // leading zeros) a scale a Decimal holds.
    let rate = money::parse_non_negative(s, 27, MAX_RATE_DIGITS as u32).map_err(|_| bad())?;
    if rate.is_zero() {
        return Err("must be above 0".to_owned());
    }
    if s.replace('.', "").trim_start_matches('0').len() > MAX_RATE_DIGITS {
        return Err(bad());
    }
    Ok(rate)
}

/// Where an order's rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FxSource {
    /// The order carried `fx_rate`.
    Order,
    /// The operator's rate table in force when the order was placed.
    Table,
}

impl FxSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Table => "table",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "order" => Some(Self::Order),
            "table" => Some(Self::Table),
            _ => None,
        }
    }
}

/// The rate frozen on an order in another currency than the program's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fx {
    /// 1 unit of the order's currency = `rate` units of the program's.
    pub rate: Decimal,
    pub source: FxSource,
    /// The rate table's `as_of` (source `table` only).
    pub as_of: Option<DateTime<Utc>>,
}

/// One version of the operator's rate table: what one unit of each currency
/// is worth in `base` (the program currency) from `as_of` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    pub base: String,
    pub as_of: DateTime<Utc>,
    pub rates: BTreeMap<String, Decimal>,
}

/// The most currencies one rate table may hold.
pub const MAX_TABLE_RATES: usize = 200;

/// Validates a rate table's parts (the base must be the program currency:
/// the caller checks that). Every problem at once.
pub fn check_table(
    base: &str,
    rates: &BTreeMap<String, String>,
    as_of: DateTime<Utc>,
) -> Result<RateTable, Vec<FieldError>> {
    let mut errors = Vec::new();
    if !is_iso(base) {
        errors.push(FieldError::new("base", "must be an ISO 4217 currency code"));
    }
    if rates.is_empty() || rates.len() > MAX_TABLE_RATES {
        errors.push(FieldError::new("rates", format!("must hold 1-{MAX_TABLE_RATES} currencies")));
    }
    let mut parsed = BTreeMap::new();
    for (code, rate) in rates {
        if !is_iso(code) {
            errors.push(FieldError::new(format!("rates.{code}"), "must be an ISO 4217 currency code"));
        } else if code == base {
            errors.push(FieldError::new(format!("rates.{code}"), "the base currency has no rate"));
        } else {
            match parse_rate(rate) {
                Ok(r) => {
                    parsed.insert(code.clone(), r);
                }
                Err(why) => errors.push(FieldError::new(format!("rates.{code}"), why)),
            }
        }
    }
    if errors.is_empty() {
        Ok(RateTable { base: base.to_owned(), as_of, rates: parsed })
    } else {
        Err(errors)
    }
}

/// A line of `quantity` units at `unit_price` (order currency), in the
/// program currency: converted once and rounded with the program's rounding
/// at the program's scale. Without a rate (an order in the program
/// currency) the amount is exact, as it always was.
pub fn line_amount(
    quantity: u32,
    unit_price: Decimal,
    rate: Option<Decimal>,
    scale: u32,
    rounding: Rounding,
) -> Decimal {
    let amount = Decimal::from(quantity) * unit_price;
    match rate {
        None => amount,
        Some(rate) => money::round(amount * rate, scale, rounding),
    }
}

/// Whether `amount` has at most `places` decimal places (trailing zeros aside).
pub fn fits_minor_units(amount: Decimal, places: u32) -> bool {
    amount.normalize().scale() <= places
}

/// What [`decide_fx`] reads of an order (or of a quote).
#[derive(Debug, Clone, Copy)]
pub struct FxAsk<'a> {
    pub currency: &'a str,
    pub fx_rate: Option<Decimal>,
    pub items: &'a [NewItem],
}

impl<'a> From<&'a NewOrder> for FxAsk<'a> {
    fn from(o: &'a NewOrder) -> Self {
        Self { currency: &o.currency, fx_rate: o.fx_rate, items: &o.items }
    }
}

/// How far ahead a rate table may be dated (rates published in advance).
pub const AS_OF_MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// Whether a rate table may be dated `t`, seen at `now`: a time an order
/// could be placed at (not before 2000, not a leap second), up to a year ahead.
pub fn check_as_of(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    match super::order::check_placed_at(t, now + AS_OF_MAX_AHEAD - super::order::PLACED_AT_MAX_AHEAD) {
        Err(_) if t > now => Err("must not be more than a year in the future".into()),
        other => other,
    }
}

/// The rule for an order's currency at intake. In the program currency: no
/// rate (`fx_rate` absent, or 1). In another: every unit price within the
/// currency's minor units, a rate from the order or else from `table` (the
/// table in force at the order's placed_at, if any), and the order's total,
/// converted, below the order-total bound. Every problem at once; an order
/// with no rate is refused, never accepted to die later for want of one.
pub fn decide_fx(
    order: FxAsk<'_>,
    program: &Program,
    table: Option<&RateTable>,
    placed_at: DateTime<Utc>,
) -> Result<Option<Fx>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if order.currency == program.currency {
        return match order.fx_rate {
            Some(r) if r != Decimal::ONE => Err(vec![FieldError::new(
                "fx_rate",
                format!("an order in the program currency ({}) has no rate: leave fx_rate out", program.currency),
            )]),
            _ => Ok(None),
        };
    }
    let places = minor_units(order.currency).unwrap_or(0);
    for (n, item) in order.items.iter().enumerate() {
        if !fits_minor_units(item.unit_price, places) {
            errors.push(FieldError::new(
                format!("items[{n}].unit_price"),
                format!("must have at most {places} decimal places in {}", order.currency),
            ));
        }
    }
    let fx = match (order.fx_rate, table.and_then(|t| t.rates.get(order.currency).map(|r| (t, r)))) {
        (Some(rate), _) => Some(Fx { rate, source: FxSource::Order, as_of: None }),
        (None, Some((t, &rate))) => Some(Fx { rate, source: FxSource::Table, as_of: Some(t.as_of) }),
        (None, None) => {
            errors.push(FieldError::new(
                "currency",
                format!(
                    "no rate from {} into the program currency {} is known at {}: send fx_rate, or put a rate \
                     table with it (PUT /admin/fx-rates)",
                    order.currency,
                    program.currency,
                    placed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
            None
        }
    };
    if let Some(fx) = &fx {
        let bound = Decimal::from(10u64.pow(MAX_ORDER_TOTAL_DIGITS));
        let total = order.items.iter().try_fold(Decimal::ZERO, |sum, i| {
            let line = Decimal::from(i.quantity).checked_mul(i.unit_price)?.checked_mul(fx.rate)?;
            sum.checked_add(money::round(line, program.scale, program.rounding))
        });
        if total.is_none_or(|t| t >= bound) {
            errors.push(FieldError::new(
                "items",
                format!(
                    "the order total converted into {} must be below 10^{MAX_ORDER_TOTAL_DIGITS}",
                    program.currency
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(fx)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_table_is_sorted_and_knows_the_exceptions() {
        assert!(MINOR_UNITS.windows(2).all(|w| w[0].0 < w[1].0), "binary search needs the table sorted");
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("USD"), Some(2));
        assert_eq!(minor_units("KWD"), Some(3));
        assert_eq!(minor_units("IDR"), Some(2));
        assert_eq!(minor_units("XAU"), None);
        assert_eq!(minor_units("usd"), None);
        assert_eq!(minor_units("ABC"), None);
    }

    #[test]
    fn rates_are_positive_plain_decimals_of_at_most_twelve_significant_digits() {
        assert_eq!(parse_rate("15650.25"), Ok(d("15650.25")));
        assert_eq!(parse_rate("0.000063897712"), Ok(d("0.000063897712")));
        assert_eq!(parse_rate("123456789012"), Ok(d("123456789012")));
        assert_eq!(parse_rate("007.5"), Ok(d("7.5")));
        for bad in [
            "0",
            "0.000",
            "-1",
            "+1",
            "1e3",
            "1E3",
            "NaN",
            "inf",
            "",
            ".5",
            "5.",
            " 1",
            "1 ",
            "1,5",
            "1234567890123",
            "0.1234567890123",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_rate("0").unwrap_err(), "must be above 0");
    }

    #[test]
    fn a_line_converts_once_with_the_programs_rounding() {
        // 3 × USD 19.99 at 15650.25 = 938 545.4925 → IDR scale 0.
        let r = Some(d("15650.25"));
        assert_eq!(line_amount(3, d("19.99"), r, 0, Rounding::HalfUp), d("938545"));
        assert_eq!(line_amount(3, d("19.99"), r, 2, Rounding::HalfUp), d("938545.49"));
        assert_eq!(line_amount(3, d("19.99"), r, 2, Rounding::Floor), d("938545.49"));
        assert_eq!(line_amount(3, d("19.99"), r, 3, Rounding::HalfEven), d("938545.492"));
        assert_eq!(line_amount(3, d("19.99"), r, 3, Rounding::HalfUp), d("938545.493"));
        assert_eq!(line_amount(1, d("0.5"), Some(d("3")), 0, Rounding::HalfEven), d("2"));
        assert_eq!(line_amount(1, d("0.5"), Some(d("3")), 0, Rounding::HalfUp), d("2"));
        assert_eq!(line_amount(1, d("0.5"), Some(d("5")), 0, Rounding::HalfEven), d("2"));
        assert_eq!(line_amount(1, d("0.5"), Some(d("5")), 0, Rounding::HalfUp), d("3"));
        // Without a rate the amount stays exact.
        assert_eq!(line_amount(3, d("19.9999"), None, 0, Rounding::Floor), d("59.9997"));
    }

    #[test]
    fn minor_units_bound_unit_prices() {
        assert!(fits_minor_units(d("1500"), 0));
        assert!(fits_minor_units(d("1500.00"), 0));
        assert!(!fits_minor_units(d("1500.5"), 0));
        assert!(fits_minor_units(d("1.234"), 3));
        assert!(!fits_minor_units(d("1.2345"), 3));
    }

    #[test]
    fn a_table_names_iso_currencies_other_than_its_base_with_valid_rates() {
        let at = Utc::now();
        let rates: BTreeMap<String, String> =
            [("USD", "15650.25"), ("JPY", "104.5")].into_iter().map(|(a, b)| (a.into(), b.into())).collect();
        let t = check_table("IDR", &rates, at).unwrap();
        assert_eq!(t.rates["USD"], d("15650.25"));
        let bad: BTreeMap<String, String> = [("USD", "0"), ("IDR", "1"), ("ABC", "2"), ("EUR", "1e3")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
        let errors = check_table("IDR", &bad, at).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["rates.ABC", "rates.EUR", "rates.IDR", "rates.USD"]);
        assert!(check_table("XXX", &rates, at).is_err());
        assert!(check_table("IDR", &BTreeMap::new(), at).is_err());
    }

    fn usd_order(prices: &[&str], fx_rate: Option<&str>) -> NewOrder {
        use crate::domain::ids::{BuyerId, Category, OrderId, Sku};
        NewOrder {
            id: OrderId::parse("o").unwrap(),
            buyer_id: BuyerId::parse("b").unwrap(),
            attribution: None,
            coupons: vec![],
            click_ids: vec![],
            buyer_email_hash: None,
            currency: "USD".into(),
            fx_rate: fx_rate.map(d),
            placed_at: None,
            items: prices
                .iter()
                .enumerate()
                .map(|(n, p)| NewItem {
                    sku: Sku::parse(&format!("s{n}")).unwrap(),
                    category: Category::parse("c").unwrap(),
                    quantity: 1,
                    unit_price: d(p),
                })
                .collect(),
            request_hash: [0; 32],
            payload: String::new(),
        }
    }

    #[test]
    fn an_order_takes_its_own_rate_else_the_tables_else_is_refused() {
        let program = Program::parse(&Program::default_doc()).unwrap();
        let now = Utc::now();
        let table = RateTable { base: "IDR".into(), as_of: now, rates: [("USD".to_owned(), d("15000"))].into() };
        let own = decide_fx((&usd_order(&["1.50"], Some("15650.25"))).into(), &program, Some(&table), now);
        assert_eq!(own, Ok(Some(Fx { rate: d("15650.25"), source: FxSource::Order, as_of: None })));
        let tabled = decide_fx((&usd_order(&["1.50"], None)).into(), &program, Some(&table), now);
        assert_eq!(tabled, Ok(Some(Fx { rate: d("15000"), source: FxSource::Table, as_of: Some(now) })));
        let none = decide_fx((&usd_order(&["1.50"], None)).into(), &program, None, now).unwrap_err();
        assert_eq!(none.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["currency"]);
        // Cents only, and the converted total below 10^12 (every problem at once).
        let bad = decide_fx((&usd_order(&["1.505", "70000000"], Some("15650.25"))).into(), &program, None, now);
        let fields: Vec<String> = bad.unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["items[0].unit_price", "items"]);
        // In the program currency no rate but 1 is taken.
        let mut idr = usd_order(&["1000"], Some("2"));
        idr.currency = "IDR".into();
        assert_eq!(decide_fx((&idr).into(), &program, None, now).unwrap_err()[0].field, "fx_rate");
        idr.fx_rate = Some(Decimal::ONE);
        assert_eq!(decide_fx((&idr).into(), &program, None, now), Ok(None));
    }

    #[test]
    fn a_table_may_be_dated_up_to_a_year_ahead() {
        let now = Utc::now();
        assert!(check_as_of(now + chrono::TimeDelta::days(300), now).is_ok());
        assert!(check_as_of(now + chrono::TimeDelta::days(400), now).is_err());
        assert!(check_as_of("1999-12-31T23:59:59Z".parse().unwrap(), now).is_err());
    }

    proptest! {
        /// Any rate of at most 12 significant digits, written plainly, parses
        /// back to itself; a 13th digit is refused.
        #[test]
        fn plain_rates_round_trip(mantissa in 1u64..999_999_999_999, scale in 0u32..20) {
            let rate = Decimal::from_i128_with_scale(i128::from(mantissa), scale);
            let text = rate.to_string();
            prop_assert_eq!(parse_rate(&text), Ok(rate));
            let longer = format!("{text}{}", if text.contains('.') { "1" } else { ".00000000001" });
            let digits = longer.replace('.', "").trim_start_matches('0').len();
            prop_assert_eq!(parse_rate(&longer).is_ok(), digits <= MAX_RATE_DIGITS);
        }

        /// A line refunded unit by unit, each step recomputed from what is
        /// left at the same rate, ends at exactly zero: nothing drifts.
        #[test]
        fn converting_what_is_left_reaches_zero(qty in 1u32..50, cents in 0u64..10_000_000, rate in 1u64..999_999_999, scale in 0u32..9, places in 0u32..4) {
            let price = Decimal::new(cents as i64, 2);
            let rate = Decimal::from_i128_with_scale(i128::from(rate), scale);
            let mut paid = line_amount(qty, price, Some(rate), places, Rounding::HalfEven);
            for left in (0..qty).rev() {
                let now = line_amount(left, price, Some(rate), places, Rounding::HalfEven);
                paid += now - line_amount(left + 1, price, Some(rate), places, Rounding::HalfEven);
                prop_assert_eq!(paid, now);
            }
            prop_assert_eq!(paid, Decimal::ZERO);
        }
    }
}
