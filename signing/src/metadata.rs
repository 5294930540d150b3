//! The v1 signed metadata: the trusted comment of a plugin signature, and the rules it rests on.
//!
//! ```text
//! abkit-plugin v1 name=<name> version=<version> sha256=<hex> [expires=YYYY-MM-DDTHH:MM:SSZ]
//! ```
//!
//! This module is the one home of the format (`docs/plugin-signing.md`) for both sides: the
//! writer ([`format_trusted_comment`], used by `abkit sign`) and the strict parser
//! ([`parse_trusted_comment`], used by the SDK's loader as `abkit::trust::parse_trusted_comment`),
//! the plugin-name rule ([`is_valid_name`]), the size limit ([`PLUGIN_MAX_BYTES`]) and the UTC
//! calendar ([`UtcTime`], [`format_utc`], [`days_from_civil`]). It uses nothing but `std`, and
//! is all of this crate the SDK links (the SDK turns the `sign` feature off).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The tag every v1 trusted comment starts with.
pub const FORMAT_TAG: &str = "abkit-plugin v1";

/// Largest plugin file: loaders refuse to read more (256 MiB), and larger files are not signed.
pub const PLUGIN_MAX_BYTES: u64 = 256 << 20;

/// Whether `name` is a valid plugin name: `[a-z0-9][a-z0-9_-]{0,63}`.
///
/// The one rule for the names a configuration gives plugins, the signed `name` field and the
/// version ledger.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 64 && ok(b[0]) && b.iter().all(|&c| ok(c) || c == b'_' || c == b'-')
}

/// Lowercase hex, as the `sha256` field writes a digest.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A plugin name that [`is_valid_name`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    /// The refused name.
    pub name: String,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin name {:?}: use 1 to 64 characters of a-z, 0-9, `_` and `-`, \
             starting with a letter or digit (the name the configuration gives the plugin)",
            self.name
        )
    }
}

impl std::error::Error for InvalidName {}

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
) -> Result<String, InvalidName> {
    if !is_valid_name(name) {
        return Err(InvalidName {
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

/// The fields of a v1 trusted comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedComment {
    /// `name`: the plugin's name.
    pub name: String,
    /// `version`: the release number of that name.
    pub version: u64,
    /// `sha256`: digest of the plugin file.
    pub sha256: [u8; 32],
    /// `expires`: unix seconds after which the plugin is refused, if any.
    pub expires: Option<u64>,
}

/// Why a trusted comment is not v1 signed metadata: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentError {
    /// The field at fault (`name`, `version`, `sha256`, `expires`, an unknown field's name, or
    /// `format`, `format version`, `separator`). At most 40 characters of the comment's text.
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

impl CommentError {
    fn new(field: impl Into<String>, detail: impl Into<String>) -> CommentError {
        CommentError {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for CommentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.detail)
    }
}

impl std::error::Error for CommentError {}

const FIELDS: [&str; 4] = ["name", "version", "sha256", "expires"];

/// Parses a v1 trusted comment strictly: single spaces, the field order `name`, `version`,
/// `sha256`, `expires`; an unknown, duplicate, missing or malformed field is refused with an
/// error naming it. Exactly what [`format_trusted_comment`] writes parses.
///
/// ```
/// use abkit_signing::metadata::parse_trusted_comment;
///
/// let c = parse_trusted_comment(&format!("abkit-plugin v1 name=x version=3 sha256={}", "ab".repeat(32))).unwrap();
/// assert_eq!((c.name.as_str(), c.version, c.expires), ("x", 3, None));
/// assert_eq!(parse_trusted_comment("abkit-plugin v1 name=x").unwrap_err().field, "version");
/// ```
pub fn parse_trusted_comment(comment: &str) -> Result<ParsedComment, CommentError> {
    let mut tokens = comment.split(' ');
    let tag = tokens.next().unwrap_or_default();
    if tag != "abkit-plugin" {
        return Err(CommentError::new(
            "format",
            format!(
                "the trusted comment starts with {:?}, not `abkit-plugin v1`",
                shorten(tag)
            ),
        ));
    }
    match tokens.next() {
        Some("v1") => {}
        Some(v)
            if v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            return Err(CommentError::new(
                "format version",
                format!("unsupported format `{v}`: this abkit reads v1; upgrade abkit to load it"),
            ))
        }
        other => {
            return Err(CommentError::new(
                "format version",
                format!(
                    "expected `v1` after `abkit-plugin`, found {:?}",
                    shorten(other.unwrap_or_default())
                ),
            ))
        }
    }

    let mut values: [Option<&str>; 4] = [None; 4];
    let mut last: Option<usize> = None;
    for token in tokens {
        if token.is_empty() {
            let after = last.map_or("`abkit-plugin v1`".to_string(), |i| {
                format!("field `{}`", FIELDS[i])
            });
            return Err(CommentError::new(
                "separator",
                format!("fields must be separated by single spaces, with none at the end (extra space after {after})"),
            ));
        }
        let Some((key, value)) = token.split_once('=') else {
            return Err(CommentError::new(shorten(token), "expected `field=value`"));
        };
        let Some(idx) = FIELDS.iter().position(|f| *f == key) else {
            return Err(CommentError::new(
                shorten(key),
                "unknown field: v1 has name, version, sha256 and expires",
            ));
        };
        if values[idx].is_some() {
            return Err(CommentError::new(key, "duplicate field"));
        }
        if last.is_some_and(|l| idx < l) {
            return Err(CommentError::new(
                key,
                "out of order: v1 fields come in the order name, version, sha256, expires",
            ));
        }
        values[idx] = Some(value);
        last = Some(idx);
    }

    let [name, version, sha256, expires] = values;
    fn required<'a>(v: Option<&'a str>, field: &str) -> Result<&'a str, CommentError> {
        v.ok_or_else(|| CommentError::new(field, "missing field"))
    }
    let (name, version, sha256) = (
        required(name, "name")?,
        required(version, "version")?,
        required(sha256, "sha256")?,
    );

    if !is_valid_name(name) {
        return Err(CommentError::new(
            "name",
            format!(
                "{:?} is not a plugin name ([a-z0-9][a-z0-9_-]{{0,63}})",
                shorten(name)
            ),
        ));
    }
    let version = parse_version(version).ok_or_else(|| {
        CommentError::new(
            "version",
            format!("{:?} is not an unsigned 64-bit integer", shorten(version)),
        )
    })?;
    let sha256 = parse_sha256(sha256).ok_or_else(|| {
        CommentError::new(
            "sha256",
            format!("{:?} is not 64 lowercase hex digits", shorten(sha256)),
        )
    })?;
    let expires = match expires {
        None => None,
        Some(e) => Some(
            e.parse::<UtcTime>()
                .map_err(|_| {
                    CommentError::new(
                        "expires",
                        format!("{:?} is not a UTC time YYYY-MM-DDTHH:MM:SSZ", shorten(e)),
                    )
                })?
                .unix_seconds(),
        ),
    };
    Ok(ParsedComment {
        name: name.to_string(),
        version,
        sha256,
        expires,
    })
}

