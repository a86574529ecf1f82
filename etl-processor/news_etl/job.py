"""The ETL job: Kinesis -> Spark Structured Streaming -> enriched Delta tables (or Parquet) on S3.

``python -m news_etl`` (``news_etl.cli.job``) runs it, for docker compose, spark-submit and the
host alike: ``preflight`` checks what it needs and takes the checkpoint's lease (``lease``: one
job per checkpoint, checked before each commit), ``start_session`` builds the Spark session, and
``run`` starts the query and waits for it. Per micro-batch, in order:

1. the Kinesis data source reads each shard in a Spark task (``news_etl.kinesis``);
2. in the same task, each record is validated and enriched as it is read (``transform``), and a
   valid article's content gets its near-duplicate band keys (``near_dup``);
3. Spark's state store drops article ids seen within the dedup horizon
   (``dropDuplicatesWithinWatermark`` on arrival time: the state stays bounded);
4. the driver gives each article its near-duplicate cluster and split (``clusters``);
5. executors write Parquet to S3 with pyarrow (``sink``), on the session ``session`` builds;
6. the driver commits the batch's files to the Delta tables, once per batch id (``table``), and
   adds the batch's articles to the near-duplicate index;
7. it adds the batch's figures to the checkpoint's running totals (``state``), once per batch
   id, prints the batch summary and the averages (``report``), and rewrites the metrics file.

At the end of a run (``--once``, or the idle timeout) the driver compacts the tables.

One module although past 300 lines: it is the driver's side of the job, in the order it runs
(preflight, session, query, the batch handler, the run loop); what each step does lives in the
modules it names.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
from botocore.exceptions import ClientError
from deltalake.exceptions import DeltaError
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.listener import StreamingQueryProgress

from news_etl.aws import folder_has_objects, kinesis_client, s3_client
from news_etl.clusters import ASSIGN_INPUT, ASSIGNED, ClusterIndex, load_index
from news_etl.kinesis import ShardEnd, ShardEndStore
from news_etl.kinesis.offsets import positions_after
from news_etl.lease import Lease
from news_etl.report import batch_report, show
from news_etl.resume import batch_record, check_start, load_seed
from news_etl.schemas import ENRICHED, PREPARED_SPARK_SCHEMA, QUARANTINED
from news_etl.session import build_session, fix_state_partitions
from news_etl.settings import DEFAULT_SPLIT_RATIOS, DELTA, PARQUET, ConfigurationError, Settings, split_fractions
from news_etl.sink import WrittenFile, committed_parquet, write_batch
from news_etl.state import (
    BatchResult,
    RunState,
    load_state,
    merge_windows,
    record_state_partitions,
    save_metrics,
    save_state,
)
from news_etl.table import commit_batch, compact, create_tables, is_table, open_table

log = logging.getLogger("etl")

IDLE_POLL_S = 1.0
ASSIGNED_SPARK_SCHEMA = from_arrow_schema(ASSIGNED)


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
    ratios = state.split_ratios or settings.split_ratios or DEFAULT_SPLIT_RATIOS
    if state.output_format == DELTA:
        try:
            ratios = create_tables(settings.bucket, settings.split_ratios or DEFAULT_SPLIT_RATIOS)
        except OSError as error:  # delta-rs's S3 errors, after its own retries
            message = f"cannot create the Delta tables in s3://{settings.bucket}: {one_line(error)}"
            raise ConfigurationError(message) from None
    fix_split_ratios(settings, state, ratios)
    check_start(settings, state)
    return state


def fix_split_ratios(settings: Settings, state: RunState, ratios: str) -> None:
    """Record the output's split ratios (the table's, or for plain Parquet the checkpoint's) with the
    checkpoint; another ``--split-ratios`` stops the job in one line: a cluster's split is fixed."""
    if settings.split_ratios and split_fractions(settings.split_ratios) != split_fractions(ratios):
        where = f"the table s3://{settings.bucket}/{ENRICHED}" if state.output_format == DELTA else "the checkpoint"
        raise ConfigurationError(f"--split-ratios {settings.split_ratios}: {where} splits clusters {ratios}, fixed "
                                 "for its life: drop the setting, or write to another bucket")  # fmt: skip
    if state.split_ratios != ratios:
        state.split_ratios = ratios
        save_state(settings.state_file, state)


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


