"""Offsets and input partitions: plain JSON dicts that Structured Streaming checkpoints.

An offset names the micro-batch number, its cut-off time (``until``: records that arrive later
are left for the next batch), the most records and payload bytes a shard may give it, and for every known shard
where that batch starts reading (``after`` a sequence number, ``at_timestamp``, or at the trim
horizon when neither is set), the shard's ``parents``, and whether it was read to its end
(``done``). A child shard is read only once all its parents are done, so the records of one
partition key stay in order across a split or a merge.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.datasource import InputPartition

from news_etl.kinesis.options import parse_timestamp
from news_etl.kinesis.shard_ends import ShardEnd


def iterator_args(position: dict) -> dict:
    """GetShardIterator arguments that start reading at ``position``."""
    if "after" in position:
        return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": position["after"]}
    if "at_timestamp" in position:
        return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": parse_timestamp(position["at_timestamp"])}
    return {"ShardIteratorType": "TRIM_HORIZON"}


def readable_shards(shards: dict[str, dict]) -> list[str]:
    """Shards to read now: not finished, and every known parent finished (parents first)."""
    return [
        shard_id
        for shard_id, state in sorted(shards.items())
        if not state.get("done") and all(shards.get(p, {"done": True}).get("done") for p in state.get("parents", []))
    ]


def positions_after(shards: dict[str, dict], previous: dict[str, ShardEnd]) -> dict[str, dict]:
    """Where the next batch starts: after what the previous batch recorded for each shard."""
    shards = {shard_id: dict(state) for shard_id, state in shards.items()}
    for shard_id, end in previous.items():
        if end.last_sequence_number:
            shards[shard_id] = {**shards[shard_id], "after": end.last_sequence_number}
            shards[shard_id].pop("at_timestamp", None)
        if end.finished:
            shards[shard_id]["done"] = True
    return shards


@dataclass(frozen=True, kw_only=True)
class ShardPartition(InputPartition):
    """One shard of one micro-batch: where to start, how much at most, until when."""

    stream: str
    shard_id: str
    batch: int
    position: dict  # "after" or "at_timestamp", or neither: the trim horizon
    max_records: int  # 0: no limit
    max_bytes: int = 0  # payload bytes at most, but at least one record; 0: no limit
    until: str | None  # the batch's cut-off: records that arrived later are left for the next batch
    metadata_path: str
    fail_on_trimmed: bool = False
    decoder: str = ""
