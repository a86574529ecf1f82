"""``python -m news_populate`` end to end against real moto and LocalStack processes."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from tests.support.contract import contract_violation, is_full_article
from tests.support.emulators import start_localstack
from tests.support.jobs import POPULATE_MODULE, UNTIL, run_module
from tests.support.kinesis_reader import read_stream

pytestmark = pytest.mark.integration

SUMMARY = re.compile(
    r"accepted (?P<accepted>\d+)/(?P<count>\d+) records into \S+ \((?P<valid>\d+) valid, "
    r"(?P<invalid>\d+) invalid, (?P<duplicates>\d+) duplicates\), failed (?P<failed>\d+), retried (?P<retried>\d+)"
)


def populate(emulator, stream, *args, timeout=300):
    result = run_module(POPULATE_MODULE, ["--stream", stream, "--until", UNTIL, *args], emulator, timeout=timeout)
    assert result.returncode == 0, result.stderr
    summary = SUMMARY.search(result.stdout)
    assert summary, result.stdout
    return {key: int(value) for key, value in summary.groupdict().items()}


def test_puts_exactly_count_records_with_the_requested_mix(emulator, stream_name):
    """1,000 records land on a new 2-shard stream: 10% invalid, 5% duplicates, the rest full articles."""
    summary = populate(emulator, stream_name, "--shards", "2", "--count", "1000", "--seed", "3",
                       "--bad-ratio", "0.1", "--dup-ratio", "0.05")  # fmt: skip
    kinesis = emulator.client("kinesis")
    stream = read_stream(kinesis, stream_name)

    assert len(stream) == 1000
    assert summary == {"accepted": 1000, "count": 1000, "failed": 0, "retried": 0,
                       "valid": 850, "invalid": 100, "duplicates": 50}  # fmt: skip
    assert len(kinesis.list_shards(StreamName=stream_name)["Shards"]) == 2
    assert len({r.shard_id for r in stream}) == 2

    violations = [contract_violation(r.data) for r in stream]
    assert sum(v is not None for v in violations) == 100
    valid = [json.loads(r.data) for r, v in zip(stream, violations, strict=True) if v is None]
    assert all(is_full_article(a) for a in valid)
    repeats = Counter(a["article_id"] for a in valid)
    assert sum(n - 1 for n in repeats.values()) == 50
    valid_records = [r for r, v in zip(stream, violations, strict=True) if v is None]
    assert all(r.partition_key == json.loads(r.data)["article_id"] for r in valid_records)


def test_same_seed_reproduces_the_same_bytes(emulator, stream_name):
    """Two runs with seed 3 into two streams carry identical payloads and partition keys."""
    args = ("--count", "300", "--seed", "3", "--bad-ratio", "0.1", "--dup-ratio", "0.1")
    populate(emulator, stream_name + "-a", *args)
    populate(emulator, stream_name + "-b", *args)
    kinesis = emulator.client("kinesis")
    first, second = read_stream(kinesis, stream_name + "-a"), read_stream(kinesis, stream_name + "-b")
    assert len(first) == 300
    assert sorted((r.partition_key, r.data) for r in first) == sorted((r.partition_key, r.data) for r in second)


def test_existing_stream_is_used_as_it_is(emulator, stream_name):
    """--shards only applies to a stream that does not exist: a 3-shard stream keeps its 3 shards."""
    kinesis = emulator.client("kinesis")
    kinesis.create_stream(StreamName=stream_name, ShardCount=3)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    populate(emulator, stream_name, "--shards", "1", "--count", "200", "--seed", "5")
    assert len(kinesis.list_shards(StreamName=stream_name)["Shards"]) == 3
    assert len(read_stream(kinesis, stream_name)) == 200


@pytest.mark.localstack
def test_throttled_entries_are_retried_until_all_are_accepted(emulator_logs, stream_name):
    """With LocalStack rejecting 20% of PutRecords calls whole, every record still lands exactly once."""
    flaky = start_localstack(emulator_logs, {"KINESIS_ERROR_PROBABILITY": "0.2"})
    # LocalStack rejects all entries of a call with that probability: --rate 100 means batches of
    # 25, so 60 calls, and the chance that none is rejected is 0.8**60, about 2e-6.
    try:
        summary = populate(flaky, stream_name, "--count", "1500", "--seed", "7", "--rate", "100")
        stream = read_stream(flaky.client("kinesis", config=_patient()), stream_name)
    finally:
        flaky.stop()
    assert summary["accepted"] == 1500 and summary["retried"] > 0
    assert len(stream) == 1500
    assert len({r.data for r in stream}) == 1500


def _patient():
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": 20})
