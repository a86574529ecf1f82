"""A Spark streaming data source for AWS Kinesis, written in Python with boto3.

    spark.dataSource.register(KinesisDataSource)
    spark.readStream.format("kinesis").option("streamName", "news")
        .option("metadataPath", "/checkpoints/news/kinesis").load()

How it fits Spark's streaming model:

- **Offsets** are JSON dicts: the micro-batch number, and for every known shard where that
  batch starts reading (after a sequence number, at TRIM_HORIZON, or at a timestamp), its
  parents and whether it has been read to its end. Structured Streaming checkpoints them.
- **One input partition per shard.** Shards are read with boto3 inside Spark tasks on the
  executors, up to 10,000 records a GetRecords call; the driver never holds record payloads
  (it only asks each shard, with GetRecords(Limit=1), whether anything is new).
- **Deterministic replay.** Kinesis cannot cheaply say where a shard ends, so a batch's offset
  cannot name its last sequence numbers in advance. Instead the task that first reads a shard
  for batch N records where it stopped (``ShardEndStore``, a small JSON file per batch and
  shard under ``metadataPath``) before Spark can use its rows; any re-run of batch N (a retried
  task, a restarted query) reads exactly up to that recorded end. This is what the awslabs
  spark-sql-kinesis-connector's metadata committer does. Batch N+1 starts after those ends.
- **Resharding.** A child shard is read only once all its parents have been read to their ends,
  so records of one partition key stay in order across a split or merge.
- **Trimmed records.** Records the stream's retention removed before they were read are found
  where reading resumes (see ``ShardReader``) and recorded with the batch; Kinesis does not say
  how many there were. Option ``failOnTrimmed`` stops the query instead.
- ``trigger(availableNow=True)`` reads what had arrived when the query started, then stops.
- **Decoding where records are read.** Option ``decoder`` names a function (``module:function``,
  importable on the driver and the executors) that turns each batch of raw records
  (``ARROW_SCHEMA``) into the rows the query wants, given with ``.schema(...)``; Spark checks
  the batches it returns against that schema in the task. It runs in the read task, so a payload is
  parsed in the process that received it and crosses to the JVM once, already decoded, rather
  than going there raw and back to Python for a ``mapInArrow`` (BENCHMARKS.md).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
from botocore.config import Config
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow

log = logging.getLogger(__name__)

SCHEMA = "shard_id string, sequence_number string, partition_key string, arrival_time timestamp, data binary"
ARROW_SCHEMA = pa.schema(
    [
        ("shard_id", pa.string()),
        ("sequence_number", pa.string()),
        ("partition_key", pa.string()),
        ("arrival_time", pa.timestamp("us", tz="UTC")),
        ("data", pa.binary()),
    ]
)
MAX_RECORDS_PER_CALL = 10_000  # the GetRecords API limit
PROBE_PAGES = 20  # empty GetRecords pages a probe follows before deciding a shard has nothing new
TRIM_HORIZON, LATEST = "trim_horizon", "latest"
# AWS's standard retry strategy (backoff with full jitter, bounded) for Kinesis and S3 alike;
# AWS_MAX_ATTEMPTS, the SDKs' own setting, changes the bound.
MAX_ATTEMPTS = int(os.environ.get("AWS_MAX_ATTEMPTS") or 10)
BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS}, connect_timeout=5, read_timeout=60)


def kinesis_client():
    """boto3 reads credentials and AWS_ENDPOINT_URL itself; AWS_REGION is passed on."""
    return boto3.client("kinesis", region_name=os.environ.get("AWS_REGION"), config=BOTO_CONFIG)


@dataclass(frozen=True)
class ReaderOptions:
    """The data source's options, validated where they enter."""

    stream: str
    metadata_path: str
    starting_position: str = TRIM_HORIZON
    max_records_per_batch: int = 0  # 0: everything available
    fail_on_trimmed: bool = False  # stop instead of reporting records trimmed before they were read
    decoder: str = ""  # "module:function" applied to each batch of raw records in the read task

    @classmethod
    def parse(cls, options) -> ReaderOptions:
        stream = options.get("streamName")
        metadata_path = options.get("metadataPath")
        if not stream:
            raise ValueError("option streamName is required")
        if not metadata_path:
            raise ValueError("option metadataPath is required")
        position = options.get("startingPosition", TRIM_HORIZON)
        if position.lower() in (TRIM_HORIZON, LATEST):
            position = position.lower()
        else:
            position = parse_timestamp(position).isoformat()
        max_records = int(options.get("maxRecordsPerBatch", "0"))
        if max_records < 0:
            raise ValueError("option maxRecordsPerBatch must be 0 or more")
        fail_on_trimmed = options.get("failOnTrimmed", "false").lower()
        if fail_on_trimmed not in ("true", "false"):
            raise ValueError("option failOnTrimmed must be true or false")
        decoder = options.get("decoder", "")
        if decoder:  # checked on the driver, so a wrong name stops the query before any task runs
            if not re.fullmatch(r"[\w.]+:\w+", decoder):
                raise ValueError(f"option decoder must name a function as module:function, not {decoder!r}")
            try:
                load_decoder(decoder)
            except (ImportError, AttributeError) as error:
                raise ValueError(f"option decoder {decoder!r} cannot be loaded: {error}") from None
        return cls(stream, metadata_path, position, max_records, fail_on_trimmed == "true", decoder)


