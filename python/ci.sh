#!/usr/bin/env bash
# The Python package's tests (issue 16), run by .ci/test after the workspace's tests.
# Idempotent: creates python/.venv (gitignored) and installs requirements-dev.txt into it when
# that file changed; checks the extension crate (rustfmt, clippy -D warnings); builds the wheel
# in release mode and pip-installs it; builds what the tests compare with (the abkit CLI and the
# weighted-hash plugin, as the workspace's own tests build them, so warm this is a no-op); runs
# pytest (the Spark test included, bounded by its own time limit), then a short benchmark run.
# Needs: Python >= 3.10 with venv and pip, Java 17 (pyspark), the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON_DIR="$(pwd)"
ROOT="$(cd .. && pwd)"
export CARGO_TARGET_DIR="$PYTHON_DIR/target"
start=$SECONDS
step() { echo "python/ci.sh [$((SECONDS - start))s] $*"; }

step "virtualenv python/.venv"
if [ ! -x .venv/bin/python ]; then
  if ! "${PYTHON:-python3}" -m venv .venv; then
    # Debian's own python3 needs python3-venv for `-m venv`.
    rm -rf .venv
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    "${PYTHON:-python3}" -m venv .venv
  fi
fi
want="$(sha256sum requirements-dev.txt | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements-dev.sha256 2>/dev/null || true)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" >.venv/.requirements-dev.sha256
fi

step "rustfmt and clippy (python/Cargo.toml)"
cargo fmt --manifest-path Cargo.toml --check
cargo clippy --manifest-path Cargo.toml --locked --all-targets --quiet -- -D warnings

step "wheel (maturin build --release) and pip install"
rm -rf dist
if ! .venv/bin/maturin build --release --locked --out dist >.venv/maturin.log 2>&1; then
  cat .venv/maturin.log
  exit 1
fi
grep "Built wheel" .venv/maturin.log || true
wheel="$(ls dist/abkit_sdk-*.whl)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"

step "the abkit CLI and the weighted-hash plugin the tests compare with"
(
  cd "$ROOT"
  unset CARGO_TARGET_DIR
  # Every feature, as `cargo test --workspace --all-features` builds it (then a no-op here).
  cargo build --locked --quiet -p abkit --all-features --bin abkit
  # The same package set and directory as tests/src/fixtures.rs: after `cargo test` a no-op.
  cargo build --locked --quiet -p abkit-strategy-weighted-hash -p abkit-strategy-switchback \
    -p abkit-strategy-cluster --target-dir target/test-plugins
)
export ABKIT_CLI="$ROOT/target/debug/abkit"
export ABKIT_TEST_PLUGIN="$ROOT/target/test-plugins/debug/libabkit_strategy_weighted_hash.so"
# Spark stays on loopback.
export SPARK_LOCAL_IP=127.0.0.1

step "pytest"
.venv/bin/pytest -q -p no:cacheprovider tests

step "benchmark smoke run (the README's numbers: bench/assign_many.py with the defaults)"
.venv/bin/python bench/assign_many.py --units 200000 --rounds 1
step "done"
