"""Shared fixtures: the Rust `abkit` CLI (the reference every Python answer is compared with),
the conformance vectors, and helpers to run the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent


def _cli_path() -> Path:
    return Path(os.environ.get("ABKIT_CLI", REPO / "target" / "debug" / "abkit"))


@pytest.fixture(scope="session")
def cli() -> Path:
    """The Rust CLI: $ABKIT_CLI, else target/debug/abkit (python/ci.sh builds it)."""
    path = _cli_path()
    if not path.exists():
        pytest.fail(
            f"the abkit CLI is not at {path}: build it with `cargo build -p abkit --features cli "
            "--bin abkit` (python/ci.sh does) or set ABKIT_CLI"
        )
    return path


def run_cli(
    cli: Path, *args: str | os.PathLike[str], timeout: float = 120, ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[str]:
    """Runs the CLI; fails the test with its stderr when its exit status is not in `ok`."""
    proc = subprocess.run(
        [os.fspath(cli), "-q", *map(os.fspath, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode not in ok:
        pytest.fail(f"abkit {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def cli_assign_csv(cli: Path, config: Path, experiment: str, units_file: Path, id_column: str | None = None) -> list[str | None]:
    """`abkit assign --units`: the variant of every unit, in order (None when not enrolled)."""
    args: list[str | os.PathLike[str]] = ["assign", "--config", config, "--experiment", experiment, "--units", units_file]
    if id_column:
        args += ["--id-column", id_column]
    out = run_cli(cli, *args).stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["unit_id", "variant"]
    return [v or None for _, v in rows[1:]]


def write_units_csv(path: Path, units: list[str], attributes: dict[str, list[str]]) -> Path:
    """A CSV units file with an `id` column and one column per attribute."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", *attributes])
        for i, u in enumerate(units):
            w.writerow([u, *(col[i] for col in attributes.values())])
    return path


@pytest.fixture(scope="session")
def vectors() -> list[dict]:
    """The bucketing-v1 conformance vectors (the normative copy when shared/ is beside the
    repository, else the committed one)."""
    shared = REPO.parent / "shared" / "spec" / "bucketing-v1-vectors.json"
    path = shared if shared.exists() else REPO / "tests" / "data" / "bucketing-v1-vectors.json"
    cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
    assert len(cases) >= 50
    return cases
