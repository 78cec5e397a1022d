#!/usr/bin/env bash
# The project's test command (see README): makes the Python peers' venv when it is missing or
# stale (pyspark 4.3.0 and duckdb, from tests/peers/requirements.txt), then runs every test.
# Extra arguments go to `cargo test` (e.g. `tests/run.sh spark` runs the Spark comparisons).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${UBM_VENV:-$HOME/.cache/ubm-venv}"
requirements=tests/peers/requirements.txt
stamp="$venv/.requirements"
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
  echo "tests/run.sh: installing the Python peers into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
export UBM_PYTHON="$venv/bin/python"

# One target directory and one profile (release) for every build: tests, runs, benchmarks.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ubm-target}"
exec cargo test --release --workspace "$@"
