"""The paths `assign_many` takes inside the extension, each checked against single `assign`:

- a list is read by the calling thread chunk by chunk (8192 ids each) while the pool assigns
  the chunks read, so errors can come from any chunk, after earlier ones were assigned;
- NumPy `str` arrays and Arrow buffers are read in place (no copy), so strided, byte-swapped
  and zero-width arrays, and non-ASCII text, must read as their values;
- NumPy output objects are made by the calling thread as chunks complete, pandas and Arrow
  outputs from codes;
- with another Python thread busy, the GIL is taken in batches, and still given back.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pytest

import abkit

CONFIG = """
[[experiments]]
key = "e"
coverage = 0.8
variants = [ { name = "control", weight = 1 }, { name = "treatment", weight = 1 } ]
overrides = { "vip" = "treatment" }
"""
NOW_MS = 1_780_000_000_000
# More than a dozen chunks of 8192, the last one partial.
N = 100_003


@pytest.fixture(scope="module")
def sdk():
    return abkit.Sdk.from_toml(CONFIG)


@pytest.fixture(scope="module")
def ids():
    units = [f"user-{i}" for i in range(N)]
    units[5] = "vip"
    units[9000] = "ünïcödé-😀-9000"
    units[50_000] = ""
    return units


@pytest.fixture(scope="module")
def expected(sdk, ids):
    return [sdk.assign("e", u, now_ms=NOW_MS) for u in ids]


def _variants(r, output: str) -> list:
    if output == "arrow":
        return r.variant.to_pylist()
    if output == "pandas":
        return [None if isinstance(v, float) else v for v in r.variant]
    return list(r.variant)


@pytest.mark.parametrize("threads", [None, 1, 3])
@pytest.mark.parametrize("output", ["numpy", "pandas", "arrow"])
@pytest.mark.parametrize("kind", ["list", "numpy", "arrow"])
def test_every_path_gives_single_assigns_answers(sdk, ids, expected, kind, output, threads):
    units = {"list": ids, "numpy": np.array(ids), "arrow": pa.array(ids)}[kind]
    r = sdk.assign_many("e", units, now_ms=NOW_MS, output=output, threads=threads, provenance=True)
    assert _variants(r, output) == [a.variant for a in expected]
    reasons = r.reason.to_pylist() if output == "arrow" else list(r.reason)
    assert reasons == [a.reason for a in expected]
    provenance = r.provenance.to_pylist() if output == "arrow" else list(r.provenance)
    assert provenance == [a.provenance for a in expected]


@pytest.mark.parametrize("objects", ["numpy", "pandas"])
@pytest.mark.parametrize("position", [0, 8191, 8192, 60_000, N - 1])
def test_a_bad_item_in_any_chunk_of_a_list_is_named(sdk, ids, position, objects):
    for bad, error, message in [
        (None, ValueError, rf"units\[{position}\] is missing"),
        (17, TypeError, rf"units\[{position}\] is a int \(17\), not a str"),
        ("\ud800", ValueError, rf"units\[{position}\] is not valid Unicode text"),
    ]:
        units = list(ids)
        units[position] = bad
        for threads in (None, 1):
            with pytest.raises(error, match=message):
                sdk.assign_many("e", units, now_ms=NOW_MS, threads=threads, output=objects)
    # The same SDK answers normally right after.
    assert len(sdk.assign_many("e", ids[:10], now_ms=NOW_MS).variant) == 10


def test_a_str_subclass_is_read_as_its_text(sdk):
    class Tagged(str):
        pass

    units = [Tagged(f"user-{i}") for i in range(20_000)]
    r = sdk.assign_many("e", units, now_ms=NOW_MS)
    want = [sdk.assign("e", f"user-{i}", now_ms=NOW_MS).variant for i in range(20_000)]
    assert list(r.variant) == want


def test_numpy_arrays_are_read_as_their_values_whatever_their_layout(sdk, ids, expected):
    want = [a.variant for a in expected]
    arr = np.array(ids)
    assert list(sdk.assign_many("e", arr[::3], now_ms=NOW_MS).variant) == want[::3]
    assert list(sdk.assign_many("e", arr[::-1], now_ms=NOW_MS).variant) == want[::-1]
    swapped = arr.astype(arr.dtype.newbyteorder(">"))
    assert swapped.dtype.byteorder == ">"
    assert list(sdk.assign_many("e", swapped, now_ms=NOW_MS).variant) == want
    # A wider dtype pads with NULs, which are not part of the value (as NumPy reads them).
    wide = arr.astype("<U40")
    assert list(sdk.assign_many("e", wide, now_ms=NOW_MS).variant) == want
    # Zero characters per item (NumPy itself makes `<U0` arrays `<U1`, so directly): every
    # id is the empty string.
    for objects in (False, True):
        v = sdk._inner.assign_many(
            "e", ("utf32", np.empty(0, dtype=np.uint32), 0, 3), None, NOW_MS, None, False, objects
        )[0]
        empty = sdk.assign("e", "", now_ms=NOW_MS).variant
        names = sdk.variants("e")
        assert [x if objects else (names[x] if x >= 0 else None) for x in v] == [empty] * 3
    # A read-only array is read in place too.
    frozen = np.array(ids[:1000])
    frozen.setflags(write=False)
    assert list(sdk.assign_many("e", frozen, now_ms=NOW_MS).variant) == want[:1000]


def test_the_input_array_is_left_as_it_was(sdk, ids):
    arr = np.array(ids)
    before = arr.copy()
    sdk.assign_many("e", arr, now_ms=NOW_MS)
    assert (arr == before).all() and arr.flags.writeable


def test_a_list_changed_by_another_thread_meanwhile_is_an_error_or_an_answer_never_a_crash(sdk):
    outcomes = set()
    for attempt in range(20):
        units = [f"user-{i}" for i in range(400_000)]
        started = threading.Event()

        def shrink() -> None:
            started.wait()
            time.sleep(0.0005 * attempt)
            del units[1000:]

        t = threading.Thread(target=shrink)
        t.start()
        started.set()
        try:
            r = sdk.assign_many("e", units, now_ms=NOW_MS, threads=1)
            assert len(r.variant) == 400_000
            outcomes.add("answer")
        except ValueError as e:
            assert "do not change it while abkit reads it" in str(e), e
            outcomes.add("error")
        t.join()
    assert outcomes


@pytest.mark.parametrize("output", ["numpy", "pandas"])
def test_with_another_python_thread_busy_the_gil_is_still_given_back(sdk, output):
    units = [f"user-{i}" for i in range(1_000_000)]
    sdk.assign_many("e", units[:1000], output=output)  # warm-up (imports, pool)
    stop = threading.Event()
    gaps: list[float] = []

    def spin() -> None:
        longest, last = 0.0, time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        gaps.append(longest)

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.02)
    start = time.perf_counter()
    r = sdk.assign_many("e", units, now_ms=NOW_MS, output=output)
    call = time.perf_counter() - start
    stop.set()
    t.join()
    assert len(r.variant) == len(units)
    # Reading a list needs the GIL, so some of the call holds it; but in batches, the rest
    # released: the busy thread never stops for most of the call.
    assert gaps[0] < 0.5 * call, f"the busy thread stalled {gaps[0]:.3f} s of a {call:.3f} s call"
