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

/// Days of `month` (1 to 12) of `year` in the proleptic Gregorian calendar.
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
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
    if let Ok(fixed) = <&[u8; 24]>::try_from(b) {
        if let Some(parsed) = parse_millis_utc(fixed) {
            return parsed;
        }
    }
    parse_any_layout(b)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the layout nearly every producer writes (and every record of the
/// reference workload carries twice), read as three little-endian words (see [`Head`] and
/// [`second_of`]). `None` for any other layout, which [`parse_any_layout`] then reads; both
/// give the same result for this one (a test checks it on mutated inputs).
#[inline(always)]
fn parse_millis_utc(b: &[u8; 24]) -> Option<Result<EpochMillis, TimestampError>> {
    // Both layouts first, so a timestamp refused for its layout is refused as the general path
    // refuses it.
    let (second, millis) = second_of(word(b, 16))?;
    let minute = Head::of(b).minute_start()?;
    Some(minute.and_then(|start| in_minute(start, second, millis)))
}

/// The 8-byte little-endian word at `b[at..]`.
#[inline(always)]
fn word(b: &[u8; 24], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;

/// Whether the bytes of `w` under `digits` are ASCII digits and the others equal `separators`:
/// one masked compare for the separators, two for the digits (a digit byte is `0x3_`, and
/// stays so when 6 is added, i.e. its low nibble is at most 9; no carry crosses bytes once
/// every digit byte is `0x3_`).
#[inline(always)]
fn layout_matches(w: u64, digits: u64, separators: u64) -> bool {
    let d = w & digits;
    let threes = 0x3030_3030_3030_3030 & digits;
    let plus_six = d.wrapping_add(0x0606_0606_0606_0606 & digits);
    (w & !digits == separators) & (d & HIGH_NIBBLES == threes) & (plus_six & HIGH_NIBBLES == threes)
}

/// Digit `i` (0-based byte) of a word already checked by [`layout_matches`].
#[inline(always)]
fn digit(w: u64, i: u32) -> i64 {
    ((w >> (8 * i)) & 0xF) as i64
}

/// Seconds and milliseconds of the last word, `:SS.mmmZ`; `None` for another layout.
#[inline(always)]
fn second_of(w: u64) -> Option<(i64, i64)> {
    if !layout_matches(w, 0x00FF_FFFF_00FF_FF00, 0x5A00_0000_2E00_003A) {
        return None;
    }
    let second = digit(w, 1) * 10 + digit(w, 2);
    Some((second, digit(w, 4) * 100 + digit(w, 5) * 10 + digit(w, 6)))
}

/// The instant `second:millis` into a minute; a leap second (:60) is folded onto the next
/// second, as most stores do.
#[inline(always)]
fn in_minute(start: EpochMillis, second: i64, millis: i64) -> Result<EpochMillis, TimestampError> {
    if second > 60 {
        return Err(TimestampError::Range);
    }
    Ok(start + second * 1_000 + millis)
}

/// The first 16 bytes, `YYYY-MM-DDTHH:MM`, as two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head([u64; 2]);

impl Head {
    fn of(b: &[u8; 24]) -> Self {
        Head([word(b, 0), word(b, 8)])
    }

    /// The start of the minute; `None` for another layout.
    #[inline(always)]
    fn minute_start(self) -> Option<Result<EpochMillis, TimestampError>> {
        let [w0, w1] = self.0;
        // `YYYY-MM-` and `DDTHH:MM`.
        let ok = layout_matches(w0, 0x00FF_FF00_FFFF_FFFF, 0x2D00_002D_0000_0000)
            & layout_matches(w1, 0xFFFF_00FF_FF00_FFFF, 0x0000_3A00_0054_0000);
        if !ok {
            return None;
        }
        let two = |w: u64, i: u32| digit(w, i) * 10 + digit(w, i + 1);
        let year = two(w0, 0) * 100 + two(w0, 2);
        let (month, day, hour, minute) = (two(w0, 5), two(w1, 0), two(w1, 3), two(w1, 6));
        Some(
            check_range(year, month, day, hour, minute, 0)
                .map(|()| epoch_millis(year, month, day, hour * 3_600 + minute * 60, 0)),
        )
    }
}

/// The minute of the last `...mmmZ` timestamp read at one place (one per time field and worker),
/// so that the next one in the same minute reads only its seconds and milliseconds: records
/// come in log-time order, so consecutive timestamps of a field nearly always share the minute
/// (in the reference workload the log time always, the event time about 9 times in 10). The
/// result is the same as [`parse_rfc3339`]'s, whatever the cache holds.
#[derive(Debug, Clone)]
pub struct MinuteCache {
    head: Head,
    start: EpochMillis,
}

impl Default for MinuteCache {
    fn default() -> Self {
        // 0xFF bytes are no head of a valid timestamp, so nothing matches before a fill.
        Self { head: Head([u64::MAX; 2]), start: 0 }
    }
}

/// [`parse_rfc3339`], reusing the minute of the timestamp read before at the same place.
#[inline]
pub fn parse_rfc3339_cached(
    b: &[u8],
    cache: &mut MinuteCache,
) -> Result<EpochMillis, TimestampError> {
    let Ok(fixed) = <&[u8; 24]>::try_from(b) else {
        return parse_any_layout(b);
    };
    let head = Head::of(fixed);
    let Some((second, millis)) = second_of(word(fixed, 16)) else {
        return parse_any_layout(b);
    };
    if head != cache.head {
        match head.minute_start() {
            None => return parse_any_layout(b),
            Some(Err(e)) => return Err(e),
            Some(Ok(start)) => *cache = MinuteCache { head, start },
        }
    }
    in_minute(cache.start, second, millis)
}

/// Refuses a month, day, hour, minute or second out of range (a leap second, `:60`, passes).
#[inline(always)]
fn check_range(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Result<(), TimestampError> {
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(TimestampError::Range);
    }
    Ok(())
}

/// Epoch milliseconds of a checked date (year 0 to 9999) and UTC second of the day. A leap
/// second (:60) is folded onto the next second, as most stores do.
#[inline(always)]
fn epoch_millis(year: i64, month: i64, day: i64, second_of_day: i64, millis: i64) -> EpochMillis {
    let days = days_from_civil_0_to_9999(year as u32, month as u32, day as u32);
    (days * 86_400 + second_of_day) * 1_000 + millis
}

/// [`parse_rfc3339`] for every layout it accepts.
fn parse_any_layout(b: &[u8]) -> Result<EpochMillis, TimestampError> {
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
    check_range(year, month, day, hour, minute, second)?;
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
    let second_of_day = hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(epoch_millis(year, month, day, second_of_day, millis))
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
        assert_eq!(parse_millis_utc(b"2024-01-01T00:00:05.123Z"), Some(Ok(base + 123)));
        assert_eq!(parse_millis_utc(b"2024-02-30T00:00:05.123Z"), Some(Err(TimestampError::Range)));
        assert_eq!(parse_millis_utc(b"2024-01-01T00:00:05.123z"), None);
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

        /// The fixed-layout shortcut accepts, refuses and reads exactly as the general path:
        /// a valid `...mmmZ` timestamp with up to three bytes replaced by any byte.
        #[test]
        fn the_fixed_layout_shortcut_agrees(
            ms in -62_000_000_000_000i64..250_000_000_000_000i64,
            edits in proptest::collection::vec((0usize..24, prop_oneof![
                b'0'..=b'9',
                prop::sample::select(b"-:T.Zt z+/\x00\xff".to_vec()),
                any::<u8>(),
            ]), 0..4),
        ) {
            let mut text = rfc3339_millis(ms).into_bytes();
            prop_assume!(text.len() == 24);
            for (at, byte) in edits {
                text[at] = byte;
            }
            prop_assert_eq!(parse_rfc3339(&text), parse_any_layout(&text), "{:?}", String::from_utf8_lossy(&text));
        }

        /// Read in sequence through one cache, timestamps (close together, some mutated as
        /// above) give what the uncached parser gives.
        #[test]
        fn the_minute_cache_changes_nothing(
            start in 0i64..250_000_000_000_000i64,
            steps in proptest::collection::vec((0i64..120_000, 0usize..24, b'0'..=b':', any::<bool>()), 1..60),
        ) {
            let mut cache = MinuteCache::default();
            let mut ms = start;
            for (step, at, byte, mutate) in steps {
                ms += step - 30_000;
                let mut text = rfc3339_millis(ms).into_bytes();
                if mutate {
                    text[at] = byte;
                }
                prop_assert_eq!(parse_rfc3339_cached(&text, &mut cache), parse_rfc3339(&text), "{:?}", String::from_utf8_lossy(&text));
            }
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
