"""KPL aggregates end to end: ``populate --aggregate`` and hand-made aggregates through ``python -m
news_etl`` on moto, beside plain records, across batches and a crash. (Aggregates are payload bytes
to an emulator: nothing here depends on which one serves them.)

What the job must write is derived from the stream by the tests' own decoder (tests/support/kpl.py,
no protobuf) and the reference contract, as for plain records (tests/support/output.py).
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter

import pyarrow as pa
import pytest

from tests.support import kpl
from tests.support.contract import contract_violation
from tests.support.jobs import etl, kill_once_read, populate, start_etl, verify
from tests.support.kinesis_reader import StreamRecord, deaggregated, read_stream
from tests.support.output import assert_exactly_once, assert_metrics_match_output, judge, output, place

pytestmark = pytest.mark.integration

PER_AGGREGATE = 10
AGGREGATED = 300  # user records populate packs, PER_AGGREGATE to a Kinesis record
BATCH_READ = re.compile(r"^batch \d+: read (\d+),", re.MULTILINE)


@pytest.fixture
def emulator(moto):
    return moto


def new_article(title: str) -> bytes:
    return json.dumps({"article_id": str(uuid.uuid4()), "title": title, "content": "sent through a KPL producer",
                       "published_at": "2026-11-20T09:30:00Z"}).encode()  # fmt: skip


def first_valid(rows: list[StreamRecord], *, aggregated: bool) -> StreamRecord:
    return next(row for row in rows if (row.sub_sequence_number is not None) == aggregated
                and not contract_violation(row.data))  # fmt: skip


def resend_across_the_two(kinesis, stream: str, records: list[StreamRecord]) -> tuple[bytes, bytes, bytes]:
    """A plain article again inside an aggregate (with a new one after it), and an aggregated article
    again as a plain record, each on its first copy's shard (same partition key), so it comes later."""
    rows = deaggregated(records)
    plain, aggregated = first_valid(rows, aggregated=False), first_valid(rows, aggregated=True)
    outer = next(record for record in records if record.place[:2] == aggregated.place[:2])
    fresh = new_article("a new article after a re-sent one")
    kinesis.put_record(StreamName=stream, PartitionKey=plain.partition_key,
                       Data=kpl.aggregate([("again", plain.data), ("new", fresh)]))  # fmt: skip
    kinesis.put_record(StreamName=stream, PartitionKey=outer.partition_key, Data=aggregated.data)
    return plain.data, aggregated.data, fresh


# Corrupt aggregates populate does not make, each with the reason the job must give.
HAND_MADE_CORRUPT = {
    kpl.MAGIC + b"short": "KPL aggregate too short for its checksum",
    kpl.truncated_message(b"{}"): "KPL aggregate is not a valid protobuf AggregatedRecord",
    kpl.without_data(): "KPL aggregate has a user record without its partition key index or data",
    kpl.empty(): "KPL aggregate holds no user records",
}


