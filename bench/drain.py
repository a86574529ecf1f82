"""The raw drain: the most records a second this machine's endpoint hands one reader.

One thread per shard, boto3 GetRecords of 10,000 from TRIM_HORIZON until the shard's tip
(an empty answer at ``MillisBehindLatest == 0``), payloads counted and discarded. Prints one
JSON line: records and the seconds from the first call to the last.

With ``--lean``, botocore's parser leaves blobs and timestamps as they came
(``ResponseParserFactory.set_parser_defaults`` with identity functions): no base64 decode, no
datetime. That is the least any boto3 consumer can spend on a record, the lean floor.

    python bench/drain.py STREAM [--lean]
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.session
from botocore.config import Config
from botocore.parsers import ResponseParserFactory


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


def lean_session() -> boto3.Session:
    """Clients whose parser hands blobs and timestamps back untouched."""
    parsers = ResponseParserFactory()
    parsers.set_parser_defaults(blob_parser=lambda value: value, timestamp_parser=lambda value: value)
    session = botocore.session.get_session()
    session.register_component("response_parser_factory", parsers)
    return boto3.Session(botocore_session=session)


def main(stream: str, lean: bool) -> None:
    config = Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=64)
    session = lean_session() if lean else boto3.Session()
    client = session.client("kinesis", region_name=os.environ.get("AWS_REGION", "us-east-1"), config=config)
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(shards)) as pool:
        count = sum(pool.map(lambda shard: drain_shard(client, stream, shard), shards))
    print(json.dumps({"records": count, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(sys.argv[1], lean="--lean" in sys.argv[2:])
