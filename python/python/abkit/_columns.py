"""Turns the column inputs abkit accepts into the three forms its extension reads.

Accepted: a ``list`` or ``tuple``, a NumPy array (``str``/``object`` dtype), a pandas
``Series``/``Index``/array, a pyarrow ``Array``/``ChunkedArray`` of strings, or any other
iterable. The extension then gets a ``list`` (items ``str`` or ``None``), the code units of a
NumPy ``str`` array, or the buffers of an Arrow ``string``/``large_string`` array; it reads
the last two in place, through NumPy views that copy nothing. Missing values (``None``,
``NaN``, ``pd.NA``, Arrow nulls) become ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
import sys
from typing import Any

import numpy as np


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:  # pyarrow is optional
        return None
    return pyarrow


def column(values: Any, what: str) -> Any:
    """``values`` as a ``list``, a UTF-32 tuple or an Arrow buffers tuple; ``what`` names it
    in errors."""
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{what}: got one {type(values).__name__}, not a column of values; pass a list "
            "(for a single unit use Sdk.assign)"
        )
    if isinstance(values, list):
        return values
    if isinstance(values, tuple):
        return list(values)
    module = type(values).__module__ or ""
    if module.startswith("pyarrow"):
        return _arrow(values, what)
    if module.startswith("pandas"):
        return _pandas(values, what)
    if isinstance(values, np.ndarray):
        return _numpy(values, what)
    if hasattr(values, "__arrow_c_array__") or hasattr(values, "__arrow_c_stream__"):
        pa = _pyarrow()
        if pa is not None:
            return _arrow(pa.array(values), what)
    try:
        return list(values)
    except TypeError:
        raise TypeError(
            f"{what}: a {type(values).__name__} is not a column; pass a list, a NumPy array, "
            "a pandas Series or a pyarrow array of str"
        ) from None


def _numpy(values: np.ndarray, what: str) -> Any:
    if values.ndim != 1:
        raise ValueError(
            f"{what}: a {values.ndim}-dimensional array; pass a 1-dimensional column "
            "(e.g. arr.ravel())"
        )
    kind = values.dtype.kind
    if kind == "U":
        # The UTF-32 code units, read in place and decoded by the extension as it assigns,
        # without the GIL (much faster than building a str per item, or than pyarrow's
        # conversion). Only a strided or byte-swapped array is copied first.
        if values.dtype.byteorder not in ("=", "|", "<" if sys.byteorder == "little" else ">"):
            values = values.astype(values.dtype.newbyteorder("="))
        values = np.ascontiguousarray(values)
        chars = values.dtype.itemsize // 4
        units = values.view(np.uint32) if chars else np.empty(0, dtype=np.uint32)
        return ("utf32", units, chars, len(values))
    if kind in ("O", "T"):
        return values.tolist()
    if kind == "S":
        raise TypeError(
            f"{what}: a NumPy bytes array ({values.dtype}); ids and attribute values are "
            "str: decode first, e.g. arr.astype(str)"
        )
    raise TypeError(
        f"{what}: a NumPy array of {values.dtype}; ids and attribute values are str: "
        "convert first, e.g. arr.astype(str)"
    )


def _pandas(values: Any, what: str) -> Any:
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        raise TypeError(f"{what}: a DataFrame, not a column; pass one of its columns")
    dtype = getattr(values, "dtype", None)
    if dtype is not None and isinstance(dtype, pd.CategoricalDtype):
        values = pd.Series(values).astype(object)
        dtype = values.dtype
    storage = getattr(dtype, "storage", None)
    is_arrow = isinstance(dtype, getattr(pd, "ArrowDtype", ())) or storage in (
        "pyarrow",
        "pyarrow_numpy",
    )
    if is_arrow:
        pa = _pyarrow()
        if pa is not None:
            return _arrow(pa.array(values), what)
    if dtype is not None and (
        dtype == object or isinstance(dtype, pd.StringDtype)
    ):
        series = pd.Series(values, copy=False)
        items = series.tolist()
        missing = series.isna().to_numpy()
        if missing.any():
            for i in np.flatnonzero(missing):
                items[i] = None
        return items
    raise TypeError(
        f"{what}: a pandas column of {dtype}; ids and attribute values are str: convert "
        "first, e.g. series.astype(str)"
    )


def _arrow(values: Any, what: str) -> Any:
    pa = _pyarrow()
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            values = values.chunk(0)
        elif values.num_chunks == 0:
            values = pa.array([], type=values.type)
        else:
            values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        raise TypeError(f"{what}: a {type(values).__name__} is not a pyarrow array")
    t = values.type
    if pa.types.is_null(t):
        return [None] * len(values)
    if pa.types.is_dictionary(t) or pa.types.is_string_view(t):
        values = values.cast(pa.large_string())
        t = values.type
    if pa.types.is_string(t):
        width = 4
    elif pa.types.is_large_string(t):
        width = 8
    else:
        raise TypeError(
            f"{what}: a pyarrow array of {t}; ids and attribute values are strings: cast "
            "first, e.g. pyarrow.compute.cast(arr, pyarrow.string())"
        )
    validity, offsets, data = values.buffers()[:3]
    if values.null_count == 0:
        validity = None

    def view(buffer: Any) -> np.ndarray:
        # A read-only uint8 view of the Arrow buffer (no copy); the extension reads it in place.
        if buffer is None:
            return np.empty(0, dtype=np.uint8)
        return np.frombuffer(buffer, dtype=np.uint8)

    return (
        "arrow",
        view(offsets),
        view(data),
        view(validity) if validity is not None else None,
        values.offset,
        len(values),
        width,
    )


def attributes(attrs: Any, what: str = "attributes") -> list[tuple[str, Any]] | None:
    """``attrs`` (a mapping name -> column or str, or a pandas DataFrame) as a list of pairs."""
    if attrs is None:
        return None
    module = type(attrs).__module__ or ""
    if module.startswith("pandas") and hasattr(attrs, "columns"):
        attrs = {name: attrs[name] for name in attrs.columns}
    if not isinstance(attrs, Mapping):
        raise TypeError(
            f"{what}: a {type(attrs).__name__}; pass a dict of name -> column (or str for "
            "every unit), or a pandas DataFrame"
        )
    out = []
    for name, value in attrs.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: attribute names are str, got {name!r}")
        if isinstance(value, str):
            out.append((name, value))
        else:
            out.append((name, column(value, f'attribute "{name}"')))
    return out
