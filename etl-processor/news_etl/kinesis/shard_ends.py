"""Where the read of each shard stopped, per batch: what makes a replayed batch exact.

Kinesis cannot cheaply say where a shard ends, so a batch's offset cannot name its last sequence
numbers in advance. Instead the task that first reads a shard for batch N records where it
stopped (a ``ShardEnd``) before Spark can use its rows; any re-run of batch N (a retried task, a
restarted query) reads exactly up to that recorded end, and batch N+1 starts after it. The
awslabs spark-sql-kinesis-connector's metadata committer does the same.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pyarrow.fs as pafs

from news_etl import checkpoint_files


@dataclass(frozen=True, kw_only=True)
class TrimmedGap:
    """Records the stream's retention removed before they were read (Kinesis does not say how many)."""

    after: str | None  # the last record read before the gap; None: the shard had not been read
    resumed_at: str | None = None  # the first record read after the gap, once a batch reads one
    resumed_arrival: str | None = None  # that record's arrival time, ISO-8601
    shard_expired: bool = False  # the whole shard left the stream before it was read to its end

    def describe(self, stream: str, shard_id: str) -> str:
        """One line: which records were trimmed before they were read, and where reading went on."""
        after = f"after sequence number {self.after}" if self.after else "not yet read"
        if self.shard_expired:
            where = "the whole shard has expired from the stream"
        elif self.resumed_at:
            where = f"reading resumed at {self.resumed_at}, which arrived {self.resumed_arrival}"
        else:
            where = "nothing older is left in the shard"
        return (
            f"{stream}/{shard_id}: records {after} were trimmed by the stream's retention before they were read "
            f"(Kinesis does not say how many); {where}"
        )


class TrimmedRecordsError(RuntimeError):
    """Records were trimmed by the stream's retention before they were read (``failOnTrimmed``)."""

    @classmethod
    def of(cls, stream: str, shard_id: str, gap: TrimmedGap) -> TrimmedRecordsError:
        return cls(f"{gap.describe(stream, shard_id)} (--fail-on-trimmed)")


@dataclass(frozen=True, kw_only=True)
class ShardEnd:
    """Where the read of one shard for one batch stopped, as the executor recorded it."""

    last_sequence_number: str | None  # None: nothing was read
    records: int  # Kinesis records: what a replay reads again
    finished: bool  # a closed shard read to its end
    caught_up: bool  # reached the stream's tip (or the batch's cut-off)
    millis_behind_latest: int
    trimmed: TrimmedGap | None = None  # records this batch should have read first were trimmed
    executor: str = ""  # the Spark executor whose task read the shard
    # The rows those records made: a KPL aggregate's user records one by one (a corrupt one as one
    # row). None: as many as ``records`` (an end recorded before aggregates were read as such).
    rows: int | None = None

    @property
    def rows_read(self) -> int:
        return self.records if self.rows is None else self.rows

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, text: bytes) -> ShardEnd:
        fields = json.loads(text)
        trimmed = fields.pop("trimmed", None)
        return cls(**fields, trimmed=TrimmedGap(**trimmed) if trimmed else None)


OFFSET_FILE = "_offset.json"  # beside a batch's shard ends: the batch's offset, as Spark logged it
REPLAYED = "_replayed"  # a folder beside them: what a replay could read where records were trimmed since


class ShardEndStore:
    """Per batch and shard, where reading stopped: a JSON file created once, read on replay; and
    per batch the offset the planner gave it (``put_offset``), from which the driver works out
    where the batch leaves each shard (``offsets.positions_after``).

    ``path`` is a local directory, or ``s3://bucket/prefix`` on a cluster whose executors do not
    share a disk with the driver.
    """

    def __init__(self, path: str) -> None:
        if "://" in path and not path.startswith(("s3://", "file://")):
            raise ValueError(f"option metadataPath must be a local path or s3://bucket/prefix, got {path!r}")
        self._path = path

    def _file(self, batch: int, name: str) -> str:
        return f"{self._path.rstrip('/')}/{batch:012d}/{name}"

    def get(self, batch: int, shard_id: str) -> ShardEnd | None:
        document = checkpoint_files.read(self._file(batch, f"{shard_id}.json"))
        return ShardEnd.from_json(document) if document is not None else None

    def put(self, batch: int, shard_id: str, end: ShardEnd) -> ShardEnd:
        """Record ``end`` unless an end is recorded already; returns the one that is recorded.

        Created only if absent (``checkpoint_files.create``): when two attempts of one read task
        race (a retry, and a zombie on an executor declared lost), the first end recorded stays,
        and the other attempt learns of it.
        """
        created = checkpoint_files.create(self._file(batch, f"{shard_id}.json"), end.to_json())
        return end if created else self.get(batch, shard_id)

    def put_offset(self, batch: int, offset: dict) -> None:
        """Record the batch's offset; a re-plan of the same batch (a restart) replaces it."""
        checkpoint_files.replace(self._file(batch, OFFSET_FILE), json.dumps(offset).encode())

    def put_replayed(self, batch: int, shard_id: str, end: ShardEnd) -> None:
        """Record what a replay of the batch read where records were trimmed since its first read
        (the same end, fewer records, the gap); ``load`` gives it instead of the first read's."""
        checkpoint_files.replace(self._file(batch, f"{REPLAYED}/{shard_id}.json"), end.to_json())

    def offset(self, batch: int) -> dict | None:
        document = checkpoint_files.read(self._file(batch, OFFSET_FILE))
        return json.loads(document) if document is not None else None

    def load(self, batch: int) -> dict[str, ShardEnd]:
        """Each shard's end of the batch: what its replay read where one recorded that, else its first read."""
        return self._load(f"{batch:012d}") | self._load(f"{batch:012d}/{REPLAYED}")

    def _load(self, folder: str) -> dict[str, ShardEnd]:
        filesystem, root = checkpoint_files.filesystem(self._path)
        ends = {}
        for info in filesystem.get_file_info(pafs.FileSelector(f"{root}/{folder}", allow_not_found=True)):
            name = info.base_name
            if info.type == pafs.FileType.File and name.endswith(".json") and not name.startswith((".", "_")):
                with filesystem.open_input_stream(info.path) as stream:
                    ends[name.removesuffix(".json")] = ShardEnd.from_json(stream.read())
        return ends

    def clear(self) -> None:
        """Drop every batch's records: for a query that starts its batch numbers again."""
        filesystem, root = checkpoint_files.filesystem(self._path)
        filesystem.delete_dir_contents(root, missing_dir_ok=True)

    def forget_before(self, batch: int) -> None:
        """Drop the records of batches before ``batch``: no replay can need them."""
        filesystem, root = checkpoint_files.filesystem(self._path)
        for info in filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.isdigit() and int(info.base_name) < batch:
                filesystem.delete_dir(info.path)
