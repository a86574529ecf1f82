"""The Kinesis data source without a network: positions, shard ends, replay, resharding, options."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from news_etl.cli.job import parse_settings
from news_etl.kinesis import (
    KinesisDataSource,
    KinesisStreamReader,
    ReaderOptions,
    ShardEnd,
    ShardEndStore,
    TrimmedGap,
    TrimmedRecordsError,
)
from news_etl.kinesis import (
    source as planner,
)
from news_etl.kinesis.offsets import ShardPartition, iterator_args, readable_shards
from news_etl.kinesis.reader import ShardEndConflictError, ShardReader, read_shard
from tests.support import kpl

STREAM = "news"
SHARD = "shardId-000000000000"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
BEHIND = 60_000  # MillisBehindLatest the stub reports while records remain after the iterator


class ExpiredIteratorError(Exception):
    """What the stub raises where Kinesis raises ExpiredIteratorException."""


class InvalidArgumentError(Exception):
    """What the stub raises where Kinesis raises InvalidArgumentException."""


class StubKinesis:
    """An in-memory Kinesis: the calls the data source makes, served from per-shard record lists.

    Sequence numbers come from one counter that crosses a digit boundary (998, 999, 1000, ...),
    so code comparing them as strings instead of numbers would go wrong.
    """

    def __init__(self, page: int | None = None) -> None:
        self.page = page  # most records one GetRecords returns, whatever the Limit (as Kinesis may)
        self.records: dict[str, list[dict]] = {}
        self.parents: dict[str, list[str]] = {}
        self.closed: set[str] = set()
        self.expire_on_calls: set[int] = set()  # get_records call numbers (1-based) that raise
        self.trimmed: set[str] = set()  # sequence numbers removed by retention
        self.refuse_trimmed = False  # GetShardIterator on a trimmed number: error (True) or the oldest record
        self.get_records_calls = 0
        self.iterator_requests: list[dict] = []
        self._sequence = itertools.count(998)
        self._iterators: dict[str, tuple[str, int]] = {}
        self.exceptions = SimpleNamespace(
            ExpiredIteratorException=ExpiredIteratorError, InvalidArgumentException=InvalidArgumentError
        )

    def add_shard(self, shard_id: str, parents: tuple[str, ...] = ()) -> None:
        self.records[shard_id] = []
        self.parents[shard_id] = list(parents)

    def put(self, shard_id: str, count: int, arrival: datetime | None = None, data: list[bytes] = ()) -> list[str]:
        """Append ``count`` records, one second apart after ``arrival`` (default: after the last one),
        holding ``data`` (default: a small JSON object each)."""
        records = self.records[shard_id]
        start = arrival or (records[-1]["ApproximateArrivalTimestamp"] + timedelta(seconds=1) if records else T0)
        added = []
        for i in range(count):
            sequence = str(next(self._sequence))
            records.append(
                {
                    "SequenceNumber": sequence,
                    "PartitionKey": f"key-{sequence}",
                    "Data": data[i] if data else f'{{"n": {sequence}}}'.encode(),
                    "ApproximateArrivalTimestamp": start + timedelta(seconds=i),
                }
            )
            added.append(sequence)
        return added

    def trim(self, shard_id: str, count: int) -> list[str]:
        """Remove the oldest ``count`` records, as retention does."""
        gone, self.records[shard_id][:count] = self.records[shard_id][:count], []
        self.trimmed |= {r["SequenceNumber"] for r in gone}
        return [r["SequenceNumber"] for r in gone]

    def _start_index(self, records: list[dict], kind: str, sequence: str | None, timestamp: datetime | None) -> int:
        if kind == "TRIM_HORIZON":
            return 0
        if sequence in self.trimmed:
            if self.refuse_trimmed:
                raise InvalidArgumentError(f"StartingSequenceNumber {sequence} used in GetShardIterator is invalid")
            return 0
        if kind == "AT_SEQUENCE_NUMBER":
            return sum(1 for r in records if int(r["SequenceNumber"]) < int(sequence))
        if kind == "AFTER_SEQUENCE_NUMBER":
            return sum(1 for r in records if int(r["SequenceNumber"]) <= int(sequence))
        if kind == "AT_TIMESTAMP":
            return sum(1 for r in records if r["ApproximateArrivalTimestamp"] < timestamp)
        raise AssertionError(f"unexpected ShardIteratorType {kind}")

    # The API methods take boto3's keyword arguments (CamelCase, as the AWS API names them).
    def get_shard_iterator(self, **request) -> dict:
        assert request["StreamName"] == STREAM
        shard_id, kind, after = request["ShardId"], request["ShardIteratorType"], request.get("StartingSequenceNumber")
        self.iterator_requests.append({"ShardId": shard_id, "Type": kind, "After": after})
        index = self._start_index(self.records[shard_id], kind, after, request.get("Timestamp"))
        return {"ShardIterator": self._iterator(shard_id, index)}

    def _iterator(self, shard_id: str, index: int) -> str:
        token = f"{shard_id}/{index}/{len(self._iterators)}"
        self._iterators[token] = (shard_id, index)
        return token

    def get_records(self, **request) -> dict:
        limit = request["Limit"]
        assert 1 <= limit <= 10_000, f"GetRecords Limit {limit} is outside 1..10000"
        self.get_records_calls += 1
        if self.get_records_calls in self.expire_on_calls:
            raise ExpiredIteratorError("Iterator expired")
        shard_id, index = self._iterators[request["ShardIterator"]]
        records = self.records[shard_id]
        served = records[index : index + min(limit, self.page or limit)]
        after = index + len(served)
        at_tip = after >= len(records)
        return {
            "Records": [dict(r) for r in served],
            "NextShardIterator": None if at_tip and shard_id in self.closed else self._iterator(shard_id, after),
            "MillisBehindLatest": 0 if at_tip else BEHIND,
        }

    def list_shards(self, **request) -> dict:
        assert request == {"StreamName": STREAM}
        shards = []
        for shard_id, parents in self.parents.items():
            shard = {"ShardId": shard_id}
            shard.update(dict(zip(("ParentShardId", "AdjacentParentShardId"), parents, strict=False)))
            shards.append(shard)
        return {"Shards": shards}


@pytest.fixture
def kinesis() -> StubKinesis:
    client = StubKinesis()
    client.add_shard(SHARD)
    return client


@pytest.fixture
def store(tmp_path) -> ShardEndStore:
    return ShardEndStore(str(tmp_path / "shard-ends"))


def partition(batch=0, position=None, max_records=0, until=None, shard_id=SHARD, metadata_path="unused", max_bytes=0):
    return ShardPartition(stream=STREAM, shard_id=shard_id, batch=batch, position=position or {}, until=until,
                          max_records=max_records, max_bytes=max_bytes, metadata_path=metadata_path)  # fmt: skip


def read(client, part: ShardPartition, store: ShardEndStore) -> list[str]:
    """The sequence numbers read_shard yields, in order."""
    return [s for batch in read_shard(client, part, store) for s in batch.column("sequence_number").to_pylist()]


# --- read_shard ----------------------------------------------------------------------------


def test_read_shard_starts_at_trim_horizon_and_stops_at_max_records(kinesis, store):
    """The first batch reads the oldest records up to max_records and records where it stopped."""
    sequences = kinesis.put(SHARD, 10)
    assert read(kinesis, partition(max_records=4), store) == sequences[:4]
    assert store.get(0, SHARD) == ShardEnd(
        last_sequence_number=sequences[3],
        records=4,
        rows=4,
        finished=False,
        caught_up=False,
        millis_behind_latest=BEHIND,
        executor="driver",
    )
    assert kinesis.iterator_requests[0]["Type"] == "TRIM_HORIZON"


def test_read_shard_yields_the_records_fields(kinesis, store):
    """Each yielded row carries the shard, sequence number, partition key, UTC arrival time and bytes."""
    kinesis.put(SHARD, 2)
    [batch] = list(read_shard(kinesis, partition(), store))
    assert batch.to_pylist()[0] == {
        "shard_id": SHARD,
        "sequence_number": "998",
        "sub_sequence_number": None,
        "partition_key": "key-998",
        "arrival_time": T0,
        "data": b'{"n": 998}',
        "aggregate_error": None,
    }


def test_next_batch_continues_right_after_the_recorded_end(kinesis, store):
    """Batch 1, starting after batch 0's recorded end, reads the rest: no gap and no repeat."""
    sequences = kinesis.put(SHARD, 10)
    first = read(kinesis, partition(batch=0, max_records=4), store)
    end = store.get(0, SHARD)
    second = read(kinesis, partition(batch=1, position={"after": end.last_sequence_number}), store)
    assert first + second == sequences
    assert store.get(1, SHARD) == ShardEnd(
        last_sequence_number=sequences[-1],
        records=6,
        rows=6,
        finished=False,
        caught_up=True,
        millis_behind_latest=0,
        executor="driver",
    )


