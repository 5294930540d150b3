"""Bad input gives a clear exception (or, for `assign`, a reason), never a crash."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import abkit
from abkit import _abkit

CONFIG = """
[[experiments]]
key = "e"
variants = [ { name = "control", weight = 1 }, { name = "treatment", weight = 1 } ]
targeting = { country = ["US"] }
"""


@pytest.fixture(scope="module")
def sdk():
    return abkit.Sdk.from_toml(CONFIG)


def test_unknown_experiment_is_a_reason_for_one_unit_and_an_error_in_bulk(sdk):
    assert sdk.assign("nope", "u1") == abkit.Assignment(None, "unknown_experiment", "-")
    with pytest.raises(abkit.UnknownExperimentError, match='experiment "nope" is not in the configuration; known experiments: e'):
        sdk.assign_many("nope", ["u1"])
    with pytest.raises(abkit.SimulateError, match="nope"):
        abkit.simulate(sdk, ["u1"], experiments=["nope"])
    with pytest.raises(abkit.UnknownExperimentError):
        sdk.variants("nope")
    assert issubclass(abkit.UnknownExperimentError, abkit.AbkitError)


@pytest.mark.parametrize(
    "units, error, message",
    [
        (["u1", None, "u3"], ValueError, r"units\[1\] is missing \(None, NaN or null\)"),
        (["u1", 7], TypeError, r"units\[1\] is a int \(7\), not a str"),
        (["u1", b"u2"], TypeError, r"units\[1\] is a bytes"),
        (["u1", math.nan], TypeError, r"units\[1\] is a float \(nan\)"),
        (pd.Series(["u1", None]), ValueError, r"units\[1\] is missing"),
        (pd.Series(["u1", np.nan], dtype=object), ValueError, r"units\[1\] is missing"),
        (pd.Series(["u1", pd.NA], dtype="string[python]"), ValueError, r"units\[1\] is missing"),
        (pa.array(["u1", None]), ValueError, r"units\[1\] is missing"),
        (np.array(["u1", None], dtype=object), ValueError, r"units\[1\] is missing"),
        (pd.Series([1, 2]), TypeError, r"a pandas column of int64.*astype\(str\)"),
        (np.arange(3), TypeError, r"NumPy array of int64.*astype\(str\)"),
        (np.array([b"u1"]), TypeError, r"NumPy bytes array"),
        (np.array([["u1", "u2"]]), ValueError, r"2-dimensional array"),
        (pa.array([1, 2]), TypeError, r"pyarrow array of int64"),
        ("u1", TypeError, r"got one str, not a column"),
        (42, TypeError, r"a int is not a column"),
        (None, TypeError, r"a NoneType is not a column"),
        (["ok", "\ud800"], ValueError, r"units\[1\] is not valid Unicode text"),
    ],
)
def test_bad_units_raise_a_clear_error_naming_the_position(sdk, units, error, message):
    with pytest.raises(error, match=message):
        sdk.assign_many("e", units, {"country": "US"})


def test_bad_attributes_raise_a_clear_error(sdk):
    with pytest.raises(ValueError, match=r'attribute "country" has 1 values for 2 units'):
        sdk.assign_many("e", ["u1", "u2"], {"country": ["US"]})
    with pytest.raises(TypeError, match=r'attribute "country"\[1\] is a int'):
        sdk.assign_many("e", ["u1", "u2"], {"country": ["US", 1]})
    with pytest.raises(TypeError, match="dict of name -> column"):
        sdk.assign_many("e", ["u1"], [("country", "US")])
    with pytest.raises(TypeError, match="attribute names are str"):
        sdk.assign_many("e", ["u1"], {1: "US"})
    with pytest.raises(ValueError, match="attribute name is empty"):
        sdk.assign_many("e", ["u1"], {"": "US"})


def test_a_missing_attribute_value_means_no_attribute(sdk):
    r = sdk.assign_many("e", ["u1", "u2"], {"country": ["US", None]})
    assert list(r.reason) == ["assigned", "not_targeted"]
    r = sdk.assign_many("e", ["u1", "u2", "u3"], {"country": pd.Series(["US", pd.NA, "US"], dtype="string")})
    assert list(r.reason) == ["assigned", "not_targeted", "assigned"]
    assert sdk.assign("e", "u2", {"country": None}).reason == "not_targeted"
    # simulate reads attributes as columns (as the CLI does): a missing value is an error.
    with pytest.raises(ValueError, match=r'attribute "country" of units\[1\] is missing'):
        abkit.simulate(sdk, ["u1", "u2"], {"country": ["US", None]})


def test_single_assign_checks_its_arguments(sdk):
    with pytest.raises(TypeError, match="unit is None"):
        sdk.assign("e", None)
    with pytest.raises(TypeError, match=r"unit must be a str, not int"):
        sdk.assign("e", 42)
    with pytest.raises(TypeError, match=r"experiment is None; it must be a str"):
        sdk.assign(None, "u1")
    with pytest.raises(TypeError, match=r'attribute "country" must be a str'):
        sdk.assign("e", "u1", {"country": 1})
    with pytest.raises(TypeError, match="attributes must be a dict"):
        sdk.assign("e", "u1", ["country"])
    with pytest.raises(ValueError, match="now_ms must be a non-negative int"):
        sdk.assign("e", "u1", now_ms=-1)
    # Any str is an id, as in Rust: the empty one and one with a line break included.
    assert sdk.assign("e", "", {"country": "US"}).reason == "assigned"
    assert sdk.assign("e", "a\nb", {"country": "US"}).reason == "assigned"


def test_bad_options_raise(sdk):
    with pytest.raises(ValueError, match="output must be one of numpy, pandas, arrow"):
        sdk.assign_many("e", ["u1"], output="polars")
    with pytest.raises(ValueError, match="threads must be a non-negative int"):
        sdk.assign_many("e", ["u1"], threads=-2)
    with pytest.raises(TypeError, match="provenance must be True or False"):
        sdk.assign_many("e", ["u1"], provenance="yes")
    with pytest.raises(TypeError, match="config must be an abkit.Sdk or the path"):
        abkit.simulate(CONFIG.encode(), ["u1"])


def test_bad_configuration_raises_config_error_with_the_rust_message(tmp_path):
    with pytest.raises(abkit.ConfigError, match=r"<string> has 1 problem:\n  - line 3, column 37: invalid type"):
        abkit.Sdk.from_toml('[[experiments]]\nkey = "e"\nvariants = [ { name = "a", weight = "x" } ]\n')
    with pytest.raises(abkit.ConfigError) as err:
        abkit.Sdk.from_toml("this is not toml")
    assert str(err.value)
    with pytest.raises(abkit.ConfigError, match="missing.toml"):
        abkit.Sdk.from_file(tmp_path / "missing.toml")
    with pytest.raises(TypeError, match="use Sdk.from_file"):
        abkit.Sdk("x")


def test_simulate_refuses_what_the_cli_input_cannot_hold(sdk):
    with pytest.raises(ValueError, match=r"units\[1\] holds a line break"):
        abkit.simulate(sdk, ["u1", "u\n2"])
    with pytest.raises(ValueError, match=r"units\[0\] is an empty string"):
        abkit.simulate(sdk, [""])
    with pytest.raises(abkit.SimulateError, match="no units"):
        abkit.simulate(sdk, [])
    empty = abkit.simulate(sdk, [], allow_empty=True)
    assert empty["units"] == 0


def test_empty_inputs_give_empty_arrays(sdk):
    for units in ([], np.array([], dtype=str), pa.array([], type=pa.string()), pd.Series([], dtype=object)):
        for output in ("numpy", "pandas", "arrow"):
            r = sdk.assign_many("e", units, output=output, provenance=True)
            assert len(r.variant) == len(r.reason) == len(r.provenance) == 0


def test_inconsistent_arrow_buffers_from_direct_calls_are_errors_not_crashes(sdk):
    inner = sdk._inner

    def u8(data) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8)

    for objects in (False, True):

        def call(units):
            return inner.assign_many("e", units, None, 0, None, False, objects)

        offsets = u8(np.array([0, 2, 400], dtype="<i4").tobytes())
        with pytest.raises(ValueError, match="point past the data buffer"):
            call(("arrow", offsets, u8(b"abcd"), None, 0, 2, 4))
        with pytest.raises(ValueError, match="offsets buffer is too short"):
            call(("arrow", offsets, u8(b"abcd"), None, 0, 5, 4))
        backwards = u8(np.array([0, 3, 1], dtype="<i4").tobytes())
        with pytest.raises(ValueError, match="inconsistent Arrow offsets"):
            call(("arrow", backwards, u8(b"abcd"), None, 0, 2, 4))
        with pytest.raises(ValueError, match="not valid UTF-8"):
            call(("arrow", u8(np.array([0, 2], dtype="<i4").tobytes()), u8(b"\xff\xfe"), None, 0, 1, 4))
        with pytest.raises(ValueError, match="4 or 8 bytes wide"):
            call(("arrow", offsets, u8(b"abcd"), None, 0, 2, 3))
        # Buffers of the wrong kind are refused, not read.
        with pytest.raises(TypeError):
            call(("arrow", offsets.tobytes(), u8(b"abcd"), None, 0, 2, 4))
        with pytest.raises(TypeError):
            call(("arrow", offsets.view(np.int8), u8(b"abcd"), None, 0, 2, 4))
        with pytest.raises(ValueError, match="UTF-32 code units for 1 items of 2 characters"):
            call(("utf32", np.array([97], dtype=np.uint32), 2, 1))
        with pytest.raises(TypeError):
            call(("utf32", b"abcd", 1, 1))
        with pytest.raises(ValueError, match="not a Unicode character"):
            call(("utf32", np.array([0xD800], dtype=np.uint32), 1, 1))
        with pytest.raises(ValueError, match="not a Unicode character"):
            call(("utf32", np.array([0x110000], dtype=np.uint32), 1, 1))
        # A strided view (not one contiguous block) is refused, not misread.
        with pytest.raises(ValueError, match="not one contiguous block"):
            call(("utf32", np.array([97, 0, 98, 0], dtype=np.uint32)[::2], 1, 2))
        with pytest.raises(TypeError, match="expected a list of str, or NumPy or Arrow string buffers"):
            call({"units": 1})
    with pytest.raises(TypeError):
        _abkit.simulate_json(inner, 5, None, [])


def test_nulls_of_a_sliced_arrow_array_are_found_at_their_position_in_the_slice(sdk):
    full = pa.array(["u0", None, "u2", "u3", None, "u5"])
    r = sdk.assign_many("e", full.slice(2, 2), {"country": "US"})
    assert list(r.variant) == [sdk.assign("e", u, {"country": "US"}).variant for u in ("u2", "u3")]
    with pytest.raises(ValueError, match=r"units\[2\] is missing"):
        sdk.assign_many("e", full.slice(2), {"country": "US"})
    attrs = pa.array(["US", None, "US", "FR"])
    r = sdk.assign_many("e", ["a", "b", "c"], {"country": attrs.slice(1)})
    assert list(r.reason) == ["not_targeted", "assigned", "not_targeted"]


def test_ids_holding_nul_or_empty_strings_are_read_like_any_other(sdk):
    units = ["a\0b", "", "c", "\0", "d"]
    r = sdk.assign_many("e", units, {"country": "US"})
    assert list(r.variant) == [sdk.assign("e", u, {"country": "US"}).variant for u in units]
    assert list(sdk.assign_many("e", [""], {"country": "US"}).reason) == ["assigned"]
    r = sdk.assign_many("e", ["x", "y"], {"country": ["U\0S", "US"]})
    assert list(r.reason) == ["not_targeted", "assigned"]
