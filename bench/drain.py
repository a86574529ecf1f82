"""The raw drain: the most records a second this machine's endpoint hands one reader.

One thread per shard, boto3 GetRecords of 10,000 from TRIM_HORIZON until the shard's tip
(an empty answer at ``MillisBehindLatest == 0``), payloads counted and discarded. Prints one
JSON line: records and the seconds from the first call to the last.

    python bench/drain.py STREAM
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def drain_shard(client, stream: str, shard_id: str) -> int:
    iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    count = 0
    while iterator:
        response = client.get_records(ShardIterator=iterator, Limit=10_000)
        count += len(response["Records"])
        if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
            break
        iterator = response.get("NextShardIterator")
    return count


def main(stream: str) -> None:
    config = Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=64)
    client = boto3.client("kinesis", region_name=os.environ.get("AWS_REGION", "us-east-1"), config=config)
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(shards)) as pool:
        count = sum(pool.map(lambda shard: drain_shard(client, stream, shard), shards))
    print(json.dumps({"records": count, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(sys.argv[1])
