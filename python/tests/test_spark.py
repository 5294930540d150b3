"""Spark: the example assigns 1,000,000 rows in local[2] (mapInArrow, the wheel on the
executors) and its counts equal `abkit simulate` on the same ids. Bounded: the example runs
as a child process with a time limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import abkit

from conftest import PYTHON_DIR, run_cli

UNITS = 1_000_000
NOW_MS = 1_780_000_000_000
SPARK_SECONDS = 420

CONFIG = """
[[experiments]]
key = "checkout_button"
coverage = 0.9
variants = [ { name = "control", weight = 2 }, { name = "treatment_a", weight = 1 }, { name = "treatment_b", weight = 1 } ]
overrides = { "user-7" = "treatment_b", "user-12" = "control" }
targeting = { country = ["US", "CA"] }
"""


@pytest.mark.timeout(SPARK_SECONDS + 120)
def test_spark_counts_equal_abkit_simulate_on_the_same_million_ids(cli, tmp_path):
    config = tmp_path / "abkit.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    proc = subprocess.run(
        [sys.executable, PYTHON_DIR / "examples" / "spark_simulate.py", "--config", config,
         "--experiment", "checkout_button", "--units", str(UNITS), "--now-ms", str(NOW_MS),
         "--attr", "country=US"],
        capture_output=True, text=True, timeout=SPARK_SECONDS, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    spark = json.loads(proc.stdout.strip().splitlines()[-1])
    assert spark["units"] == UNITS

    # The same ids and attribute for the Rust CLI.
    units_csv = tmp_path / "units.csv"
    with open(units_csv, "w", encoding="utf-8") as f:
        f.write("id,country\n")
        f.writelines(f"user-{i},US\n" for i in range(UNITS))
    rust = json.loads(run_cli(cli, "simulate", "--config", config, units_csv, "--id-column", "id",
                              "--time", str(NOW_MS), "--format", "json", timeout=300).stdout)
    e = rust["experiments"][0]
    assert spark["variants"] == {v["name"]: v["count"] for v in e["variants"] if v["count"]}
    assert spark["not_enrolled"] == {k: n for k, n in e["not_enrolled"].items() if n}
    assert sum(spark["variants"].values()) == e["enrolled"]
    assert spark["variants"]["treatment_b"] > 0 and spark["not_enrolled"]["outside_coverage"] > 0

    # And the in-process API agrees too.
    ids = [f"user-{i}" for i in range(UNITS)]
    py = abkit.simulate(config, ids, {"country": "US"}, now_ms=NOW_MS)
    assert py["experiments"] == rust["experiments"]
