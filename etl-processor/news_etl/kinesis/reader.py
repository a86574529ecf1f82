"""Reading one shard for one batch, inside a Spark task on an executor.

``read_shard`` follows GetRecords' continuation iterators from the batch's start until its
record limit, its cut-off time, the stream's tip or the end of a closed shard, yields the
records as Arrow batches, and records where it stopped (``ShardEndStore``). A re-run of the same
batch finds that record and reads exactly up to it instead (``replay_shard``).

Records a KPL producer aggregated are yielded as their user records (``aggregation``), each with
the Kinesis record's sequence number and its index in the aggregate, ``sub_sequence_number``
(null for a plain record). Limits, cut-offs and recorded ends all count Kinesis records, so a
batch never splits an aggregate and a replay reads the same aggregates whole. A record that
claims to be an aggregate but is not a valid one is yielded whole, with ``aggregate_error``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

import pyarrow as pa

from news_etl.kinesis.aggregation import AggregateError, is_aggregate, user_records
from news_etl.kinesis.offsets import ShardPartition, iterator_args
from news_etl.kinesis.options import parse_timestamp
from news_etl.kinesis.shard_ends import ShardEnd, ShardEndStore, TrimmedGap, TrimmedRecordsError

SCHEMA = (
    "shard_id string, sequence_number string, sub_sequence_number bigint, partition_key string, "
    "arrival_time timestamp, data binary, aggregate_error string"
)
ARROW_SCHEMA = pa.schema(
    [
        ("shard_id", pa.string()),
        ("sequence_number", pa.string()),
        ("sub_sequence_number", pa.int64()),  # a user record's index in its KPL aggregate; null: a plain record
        ("partition_key", pa.string()),
        ("arrival_time", pa.timestamp("us", tz="UTC")),
        ("data", pa.binary()),
        ("aggregate_error", pa.string()),  # why a record that claims to be an aggregate is not one
    ]
)
MAX_RECORDS_PER_CALL = 10_000  # the GetRecords API limit


class ShardEndConflictError(RuntimeError):
    """Two attempts of one read task read different records: the one whose end was not recorded fails."""


def executor_id() -> str:
    """The Spark executor this code runs in: Kubernetes sets SPARK_EXECUTOR_ID; standalone and YARN
    executors name it in their log URL; in local mode the driver is the only executor."""
    if os.environ.get("SPARK_EXECUTOR_ID"):
        return os.environ["SPARK_EXECUTOR_ID"]
    match = re.search(r"[?&]executorId=([^&]+)", os.environ.get("SPARK_LOG_URL_STDERR", ""))
    return match[1] if match else "driver"


MAX_ROWS_PER_BATCH = 10_000  # rows an Arrow batch holds at most, user records of aggregates included
# The reason a replay gives an aggregate that an earlier version read as one record (see replay_shard).
READ_WHOLE_BEFORE = "KPL aggregate in a batch an earlier version of the job read as one record: quarantined whole"


def records_to_batches(shard_id: str, records: list[dict], *, deaggregate: bool = True) -> Iterator[pa.RecordBatch]:
    """One GetRecords page as Arrow batches of at most ``MAX_ROWS_PER_BATCH`` rows: plain records
    as they are, aggregates as their user records (a 1 MiB aggregate can hold 100,000 of them)."""
    rows: list[tuple] = []
    for record in records:
        for row in _rows(record, deaggregate):
            rows.append(row)
            if len(rows) == MAX_ROWS_PER_BATCH:
                yield _to_arrow(shard_id, rows)
                rows = []
    if rows:
        yield _to_arrow(shard_id, rows)


# What ``_rows`` yields for each row: the ``ARROW_SCHEMA`` columns after ``shard_id``, in order.
ROW_FIELDS = list(ARROW_SCHEMA)[1:]


def _rows(record: dict, deaggregate: bool) -> Iterator[tuple]:
    """The rows (``ROW_FIELDS``) of one Kinesis record: itself, or the user records of a KPL aggregate."""
    sequence_number, arrival, data = record["SequenceNumber"], record["ApproximateArrivalTimestamp"], record["Data"]
    if not is_aggregate(data):
        yield sequence_number, None, record["PartitionKey"], arrival, data, None
        return
    try:
        if not deaggregate:
            raise AggregateError(READ_WHOLE_BEFORE)
        users = user_records(data)
    except AggregateError as error:
        yield sequence_number, None, record["PartitionKey"], arrival, data, str(error)
        return
    for sub, (key, user_data) in enumerate(users):
        yield sequence_number, sub, key, arrival, user_data, None


def _to_arrow(shard_id: str, rows: list[tuple]) -> pa.RecordBatch:
    columns = zip(*rows, strict=True)
    arrays = [pa.array(values, field.type) for values, field in zip(columns, ROW_FIELDS, strict=True)]
    return pa.RecordBatch.from_arrays([pa.array([shard_id] * len(rows), pa.string()), *arrays], schema=ARROW_SCHEMA)


class ShardReader:
    """Reads one shard from a position, following GetRecords' continuation iterators.

    A position after a sequence number is read *at* that number first: finding the record still
    there proves nothing after it was trimmed by retention. Finding another record, or an
    InvalidArgumentException on the number (AWS answers either way), sets ``trimmed``.
    """

    def __init__(self, client, stream: str, shard_id: str, position: dict) -> None:
        self._client, self._stream, self._shard_id = client, stream, shard_id
        self._position = position
        self._iterator: str | None = None
        self._check_at: str | None = position.get("after")  # the last record read before this position
        self.last_sequence_number: str | None = position.get("after")
        self.millis_behind_latest = 0
        self.finished = False
        self.trimmed: TrimmedGap | None = None

    def _get_iterator(self, **args) -> str:
        return self._client.get_shard_iterator(StreamName=self._stream, ShardId=self._shard_id, **args)["ShardIterator"]

    def _fresh_iterator(self) -> str:
        if self._check_at:
            try:
                return self._get_iterator(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=self._check_at)
            except self._client.exceptions.InvalidArgumentException as error:
                if "startingsequencenumber" not in str(error).lower().replace(" ", ""):
                    raise
                self._note_gap()
                self.last_sequence_number, self._position = None, {}
                return self._get_iterator(ShardIteratorType="TRIM_HORIZON")  # where the shard's records now start
        position = {"after": self.last_sequence_number} if self.last_sequence_number else self._position
        return self._get_iterator(**iterator_args(position))

    def next_records(self, limit: int) -> list[dict]:
        """The next up to ``limit`` records; sets ``finished`` at the end of a closed shard."""
        if self._iterator is None:
            self._iterator = self._fresh_iterator()
        if self._check_at:
            limit = min(limit + 1, MAX_RECORDS_PER_CALL)  # room for the already-read record read at
        try:
            response = self._client.get_records(ShardIterator=self._iterator, Limit=limit)
        except self._client.exceptions.ExpiredIteratorException:
            self._iterator = self._fresh_iterator()  # iterators live 5 minutes: resume after the last record
            response = self._client.get_records(ShardIterator=self._iterator, Limit=limit)
        records = response["Records"]
        self.millis_behind_latest = response.get("MillisBehindLatest", 0)
        self._iterator = response.get("NextShardIterator")
        self.finished = self._iterator is None
        if self._check_at or (self.trimmed and self.trimmed.resumed_at is None):
            records = self._check_first(records)
        if records:
            self.last_sequence_number = records[-1]["SequenceNumber"]
        return records

    def _note_gap(self) -> None:
        """The record read at is gone: those after it were trimmed; where reading resumed comes next."""
        self.trimmed = TrimmedGap(after=self._check_at)
        self._check_at = None

    def _check_first(self, records: list[dict]) -> list[dict]:
        """Drop the already-read record read at; or, where it is gone, note the gap and where reading resumed."""
        if self._check_at and records and records[0]["SequenceNumber"] == self._check_at:
            self._check_at = None
            return records[1:]
        # An empty page proves nothing on an open shard (GetRecords may answer empty pages short
        # of a record); a closed shard read to its end without the record does.
        if self._check_at and (records or self.finished):
            self._note_gap()
        if records and self.trimmed:
            first = records[0]
            self.trimmed = replace(self.trimmed, resumed_at=first["SequenceNumber"],
                                   resumed_arrival=first["ApproximateArrivalTimestamp"].isoformat())  # fmt: skip
        return records


def arrived_after(record: dict, until: datetime | None) -> bool:
    return until is not None and record["ApproximateArrivalTimestamp"] > until


def first_late(records: list[dict], until: datetime | None) -> int:
    """Index of the first record that arrived after ``until`` (len(records) if none).

    Arrival times are approximate: the cut is at the first late record, so none is skipped.
    """
    if until is None:
        return len(records)
    return next((i for i, record in enumerate(records) if arrived_after(record, until)), len(records))


def first_over_budget(records: list[dict], budget: float, *, at_least_one: bool) -> int:
    """Index of the first record whose payload no longer fits in ``budget`` bytes (len(records) if all
    fit); with ``at_least_one``, the first record is kept whatever its size, so a batch always moves on."""
    spent = 0
    for index, record in enumerate(records):
        spent += len(record["Data"])
        if spent > budget:
            return max(index, 1 if at_least_one else 0)
    return len(records)


def read_shard(client, partition: ShardPartition, store: ShardEndStore) -> Iterator[pa.RecordBatch]:
    """Yield the shard's records for this batch, then record (or respect) where the batch ends."""
    recorded = store.get(partition.batch, partition.shard_id)
    if recorded is not None:
        yield from replay_shard(client, partition, recorded, store)
        return
    reader = ShardReader(client, partition.stream, partition.shard_id, partition.position)
    until = parse_timestamp(partition.until) if partition.until else None
    remaining = partition.max_records or math.inf
    budget = partition.max_bytes or math.inf
    read = rows = 0
    caught_up = stopped = False
    while remaining > 0 and budget > 0 and not reader.finished and not caught_up and not stopped:
        before = reader.last_sequence_number
        records = reader.next_records(int(min(remaining, MAX_RECORDS_PER_CALL)))
        if reader.trimmed and partition.fail_on_trimmed:
            raise TrimmedRecordsError.of(partition.stream, partition.shard_id, reader.trimmed)
        late = first_late(records, until)
        cut = min(late, first_over_budget(records, budget, at_least_one=read == 0))
        kept = records[:cut]
        if cut < len(records):  # past the batch's cut-off or its byte budget: stop before those
            caught_up, stopped, reader.finished = cut == late, True, False
            reader.last_sequence_number = kept[-1]["SequenceNumber"] if kept else before
        else:
            caught_up = reader.millis_behind_latest == 0 and not reader.finished
        if kept:
            read += len(kept)
            remaining -= len(kept)
            budget -= sum(len(record["Data"]) for record in kept)
            for batch in records_to_batches(partition.shard_id, kept):
                rows += batch.num_rows
                yield batch
    # A gap is reported once: by the batch that reads past it, or finds a closed shard empty.
    gap = reader.trimmed if reader.trimmed and (reader.trimmed.resumed_at or reader.finished) else None
    end = ShardEnd(
        last_sequence_number=reader.last_sequence_number,
        records=read,
        rows=rows,
        finished=reader.finished,
        caught_up=caught_up,
        millis_behind_latest=reader.millis_behind_latest,
        trimmed=gap,
        executor=executor_id(),
    )
    recorded = store.put(partition.batch, partition.shard_id, end)
    if (recorded.last_sequence_number, recorded.records) != (end.last_sequence_number, end.records):
        # Another attempt of this task recorded its end first: Spark must not keep these rows.
        raise ShardEndConflictError(
            f"batch {partition.batch} on {partition.stream}/{partition.shard_id}: another attempt recorded "
            f"{recorded.records} records up to {recorded.last_sequence_number}, this one read {end.records} up to "
            f"{end.last_sequence_number}; a retry reads what was recorded"
        )


