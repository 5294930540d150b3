//! The simulation clock: `--time` as RFC 3339 or milliseconds since the Unix epoch.

use super::error::SimulateError;
// The one UTC calendar of abkit (also behind signed expiry times): std only.
use abkit_signing::metadata::{days_from_civil, days_in_month};

/// The system clock now, in ms since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses `2026-01-31T12:00:00Z`, `2026-01-31T12:00:00.250+01:00` (RFC 3339) or a plain
/// number of milliseconds since 1970-01-01T00:00:00Z.
///
/// ```
/// use abkit::simulate::parse_time;
/// assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
/// assert_eq!(parse_time("1970-01-02T00:00:01.5Z").unwrap(), 86_401_500);
/// assert_eq!(parse_time("2023-11-14T23:13:20+01:00").unwrap(), 1_700_000_000_000);
/// ```
pub fn parse_time(text: &str) -> Result<u64, SimulateError> {
    let fail = |problem: &str| SimulateError::BadTime {
        value: text.to_string(),
        problem: problem.to_string(),
    };
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map_err(|_| fail("the number is too large"));
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, SimulateError> {
        let part = b
            .get(from..from + len)
            .ok_or_else(|| fail("it ends too early"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(fail("expected digits").with_position(from));
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), SimulateError> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(fail("not of the form YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)").with_position(at)),
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(fail("no digits after the decimal point"));
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(fail("the UTC offset is out of range"));
            }
            if c == b'+' {
                oh * 60 + om
            } else {
                -(oh * 60 + om)
            }
        }
        _ => return Err(fail("it needs a UTC offset at the end: Z or +HH:MM")),
    };
    if !days_in_month(year, month).is_some_and(|n| (1..=n).contains(&day)) {
        return Err(fail("the date does not exist"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail("the time of day is out of range"));
    }
    let days = days_from_civil(year, month, day);
    let ms = (((days * 24 + hour) * 60 + minute - offset_min) * 60 + second) * 1000 + millis;
    u64::try_from(ms).map_err(|_| fail("it is before 1970-01-01T00:00:00Z"))
}

trait WithPosition {
    fn with_position(self, at: usize) -> Self;
}

impl WithPosition for SimulateError {
    fn with_position(self, at: usize) -> Self {
        match self {
            SimulateError::BadTime { value, problem } => SimulateError::BadTime {
                value,
                problem: format!("{problem} (at character {})", at + 1),
            },
            other => other,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2000-03-01T00:00:00Z").unwrap(), 951_868_800_000);
        assert_eq!(
            parse_time("2024-02-29t23:59:59.999z").unwrap(),
            1_709_251_199_999
        );
        assert_eq!(
            parse_time("2024-02-29 23:59:59.9999-00:30").unwrap(),
            1_709_252_999_999
        );
    }

    #[test]
    fn rejects_with_a_reason() {
        for (bad, why) in [
            ("2023-02-29T00:00:00Z", "does not exist"),
            ("2023-01-01T00:00:00", "UTC offset"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("2023-01-01", "not of the form"),
            ("2023-01-01T10", "ends too early"),
            ("2023/01/01T00:00:00Z", "not of the form"),
            ("yesterday", "expected digits"),
            ("99999999999999999999999", "too large"),
        ] {
            let e = parse_time(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }
}
