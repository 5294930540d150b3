#!/usr/bin/env bash
# The Python package's tests (issue 16), run by .ci/test after the workspace's tests.
# Idempotent: creates python/.venv (gitignored) and installs requirements-dev.txt into it when
# that file changed; checks the extension crate (rustfmt, clippy -D warnings); builds the wheel
# in release mode and pip-installs it; builds what the tests compare with (the abkit CLI and the
# weighted-hash plugin, as the workspace's own tests build them, so warm this is a no-op); runs
# pytest (the Spark test included, bounded by its own time limit); runs the same wheel's tests
# (all but Spark) on CPython 3.10 with the oldest supported NumPy/pandas/pyarrow and on the
# newest CPython found; then a short benchmark run.
# Needs: Python >= 3.10 with venv and pip, Java 17 (pyspark), the Rust toolchain; for the
# version matrix, CPython 3.10 and a newer one (found on PATH or in pyenv's versions).
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
want="$(cat requirements-dev.txt requirements-test.txt | sha256sum | cut -d' ' -f1)"
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

# The abi3 wheel on other CPython versions: the floor (3.10, with the oldest dependency set
# pyproject.toml allows) and the newest found. Each gets its own virtualenv (.venv-3.X),
# created once and refreshed when its requirements change.
find_python() {
  local v="$1" p
  for p in "python$v" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v" "/usr/bin/python$v"; do
    if [ -x "$(command -v "$p" 2>/dev/null || echo "$p")" ] && "$p" -c "" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
matrix_test() {
  local v="$1" requirements="$2" py env want
  if ! py="$(find_python "$v")"; then
    echo "python/ci.sh: NOT TESTED on CPython $v: no python$v on PATH or in pyenv's versions"
    return 0
  fi
  env=".venv-$v"
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ "$(cat "$env/.requirements.sha256" 2>/dev/null || true)" != "$want" ]; then
    rm -rf "$env"
    "$py" -m venv "$env"
    "$env/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$env/.requirements.sha256"
  fi
  "$env/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
  step "pytest on CPython $v ($("$env/bin/python" -c 'import sys, numpy, pandas, pyarrow; print(sys.version.split()[0], "numpy", numpy.__version__, "pandas", pandas.__version__, "pyarrow", pyarrow.__version__)'))"
  "$env/bin/pytest" -q -p no:cacheprovider tests --ignore=tests/test_spark.py
}
matrix_test 3.10 requirements-oldest.txt
newest=""
for v in 3.14 3.13 3.12; do
  if find_python "$v" >/dev/null; then newest="$v"; break; fi
done
if [ -n "$newest" ]; then
  matrix_test "$newest" requirements-test.txt
else
  echo "python/ci.sh: NOT TESTED on a CPython newer than 3.11: none found"
fi

step "benchmark smoke run (the README's numbers: bench/assign_many.py with the defaults)"
.venv/bin/python bench/assign_many.py --units 200000 --rounds 3
step "done"
