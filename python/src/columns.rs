//! Columns of strings handed over by the Python package: a `list` (items `str` or `None`),
//! the code units of a NumPy `str` array, or the three buffers of an Arrow `string` /
//! `large_string` array.
//!
//! The Python side (`abkit/_columns.py`) turns every supported input (list, tuple, NumPy
//! array, pandas Series, pyarrow array) into one of those forms. NumPy and Arrow data are read
//! in place, through read-only NumPy views of their buffers this module keeps borrowed (no
//! copy); list items are copied (another Python thread may change a list once the GIL is
//! released, the copy cannot change).

use numpy::{PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use rayon::prelude::*;

/// A column's text, taken with the GIL. [`Holder::values`] and [`Holder::required`] borrow
/// the strings from it.
pub(crate) enum Holder<'py> {
    /// A Python list, not read yet: the bulk core reads it chunk by chunk
    /// ([`crate::bulk::assign_with_gil_work`]); [`Holder::into_decoded`] copies it whole.
    List(Bound<'py, PyList>),
    /// Copied from a Python list, or decoded from UTF-32.
    Owned(OwnedStrings),
    /// A NumPy `<U{chars}` array viewed as its code units: `len` items of `chars` UTF-32 code
    /// units (native order), trailing NULs not part of the value (as NumPy reads them). Unit
    /// ids of this form are decoded on the fly by the bulk core ([`Ids::Utf32`]); see
    /// [`Holder::into_decoded`].
    Utf32 {
        /// The code units, borrowed from the array (read-only, not copied).
        data: PyReadonlyArray1<'py, u32>,
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

/// The buffers of an Arrow `string` (32-bit offsets) or `large_string` (64-bit) array, as
/// read-only NumPy `uint8` views (`numpy.frombuffer`: not copied).
pub(crate) struct ArrowStrings<'py> {
    offsets: PyReadonlyArray1<'py, u8>,
    data: PyReadonlyArray1<'py, u8>,
    validity: Option<PyReadonlyArray1<'py, u8>>,
    /// The array's offset into its buffers (a slice of a larger array), in elements.
    offset: usize,
    /// Number of elements.
    len: usize,
    /// Bytes per offset: 4 or 8.
    width: usize,
}

/// A read-only view of a contiguous NumPy array, or an error naming the column.
fn slice<'a, T: numpy::Element>(
    array: &'a PyReadonlyArray1<'_, T>,
    what: &str,
) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|e| {
        PyValueError::new_err(format!(
            "{what}: the data is not one contiguous block ({e}); the abkit package passes \
             contiguous arrays (an internal error; please report it)"
        ))
    })
}

/// The error for a missing unit id at position `i`.
fn missing_id(what: &str, i: usize) -> PyErr {
    PyValueError::new_err(format!(
        "{what}[{i}] is missing (None, NaN or null): every unit needs an id; drop or fill the \
         missing ids first (e.g. `series.dropna()`)"
    ))
}

