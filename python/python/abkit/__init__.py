"""abkit: A/B-experiment assignment, on the same Rust core that serves.

Three lines give a notebook the service's answers::

    import abkit
    sdk = abkit.Sdk.from_file("abkit.toml")
    sdk.assign("checkout_button", "user-42", {"country": "US"}).variant

In bulk, ``Sdk.assign_many`` takes a list, a NumPy array, a pandas Series or a pyarrow
array of ids (and attributes as columns), releases the GIL and uses every core.
``simulate`` and ``diff`` return the reports ``abkit simulate --format json`` and
``abkit diff --format json`` print, as dicts; ``to_frame`` turns one into a pandas DataFrame.

Errors are exceptions carrying the Rust SDK's message: ``ConfigError`` (the configuration),
``UnknownExperimentError`` (bulk calls on a key the configuration lacks), ``SimulateError``
(reports), all subclasses of ``AbkitError``; wrong argument types raise ``TypeError``, bad
values ``ValueError``. Signed plugins load and verify exactly as in Rust: the same
configuration, the same trusted keys, the same refusals (see ``Sdk.status``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import _columns
from ._abkit import (
    AbkitError,
    ConfigError,
    SimulateError,
    UnknownExperimentError,
    _Sdk,
)
from ._abkit import __version__ as __version__
from ._abkit import diff_json as _diff_json
from ._abkit import now_ms as _now_ms
from ._abkit import simulate_json as _simulate_json

__all__ = [
    "AbkitError",
    "AssignManyResult",
    "Assignment",
    "ConfigError",
    "Sdk",
    "SimulateError",
    "UnknownExperimentError",
    "diff",
    "simulate",
    "to_frame",
]


class Assignment(NamedTuple):
    """One unit's answer.

    ``variant``: the variant name, or ``None`` when the unit is not enrolled.
    ``reason``: why, as the CLI and the service print it: ``assigned``, ``override``,
    ``outside_coverage``, ``not_targeted``, ``outside_layer``, ``disabled`` or
    ``unknown_experiment``.
    ``provenance``: which strategy decided, as the service prints it: ``builtin:hash-v1``,
    ``plugin:NAME vVERSION (SHA256-PREFIX, key KEYID)``,
    ``builtin:hash-v1 (fallback: REASON)``, or ``-`` when no strategy ran.
    """

    variant: str | None
    reason: str
    provenance: str

    @property
    def enrolled(self) -> bool:
        """Whether the unit is in a variant."""
        return self.variant is not None


class AssignManyResult(NamedTuple):
    """The answers of ``Sdk.assign_many``, one entry per unit in input order: ``variant``
    (name, or missing when not enrolled), ``reason``, and ``provenance`` (as in
    ``Assignment``) when asked for with ``assign_many(provenance=True)``, else ``None``.

    The arrays' kind follows ``assign_many(output=...)``: NumPy object arrays (``None`` when
    not enrolled; the default), pandas ``Categorical`` (``NaN`` when not enrolled), or pyarrow
    ``DictionaryArray`` (null when not enrolled).
    """

    variant: Any
    reason: Any
    provenance: Any = None

    def to_pandas(self, units: Any = None) -> Any:
        """A pandas DataFrame with columns ``variant``, ``reason``, ``provenance`` (when asked
        for) and ``unit`` first when ``units`` is given."""
        import pandas as pd

        data: dict[str, Any] = {}
        if units is not None:
            data["unit"] = units.to_numpy() if hasattr(units, "to_numpy") else units
        for name in ("variant", "reason", "provenance"):
            column = getattr(self, name)
            if column is not None:
                data[name] = column.to_pandas() if hasattr(column, "dictionary") else column
        return pd.DataFrame(data)


OUTPUTS = ("numpy", "pandas", "arrow")
"""The array kinds ``Sdk.assign_many`` can return (its ``output`` argument)."""


def _check_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        if value is None:
            raise TypeError(f"{what} is None; it must be a str")
        raise TypeError(f"{what} must be a str, not {type(value).__name__} ({value!r:.40})")
    return value


def _now(now_ms: int | None) -> int:
    if now_ms is None:
        return _now_ms()
    if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
        raise ValueError(f"now_ms must be a non-negative int (ms since the epoch), not {now_ms!r}")
    return now_ms


def _threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be a non-negative int (0 or None: one per core), not {threads!r}")
    return threads


class Sdk:
    """A loaded configuration serving assignments (the Rust ``abkit::Sdk``).

    Build one with ``Sdk.from_file`` or ``Sdk.from_toml``. Thread-safe; ``assign`` and
    ``assign_many`` never change it.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: _Sdk) -> None:
        if not isinstance(inner, _Sdk):
            raise TypeError("use Sdk.from_file(path) or Sdk.from_toml(text) to build an Sdk")
        self._inner = inner

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Sdk:
        """Reads, validates and serves a TOML configuration file: plugins are verified
        against the trusted keys, checked and probed exactly as in a Rust service (a refused
        plugin does not fail the load: its experiments fall back to ``builtin:hash-v1`` and
        ``status()`` says why). Raises ``ConfigError`` with every problem found."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        return cls(_Sdk.from_file(os.fspath(path)))

    @classmethod
    def from_toml(cls, text: str) -> Sdk:
        """Validates and serves TOML text (relative paths resolve against the current
        directory). Raises ``ConfigError`` with every problem found."""
        return cls(_Sdk.from_toml(_check_str(text, "text")))

    @property
    def experiments(self) -> list[str]:
        """The experiment keys, in configuration order."""
        return self._inner.experiments()

    def variants(self, experiment: str) -> list[str]:
        """The variant names of ``experiment``, in configuration order."""
        return self._inner.variants(_check_str(experiment, "experiment"))

    def status(self) -> dict[str, Any]:
        """What serves: plugins (with refusals and why), and per experiment which strategy
        really decides; the JSON of ``abkit status --json`` as a dict."""
        return json.loads(self._inner.status_json())

    def assign(
        self,
        experiment: str,
        unit: str,
        attributes: Mapping[str, str | None] | None = None,
        *,
        now_ms: int | None = None,
    ) -> Assignment:
        """Assigns one unit, exactly as a service linking the Rust SDK does.

        ``attributes``: name -> value for targeting and attribute-based strategies (a
        ``None`` value means the unit has no such attribute). ``now_ms`` fixes the clock
        (ms since the epoch) for time-based strategies; by default the system clock.
        An unknown experiment is an answer (reason ``unknown_experiment``), not an error.
        """
        _check_str(experiment, "experiment")
        _check_str(unit, "unit")
        pairs: list[tuple[str, str]] = []
        if attributes is not None:
            if not isinstance(attributes, Mapping):
                raise TypeError(
                    f"attributes must be a dict of str -> str, not {type(attributes).__name__}"
                )
            for k, v in attributes.items():
                _check_str(k, "an attribute name")
                if v is not None:
                    pairs.append((k, _check_str(v, f'attribute "{k}"')))
        if now_ms is not None:
            now_ms = _now(now_ms)
        return Assignment(*self._inner.assign(experiment, unit, pairs, now_ms))

    def assign_many(
        self,
        experiment: str,
        units: Any,
        attributes: Any = None,
        *,
        now_ms: int | None = None,
        threads: int | None = None,
        output: str = "numpy",
        provenance: bool = False,
    ) -> AssignManyResult:
        """Assigns every unit of a column, in parallel with the GIL released.

        ``units``: a list, NumPy array, pandas Series or pyarrow array of str ids.
        ``attributes``: a dict of name -> column (one value per unit, ``None`` where a unit
        has none) or str (every unit), or a pandas DataFrame. The clock is fixed for the
        whole call: ``now_ms``, or the time of the call (as ``abkit simulate`` does), so
        every unit sees the same time. ``threads``: worker threads (default one per core).
        ``output``: the kind of arrays returned: ``"numpy"`` (object arrays, ``None`` when
        not enrolled), ``"pandas"`` (``Categorical``) or ``"arrow"`` (``DictionaryArray``);
        the last two need no Python object per unit (a little faster, less memory).
        ``provenance``: also return which strategy decided each unit (off by default: it
        costs a third more output).

        Returns ``AssignManyResult(variant, reason, provenance)``, arrays in input order
        (``provenance`` is ``None`` unless asked for).
        Raises ``UnknownExperimentError`` for an unknown experiment, ``ValueError`` naming
        the position of a missing (``None``/``NaN``/null) id, ``TypeError`` for a non-str id.
        """
        _check_str(experiment, "experiment")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        units_arg = _columns.column(units, "units")
        attrs_arg = _columns.attributes(attributes)
        if not isinstance(provenance, bool):
            raise TypeError(f"provenance must be True or False, not {provenance!r}")
        answers = self._inner.assign_many(
            experiment,
            units_arg,
            attrs_arg,
            _now(now_ms),
            _threads(threads),
            provenance,
            output == "numpy",
        )
        return _result(answers, output)

    def __repr__(self) -> str:
        return repr(self._inner)


def _result(answers: tuple[Any, ...], output: str) -> AssignManyResult:
    v, v_names, r, r_names, p, p_names = answers
    if output == "numpy":
        # The extension made the object arrays itself, while it assigned.
        return AssignManyResult(variant=v, reason=r, provenance=p)
    # Codes, in NumPy arrays the extension filled (no copy): variant int32 (-1: not enrolled),
    # reason and provenance uint8 (viewed as int8: fewer than 128 of each).
    r = r.view(np.int8)
    if p is not None:
        p = p.view(np.int8)
    if output == "pandas":
        import pandas as pd

        def categorical(codes: Any, names: list[str]) -> Any:
            return pd.Categorical.from_codes(codes, categories=names)

        return AssignManyResult(
            variant=categorical(v, v_names),
            reason=categorical(r, r_names),
            provenance=None if p is None else categorical(p, p_names),
        )

    import pyarrow as pa

    def dictionary(indices: Any, names: list[str]) -> Any:
        return pa.DictionaryArray.from_arrays(indices, pa.array(names, type=pa.string()))

    return AssignManyResult(
        variant=dictionary(pa.array(v, mask=v < 0), v_names),
        reason=dictionary(pa.array(r), r_names),
        provenance=None if p is None else dictionary(pa.array(p), p_names),
    )


def _sdk(config: Any, what: str) -> _Sdk:
    if isinstance(config, Sdk):
        return config._inner
    if isinstance(config, (str, os.PathLike)):
        return _Sdk.from_file(os.fspath(config))
    raise TypeError(
        f"{what} must be an abkit.Sdk or the path of a configuration file, not "
        f"{type(config).__name__} (for TOML text use abkit.Sdk.from_toml(text))"
    )


def _experiments(experiments: Any) -> list[str]:
    if experiments is None:
        return []
    if isinstance(experiments, str):
        return [experiments]
    return [_check_str(e, "an experiment key") for e in experiments]


def simulate(
    config: Sdk | str | os.PathLike[str],
    units: Any,
    attributes: Any = None,
    *,
    experiments: str | list[str] | None = None,
    now_ms: int | None = None,
    threads: int | None = None,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """Simulates a population: the report of ``abkit simulate --format json`` as a dict
    (per experiment: counts per variant, expected and observed shares, SRM tests; layers;
    independence), computed by the same Rust code on the same units.

    ``config``: an ``Sdk`` or a configuration file path. ``units`` and ``attributes`` as in
    ``Sdk.assign_many``, except that every unit needs a value for every attribute column
    (the CLI reads attributes as CSV columns). ``experiments``: the keys to simulate
    (default all). ``now_ms``: the fixed clock (default now). ``allow_empty``: report on no
    units instead of raising ``SimulateError``.
    """
    report = _simulate_json(
        _sdk(config, "config"),
        _columns.column(units, "units"),
        _columns.attributes(attributes),
        _experiments(experiments),
        None if now_ms is None else _now(now_ms),
        _threads(threads),
        bool(allow_empty),
    )
    return json.loads(report)


def diff(
    from_config: Sdk | str | os.PathLike[str],
    to_config: Sdk | str | os.PathLike[str],
    units: Any,
    attributes: Any = None,
    *,
    experiments: str | list[str] | None = None,
    now_ms: int | None = None,
    threads: int | None = None,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """Compares two configurations on a population: the report of
    ``abkit diff --format json`` as a dict (per experiment: units moved, entered, left, and
    every transition ``{"from", "to", "count"}``, ``None`` meaning not enrolled).
    Arguments as in ``simulate``."""
    report = _diff_json(
        _sdk(from_config, "from_config"),
        _sdk(to_config, "to_config"),
        _columns.column(units, "units"),
        _columns.attributes(attributes),
        _experiments(experiments),
        None if now_ms is None else _now(now_ms),
        _threads(threads),
        bool(allow_empty),
    )
    return json.loads(report)


def to_frame(report: Mapping[str, Any]) -> Any:
    """A pandas DataFrame of a ``simulate`` or ``diff`` report.

    A simulation: one row per (experiment, variant) with ``count``, ``assigned``,
    ``overridden``, ``expected_share``, ``observed_share``, ``population_share`` and the
    experiment's SRM ``p_value`` and ``verdict``. A diff: one row per (experiment, from, to)
    transition with its ``count``.
    """
    import pandas as pd

    if not isinstance(report, Mapping) or "experiments" not in report:
        raise TypeError("to_frame takes a report returned by abkit.simulate or abkit.diff")
    rows = []
    for e in report["experiments"]:
        if "transitions" in e:
            for t in e["transitions"]:
                rows.append({"experiment": e["key"], "from": t["from"], "to": t["to"], "count": t["count"]})
        else:
            srm = e.get("srm", {})
            for v in e["variants"]:
                rows.append(
                    {
                        "experiment": e["key"],
                        "variant": v["name"],
                        "weight": v["weight"],
                        "count": v["count"],
                        "assigned": v["assigned"],
                        "overridden": v["overridden"],
                        "expected_share": v["expected_share"],
                        "observed_share": v["observed_share"],
                        "population_share": v["population_share"],
                        "srm_p_value": srm.get("p_value"),
                        "srm_verdict": srm.get("verdict"),
                    }
                )
    return pd.DataFrame(rows)
