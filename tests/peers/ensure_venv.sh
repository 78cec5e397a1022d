#!/usr/bin/env bash
# Makes (or refreshes) the Python peers' venv: pyspark 4.3.0, duckdb, moto, from
# tests/peers/requirements.txt, at $UBM_VENV (default ~/.cache/ubm-venv), and prints the path of
# its python. Used by tests/run.sh and benches/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${UBM_VENV:-$HOME/.cache/ubm-venv}"
requirements=tests/peers/requirements.txt
stamp="$venv/.requirements"
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
  echo "installing the Python peers into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
