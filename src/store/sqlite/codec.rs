//! How SQLite holds what MySQL has column types for: times as fixed-width UTC
//! text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, so string order is time order) and
//! money as the exact decimal text (4 decimals, as DECIMAL(28,4) keeps it).
//! sqlx's own chrono encoding is never used: every time goes through
//! [`encode_time`], every amount through [`encode_money`].
use crate::store::{corrupt, Result};
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// Decimals a money column keeps (MySQL's DECIMAL(28,4)).
const MONEY_SCALE: u32 = 4;
/// DECIMAL(28,4): at most 24 integer digits.
const MONEY_INT_DIGITS: usize = 24;
/// Length of an encoded time.
const TIME_LEN: usize = 27;

fn encode_error(what: String) -> sqlx::Error {
    sqlx::Error::Encode(what.into())
}

/// `2026-03-04T05:06:07.000089Z`: UTC, microseconds (finer digits are
/// dropped, as DATETIME(6) drops them). Years outside 0000–9999 cannot be
/// written (DATETIME could not hold them either): an encoding error.
pub fn encode_time(t: DateTime<Utc>) -> Result<String, sqlx::Error> {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return Err(encode_error(format!("time {t} is outside the years 0000-9999")));
    }
    // A leap second (nanosecond ≥ 10⁹) is kept as the last microsecond of its second.
    let micros = (t.nanosecond() / 1_000).min(999_999);
    Ok(format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// A time for a comparison only (a filter bound, never stored): one outside
/// the years 0000–9999 becomes a text below (`"0"`) or above (`"A"`) every
/// encoded time, so the comparison means what it says.
pub fn bound_time(t: DateTime<Utc>) -> String {
    match encode_time(t) {
        Ok(s) => s,
        Err(_) if t.year() < 0 => "0".to_owned(),
        Err(_) => "A".to_owned(),
    }
}

/// Parses what [`encode_time`] writes, and nothing else.
pub fn decode_time(s: &str) -> Result<DateTime<Utc>> {
    let bad = || corrupt(format!("stored time {s:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ"));
    let b = s.as_bytes();
    if b.len() != TIME_LEN {
        return Err(bad());
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            26 => c == b'Z',
            _ => c.is_ascii_digit(),
        };
        if !ok {
            return Err(bad());
        }
    }
    let n = |from: usize, to: usize| -> u32 { b[from..to].iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')) };
    let date = NaiveDate::from_ymd_opt(n(0, 4) as i32, n(5, 7), n(8, 10)).ok_or_else(bad)?;
    let at = date.and_hms_micro_opt(n(11, 13), n(14, 16), n(17, 19), n(20, 26)).ok_or_else(bad)?;
    Ok(at.and_utc())
}

/// The text of an amount as a DECIMAL(28,4) column holds it: rounded to 4
/// decimals (half away from zero, as MySQL rounds on insert) and written with
/// exactly 4 (`95000.0000`, `-80000.0000`). More than 24 integer digits is an
/// encoding error (MySQL refuses the value as out of range).
pub fn encode_money(d: Decimal) -> Result<String, sqlx::Error> {
    let mut d = d.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(MONEY_SCALE);
    let text = d.to_string();
    let int_digits = text.trim_start_matches('-').split('.').next().map_or(0, str::len);
    if d.scale() != MONEY_SCALE || int_digits > MONEY_INT_DIGITS {
        return Err(encode_error(format!("amount {d} does not fit DECIMAL(28,4)")));
    }
    Ok(text)
}

/// Parses a stored amount exactly (an amount that cannot be held exactly is corrupt).
pub fn decode_money(s: &str) -> Result<Decimal> {
    Decimal::from_str_exact(s).map_err(|e| corrupt(format!("stored amount {s:?}: {e}")))
}

/// The text of a points balance (a DECIMAL(28,0) on MySQL): its digits, at
/// most 28 of them.
pub fn encode_points(points: i128) -> Result<String, sqlx::Error> {
    let text = points.to_string();
    if text.trim_start_matches('-').len() > POINTS_DIGITS {
        return Err(encode_error(format!("points {points} do not fit DECIMAL(28,0)")));
    }
    Ok(text)
}

/// Parses a stored points balance.
pub fn decode_points(s: &str) -> Result<i128> {
    s.parse().map_err(|e| corrupt(format!("stored points {s:?}: {e}")))
}

/// Digits of a points balance, as MySQL's DECIMAL(28,0).
const POINTS_DIGITS: usize = 28;

/// `a + b`, refusing an overflow instead of panicking.
pub fn add_money(a: Decimal, b: Decimal) -> Result<Decimal> {
    a.checked_add(b).ok_or_else(|| corrupt(format!("{a} + {b} overflows")))
}

pub fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    decode_time(row.try_get::<&str, _>(column)?)
}

pub fn opt_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<&str>, _>(column)?.map(decode_time).transpose()
}