def test_a_mixed_stream_of_plain_records_and_aggregates_is_written_exactly_once(emulator, stream_name, bucket,
                                                                                 tmp_path):  # fmt: skip
    """Plain records and KPL aggregates (bad user records, corrupt aggregates, an article sent both
    ways) over several batches: each article once with its sub_sequence_number, each bad user record
    quarantined on its own, each corrupt aggregate whole with its reason; metrics count user records."""
    populate(emulator, stream_name, "--shards", "2", "--count", "200", "--seed", "61", "--bad-ratio", "0.1",
             "--dup-ratio", "0.05")  # fmt: skip
    populate(emulator, stream_name, "--count", str(AGGREGATED), "--aggregate", str(PER_AGGREGATE), "--seed", "62",
             "--bad-ratio", "0.1")  # fmt: skip
    kinesis = emulator.client("kinesis")
    populated = read_stream(kinesis, stream_name)
    resent_plain, resent_aggregated, fresh = resend_across_the_two(kinesis, stream_name, populated)
    for data in HAND_MADE_CORRUPT:
        kinesis.put_record(StreamName=stream_name, PartitionKey=f"corrupt-{len(data)}", Data=data)
    records = read_stream(kinesis, stream_name)
    rows = deaggregated(records)
    articles, invalid = judge(rows)
    corrupt = {(r.shard_id, r.sequence_number): r for r in rows if r.aggregate_error}
    assert len(records) == len(populated) + 2 + len(HAND_MADE_CORRUPT)
    assert len(corrupt) == int(AGGREGATED // PER_AGGREGATE * 0.1) + len(HAND_MADE_CORRUPT)  # populate's, and ours

    checkpoint, metrics_path = tmp_path / "checkpoint", tmp_path / "metrics.json"
    run = etl(emulator, stream_name, bucket, checkpoint, "--once", "--max-records-per-batch", "50",
              "--metrics-json", str(metrics_path), "--max-quarantine-ratio", "0.05")  # fmt: skip
    assert run.returncode == 3, run.stderr  # the quarantine gate fails the run after writing it all
    # The job counts what it read in rows: a KPL aggregate's user records one by one, a corrupt one as one.
    share = f"{len(invalid) / len(rows):.1%}"
    assert f"etl: error: quarantined {len(invalid)} of the {len(rows)} records this run read ({share})" in run.stderr
    reads = [int(n) for n in BATCH_READ.findall(run.stdout)]
    assert len(reads) >= 4 and sum(reads) == len(rows) > len(records)
    assert_exactly_once(emulator, stream_name, bucket, records)
    metrics = assert_metrics_match_output(emulator, bucket, metrics_path)
    duplicates = len(rows) - len(articles) - len(invalid)
    assert (metrics["records_read"], metrics["enriched"], metrics["quarantined"], metrics["duplicates_dropped"]) == (
        len(rows), len(articles), len(invalid), duplicates)  # fmt: skip
    assert verify(emulator, checkpoint).returncode == 0

    aggregate_sizes = Counter((r.shard_id, r.sequence_number) for r in rows if r.sub_sequence_number is not None)
    enriched = output(emulator, bucket, "enriched")
    assert enriched.schema.field("sub_sequence_number").type == pa.int64()
    by_origin: dict[bool, set] = {True: set(), False: set()}
    for row in enriched.to_pylist():
        size = aggregate_sizes.get((row["shard_id"], row["sequence_number"]))
        assert row["sub_sequence_number"] is None if size is None else 0 <= row["sub_sequence_number"] < size
        by_origin[size is not None].add(row["sub_sequence_number"])
    assert by_origin == {True: set(range(PER_AGGREGATE)), False: {None}}
    written = Counter(row["article_id"] for row in enriched.to_pylist())
    assert [written[json.loads(data)["article_id"]] for data in (resent_plain, resent_aggregated, fresh)] == [1, 1, 1]
    assert duplicates == 10 + 2  # populate's --dup-ratio 0.05 of 200, and the two sent both ways

    quarantine = output(emulator, bucket, "quarantine")
    assert quarantine.schema.field("sub_sequence_number").type == pa.int64()
    data_at = {row.place: row.data for row in rows}
    quarantined = quarantine.to_pylist()
    assert all(row["raw_data"] == data_at[place(row)] for row in quarantined)
    wholes = [row for row in quarantined if (row["shard_id"], row["sequence_number"]) in corrupt]
    assert sorted((row["raw_data"], row["error"], row["sub_sequence_number"]) for row in wholes) == sorted(
        (record.data, record.aggregate_error, None) for record in corrupt.values())  # fmt: skip
    assert set(HAND_MADE_CORRUPT.items()) <= {(row["raw_data"], row["error"]) for row in wholes}
    assert any(row["sub_sequence_number"] is not None for row in quarantined), "no bad user record in an aggregate"


def test_a_job_killed_mid_stream_of_aggregates_and_rerun_writes_each_article_once(emulator, stream_name, bucket,
                                                                                  tmp_path):  # fmt: skip
    """SIGKILL once batch 2 has read its aggregates, before it commits, then a rerun on the same
    checkpoint: batch 2 replays those aggregates whole, and every user record is accounted for once."""
    populate(emulator, stream_name, "--shards", "2", "--count", "600", "--aggregate", str(PER_AGGREGATE),
             "--seed", "63", "--bad-ratio", "0.05")  # fmt: skip
    records = read_stream(emulator.client("kinesis"), stream_name)
    rows = deaggregated(records)
    checkpoint, metrics_path = tmp_path / "checkpoint", tmp_path / "metrics.json"
    flags = ("--once", "--max-records-per-batch", "12", "--metrics-json", str(metrics_path))
    job = start_etl(emulator, stream_name, bucket, checkpoint, *flags)
    kill_once_read(job, checkpoint, batch=2, shards=2)
    state = json.loads((checkpoint / "etl-state.json").read_text())
    assert state["last_batch_id"] == 1 and state["records_read"] < len(rows), "the kill did not land in batch 2"
    ends = [
        json.loads(path.read_text())
        for path in (checkpoint / "kinesis-shard-ends" / f"{2:012d}").glob("shardId-*.json")
    ]
    recorded = sum(end["rows"] for end in ends)
    assert recorded > sum(end["records"] for end in ends)  # user records, more than the aggregates holding them

    restart = etl(emulator, stream_name, bucket, checkpoint, *flags)
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.startswith(f"batch 2: read {recorded},")  # batch 2 again, to the ends the kill left
    assert_exactly_once(emulator, stream_name, bucket, records)
    metrics = assert_metrics_match_output(emulator, bucket, metrics_path)
    assert metrics["records_read"] == len(rows) == 600 - 3 * PER_AGGREGATE + 3  # 3 corrupt aggregates, one row each
    assert verify(emulator, checkpoint).returncode == 0
