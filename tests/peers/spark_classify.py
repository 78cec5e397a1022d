"""The original PySpark review classifier (docs/classifier.md), run as a peer.

Usage: spark_classify.py INPUT.csv OUTPUT.jsonl [INPUT.csv OUTPUT.jsonl ...]

For each input it runs the original job's transformations and writes one JSON array
`[cid, positive_review]` per row, in file order (a multiLine CSV is read as one partition,
so the collected order is the file's order). Two deliberate, documented differences from the
tutorial's script, both about reading the file, not classifying it:
- the CSV is read as RFC 4180 (`multiLine=true, escape='"'`), as ubm does; Spark's defaults
  break quoted line breaks and doubled quotes;
- a null review_str is replaced by "" before the Tokenizer, which would otherwise throw a
  NullPointerException and fail the whole job; "" has no `good` token, which is exactly
  ubm's rule for null reviews (classified false, counted).
"""
import json
import sys

from pyspark.ml.feature import StopWordsRemover, Tokenizer
from pyspark.sql import SparkSession
from pyspark.sql.functions import array_contains


def classify(spark, input_loc, output_loc):
    df_raw = (
        spark.read.option("header", True)
        .option("multiLine", True)
        .option("escape", '"')
        .csv(input_loc)
    )
    df_raw = df_raw.fillna("", subset=["review_str"])
    tokenizer = Tokenizer(inputCol="review_str", outputCol="review_token")
    df_tokens = tokenizer.transform(df_raw).select("cid", "review_token")
    remover = StopWordsRemover(inputCol="review_token", outputCol="review_clean")
    df_clean = remover.transform(df_tokens).select("cid", "review_clean")
    df_out = df_clean.select(
        "cid", array_contains(df_clean.review_clean, "good").alias("positive_review")
    )
    with open(output_loc, "w", encoding="utf-8") as out:
        for row in df_out.toLocalIterator():
            out.write(json.dumps([row.cid, row.positive_review], ensure_ascii=False) + "\n")


def main(args):
    if len(args) < 2 or len(args) % 2:
        sys.exit("usage: spark_classify.py INPUT.csv OUTPUT.jsonl [INPUT.csv OUTPUT.jsonl ...]")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("ubm-spark-peer")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for input_loc, output_loc in zip(args[0::2], args[1::2]):
        classify(spark, input_loc, output_loc)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
