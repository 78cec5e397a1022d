#!/usr/bin/env bash
# Times `ubm report` on a lake of 30 dates at SF 1 (30 daily runs of the same sample), five
# times, and prints the median, the fastest and slowest, and the page's size.
# Usage: benches/report.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet --bin ubm
ubm="$CARGO_TARGET_DIR/release/ubm"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
if [ ! -f "$work/data/oltp.sqlite" ]; then
  "$ubm" datagen --scale 1 --out "$work/data" --oltp "sqlite://$work/data/oltp.sqlite"
fi
"$ubm" run --from 2011-11-01 --to 2011-11-30 --reviews "$work/data/movie_review.csv" \
  --oltp "sqlite://$work/data/oltp.sqlite" --lake "$work/lake" --no-report --json > /dev/null
times=()
for _ in 1 2 3 4 5; do
  start=$(date +%s.%N)
  "$ubm" report --lake "$work/lake" --out "$work/report.html" > /dev/null 2>&1
  end=$(date +%s.%N)
  times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "ubm report, 30 dates at SF 1: median $(echo "$sorted" | sed -n 3p) s (min $(echo "$sorted" | head -1), max $(echo "$sorted" | tail -1)); page $(stat -c %s "$work/report.html") bytes"