@pytest.mark.parametrize(("max_records", "page"), [(0, None), (3, None), (3, 2), (0, 2)])
def test_replaying_a_batch_reads_the_same_records_after_more_arrived(kinesis, store, max_records, page):
    """A second read of batch N stops at the end the first one recorded, ignoring records added since."""
    kinesis.page = page
    kinesis.put(SHARD, 5)
    first = read(kinesis, partition(batch=0, max_records=max_records), store)
    recorded = store.get(0, SHARD)
    kinesis.put(SHARD, 4)
    again = read(kinesis, partition(batch=0, max_records=max_records), store)
    assert again == first
    assert len(first) == (max_records or 5)
    assert store.get(0, SHARD) == recorded


# --- KPL aggregates ------------------------------------------------------------------------


def aggregate_of(*keys: str) -> bytes:
    return kpl.aggregate([(key, f'{{"user": "{key}"}}'.encode()) for key in keys])


def test_an_aggregate_is_read_as_its_user_records_with_their_keys_and_sub_sequence_numbers(kinesis, store):
    """Each user record keeps its aggregate's sequence number and arrival, and gets its own key and index."""
    plain, aggregated = kinesis.put(SHARD, 1) + kinesis.put(SHARD, 1, data=[aggregate_of("a", "b", "a")])
    [batch] = list(read_shard(kinesis, partition(), store))
    rows = batch.to_pylist()
    assert [(r["sequence_number"], r["sub_sequence_number"], r["partition_key"], r["data"]) for r in rows] == [
        (plain, None, f"key-{plain}", f'{{"n": {plain}}}'.encode()),
        (aggregated, 0, "a", b'{"user": "a"}'),
        (aggregated, 1, "b", b'{"user": "b"}'),
        (aggregated, 2, "a", b'{"user": "a"}'),
    ]
    assert {r["arrival_time"] for r in rows[1:]} == {T0 + timedelta(seconds=1)}
    assert {r["aggregate_error"] for r in rows} == {None}
    assert store.get(0, SHARD).records == 2  # Kinesis records, as GetRecords counts them
    assert store.get(0, SHARD).rows == 4  # what the job counts as read: user records one by one


def test_a_shard_end_recorded_before_rows_were_counted_reads_one_row_per_record():
    """An end an earlier version recorded (no ``rows``) still replays and counts: one row a record."""
    earlier = (b'{"last_sequence_number": "7", "records": 3, "finished": false, "caught_up": true, '
               b'"millis_behind_latest": 0, "trimmed": null, "executor": "driver"}')  # fmt: skip
    assert ShardEnd.from_json(earlier).rows_read == 3
    assert ShardEnd.from_json(ShardEnd.from_json(earlier).to_json()).rows_read == 3


