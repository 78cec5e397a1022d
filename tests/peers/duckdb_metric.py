"""The metric SQL of docs/pipeline.md, run by DuckDB on ubm's lake, as a peer.

Usage: duckdb_metric.py LAKE DATE correct|seed

Reads the staged inputs of DATE from the lake with Hive partitioning (as Spectrum/Athena
would), runs the contract's SQL text for the semantics, and prints a JSON document with
DuckDB's rows and ubm's rows (the lake's warehouse partition, read by DuckDB), both sorted by
customerid, every value as text, and DuckDB's counts of the reviews whose cid is no integer and
of those whose cid is no customer's ("matches").
"""
import json
import sys

import duckdb

# `<cid as integer>` of the contract: trimmed of ASCII spaces, an optional sign and digits
# that fit an INTEGER; anything else is NULL. Written independently of ubm's code.
CID_AS_INTEGER = (
    "CASE WHEN regexp_full_match(trim({c}, ' '), '[+-]?[0-9]+') "
    "THEN TRY_CAST(trim({c}, ' ') AS INTEGER) END"
)

CORRECT = """
WITH p AS (SELECT customer_id, SUM(quantity * unit_price) AS spent
           FROM purchases WHERE customer_id IS NOT NULL GROUP BY customer_id),
     r AS (SELECT {cid} AS cid, SUM(CASE WHEN positive_review THEN 1 ELSE 0 END) AS score,
                  COUNT(*) AS cnt
           FROM classified WHERE insert_date = DATE '{d}' GROUP BY 1)
SELECT p.customer_id AS customerid, CAST(p.spent AS DECIMAL(18,5)) AS amount_spent,
       r.score AS review_score, r.cnt AS review_count, DATE '{d}' AS insert_date
FROM p JOIN r ON p.customer_id = r.cid
"""

SEED = """
SELECT ups.customer_id AS customerid, CAST(SUM(ups.quantity * ups.unit_price) AS DECIMAL(18,5)),
       SUM(CASE WHEN mrcs.positive_review THEN 1 ELSE 0 END), COUNT(mrcs.cid), DATE '{d}'
FROM purchases ups JOIN classified mrcs ON ups.customer_id = {cid}
WHERE mrcs.insert_date = DATE '{d}' GROUP BY ups.customer_id
"""


def rows(con, sql):
    return sorted(
        ([None if v is None else str(v) for v in row] for row in con.execute(sql).fetchall()),
        key=lambda r: int(r[0]),
    )


def main(lake, date, semantics):
    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW purchases AS SELECT * FROM read_parquet('{lake}/stage/user_purchase/insert_date={date}/*.parquet')"
    )
    con.execute(
        "CREATE VIEW classified AS SELECT * FROM read_parquet("
        f"'{lake}/stage/movie_review/*/*.parquet', hive_partitioning = true, "
        "hive_types = {'insert_date': DATE})"
    )
    if semantics == "correct":
        sql = CORRECT.format(d=date, cid=CID_AS_INTEGER.format(c="cid"))
    else:
        sql = SEED.format(d=date, cid=CID_AS_INTEGER.format(c="mrcs.cid"))
    ours = rows(
        con,
        "SELECT customerid, amount_spent, review_score, review_count, insert_date FROM read_parquet("
        f"'{lake}/warehouse/user_behavior_metric/*/*.parquet', hive_partitioning = true, "
        f"hive_types = {{'insert_date': DATE}}) WHERE insert_date = DATE '{date}'",
    )
    # How the day's reviews matched customers, as the run report counts them: ids that are no
    # integer, and integer ids of no customer with a purchase.
    cids = f"SELECT {CID_AS_INTEGER.format(c='cid')} AS cid FROM classified WHERE insert_date = DATE '{date}'"
    invalid, no_customer = con.execute(
        "SELECT count(*) FILTER (WHERE cid IS NULL), count(*) FILTER (WHERE cid IS NOT NULL AND cid NOT IN "
        f"(SELECT customer_id FROM purchases WHERE customer_id IS NOT NULL)) FROM ({cids})"
    ).fetchone()
    print(json.dumps({"duckdb": rows(con, sql), "ubm": ours, "matches": {"invalid_cid": invalid, "no_customer": no_customer}}))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("correct", "seed"):
        sys.exit("usage: duckdb_metric.py LAKE DATE correct|seed")
    main(*sys.argv[1:])
