#!/usr/bin/env bash
# Installs what the tests need, builds the Rust extension, and runs every test:
# cargo's unit tests for the Rust core, then ruff and pytest for everything else.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k routing`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The extension and the cargo tests are built once, with the `ci` profile (Cargo.toml): maturin's
# build for pip leaves the dependencies compiled for `cargo test`, which adds only the core's test
# harness (PYO3_PYTHON pins pyo3's build to the same interpreter for both). Serving builds use
# `release` (fat LTO): `pip install .` as README.md says.
export PYO3_PYTHON="$(command -v python3)"
MATURIN_PEP517_ARGS="--profile ci" \
  python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Cluster mode's tests start redis-server processes of their own (tests/conftest.py), from Debian's
# package; its own service, if the package starts one, is not used.
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

# cargo test links libpython; pyenv-style shared builds keep it outside the default search path.
LIBDIR="$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
export LD_LIBRARY_PATH="${LIBDIR}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
cargo test --profile ci --quiet
# The criterion benches are not run here, but they must keep compiling against the core.
cargo check --profile ci --benches --quiet

python3 -m ruff check python tests benches examples
# Tests run in parallel, one pytest-xdist worker per core (at most 4): most of a test's time is
# a server starting or a client waiting on it, and every test has its own ports, files and servers.
python3 -m pytest -q -p no:cacheprovider -n auto --maxprocesses 4 "$@"