def test_a_batch_an_earlier_version_read_replays_its_aggregates_a_record_a_row(kinesis, store):
    """Its recorded end has no ``rows``: the replay yields what that version did, so the batch's
    rows match the count it recorded (de-aggregating would make more rows than it read)."""
    sequences = kinesis.put(SHARD, 2, data=[aggregate_of("a", "b"), b'{"plain": 1}'])
    earlier = ShardEnd(last_sequence_number=sequences[-1], records=2, finished=False, caught_up=True,
                       millis_behind_latest=0)  # fmt: skip
    store.put(0, SHARD, earlier)
    rows = [row for batch in read_shard(kinesis, partition(), store) for row in batch.to_pylist()]
    assert [(row["sequence_number"], row["sub_sequence_number"]) for row in rows] == [(s, None) for s in sequences]
    assert len(rows) == earlier.rows_read


def test_a_corrupt_aggregate_is_yielded_whole_with_the_reason(kinesis, store):
    """A record with the magic bytes that is not a valid aggregate is neither dropped nor read as plain."""
    corrupt = kpl.bad_checksum([("a", b"{}")])
    [sequence] = kinesis.put(SHARD, 1, data=[corrupt])
    [batch] = list(read_shard(kinesis, partition(), store))
    assert batch.to_pylist() == [
        {"shard_id": SHARD, "sequence_number": sequence, "sub_sequence_number": None,
         "partition_key": f"key-{sequence}", "arrival_time": T0, "data": corrupt,
         "aggregate_error": "KPL aggregate checksum mismatch"}
    ]  # fmt: skip


@pytest.mark.parametrize(("max_records", "page"), [(1, None), (2, None), (0, 1), (3, 2)])
def test_batch_limits_count_kinesis_records_so_no_batch_splits_an_aggregate(kinesis, store, max_records, page):
    """Batches cut between Kinesis records; each replays whole, and the next starts after the last aggregate."""
    kinesis.page = page
    kinesis.put(SHARD, 4, data=[aggregate_of(*[f"k{i}"] * 3) for i in range(4)])
    batches, position = [], {}
    for batch_id in range(5):
        rows = [row for b in read_shard(kinesis, partition(batch_id, position, max_records), store)
                for row in b.to_pylist()]  # fmt: skip
        assert [row["sequence_number"] for row in rows] == [
            row["sequence_number"] for b in read_shard(kinesis, partition(batch_id, position, max_records), store)
            for row in b.to_pylist()
        ]  # a replay reads the same rows  # fmt: skip
        end = store.get(batch_id, SHARD)
        batches.append([(row["sequence_number"], row["sub_sequence_number"]) for row in rows])
        position = {"after": end.last_sequence_number} if end.last_sequence_number else position
    read_rows = [row for batch in batches for row in batch]
    sequences = [record["SequenceNumber"] for record in kinesis.records[SHARD]]
    assert read_rows == [(sequence, sub) for sequence in sequences for sub in range(3)]
    assert all(len(batch) % 3 == 0 for batch in batches)


def test_of_two_racing_attempts_the_later_fails_and_a_retry_replays_the_first_recorded_end(kinesis, store):
    """Attempt A reads 4 records and pauses before recording its end (a zombie); attempt B reads 6,
    after more arrived, and records first. A fails rather than replace B's end; a retry reads B's 6."""
    sequences = kinesis.put(SHARD, 4)
    zombie = read_shard(kinesis, partition(), store)
    assert next(zombie).column("sequence_number").to_pylist() == sequences
    sequences += kinesis.put(SHARD, 2)
    assert read(kinesis, partition(), store) == sequences
    with pytest.raises(ShardEndConflictError, match=f"another attempt recorded 6 records up to {sequences[-1]}"):
        next(zombie)
    assert store.get(0, SHARD).records == 6
    kinesis.put(SHARD, 3)
    assert read(kinesis, partition(), store) == sequences


def test_an_attempt_that_read_what_was_recorded_succeeds(kinesis, store):
    """Two attempts that read the same records agree: the second one's put keeps the first end."""
    sequences = kinesis.put(SHARD, 3)
    first = read_shard(kinesis, partition(), store)
    assert next(first).num_rows == 3
    assert read(kinesis, partition(), store) == sequences  # this one recorded its end
    assert list(first) == []  # and the paused one finds the same end recorded


def test_a_recorded_end_is_never_replaced(store):
    """put creates the record only if absent, and answers with the one recorded."""
    first = ShardEnd(last_sequence_number="1001", records=2, finished=False, caught_up=True, millis_behind_latest=0)
    later = ShardEnd(last_sequence_number="1009", records=9, finished=False, caught_up=True, millis_behind_latest=0)
    assert store.put(3, SHARD, first) == first
    assert store.put(3, SHARD, later) == first
    assert store.load(3) == {SHARD: first}


def test_a_byte_budget_ends_the_batch_at_the_last_record_that_fits(kinesis, store):
    """Payloads of 10 bytes and a budget of 35: the batch reads 3, is not caught up, and the next one
    reads on from there."""
    sequences = kinesis.put(SHARD, 8)
    assert read(kinesis, partition(max_bytes=35), store) == sequences[:3]
    end = store.get(0, SHARD)
    assert (end.records, end.last_sequence_number, end.caught_up) == (3, sequences[2], False)
    rest = partition(batch=1, position={"after": end.last_sequence_number})
    assert read(kinesis, rest, store) == sequences[3:]


def test_a_record_larger_than_the_byte_budget_is_still_read_one_a_batch(kinesis, store):
    """A budget smaller than one payload: each batch reads one record, so the shard moves on."""
    sequences = kinesis.put(SHARD, 2)
    assert read(kinesis, partition(max_bytes=1), store) == sequences[:1]
    assert read(kinesis, partition(batch=1, position={"after": sequences[0]}, max_bytes=1), store) == sequences[1:]


def test_replaying_a_batch_that_read_nothing_yields_nothing(kinesis, store):
    """A batch whose first read found an empty shard stays empty on replay, even after records arrive."""
    assert read(kinesis, partition(), store) == []
    kinesis.put(SHARD, 3)
    assert read(kinesis, partition(), store) == []


