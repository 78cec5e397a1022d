"""`ubm run` against DuckDB doing the same classify + join from the CSV files, in one sitting.

Usage (after `cargo build --release`, with the test venv's Python, which has duckdb):
    ~/.cache/ubm-venv/bin/python benches/run_vs_duckdb.py [--scale 1] [--runs 5]
        [--postgres postgres://postgres@127.0.0.1:5432/postgres]

It generates the data once (`ubm datagen`, loaded into Postgres), then alternates the
contenders `--runs` times and prints medians (and min/max) of wall time, so that both see the
same moment of this shared machine:
- ubm: `ubm run` on the review CSV and Postgres (ingest, extract, classify, metric; no load);
- duckdb: the same classify (RFC 4180 CSV, Spark's tokenizer rule as a regex split) and the
  correct-semantics join, from movie_review.csv and user_purchase.csv;
- extract: ubm's as-of extract from Postgres into staged Parquet, measured alone (a run with a
  header-only review file, duration from the run report), next to
  `psql -c "\\copy (select ...) to '/dev/null'"` of the same rows.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
UBM = TARGET / "release" / "ubm"
DATE = "2011-12-31"

DUCKDB_JOB = r"""
WITH reviews AS (
    SELECT cid, review_str FROM read_csv('{reviews}', header = true, quote = '"', escape = '"',
        columns = {{'cid': 'VARCHAR', 'review_str': 'VARCHAR', 'id_review': 'VARCHAR'}})
), classified AS (
    SELECT cid, coalesce(regexp_matches(lower(review_str), '(^|[ \t\n\x0B\f\r])good([ \t\n\x0B\f\r]|$)'), false)
           AS positive_review
    FROM reviews
), p AS (
    SELECT customer_id, SUM(quantity * unit_price) AS spent
    FROM read_csv('{purchases}', header = true, quote = '"', escape = '"',
        columns = {{'invoice_number': 'VARCHAR', 'stock_code': 'VARCHAR', 'detail': 'VARCHAR',
                    'quantity': 'INTEGER', 'invoice_date': 'TIMESTAMP', 'unit_price': 'DECIMAL(8,3)',
                    'customer_id': 'INTEGER', 'country': 'VARCHAR'}})
    WHERE customer_id IS NOT NULL AND invoice_date < DATE '{date}' + 1 GROUP BY customer_id
), r AS (
    SELECT TRY_CAST(trim(cid, ' ') AS INTEGER) AS cid,
           SUM(CASE WHEN positive_review THEN 1 ELSE 0 END) AS score, COUNT(*) AS cnt
    FROM classified GROUP BY 1
)
SELECT count(*), sum(CAST(p.spent AS DECIMAL(18,5))), sum(r.score), sum(r.cnt) FROM p JOIN r ON p.customer_id = r.cid
"""


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="1")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if not UBM.exists():
        raise SystemExit(f"{UBM} is missing: run `cargo build --release` first")

    work = Path(tempfile.mkdtemp(prefix="ubm-bench-"))
    subprocess.run([UBM, "datagen", "--scale", args.scale, "--out", work, "--oltp", args.postgres], check=True)
    reviews, purchases = work / "movie_review.csv", work / "user_purchase.csv"
    copy_sql = (
        "\\copy (SELECT * FROM retail.user_purchase WHERE invoice_date < DATE '2012-01-01') TO '/dev/null'"
    )
    no_reviews = work / "header_only.csv"
    no_reviews.write_text("cid,review_str,id_review\n")
    rows = {"ubm run": [], "duckdb classify+join": [], "ubm extract alone": [], "psql \\copy": []}
    con = duckdb.connect()
    for i in range(args.runs):
        lake = work / f"lake-{i}"
        seconds, _ = timed(lambda: subprocess.run(
            [UBM, "run", "--date", DATE, "--reviews", reviews, "--oltp", args.postgres, "--lake", lake, "--json", "--no-report"],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        rows["ubm run"].append(seconds)
        alone = work / f"lake-extract-{i}"
        subprocess.run(
            [UBM, "run", "--date", DATE, "--reviews", no_reviews, "--oltp", args.postgres, "--lake", alone, "--no-report"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report = json.loads((alone / "_runs" / f"{DATE}.json").read_text())
        extract = next(t for t in report["tasks"] if t["name"] == "extract")
        rows["ubm extract alone"].append(extract["duration_ms"] / 1000)
        sql = DUCKDB_JOB.format(reviews=reviews, purchases=purchases, date=DATE)
        seconds, _ = timed(lambda: con.execute(sql).fetchall())
        rows["duckdb classify+join"].append(seconds)
        seconds, _ = timed(lambda: subprocess.run(["psql", args.postgres, "-qc", copy_sql], check=True))
        rows["psql \\copy"].append(seconds)

    base = statistics.median(rows["duckdb classify+join"])
    print(f"scale {args.scale}, {args.runs} runs each, interleaved; {os.cpu_count()} cores")
    print(f"{'contender':<24}{'median s':>10}{'min s':>9}{'max s':>9}{'÷ duckdb':>10}")
    # The extract rows compare with each other (ubm ÷ psql), not with DuckDB's job.
    for name, times in rows.items():
        median = statistics.median(times)
        print(f"{name:<24}{median:>10.3f}{min(times):>9.3f}{max(times):>9.3f}{median / base:>10.2f}")


if __name__ == "__main__":
    main()
