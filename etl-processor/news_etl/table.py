"""The Delta Lake tables ``enriched`` and ``quarantine``: created, committed once per batch, compacted.

Executors write the Parquet files (``news_etl.sink``); the driver only commits them here, with
delta-rs (PyPI ``deltalake``), which does not depend on the Spark version (no delta-spark release
supports Spark 4.3). No row passes through the driver for a commit.

Exactly once: each commit carries an app transaction ``(news-etl-<run id>, batch id)``. Batches
commit in order, so a table whose ``transaction_version`` for the run is at least a batch's id
has that batch already; a replayed batch (after a crash between the commit and the checkpoint)
commits nothing there, and the files its replay wrote stay unreferenced until ``vacuum``
removes them. Readers see a batch's rows in a table all at once, or not at all.

The S3 store's commits use conditional puts (no lock table), so the job and a ``compact`` run
by hand or on a schedule can commit to the same table at once; compaction rewrites files
without changing data and delta-rs checks it against the appends it raced.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction

from news_etl.aws import delta_storage_options
from news_etl.near_dup import SCHEME
from news_etl.schemas import ENRICHED, OUTPUT_SCHEMAS, QUARANTINED
from news_etl.settings import DEFAULT_COMPACT_TARGET_MB, ConfigurationError
from news_etl.sink import WrittenFile

log = logging.getLogger("etl.table")

PARTITION = "dt"
KINDS = (ENRICHED, QUARANTINED)
# Files a later version replaced are kept this long, so a pinned version stays readable for a
# week (Delta's own default; a replay never needs old files). Each table carries it as the Delta
# property below, which delta-rs's vacuum enforces: a shorter retention is refused. It also keeps
# the files a running batch has written but not yet committed, which look like any uncommitted
# file to vacuum: a batch lives minutes.
DEFAULT_RETENTION_HOURS = 168
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
TABLE_PROPERTIES = {RETENTION_PROPERTY: f"interval {DEFAULT_RETENTION_HOURS} hours"}
# Each table's description says its layout; a table without it was made by an earlier version of
# the job, whose enriched `dt` was the date published: a value producers control, so that 1,000
# articles on 1,000 days made 1,000 partitions that compaction cannot merge.
LAYOUT = "news-etl {kind}: partitioned by dt, the UTC date each record arrived in Kinesis"
# The enriched table's near-duplicate keys and split ratios, fixed for its life: a cluster's keys
# are comparable only with keys made the same way, and its split is a function of these ratios.
NEAR_DUP_PROPERTY, SPLIT_PROPERTY = "news_etl.near_dup", "news_etl.split_ratios"


def table_uri(bucket: str, kind: str) -> str:
    """Where the ``kind`` table lives in ``bucket``."""
    return f"s3://{bucket}/{kind}"


def table_schema(kind: str) -> pa.Schema:
    """The table's columns: the file's, and the partition column that Delta keeps in the log."""
    return OUTPUT_SCHEMAS[kind].append(pa.field(PARTITION, pa.string()))


def app_id(run_id: str) -> str:
    """The app transaction id of a checkpoint's commits."""
    return f"news-etl-{run_id}"


def open_table(bucket: str, kind: str, version: int | None = None) -> DeltaTable:
    """The ``kind`` table at ``version`` (default: the latest)."""
    return DeltaTable(table_uri(bucket, kind), version=version, storage_options=delta_storage_options())


def is_table(bucket: str, kind: str) -> bool:
    """Whether ``s3://bucket/kind`` holds a Delta table (a ``_delta_log``)."""
    return DeltaTable.is_deltatable(table_uri(bucket, kind), storage_options=delta_storage_options())


def create_tables(bucket: str, split_ratios: str) -> str:
    """Create both tables, partitioned by ``dt`` and with ``TABLE_PROPERTIES``, unless they exist
    (idempotent); a new enriched table records ``split_ratios``. Returns the enriched table's.

    Raises ``ConfigurationError``, before creating either, when an existing table is not one this
    job writes: other columns or partitions (delta-rs would commit the files all the same, and
    readers would not see the new columns), made by an earlier version (``LAYOUT``), or with other
    near-duplicate keys (``near_dup.SCHEME``).
    """
    options = delta_storage_options()
    missing = []
    for kind in KINDS:
        if is_table(bucket, kind):
            _check_table(open_table(bucket, kind), kind, table_uri(bucket, kind))
        else:
            missing.append(kind)
    for kind in missing:  # "ignore": another job may make it at the same moment
        properties = TABLE_PROPERTIES | ({NEAR_DUP_PROPERTY: SCHEME, SPLIT_PROPERTY: split_ratios}
                                         if kind == ENRICHED else {})  # fmt: skip
        DeltaTable.create(table_uri(bucket, kind), table_schema(kind), mode="ignore", partition_by=[PARTITION],
                          description=LAYOUT.format(kind=kind), configuration=properties,
                          raise_if_key_not_exists=False, storage_options=options)  # fmt: skip
    return open_table(bucket, ENRICHED).metadata().configuration[SPLIT_PROPERTY]


