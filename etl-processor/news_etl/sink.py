"""Writes a micro-batch as Parquet to S3 from the executors, with pyarrow's native S3 client.

``write_batch`` is the driver's side, one Spark job a batch: it gives the rows their output
columns (``output_rows``), partitions them as the writer's tasks take them (``rows_to_write``)
and collects what the tasks wrote (``WrittenFile``). Each task streams its rows into one
Parquet file per (kind, dt) it holds. Two layouts (``--output-format``, fixed per checkpoint):

- ``delta`` (default): files go straight into the table's folder under a name unique to the
  attempt, ``BUCKET/KIND/dt=YYYY-MM-DD/part-<run id>-<batch id>-<uuid>.parquet``. A file is
  invisible to readers until the driver commits it (``news_etl.table``); a failed attempt leaves
  an uncommitted file that vacuum removes. Each task reports its files' sizes and statistics
  for the commit.
- ``parquet``: a plain folder, ``BUCKET/KIND/dt=YYYY-MM-DD/part-<run id>-<batch id>.parquet``.
  The batch is shuffled first so that each (kind, dt) belongs to one task. The name depends
  only on the checkpoint's run id, the batch id and the partition, and a replayed batch reads
  exactly the same records (see ``news_etl.kinesis``), so a replay overwrites each file with the
  same rows. Files are written under ``_staging/`` and copied into
  place when complete, so readers never see a partial file.

``dt`` is the UTC date the record arrived in Kinesis, for both tables: a date the job's own clock
bounds, where the date published is the producer's (any of 10,000 years). Each task reports each file
it wrote as a ``WrittenFile`` (with, per hour, the articles and words in it), which the driver
commits (``news_etl.table``) and counts (``news_etl.job``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from news_etl.aws import s3_filesystem
from news_etl.schemas import ENRICHED, ENRICHED_SCHEMA, OUTPUT_COLUMNS, OUTPUT_SCHEMAS, PROCESSED_AT
from news_etl.settings import DELTA, PARQUET
from news_etl.state import EARLIER, HOUR_FORMAT, LATER, PUBLISHED_WITHIN_DAYS, merge_windows

COMPRESSION = "zstd"
# A file's rows are buffered until either bound, then written as one row group: large enough for
# readers, bounded in memory whatever the records' size (50,000 rows of 1 MiB would be 50 GB).
ROW_GROUP_ROWS = 50_000
ROW_GROUP_BYTES = 64 * 2**20


# Columns whose minimum and maximum go into Delta's file statistics (data skipping on time and
# length); the text columns are left out: their prefixes would skip little and cost much.
STATS_COLUMNS = ("published_at", "word_count", "arrival_time", "processed_at")


Hourly = dict[str, list[int]]  # window -> [articles, words], as ``state.BatchResult`` has it
HOUR_COUNT = pa.struct([("hour", pa.string()), ("articles", pa.int64()), ("words", pa.int64())])


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file a writer task wrote, as the driver commits and counts it.

    The task returns it to the driver as one Arrow row (``to_arrow``, in ``WRITTEN_FILE_SCHEMA``,
    which is derived from these fields), and the driver reads it back with ``from_row``.
    """

    kind: str  # ENRICHED or QUARANTINED
    dt: str  # the partition, YYYY-MM-DD
    path: str  # BUCKET/KIND/dt=.../part-....parquet, without s3://
    rows: int
    bytes: int  # the file's size
    hourly: Hourly  # the enriched rows per hour published; empty for quarantine
    stats: str  # Delta's JSON statistics of the file, as its AddAction takes them

    def to_arrow(self) -> pa.RecordBatch:
        row = asdict(self) | {"hourly": [{"hour": hour, "articles": articles, "words": words}
                                         for hour, (articles, words) in self.hourly.items()]}  # fmt: skip
        return pa.RecordBatch.from_pylist([row], schema=WRITTEN_FILE_SCHEMA)

    @classmethod
    def from_batches(cls, batches: Iterable[pa.RecordBatch]) -> list[WrittenFile]:
        """The files described in ``to_arrow``'s batches (what a ``batch_writer`` function yields)."""
        return [cls.from_row(row) for batch in batches for row in batch.to_pylist()]

    @classmethod
    def from_row(cls, row: Mapping) -> WrittenFile:
        """A file from one row of ``to_arrow``'s, as a dict: pyarrow's ``to_pylist()`` or Spark's
        ``Row.asDict(recursive=True)``."""
        hourly = {hour["hour"]: [hour["articles"], hour["words"]] for hour in row["hourly"]}
        return cls(**{field.name: row[field.name] for field in fields(cls)} | {"hourly": hourly})


