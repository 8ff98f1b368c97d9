//! Timestamps in epoch milliseconds: parsing RFC 3339 and epoch numbers, formatting RFC 3339.
//!
//! Hand-written rather than `chrono`'s parser: every record carries two timestamps, and the
//! `decode` bench measured chrono's `parse_from_rfc3339` at several times the cost of this
//! strict fixed-layout parser, on a hot path whose whole budget is a few hundred nanoseconds.
//! The tests check both against chrono.

/// Milliseconds since the Unix epoch (UTC).
pub type EpochMillis = i64;

/// Why a timestamp string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`.
    #[error("not an RFC 3339 timestamp (expected e.g. 2024-01-01T00:00:05.123Z)")]
    Layout,
    /// A component is out of range (month 13, second 61, ...).
    #[error("RFC 3339 timestamp has an out-of-range component")]
    Range,
    /// An epoch number that is not finite or does not fit.
    #[error("epoch value out of range")]
    Epoch,
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Result<i64, TimestampError> {
    let mut v: i64 = 0;
    for &c in b.get(at..at + n).ok_or(TimestampError::Layout)? {
        if !c.is_ascii_digit() {
            return Err(TimestampError::Layout);
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
#[inline]
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// [`days_from_civil`] for the years RFC 3339 can write (0 to 9999), in unsigned arithmetic:
/// shifted by one 400-year era so that January and February of year 0 stay non-negative,
/// every division is by a constant on an unsigned value, a multiply and a shift.
#[inline(always)]
fn days_from_civil_0_to_9999(year: u32, month: u32, day: u32) -> i64 {
    let y = year + 400 - u32::from(month <= 2);
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i64::from(era * 146_097 + doe) - 719_468 - 146_097
}

/// The civil date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
#[inline]
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 timestamp (`T` or `t` or space separator, optional fraction of any
/// length truncated to milliseconds, `Z`/`z` or `±HH:MM`) into epoch milliseconds.
///
/// ```
/// use kappa_engine::time::parse_rfc3339;
/// assert_eq!(parse_rfc3339(b"1970-01-01T00:00:01.5Z"), Ok(1_500));
/// assert_eq!(parse_rfc3339(b"1970-01-01T01:00:00+01:00"), Ok(0));
/// ```
pub fn parse_rfc3339(b: &[u8]) -> Result<EpochMillis, TimestampError> {
    if b.len() < 20 {
        return Err(TimestampError::Layout);
    }
    // The fixed-width head `YYYY-MM-DDTHH:MM:SS` as an array: no bounds checks, and every
    // digit is checked at once rather than field by field.
    let h: &[u8; 19] = b[..19].try_into().expect("length checked");
    if h[4] != b'-' || h[7] != b'-' || h[13] != b':' || h[16] != b':' {
        return Err(TimestampError::Layout);
    }
    if !matches!(h[10], b'T' | b't' | b' ') {
        return Err(TimestampError::Layout);
    }
    let d = |i: usize| h[i].wrapping_sub(b'0');
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if DIGITS.iter().fold(false, |bad, &i| bad | (d(i) > 9)) {
        return Err(TimestampError::Layout);
    }
    let two = |i: usize| i64::from(d(i) * 10 + d(i + 1));
    let year = two(0) * 100 + two(2);
    let (month, day, hour, minute, second) = (two(5), two(8), two(11), two(14), two(17));
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(TimestampError::Range);
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(TimestampError::Layout);
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimestampError::Range);
            }
            let m = oh * 60 + om;
            if sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return Err(TimestampError::Layout),
    };
    // A leap second (:60) is folded onto the next second, as most stores do.
    let days = days_from_civil_0_to_9999(year as u32, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(secs * 1_000 + millis)
}

/// Epoch seconds (fraction allowed) to milliseconds, rounded to the nearest millisecond.
pub fn seconds_to_millis(secs: f64) -> Result<EpochMillis, TimestampError> {
    let ms = (secs * 1_000.0).round();
    if ms.is_finite() && ms.abs() < 8.64e18 {
        Ok(ms as i64)
    } else {
        Err(TimestampError::Epoch)
    }
}

/// Appends `epoch_millis` as RFC 3339 UTC with milliseconds, e.g. `2024-01-01T00:01:00.000Z`.
///
/// ```
/// let mut s = Vec::new();
/// kappa_engine::time::format_rfc3339_millis(1_704_067_260_000, &mut s);
/// assert_eq!(s, b"2024-01-01T00:01:00.000Z");
/// ```
pub fn format_rfc3339_millis(epoch_millis: EpochMillis, out: &mut Vec<u8>) {
    let days = epoch_millis.div_euclid(86_400_000);
    let ms_of_day = epoch_millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1_000 % 60, ms_of_day % 1_000);
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999));
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, h);
    put(14, 2, m);
    put(17, 2, s);
    put(20, 3, ms);
    out.extend_from_slice(&buf);
}

