"""The daily job in Spark (local[2]), for the benchmark suite: the original PySpark classifier,
then the metric join (correct semantics) in Spark SQL.

Usage: spark_job.py REVIEWS.csv PURCHASES.csv DATE OUT_DIR

- classify: the tutorial's transformations (Tokenizer, StopWordsRemover, array_contains) on the
  review CSV read as RFC 4180 (multiLine, escape '"'; a null review becomes "", as in
  tests/peers/spark_classify.py) -> OUT_DIR/classified (Parquet: cid, positive_review);
- metric: the contract's correct-semantics SQL over OUT_DIR/classified and the purchases CSV
  (as-of DATE) -> OUT_DIR/metric (Parquet).
Prints {"classify_s": …, "metric_s": …, "jvm_peak_rss_mb": …} on stdout: the wall time of each
phase inside Spark (the JVM's start-up is in the process's time only) and the JVM's peak memory.
"""
import json
import sys
import time

from pyspark.ml.feature import StopWordsRemover, Tokenizer
from pyspark.sql import SparkSession
from pyspark.sql.functions import array_contains

PURCHASES_SCHEMA = (
    "invoice_number STRING, stock_code STRING, detail STRING, quantity INT, invoice_date TIMESTAMP, "
    "unit_price DECIMAL(8,3), customer_id INT, country STRING"
)

METRIC = """
WITH p AS (SELECT customer_id, SUM(quantity * unit_price) AS spent
           FROM purchases WHERE customer_id IS NOT NULL AND invoice_date < DATE '{date}' + INTERVAL 1 DAY
           GROUP BY customer_id),
     r AS (SELECT CASE WHEN trim(BOTH ' ' FROM cid) RLIKE '^[+-]?[0-9]+$'
                       THEN try_cast(trim(BOTH ' ' FROM cid) AS INT) END AS cid,
                  SUM(CASE WHEN positive_review THEN 1 ELSE 0 END) AS score, COUNT(*) AS cnt
           FROM classified GROUP BY 1)
SELECT p.customer_id AS customerid, CAST(p.spent AS DECIMAL(18,5)) AS amount_spent,
       CAST(r.score AS INT) AS review_score, CAST(r.cnt AS INT) AS review_count
FROM p JOIN r ON p.customer_id = r.cid
"""


def main(reviews, purchases, date, out):
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("ubm-bench-spark")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    raw = spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(reviews)
    raw = raw.fillna("", subset=["review_str"])
    tokens = Tokenizer(inputCol="review_str", outputCol="review_token").transform(raw).select("cid", "review_token")
    clean = StopWordsRemover(inputCol="review_token", outputCol="review_clean").transform(tokens)
    classified = clean.select("cid", array_contains(clean.review_clean, "good").alias("positive_review"))
    classified.write.mode("overwrite").parquet(f"{out}/classified")
    after_classify = time.perf_counter()
    spark.read.parquet(f"{out}/classified").createOrReplaceTempView("classified")
    spark.read.option("header", True).option("multiLine", True).option("escape", '"').schema(PURCHASES_SCHEMA).csv(
        purchases
    ).createOrReplaceTempView("purchases")
    spark.sql(METRIC.format(date=date)).write.mode("overwrite").parquet(f"{out}/metric")
    done = time.perf_counter()
    jvm_rss_mb = jvm_peak_rss_mb(spark)
    spark.stop()
    print(json.dumps({"classify_s": after_classify - start, "metric_s": done - after_classify, "jvm_peak_rss_mb": jvm_rss_mb}))


def jvm_peak_rss_mb(spark):
    """The JVM's peak RSS (VmHWM): Spark's work happens there, in a process of its own that
    this Python process starts and the benchmark's own measurement does not see."""
    try:
        pid = spark.sparkContext._gateway.proc.pid
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except (AttributeError, OSError):
        pass
    return None


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
