"""Signed plugins from Python: the same configuration, the same verification as in Rust.

The weighted-hash reference plugin (bucketing-v1 by unit id, as a plugin) is signed here with
a throwaway key by the `abkit` CLI, then loaded by Python and by the CLI: same answers, same
provenance; with one byte of the library flipped, both refuse it for the same reason."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import abkit

from conftest import REPO, cli_assign_csv, run_cli


@pytest.fixture(scope="module")
def plugin() -> Path:
    """The weighted-hash plugin: $ABKIT_TEST_PLUGIN, else where the Rust tests build it."""
    path = Path(
        os.environ.get(
            "ABKIT_TEST_PLUGIN",
            REPO / "target" / "test-plugins" / "debug" / "libabkit_strategy_weighted_hash.so",
        )
    )
    if not path.exists():
        pytest.fail(
            f"the weighted-hash plugin is not at {path}: build it with `cargo build -p "
            "abkit-strategy-weighted-hash --target-dir target/test-plugins` (python/ci.sh does) "
            "or set ABKIT_TEST_PLUGIN"
        )
    return path


def _signed_setup(cli: Path, plugin: Path, d: Path) -> Path:
    """A directory with a key pair, the signed plugin and a configuration using it."""
    d.mkdir()
    run_cli(cli, "keygen", "--out", d / "keys", "--unencrypted")
    (d / "plugins").mkdir()
    lib = d / "plugins" / "libabkit_strategy_weighted_hash.so"
    shutil.copyfile(plugin, lib)
    run_cli(cli, "sign", "--key", d / "keys" / "abkit.key", "--name", "weighted-hash", "--plugin-version", "3", lib)
    config = d / "abkit.toml"
    config.write_text(
        """
[trust]
public_key_files = ["keys/abkit.pub"]

[[plugins]]
name = "weighted-hash"
path = "plugins/libabkit_strategy_weighted_hash.so"

[[experiments]]
key = "by_plugin"
strategy = "plugin:weighted-hash"
coverage = 0.8
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 2 } ]

[[experiments]]
key = "by_builtin"
salt = "by_plugin"
coverage = 0.8
variants = [ { name = "a", weight = 1 }, { name = "b", weight = 2 } ]
""",
        encoding="utf-8",
    )
    return config


def test_a_signed_plugin_serves_from_python_as_from_rust(cli, plugin, tmp_path):
    config = _signed_setup(cli, plugin, tmp_path / "good")
    sdk = abkit.Sdk.from_file(config)
    status = sdk.status()
    assert status["plugins"][0]["state"] == "active", status
    assert status["plugins"][0]["serving"]["version"] == 3
    a = sdk.assign("by_plugin", "user-42")
    assert a.provenance.startswith("plugin:weighted-hash v3 ("), a
    assert a.provenance == status["experiments"][0]["serving"]

    units = [f"user-{i}" for i in range(5000)]
    (tmp_path / "ids.txt").write_text("".join(u + "\n" for u in units), encoding="utf-8")
    r = sdk.assign_many("by_plugin", units, provenance=True)
    assert set(r.provenance) == {a.provenance}
    # The CLI loads and verifies the same plugin: same answers; and weighted-hash is exactly
    # the builtin bucketer, so the builtin experiment with the same salt agrees too.
    assert list(r.variant) == cli_assign_csv(cli, config, "by_plugin", tmp_path / "ids.txt")
    assert list(r.variant) == list(sdk.assign_many("by_builtin", units).variant)
    report = abkit.simulate(sdk, units, experiments="by_plugin")
    counts = {v["name"]: v["count"] for v in report["experiments"][0]["variants"]}
    assert counts == {name: int((r.variant == name).sum()) for name in ("a", "b")}


def test_a_tampered_plugin_is_refused_from_python_as_from_rust(cli, plugin, tmp_path):
    config = _signed_setup(cli, plugin, tmp_path / "bad")
    lib = tmp_path / "bad" / "plugins" / "libabkit_strategy_weighted_hash.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, after signing
    lib.write_bytes(bytes(data))

    sdk = abkit.Sdk.from_file(config)  # a refused plugin does not fail the load
    a = sdk.assign("by_plugin", "user-42")
    assert a.provenance == "builtin:hash-v1 (fallback: plugin_refused)", a
    assert a == sdk.assign("by_builtin", "user-42")._replace(provenance=a.provenance)
    python_refusal = sdk.status()["plugins"][0]["refusal"]
    rust_refusal = json.loads(run_cli(cli, "status", "--config", config, "--json", ok=(1,)).stdout)["plugins"][0]["refusal"]
    assert python_refusal is not None
    assert (python_refusal["step"], python_refusal["reason"]) == (rust_refusal["step"], rust_refusal["reason"])
    assert python_refusal["step"] == "signature", python_refusal


def test_an_untrusted_key_is_refused(cli, plugin, tmp_path):
    config = _signed_setup(cli, plugin, tmp_path / "other")
    run_cli(cli, "keygen", "--out", tmp_path / "other" / "keys", "--name", "stranger", "--unencrypted")
    text = config.read_text(encoding="utf-8").replace("keys/abkit.pub", "keys/stranger.pub")
    config.write_text(text, encoding="utf-8")
    sdk = abkit.Sdk.from_file(config)
    assert sdk.assign("by_plugin", "u").provenance == "builtin:hash-v1 (fallback: plugin_refused)"
    assert "not trusted" in json.dumps(sdk.status()["plugins"][0]["refusal"])
