#!/usr/bin/env bash
# The project's test command (see README): makes the Python peers' venv when it is missing or
# stale (pyspark 4.3.0, duckdb and moto, from tests/peers/requirements.txt), then runs every test.
# Extra arguments go to `cargo test` (e.g. `tests/run.sh spark` runs the Spark comparisons).
set -euo pipefail
cd "$(dirname "$0")/.."

UBM_PYTHON="$(tests/peers/ensure_venv.sh)"
export UBM_PYTHON

# One target directory and one profile (release) for every build: tests, runs, benchmarks. By
# default ./target, where `cargo run --release` (the README's first command) builds too; CI points
# CARGO_TARGET_DIR at a cache that outlives its clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
exec cargo test --release --workspace "$@"