impl<'py> Holder<'py> {
    /// Takes a column argument: a list, the tuple `("utf32", code_units: uint32 array, chars:
    /// int, length: int)`, or the tuple `("arrow", offsets: uint8 array, data: uint8 array,
    /// validity: uint8 array | None, offset: int, length: int, offset_width: int)`. `what`
    /// names the column in messages (`units`, `attribute "country"`).
    pub(crate) fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            return Ok(Holder::List(list.clone()));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            let tag = t.get_item(0).ok().and_then(|x| x.extract::<String>().ok());
            if t.len() == 7 && tag.as_deref() == Some("arrow") {
                let width: usize = t.get_item(6)?.extract()?;
                if width != 4 && width != 8 {
                    return Err(PyValueError::new_err(format!(
                        "{what}: Arrow offsets are 4 or 8 bytes wide, not {width}"
                    )));
                }
                let validity = t.get_item(3)?;
                return Ok(Holder::Arrow(ArrowStrings {
                    offsets: t.get_item(1)?.extract()?,
                    data: t.get_item(2)?.extract()?,
                    validity: if validity.is_none() {
                        None
                    } else {
                        Some(validity.extract()?)
                    },
                    offset: t.get_item(4)?.extract()?,
                    len: t.get_item(5)?.extract()?,
                    width,
                }));
            }
            if t.len() == 4 && tag.as_deref() == Some("utf32") {
                let data: PyReadonlyArray1<'py, u32> = t.get_item(1)?.extract()?;
                let chars: usize = t.get_item(2)?.extract()?;
                let len: usize = t.get_item(3)?.extract()?;
                if chars.checked_mul(len) != Some(data.len()) {
                    return Err(PyValueError::new_err(format!(
                        "{what}: {} UTF-32 code units for {len} items of {chars} characters; \
                         pass a 1-dimensional NumPy str array",
                        data.len()
                    )));
                }
                slice(&data, what)?;
                return Ok(Holder::Utf32 { data, chars, len });
            }
        }
        let ty = obj.get_type().name()?.to_string();
        Err(PyTypeError::new_err(format!(
            "{what}: expected a list of str, or NumPy or Arrow string buffers from the abkit \
             package, got {ty}; call abkit's Python functions rather than abkit._abkit directly"
        )))
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Holder::List(l) => l.len(),
            Holder::Owned(o) => o.ends.len(),
            Holder::Utf32 { len, .. } => *len,
            Holder::Arrow(a) => a.len,
        }
    }

    /// The same column with a list copied and UTF-32 data decoded to UTF-8 (in parallel,
    /// without the GIL), for uses that need `&str` values ([`Holder::values`],
    /// [`Holder::required`]).
    pub(crate) fn into_decoded(self, py: Python<'_>, what: &str) -> PyResult<Self> {
        match self {
            Holder::List(list) => Ok(Holder::Owned(OwnedStrings::from_list(&list, what)?)),
            Holder::Utf32 { data, chars, len } => {
                let units = slice(&data, what)?;
                let decoded = py.detach(|| OwnedStrings::from_utf32(units, chars, len, what));
                Ok(Holder::Owned(decoded.map_err(PyValueError::new_err)?))
            }
            other => Ok(other),
        }
    }

    /// The unit ids for [`crate::bulk::assign_all`]: every value required (a missing one is an
    /// error naming its position); UTF-32 data is handed on undecoded. A list is read by
    /// [`crate::bulk::assign_with_gil_work`] instead (here it is copied first).
    pub(crate) fn ids(&self, what: &str) -> PyResult<Ids<'_>> {
        match self {
            Holder::List(_) => Err(PyValueError::new_err(format!(
                "{what}: a list is read by assign_with_gil_work (an internal error; please report it)"
            ))),
            Holder::Utf32 { data, chars, len } => Ok(Ids::Utf32 {
                data: slice(data, what)?,
                chars: *chars,
                len: *len,
            }),
            Holder::Owned(o) => match o.missing.first() {
                Some(&i) => Err(missing_id(what, i)),
                None => Ok(Ids::Owned {
                    text: &o.text,
                    ends: &o.ends,
                }),
            },
            Holder::Arrow(a) => {
                let view = a.view(what)?;
                match a.first_null(what)? {
                    Some(i) => Err(missing_id(what, i)),
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
            None => Err(missing_id(what, i)),
        })?;
        Ok(out)
    }

    /// Calls `f(i, value)` for every value in order.
    fn each<'s>(
        &'s self,
        what: &str,
        f: impl FnMut(usize, Option<&'s str>) -> PyResult<()>,
    ) -> PyResult<()> {
        match self {
            Holder::Owned(o) => o.each(f),
            Holder::Arrow(a) => a.each(what, f),
            Holder::List(_) | Holder::Utf32 { .. } => Err(PyValueError::new_err(format!(
                "{what}: the values must be copied or decoded first (an internal error; please \
                 report it)"
            ))),
        }
    }
}

/// One chunk of a list's ids, copied with the GIL held by [`ChunkText::read_list`]; reused
/// from chunk to chunk (see [`crate::bulk::assign_with_gil_work`]).
#[derive(Default)]
pub(crate) struct ChunkText {
    text: String,
    /// `ends[k]`: the end of value `k` in `text`.
    ends: Vec<usize>,
}

impl ChunkText {
    /// Copies items `first..first + len` of `list` (each a `str`) in place of the previous
    /// chunk; `None` or another type is an error naming its position.
    pub(crate) fn read_list(
        &mut self,
        list: &Bound<'_, PyList>,
        first: usize,
        len: usize,
        what: &str,
    ) -> PyResult<()> {
        self.text.clear();
        self.ends.clear();
        for i in first..first + len {
            let item = list.get_item(i).map_err(|_| {
                PyValueError::new_err(format!(
                    "{what}: the list has {} items now, not the {} it had when the call \
                     started; do not change it while abkit reads it",
                    list.len(),
                    first + len
                ))
            })?;
            if item.is_none() {
                return Err(missing_id(what, i));
            }
            self.text.push_str(item_text(&item, i, what)?);
            self.ends.push(self.text.len());
        }
        Ok(())
    }

    /// The chunk's ids, as the bulk core reads them (value `k` is unit `first + k`).
    pub(crate) fn ids(&self) -> Ids<'_> {
        Ids::Owned {
            text: &self.text,
            ends: &self.ends,
        }
    }
}

