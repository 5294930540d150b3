//! Synthetic populations: deterministic unit ids and attributes, generated without a heap
//! allocation per unit (each worker reuses one id buffer and one attribute list).

use super::error::SimulateError;
use crate::unit::{Attribute, Unit};
use std::str::FromStr;

/// A synthetic population: ids `{prefix}{i}` for `i` in `start..start + count`, each with
/// attributes drawn from [`AttributeDistribution`]s (deterministic per unit id).
///
/// ```
/// use abkit::simulate::{AttributeDistribution, SyntheticSpec};
/// let spec = SyntheticSpec::new(1000).with_attribute("country=US:60,CA:40".parse().unwrap());
/// let mut id = String::new();
/// spec.write_id(7, &mut id);
/// assert_eq!(id, "unit-7");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// How many units.
    pub count: u64,
    /// Text before the number of every id (`unit-` by default).
    pub prefix: String,
    /// The first unit's number (0 by default).
    pub start: u64,
    /// Attribute distributions, each drawn independently per unit id.
    pub attributes: Vec<AttributeDistribution>,
}

impl SyntheticSpec {
    /// `count` units `unit-0`, `unit-1` ... without attributes.
    pub fn new(count: u64) -> Self {
        SyntheticSpec {
            count,
            prefix: "unit-".to_string(),
            start: 0,
            attributes: Vec::new(),
        }
    }

    /// The same population with one more attribute distribution.
    pub fn with_attribute(mut self, dist: AttributeDistribution) -> Self {
        self.attributes.push(dist);
        self
    }

    /// Writes the id of unit number `i` (counted from 0, before `start` is added) into `buf`,
    /// replacing its contents. Allocation-free once `buf` has grown to the id's length.
    #[inline]
    pub fn write_id(&self, i: u64, buf: &mut String) {
        buf.clear();
        buf.push_str(&self.prefix);
        push_decimal(buf, self.start.wrapping_add(i));
    }
}