def replay_shard(
    client, partition: ShardPartition, recorded: ShardEnd, store: ShardEndStore
) -> Iterator[pa.RecordBatch]:
    """Read exactly the records an earlier attempt of this batch read: up to its recorded end.

    An end recorded before aggregates were read as their user records (no ``rows``) is replayed
    as that version read it, a record a row (an aggregate quarantined whole, ``READ_WHOLE_BEFORE``),
    so that the batch's rows add up to what it recorded.

    Records the stream's retention trimmed since the first read (a crash, then downtime near the
    retention) cannot be read again: the replay yields those that are left, and records what it
    read with the gap (``ShardEndStore.put_replayed``), which the batch reports as a first read
    reports one; or stops with ``failOnTrimmed``.
    """
    if recorded.records == 0:
        return
    reader = ShardReader(client, partition.stream, partition.shard_id, partition.position)
    end = int(recorded.last_sequence_number)
    read = rows = 0
    first: dict | None = None
    while read < recorded.records:
        records = reader.next_records(MAX_RECORDS_PER_CALL)
        kept = [r for r in records if int(r["SequenceNumber"]) <= end]
        first = first or (kept[0] if kept else None)
        read += len(kept)
        for batch in records_to_batches(partition.shard_id, kept, deaggregate=recorded.rows is not None):
            rows += batch.num_rows
            yield batch
        if len(kept) < len(records) or reader.finished or (not records and reader.millis_behind_latest == 0):
            break
    where = f"replay of batch {partition.batch} on {partition.stream}/{partition.shard_id}"
    if read == recorded.records:
        if rows != recorded.rows_read:
            raise RuntimeError(f"{where} made {rows} rows of its records, where the first read {recorded.rows_read}")
        return
    if read > recorded.records:
        raise RuntimeError(f"{where} found {read} records where the first read found {recorded.records}")
    gap = TrimmedGap(after=partition.position.get("after"), resumed_at=first and first["SequenceNumber"],
                     resumed_arrival=first and first["ApproximateArrivalTimestamp"].isoformat())  # fmt: skip
    if partition.fail_on_trimmed:
        raise TrimmedRecordsError.of(partition.stream, partition.shard_id, gap)
    store.put_replayed(partition.batch, partition.shard_id, replace(recorded, records=read, rows=rows, trimmed=gap,
                                                                    executor=executor_id()))  # fmt: skip