@pytest.mark.parametrize("page", [None, 3])
def test_available_now_leaves_records_that_arrived_after_until(kinesis, store, page):
    """Records that arrived after ``until`` are not read, and the recorded end is the last one before it."""
    kinesis.page = page
    sequences = kinesis.put(SHARD, 6)  # arrivals T0, T0+1s, ... T0+5s
    until = (T0 + timedelta(seconds=2, milliseconds=500)).isoformat()
    assert read(kinesis, partition(until=until), store) == sequences[:3]
    end = store.get(0, SHARD)
    assert (end.last_sequence_number, end.records, end.finished, end.caught_up) == (sequences[2], 3, False, True)
    rest = read(kinesis, partition(batch=1, position={"after": sequences[2]}), store)
    assert rest == sequences[3:]


def test_closed_shard_read_to_its_end_is_finished(kinesis, store):
    """Reading a closed shard through its last record records finished=True."""
    sequences = kinesis.put(SHARD, 3)
    kinesis.closed.add(SHARD)
    assert read(kinesis, partition(), store) == sequences
    assert store.get(0, SHARD) == ShardEnd(
        last_sequence_number=sequences[-1],
        records=3,
        rows=3,
        finished=True,
        caught_up=False,
        millis_behind_latest=0,
        executor="driver",
    )


def test_closed_shard_not_read_to_its_end_is_not_finished(kinesis, store):
    """A closed shard cut short by max_records is not finished yet."""
    kinesis.put(SHARD, 3)
    kinesis.closed.add(SHARD)
    read(kinesis, partition(max_records=2), store)
    assert store.get(0, SHARD).finished is False


@pytest.mark.parametrize(
    ("expire_on_call", "resumed_type", "last_read"),
    [(1, "TRIM_HORIZON", None), (2, "AFTER_SEQUENCE_NUMBER", 1), (3, "AFTER_SEQUENCE_NUMBER", 3)],
    ids=["before-any-record", "after-one-page", "after-two-pages"],
)
def test_expired_iterator_resumes_after_the_last_record_read(kinesis, store, expire_on_call, resumed_type, last_read):
    """An ExpiredIteratorException mid-read is met with a fresh iterator; no record is lost or repeated."""
    kinesis.page = 2
    sequences = kinesis.put(SHARD, 7)
    kinesis.expire_on_calls = {expire_on_call}
    assert read(kinesis, partition(), store) == sequences
    assert store.get(0, SHARD).records == 7
    resumed = kinesis.iterator_requests[1]
    assert (resumed["Type"], resumed["After"]) == (resumed_type, None if last_read is None else sequences[last_read])


def test_at_timestamp_position_starts_at_the_first_record_arrived_then(kinesis, store):
    """A pinned start time reads from the first record that arrived at or after it."""
    sequences = kinesis.put(SHARD, 5)
    position = {"at_timestamp": (T0 + timedelta(seconds=2)).isoformat()}
    assert read(kinesis, partition(position=position), store) == sequences[2:]


@pytest.mark.parametrize("refuse_trimmed", [False, True], ids=["oldest-record", "invalid-argument"])
def test_records_trimmed_before_they_were_read_are_reported_once_where_reading_resumes(kinesis, store, refuse_trimmed):
    """Retention removed the last record read and the next two: the batch reads on from the oldest
    record left and records the gap; the batch after it reads on without a gap."""
    kinesis.refuse_trimmed = refuse_trimmed
    sequences = kinesis.put(SHARD, 6)
    assert read(kinesis, partition(batch=0, max_records=2), store) == sequences[:2]
    kinesis.trim(SHARD, 4)
    assert read(kinesis, partition(batch=1, position={"after": sequences[1]}), store) == sequences[4:]
    end = store.get(1, SHARD)
    assert end.records == 2
    assert end.trimmed == TrimmedGap(
        after=sequences[1], resumed_at=sequences[4], resumed_arrival=(T0 + timedelta(seconds=4)).isoformat()
    )
    more = kinesis.put(SHARD, 2)
    assert read(kinesis, partition(batch=2, position={"after": sequences[5]}), store) == more
    assert store.get(2, SHARD).trimmed is None


@pytest.mark.parametrize("refuse_trimmed", [False, True])
def test_a_replay_whose_records_were_trimmed_since_reads_what_is_left_and_records_the_gap(kinesis, store,
                                                                                          refuse_trimmed):  # fmt: skip
    """Batch 1 read 4 records, then (a crash, downtime) retention trimmed the last record batch 0 read
    and the first two of batch 1's: the replay yields the two left, records them with the gap, and the
    batch's end stays where the first read put it; with failOnTrimmed it stops instead."""
    kinesis.refuse_trimmed = refuse_trimmed
    sequences = kinesis.put(SHARD, 6)
    read(kinesis, partition(batch=0, max_records=2), store)
    assert read(kinesis, partition(batch=1, position={"after": sequences[1]}), store) == sequences[2:]
    first = store.get(1, SHARD)
    kinesis.trim(SHARD, 4)
    strict = replace(partition(batch=1, position={"after": sequences[1]}), fail_on_trimmed=True)
    with pytest.raises(TrimmedRecordsError, match="--fail-on-trimmed"):
        read(kinesis, strict, store)
    assert read(kinesis, partition(batch=1, position={"after": sequences[1]}), store) == sequences[4:]
    gap = TrimmedGap(
        after=sequences[1], resumed_at=sequences[4], resumed_arrival=(T0 + timedelta(seconds=4)).isoformat()
    )
    assert store.load(1) == {SHARD: replace(first, records=2, rows=2, trimmed=gap)}
    assert store.get(1, SHARD) == first  # the first read's end, which the next batch starts after