/// Appends the decimal digits of `n` to `buf` without going through `fmt`.
#[inline]
fn push_decimal(buf: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut pos = digits.len();
    loop {
        pos -= 1;
        digits[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[pos..] {
        buf.push(char::from(d));
    }
}

/// One synthetic attribute: a name and weighted values, e.g. `country=US:60,CA:40`.
///
/// The value of a unit is a deterministic function of the attribute name and the unit id
/// (FNV-1a then a SplitMix64 finaliser, scaled onto the cumulative weights), unrelated to the
/// SHA-256 bucketing, so attributes and variants are independent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeDistribution {
    name: String,
    values: Vec<(String, u32)>,
    cumulative: Vec<u64>,
    total: u64,
}

impl AttributeDistribution {
    /// A distribution over `values` (value, weight); the weights must not all be 0.
    pub fn new(name: impl Into<String>, values: Vec<(String, u32)>) -> Result<Self, SimulateError> {
        let name = name.into();
        let fail = |problem: &str| SimulateError::BadAttributeDistribution {
            spec: format!(
                "{name}={}",
                values
                    .iter()
                    .map(|(v, w)| format!("{v}:{w}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            problem: problem.to_string(),
        };
        if name.is_empty() {
            return Err(fail("the attribute name is empty"));
        }
        if values.is_empty() {
            return Err(fail("no values"));
        }
        let mut cumulative = Vec::with_capacity(values.len());
        let mut total = 0u64;
        for (_, w) in &values {
            total += u64::from(*w);
            cumulative.push(total);
        }
        if total == 0 {
            return Err(fail(
                "the weights sum to 0; give at least one a positive weight",
            ));
        }
        Ok(AttributeDistribution {
            name,
            values,
            cumulative,
            total,
        })
    }

    /// Parses `NAME=VALUE:WEIGHT,VALUE:WEIGHT...` (a missing `:WEIGHT` means 1).
    pub fn parse(spec: &str) -> Result<Self, SimulateError> {
        let fail = |problem: String| SimulateError::BadAttributeDistribution {
            spec: spec.to_string(),
            problem,
        };
        let (name, list) = spec
            .split_once('=')
            .ok_or_else(|| fail("there is no `=`".to_string()))?;
        let mut values = Vec::new();
        for item in list.split(',') {
            let (value, weight) = match item.rsplit_once(':') {
                Some((v, w)) => {
                    let w = w.trim().parse::<u32>().map_err(|_| {
                        fail(format!(
                            "weight \"{w}\" of \"{v}\" is not a non-negative integer"
                        ))
                    })?;
                    (v, w)
                }
                None => (item, 1),
            };
            if value.is_empty() {
                return Err(fail("a value is empty".to_string()));
            }
            values.push((value.to_string(), weight));
        }
        AttributeDistribution::new(name, values).map_err(|e| match e {
            SimulateError::BadAttributeDistribution { problem, .. } => fail(problem),
            other => other,
        })
    }

    /// The attribute's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The values and their weights.
    pub fn values(&self) -> &[(String, u32)] {
        &self.values
    }

    /// The value of this attribute for `unit_id` (deterministic).
    #[inline]
    pub fn pick(&self, unit_id: &str) -> &str {
        let h = attribute_hash(self.name.as_bytes(), unit_id.as_bytes());
        let x = ((u128::from(h) * u128::from(self.total)) >> 64) as u64;
        let i = self.cumulative.partition_point(|&c| c <= x);
        // `x < total = cumulative.last()`, so `i` is a valid index; `min` keeps that visible.
        &self.values[i.min(self.values.len() - 1)].0
    }
}

impl FromStr for AttributeDistribution {
    type Err = SimulateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttributeDistribution::parse(s)
    }
}

/// FNV-1a over `name 0xFF id`, then the SplitMix64 finaliser (full 64-bit avalanche).
#[inline]
fn attribute_hash(name: &[u8], id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.iter().chain(&[0xFF]).chain(id) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Consecutive synthetic ids from one reused buffer: asking for unit `i + 1` right after unit
/// `i` increments the decimal digits in place (usually one byte), anything else rewrites the id.
///
/// ```
/// use abkit::simulate::{SyntheticIds, SyntheticSpec};
/// let spec = SyntheticSpec::new(200);
/// let mut ids = SyntheticIds::new(&spec);
/// assert_eq!(ids.id(99), "unit-99");
/// assert_eq!(ids.id(100), "unit-100");
/// assert_eq!(ids.id(7), "unit-7");
/// ```
#[derive(Debug, Clone)]
pub struct SyntheticIds<'s> {
    spec: &'s SyntheticSpec,
    id: String,
    /// The number after the one in `id`, when `id` holds a complete id.
    next: Option<u64>,
}

impl<'s> SyntheticIds<'s> {
    /// An empty buffer for `spec`'s ids.
    pub fn new(spec: &'s SyntheticSpec) -> Self {
        SyntheticIds {
            spec,
            id: String::with_capacity(spec.prefix.len() + 20),
            next: None,
        }
    }

    /// The id of unit number `i` (the same text as [`SyntheticSpec::write_id`]).
    #[inline]
    pub fn id(&mut self, i: u64) -> &str {
        let n = self.spec.start.wrapping_add(i);
        if self.next != Some(n) || !self.increment() {
            self.spec.write_id(i, &mut self.id);
        }
        self.next = n.checked_add(1);
        &self.id
    }

    /// Adds one to the decimal number at the end of `id`; `false` when it gains a digit.
    #[inline]
    fn increment(&mut self) -> bool {
        let digits_from = self.spec.prefix.len();
        let bytes = self.id.as_bytes();
        let mut j = bytes.len();
        while j > digits_from && bytes[j - 1] == b'9' {
            j -= 1;
        }
        if j == digits_from {
            return false;
        }
        let last = bytes[j - 1];
        let nines = bytes.len() - j;
        self.id.truncate(j - 1);
        self.id.push(char::from(last + 1));
        for _ in 0..nines {
            self.id.push('0');
        }
        true
    }
}

/// One worker's generator: reused id buffer and attribute list.
pub(crate) struct Generator<'s> {
    spec: &'s SyntheticSpec,
    ids: SyntheticIds<'s>,
    attrs: Vec<Attribute<'s>>,
}

impl<'s> Generator<'s> {
    pub(crate) fn new(spec: &'s SyntheticSpec) -> Self {
        Generator {
            spec,
            ids: SyntheticIds::new(spec),
            attrs: Vec::with_capacity(spec.attributes.len()),
        }
    }

    /// Unit number `i` (allocation-free after the first call).
    #[inline]
    pub(crate) fn unit(&mut self, i: u64) -> Unit<'_> {
        let id = self.ids.id(i);
        self.attrs.clear();
        for d in &self.spec.attributes {
            self.attrs.push(Attribute::new(d.name(), d.pick(id)));
        }
        Unit::new(id).with_attributes(&self.attrs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefix_and_number() {
        let mut spec = SyntheticSpec::new(3);
        let mut buf = String::new();
        for (i, want) in [
            (0, "unit-0"),
            (9, "unit-9"),
            (10, "unit-10"),
            (u64::MAX, "unit-18446744073709551615"),
        ] {
            spec.write_id(i, &mut buf);
            assert_eq!(buf, want);
        }
        spec.prefix = "u".into();
        spec.start = 100;
        spec.write_id(5, &mut buf);
        assert_eq!(buf, "u105");
    }

    #[test]
    fn in_place_ids_equal_written_ids() {
        let mut spec = SyntheticSpec::new(0);
        spec.start = 95;
        let mut ids = SyntheticIds::new(&spec);
        let mut want = String::new();
        for i in (0..2000).chain([
            5,
            4,
            3,
            1_000_000 - 96,
            1_000_000 - 95,
            u64::MAX - 96,
            u64::MAX - 95,
            0,
        ]) {
            spec.write_id(i, &mut want);
            assert_eq!(ids.id(i), want, "{i}");
        }
    }

    #[test]
    fn distribution_parses_and_rejects_with_a_reason() {
        let d = AttributeDistribution::parse("country=US:60,CA:40,MX").unwrap();
        assert_eq!(d.name(), "country");
        assert_eq!(
            d.values(),
            &[
                ("US".to_string(), 60),
                ("CA".to_string(), 40),
                ("MX".to_string(), 1)
            ]
        );
        for bad in [
            "country",
            "=US:1",
            "country=US:x",
            "country=US:0",
            "country=:3",
        ] {
            let e = AttributeDistribution::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn values_are_deterministic_and_follow_the_weights() {
        let d = AttributeDistribution::parse("country=US:60,CA:40,XX:0").unwrap();
        let mut us = 0;
        let mut buf = String::new();
        let spec = SyntheticSpec::new(0);
        for i in 0..100_000 {
            spec.write_id(i, &mut buf);
            let v = d.pick(&buf);
            assert_eq!(v, d.pick(&buf));
            assert_ne!(v, "XX");
            us += usize::from(v == "US");
        }
        // sd of the count is sqrt(1e5 * 0.24) ~ 155; allow 5 sd
        assert!((us as i64 - 60_000).abs() < 800, "{us}");
    }
}
