"""Type stubs of the abkit package (the public API; see __init__.py for the docs)."""

import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

import numpy as np

from ._abkit import AbkitError as AbkitError
from ._abkit import ConfigError as ConfigError
from ._abkit import SimulateError as SimulateError
from ._abkit import UnknownExperimentError as UnknownExperimentError

__version__: str

# A column: list/tuple/iterable of str, NumPy str or object array, pandas Series/Index/array,
# or a pyarrow (Chunked)Array of strings. Missing values: None, NaN, pd.NA, Arrow null.
Column = Iterable[str | None] | np.ndarray | Any
# Attributes: name -> column (one value per unit) or str (every unit), or a pandas DataFrame.
Attributes = Mapping[str, Column | str] | Any
Output = Literal["numpy", "pandas", "arrow"]
OUTPUTS: tuple[str, ...]

class Assignment(NamedTuple):
    """One unit's answer: variant name or None, reason, provenance (as the service prints)."""

    variant: str | None
    reason: str
    provenance: str
    @property
    def enrolled(self) -> bool: ...

class AssignManyResult(NamedTuple):
    """Arrays in input order: NumPy object arrays, pandas Categorical or pyarrow DictionaryArray
    (provenance: None unless asked for)."""

    variant: Any
    reason: Any
    provenance: Any = None
    def to_pandas(self, units: Column | None = None) -> Any: ...

class Sdk:
    """A loaded configuration serving assignments (the Rust abkit::Sdk)."""

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Sdk: ...
    @classmethod
    def from_toml(cls, text: str) -> Sdk: ...
    @property
    def experiments(self) -> list[str]: ...
    def variants(self, experiment: str) -> list[str]: ...
    def status(self) -> dict[str, Any]: ...
    def assign(
        self,
        experiment: str,
        unit: str,
        attributes: Mapping[str, str | None] | None = None,
        *,
        now_ms: int | None = None,
    ) -> Assignment: ...
    def assign_many(
        self,
        experiment: str,
        units: Column,
        attributes: Attributes | None = None,
        *,
        now_ms: int | None = None,
        threads: int | None = None,
        output: Output = "numpy",
        provenance: bool = False,
    ) -> AssignManyResult: ...

def simulate(
    config: Sdk | str | os.PathLike[str],
    units: Column,
    attributes: Attributes | None = None,
    *,
    experiments: str | list[str] | None = None,
    now_ms: int | None = None,
    threads: int | None = None,
    allow_empty: bool = False,
) -> dict[str, Any]: ...
def diff(
    from_config: Sdk | str | os.PathLike[str],
    to_config: Sdk | str | os.PathLike[str],
    units: Column,
    attributes: Attributes | None = None,
    *,
    experiments: str | list[str] | None = None,
    now_ms: int | None = None,
    threads: int | None = None,
    allow_empty: bool = False,
) -> dict[str, Any]: ...
def to_frame(report: Mapping[str, Any]) -> Any: ...
