"""The naive baseline: how Kinesis-to-Parquet with Spark is often first written.

One loop on the driver polls the shards one after another with boto3; each GetRecords answer
becomes a DataFrame (``spark.createDataFrame`` of parsed dicts, unparseable records skipped), a
Python UDF counts words, and the batch is appended to local Parquet. No dedup, no quarantine, no
checkpoint, no S3. Prints one JSON line: records read and seconds from the first call.

    python bench/naive.py STREAM OUTPUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time

import boto3
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

SCHEMA = "article_id string, title string, content string, author string, published_at string"


def count_words(text: str | None) -> int:
    return len(text.split()) if text else 0


def parse(data: bytes) -> dict | None:
    try:
        article = json.loads(data)
    except ValueError:
        return None
    if not isinstance(article, dict):
        return None
    return {key: article.get(key) if isinstance(article.get(key), str) else None
            for key in ("article_id", "title", "content", "author", "published_at")}  # fmt: skip


def main(stream: str, output: str) -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    word_count = F.udf(count_words, "int")
    client = boto3.client("kinesis", region_name=os.environ.get("AWS_REGION", "us-east-1"))
    started, count = time.perf_counter(), 0
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            records = response["Records"]
            if not records and response.get("MillisBehindLatest", 0) == 0:
                break
            count += len(records)
            rows = [row for row in (parse(r["Data"]) for r in records) if row]
            if rows:
                frame = spark.createDataFrame(rows, SCHEMA).withColumn("word_count", word_count("content"))
                frame.write.mode("append").parquet(output)
            iterator = response.get("NextShardIterator")
    print(json.dumps({"records": count, "seconds": time.perf_counter() - started}))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
