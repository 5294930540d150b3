"""Python answers equal the Rust CLI's on the same units: `assign_many` for every input type
against `abkit assign --units`, `simulate`/`diff` against `abkit simulate|diff --format json`."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import abkit

from conftest import cli_assign_csv, run_cli, write_units_csv

CONFIG = """
[[experiments]]
key = "checkout_button"
variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]
overrides = { "qa-user-1" = "treatment" }
targeting = { country = ["US", "CA"] }
layer = { name = "checkout", range = [0, 5000] }

[[experiments]]
key = "price_test"
coverage = 0.3
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 1 }, { name = "c", weight = 2 } ]
layer = { name = "checkout", range = [5000, 10000] }

[[experiments]]
key = "onboarding"
enabled = false
variants = [ { name = "x", weight = 1 } ]

[[experiments]]
key = "search_ranker"
salt = "search-2026"
targeting = { platform = ["ios"] }
variants = [ { name = "old", weight = 90 }, { name = "new", weight = 10 } ]
"""

# The proposed change for `diff`: price_test re-weighted and wider, search_ranker 50/50.
CONFIG_TO = (
    CONFIG.replace("coverage = 0.3", "coverage = 0.5")
    .replace('{ name = "c", weight = 2 }', '{ name = "c", weight = 1 }')
    .replace("weight = 90 }, { name = \"new\", weight = 10", "weight = 50 }, { name = \"new\", weight = 50")
)
NOW_MS = 1_780_000_000_000
N = 20_000


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    rnd = random.Random(16)
    units = [f"user-{i}" for i in range(N)]
    # Ids a CSV writer must quote, non-ASCII ids, and the override.
    units[1] = 'user,"1"'
    units[2] = "用户-2"
    units[3] = "qa-user-1"
    units[4] = " padded "
    country = [rnd.choice(["US", "CA", "FR", "DE", ""]) for _ in range(N)]
    platform = [rnd.choice(["ios", "android", "web"]) for _ in range(N)]
    attrs = {"country": country, "platform": platform}
    d = tmp_path_factory.mktemp("parity")
    (d / "from.toml").write_text(CONFIG, encoding="utf-8")
    (d / "to.toml").write_text(CONFIG_TO, encoding="utf-8")
    write_units_csv(d / "units.csv", units, attrs)
    (d / "ids.txt").write_text("".join(u + "\n" for u in units), encoding="utf-8")
    return {"dir": d, "units": units, "attrs": attrs}


@pytest.fixture(scope="module")
def rust_answers(population, cli):
    d = population["dir"]
    sdk = abkit.Sdk.from_file(d / "from.toml")
    return {e: cli_assign_csv(cli, d / "from.toml", e, d / "units.csv", "id") for e in sdk.experiments}


def _inputs(values: list[str]) -> dict[str, object]:
    """The same column in every input type assign_many accepts."""
    arrow = pa.array(values)
    chunked = pa.chunked_array([arrow.slice(0, 7000), arrow.slice(7000, 6000), arrow.slice(13000)])
    padded = pa.array(["pad-a", "pad-b", *values])
    return {
        "list": values,
        "tuple": tuple(values),
        "iterator": iter(values),
        "numpy-str": np.array(values),
        "numpy-object": np.array(values, dtype=object),
        "pandas-object": pd.Series(values, dtype=object),
        "pandas-str": pd.Series(values, dtype="str"),
        "pandas-string-python": pd.Series(values, dtype="string[python]"),
        "pandas-string-pyarrow": pd.Series(values, dtype="string[pyarrow]"),
        "pandas-category": pd.Series(values, dtype="category"),
        "pandas-index": pd.Index(values),
        "pyarrow-string": arrow,
        "pyarrow-large-string": pa.array(values, type=pa.large_string()),
        "pyarrow-string-view": arrow.cast(pa.string_view()),
        "pyarrow-dictionary": arrow.dictionary_encode(),
        "pyarrow-chunked": chunked,
        "pyarrow-slice": padded.slice(2),
    }


INPUT_KINDS = list(_inputs(["x"]))


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_assign_many_equals_the_cli_for_every_input_type(kind, population, rust_answers):
    sdk = abkit.Sdk.from_file(population["dir"] / "from.toml")
    units = _inputs(population["units"])[kind]
    for experiment, expected in rust_answers.items():
        # Attributes given in the same kind as the units (a str column for the non-str kinds).
        attrs = population["attrs"]
        attrs_kind = {k: _inputs(v)[kind if kind != "iterator" else "list"] for k, v in attrs.items()}
        if kind == "iterator":
            units = iter(population["units"])
        r = sdk.assign_many(experiment, units, attrs_kind, now_ms=NOW_MS)
        assert list(r.variant) == expected, f"{experiment} from {kind}"
        # Codes (pandas output) and objects (NumPy output) are made on different paths.
        if kind == "iterator":
            units = iter(population["units"])
        codes = sdk.assign_many(experiment, units, attrs_kind, now_ms=NOW_MS, output="pandas")
        assert list(codes.variant.add_categories("-").fillna("-")) == [v or "-" for v in expected]
        assert list(codes.reason) == list(r.reason), f"{experiment} from {kind}"


@pytest.mark.parametrize("output", ["numpy", "pandas", "arrow"])
def test_every_output_kind_holds_the_same_answers(output, population, rust_answers):
    sdk = abkit.Sdk.from_file(population["dir"] / "from.toml")
    df = pd.DataFrame(population["attrs"])
    for experiment, expected in rust_answers.items():
        r = sdk.assign_many(
            experiment, population["units"], df, now_ms=NOW_MS, output=output, provenance=True
        )
        variant = r.variant.to_pylist() if output == "arrow" else list(r.variant)
        if output == "pandas":
            variant = [None if isinstance(v, float) else v for v in variant]  # NaN: not enrolled
        assert variant == expected, f"{experiment} as {output}"
        frame = r.to_pandas(units=population["units"])
        assert list(frame.columns) == ["unit", "variant", "reason", "provenance"]
        assert len(frame) == N
        # Provenance only when asked for.
        lean = sdk.assign_many(experiment, population["units"], df, now_ms=NOW_MS, output=output)
        assert lean.provenance is None
        assert list(lean.to_pandas().columns) == ["variant", "reason"]
        as_list = (lambda a: a.to_pylist()) if output == "arrow" else list
        assert as_list(lean.reason) == as_list(r.reason)


def test_assign_many_reasons_and_provenance_equal_single_assign(population):
    sdk = abkit.Sdk.from_file(population["dir"] / "from.toml")
    units, attrs = population["units"], population["attrs"]
    for experiment in [*sdk.experiments, "no_such_experiment"]:
        if experiment == "no_such_experiment":
            with pytest.raises(abkit.UnknownExperimentError, match="no_such_experiment.*known experiments: checkout_button"):
                sdk.assign_many(experiment, units)
            continue
        r = sdk.assign_many(experiment, units, attrs, now_ms=NOW_MS, provenance=True)
        for i in range(0, N, 97):
            one = sdk.assign(experiment, units[i], {k: v[i] for k, v in attrs.items()}, now_ms=NOW_MS)
            assert (r.variant[i], r.reason[i], r.provenance[i]) == tuple(one), f"{experiment} unit {i}"
    reasons = set(sdk.assign_many("checkout_button", units, attrs).reason)
    assert {"assigned", "override", "not_targeted", "outside_layer"} <= reasons
    assert set(sdk.assign_many("onboarding", units).reason) == {"disabled"}


def _without_input(report: dict) -> dict:
    report = dict(report)
    report.pop("input")
    return report


def test_simulate_equals_the_cli_json(population, cli):
    d = population["dir"]
    out = run_cli(cli, "simulate", "--config", d / "from.toml", d / "units.csv", "--id-column", "id",
                  "--time", str(NOW_MS), "--format", "json")
    rust = json.loads(out.stdout)
    py = abkit.simulate(d / "from.toml", population["units"], population["attrs"], now_ms=NOW_MS)
    assert py["input"] == "<python>"
    assert _without_input(py) == _without_input(rust)
    # A DataFrame of the same numbers.
    frame = abkit.to_frame(py)
    row = frame[(frame.experiment == "price_test") & (frame.variant == "c")].iloc[0]
    variant = next(v for e in rust["experiments"] if e["key"] == "price_test" for v in e["variants"] if v["name"] == "c")
    assert row["count"] == variant["count"] and row["expected_share"] == variant["expected_share"]


def test_simulate_without_attributes_and_of_some_experiments_equals_the_cli(population, cli):
    d = population["dir"]
    out = run_cli(cli, "simulate", "--config", d / "from.toml", d / "ids.txt", "--time", str(NOW_MS),
                  "--experiment", "price_test", "--experiment", "onboarding", "--format", "json")
    sdk = abkit.Sdk.from_file(d / "from.toml")
    py = abkit.simulate(sdk, pa.array(population["units"]), experiments=["price_test", "onboarding"], now_ms=NOW_MS, threads=1)
    assert _without_input(py) == _without_input(json.loads(out.stdout))


def test_diff_equals_the_cli_json(population, cli):
    d = population["dir"]
    out = run_cli(cli, "diff", "--from", d / "from.toml", "--to", d / "to.toml", d / "units.csv",
                  "--id-column", "id", "--time", str(NOW_MS), "--format", "json")
    rust = json.loads(out.stdout)
    py = abkit.diff(d / "from.toml", abkit.Sdk.from_toml(CONFIG_TO), pd.Series(population["units"]),
                    pd.DataFrame(population["attrs"]), now_ms=NOW_MS)
    assert _without_input(py) == _without_input(rust)
    moved = {e["key"]: e["moved"] for e in py["experiments"]}
    assert moved["search_ranker"] > 0 and moved["onboarding"] == 0
    assert next(e for e in py["experiments"] if e["key"] == "price_test")["entered"] > 0
    frame = abkit.to_frame(py)
    assert set(frame.columns) == {"experiment", "from", "to", "count"}
    assert frame[frame.experiment == "price_test"]["count"].sum() == N


def test_simulate_with_one_value_for_every_unit_equals_the_cli_on_a_constant_column(population, cli, tmp_path):
    units = [f"u{i}" for i in range(3000)]  # ids shorter than the CSV header line
    attrs = {"country": ["US"] * len(units), "a_rather_long_attribute_name": ["x"] * len(units)}
    csv_path = write_units_csv(tmp_path / "units.csv", units, attrs)
    config = population["dir"] / "from.toml"
    out = run_cli(cli, "simulate", "--config", config, csv_path, "--id-column", "id", "--time", str(NOW_MS), "--format", "json")
    py = abkit.simulate(config, units, {"country": "US", "a_rather_long_attribute_name": "x"}, now_ms=NOW_MS)
    assert _without_input(py) == _without_input(json.loads(out.stdout))