def test_a_gap_before_an_empty_shard_is_reported_by_the_batch_that_reads_past_it(kinesis, store):
    """Everything after the last read record was trimmed and nothing new arrived: the batch reads
    nothing and keeps its position; the gap is recorded once records arrive and are read."""
    kinesis.refuse_trimmed = True
    sequences = kinesis.put(SHARD, 3)
    read(kinesis, partition(batch=0, max_records=1), store)
    kinesis.trim(SHARD, 3)
    assert read(kinesis, partition(batch=1, position={"after": sequences[0]}), store) == []
    assert store.get(1, SHARD) == ShardEnd(
        last_sequence_number=None,
        records=0,
        rows=0,
        finished=False,
        caught_up=True,
        millis_behind_latest=0,
        executor="driver",
    )
    more = kinesis.put(SHARD, 2)
    assert read(kinesis, partition(batch=2, position={"after": sequences[0]}), store) == more
    assert store.get(2, SHARD).trimmed.resumed_at == more[0]


def test_a_closed_shard_trimmed_to_nothing_reports_its_gap_as_it_finishes(kinesis, store):
    """A closed shard whose unread records all expired finishes with the gap recorded."""
    sequences = kinesis.put(SHARD, 3)
    kinesis.closed.add(SHARD)
    read(kinesis, partition(batch=0, max_records=1), store)
    kinesis.trim(SHARD, 3)
    assert read(kinesis, partition(batch=1, position={"after": sequences[0]}), store) == []
    end = store.get(1, SHARD)
    assert end.finished and end.trimmed == TrimmedGap(after=sequences[0])


def test_fail_on_trimmed_stops_the_read_naming_the_shard_and_the_last_record_read(kinesis, store):
    """failOnTrimmed: the task raises before yielding anything, and nothing is recorded for the batch."""
    sequences = kinesis.put(SHARD, 4)
    read(kinesis, partition(batch=0, max_records=1), store)
    kinesis.trim(SHARD, 2)
    strict = ShardPartition(stream=STREAM, shard_id=SHARD, batch=1, position={"after": sequences[0]}, max_records=0,
                            until=None, metadata_path="unused", fail_on_trimmed=True)  # fmt: skip
    with pytest.raises(TrimmedRecordsError, match=f"{STREAM}/{SHARD}: records after sequence number {sequences[0]}"):
        read(kinesis, strict, store)
    assert store.get(1, SHARD) is None


def test_probing_after_a_sequence_number_still_sees_the_next_record(kinesis, store):
    """Reading at the last record read asks for one more than the limit, so a probe of one record
    (the planner's) still finds the next one."""
    sequences = kinesis.put(SHARD, 3)
    reader = ShardReader(kinesis, STREAM, SHARD, {"after": sequences[0]})
    assert [r["SequenceNumber"] for r in reader.next_records(1)] == [sequences[1]]
    assert reader.trimmed is None