pub fn money(row: &SqliteRow, column: &str) -> Result<Decimal> {
    decode_money(row.try_get::<&str, _>(column)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn times_round_trip_at_microseconds() {
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap() + TimeDelta::microseconds(89);
        let text = encode_time(at).unwrap();
        assert_eq!(text, "2026-03-04T05:06:07.000089Z");
        assert_eq!(decode_time(&text).unwrap(), at);
        for at in [
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + TimeDelta::microseconds(999_999),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
        ] {
            assert_eq!(decode_time(&encode_time(at).unwrap()).unwrap(), at);
        }
        // Finer than a microsecond is dropped, as DATETIME(6) drops it.
        let fine = at_nanos(2026, 123_456_789);
        assert_eq!(encode_time(fine).unwrap(), "2026-01-01T00:00:00.123456Z");
        assert_eq!(decode_time(&encode_time(fine).unwrap()).unwrap(), at_nanos(2026, 123_456_000));
    }

    fn at_nanos(year: i32, nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap() + TimeDelta::nanoseconds(i64::from(nanos))
    }

    #[test]
    fn encoded_times_sort_as_the_times_do() {
        let base = Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap();
        let mut times: Vec<DateTime<Utc>> = [
            0i64,
            1,
            -1,
            999_999,
            1_000_000,
            86_400_000_000,
            -86_400_000_000 * 400,
            86_400_000_000 * 3_000,
            12_345,
            123_456_789,
        ]
        .iter()
        .map(|us| base + TimeDelta::microseconds(*us))
        .collect();
        times.push(Utc.with_ymd_and_hms(999, 12, 31, 0, 0, 0).unwrap());
        times.push(Utc.with_ymd_and_hms(10, 6, 1, 0, 0, 0).unwrap());
        let mut by_text: Vec<(String, DateTime<Utc>)> = times.iter().map(|t| (encode_time(*t).unwrap(), *t)).collect();
        by_text.sort();
        times.sort();
        assert_eq!(by_text.iter().map(|(_, t)| *t).collect::<Vec<_>>(), times);
        assert!(by_text.iter().all(|(s, _)| s.len() == TIME_LEN));
    }

    #[test]
    fn out_of_range_times_are_refused_and_bounds_stay_outside() {
        let late = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + TimeDelta::days(1);
        let early = Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap() - TimeDelta::microseconds(1);
        assert!(encode_time(late).is_err());
        assert!(encode_time(early).is_err());
        let lowest = encode_time(Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap()).unwrap();
        let highest = encode_time(late - TimeDelta::days(1)).unwrap();
        assert!(bound_time(early) < lowest);
        assert!(bound_time(late) > highest);
    }

    #[test]
    fn only_the_fixed_format_decodes() {
        for bad in [
            "",
            "2026-03-04 05:06:07.000089Z",
            "2026-03-04T05:06:07.000089",
            "2026-03-04T05:06:07.00008Z",
            "2026-03-04T05:06:07.0000890Z",
            "2026-03-04T05:06:07Z",
            "2026-02-30T05:06:07.000089Z",
            "2026-03-04T24:06:07.000089Z",
            "2026-03-04T05:06:07.000089+00:00",
            "+026-03-04T05:06:07.000089Z",
        ] {
            assert!(decode_time(bad).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn money_is_written_as_decimal_28_4_keeps_it() {
        assert_eq!(encode_money(d("95000")).unwrap(), "95000.0000");
        assert_eq!(encode_money(d("-80000")).unwrap(), "-80000.0000");
        assert_eq!(encode_money(d("0")).unwrap(), "0.0000");
        assert_eq!(encode_money(d("1.23456")).unwrap(), "1.2346");
        assert_eq!(encode_money(d("1.23455")).unwrap(), "1.2346");
        assert_eq!(encode_money(d("-1.23455")).unwrap(), "-1.2346");
        assert_eq!(encode_money(d("75000.00")).unwrap(), "75000.0000");
        for s in ["95000", "-80000", "0.0001", "-0.0001", "12.5"] {
            assert_eq!(decode_money(&encode_money(d(s)).unwrap()).unwrap(), d(s));
        }
    }

    #[test]
    fn a_28_digit_amount_is_exact() {
        let max = d("999999999999999999999999.9999");
        let text = encode_money(max).unwrap();
        assert_eq!(text, "999999999999999999999999.9999");
        assert_eq!(decode_money(&text).unwrap(), max);
        let odd = d("-123456789012345678901234.5678");
        assert_eq!(decode_money(&encode_money(odd).unwrap()).unwrap(), odd);
        // One more integer digit does not fit DECIMAL(28,4).
        assert!(encode_money(d("1000000000000000000000000")).is_err());
        // A sum of stored amounts is exact too: no float anywhere.
        let a = decode_money("0.1000").unwrap();
        let b = decode_money("0.2000").unwrap();
        assert_eq!(add_money(a, b).unwrap(), d("0.3"));
        assert_eq!(decode_money("0.3000").unwrap(), d("0.3"));
    }

    #[test]
    fn stored_amounts_must_be_exact_decimals() {
        for bad in ["", "abc", "1e5", "1.2.3", "0x10", " 1"] {
            assert!(decode_money(bad).is_err(), "{bad:?} decoded");
        }
        // Beyond what a Decimal holds exactly.
        assert!(decode_money("123456789012345678901234567890").is_err());
        assert!(decode_money("0.12345678901234567890123456789").is_err());
    }
}
