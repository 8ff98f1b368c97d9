//! Durations as written in manifests: `500ms`, `10s`, `5m`, `1h`, `3d`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty string.
    #[error("duration is empty; write a number and a unit, e.g. 30s")]
    Empty,
    /// No digits before the unit.
    #[error("duration {0:?} has no number; write a number and a unit, e.g. 30s")]
    NoNumber(String),
    /// Unit is not one of ms, s, m, h, d.
    #[error("duration {0:?} has an unknown unit; use one of ms, s, m, h, d (e.g. 500ms, 3d)")]
    UnknownUnit(String),
    /// Too large to represent.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a manifest duration into a [`Duration`].
///
/// ```
/// use std::time::Duration;
/// assert_eq!(kappa_crds::parse_duration("3d").unwrap(), Duration::from_secs(3 * 86_400));
/// assert_eq!(kappa_crds::parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert!(kappa_crds::parse_duration("5w").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = text_trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(text_trimmed.len());
    let (digits, unit) = text_trimmed.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::NoNumber(text.to_string()));
    }
    let n: u64 = digits.parse().map_err(|_| DurationError::Overflow(text.to_string()))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::UnknownUnit(text.to_string())),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::Overflow(text.to_string()))
}

/// Parses a duration into whole milliseconds (the engine's time unit).
pub fn parse_duration_millis(text: &str) -> Result<i64, DurationError> {
    let d = parse_duration(text)?;
    i64::try_from(d.as_millis()).map_err(|_| DurationError::Overflow(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_mistakes() {
        assert_eq!(parse_duration_millis("1m").unwrap(), 60_000);
        assert_eq!(parse_duration_millis("10s").unwrap(), 10_000);
        assert_eq!(parse_duration_millis("1h").unwrap(), 3_600_000);
        assert_eq!(parse_duration("").unwrap_err(), DurationError::Empty);
        assert_eq!(parse_duration("m").unwrap_err(), DurationError::NoNumber("m".into()));
        assert!(matches!(parse_duration("3 days"), Err(DurationError::UnknownUnit(_))));
        assert!(matches!(parse_duration("1.5h"), Err(DurationError::UnknownUnit(_))));
        assert!(matches!(parse_duration("99999999999999999999d"), Err(DurationError::Overflow(_))));
    }
}
