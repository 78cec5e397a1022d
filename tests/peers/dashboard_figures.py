"""The figures `ubm report` shows, recomputed by DuckDB from the lake itself, as a peer.

Usage: dashboard_figures.py LAKE

Reads every committed metric partition (a directory with _SUCCESS) with Hive partitioning and the
run reports under _runs/, and prints a JSON document: per date, the customers, the exact total of
amount_spent, the positive share and the rejected records (when the run's classify succeeded); and the latest date's top ten
customers by amount spent. Written independently of ubm's code.
"""
import glob
import json
import os
import sys

import duckdb

lake = sys.argv[1].rstrip("/")
dates = sorted(os.path.basename(p)[: -len(".json")] for p in glob.glob(f"{lake}/_runs/*.json"))
figures = {}
con = duckdb.connect()
for date in dates:
    with open(f"{lake}/_runs/{date}.json") as f:
        report = json.load(f)
    counts = report["counts"]
    classified = counts["reviews_classified"]
    classify_ran = any(t["name"] == "classify" and t["status"] == "succeeded" for t in report["tasks"])
    day = {
        # A run whose classify did not succeed counted no rejects: the page leaves a gap.
        "rejected": str(counts["reviews_rejected"]) if classify_ran else "",
        "positive_share": f"{counts['positive_reviews'] / classified:.6f}" if classified else "",
        "customers": "",
        "spent": "",
    }
    partition = f"{lake}/warehouse/user_behavior_metric/insert_date={date}"
    if os.path.exists(f"{partition}/_SUCCESS"):
        customers, spent = con.execute(
            "SELECT count(*), CAST(sum(amount_spent) AS DECIMAL(38,5))::VARCHAR "
            f"FROM read_parquet('{partition}/*.parquet')"
        ).fetchone()
        day["customers"] = str(customers)
        day["spent"] = spent
    figures[date] = day

latest = dates[-1]
top = con.execute(
    "SELECT customerid, amount_spent::VARCHAR FROM read_parquet("
    f"'{lake}/warehouse/user_behavior_metric/*/*.parquet', hive_partitioning = true) "
    f"WHERE insert_date = DATE '{latest}' ORDER BY amount_spent DESC, customerid LIMIT 10"
).fetchall()
print(json.dumps({"days": figures, "latest": latest, "top": [[str(c), a] for c, a in top]}))