# --- positions, offsets and partitions --------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ({}, {"ShardIteratorType": "TRIM_HORIZON"}),
        ({"after": "1000"}, {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": "1000"}),
        (
            {"at_timestamp": "2026-11-20T11:00:00+02:00"},
            {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": datetime(2026, 11, 20, 9, tzinfo=UTC)},
        ),
    ],
    ids=["trim-horizon", "after", "at-timestamp"],
)
def test_iterator_args_start_where_the_position_says(position, expected):
    """A position becomes the matching GetShardIterator arguments."""
    assert iterator_args(position) == expected


def test_child_shard_is_readable_only_once_all_its_parents_are_done():
    """A merge's child waits for both parents; a shard whose parent is unknown (expired) is readable."""
    shards = {
        "a": {"done": True},
        "b": {"parents": []},
        "c": {"parents": ["a", "b"]},
        "d": {"parents": ["a"]},
        "e": {"parents": ["trimmed-long-ago"]},
    }
    assert readable_shards(shards) == ["b", "d", "e"]
    shards["b"]["done"] = True
    assert readable_shards(shards) == ["c", "d", "e"]


def test_partitions_are_one_per_readable_shard_of_the_end_offset():
    """Each readable shard gets a partition with the end offset's batch, limit, until and start position."""
    reader = KinesisStreamReader(ReaderOptions(STREAM, "/meta"))
    start = {"stream": STREAM, "batch": 3, "until": None, "max_records": 0, "shards": {}}
    end = {
        "stream": STREAM,
        "batch": 4,
        "until": "2026-11-20T09:00:00+00:00",
        "max_records": 50,
        "shards": {
            "a": {"done": True, "after": "1005", "parents": []},
            "b": {"after": "1010", "parents": ["a"]},
            "c": {"parents": ["b"]},
            "d": {"at_timestamp": "2026-11-20T08:00:00+00:00", "parents": []},
        },
    }
    assert reader.partitions(start, end) == [
        ShardPartition(
            stream=STREAM,
            shard_id="b",
            batch=4,
            position={"after": "1010"},
            max_records=50,
            until="2026-11-20T09:00:00+00:00",
            metadata_path="/meta",
        ),
        ShardPartition(
            stream=STREAM,
            shard_id="d",
            batch=4,
            position={"at_timestamp": "2026-11-20T08:00:00+00:00"},
            max_records=50,
            until=end["until"],
            metadata_path="/meta",
        ),
    ]


def test_no_partitions_when_the_batch_number_did_not_move():
    """An end offset equal to the start (nothing new) plans no partition."""
    reader = KinesisStreamReader(ReaderOptions(STREAM, "/meta"))
    offset = {"stream": STREAM, "batch": 2, "until": None, "max_records": 0, "shards": {"a": {"parents": []}}}
    assert reader.partitions(offset, dict(offset)) == []


def test_successive_batches_read_a_parent_then_its_child_once_each(monkeypatch, tmp_path):
    """Planning with latestOffset reads a closed parent first, its child next, then plans nothing."""
    kinesis = StubKinesis()
    kinesis.add_shard("parent")
    kinesis.add_shard("child", parents=("parent",))
    parent_records = kinesis.put("parent", 3)
    kinesis.closed.add("parent")
    child_records = kinesis.put("child", 2)
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    reader = KinesisStreamReader(ReaderOptions(STREAM, str(tmp_path / "meta")))

    def next_batch(start: dict) -> tuple[dict, dict[str, list[str]]]:
        end = reader.latestOffset(start, ReadAllAvailable())
        store = ShardEndStore(str(tmp_path / "meta"))
        return end, {p.shard_id: read(kinesis, p, store) for p in reader.partitions(start, end)}

    first, read_first = next_batch(reader.initialOffset())
    second, read_second = next_batch(first)
    third, read_third = next_batch(second)
    assert (first["batch"], read_first) == (0, {"parent": parent_records})
    assert (second["batch"], read_second) == (1, {"child": child_records})
    assert (third, read_third) == (second, {})
    assert second["shards"]["parent"]["done"] is True


def test_first_batch_is_planned_even_on_an_empty_stream(monkeypatch, tmp_path):
    """Spark runs batch 0 regardless, so the source plans it too: the batch numbers stay equal."""
    kinesis = StubKinesis()
    kinesis.add_shard(SHARD)
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    reader = KinesisStreamReader(ReaderOptions(STREAM, str(tmp_path / "meta")))
    first = reader.latestOffset(reader.initialOffset(), ReadMaxRows(100))
    assert first["batch"] == 0
    assert (
        read(kinesis, reader.partitions(reader.initialOffset(), first)[0], ShardEndStore(str(tmp_path / "meta"))) == []
    )
    assert reader.latestOffset(first, ReadMaxRows(100)) == first  # still nothing: no batch 1
    added = kinesis.put(SHARD, 3)
    second = reader.latestOffset(first, ReadMaxRows(100))
    assert second["batch"] == 1
    assert read(kinesis, reader.partitions(first, second)[0], ShardEndStore(str(tmp_path / "meta"))) == added


def test_latest_start_is_pinned_in_the_first_offset(monkeypatch, tmp_path):
    """`latest` becomes a timestamp in batch 0's offset, so records arriving after the start are read."""
    kinesis = StubKinesis()
    kinesis.add_shard(SHARD)
    kinesis.put(SHARD, 2, arrival=T0 - timedelta(days=1))  # before the query: skipped
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    reader = KinesisStreamReader(ReaderOptions(STREAM, str(tmp_path / "meta"), starting_position="latest"))
    first = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    pinned = datetime.fromisoformat(first["shards"][SHARD]["at_timestamp"])
    later = kinesis.put(SHARD, 1, arrival=pinned)
    store = ShardEndStore(str(tmp_path / "meta"))
    read_first = read(kinesis, reader.partitions(reader.initialOffset(), first)[0], store)
    second = reader.latestOffset(first, ReadAllAvailable())  # batch 0's cut-off may precede the record
    read_second = [record for p in reader.partitions(first, second) for record in read(kinesis, p, store)]
    assert read_first + read_second == later


def test_a_query_given_initial_positions_starts_after_them_and_records_each_batchs_offset(monkeypatch, tmp_path):
    """Where an earlier query's records end (``initialPositions``): a known shard is read after its
    position, one it does not name from its trim horizon whatever the starting position (it was
    made later), and the driver finds each batch's offset beside its shard ends."""
    kinesis = StubKinesis()
    kinesis.add_shard(SHARD)
    kinesis.add_shard("later")
    read_before = kinesis.put(SHARD, 2)
    after, in_later = kinesis.put(SHARD, 2), kinesis.put("later", 1)
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    options = ReaderOptions.parse(
        {
            "streamName": STREAM,
            "metadataPath": str(tmp_path / "meta"),
            "startingPosition": "latest",
            "initialPositions": json.dumps({SHARD: {"after": read_before[-1], "parents": []}}),
        }
    )
    reader = KinesisStreamReader(options)
    first = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    store = ShardEndStore(str(tmp_path / "meta"))
    read_first = {p.shard_id: read(kinesis, p, store) for p in reader.partitions(reader.initialOffset(), first)}
    assert read_first == {SHARD: after, "later": in_later}
    assert store.offset(0) == first
    assert store.load(0).keys() == {SHARD, "later"}  # the offset is not taken for a shard's end


def test_a_batch_leaves_records_that_arrive_after_it_was_planned(monkeypatch, tmp_path):
    """Each mini-batch has a cut-off, so it ends even while writers keep pace with the reader."""
    kinesis = StubKinesis()
    kinesis.add_shard(SHARD)
    arrived = kinesis.put(SHARD, 3)
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    reader = KinesisStreamReader(ReaderOptions(STREAM, str(tmp_path / "meta")))
    first = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    kinesis.put(SHARD, 2, arrival=datetime.now(UTC) + timedelta(minutes=5))  # arriving while batch 0 runs
    store = ShardEndStore(str(tmp_path / "meta"))
    assert read(kinesis, reader.partitions(reader.initialOffset(), first)[0], store) == arrived
    assert store.get(0, SHARD).caught_up
    assert reader.latestOffset(first, ReadAllAvailable()) == first  # nothing before the next cut-off yet


def test_available_now_cut_stops_at_the_first_late_record(kinesis, store):
    """With arrival times out of order, the batch ends before the first late record; none is skipped."""
    early, late, early_again = (kinesis.put(SHARD, 1, arrival=T0 + timedelta(seconds=s))[0] for s in (0, 60, 1))
    until = (T0 + timedelta(seconds=30)).isoformat()
    assert read(kinesis, partition(until=until), store) == [early]
    assert store.get(0, SHARD).last_sequence_number == early
    assert read(kinesis, partition(batch=1, position={"after": early}), store) == [late, early_again]


def test_probe_looks_past_empty_pages_before_calling_a_shard_idle(monkeypatch, tmp_path):
    """GetRecords may answer empty pages while records lie further on: the probe keeps going."""

    class GappyKinesis(StubKinesis):
        empty_pages = 3

        def get_records(self, **request):
            if self.empty_pages:
                self.empty_pages -= 1
                return {"Records": [], "NextShardIterator": request["ShardIterator"], "MillisBehindLatest": BEHIND}
            return super().get_records(**request)

    kinesis = GappyKinesis()
    kinesis.add_shard(SHARD)
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    reader = KinesisStreamReader(ReaderOptions(STREAM, str(tmp_path / "meta")))
    first = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    read(kinesis, reader.partitions(reader.initialOffset(), first)[0], ShardEndStore(str(tmp_path / "meta")))
    kinesis.put(SHARD, 1)
    kinesis.empty_pages = 3
    assert reader.latestOffset(first, ReadAllAvailable())["batch"] == 1


def test_a_shard_gone_from_the_stream_is_finished_so_its_children_are_read(monkeypatch, tmp_path):
    """A closed parent that expired from the stream no longer blocks its child."""
    kinesis = StubKinesis()
    kinesis.add_shard("parent")
    kinesis.add_shard("child", parents=("parent",))
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    reader = KinesisStreamReader(ReaderOptions(STREAM, str(tmp_path / "meta")))
    first = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    assert [p.shard_id for p in reader.partitions(reader.initialOffset(), first)] == ["parent"]
    store = ShardEndStore(str(tmp_path / "meta"))
    read(kinesis, reader.partitions(reader.initialOffset(), first)[0], store)
    del kinesis.records["parent"], kinesis.parents["parent"]  # past retention: ListShards drops it
    added = kinesis.put("child", 2)
    second = reader.latestOffset(first, ReadAllAvailable())
    assert second["shards"]["parent"]["done"] is True
    assert {p.shard_id: read(kinesis, p, store) for p in reader.partitions(first, second)} == {"child": added}
    assert store.get(1, "parent").trimmed == TrimmedGap(after=None, shard_expired=True)  # reported with batch 1


def test_fail_on_trimmed_stops_planning_when_an_unfinished_shard_expired(monkeypatch, tmp_path):
    """failOnTrimmed: a shard gone from the stream before it was read to its end stops the query."""
    kinesis = StubKinesis()
    kinesis.add_shard("parent")
    kinesis.add_shard("child", parents=("parent",))
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    reader = KinesisStreamReader(ReaderOptions(STREAM, str(tmp_path / "meta"), fail_on_trimmed=True))
    first = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    del kinesis.records["parent"], kinesis.parents["parent"]
    kinesis.put("child", 1)
    with pytest.raises(TrimmedRecordsError, match=r"news/parent: records not yet read .* the whole shard has expired"):
        reader.latestOffset(first, ReadAllAvailable())


# --- options and settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"metadataPath": "/meta"}, "streamName"),
        ({"streamName": "", "metadataPath": "/meta"}, "streamName"),
        ({"streamName": STREAM}, "metadataPath"),
        ({"streamName": STREAM, "metadataPath": "/meta", "startingPosition": "soon"}, "startingPosition"),
        ({"streamName": STREAM, "metadataPath": "/meta", "decoder": "news_etl.transform.classify"}, "decoder"),
        ({"streamName": STREAM, "metadataPath": "/meta", "decoder": "news_etl.transform:no_such_function"}, "decoder"),
        ({"streamName": STREAM, "metadataPath": "/meta", "decoder": "no_such_module:classify"}, "decoder"),
    ],
    ids=[
        "no-stream",
        "empty-stream",
        "no-metadata-path",
        "bad-starting-position",
        "decoder-not-module-function",
        "decoder-function-missing",
        "decoder-module-missing",
    ],
)
def test_reader_options_reject_a_bad_option_by_name(options, named):
    """A missing or malformed option fails with a ValueError naming it."""
    with pytest.raises(ValueError, match=named):
        ReaderOptions.parse(options)


