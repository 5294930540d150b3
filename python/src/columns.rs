//! Columns of strings handed over by the Python package: a `list` (items `str` or `None`),
//! or the three buffers of an Arrow `string` / `large_string` array.
//!
//! The Python side (`abkit/_columns.py`) turns every supported input (list, tuple, NumPy
//! array, pandas Series, pyarrow array) into one of those two forms. Here they become
//! `Option<&str>` slices borrowed from Python objects this module keeps alive, so the work
//! after that runs without the GIL and without copying the strings.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use rayon::prelude::*;

/// A column's text, taken with the GIL: either copied out of a Python list into one buffer
/// (one pass over the list; the list may change once the GIL is released, the copy cannot),
/// or the buffers of an Arrow array, held by strong references to immutable `bytes`.
/// [`Holder::values`] and [`Holder::required`] borrow the strings from it.
pub(crate) enum Holder<'py> {
    /// Copied from a Python list, or decoded from UTF-32.
    Owned(OwnedStrings),
    /// A list of `str` (no `None`) joined by the package with NUL separators (`"\0".join`,
    /// one C loop) and encoded to UTF-8; no value holds a NUL.
    Joined {
        /// The UTF-8 bytes.
        data: Bound<'py, PyBytes>,
        /// Number of values.
        len: usize,
    },
    /// The bytes of a NumPy `<U{chars}` array: `len` items of `chars` UTF-32LE code units,
    /// trailing NULs not part of the value (as NumPy reads them). Unit ids of this form are
    /// decoded on the fly by the bulk core ([`Ids::Utf32`]); see [`Holder::into_decoded`].
    Utf32 {
        /// The array's bytes.
        data: Bound<'py, PyBytes>,
        /// Characters per item.
        chars: usize,
        /// Number of items.
        len: usize,
    },
    /// An Arrow string array: offsets, UTF-8 data and the optional validity bitmap.
    Arrow(ArrowStrings<'py>),
}

/// Strings copied out of a list: all the text in one buffer, and where each value ends.
pub(crate) struct OwnedStrings {
    text: String,
    /// `ends[i]`: the end of value `i` in `text` (it starts where value `i - 1` ends).
    ends: Vec<usize>,
    /// Indices of the missing values (`None`), in order.
    missing: Vec<usize>,
}

/// The buffers of an Arrow `string` (32-bit offsets) or `large_string` (64-bit) array.
pub(crate) struct ArrowStrings<'py> {
    offsets: Bound<'py, PyBytes>,
    data: Bound<'py, PyBytes>,
    validity: Option<Bound<'py, PyBytes>>,
    /// The array's offset into its buffers (a slice of a larger array), in elements.
    offset: usize,
    /// Number of elements.
    len: usize,
    /// Bytes per offset: 4 or 8.
    width: usize,
}

