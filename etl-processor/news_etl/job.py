"""The ETL job: Kinesis -> Spark Structured Streaming -> enriched Delta tables (or Parquet) on S3.

``python -m news_etl`` (``news_etl.cli.job``) runs it, for docker compose, spark-submit and the
host alike: ``preflight`` checks what it needs and takes the checkpoint's lease (``lease``: one
job per checkpoint, checked before each commit), ``start_session`` builds the Spark session, and
``run`` starts the query and waits for it. Per micro-batch, in order:

1. the Kinesis data source reads each shard in a Spark task (``news_etl.kinesis``);
2. in the same task, each record is validated and enriched as it is read (``transform``);
3. Spark's state store drops article ids seen within the dedup horizon
   (``dropDuplicatesWithinWatermark`` on arrival time: the state stays bounded);
4. executors write Parquet to S3 with pyarrow (``sink``), on the session ``session`` builds;
5. the driver commits the batch's files to the Delta tables, once per batch id (``table``);
6. it adds the batch's figures to the checkpoint's running totals (``state``), once per batch
   id, prints the batch summary and the averages (``report``), and rewrites the metrics file.

At the end of a run (``--once``, or the idle timeout) the driver compacts the tables.
"""

from __future__ import annotations

import logging
import re
import time

from botocore.exceptions import ClientError
from deltalake.exceptions import DeltaError
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession

from news_etl.aws import kinesis_client, s3_client
from news_etl.kinesis import ShardEnd, ShardEndStore
from news_etl.lease import Lease
from news_etl.report import batch_report, show
from news_etl.schemas import ENRICHED, PREPARED_SPARK_SCHEMA, QUARANTINED
from news_etl.session import build_session, fix_state_partitions
from news_etl.settings import DELTA, PARQUET, ConfigurationError, Settings
from news_etl.sink import WrittenFile, write_batch
from news_etl.state import (
    BatchResult,
    RunState,
    load_state,
    merge_windows,
    record_state_partitions,
    save_metrics,
    save_state,
)
from news_etl.table import commit_batch, compact, create_tables, is_table

log = logging.getLogger("etl")

IDLE_POLL_S = 1.0


# --- Preflight: fail in one line before Spark starts -----------------------------------------


