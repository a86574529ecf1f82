"""Reads a whole Kinesis stream back with plain boto3, for assertions.

``read_stream`` returns the Kinesis records as GetRecords gives them; ``deaggregated`` turns
them into what the job must account for one by one: a plain record as it is, a KPL aggregate
as its user records (decoded by tests/support/kpl.py, not by the job's code), and a corrupt
aggregate as one record with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from tests.support import kpl

MAX_EMPTY_POLLS = 3


@dataclass(frozen=True)
class StreamRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival_time: datetime
    sub_sequence_number: int | None = None  # a user record's index in its KPL aggregate; None: a plain record
    aggregate_error: str | None = None  # why a record that starts with KPL's magic bytes is no aggregate

    @property
    def place(self) -> tuple[str, str, int | None]:
        """Where the record is in the stream, as the job's output names it."""
        return self.shard_id, self.sequence_number, self.sub_sequence_number


def read_stream(client, stream: str) -> list[StreamRecord]:
    """Every Kinesis record in ``stream``, shard by shard, in sequence order within each shard."""
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


def deaggregated(records: Iterable[StreamRecord]) -> list[StreamRecord]:
    """``records`` as the job's rows: a KPL aggregate's user records in order, each with its index
    and partition key; a corrupt aggregate whole, with ``aggregate_error``; a plain record as it is."""
    rows: list[StreamRecord] = []
    for record in records:
        if not kpl.is_aggregate(record.data):
            rows.append(record)
            continue
        user_records, error = kpl.decode(record.data)
        if error:
            rows.append(replace(record, aggregate_error=error))
        rows.extend(replace(record, partition_key=key, data=data, sub_sequence_number=index)
                    for index, (key, data) in enumerate(user_records))  # fmt: skip
    return rows