/// At most 40 characters of attacker-controlled text, for messages.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

/// Canonical decimal: digits only, no sign, no leading zero (except `0`).
fn parse_version(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
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

/// A text that is not a `YYYY-MM-DDTHH:MM:SSZ` UTC time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError {
    /// The refused text.
    pub value: String,
    /// What is wrong with it.
    pub detail: String,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid time {:?}: {}; write it as YYYY-MM-DDTHH:MM:SSZ (UTC), e.g. 2030-01-31T00:00:00Z",
            self.value, self.detail
        )
    }
}

impl std::error::Error for TimeError {}

impl FromStr for UtcTime {
    type Err = TimeError;

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`.
    fn from_str(s: &str) -> Result<UtcTime, TimeError> {
        let bad = |detail: &str| TimeError {
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
        let Some(month_days) = days_in_month(y, mo) else {
            return Err(bad("the month must be 01 to 12"));
        };
        if d < 1 || d > month_days {
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
        f.write_str(&format_utc(self.unix))
    }
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (more year digits after 9999).
pub fn format_utc(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Whether `year` is a Gregorian leap year.
fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1 to 12) of `year` in the Gregorian calendar; `None` for another month.
pub fn days_in_month(year: i64, month: i64) -> Option<i64> {
    match month {
        2 if is_leap(year) => Some(29),
        2 => Some(28),
        4 | 6 | 9 | 11 => Some(30),
        1..=12 => Some(31),
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (negative before it), for a month of
/// 1 to 12: years counted from March, in eras of 400 years (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)`.
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

