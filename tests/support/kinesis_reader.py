"""Reads a whole Kinesis stream back with plain boto3, for assertions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

MAX_EMPTY_POLLS = 3


@dataclass(frozen=True)
class StreamRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival_time: datetime


def read_stream(client, stream: str) -> list[StreamRecord]:
    """Every record in ``stream``, shard by shard, in sequence order within each shard."""
    records: list[StreamRecord] = []
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        empty_polls = 0
        while iterator and empty_polls < MAX_EMPTY_POLLS:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend(
                StreamRecord(
                    shard["ShardId"],
                    r["SequenceNumber"],
                    r["PartitionKey"],
                    r["Data"],
                    r["ApproximateArrivalTimestamp"],
                )
                for r in response["Records"]
            )
            caught_up = response.get("MillisBehindLatest", 0) == 0
            empty_polls = empty_polls + 1 if not response["Records"] and caught_up else 0
            iterator = response.get("NextShardIterator")
    return records