def start_session(settings: Settings, state: RunState) -> SparkSession:
    """The job's session (``session.build_session``), the dedup state's partitions fixed, and
    recorded with a new checkpoint's running totals."""
    spark = build_session(settings, state)
    record_state_partitions(settings.state_file, state, fix_state_partitions(spark, state))
    return spark


def article_stream(spark: SparkSession, settings: Settings, state: RunState) -> DataFrame:
    """Validated, enriched and deduplicated records, as a streaming DataFrame.

    The source's read tasks classify each record as they read it (``transform.classify``). A query
    that started again where the tables' records end (``news_etl.resume``) is given those positions.
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
        .option("initialPositions", json.dumps(state.resumed_from.get("positions", {})))
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


def without_seeded(batch: DataFrame, seed: DataFrame, horizon_hours: int) -> DataFrame:
    """The batch's rows but the repeats of keys the tables held when the query started again
    (``resume.load_seed``): those that arrived within the dedup horizon of the key's arrival."""
    within = F.col("arrival_time") <= F.col("seed_arrival") + F.expr(f"INTERVAL {horizon_hours} HOURS")
    return batch.join(F.broadcast(seed), (F.col("dedup_key") == F.col("seed_key")) & within, "left_anti")


@contextmanager
def computed_once(batch: DataFrame) -> Iterator[DataFrame]:
    """The batch computed once (Kinesis read once), its rows kept in Spark's block store until the
    block ends. A local checkpoint keeps rows as they are; ``persist`` builds Spark's columnar
    cache, which cost the JVM about 300 µs more a 3 KB record (BENCHMARKS.md, "Near-duplicate
    clusters"). Its blocks are released here, not when the JVM's garbage collector finds them."""
    context = batch.sparkSession.sparkContext._jsc
    before = set(context.getPersistentRDDs().keys())
    try:
        yield batch.localCheckpoint(eager=True)
    finally:
        for key, rdd in context.getPersistentRDDs().items():
            if key not in before:
                rdd.unpersist(False)


def with_clusters(batch: DataFrame, assigned: pa.Table) -> DataFrame:
    """The batch's rows with each valid article's cluster and split (``clusters.ASSIGNED``; null for
    quarantined rows)."""
    clusters = batch.sparkSession.createDataFrame(assigned, schema=ASSIGNED_SPARK_SCHEMA)
    return batch.join(F.broadcast(clusters), on="article_id", how="left")