def preflight(settings: Settings, lease: Lease) -> RunState:
    """Check the stream and the buckets, take the checkpoint's ``lease``; return the checkpoint's
    running totals."""
    try:
        summary = kinesis_client().describe_stream_summary(StreamName=settings.stream)["StreamDescriptionSummary"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            raise ConfigurationError(f"stream {settings.stream!r} not found") from None
        raise
    retention = summary.get("RetentionPeriodHours", 24)
    if settings.dedup_horizon_hours < retention:  # the watermark would drop older records as late
        raise ConfigurationError(
            f"--dedup-horizon-hours ({settings.dedup_horizon_hours}) must be at least the stream's "
            f"retention period ({retention} h)"
        )
    buckets = {settings.bucket: "bucket"}
    if settings.checkpoint_on_s3:
        buckets.setdefault(settings.checkpoint.removeprefix("s3://").split("/")[0], "--checkpoint's bucket")
    for bucket, what in buckets.items():
        try:
            s3_client().head_bucket(Bucket=bucket)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchBucket", "403"):
                raise ConfigurationError(f"{what} {bucket!r} not found or not accessible") from None
            raise
    lease.take()  # before anything is written to the checkpoint: a second job refuses here
    state = load_state(settings, summary["StreamCreationTimestamp"].isoformat())
    check_output_folders(settings.bucket, state.output_format)
    if state.output_format == DELTA:
        try:
            create_tables(settings.bucket)
        except OSError as error:  # delta-rs's S3 errors, after its own retries
            message = f"cannot create the Delta tables in s3://{settings.bucket}: {one_line(error)}"
            raise ConfigurationError(message) from None
    return state


def one_line(error: Exception) -> str:
    """delta-rs's error chain (one cause a line, colour codes between) as one line."""
    parts = [re.sub(r"\x1b\[[0-9;]*m|↳", "", line).strip() for line in str(error).splitlines()]
    return " / ".join(part for part in parts if part)


def check_output_folders(bucket: str, output_format: str) -> None:
    """A Delta table and plain Parquet output never share a folder: vacuum would delete the plain
    files, and Parquet readers would read files the table no longer holds."""
    for kind in (ENRICHED, QUARANTINED):
        delta = is_table(bucket, kind)
        if output_format == DELTA and not delta and folder_has_objects(bucket, kind):
            raise ConfigurationError(f"s3://{bucket}/{kind}/ holds plain Parquet output, where a Delta table "
                                     "cannot go: use another bucket, or --output-format parquet")  # fmt: skip
        if output_format == PARQUET and delta:
            raise ConfigurationError(f"s3://{bucket}/{kind}/ is a Delta table, where plain Parquet output cannot "
                                     "go: use another bucket, or --output-format delta")  # fmt: skip


def folder_has_objects(bucket: str, kind: str) -> bool:
    return bool(s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{kind}/", MaxKeys=1).get("KeyCount"))


def start_session(settings: Settings, state: RunState) -> SparkSession:
    """The job's session (``session.build_session``), the dedup state's partitions fixed, and
    recorded with a new checkpoint's running totals."""
    spark = build_session(settings, state)
    record_state_partitions(settings.state_file, state, fix_state_partitions(spark, state))
    return spark


def article_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    """Validated, enriched and deduplicated records, as a streaming DataFrame.

    The source's read tasks classify each record as they read it (``transform.classify``).
    """
    articles = (
        spark.readStream.format("kinesis")
        .schema(PREPARED_SPARK_SCHEMA)
        .option("decoder", "news_etl.transform:classify")
        .option("streamName", settings.stream)
        .option("metadataPath", settings.shard_ends)
        .option("startingPosition", settings.starting_position)
        .option("maxRecordsPerBatch", str(settings.max_records_per_batch))
        .option("maxBytesPerBatch", str(settings.max_bytes_per_batch))
        .option("failOnTrimmed", str(settings.fail_on_trimmed).lower())
        .load()
    )
    horizon = f"{settings.dedup_horizon_hours} hours"
    return articles.withWatermark("arrival_time", horizon).dropDuplicatesWithinWatermark(["dedup_key"])


def batch_result(files: list[WrittenFile], ends: dict[str, ShardEnd]) -> BatchResult:
    hourly: dict[str, list[int]] = {}
    for file in files:
        merge_windows(hourly, file.hourly)
    return BatchResult(
        records_read=sum(end.rows_read for end in ends.values()),  # a KPL aggregate's user records one by one
        enriched=sum(file.rows for file in files if file.kind == ENRICHED),
        quarantined=sum(file.rows for file in files if file.kind == QUARANTINED),
        hourly=hourly,
        trimmed_gaps=sum(1 for end in ends.values() if end.trimmed),
    )


class BatchHandler:
    """``foreachBatch``: write, then account for the batch exactly once and report it."""

    def __init__(self, settings: Settings, state: RunState, lease: Lease) -> None:
        self.settings, self.state, self.lease = settings, state, lease
        self.rows_seen_at = time.monotonic()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        files = write_batch(batch, self.settings.bucket, self.state.run_id, batch_id, self.state.output_format)
        ends = ShardEndStore(self.settings.shard_ends).load(batch_id)
        if files and not ends:
            raise RuntimeError(f"no shard ends recorded for batch {batch_id}: source and Spark batches diverged")
        result = batch_result(files, ends)
        if result.duplicates_dropped < 0:
            raise RuntimeError(f"batch {batch_id} wrote more rows than it read: {result}")
        if self.state.output_format == DELTA:
            self.lease.check()  # a job that lost its checkpoint to another commits nothing (news_etl.lease)
            for commit in commit_batch(self.settings.bucket, self.state.run_id, batch_id, files, result.records_read):
                log.info("batch %d: %s %d rows in %d files, %s", batch_id, commit.kind, commit.rows, commit.files,
                         f"version {commit.version}" if commit.version is not None else "committed before")  # fmt: skip
        self.lease.check()
        if self.state.apply(batch_id, result):
            save_state(self.settings.state_file, self.state)
        if self.settings.metrics_json:
            save_metrics(self.settings.metrics_json, self.state)
        if result.records_read:
            self.rows_seen_at = time.monotonic()
        show(batch_report(self.settings.stream, batch_id, result, ends, self.state, time.monotonic() - started))


def run(spark: SparkSession, settings: Settings, state: RunState, lease: Lease) -> None:
    handler = BatchHandler(settings, state, lease)
    writer = (
        article_stream(spark, settings)
        .writeStream.foreachBatch(handler)
        .option("checkpointLocation", settings.spark_checkpoint)
        .queryName(f"news-etl-{settings.stream}")
    )
    if settings.once:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{settings.trigger_interval} seconds")
    query = writer.start()
    log.info("query started on stream %s, checkpoint %s", settings.stream, settings.checkpoint)
    while query.isActive:
        try:
            query.awaitTermination(IDLE_POLL_S)
        except StreamingQueryException:
            break  # raised below, once the lease has said whether it was lost
        # Not idle before the first trigger has finished (the source may still be planning its first
        # poll, slow on a cluster starting up), nor while a batch with new records is planned or running.
        if query.lastProgress is None or query.status["isDataAvailable"]:
            handler.rows_seen_at = time.monotonic()
        idle = time.monotonic() - handler.rows_seen_at
        if settings.idle_timeout and not settings.once and idle > settings.idle_timeout:
            log.info("no new records for %.0f s: stopping", idle)
            query.stop()
        if lease.lost:  # another job has the checkpoint: stop before the next batch
            query.stop()
    failure = query.exception()
    if failure or lease.lost:
        lease.check()  # a lost lease, not how the query ended, is the one line the job stops with
    if failure:
        raise failure
    if state.output_format == DELTA and settings.compact_target_mb:
        compact_after_run(settings)


def compact_after_run(settings: Settings) -> None:
    """Best effort: every batch is committed and counted by now, so a compaction that fails (an S3
    error, or a conflict with a `make compact` running at the same moment) is a warning, not a
    failed run; the next run or `make compact` does it."""
    try:
        done = compact(settings.bucket, settings.compact_target_mb)
    except (DeltaError, OSError) as error:
        log.warning("compaction after the run failed, the output is committed: %s", error)
        return
    for table in done:
        show(f"compacted {table.kind}: {table.files_before} files -> {table.files_after} (version {table.version})")
