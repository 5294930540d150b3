"""The spec's conformance vectors: Python answers equal the Rust CLI's and the spec's."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

import abkit

from conftest import run_cli


def _config(cases: list[dict]) -> str:
    """One experiment `e<i>` per vector: its salt, coverage and weights (variants v0, v1 ...)."""
    parts = []
    for i, c in enumerate(cases):
        variants = ", ".join(f'{{ name = "v{k}", weight = {w} }}' for k, w in enumerate(c["weights"]))
        parts.append(
            f"[[experiments]]\nkey = \"e{i}\"\nsalt = {json.dumps(c['salt'])}\n"
            f"coverage = {c['coverage']!r}\nvariants = [{variants}]\n"
        )
    return "\n".join(parts)


def test_every_vector_is_answered_as_the_spec_and_the_rust_cli_answer(vectors, cli, tmp_path):
    config = tmp_path / "vectors.toml"
    config.write_text(_config(vectors), encoding="utf-8")
    sdk = abkit.Sdk.from_file(config)

    def rust(i: int) -> tuple[str, str]:
        out = run_cli(cli, "assign", "--config", config, "--experiment", f"e{i}", "--unit", vectors[i]["unit"])
        return out.stdout.strip(), out.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        cli_answers = list(pool.map(rust, range(len(vectors))))
    for i, c in enumerate(vectors):
        expected = None if c["variant"] is None else f"v{c['variant']}"
        a = sdk.assign(f"e{i}", c["unit"])
        assert a.variant == expected, f"case {i}: {c}"
        assert a.reason == ("assigned" if expected else "outside_coverage"), f"case {i}: {c}"
        assert a.provenance == "builtin:hash-v1", f"case {i}: {a}"
        cli_variant, cli_stderr = cli_answers[i]
        assert (None if cli_variant == "-" else cli_variant) == a.variant, f"case {i}: CLI said {cli_variant}"
        assert f"reason: {a.reason} (decided by {a.provenance})" in cli_stderr, cli_stderr


def test_every_vector_through_assign_many_and_every_input_type(vectors, tmp_path):
    sdk = abkit.Sdk.from_toml(_config(vectors))
    for i, c in enumerate(vectors):
        expected = None if c["variant"] is None else f"v{c['variant']}"
        units = [c["unit"]] * 3
        for given in (units, np.array(units), pa.array(units), pa.array(units, type=pa.large_string())):
            r = sdk.assign_many(f"e{i}", given)
            assert list(r.variant) == [expected] * 3, f"case {i} from {type(given).__name__}"
