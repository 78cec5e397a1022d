"""Two DuckDB formulations of the classifier rule, timed side by side, answers checked equal.

Usage (the test venv's Python, which has duckdb):
    ~/.cache/ubm-venv/bin/python benches/peers/duckdb_forms.py REVIEWS.csv [--runs 5]

- split: `list_contains(regexp_split_to_array(lower(review_str), '[ \\t\\n\\x0B\\f\\r]'), 'good')`,
  Spark's tokenizer written literally;
- regexp: `regexp_matches(lower(review_str), '(^|[ \\t\\n\\x0B\\f\\r])good([ \\t\\n\\x0B\\f\\r]|$)')`,
  the same answer without a token list (what benches/peers/duckdb_job.py runs).
Each writes (cid, positive_review) to Parquet, as the benchmark's classify phase does; runs
alternate; prints the median, min and max of each and fails if the answers differ.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

SEPARATORS = r"[ \t\n\x0B\f\r]"
FORMS = {
    "split": f"coalesce(list_contains(regexp_split_to_array(lower(review_str), '{SEPARATORS}'), 'good'), false)",
    "regexp": f"coalesce(regexp_matches(lower(review_str), '(^|{SEPARATORS})good({SEPARATORS}|$)'), false)",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reviews")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    source = (f"read_csv('{args.reviews}', header = true, quote = '\"', escape = '\"', strict_mode = true, "
              "columns = {'cid': 'VARCHAR', 'review_str': 'VARCHAR', 'id_review': 'VARCHAR'})")
    out = Path(tempfile.mkdtemp(prefix="ubm-duckdb-forms-"))
    con = duckdb.connect()
    times = {name: [] for name in FORMS}
    for _ in range(args.runs):
        for name, expr in FORMS.items():
            start = time.perf_counter()
            con.execute(f"COPY (SELECT cid, {expr} AS positive_review FROM {source}) TO '{out}/{name}.parquet' (FORMAT parquet)")
            times[name].append(time.perf_counter() - start)
    answers = {name: sorted(con.execute(f"SELECT cid, positive_review, count(*) FROM '{out}/{name}.parquet' GROUP BY ALL").fetchall(),
                            key=str) for name in FORMS}
    if answers["split"] != answers["regexp"]:
        sys.exit("the two forms give different answers")
    for name, runs in times.items():
        print(f"{name:<7} median {statistics.median(runs):.3f} s (min {min(runs):.3f}, max {max(runs):.3f}; {args.runs} runs)")
    print(f"same answers; split / regexp = {statistics.median(times['split']) / statistics.median(times['regexp']):.2f}")


if __name__ == "__main__":
    main()