def load_decoder(name: str):
    """The function a ``decoder`` option names, imported (on the executor that runs it)."""
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def parse_timestamp(text: str) -> datetime:
    """ISO-8601; without an offset, UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"startingPosition must be trim_horizon, latest or an ISO-8601 time, got {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- Positions and offsets (plain JSON dicts, as Spark checkpoints them) --------------------


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


@dataclass(frozen=True)
class ShardEnd:
    """Where the read of one shard for one batch stopped (recorded by the executor)."""

    last_sequence_number: str | None  # None: nothing was read
    records: int
    finished: bool  # a closed shard read to its end
    caught_up: bool  # reached the stream's tip (or the availableNow target)
    millis_behind_latest: int
    trimmed: dict | None = None  # records this batch should have read first were trimmed: see ShardReader
    executor: str = ""  # the Spark executor whose task read the shard


def executor_id() -> str:
    """The Spark executor this code runs in: Kubernetes sets SPARK_EXECUTOR_ID; standalone and YARN
    executors name it in their log URL; in local mode the driver is the only executor."""
    if os.environ.get("SPARK_EXECUTOR_ID"):
        return os.environ["SPARK_EXECUTOR_ID"]
    match = re.search(r"[?&]executorId=([^&]+)", os.environ.get("SPARK_LOG_URL_STDERR", ""))
    return match[1] if match else "driver"


def describe_trimmed(stream: str, shard_id: str, trimmed: dict) -> str:
    """One line: which records of a shard were trimmed before they were read, and where reading went on."""
    after = f"after sequence number {trimmed['after']}" if trimmed.get("after") else "not yet read"
    if trimmed.get("shard_expired"):
        where = "the whole shard has expired from the stream"
    elif trimmed.get("resumed_at"):
        where = f"reading resumed at {trimmed['resumed_at']}, which arrived {trimmed['resumed_arrival']}"
    else:
        where = "nothing older is left in the shard"
    return (
        f"{stream}/{shard_id}: records {after} were trimmed by the stream's retention before they were read "
        f"(Kinesis does not say how many); {where}"
    )


class ShardEndStore:
    """Per batch and shard, where reading stopped: a JSON file written once, read on replay.

    ``path`` is a local directory or any URI pyarrow can open (``s3://bucket/prefix`` on a
    cluster whose executors do not share a disk with the driver).
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if "://" in self._path and not self._path.startswith("file://"):
            filesystem, root = pafs.FileSystem.from_uri(self._path)
        else:
            filesystem, root = pafs.LocalFileSystem(), os.path.abspath(self._path.removeprefix("file://"))
        return filesystem, root.rstrip("/")

    def get(self, batch: int, shard_id: str) -> ShardEnd | None:
        filesystem, root = self._fs()
        try:
            with filesystem.open_input_stream(f"{root}/{batch:012d}/{shard_id}.json") as stream:
                return ShardEnd(**json.loads(stream.read()))
        except FileNotFoundError:
            return None

    def put(self, batch: int, shard_id: str, end: ShardEnd) -> None:
        """Write atomically: a temporary file renamed into place."""
        filesystem, root = self._fs()
        directory = f"{root}/{batch:012d}"
        filesystem.create_dir(directory, recursive=True)
        temporary = f"{directory}/.{shard_id}.{uuid.uuid4().hex}.tmp"
        with filesystem.open_output_stream(temporary) as stream:
            stream.write(json.dumps(asdict(end)).encode())
        filesystem.move(temporary, f"{directory}/{shard_id}.json")

    def load(self, batch: int) -> dict[str, ShardEnd]:
        filesystem, root = self._fs()
        selector = pafs.FileSelector(f"{root}/{batch:012d}", allow_not_found=True)
        ends = {}
        for info in filesystem.get_file_info(selector):
            name = info.base_name
            if name.endswith(".json") and not name.startswith("."):
                with filesystem.open_input_stream(info.path) as stream:
                    ends[name.removesuffix(".json")] = ShardEnd(**json.loads(stream.read()))
        return ends

    def forget_before(self, batch: int) -> None:
        """Drop the records of batches before ``batch``: no replay can need them."""
        filesystem, root = self._fs()
        for info in filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.isdigit() and int(info.base_name) < batch:
                filesystem.delete_dir(info.path)