def _check_table(table: DeltaTable, kind: str, uri: str) -> None:
    expected = Schema.from_arrow(table_schema(kind)).fields
    if table.schema().fields != expected or table.metadata().partition_columns != [PARTITION]:
        raise ConfigurationError(
            f"the Delta table {uri} has other columns or partitions than this job writes: write to another bucket"
        )
    if table.metadata().description != LAYOUT.format(kind=kind):
        raise ConfigurationError(
            f"the Delta table {uri} was made by an earlier version of the job, whose enriched dt was "
            "the date published, which producers control: write to another bucket"
        )
    scheme = table.metadata().configuration.get(NEAR_DUP_PROPERTY)
    if kind == ENRICHED and scheme != SCHEME:
        raise ConfigurationError(f"the Delta table {uri} holds near-duplicate keys made another way ({scheme}): "
                                 "write to another bucket")  # fmt: skip


@dataclass(frozen=True)
class Commit:
    """What a batch committed to one table; ``version`` None when it was committed before."""

    kind: str
    files: int
    rows: int
    version: int | None


def add_action(bucket: str, file: WrittenFile) -> AddAction:
    """The log entry of a file a task wrote, path relative to its table."""
    table = f"{bucket}/{file.kind}/"
    if not file.path.startswith(table):
        raise ValueError(f"file {file.path} is not in the table {table}")
    return AddAction(path=file.path.removeprefix(table), size=file.bytes, partition_values={PARTITION: file.dt},
                     modification_time=int(time.time() * 1000), data_change=True, stats=file.stats)  # fmt: skip


def commit_batch(bucket: str, run_id: str, batch_id: int, files: list[WrittenFile], records_read: int,
                 record: dict[str, str] | None = None) -> list[Commit]:  # fmt: skip
    """Commit a batch's files, one Delta commit per table, each at most once: quarantine first, then
    enriched. Given the batch's ``record`` (``resume.batch_record``: where it read to), enriched is
    committed even with no files, so its latest commit says where both tables' records end."""
    commits = []
    for kind in (QUARANTINED, ENRICHED):
        mine = [file for file in files if file.kind == kind]
        if not mine and not (kind == ENRICHED and record):
            continue
        rows = sum(file.rows for file in mine)
        table = open_table(bucket, kind)
        committed = table.transaction_version(app_id(run_id))  # the run's last batch here; None: none yet
        if committed is not None and committed >= batch_id:
            commits.append(Commit(kind, len(mine), rows, None))
            continue
        metadata = {"news_etl.run_id": run_id, "news_etl.batch_id": batch_id, "news_etl.rows": rows,
                    "news_etl.records_read": records_read}  # fmt: skip
        properties = CommitProperties(
            app_transactions=[Transaction(app_id(run_id), batch_id)],
            custom_metadata=metadata | (record if kind == ENRICHED and record else {}),
        )
        table.create_write_transaction([add_action(bucket, file) for file in mine], mode="append",
                                       schema=table_schema(kind), partition_by=[PARTITION],
                                       commit_properties=properties)  # fmt: skip
        table.update_incremental()
        commits.append(Commit(kind, len(mine), rows, table.version()))
    return commits


@dataclass(frozen=True)
class Compaction:
    kind: str
    files_before: int
    files_after: int
    version: int


def compact(bucket: str, target_mb: int = DEFAULT_COMPACT_TARGET_MB) -> list[Compaction]:
    """Merge each partition's small files into files of about ``target_mb``; rows are unchanged."""
    done = []
    for kind in KINDS:
        if not is_table(bucket, kind):
            continue
        table = open_table(bucket, kind)
        before = len(table.file_uris())
        table.optimize.compact(target_size=target_mb * 2**20)
        table.update_incremental()
        done.append(Compaction(kind, before, len(table.file_uris()), table.version()))
        log.info("compacted s3://%s/%s: %d files -> %d (version %d)", bucket, kind, before, done[-1].files_after,
                 table.version())  # fmt: skip
    return done


def vacuum(bucket: str, retention_hours: int | None = None) -> dict[str, int]:
    """Delete files no version younger than the retention uses, and files never committed (a failed
    attempt's) once they are that old. The retention is each table's ``RETENTION_PROPERTY``, or
    ``retention_hours`` when that is longer. Returns how many files each table lost.

    Raises ``ConfigurationError`` naming the property when ``retention_hours`` is shorter, before
    that table loses a file.
    """
    deleted = {}
    for kind in KINDS:
        if is_table(bucket, kind):
            table = open_table(bucket, kind)
            try:
                files = table.vacuum(retention_hours, dry_run=False, enforce_retention_duration=True, full=True)
            except DeltaError as error:
                if "Invalid retention period" not in str(error):  # delta-rs's refusal of a shorter retention
                    raise
                kept = table.metadata().configuration.get(RETENTION_PROPERTY, "unset: Delta's default, 1 week")
                raise ConfigurationError(
                    f"a retention of {retention_hours} hours is shorter than {table.table_uri.rstrip('/')}'s "
                    f"{RETENTION_PROPERTY} ({kept}), which pinned versions rely on"
                ) from None
            deleted[kind] = len(files)
    return deleted


def live_files(bucket: str, kind: str, version: int | None = None) -> list[tuple[str, str]]:
    """The (path without ``s3://``, dt) of each file in a version of the table (default: latest)."""
    actions = pa.table(open_table(bucket, kind, version).get_add_actions(flatten=True)).to_pydict()
    prefix = f"{bucket}/{kind}/"
    return [(prefix + path, dt) for path, dt in zip(actions["path"], actions[f"partition.{PARTITION}"], strict=True)]
