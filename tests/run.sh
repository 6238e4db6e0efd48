#!/usr/bin/env bash
# Installs what the tests need, builds the Rust extension, and runs every test:
# cargo's unit tests for the Rust core, then ruff and pytest for everything else.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k routing`).
set -euo pipefail
cd "$(dirname "$0")/.."

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
cargo test --release --quiet
# The criterion benches are not run here, but they must keep compiling against the core.
cargo check --release --benches --quiet

python3 -m ruff check python tests benches examples
python3 -m pytest -q -p no:cacheprovider "$@"