# Each field's Arrow type, by its annotation.
_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "Hourly": pa.list_(HOUR_COUNT)}
WRITTEN_FILE_SCHEMA = pa.schema([(field.name, _ARROW_TYPES[field.type]) for field in fields(WrittenFile)])
WRITTEN_FILE_SPARK_SCHEMA = from_arrow_schema(WRITTEN_FILE_SCHEMA)  # as ``mapInArrow`` is told it


def output_path(bucket: str, kind: str, dt: str, run_id: str, batch_id: int, attempt: str = "") -> str:
    """Unique per checkpoint (``run_id``), batch and partition, and per ``attempt`` when given;
    without one, the same on every replay."""
    suffix = f"-{attempt}" if attempt else ""
    return f"{bucket}/{kind}/dt={dt}/part-{run_id}-{batch_id:08d}{suffix}.parquet"


def committed_parquet(bucket: str, run_id: str, last_batch_id: int) -> ds.Dataset:
    """The enriched plain-Parquet folder's files but those of this checkpoint's batches after
    ``last_batch_id`` (written by an attempt the checkpoint has not counted)."""
    filesystem = s3_filesystem()
    base = f"{bucket}/{ENRICHED}"
    listed = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    uncounted = re.compile(rf"part-{re.escape(run_id)}-(\d+)\.parquet$")
    paths = [info.path for info in listed if info.path.endswith(".parquet")
             and not ((match := uncounted.search(info.path)) and int(match.group(1)) > last_batch_id)]  # fmt: skip
    return ds.dataset(paths, schema=ENRICHED_SCHEMA.append(pa.field("dt", pa.string())), filesystem=filesystem,
                      partitioning=ds.partitioning(pa.schema([pa.field("dt", pa.string())]), flavor="hive"),
                      partition_base_dir=base)  # fmt: skip


def staging_path(final: str) -> str:
    """Where a file is written before it is complete: readers of the output never list it."""
    bucket, key = final.split("/", 1)
    return f"{bucket}/_staging/{key}"


def windows(table: pa.Table) -> Hourly:
    """Articles and words per window of ``published_at`` (``state``: its hour, or ``EARLIER`` or
    ``LATER`` when published long before or after it arrived), of enriched rows."""
    published, arrived = table["published_at"], table["arrival_time"]
    hours = pc.strftime(pc.floor_temporal(published, unit="hour"), format=HOUR_FORMAT, locale="C")
    earlier = pc.less(published, pc.subtract(arrived, pa.scalar(timedelta(days=PUBLISHED_WITHIN_DAYS))))
    later = pc.greater_equal(published, pc.add(arrived, pa.scalar(timedelta(days=1))))
    window = pc.if_else(earlier, EARLIER, pc.if_else(later, LATER, hours))
    grouped = (
        pa.table({"window": window, "words": table["word_count"]})
        .group_by("window")
        .aggregate([("words", "count"), ("words", "sum")])
    )
    return {
        window: [count, words]
        for window, count, words in zip(
            grouped["window"].to_pylist(),
            grouped["words_count"].to_pylist(),
            grouped["words_sum"].to_pylist(),
            strict=True,
        )
    }


def _stat_value(value, *, upper: bool = False):
    """A statistic as Delta's JSON holds it: timestamps in ISO-8601 UTC to the millisecond, as
    delta-rs writes them. A maximum is rounded up, not cut (the protocol allows either), so that
    a reader pruning files on it never skips a row of the file's last millisecond."""
    if not hasattr(value, "isoformat"):
        return value
    if upper and value.microsecond % 1000:
        value += timedelta(microseconds=1000 - value.microsecond % 1000)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Stats:
    """Delta's per-file statistics, gathered as row groups are written."""

    def __init__(self, schema: pa.Schema) -> None:
        self.columns = [name for name in STATS_COLUMNS if name in schema.names]
        self.rows, self.low, self.high, self.nulls = 0, {}, {}, dict.fromkeys(schema.names, 0)

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for name in self.nulls:
            self.nulls[name] += table[name].null_count
        for name in self.columns:
            bounds = pc.min_max(table[name])
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if low is not None:
                self.low[name] = low if name not in self.low else min(self.low[name], low)
                self.high[name] = high if name not in self.high else max(self.high[name], high)

    def to_json(self) -> str:
        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {name: _stat_value(value) for name, value in self.low.items()},
                "maxValues": {name: _stat_value(value, upper=True) for name, value in self.high.items()},
                "nullCount": self.nulls,
            }
        )