class BatchHandler:
    """``foreachBatch``: assign clusters, write, then account for the batch exactly once and report it."""

    def __init__(self, settings: Settings, state: RunState, lease: Lease, index: ClusterIndex,
                 seed: DataFrame | None = None) -> None:  # fmt: skip
        self.settings, self.state, self.lease, self.index, self.seed = settings, state, lease, index, seed
        self.rows_seen_at = time.monotonic()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self.seed is not None:
            batch = without_seeded(batch, self.seed, self.settings.dedup_horizon_hours)
        with computed_once(batch) as batch:  # the clusters need the articles before the writer writes them
            started = time.monotonic()
            articles = batch.where(F.col("kind") == ENRICHED).select(*ASSIGN_INPUT).toArrow()
            read = time.monotonic()
            assigned = self.index.assign(articles, split_fractions(self.state.split_ratios))
            log.info("batch %d: %d articles read in %.2f s, their clusters assigned in %.2f s", batch_id,
                     articles.num_rows, read - started, time.monotonic() - read)  # fmt: skip
            self.write(with_clusters(batch, assigned), batch_id)
        self.index.add_assigned(articles, assigned)  # committed: later batches join these clusters

    def write(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        files = write_batch(batch, self.settings.bucket, self.state.run_id, batch_id, self.state.output_format)
        store = ShardEndStore(self.settings.shard_ends)
        ends, offset = store.load(batch_id), store.offset(batch_id)
        if offset is None or (files and not ends):
            raise RuntimeError(f"no offset or shard ends recorded for batch {batch_id}: source and Spark batches "
                               "diverged")  # fmt: skip
        result = batch_result(files, ends)
        if result.duplicates_dropped < 0:
            raise RuntimeError(f"batch {batch_id} wrote more rows than it read: {result}")
        if self.state.output_format == DELTA:
            record = batch_record(self.settings, self.state.stream_created, positions_after(offset["shards"], ends))
            self.lease.check()  # a job that lost its checkpoint to another commits nothing (news_etl.lease)
            for commit in commit_batch(self.settings.bucket, self.state.run_id, batch_id, files, result.records_read,
                                       record):  # fmt: skip
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


class LateRecords:
    """Records the dedup watermark dropped as late, from Spark's progress of each batch (which
    comes after the batch's ``foreachBatch``): reported, and counted as lost (``RunState.drop_late``)."""

    def __init__(self, settings: Settings, state: RunState, lease: Lease) -> None:
        self.settings, self.state, self.lease = settings, state, lease
        self.newest = None  # the timestamp of the newest progress taken

    def take(self, query: StreamingQuery, newest: StreamingQueryProgress | None) -> None:
        """Count the late records of the batches whose progress came since the last call (``newest``:
        the query's last progress, which the caller has in hand)."""
        if newest is None or newest.timestamp == self.newest:
            return  # nothing new: a quiet stream pays for one progress, not for the last hundred
        self.newest = newest.timestamp
        for batch in query.recentProgress:
            if batch.batchId > self.state.last_batch_id:
                continue  # an idle trigger's progress names the batch to come, which has not run
            late = sum(operator.numRowsDroppedByWatermark for operator in batch.stateOperators)
            if late and batch.batchId > self.state.late_checked_batch_id:
                self.lease.check()
            if self.state.drop_late(batch.batchId, late) and late:
                save_state(self.settings.state_file, self.state)
                if self.settings.metrics_json:
                    save_metrics(self.settings.metrics_json, self.state)
                horizon = self.settings.dedup_horizon_hours
                show(f"  LATE: batch {batch.batchId}: the dedup watermark dropped {late} records that arrived more "
                     f"than {horizon} h before the newest one read: lost, not duplicates")  # fmt: skip


def seed_frame(spark: SparkSession, settings: Settings, state: RunState) -> DataFrame | None:
    """The keys a query that started again where the tables' records end drops repeats of
    (``resume.load_seed``), as a cached DataFrame; None when there are none."""
    seed = load_seed(settings.bucket, state.seed) if state.output_format == DELTA else None
    if seed is None or not seed.num_rows:
        return None
    log.info("dropping repeats of %d keys the tables held when the query started again", seed.num_rows)
    return spark.createDataFrame(seed).cache()


def cluster_index(settings: Settings, state: RunState) -> ClusterIndex:
    """The near-duplicate index of the enriched output's committed rows: the Delta table's, or the
    plain folder's files but those of batches the checkpoint has not counted (a replay rewrites them)."""
    if state.output_format == DELTA:
        rows = open_table(settings.bucket, ENRICHED).to_pyarrow_dataset()
    else:
        rows = committed_parquet(settings.bucket, state.run_id, state.last_batch_id)
    return load_index(rows, settings.dedup_horizon_hours)


def run(spark: SparkSession, settings: Settings, state: RunState, lease: Lease) -> None:
    index = cluster_index(settings, state)
    handler = BatchHandler(settings, state, lease, index, seed_frame(spark, settings, state))
    writer = (
        article_stream(spark, settings, state)
        .writeStream.foreachBatch(handler)
        .option("checkpointLocation", settings.spark_checkpoint)
        .queryName(f"news-etl-{settings.stream}")
    )
    if settings.once:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{settings.trigger_interval} seconds")
    query = writer.start()
    late = LateRecords(settings, state, lease)
    log.info("query started on stream %s, checkpoint %s", settings.stream, settings.checkpoint)
    while query.isActive:
        try:
            query.awaitTermination(IDLE_POLL_S)
        except StreamingQueryException:
            break  # raised below, once the lease has said whether it was lost
        # Not idle before the first trigger has finished (the source may still be planning its first
        # poll, slow on a cluster starting up), nor while a batch with new records is planned or running.
        progress = query.lastProgress
        if progress is None or query.status["isDataAvailable"]:
            handler.rows_seen_at = time.monotonic()
        idle = time.monotonic() - handler.rows_seen_at
        if settings.idle_timeout and not settings.once and idle > settings.idle_timeout:
            log.info("no new records for %.0f s: stopping", idle)
            query.stop()
        if lease.lost:  # another job has the checkpoint: stop before the next batch
            query.stop()
        late.take(query, progress)
    late.take(query, query.lastProgress)
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