/// The text of list item `i` (not `None`): a `str` with a UTF-8 form, or an error naming it.
#[inline]
fn item_text<'a>(item: &'a Bound<'_, PyAny>, i: usize, what: &str) -> PyResult<&'a str> {
    // An exact `str` is one pointer compare; a subclass of `str` takes the longer check.
    match item
        .cast_exact::<PyString>()
        .or_else(|_| item.cast::<PyString>())
    {
        Ok(s) => s.to_str().map_err(|_| {
            PyValueError::new_err(format!(
                "{what}[{i}] is not valid Unicode text (it holds a lone surrogate, which has \
                 no UTF-8 form); clean the value first"
            ))
        }),
        Err(_) => {
            let ty = item.get_type().name()?.to_string();
            Err(PyTypeError::new_err(format!(
                "{what}[{i}] is a {ty} ({}), not a str: ids and attribute values are strings; \
                 convert them first (e.g. `[str(x) for x in ids]` or `series.astype(str)`)",
                short_repr(item)
            )))
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
            } else {
                out.text.push_str(item_text(&item, i, what)?);
            }
            out.ends.push(out.text.len());
        }
        Ok(out)
    }

    /// Decodes a NumPy `<U{chars}` array's code units (`len` items of `chars` UTF-32 code
    /// units, trailing NULs not part of the value, as NumPy reads them), in parallel.
    fn from_utf32(units: &[u32], chars: usize, len: usize, what: &str) -> Result<Self, String> {
        if chars == 0 {
            return Ok(OwnedStrings {
                text: String::new(),
                ends: vec![0; len],
                missing: Vec::new(),
            });
        }
        if chars.checked_mul(len) != Some(units.len()) {
            return Err(format!(
                "{what}: {} UTF-32 code units for {len} items of {chars} characters; pass a \
                 1-dimensional NumPy str array",
                units.len()
            ));
        }
        const PART: usize = 1 << 16;
        let parts: Vec<Result<(String, Vec<usize>), String>> = units
            .par_chunks(chars * PART)
            .enumerate()
            .map(|(p, part)| {
                let mut text = Vec::with_capacity(part.len());
                let mut ends = Vec::with_capacity(part.len() / chars);
                for (k, item) in part.chunks_exact(chars).enumerate() {
                    push_utf32(item, &mut text).map_err(|u| {
                        format!(
                            "{what}[{}] holds {u:#x}, which is not a Unicode character (a \
                             lone surrogate?); clean the value first",
                            p * PART + k
                        )
                    })?;
                    ends.push(text.len());
                }
                // `push_utf32` appends UTF-8 only, so this check cannot fail.
                let text = String::from_utf8(text)
                    .map_err(|_| format!("{what}: UTF-32 decoding produced invalid UTF-8"))?;
                Ok((text, ends))
            })
            .collect();
        let mut out = OwnedStrings {
            text: String::with_capacity(units.len()),
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
    fn first_null(&self, what: &str) -> PyResult<Option<usize>> {
        let Some(validity) = &self.validity else {
            return Ok(None);
        };
        let bits = slice(validity, what)?;
        Ok((0..self.len).find(|i| {
            let bit = self.offset + i;
            bits.get(bit / 8)
                .is_none_or(|byte| byte & (1u8 << (bit % 8)) == 0)
        }))
    }

    /// The values as the bulk core reads them, checked up front: every offset readable, the
    /// data they span valid UTF-8. Each value's own span is checked as it is read.
    fn view(&self, what: &str) -> PyResult<ArrowView<'_>> {
        let offsets = slice(&self.offsets, what)?;
        let data = slice(&self.data, what)?;
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
        let validity = match &self.validity {
            Some(v) => Some(slice(v, what)?),
            None => None,
        };
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
    /// An Arrow string array without nulls.
    Arrow(ArrowView<'a>),
    /// A NumPy `<U{chars}` array's code units, decoded unit by unit by [`push_utf32`].
    Utf32 {
        /// The array's code units (`len * chars` of them).
        data: &'a [u32],
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
            Ids::Arrow(a) => (a.offsets.len() / a.width).saturating_sub(1),
            Ids::Utf32 { len, .. } => *len,
        }
    }

    /// Unit `i`'s id (UTF-32 is decoded into `buf`), or `None` when its data is not a valid
    /// string (inconsistent Arrow offsets, a UTF-32 code that is no character).
    #[inline]
    pub(crate) fn get<'s>(&'s self, i: usize, buf: &'s mut Vec<u8>) -> Option<&'s str> {
        match self {
            Ids::Text(v) => v.get(i).copied(),
            Ids::Owned { text, ends } => {
                let start = if i == 0 { 0 } else { *ends.get(i - 1)? };
                text.get(start..*ends.get(i)?)
            }
            Ids::Arrow(a) => a.text.get(a.offset(i)?..a.offset(i + 1)?),
            Ids::Utf32 { data, chars, .. } => {
                let item = data.get(i * chars..(i + 1) * chars)?;
                buf.clear();
                push_utf32(item, buf).ok()?;
                std::str::from_utf8(buf).ok()
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

/// Appends one NumPy UTF-32 item (trailing NULs dropped) to `out` as UTF-8; `Err(code)` for
/// a code unit that is no Unicode character.
#[inline]
pub(crate) fn push_utf32(item: &[u32], out: &mut Vec<u8>) -> Result<(), u32> {
    let padding = item.iter().rev().take_while(|&&u| u == 0).count();
    let body = item.get(..item.len() - padding).unwrap_or_default();
    if body.iter().all(|&u| u < 0x80) {
        // ASCII (most ids): one byte per code unit, in one tight loop.
        out.extend(body.iter().map(|&u| u as u8));
        return Ok(());
    }
    let mut bytes = [0u8; 4];
    for &u in body {
        let c = char::from_u32(u).ok_or(u)?;
        out.extend_from_slice(c.encode_utf8(&mut bytes).as_bytes());
    }
    Ok(())
}