impl<'py> Holder<'py> {
    /// Takes a column argument: a list, or the tuple
    /// `("arrow", offsets: bytes, data: bytes, validity: bytes | None, offset: int, length: int, offset_width: int)`.
    /// `what` names the column in messages (`units`, `attribute "country"`).
    pub(crate) fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            return Ok(Holder::Owned(OwnedStrings::from_list(list, what)?));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            if t.len() == 7 && t.get_item(0)?.extract::<String>().ok().as_deref() == Some("arrow") {
                let width: usize = t.get_item(6)?.extract()?;
                if width != 4 && width != 8 {
                    return Err(PyValueError::new_err(format!(
                        "{what}: Arrow offsets are 4 or 8 bytes wide, not {width}"
                    )));
                }
                let validity = t.get_item(3)?;
                return Ok(Holder::Arrow(ArrowStrings {
                    offsets: t.get_item(1)?.cast_into::<PyBytes>()?,
                    data: t.get_item(2)?.cast_into::<PyBytes>()?,
                    validity: if validity.is_none() {
                        None
                    } else {
                        Some(validity.cast_into::<PyBytes>()?)
                    },
                    offset: t.get_item(4)?.extract()?,
                    len: t.get_item(5)?.extract()?,
                    width,
                }));
            }
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            if t.len() == 3 && t.get_item(0)?.extract::<String>().ok().as_deref() == Some("joined")
            {
                return Ok(Holder::Joined {
                    data: t.get_item(1)?.cast_into::<PyBytes>()?,
                    len: t.get_item(2)?.extract()?,
                });
            }
            if t.len() == 4 && t.get_item(0)?.extract::<String>().ok().as_deref() == Some("utf32") {
                let data = t.get_item(1)?.cast_into::<PyBytes>()?;
                let chars: usize = t.get_item(2)?.extract()?;
                let len: usize = t.get_item(3)?.extract()?;
                let size = chars.checked_mul(4).and_then(|b| b.checked_mul(len));
                if size != Some(data.as_bytes().len()) {
                    return Err(PyValueError::new_err(format!(
                        "{what}: {} bytes of UTF-32 data for {len} items of {chars} characters; \
                         pass a contiguous 1-dimensional NumPy str array",
                        data.as_bytes().len()
                    )));
                }
                return Ok(Holder::Utf32 { data, chars, len });
            }
        }
        let ty = obj.get_type().name()?.to_string();
        Err(PyTypeError::new_err(format!(
            "{what}: expected a list of str or Arrow string buffers from the abkit package, \
             got {ty}; call abkit's Python functions rather than abkit._abkit directly"
        )))
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Holder::Owned(o) => o.ends.len(),
            Holder::Joined { len, .. } | Holder::Utf32 { len, .. } => *len,
            Holder::Arrow(a) => a.len,
        }
    }

    /// The same column with UTF-32 data decoded to UTF-8 (in parallel, without the GIL), for
    /// uses that need `&str` values ([`Holder::values`], [`Holder::required`]).
    pub(crate) fn into_decoded(self, py: Python<'_>, what: &str) -> PyResult<Self> {
        match self {
            Holder::Utf32 { data, chars, len } => {
                let bytes = data.as_bytes();
                let decoded = py.detach(|| OwnedStrings::from_utf32(bytes, chars, len, what));
                Ok(Holder::Owned(decoded.map_err(PyValueError::new_err)?))
            }
            other => Ok(other),
        }
    }

    /// The unit ids for the bulk core: every value required (a missing one is an error naming
    /// its position); UTF-32 data is handed on undecoded.
    pub(crate) fn ids(&self, what: &str) -> PyResult<Ids<'_>> {
        let missing = |i: usize| {
            PyValueError::new_err(format!(
                "{what}[{i}] is missing (None, NaN or null): every unit needs an id; drop or \
                 fill the missing ids first (e.g. `series.dropna()`)"
            ))
        };
        match self {
            Holder::Utf32 { data, chars, len } => Ok(Ids::Utf32 {
                data: data.as_bytes(),
                chars: *chars,
                len: *len,
            }),
            Holder::Owned(o) => match o.missing.first() {
                Some(&i) => Err(missing(i)),
                None => Ok(Ids::Owned {
                    text: &o.text,
                    ends: &o.ends,
                }),
            },
            Holder::Joined { data, len } => {
                let text = joined_text(data.as_bytes(), what)?;
                let separators: Vec<usize> = text
                    .bytes()
                    .enumerate()
                    .filter_map(|(i, b)| (b == 0).then_some(i))
                    .collect();
                if separators.len() + 1 != *len && *len != 0 {
                    return Err(joined_mismatch(what, separators.len() + 1, *len));
                }
                Ok(Ids::Joined {
                    text,
                    separators,
                    len: *len,
                })
            }
            Holder::Arrow(a) => {
                let view = a.view(what)?;
                match a.first_null() {
                    Some(i) => Err(missing(i)),
                    None => Ok(Ids::Arrow(view)),
                }
            }
        }
    }

    /// The values, borrowed (`None` = missing). Fails on inconsistent Arrow buffers, naming
    /// the position.
    pub(crate) fn values(&self, what: &str) -> PyResult<Vec<Option<&str>>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(what, |_, v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// The values, every one required: a missing value is an error naming its position.
    pub(crate) fn required(&self, what: &str) -> PyResult<Vec<&str>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(what, |i, v| match v {
            Some(s) => {
                out.push(s);
                Ok(())
            }
            None => Err(PyValueError::new_err(format!(
                "{what}[{i}] is missing (None, NaN or null): every unit needs an id; drop or \
                 fill the missing ids first (e.g. `series.dropna()`)"
            ))),
        })?;
        Ok(out)
    }

    /// Calls `f(i, value)` for every value in order.
    fn each<'s>(
        &'s self,
        what: &str,
        mut f: impl FnMut(usize, Option<&'s str>) -> PyResult<()>,
    ) -> PyResult<()> {
        match self {
            Holder::Owned(o) => o.each(f),
            Holder::Joined { data, len } => {
                let text = joined_text(data.as_bytes(), what)?;
                let mut n = 0;
                if *len > 0 {
                    for (i, value) in text.split('\0').enumerate() {
                        if i < *len {
                            f(i, Some(value))?;
                        }
                        n += 1;
                    }
                }
                if n != *len {
                    return Err(joined_mismatch(what, n, *len));
                }
                Ok(())
            }
            Holder::Arrow(a) => a.each(what, f),
            Holder::Utf32 { .. } => Err(PyValueError::new_err(format!(
                "{what}: UTF-32 data must be decoded first (an internal error; please report it)"
            ))),
        }
    }
}

