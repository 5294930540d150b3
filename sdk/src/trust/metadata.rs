//! The v1 signed metadata (the trusted comment), parsed strictly.
//!
//! `abkit-plugin v1 name=<name> version=<version> sha256=<hex> [expires=YYYY-MM-DDTHH:MM:SSZ]`:
//! single spaces, this field order; an unknown, duplicate, missing or malformed field is
//! refused with an error naming it (`docs/plugin-signing.md`). The writer is in
//! `abkit-signing`; the cross-crate tests check the two agree.

use super::TrustError;
use crate::config::is_valid_plugin_name;
use std::fmt::Write as _;

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

/// What a verified signature vouches for: the signed metadata and the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMetadata {
    /// The plugin's name (equal to the configured name once verified).
    pub name: String,
    /// The release number.
    pub version: u64,
    /// SHA-256 of the plugin bytes.
    pub sha256: [u8; 32],
    /// Unix seconds after which the plugin is refused, if any.
    pub expires: Option<u64>,
    /// Id of the signing key, as minisign prints it (16 uppercase hex digits).
    pub key_id: String,
}

impl SignedMetadata {
    /// The SHA-256 as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }

    /// The expiry as `YYYY-MM-DDTHH:MM:SSZ`, if any.
    pub fn expires_utc(&self) -> Option<String> {
        self.expires.map(format_utc)
    }
}

const FIELDS: [&str; 4] = ["name", "version", "sha256", "expires"];

/// Parses a v1 trusted comment strictly (see the module docs).
pub fn parse_trusted_comment(comment: &str) -> Result<ParsedComment, TrustError> {
    let mut tokens = comment.split(' ');
    let tag = tokens.next().unwrap_or_default();
    if tag != "abkit-plugin" {
        return Err(TrustError::metadata(
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
            return Err(TrustError::metadata(
                "format version",
                format!("unsupported format `{v}`: this abkit reads v1; upgrade abkit to load it"),
            ))
        }
        other => {
            return Err(TrustError::metadata(
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
            return Err(TrustError::metadata(
                "separator",
                format!("fields must be separated by single spaces, with none at the end (extra space after {after})"),
            ));
        }
        let Some((key, value)) = token.split_once('=') else {
            return Err(TrustError::metadata(
                shorten(token),
                "expected `field=value`",
            ));
        };
        let Some(idx) = FIELDS.iter().position(|f| *f == key) else {
            return Err(TrustError::metadata(
                shorten(key),
                "unknown field: v1 has name, version, sha256 and expires",
            ));
        };
        if values[idx].is_some() {
            return Err(TrustError::metadata(key, "duplicate field"));
        }
        if last.is_some_and(|l| idx < l) {
            return Err(TrustError::metadata(
                key,
                "out of order: v1 fields come in the order name, version, sha256, expires",
            ));
        }
        values[idx] = Some(value);
        last = Some(idx);
    }

    let [name, version, sha256, expires] = values;
    fn required<'a>(v: Option<&'a str>, field: &str) -> Result<&'a str, TrustError> {
        v.ok_or_else(|| TrustError::metadata(field, "missing field"))
    }
    let (name, version, sha256) = (
        required(name, "name")?,
        required(version, "version")?,
        required(sha256, "sha256")?,
    );

    if !is_valid_plugin_name(name) {
        return Err(TrustError::metadata(
            "name",
            format!(
                "{:?} is not a plugin name ([a-z0-9][a-z0-9_-]{{0,63}})",
                shorten(name)
            ),
        ));
    }
    let version = parse_version(version).ok_or_else(|| {
        TrustError::metadata(
            "version",
            format!("{:?} is not an unsigned 64-bit integer", shorten(version)),
        )
    })?;
    let sha256 = parse_sha256(sha256).ok_or_else(|| {
        TrustError::metadata(
            "sha256",
            format!("{:?} is not 64 lowercase hex digits", shorten(sha256)),
        )
    })?;
    let expires = match expires {
        None => None,
        Some(e) => Some(parse_utc(e).ok_or_else(|| {
            TrustError::metadata(
                "expires",
                format!("{:?} is not a UTC time YYYY-MM-DDTHH:MM:SSZ", shorten(e)),
            )
        })?),
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

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` (years 1970 to 9999) into unix seconds.
pub(crate) fn parse_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 {
        return None;
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        };
        if !ok {
            return None;
        }
    }
    let num = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0i64, |n, &c| n * 10 + i64::from(c - b'0'))
    };
    let (y, mo, d, h, mi, sec) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
    );
    let days_in_month = match mo {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if y < 1970 || d < 1 || d > days_in_month || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    u64::try_from(days_since_epoch(y, mo, d) * 86_400 + h * 3_600 + mi * 60 + sec).ok()
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn format_utc(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = date_of_day(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 of a Gregorian date: years counted from March, in 400-year eras.
fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_since_epoch`].
fn date_of_day(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SHA: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn field_of(comment: &str) -> String {
        match parse_trusted_comment(comment) {
            Err(TrustError::BadMetadata { field, .. }) => field,
            other => panic!("{comment:?} gave {other:?}"),
        }
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
            assert_eq!(field_of(&comment), field, "{comment:?}");
            let msg = parse_trusted_comment(&comment).unwrap_err().to_string();
            assert!(msg.contains(&format!("`{field}`")), "{msg}");
        }
    }

    #[test]
    fn utc_times_round_trip() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2000-02-29T23:59:59Z"), Some(951_868_799));
        assert_eq!(parse_utc("9999-12-31T23:59:59Z"), Some(253_402_300_799));
        assert_eq!(parse_utc("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_utc("2001-02-29T00:00:00Z"), None);
        let mut t = 0u64;
        while t < 253_402_300_799 {
            assert_eq!(parse_utc(&format_utc(t)), Some(t), "{t}");
            t += 86_400 * 17 + 3_599;
        }
    }
}