@dataclass(frozen=True)
class ShardPartition(InputPartition):
    """One shard of one micro-batch: where to start, how much at most, until when."""

    stream: str
    shard_id: str
    batch: int
    position: dict
    max_records: int  # 0: no limit
    until: str | None  # the batch's cut-off: records that arrived later are left for the next batch
    metadata_path: str
    fail_on_trimmed: bool = False
    decoder: str = ""


# --- Reading one shard (runs on an executor) --------------------------------------------------


def _to_arrow(shard_id: str, records: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array([shard_id] * len(records), pa.string()),
            pa.array([r["SequenceNumber"] for r in records], pa.string()),
            pa.array([r["PartitionKey"] for r in records], pa.string()),
            pa.array([r["ApproximateArrivalTimestamp"] for r in records], pa.timestamp("us", tz="UTC")),
            pa.array([r["Data"] for r in records], pa.binary()),
        ],
        schema=ARROW_SCHEMA,
    )


class TrimmedRecordsError(RuntimeError):
    """Records were trimmed by the stream's retention before they were read (``failOnTrimmed``)."""

    @classmethod
    def of(cls, stream: str, shard_id: str, trimmed: dict) -> TrimmedRecordsError:
        return cls(f"{describe_trimmed(stream, shard_id, trimmed)} (--fail-on-trimmed)")


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
        self.trimmed: dict | None = None  # records after ``after`` were trimmed; reading resumed at ``resumed_at``

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
        if self._check_at or (self.trimmed and self.trimmed["resumed_at"] is None):
            records = self._check_first(records)
        if records:
            self.last_sequence_number = records[-1]["SequenceNumber"]
        return records

    def _note_gap(self) -> None:
        """The record read at is gone: those after it were trimmed; where reading resumed comes next."""
        self.trimmed = {"after": self._check_at, "resumed_at": None, "resumed_arrival": None}
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
            self.trimmed |= {"resumed_at": first["SequenceNumber"],
                             "resumed_arrival": first["ApproximateArrivalTimestamp"].isoformat()}  # fmt: skip
        return records


def _arrived_after(record: dict, until: datetime | None) -> bool:
    return until is not None and record["ApproximateArrivalTimestamp"] > until


def _first_late(records: list[dict], until: datetime | None) -> int:
    """Index of the first record that arrived after ``until`` (len(records) if none).

    Arrival times are approximate: the cut is at the first late record, so none is skipped.
    """
    if until is None:
        return len(records)
    return next((i for i, record in enumerate(records) if _arrived_after(record, until)), len(records))


def read_shard(client, partition: ShardPartition, store: ShardEndStore) -> Iterator[pa.RecordBatch]:
    """Yield the shard's records for this batch, then record (or respect) where the batch ends."""
    recorded = store.get(partition.batch, partition.shard_id)
    if recorded is not None:
        yield from _replay(client, partition, recorded)
        return
    reader = ShardReader(client, partition.stream, partition.shard_id, partition.position)
    until = parse_timestamp(partition.until) if partition.until else None
    remaining = partition.max_records or math.inf
    read = 0
    caught_up = False
    while remaining > 0 and not reader.finished and not caught_up:
        before = reader.last_sequence_number
        records = reader.next_records(int(min(remaining, MAX_RECORDS_PER_CALL)))
        if reader.trimmed and partition.fail_on_trimmed:
            raise TrimmedRecordsError.of(partition.stream, partition.shard_id, reader.trimmed)
        cut = _first_late(records, until)
        kept = records[:cut]
        if cut < len(records):  # past the batch's cut-off: stop before those
            caught_up, reader.finished = True, False
            reader.last_sequence_number = kept[-1]["SequenceNumber"] if kept else before
        else:
            caught_up = reader.millis_behind_latest == 0 and not reader.finished
        if kept:
            read += len(kept)
            remaining -= len(kept)
            yield _to_arrow(partition.shard_id, kept)
    # A gap is reported once: by the batch that reads past it, or finds a closed shard empty.
    trimmed = reader.trimmed if reader.trimmed and (reader.trimmed["resumed_at"] or reader.finished) else None
    end = ShardEnd(reader.last_sequence_number, read, reader.finished, caught_up, reader.millis_behind_latest,
                   trimmed, executor_id())  # fmt: skip
    store.put(partition.batch, partition.shard_id, end)