impl OwnedStrings {
    /// Copies the items of `list` (each `str` or `None`), in one pass with the GIL held.
    fn from_list(list: &Bound<'_, PyList>, what: &str) -> PyResult<Self> {
        let n = list.len();
        let mut out = OwnedStrings {
            text: String::with_capacity(n * 16),
            ends: Vec::with_capacity(n),
            missing: Vec::new(),
        };
        for (i, item) in list.iter().enumerate() {
            if item.is_none() {
                out.missing.push(i);
            } else if let Ok(s) = item.cast::<PyString>() {
                let text = s.to_str().map_err(|_| {
                    PyValueError::new_err(format!(
                        "{what}[{i}] is not valid Unicode text (it holds a lone surrogate, \
                         which has no UTF-8 form); clean the value first"
                    ))
                })?;
                out.text.push_str(text);
            } else {
                let ty = item.get_type().name()?.to_string();
                return Err(PyTypeError::new_err(format!(
                    "{what}[{i}] is a {ty} ({}), not a str: ids and attribute values are \
                     strings; convert them first (e.g. `[str(x) for x in ids]` or \
                     `series.astype(str)`)",
                    short_repr(&item)
                )));
            }
            out.ends.push(out.text.len());
        }
        Ok(out)
    }

    /// Decodes a NumPy `<U{chars}` array's bytes (`len` items of `chars` UTF-32LE code
    /// units, trailing NULs not part of the value, as NumPy reads them), in parallel.
    fn from_utf32(bytes: &[u8], chars: usize, len: usize, what: &str) -> Result<Self, String> {
        let item = chars.checked_mul(4).filter(|&b| b > 0);
        let expected = item.and_then(|b| b.checked_mul(len));
        let (Some(item), Some(expected)) = (item, expected) else {
            return Ok(OwnedStrings {
                text: String::new(),
                ends: vec![0; len],
                missing: Vec::new(),
            });
        };
        if bytes.len() != expected {
            return Err(format!(
                "{what}: {} bytes of UTF-32 data for {len} items of {chars} characters; pass \
                 a contiguous 1-dimensional NumPy str array",
                bytes.len()
            ));
        }
        const PART: usize = 1 << 16;
        let parts: Vec<Result<(String, Vec<usize>), String>> = bytes
            .par_chunks(item * PART)
            .enumerate()
            .map(|(p, part)| {
                let mut text = String::with_capacity(part.len() / 4);
                let mut ends = Vec::with_capacity(part.len() / item);
                let mut value = String::new();
                for (k, raw) in part.chunks_exact(item).enumerate() {
                    decode_utf32(raw, &mut value).map_err(|u| {
                        format!(
                            "{what}[{}] holds {u:#x}, which is not a Unicode character (a \
                             lone surrogate?); clean the value first",
                            p * PART + k
                        )
                    })?;
                    text.push_str(&value);
                    ends.push(text.len());
                }
                Ok((text, ends))
            })
            .collect();
        let mut out = OwnedStrings {
            text: String::with_capacity(bytes.len() / 4),
            ends: Vec::with_capacity(len),
            missing: Vec::new(),
        };
        for part in parts {
            let (text, ends) = part?;
            let base = out.text.len();
            out.text.push_str(&text);
            out.ends.extend(ends.into_iter().map(|e| e + base));
        }
        Ok(out)
    }

