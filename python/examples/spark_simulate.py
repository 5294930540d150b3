"""Assign units with Spark through abkit, and count them per variant.

Each Spark task loads the configuration once (from its TOML text, shipped with the task) and
assigns its Arrow batches with ``Sdk.assign_many`` (``mapInArrow``): the very Rust code that
serves, so the counts equal ``abkit simulate --time NOW_MS`` on the same ids.

Locally (Spark's ``local[2]``, loopback only, no UI)::

    python examples/spark_simulate.py --config ../sdk/src/bin/abkit/demo.toml \\
        --experiment checkout_button --units 1000000 --attr country=US

On a cluster, see the README section "Simulate at cluster scale". Prints one JSON object:
``{"experiment", "units", "now_ms", "variants": {name: count}, "not_enrolled": {reason: count},
"seconds"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any


def assign_batches(config_toml: str, experiment: str, id_column: str, now_ms: int) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function for ``DataFrame.mapInArrow``: the id column, ``variant`` and ``reason``.
    Every other (string) column of the input is an attribute of the unit.

    Only the configuration text, the experiment, the column name and the clock travel with
    the task; the Sdk is built on the executor (native objects are not picklable)."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        import abkit

        sdk = abkit.Sdk.from_toml(config_toml)
        for batch in batches:
            ids = batch.column(id_column)
            attributes = {name: batch.column(name) for name in batch.schema.names if name != id_column}
            r = sdk.assign_many(experiment, ids, attributes, now_ms=now_ms, output="arrow")
            yield pa.RecordBatch.from_arrays(
                [ids, r.variant.cast(pa.string()), r.reason.cast(pa.string())],
                names=[id_column, "variant", "reason"],
            )

    return run


def local_spark(app: str = "abkit-simulate") -> Any:
    """A quiet local Spark session: local[2], loopback only, no UI, small shuffles."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors use this venv's abkit
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # spark-conf/log4j2.properties: the JVM logs errors only.
    os.environ.setdefault("SPARK_CONF_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "spark-conf"))
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def simulate(spark: Any, config_toml: str, experiment: str, units: Any, id_column: str, now_ms: int) -> dict[str, Any]:
    """Assigns the DataFrame ``units`` (a string column ``id_column``, the other columns
    attributes) and counts per variant and, for units not enrolled, per reason."""
    schema = f"{id_column} string, variant string, reason string"
    assigned = units.mapInArrow(assign_batches(config_toml, experiment, id_column, now_ms), schema)
    variants: dict[str, int] = {}
    not_enrolled: dict[str, int] = {}
    for row in assigned.groupBy("variant", "reason").count().collect():
        if row["variant"] is None:
            not_enrolled[row["reason"]] = not_enrolled.get(row["reason"], 0) + row["count"]
        else:
            variants[row["variant"]] = variants.get(row["variant"], 0) + row["count"]
    return {"variants": variants, "not_enrolled": not_enrolled}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the abkit configuration (TOML)")
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--units", type=int, default=1_000_000, help="ids user-0 ... user-(N-1)")
    ap.add_argument("--input", help="a file of ids, one per line, instead of --units (any Spark path)")
    ap.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE", help="an attribute of every unit (repeatable)")
    ap.add_argument("--now-ms", type=int, default=None, help="the fixed clock (default: now)")
    ap.add_argument("--master", default=None, help="Spark master (default: a quiet local[2] session)")
    args = ap.parse_args()

    if any("=" not in a or a.startswith("=") for a in args.attr):
        ap.error("--attr takes KEY=VALUE")
    with open(args.config, encoding="utf-8") as f:
        config_toml = f.read()
    now_ms = args.now_ms if args.now_ms is not None else int(time.time() * 1000)
    if args.master:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.master(args.master).appName("abkit-simulate").getOrCreate()
    else:
        spark = local_spark()
    from pyspark.sql.functions import lit

    try:
        if args.input:
            units = spark.read.text(args.input).withColumnRenamed("value", "unit_id")
        else:
            units = spark.range(args.units, numPartitions=4).selectExpr("concat('user-', id) AS unit_id")
        for pair in args.attr:
            key, _, value = pair.partition("=")
            units = units.withColumn(key, lit(value))
        start = time.perf_counter()
        counts = simulate(spark, config_toml, args.experiment, units, "unit_id", now_ms)
        seconds = time.perf_counter() - start
    finally:
        spark.stop()
    total = sum(counts["variants"].values()) + sum(counts["not_enrolled"].values())
    print(json.dumps({"experiment": args.experiment, "units": total, "now_ms": now_ms, **counts, "seconds": round(seconds, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
