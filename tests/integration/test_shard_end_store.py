"""The shard-end store on real S3 emulators: each end is created once, by a conditional put."""

from __future__ import annotations

import uuid

import pytest

from news_etl.kinesis import ShardEnd, ShardEndStore

pytestmark = pytest.mark.integration


def end(last: str, records: int) -> ShardEnd:
    return ShardEnd(last_sequence_number=last, records=records, finished=False, caught_up=True, millis_behind_latest=0)


def test_on_s3_a_recorded_end_is_kept_and_returned_to_a_later_attempt(emulator, monkeypatch):
    """Two puts of one batch and shard on S3 (moto and LocalStack honour If-None-Match): the first
    stays, and the second is answered with it."""
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"ends-{uuid.uuid4().hex[:12]}"
    emulator.client("s3").create_bucket(Bucket=bucket)
    store = ShardEndStore(f"s3://{bucket}/checkpoint/kinesis-shard-ends")
    first, later = end("1001", 2), end("1009", 9)
    assert store.put(0, "shardId-000000000000", first) == first
    assert store.put(0, "shardId-000000000000", later) == first
    assert store.load(0) == {"shardId-000000000000": first}
    keys = [o["Key"] for o in emulator.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["checkpoint/kinesis-shard-ends/000000000000/shardId-000000000000.json"]