def test_a_decoder_turns_each_batch_in_the_read_task(kinesis, monkeypatch, tmp_path):
    """With option decoder, the read task yields the decoder's rows for the records it read."""
    sequences = kinesis.put(SHARD, 3)  # payloads {"n": ...}: JSON objects, but not articles
    monkeypatch.setattr(planner, "kinesis_client", lambda: kinesis)
    options = {"streamName": STREAM, "metadataPath": str(tmp_path), "decoder": "news_etl.transform:classify"}
    reader = KinesisStreamReader(ReaderOptions.parse(options))
    part = reader.partitions(reader.initialOffset(), reader.latestOffset(reader.initialOffset(), ReadAllAvailable()))
    rows = [row for batch in reader.read(part[0]) for row in batch.to_pylist()]
    assert [(r["sequence_number"], r["kind"], r["error"]) for r in rows] == [
        (sequence, "quarantine", "missing article_id") for sequence in sequences
    ]


def test_a_decoder_needs_the_schema_of_its_rows():
    """Without .schema(...), the source cannot know what the decoder returns, and says so."""
    source = KinesisDataSource({"streamName": STREAM, "decoder": "news_etl.transform:classify"})
    with pytest.raises(ValueError, match="decoder"):
        source.schema()


@pytest.mark.parametrize(
    "position",
    ["2026-11-20T11:00:00+02:00", "2026-11-20T09:00:00Z", "2026-11-20T09:00:00"],
    ids=["offset", "z", "naive"],
)
def test_reader_options_normalise_a_starting_time_to_utc(position):
    """An ISO-8601 startingPosition (offset, Z, or none meaning UTC) becomes the same UTC instant."""
    parsed = ReaderOptions.parse({"streamName": STREAM, "metadataPath": "/meta", "startingPosition": position})
    assert parsed.starting_position == "2026-11-20T09:00:00+00:00"


