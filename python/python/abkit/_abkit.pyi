"""Type stubs of the extension module abkit._abkit (private: use the abkit package)."""

from typing import Any

import numpy as np

__version__: str

class AbkitError(Exception):
    """Base class of every error abkit raises (with the Rust SDK's message)."""

class ConfigError(AbkitError):
    """The configuration could not be read or is invalid; the message lists every problem."""

class UnknownExperimentError(AbkitError):
    """The experiment is not in the configuration (bulk calls)."""

class SimulateError(AbkitError):
    """A simulation or diff could not run."""

class _Sdk:
    @staticmethod
    def from_file(path: str) -> _Sdk: ...
    @staticmethod
    def from_toml(text: str) -> _Sdk: ...
    def experiments(self) -> list[str]: ...
    def variants(self, experiment: str) -> list[str]: ...
    def status_json(self) -> str: ...
    def assign(
        self, experiment: str, unit: str, attributes: list[tuple[str, str]], now_ms: int | None = None
    ) -> tuple[str | None, str, str]: ...
    def assign_many(
        self,
        experiment: str,
        units: Any,
        attributes: Any,
        now_ms: int,
        threads: int | None = None,
        provenance: bool = False,
        objects: bool = False,
    ) -> tuple[
        np.ndarray, list[str], np.ndarray, list[str], np.ndarray | None, list[str]
    ]: ...

def simulate_json(
    sdk: _Sdk,
    units: Any,
    attributes: Any,
    experiments: list[str],
    now_ms: int | None = None,
    threads: int | None = None,
    allow_empty: bool = False,
) -> str: ...
def diff_json(
    from_sdk: _Sdk,
    to_sdk: _Sdk,
    units: Any,
    attributes: Any,
    experiments: list[str],
    now_ms: int | None = None,
    threads: int | None = None,
    allow_empty: bool = False,
) -> str: ...
def _rust_bulk_seconds(
    sdk: _Sdk,
    experiment: str,
    units: Any,
    attributes: Any,
    now_ms: int,
    threads: int | None = None,
    repeat: int = 1,
    provenance: bool = False,
) -> list[float]: ...
def now_ms() -> int: ...