    fn each<'s>(
        &'s self,
        mut f: impl FnMut(usize, Option<&'s str>) -> PyResult<()>,
    ) -> PyResult<()> {
        let mut start = 0;
        let mut missing = self.missing.iter().copied().peekable();
        for (i, &end) in self.ends.iter().enumerate() {
            if missing.next_if_eq(&i).is_some() {
                f(i, None)?;
            } else {
                // Each value was pushed whole, so `start..end` are character boundaries.
                f(i, Some(self.text.get(start..end).unwrap_or_default()))?;
            }
            start = end;
        }
        Ok(())
    }
}

impl ArrowStrings<'_> {
    /// The index of the first null value, if any.
    fn first_null(&self) -> Option<usize> {
        let bits = self.validity.as_ref()?.as_bytes();
        (0..self.len).find(|i| {
            let bit = self.offset + i;
            bits.get(bit / 8)
                .is_none_or(|byte| byte & (1u8 << (bit % 8)) == 0)
        })
    }

    /// The values as the bulk core reads them, checked up front: every offset readable, the
    /// data they span valid UTF-8. Each value's own span is checked as it is read.
    fn view(&self, what: &str) -> PyResult<ArrowView<'_>> {
        let offsets = self.offsets.as_bytes();
        let data = self.data.as_bytes();
        let end_index = self
            .offset
            .checked_add(self.len)
            .ok_or_else(|| PyValueError::new_err(format!("{what}: Arrow length overflows")))?;
        let base = self.offset_at(offsets, self.offset, what)?;
        let end = self.offset_at(offsets, end_index, what)?;
        let region = data.get(base..end).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what}: the Arrow offsets point past the data buffer ({base}..{end} of {} \
                 bytes); pass a valid pyarrow string array",
                data.len()
            ))
        })?;
        let text = std::str::from_utf8(region).map_err(|e| {
            PyValueError::new_err(format!(
                "{what}: the Arrow data is not valid UTF-8 (at byte {}); ids and attribute \
                 values are text",
                base + e.valid_up_to()
            ))
        })?;
        // Both ends were read above, so every offset in between is in the buffer.
        let offsets = offsets
            .get(self.offset * self.width..(end_index + 1) * self.width)
            .unwrap_or_default();
        Ok(ArrowView {
            offsets,
            text,
            base,
            width: self.width,
        })
    }

    fn offset_at(&self, offsets: &[u8], i: usize, what: &str) -> PyResult<usize> {
        let bad = || {
            PyValueError::new_err(format!(
                "{what}: the Arrow offsets buffer is too short or holds a negative offset \
                 (element {i}); pass a valid pyarrow string array"
            ))
        };
        let start = i.checked_mul(self.width).ok_or_else(bad)?;
        let bytes = offsets.get(start..start + self.width).ok_or_else(bad)?;
        let value = if self.width == 4 {
            let mut b = [0u8; 4];
            b.copy_from_slice(bytes);
            i64::from(i32::from_le_bytes(b))
        } else {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            i64::from_le_bytes(b)
        };
        usize::try_from(value).map_err(|_| bad())
    }

    /// Calls `f` with each value (`None` where the validity bitmap says null), after the
    /// checks of [`Self::view`].
    fn each<'s>(
        &'s self,
        what: &str,
        mut f: impl FnMut(usize, Option<&'s str>) -> PyResult<()>,
    ) -> PyResult<()> {
        let view = self.view(what)?;
        let validity = self.validity.as_ref().map(|v| v.as_bytes());
        for i in 0..self.len {
            let bit = self.offset + i;
            let valid = validity.is_none_or(|v| {
                v.get(bit / 8)
                    .is_some_and(|byte| byte & (1u8 << (bit % 8)) != 0)
            });
            if !valid {
                f(i, None)?;
                continue;
            }
            // `str::get` also refuses a span that does not start and end on a char boundary.
            let s = view
                .offset(i)
                .zip(view.offset(i + 1))
                .and_then(|(start, stop)| view.text.get(start..stop))
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "{what}[{i}]: inconsistent Arrow offsets; pass a valid pyarrow string \
                         array"
                    ))
                })?;
            f(i, Some(s))?;
        }
        Ok(())
    }
}