VALID_ARGV = ["--stream", "news", "--bucket", "news-bucket"]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("STREAM_NAME", "S3_BUCKET", "TRIGGER_INTERVAL", "MAX_RECORDS_PER_BATCH", "STARTING_POSITION",
                 "OUTPUT_FORMAT", "COMPACT_TARGET_MB"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_valid_flags_give_settings(clean_env):
    """The base flags the rejection tests alter are themselves accepted."""
    settings = parse_settings([*VALID_ARGV, "--starting-position", "2026-11-20T09:00:00Z"])
    assert (settings.stream, settings.bucket, settings.starting_position) == (
        "news",
        "news-bucket",
        "2026-11-20T09:00:00+00:00",
    )


def test_a_relative_checkpoint_is_made_absolute_for_the_executors(clean_env, tmp_path, monkeypatch):
    """Executors run in their own folders: the checkpoint (where they record shard ends) is absolute."""
    monkeypatch.chdir(tmp_path)
    assert parse_settings(VALID_ARGV).checkpoint == str(tmp_path / "checkpoints" / "news")
    assert parse_settings([*VALID_ARGV, "--checkpoint", "cp"]).shard_ends == str(tmp_path / "cp" / "kinesis-shard-ends")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--bucket", "news-bucket"], "--stream"),
        (["--stream", "news", "--bucket", "Bad_Bucket"], "--bucket"),
        ([*VALID_ARGV, "--trigger-interval", "0"], "--trigger-interval"),
        ([*VALID_ARGV, "--max-records-per-batch", "-1"], "--max-records-per-batch"),
        ([*VALID_ARGV, "--starting-position", "soon"], "--starting-position"),
        ([*VALID_ARGV, "--max-quarantine-ratio", "1.5"], "--max-quarantine-ratio"),
        ([*VALID_ARGV, "--max-bytes-per-batch", "-1"], "--max-bytes-per-batch"),
        ([*VALID_ARGV, "--state-partitions", "0"], "--state-partitions"),
        ([*VALID_ARGV, "--idle-timeout", "-1"], "--idle-timeout"),
        ([*VALID_ARGV, "--checkpoint", "gs://bucket/checkpoints"], "--checkpoint"),
        ([*VALID_ARGV, "--checkpoint", "s3://bucket-only"], "--checkpoint"),
        ([*VALID_ARGV, "--checkpoint", "s3://bucket/a//b"], "--checkpoint"),
        ([*VALID_ARGV, "--output-format", "csv"], "--output-format"),
        ([*VALID_ARGV, "--compact-target-mb", "-1"], "--compact-target-mb"),
        ([*VALID_ARGV, "--lease-seconds", "4"], "--lease-seconds"),
    ],
    ids=[
        "missing-stream",
        "bad-bucket",
        "zero-trigger-interval",
        "negative-max-records",
        "bad-starting-position",
        "quarantine-ratio-above-1",
        "negative-max-bytes",
        "zero-state-partitions",
        "negative-idle-timeout",
        "checkpoint-uri-not-s3",
        "checkpoint-s3-without-prefix",
        "checkpoint-s3-empty-segment",
        "unknown-output-format",
        "negative-compact-target",
        "lease-shorter-than-5-seconds",
    ],
)
def test_bad_setting_exits_2_with_one_line_naming_the_flag(clean_env, capsys, argv, flag):
    """A bad flag exits with status 2 and a single stderr line that names it."""
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert len(err.splitlines()) == 1
    assert flag in err


def test_an_s3_checkpoint_keeps_its_uri_and_spark_reaches_it_through_s3a(clean_env):
    """s3://bucket/prefix is not made a local path; Spark's part is the same place as s3a://."""
    settings = parse_settings([*VALID_ARGV, "--checkpoint", "s3://news-state/checkpoints/news/"])
    assert settings.checkpoint == "s3://news-state/checkpoints/news"
    assert settings.spark_checkpoint == "s3a://news-state/checkpoints/news/spark"
    assert settings.state_file == "s3://news-state/checkpoints/news/etl-state.json"
    assert settings.shard_ends == "s3://news-state/checkpoints/news/kinesis-shard-ends"


def test_an_unknown_output_format_from_the_environment_is_refused_naming_the_variable(clean_env, capsys, monkeypatch):
    """OUTPUT_FORMAT is checked as the flag is (argparse checks choices only on the command line)."""
    monkeypatch.setenv("OUTPUT_FORMAT", "csv")
    with pytest.raises(SystemExit) as exited:
        parse_settings(VALID_ARGV)
    assert exited.value.code == 2
    assert "--output-format (OUTPUT_FORMAT) must be one of delta, parquet, got 'csv'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "driver"),
        ({"SPARK_LOG_URL_STDERR": "http://10.0.0.7:8081/logPage/?appId=app-1&executorId=3&logType=stderr"}, "3"),
        ({"SPARK_EXECUTOR_ID": "7"}, "7"),
    ],
    ids=["local", "standalone-or-yarn", "kubernetes"],
)
def test_shard_ends_name_the_executor_that_read_the_shard(kinesis, store, monkeypatch, environment, expected):
    """The recorded end says which executor's task read the shard (local mode: the driver)."""
    for name in ("SPARK_EXECUTOR_ID", "SPARK_LOG_URL_STDERR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    kinesis.put(SHARD, 1)
    read(kinesis, partition(), store)
    assert store.get(0, SHARD).executor == expected


def test_an_empty_page_on_an_open_shard_is_not_taken_for_a_gap(kinesis, store, monkeypatch):
    """GetRecords may answer an empty page (even at MillisBehindLatest 0) before the record read
    at: no gap is recorded, and that record, when it comes, is still dropped."""
    sequences = kinesis.put(SHARD, 3)
    read(kinesis, partition(batch=0, max_records=1), store)
    answer = kinesis.get_records
    empty_pages = iter([True])

    def get_records(**request):
        if next(empty_pages, False):
            return {"Records": [], "NextShardIterator": request["ShardIterator"], "MillisBehindLatest": 0}
        return answer(**request)

    monkeypatch.setattr(kinesis, "get_records", get_records)
    reader = ShardReader(kinesis, STREAM, SHARD, {"after": sequences[0]})
    assert reader.next_records(10) == []
    assert [r["SequenceNumber"] for r in reader.next_records(10)] == sequences[1:]
    assert reader.trimmed is None
