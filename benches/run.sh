#!/usr/bin/env bash
# The benchmark suite (docs/performance.md): builds ubm (release), makes the Python peers' venv
# (pyspark 4.3.0, duckdb) if needed, then runs benches/suite.py with the arguments given, e.g.
#   benches/run.sh                 # SF 1: ubm, ubm on a local cluster, Spark local[2], DuckDB
#   benches/run.sh --scale 0.1     # a quick run
#   benches/run.sh --scaling       # ubm in-process at SF 1, 2, 4, 8, 16: time and peak memory
#   benches/run.sh --cluster-scaling   # ubm on 1, 2, 3 local executors at SF 1, 4, 8 (needs strace)
#   benches/run.sh --tls-cost          # a plaintext and a mutual-TLS local cluster, alternating
#   benches/run.sh --fixed-cost        # SF 0.01 from Postgres on a plaintext and a TLS local cluster: a day's fixed cost
#   benches/run.sh --from-postgres     # SF 1 from Postgres: `ubm run` vs DuckDB's job, the extract vs psql \copy
#   benches/run.sh --scale-out         # ubm on 1, 2, 4, 8 executors of capped CPU (cgroups, root) at 2x and 4x SF 1
# Results: a table on stdout, JSON and Markdown under benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(tests/peers/ensure_venv.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet
exec "$python" benches/suite.py "$@"