/// A short `repr` of a value for messages (at most 40 characters).
fn short_repr(obj: &Bound<'_, PyAny>) -> String {
    let text = obj
        .repr()
        .map_or_else(|_| "?".to_string(), |r| r.to_string());
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(37).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// One attribute for every unit: a constant, or a column (missing values: no attribute).
pub(crate) enum AttrValues<'a> {
    /// The same value for every unit.
    Scalar(String),
    /// One value per unit; `None`: that unit has no such attribute.
    Column(Vec<Option<&'a str>>),
}

/// A named attribute column.
pub(crate) struct AttrColumn<'a> {
    /// Attribute name.
    pub(crate) name: String,
    /// Its values.
    pub(crate) values: AttrValues<'a>,
}

impl AttrColumn<'_> {
    /// The value for unit `i`, if it has one.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        match &self.values {
            AttrValues::Scalar(s) => Some(s.as_str()),
            AttrValues::Column(v) => v.get(i).copied().flatten(),
        }
    }
}

/// The attributes argument as the Python package passes it: a list of `(name, value)` where
/// value is a `str` (every unit) or a column argument (see [`Holder::extract`]).
pub(crate) struct AttrHolders<'py> {
    items: Vec<(String, Result<String, Holder<'py>>)>,
}

impl<'py> AttrHolders<'py> {
    /// Takes the attributes (`None`: none) for `units` units.
    pub(crate) fn extract(
        py: Python<'py>,
        obj: Option<&Bound<'py, PyAny>>,
        units: usize,
    ) -> PyResult<Self> {
        let mut items = Vec::new();
        let Some(obj) = obj else {
            return Ok(AttrHolders { items });
        };
        if obj.is_none() {
            return Ok(AttrHolders { items });
        }
        let list = obj.cast::<PyList>().map_err(|_| {
            PyTypeError::new_err(
                "attributes: expected a list of (name, column) pairs from the abkit package",
            )
        })?;
        for pair in list.iter() {
            let (name, value): (String, Bound<'py, PyAny>) = pair.extract()?;
            if name.is_empty() {
                return Err(PyValueError::new_err(
                    "attributes: an attribute name is empty; name every attribute",
                ));
            }
            let what = format!("attribute \"{name}\"");
            if let Ok(s) = value.cast::<PyString>() {
                items.push((name, Ok(s.to_str()?.to_string())));
                continue;
            }
            let holder = Holder::extract(&value, &what)?.into_decoded(py, &what)?;
            if holder.len() != units {
                return Err(PyValueError::new_err(format!(
                    "{what} has {} values for {units} units: give one value per unit (None \
                     where a unit has none), or one str for all",
                    holder.len()
                )));
            }
            items.push((name, Err(holder)));
        }
        Ok(AttrHolders { items })
    }

    /// The columns, borrowed.
    pub(crate) fn columns(&self) -> PyResult<Vec<AttrColumn<'_>>> {
        self.items
            .iter()
            .map(|(name, v)| {
                Ok(AttrColumn {
                    name: name.clone(),
                    values: match v {
                        Ok(s) => AttrValues::Scalar(s.clone()),
                        Err(h) => AttrValues::Column(h.values(&format!("attribute \"{name}\""))?),
                    },
                })
            })
            .collect()
    }
}

/// The text of a joined list (valid UTF-8: Python encoded it).
fn joined_text<'a>(data: &'a [u8], what: &str) -> PyResult<&'a str> {
    std::str::from_utf8(data)
        .map_err(|_| PyValueError::new_err(format!("{what}: the joined values are not UTF-8")))
}

/// A joined list whose separators do not match its length (a value held a NUL).
fn joined_mismatch(what: &str, found: usize, len: usize) -> PyErr {
    PyValueError::new_err(format!(
        "{what}: {found} values joined for {len} expected; a value holds a NUL character \
         (the abkit package passes such lists item by item)"
    ))
}

/// Arrow string values as the bulk core reads them (see [`ArrowStrings::view`]).
pub(crate) struct ArrowView<'a> {
    /// The offsets of these values: `len + 1` of them, `width` bytes each.
    offsets: &'a [u8],
    /// The data from the first value's start to the last one's end.
    text: &'a str,
    /// The offset `text` starts at.
    base: usize,
    /// Bytes per offset: 4 or 8.
    width: usize,
}

