//! The v1 signed metadata: the trusted comment of a plugin signature.
//!
//! ```text
//! abkit-plugin v1 name=<name> version=<version> sha256=<hex> [expires=YYYY-MM-DDTHH:MM:SSZ]
//! ```
//!
//! This module only *writes* the format (`docs/plugin-signing.md`). The strict parser lives
//! in the SDK (`abkit::trust::parse_trusted_comment`), which does not depend on this crate;
//! the cross-crate tests check that every comment written here parses there.

use crate::SigningError;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The tag every v1 trusted comment starts with.
pub const FORMAT_TAG: &str = "abkit-plugin v1";

/// Whether `name` is a valid plugin name: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 64 && ok(b[0]) && b.iter().all(|&c| ok(c) || c == b'_' || c == b'-')
}

/// Lowercase hex of a SHA-256 digest, as the `sha256` field writes it.
pub fn hex(digest: &[u8; 32]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(64);
    for b in digest {
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Writes the v1 trusted comment for a plugin; refuses an invalid `name`.
///
/// ```
/// use abkit_signing::metadata::{format_trusted_comment, UtcTime};
///
/// let expires: UtcTime = "2030-01-31T12:00:00Z".parse().unwrap();
/// let c = format_trusted_comment("switchback", 7, &[0xab; 32], Some(expires)).unwrap();
/// assert_eq!(c, format!("abkit-plugin v1 name=switchback version=7 sha256={} expires=2030-01-31T12:00:00Z", "ab".repeat(32)));
/// ```
pub fn format_trusted_comment(
    name: &str,
    version: u64,
    sha256: &[u8; 32],
    expires: Option<UtcTime>,
) -> Result<String, SigningError> {
    if !is_valid_name(name) {
        return Err(SigningError::InvalidName {
            name: name.to_string(),
        });
    }
    let mut c = format!(
        "{FORMAT_TAG} name={name} version={version} sha256={}",
        hex(sha256)
    );
    if let Some(t) = expires {
        c.push_str(&format!(" expires={t}"));
    }
    Ok(c)
}

/// A UTC time to the second, written `YYYY-MM-DDTHH:MM:SSZ` (years 1970 to 9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime {
    unix: u64,
}

/// 9999-12-31T23:59:59Z, the last second the format can write.
const MAX_UNIX: u64 = 253_402_300_799;

impl UtcTime {
    /// The time `unix` seconds after 1970-01-01T00:00:00Z; `None` after year 9999.
    pub fn from_unix_seconds(unix: u64) -> Option<UtcTime> {
        (unix <= MAX_UNIX).then_some(UtcTime { unix })
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn unix_seconds(self) -> u64 {
        self.unix
    }

    /// Whether this time is before `now`.
    pub fn is_before(self, now: SystemTime) -> bool {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.unix < now
    }
}

impl FromStr for UtcTime {
    type Err = SigningError;

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`.
    fn from_str(s: &str) -> Result<UtcTime, SigningError> {
        let bad = |detail: &str| SigningError::InvalidExpires {
            value: s.to_string(),
            detail: detail.to_string(),
        };
        let b = s.as_bytes();
        if b.len() != 20 {
            return Err(bad("expected 20 characters"));
        }
        for (i, &c) in b.iter().enumerate() {
            let expected = match i {
                4 | 7 => Some(b'-'),
                10 => Some(b'T'),
                13 | 16 => Some(b':'),
                19 => Some(b'Z'),
                _ => None,
            };
            let ok = match expected {
                Some(e) => c == e,
                None => c.is_ascii_digit(),
            };
            if !ok {
                return Err(bad(&format!("unexpected character at position {}", i + 1)));
            }
        }
        let num = |r: std::ops::Range<usize>| {
            b[r].iter().fold(0i64, |n, &c| n * 10 + i64::from(c - b'0'))
        };
        let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
        let (h, mi, sec) = (num(11..13), num(14..16), num(17..19));
        if y < 1970 {
            return Err(bad("the year must be 1970 or later"));
        }
        if !(1..=12).contains(&mo) {
            return Err(bad("the month must be 01 to 12"));
        }
        if d < 1 || d > days_in_month(y, mo) {
            return Err(bad("no such day in that month"));
        }
        if h > 23 || mi > 59 || sec > 59 {
            return Err(bad("the time of day must be 00:00:00 to 23:59:59"));
        }
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3_600 + mi * 60 + sec;
        let unix = u64::try_from(secs).map_err(|_| bad("before 1970"))?;
        Ok(UtcTime { unix })
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `unix <= MAX_UNIX`, so every conversion below is in range.
        let secs = self.unix as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3_600,
            rem % 3_600 / 60,
            rem % 60
        )
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years, March-based years).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let d = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let m = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn known_times_parse_to_their_unix_seconds() {
        for (text, unix) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2038-01-19T03:14:07Z", 2_147_483_647),
            ("9999-12-31T23:59:59Z", MAX_UNIX),
        ] {
            let t: UtcTime = text.parse().unwrap();
            assert_eq!(t.unix_seconds(), unix, "{text}");
            assert_eq!(t.to_string(), text);
        }
    }

    #[test]
    fn formatting_then_parsing_is_the_identity_over_many_days() {
        let mut unix = 0u64;
        while unix < MAX_UNIX {
            let t = UtcTime::from_unix_seconds(unix).unwrap();
            assert_eq!(t.to_string().parse::<UtcTime>().unwrap(), t);
            unix += 86_400 * 13 + 3_601;
        }
        assert!(UtcTime::from_unix_seconds(MAX_UNIX + 1).is_none());
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            "2027-01-01",
            "2027-01-01T00:00:00",
            "2027-01-01 00:00:00Z",
            "2027-01-01T00:00:00z",
            "2027-13-01T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "1900-02-28T00:00:00Z",
            "2027-01-01T24:00:00Z",
            "2027-01-01T23:60:00Z",
            "2027-01-01T23:59:60Z",
            "+027-01-01T00:00:00Z",
            "2027-01-01T00:00:00+00:00",
        ] {
            let e = bad.parse::<UtcTime>().unwrap_err();
            assert!(
                matches!(e, SigningError::InvalidExpires { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("YYYY-MM-DDTHH:MM:SSZ"), "{e}");
        }
    }

    #[test]
    fn the_comment_has_the_fields_in_order_and_refuses_bad_names() {
        let c = format_trusted_comment("cluster", 0, &[0; 32], None).unwrap();
        assert_eq!(
            c,
            format!(
                "abkit-plugin v1 name=cluster version=0 sha256={}",
                "0".repeat(64)
            )
        );
        for bad in ["", "Cluster", "-x", "a b", "a=b", &"x".repeat(65)] {
            let e = format_trusted_comment(bad, 1, &[0; 32], None).unwrap_err();
            assert!(
                matches!(e, SigningError::InvalidName { .. }),
                "{bad:?}: {e}"
            );
        }
        assert!(is_valid_name(&"x".repeat(64)));
    }
}