/// [`format_rfc3339_millis`] into a new `String`.
pub fn rfc3339_millis(epoch_millis: EpochMillis) -> String {
    let mut out = Vec::with_capacity(24);
    format_rfc3339_millis(epoch_millis, &mut out);
    String::from_utf8(out).expect("formatter writes ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_forms_users_write() {
        let base = 1_704_067_205_000; // 2024-01-01T00:00:05Z
        assert_eq!(parse_rfc3339(b"2024-01-01T00:00:05Z"), Ok(base));
        assert_eq!(parse_rfc3339(b"2024-01-01T00:00:05.123Z"), Ok(base + 123));
        assert_eq!(parse_rfc3339(b"2024-01-01T00:00:05.1Z"), Ok(base + 100));
        assert_eq!(parse_rfc3339(b"2024-01-01T00:00:05.123456789Z"), Ok(base + 123));
        assert_eq!(parse_rfc3339(b"2024-01-01T02:00:05+02:00"), Ok(base));
        assert_eq!(parse_rfc3339(b"2023-12-31T23:30:05-00:30"), Ok(base));
        assert_eq!(parse_rfc3339(b"2024-01-01 00:00:05z"), Ok(base));
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for bad in [
            &b"2024-13-45 99:99"[..],
            b"2024-01-01",
            b"2024-01-01T00:00:05",
            b"2024-01-01T00:00:05.Z",
            b"2024-01-01T00:00:05+0200",
            b"2024-01-01T00:00:05Zjunk",
            b"20240101T000005Z",
            b"",
        ] {
            assert_eq!(parse_rfc3339(bad), Err(TimestampError::Layout), "{:?}", bad);
        }
        assert_eq!(parse_rfc3339(b"2023-02-29T00:00:00Z"), Err(TimestampError::Range));
        assert_eq!(parse_rfc3339(b"2024-01-01T24:00:00Z"), Err(TimestampError::Range));
        assert_eq!(parse_rfc3339(b"2024-02-29T00:00:00Z").map(|_| ()), Ok(()));
    }

    proptest! {
        #[test]
        fn the_four_digit_year_shortcut_agrees(year in 0u32..10_000, month in 1u32..13, day in 1u32..32) {
            let expected = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
            prop_assert_eq!(days_from_civil_0_to_9999(year, month, day), expected);
        }

        #[test]
        fn agrees_with_chrono(ms in -62_000_000_000_000i64..250_000_000_000_000i64, off in -1439i32..1440) {
            use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
            let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            let local = utc.with_timezone(&FixedOffset::east_opt(off * 60).unwrap());
            let text = local.to_rfc3339_opts(SecondsFormat::Millis, true);
            prop_assert_eq!(parse_rfc3339(text.as_bytes()), Ok(ms));
            let formatted = rfc3339_millis(ms);
            prop_assert_eq!(formatted, utc.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
    }
}