def _replay(client, partition: ShardPartition, recorded: ShardEnd) -> Iterator[pa.RecordBatch]:
    """Read exactly the records an earlier attempt of this batch read: up to its recorded end."""
    if recorded.records == 0:
        return
    reader = ShardReader(client, partition.stream, partition.shard_id, partition.position)
    end = int(recorded.last_sequence_number)
    read = 0
    while read < recorded.records:
        records = reader.next_records(MAX_RECORDS_PER_CALL)
        kept = [r for r in records if int(r["SequenceNumber"]) <= end]
        read += len(kept)
        if kept:
            yield _to_arrow(partition.shard_id, kept)
        if len(kept) < len(records) or reader.finished or (not records and reader.millis_behind_latest == 0):
            break
    if read != recorded.records:
        raise RuntimeError(
            f"replay of batch {partition.batch} on {partition.stream}/{partition.shard_id} found {read} records "
            f"where the first read found {recorded.records}: records were trimmed from the shard meanwhile"
        )


# --- The data source and its stream reader (the driver side) ----------------------------------


class KinesisDataSource(DataSource):
    """``spark.readStream.format("kinesis")``: see the module docstring."""

    @classmethod
    def name(cls) -> str:
        return "kinesis"

    def schema(self) -> str:
        """The raw records' schema; with a decoder, the caller gives the decoded one (``.schema``)."""
        if self.options.get("decoder"):
            raise ValueError("option decoder needs the schema of the rows it returns: .schema(...)")
        return SCHEMA

    def streamReader(self, schema) -> KinesisStreamReader:  # noqa: N802 (Spark's API name)
        return KinesisStreamReader(ReaderOptions.parse(self.options))


class KinesisStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Plans micro-batches on the driver; holds only plain configuration (it is pickled)."""

    def __init__(self, options: ReaderOptions) -> None:
        self.options = options
        self.until: str | None = None

    def initialOffset(self) -> dict:  # noqa: N802
        return {"stream": self.options.stream, "batch": -1, "until": None, "max_records": 0, "shards": {}}

    def getDefaultReadLimit(self) -> ReadLimit:  # noqa: N802
        if self.options.max_records_per_batch:
            return ReadMaxRows(self.options.max_records_per_batch)
        return ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:  # noqa: N802
        self.until = datetime.now(UTC).isoformat()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:  # noqa: N802
        if start.get("stream") != self.options.stream:
            raise ValueError(
                f"the checkpoint belongs to stream {start.get('stream')!r}, not {self.options.stream!r}: "
                "use another checkpoint directory"
            )
        client = kinesis_client()
        # The batch's cut-off: records that arrive while it is read are left for the next one,
        # so a batch ends even while writers keep up with the reader. availableNow: one cut-off
        # for every batch of the run.
        until = self.until or datetime.now(UTC).isoformat()
        first = start["batch"] < 0
        previous = {} if first else ShardEndStore(self.options.metadata_path).load(start["batch"])
        shards = self._positions_after(start, previous)
        expired = self._add_new_shards(client, shards, first=first)
        # Spark runs batch 0 of a new query whatever this returns, so batch 0 is always planned
        # (which also pins a `latest` start). After that, nothing new means `start` unchanged, so
        # that Spark plans no batch: each Spark batch is one of ours, with the same number.
        # What changed here (new or finished shards) is found again next time.
        if not first and not self._anything_to_read(client, previous, shards, parse_timestamp(until)):
            return start
        self._report_expired(start["batch"] + 1, expired)
        readable = readable_shards(shards)
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else 0
        per_shard = math.ceil(max_rows / len(readable)) if max_rows and readable else 0
        return {
            "stream": self.options.stream,
            "batch": start["batch"] + 1,
            "until": until,
            "max_records": per_shard,
            "shards": shards,
        }

    @staticmethod
    def _positions_after(start: dict, previous: dict[str, ShardEnd]) -> dict[str, dict]:
        """Where the next batch starts: after what the previous batch recorded for each shard."""
        shards = {shard_id: dict(state) for shard_id, state in start["shards"].items()}
        for shard_id, end in previous.items():
            if end.last_sequence_number:
                shards[shard_id] = {**shards[shard_id], "after": end.last_sequence_number}
                shards[shard_id].pop("at_timestamp", None)
            if end.finished:
                shards[shard_id]["done"] = True
        return shards

    def _add_new_shards(self, client, shards: dict[str, dict], *, first: bool) -> dict[str, dict]:
        """Add shards the stream has now but the offsets do not know (a new query, or resharding).

        Returns the unfinished shards that are gone from the stream (closed, and past retention),
        now marked done, with their positions.
        """
        initial: dict = {}
        if first and self.options.starting_position == LATEST:
            initial = {"at_timestamp": datetime.now(UTC).isoformat()}  # pinned, so a replay is exact
        elif first and self.options.starting_position != TRIM_HORIZON:
            initial = {"at_timestamp": self.options.starting_position}
        listed = _list_shards(client, self.options.stream)
        for shard in listed:
            if shard["ShardId"] in shards:
                continue
            parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]
            shards[shard["ShardId"]] = {**(initial if first else {}), "parents": parents}
        expired = {}
        for shard_id in set(shards) - {shard["ShardId"] for shard in listed}:
            if not shards[shard_id].get("done"):  # a closed shard past retention: nothing left to read
                expired[shard_id] = dict(shards[shard_id])
                shards[shard_id]["done"] = True
        return expired

    def _report_expired(self, batch: int, expired: dict[str, dict]) -> None:
        """Record expired shards' lost records with the batch, as its tasks record trimmed ones."""
        store = ShardEndStore(self.options.metadata_path)
        for shard_id, position in expired.items():
            trimmed = {"after": position.get("after"), "shard_expired": True}
            if self.options.fail_on_trimmed:
                raise TrimmedRecordsError.of(self.options.stream, shard_id, trimmed)
            store.put(batch, shard_id, ShardEnd(None, 0, True, True, 0, trimmed))

    def _anything_to_read(
        self, client, previous: dict[str, ShardEnd], shards: dict[str, dict], until: datetime
    ) -> bool:
        """Whether a batch would read something before ``until``; marks closed shards read to the end."""
        probed: set[str] = set()
        while True:
            pending = [s for s in readable_shards(shards) if s not in probed]
            if not pending:
                return False
            for shard_id in pending:
                end = previous.get(shard_id)
                if end is not None and not end.caught_up and not end.finished:
                    return True  # the last batch stopped at its limit: there is more
                probed.add(shard_id)
                reader = ShardReader(client, self.options.stream, shard_id, shards[shard_id])
                records = reader.next_records(1)
                for _ in range(PROBE_PAGES):  # GetRecords may answer empty pages short of the records
                    if records or reader.finished or reader.millis_behind_latest == 0:
                        break
                    records = reader.next_records(1)
                if records and not _arrived_after(records[0], until):
                    return True
                if reader.finished and not records:
                    shards[shard_id]["done"] = True  # its children may be readable now

    def partitions(self, start: dict, end: dict) -> list[ShardPartition]:
        if end["batch"] == start["batch"]:
            return []
        return [
            ShardPartition(
                stream=end["stream"],
                shard_id=shard_id,
                batch=end["batch"],
                position={k: v for k, v in end["shards"][shard_id].items() if k in ("after", "at_timestamp")},
                max_records=end["max_records"],
                until=end["until"],
                metadata_path=self.options.metadata_path,
                fail_on_trimmed=self.options.fail_on_trimmed,
                decoder=self.options.decoder,
            )
            for shard_id in readable_shards(end["shards"])
        ]

    def read(self, partition: ShardPartition) -> Iterator[pa.RecordBatch]:
        batches = read_shard(kinesis_client(), partition, ShardEndStore(partition.metadata_path))
        if partition.decoder:
            batches = map(load_decoder(partition.decoder), batches)
        yield from batches

    def commit(self, end: dict) -> None:
        if end["batch"] > 0:
            ShardEndStore(self.options.metadata_path).forget_before(end["batch"])


def _list_shards(client, stream: str) -> list[dict]:
    shards, token = [], None
    while True:
        response = client.list_shards(NextToken=token) if token else client.list_shards(StreamName=stream)
        shards.extend(response["Shards"])
        token = response.get("NextToken")
        if not token:
            return shards
