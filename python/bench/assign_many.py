"""Benchmark: Sdk.assign_many from Python against the Rust bulk rate, in one run.

The Rust rate is the extension's bulk core (``abkit._abkit._rust_bulk_seconds``: the same
per-chunk code assign_many runs, over the same rayon pool), timed inside the extension on the
same ids copied into Rust strings beforehand: same configuration, experiment, clock, thread
pool and machine, codes only (no provenance, as assign_many by default), no Python object in
the timed part. The Python time is the whole public call, from the Python input to the returned arrays.
Rounds interleave the Rust run and every Python variant (each round in a rotated order), so a
change of machine load hits them alike; the ratio is given on medians and on the best round of
each (the best is the least disturbed by other work on the machine). Results are freed after
the clock stops on both sides.

    python bench/assign_many.py [--units 1000000] [--rounds 7] [--threads 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import abkit
from abkit import _abkit

CONFIG = """
[[experiments]]
key = "checkout_button"
coverage = 0.9
variants = [ { name = "control", weight = 50 }, { name = "treatment", weight = 50 } ]
"""
EXPERIMENT = "checkout_button"
NOW_MS = 1_780_000_000_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0: one per core)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    threads = args.threads or None

    import pandas as pd
    import pyarrow as pa

    sdk = abkit.Sdk.from_toml(CONFIG)
    ids = [f"user-{i}" for i in range(args.units)]
    inputs = {
        "list": ids,
        "numpy": np.array(ids),
        "pandas": pd.Series(ids),
        "pyarrow": pa.array(ids),
    }
    cases = [(i, o) for i in inputs for o in ("numpy", "pandas", "arrow")]

    def python_seconds(inp: str, out: str) -> float:
        start = time.perf_counter()
        result = sdk.assign_many(
            EXPERIMENT, inputs[inp], now_ms=NOW_MS, threads=threads, output=out
        )
        seconds = time.perf_counter() - start
        # Freed after the clock stops, as the Rust side frees its codes after its clock.
        del result
        return seconds

    def rust_seconds() -> float:
        return _abkit._rust_bulk_seconds(sdk._inner, EXPERIMENT, ids, None, NOW_MS, threads, 1)[0]

    # Warm-up: page in the code and the pools.
    rust_seconds()
    for inp, out in cases:
        python_seconds(inp, out)
    rust: list[float] = []
    py: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
    for r in range(args.rounds):
        # Each round starts the cases at a different one, so no case always runs right
        # after the Rust run (or after another given case).
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        rust.append(rust_seconds())
        for c in order:
            py[c].append(python_seconds(*c))
        rust.append(rust_seconds())

    rust_median = statistics.median(rust)
    rust_best = min(rust)
    rust_rate = args.units / rust_median
    rows = []
    for (inp, out), times in py.items():
        median = statistics.median(times)
        rate = args.units / median
        rows.append(
            {
                "input": inp,
                "output": out,
                "seconds": median,
                "best_seconds": min(times),
                "units_per_second": rate,
                "ratio_to_rust": rate / rust_rate,
                "best_ratio_to_rust": rust_best / min(times),
            }
        )
    result = {
        "units": args.units,
        "threads": threads or os.cpu_count(),
        "rounds": args.rounds,
        "rust_seconds": rust_median,
        "rust_best_seconds": rust_best,
        "rust_units_per_second": rust_rate,
        "python": rows,
        "load_average": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.units:,} ids, {result['threads']} threads, median of {args.rounds} rounds "
        f"(load average {os.getloadavg()[0]:.2f})"
    )
    print(
        f"Rust bulk core: median {rust_median * 1000:.1f} ms ({rust_rate / 1e6:.2f} M units/s), "
        f"best {rust_best * 1000:.1f} ms"
    )
    print(f"{'input':<8} {'output':<7} {'median ms':>10} {'M units/s':>10} {'vs Rust':>8} {'best ms':>8} {'vs Rust':>8}")
    for r in rows:
        print(
            f"{r['input']:<8} {r['output']:<7} {r['seconds'] * 1000:10.1f} "
            f"{r['units_per_second'] / 1e6:10.2f} {r['ratio_to_rust']:8.0%} "
            f"{r['best_seconds'] * 1000:8.1f} {r['best_ratio_to_rust']:8.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