    const SHA: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn known_times_parse_to_their_unix_seconds() {
        for (text, unix) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2000-02-29T23:59:59Z", 951_868_799),
            ("2038-01-19T03:14:07Z", 2_147_483_647),
            ("9999-12-31T23:59:59Z", MAX_UNIX),
        ] {
            let t: UtcTime = text.parse().unwrap();
            assert_eq!(t.unix_seconds(), unix, "{text}");
            assert_eq!(t.to_string(), text);
            assert_eq!(format_utc(unix), text);
        }
        // Beyond the format's range formatting still works (the SDK prints any clock value).
        assert_eq!(format_utc(MAX_UNIX + 1), "10000-01-01T00:00:00Z");
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
    fn the_calendar_agrees_with_a_day_by_day_count() {
        // Every day from 1600-01-01 to 2500-12-31, counted one at a time.
        let mut days = days_from_civil(1600, 1, 1);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for y in 1600..=2500 {
            for m in 1..=12 {
                for d in 1..=days_in_month(y, m).unwrap() {
                    assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
                    assert_eq!(civil_from_days(days), (y, m, d));
                    days += 1;
                }
            }
        }
        assert_eq!(days_in_month(2000, 2), Some(29));
        assert_eq!(days_in_month(1900, 2), Some(28));
        assert_eq!(days_in_month(2024, 2), Some(29));
        assert_eq!(days_in_month(2023, 0), None);
        assert_eq!(days_in_month(2023, 13), None);
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            "2027-01-01",
            "2027-01-01T00:00:00",
            "2027-01-01 00:00:00Z",
            "2027-01-01T00:00:00z",
            "2027-13-01T00:00:00Z",
            "2027-00-01T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "2027-04-31T00:00:00Z",
            "2027-01-00T00:00:00Z",
            "1900-02-28T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2027-01-01T24:00:00Z",
            "2027-01-01T23:60:00Z",
            "2027-01-01T23:59:60Z",
            "+027-01-01T00:00:00Z",
            "2027-01-01T00:00:00+00:00",
        ] {
            let e = bad.parse::<UtcTime>().unwrap_err();
            assert_eq!(e.value, bad);
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
            assert_eq!(e.name, bad);
            assert!(!is_valid_name(bad));
        }
        assert!(is_valid_name(&"x".repeat(64)));
        assert!(is_valid_name("0-a_b"));
    }

    #[test]
    fn a_full_comment_parses() {
        let c = parse_trusted_comment(&format!(
            "abkit-plugin v1 name=switch_back-2 version=18446744073709551615 sha256={SHA} expires=2030-01-31T12:00:00Z"
        ))
        .unwrap();
        assert_eq!(c.name, "switch_back-2");
        assert_eq!(c.version, u64::MAX);
        assert_eq!(hex(&c.sha256), SHA);
        assert_eq!(c.expires, Some(1_896_091_200));
        let c = parse_trusted_comment(&format!("abkit-plugin v1 name=x version=0 sha256={SHA}"))
            .unwrap();
        assert_eq!((c.version, c.expires), (0, None));
    }

    #[test]
    fn what_is_written_parses_back() {
        let sha: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        for (name, version, expires) in [
            ("a", 0, None),
            ("switchback", u64::MAX, Some(0)),
            ("x-_9", 42, Some(MAX_UNIX)),
            ("weighted-hash", 7, Some(1_896_091_200)),
        ] {
            let expires = expires.map(|s| UtcTime::from_unix_seconds(s).unwrap());
            let c = format_trusted_comment(name, version, &sha, expires).unwrap();
            let p = parse_trusted_comment(&c).unwrap();
            assert_eq!(
                p,
                ParsedComment {
                    name: name.to_string(),
                    version,
                    sha256: sha,
                    expires: expires.map(UtcTime::unix_seconds),
                }
            );
        }
    }

    #[test]
    fn every_malformation_names_its_field() {
        let ok = format!("name=x version=1 sha256={SHA}");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "format"),
            (format!("timestamp:1700000000 {ok}"), "format"),
            (format!("abkit-plugin v2 {ok}"), "format version"),
            (format!("abkit-plugin {ok}"), "format version"),
            (format!("abkit-plugin  v1 {ok}"), "format version"),
            (format!("abkit-plugin v1  {ok}"), "separator"),
            (format!("abkit-plugin v1 {ok} "), "separator"),
            (format!("abkit-plugin v1 name=x  version=1 sha256={SHA}"), "separator"),
            (format!("abkit-plugin v1 version=1 sha256={SHA}"), "name"),
            (format!("abkit-plugin v1 name=x sha256={SHA}"), "version"),
            ("abkit-plugin v1 name=x version=1".to_string(), "sha256"),
            (format!("abkit-plugin v1 name=x name=y version=1 sha256={SHA}"), "name"),
            (format!("abkit-plugin v1 {ok} expires=2030-01-01T00:00:00Z expires=2030-01-01T00:00:00Z"), "expires"),
            (format!("abkit-plugin v1 {ok} colour=red"), "colour"),
            (format!("abkit-plugin v1 {ok} flag"), "flag"),
            (format!("abkit-plugin v1 version=1 name=x sha256={SHA}"), "name"),
            (format!("abkit-plugin v1 name=X version=1 sha256={SHA}"), "name"),
            (format!("abkit-plugin v1 name= version=1 sha256={SHA}"), "name"),
            (format!("abkit-plugin v1 name=x version=01 sha256={SHA}"), "version"),
            (format!("abkit-plugin v1 name=x version=+1 sha256={SHA}"), "version"),
            (format!("abkit-plugin v1 name=x version=18446744073709551616 sha256={SHA}"), "version"),
            (format!("abkit-plugin v1 name=x version=1 sha256={}", SHA.to_uppercase()), "sha256"),
            (format!("abkit-plugin v1 name=x version=1 sha256={}", &SHA[2..]), "sha256"),
            (format!("abkit-plugin v1 {ok} expires=2030-01-01"), "expires"),
            (format!("abkit-plugin v1 {ok} expires=2030-02-30T00:00:00Z"), "expires"),
        ];
        for (comment, field) in cases {
            let e = parse_trusted_comment(&comment).unwrap_err();
            assert_eq!(e.field, field, "{comment:?}");
            assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
        }
    }
}
