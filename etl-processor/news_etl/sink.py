"""Writes a micro-batch as Parquet to S3 from the executors, with pyarrow's native S3 client.

No ``s3a://`` (the hadoop-aws jars are not needed). The batch is shuffled so that each output
path belongs to one task; that task streams its rows into one Parquet file per path:

    s3://BUCKET/enriched/dt=YYYY-MM-DD/part-<run id>-<batch id>.parquet     (dt: UTC date published)
    s3://BUCKET/quarantine/dt=YYYY-MM-DD/part-<run id>-<batch id>.parquet   (dt: UTC date arrived)

A file's name depends only on the checkpoint's run id, the batch id and its partition, and a
replayed batch reads exactly the same records (see ``news_etl.kinesis``), so a replay overwrites
each file with the same rows: readers never see an article twice. Files are written under
``_staging/`` and copied into place when complete. Each task reports its files and, per hour,
the articles and words it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from news_etl.aws import s3_filesystem
from news_etl.schemas import ENRICHED, OUTPUT_SCHEMAS
from news_etl.state import merge_windows

RESULT_SCHEMA = "kind string, dt string, path string, rows long, hourly string"  # what Spark receives
RESULT_ARROW_SCHEMA = pa.schema(
    [("kind", pa.string()), ("dt", pa.string()), ("path", pa.string()), ("rows", pa.int64()), ("hourly", pa.string())]
)
COMPRESSION = "zstd"
# A file's rows are buffered until either bound, then written as one row group: large enough for
# readers, bounded in memory whatever the records' size (50,000 rows of 1 MiB would be 50 GB).
ROW_GROUP_ROWS = 50_000
ROW_GROUP_BYTES = 64 * 2**20


def output_path(bucket: str, kind: str, dt: str, run_id: str, batch_id: int) -> str:
    """Unique per checkpoint (``run_id``), batch and partition; the same on every replay."""
    return f"{bucket}/{kind}/dt={dt}/part-{run_id}-{batch_id:08d}.parquet"


def staging_path(final: str) -> str:
    """Where a file is written before it is complete: readers of the output never list it."""
    bucket, key = final.split("/", 1)
    return f"{bucket}/_staging/{key}"


def _hourly(table: pa.Table) -> dict[str, list[int]]:
    hours = pc.strftime(pc.floor_temporal(table["published_at"], unit="hour"), format="%Y-%m-%dT%H:00:00Z")
    grouped = (
        pa.table({"hour": hours, "words": table["word_count"]})
        .group_by("hour")
        .aggregate([("words", "count"), ("words", "sum")])
    )
    return {
        hour: [count, words]
        for hour, count, words in zip(
            grouped["hour"].to_pylist(),
            grouped["words_count"].to_pylist(),
            grouped["words_sum"].to_pylist(),
            strict=True,
        )
    }


class _File:
    """One output file, written in row groups as rows arrive, published whole when closed.

    It is written under ``_staging/`` and copied into place only once complete: if the task
    fails, pyarrow's writer still finishes the upload when it is garbage-collected, and that
    partial file must not be where readers look.
    """

    def __init__(self, filesystem, path: str, schema: pa.Schema, *, count_hours: bool) -> None:
        self.path, self.rows, self._count_hours = path, 0, count_hours
        self.hourly: dict[str, list[int]] = {}
        self._filesystem, self._staging = filesystem, staging_path(path)
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
                merge_windows(self.hourly, _hourly(table))
            self._writer.write_table(table)

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._filesystem.copy_file(self._staging, self.path)
        self._filesystem.delete_file(self._staging)


def batch_writer(bucket: str, run_id: str, batch_id: int):
    """A ``mapInArrow`` function writing its rows (``schemas.OUTPUT_COLUMNS``) to S3."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        filesystem = s3_filesystem()
        files: dict[tuple[str, str], _File] = {}
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for kind, dt in {(k, d) for k, d in zip(table["kind"].to_pylist(), table["dt"].to_pylist(), strict=True)}:
                mask = pc.and_(pc.equal(table["kind"], kind), pc.equal(table["dt"], dt))
                rows = table.filter(mask).select(OUTPUT_SCHEMAS[kind].names).cast(OUTPUT_SCHEMAS[kind])
                if (kind, dt) not in files:
                    path = output_path(bucket, kind, dt, run_id, batch_id)
                    files[kind, dt] = _File(filesystem, path, OUTPUT_SCHEMAS[kind], count_hours=kind == ENRICHED)
                files[kind, dt].add(rows)
        for (kind, dt), file in files.items():
            file.close()
            yield pa.RecordBatch.from_pylist(
                [{"kind": kind, "dt": dt, "path": file.path, "rows": file.rows, "hourly": json.dumps(file.hourly)}],
                schema=RESULT_ARROW_SCHEMA,
            )

    return write