impl ArrowView<'_> {
    fn offset(&self, i: usize) -> Option<usize> {
        let bytes = self.offsets.get(i * self.width..(i + 1) * self.width)?;
        let value = match *bytes {
            [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => return None,
        };
        usize::try_from(value).ok()?.checked_sub(self.base)
    }
}

/// Unit ids as the bulk core reads them, without a `&str` per unit made first.
pub(crate) enum Ids<'a> {
    /// Text, one `&str` per unit.
    Text(Vec<&'a str>),
    /// Strings copied from a list: value `i` ends at `ends[i]` in `text`.
    Owned {
        /// All values, one after the other.
        text: &'a str,
        /// Where each ends.
        ends: &'a [usize],
    },
    /// A joined list: value `i` runs from after separator `i - 1` to separator `i` (or the end).
    Joined {
        /// The values separated by NULs.
        text: &'a str,
        /// Where the NULs are.
        separators: Vec<usize>,
        /// Number of values (`separators.len() + 1`, or 0).
        len: usize,
    },
    /// An Arrow string array without nulls.
    Arrow(ArrowView<'a>),
    /// A NumPy `<U{chars}` array's bytes, decoded unit by unit by [`decode_utf32`].
    Utf32 {
        /// The array's bytes (`len * chars * 4` of them).
        data: &'a [u8],
        /// Characters per item.
        chars: usize,
        /// Number of items.
        len: usize,
    },
}

impl Ids<'_> {
    /// Number of units.
    pub(crate) fn len(&self) -> usize {
        match self {
            Ids::Text(v) => v.len(),
            Ids::Owned { ends, .. } => ends.len(),
            Ids::Joined { len, .. } => *len,
            Ids::Arrow(a) => (a.offsets.len() / a.width).saturating_sub(1),
            Ids::Utf32 { len, .. } => *len,
        }
    }

    /// Unit `i`'s id (UTF-32 is decoded into `buf`), or `None` when its data is not a valid
    /// string (inconsistent Arrow offsets, a UTF-32 code that is no character).
    #[inline]
    pub(crate) fn get<'s>(&'s self, i: usize, buf: &'s mut String) -> Option<&'s str> {
        match self {
            Ids::Text(v) => v.get(i).copied(),
            Ids::Owned { text, ends } => {
                let start = if i == 0 { 0 } else { *ends.get(i - 1)? };
                text.get(start..*ends.get(i)?)
            }
            Ids::Joined {
                text, separators, ..
            } => {
                let start = if i == 0 {
                    0
                } else {
                    separators.get(i - 1)? + 1
                };
                let end = separators.get(i).copied().unwrap_or(text.len());
                text.get(start..end)
            }
            Ids::Arrow(a) => a.text.get(a.offset(i)?..a.offset(i + 1)?),
            Ids::Utf32 { data, chars, .. } => {
                let item = data.get(i * chars * 4..(i + 1) * chars * 4)?;
                decode_utf32(item, buf).ok()?;
                Some(buf.as_str())
            }
        }
    }

    /// Why unit `i` has no id (for the error after [`Ids::get`] answered `None`).
    pub(crate) fn problem(&self, i: usize, what: &str) -> String {
        match self {
            Ids::Utf32 { .. } => format!(
                "{what}[{i}] holds a code point that is not a Unicode character (a lone \
                 surrogate?); clean the value first"
            ),
            _ => format!(
                "{what}[{i}]: inconsistent Arrow offsets (backwards, or not on a character \
                 boundary); pass a valid pyarrow string array"
            ),
        }
    }
}

/// Decodes one NumPy UTF-32LE item (trailing NULs dropped) into `out`; `Err(code)` for a code
/// unit that is no Unicode character.
pub(crate) fn decode_utf32(item: &[u8], out: &mut String) -> Result<(), u32> {
    out.clear();
    let padding = item.rchunks_exact(4).take_while(|c| *c == [0u8; 4]).count();
    for c in item.chunks_exact(4).take(item.len() / 4 - padding) {
        let u = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        out.push(char::from_u32(u).ok_or(u)?);
    }
    Ok(())
}