class _File:
    """One output file, written in row groups as rows arrive.

    ``staged``: written under ``_staging/`` and copied into place only once complete, because if
    the task fails, pyarrow's writer still finishes the upload when it is garbage-collected, and
    that partial file must not be where readers of a plain folder look. A Delta table's readers
    see only committed files, so there the file is written in place.
    """

    def __init__(self, filesystem, path: str, schema: pa.Schema, *, count_hours: bool, staged: bool) -> None:
        self.path, self.rows, self._count_hours = path, 0, count_hours
        self.hourly: Hourly = {}
        self.stats = _Stats(schema)
        self._filesystem, self._staging = filesystem, staging_path(path) if staged else path
        self._pending: list[pa.Table] = []
        self._pending_rows = self._pending_bytes = 0
        self._writer = pq.ParquetWriter(self._staging, schema, filesystem=filesystem, compression=COMPRESSION)

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        self.rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.concat_tables(self._pending)
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
            if self._count_hours:
                merge_windows(self.hourly, windows(table))
            self.stats.add(table)
            self._writer.write_table(table)

    def close(self, kind: str, dt: str) -> WrittenFile:
        """Complete the file (in place, if staged) and describe it."""
        self._flush()
        self._writer.close()
        if self._staging != self.path:
            self._filesystem.copy_file(self._staging, self.path)
            self._filesystem.delete_file(self._staging)
        size = self._filesystem.get_file_info(self.path).size
        return WrittenFile(kind=kind, dt=dt, path=self.path, rows=self.rows, bytes=size, hourly=self.hourly,
                           stats=self.stats.to_json())  # fmt: skip


def batch_writer(bucket: str, run_id: str, batch_id: int, output_format: str = DELTA):
    """A ``mapInArrow`` function writing its rows (``schemas.OUTPUT_COLUMNS``) to S3 in ``output_format``,
    returning a ``WrittenFile`` row for each file written (``WRITTEN_FILE_SPARK_SCHEMA``)."""
    delta = output_format == DELTA

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        filesystem = s3_filesystem()
        files: dict[tuple[str, str], _File] = {}
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for kind, dt in {(k, d) for k, d in zip(table["kind"].to_pylist(), table["dt"].to_pylist(), strict=True)}:
                mask = pc.and_(pc.equal(table["kind"], kind), pc.equal(table["dt"], dt))
                rows = table.filter(mask).select(OUTPUT_SCHEMAS[kind].names).cast(OUTPUT_SCHEMAS[kind])
                if (kind, dt) not in files:
                    path = output_path(bucket, kind, dt, run_id, batch_id, uuid.uuid4().hex if delta else "")
                    files[kind, dt] = _File(filesystem, path, OUTPUT_SCHEMAS[kind], count_hours=kind == ENRICHED,
                                            staged=not delta)  # fmt: skip
                files[kind, dt].add(rows)
        for (kind, dt), file in files.items():
            yield file.close(kind, dt).to_arrow()

    return write


def output_rows(records: DataFrame) -> DataFrame:
    """Stamp ``processed_at`` and the ``dt`` partition (the UTC date arrived), in the writer's column order."""
    dt = F.date_format("arrival_time", "yyyy-MM-dd")
    return records.select(
        "kind",
        dt.alias("dt"),
        *[name for name in ENRICHED_SCHEMA.names if name != PROCESSED_AT.name],
        F.current_timestamp().alias(PROCESSED_AT.name),
        "raw_data",
        "error",
    ).select(*OUTPUT_COLUMNS)


def rows_to_write(batch: DataFrame, output_format: str) -> DataFrame:
    """The batch's output rows, partitioned as the writer's tasks take them.

    Into a Delta table, each task of the dedup stage writes the rows it holds, a file per (kind,
    dt), and compaction merges the files later: one shuffle a batch, not two. A plain Parquet
    folder, which nothing merges, is shuffled once more so that one task writes each (kind, dt).
    """
    rows = output_rows(batch)
    if output_format == PARQUET:
        rows = rows.repartition(F.col("kind"), F.col("dt"))
    return rows


def write_batch(batch: DataFrame, bucket: str, run_id: str, batch_id: int, output_format: str) -> list[WrittenFile]:
    """Write one micro-batch (the deduplicated records) to S3 in a single Spark job; returns the files written."""
    writer = batch_writer(bucket, run_id, batch_id, output_format)
    written = rows_to_write(batch, output_format).mapInArrow(writer, WRITTEN_FILE_SPARK_SCHEMA).collect()
    return [WrittenFile.from_row(row.asDict(recursive=True)) for row in written]
