"""``python -m news_etl``: the job's flags and environment, read into ``Settings``, and its exit codes.

    python -m news_etl --stream news --bucket news-data --once

Every flag has an environment fallback (README.md, "Configuration"); a bad value exits 2 with
one line naming the flag. ``main`` configures logging, runs the job (``news_etl.job``) holding
the checkpoint's lease (``news_etl.lease``), and turns what stops it into one line on stderr: 0
done, 1 a configuration, AWS or query error (a checkpoint another job holds, or took over,
included), 2 a bad flag, 3 the quarantine gate, 4 late records dropped (docs/operations.md, "Exit codes").
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from news_etl.job import preflight, run, start_session
from news_etl.kinesis.options import LATEST, TRIM_HORIZON, parse_timestamp
from news_etl.lease import Lease
from news_etl.report import show, totals_report
from news_etl.settings import (
    DEFAULT_COMPACT_TARGET_MB,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_RECORDS,
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_SPLIT_RATIOS,
    LOCAL_MASTER,
    OUTPUT_FORMATS,
    S3,
    ConfigurationError,
    Settings,
    split_fractions,
)
from news_etl.state import quarantine_gate

log = logging.getLogger("etl")

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_CHECKPOINT = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/]+)+/?$")  # s3://bucket/prefix, no //
STREAM_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
EXIT_QUARANTINE_GATE, EXIT_LATE = 3, 4


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def environment_value(name: str, default: str | None = None) -> str | None:
    """``name``'s value; an empty one counts as unset, as compose's ``${NAME:-}`` passes it."""
    return os.environ.get(name) or default


def build_parser() -> argparse.ArgumentParser:
    """The job's flags, each with its environment fallback (read when the parser is built)."""
    env = environment_value
    description = "Kinesis -> Spark -> enriched Delta Lake tables (or plain Parquet) on S3."
    parser = _OneLineParser(prog="etl", description=description)
    add = parser.add_argument
    add("--stream", default=env("STREAM_NAME"), help="Kinesis stream (env STREAM_NAME)")
    add("--bucket", default=env("S3_BUCKET"), help="S3 bucket for enriched/ and quarantine/ (env S3_BUCKET)")
    add(
        "--checkpoint",
        default=env("CHECKPOINT_DIR"),
        help="checkpoint: a directory, or s3://bucket/prefix on a cluster whose nodes share nothing but S3 "
        "(env CHECKPOINT_DIR; default checkpoints/STREAM)",
    )
    add("--once", action="store_true", default=env("RUN_ONCE", "").lower() in ("1", "true", "yes"),
        help="process what is in the stream at start, then exit (env RUN_ONCE)")  # fmt: skip
    add("--trigger-interval", type=float, default=env("TRIGGER_INTERVAL", "5"),
        help="seconds between mini-batches (env TRIGGER_INTERVAL, 5)")  # fmt: skip
    add("--idle-timeout", type=float, default=env("IDLE_TIMEOUT", "0"),
        help="exit after this many seconds without new records; 0 = run forever (env IDLE_TIMEOUT, 0)")  # fmt: skip
    add("--max-records-per-batch", type=int, default=env("MAX_RECORDS_PER_BATCH", str(DEFAULT_MAX_RECORDS)),
        help=f"most Kinesis records a mini-batch reads (a KPL aggregate counts once), 0 = all "
             f"(env MAX_RECORDS_PER_BATCH, {DEFAULT_MAX_RECORDS})")  # fmt: skip
    add("--max-bytes-per-batch", type=int, default=env("MAX_BYTES_PER_BATCH", str(DEFAULT_MAX_BYTES)),
        help=f"most payload bytes a mini-batch reads, split across shards (at least one record each), 0 = no limit "
             f"(env MAX_BYTES_PER_BATCH, {DEFAULT_MAX_BYTES})")  # fmt: skip
    add("--starting-position", default=env("STARTING_POSITION", "trim_horizon"),
        help="for a new checkpoint: trim_horizon, latest or an ISO-8601 time (env STARTING_POSITION)")  # fmt: skip
    add(
        "--metrics-json",
        default=env("METRICS_JSON"),
        help="rewrite cumulative metrics here after each batch (env METRICS_JSON)",
    )
    add("--master", default=env("SPARK_MASTER"),
        help=f"Spark master URL (env SPARK_MASTER; default: spark-submit's --master, else {LOCAL_MASTER})")  # fmt: skip
    add("--dedup-horizon-hours", type=int, default=env("DEDUP_HORIZON_HOURS", "168"),
        help="drop a repeated article_id within this many hours of arrival (env DEDUP_HORIZON_HOURS, 168)")  # fmt: skip
    add("--max-quarantine-ratio", type=float, default=env("MAX_QUARANTINE_RATIO"),
        help="exit 3, after writing everything, when a run quarantines more than this share of the "
             "records it read (env MAX_QUARANTINE_RATIO; default: no limit)")  # fmt: skip
    add("--fail-on-trimmed", action="store_true", default=env("FAIL_ON_TRIMMED", "").lower() in ("1", "true", "yes"),
        help="stop with an error, instead of reporting them, when records were trimmed by the stream's "
             "retention before they were read (env FAIL_ON_TRIMMED)")  # fmt: skip
    add("--allow-late", action="store_true", default=env("ALLOW_LATE", "").lower() in ("1", "true", "yes"),
        help="exit 0, instead of 4, when the dedup watermark dropped records as late (env ALLOW_LATE)")  # fmt: skip
    add("--state-partitions", type=int, default=env("STATE_PARTITIONS"),
        help="partitions of the dedup state, for a new checkpoint (fixed for its life; env STATE_PARTITIONS; "
             "default: the cores Spark has when the checkpoint starts)")  # fmt: skip
    add("--output-format", choices=OUTPUT_FORMATS, default=env("OUTPUT_FORMAT"),
        help="for a new checkpoint: delta (a Delta Lake table per output) or parquet (plain folders); fixed for "
             f"its life (env OUTPUT_FORMAT, {DEFAULT_OUTPUT_FORMAT})")  # fmt: skip
    add("--compact-target-mb", type=int, default=env("COMPACT_TARGET_MB", str(DEFAULT_COMPACT_TARGET_MB)),
        help="delta: at the end of a run, compact each partition's files to about this size; 0 = do not "
             f"(env COMPACT_TARGET_MB, {DEFAULT_COMPACT_TARGET_MB})")  # fmt: skip
    add("--lease-seconds", type=float, default=env("LEASE_SECONDS", str(DEFAULT_LEASE_SECONDS)),
        help="the job's lease on its checkpoint, renewed every third of it: another job may take the checkpoint "
             f"over this long after a job stopped renewing (env LEASE_SECONDS, {DEFAULT_LEASE_SECONDS})")  # fmt: skip
    add("--split-ratios", default=env("SPLIT_RATIOS"),
        help="percent of near-duplicate clusters in train/validation/test, for a new table; fixed for its life "
             f"(env SPLIT_RATIOS, {DEFAULT_SPLIT_RATIOS})")  # fmt: skip
    return parser


SPLIT_RATIOS = re.compile(r"(\d+(\.\d+)?)/(\d+(\.\d+)?)/(\d+(\.\d+)?)")


def split_ratios_error(ratios: str | None) -> str | None:
    """One line naming --split-ratios when it is not three percentages summing to 100, train above 0."""
    if ratios is None:
        return None
    if not SPLIT_RATIOS.fullmatch(ratios) or abs(sum(split_fractions(ratios)) - 1) > 1e-9 or ratios.startswith("0/"):
        return f"--split-ratios (SPLIT_RATIOS) must be train/validation/test percentages summing to 100, got {ratios!r}"
    return None


# The numeric settings: the least each may be, and whether that least is allowed itself.
LOWEST = {
    "trigger_interval": (0, False),
    "idle_timeout": (0, True),
    "max_records_per_batch": (0, True),
    "max_bytes_per_batch": (0, True),
    "dedup_horizon_hours": (1, True),
    "state_partitions": (1, True),
    "compact_target_mb": (0, True),
    "lease_seconds": (5, True),  # a few S3 round trips between renewals
}


def range_error(args: argparse.Namespace) -> str | None:
    """The first numeric setting out of its range, as one line naming the flag; None if all are in range."""
    for name, (lowest, allowed) in LOWEST.items():
        value = getattr(args, name)
        if value is not None and (value < lowest or (value == lowest and not allowed)):
            return f"--{name.replace('_', '-')} must be {'at least' if allowed else 'above'} {lowest}, got {value}"
    ratio = args.max_quarantine_ratio
    if ratio is not None and not 0 <= ratio <= 1:
        return f"--max-quarantine-ratio must be between 0 and 1, got {ratio}"
    return split_ratios_error(args.split_ratios)


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from flags and environment; exits 2 with one line naming a bad setting."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.stream or not STREAM_NAME.match(args.stream):
        parser.error(f"--stream (STREAM_NAME) must be a Kinesis stream name, got {args.stream!r}")
    if not args.bucket or not BUCKET_NAME.match(args.bucket):
        parser.error(f"--bucket (S3_BUCKET) must be an S3 bucket name, got {args.bucket!r}")
    out_of_range = range_error(args)
    if out_of_range:
        parser.error(out_of_range)
    checkpoint = args.checkpoint or os.path.join("checkpoints", args.stream)
    if "://" in checkpoint and not S3_CHECKPOINT.match(checkpoint):  # abspath would make it ./gs:/... silently
        parser.error(f"--checkpoint (CHECKPOINT_DIR) must be a path or s3://bucket/prefix, got {checkpoint!r}")
    if args.output_format is not None and args.output_format not in OUTPUT_FORMATS:
        parser.error(f"--output-format (OUTPUT_FORMAT) must be one of {', '.join(OUTPUT_FORMATS)}, "
                     f"got {args.output_format!r}")  # fmt: skip
    position = args.starting_position.lower()
    if position not in (TRIM_HORIZON, LATEST):
        try:
            position = parse_timestamp(args.starting_position).isoformat()
        except ValueError:
            parser.error(f"--starting-position must be trim_horizon, latest or an ISO-8601 time, got {position!r}")
    return Settings(
        stream=args.stream,
        bucket=args.bucket,
        # Absolute: executors, which write shard ends there too, run in folders of their own.
        checkpoint=checkpoint.rstrip("/") if checkpoint.startswith(S3) else os.path.abspath(checkpoint),
        once=args.once,
        trigger_interval=args.trigger_interval,
        idle_timeout=args.idle_timeout,
        max_records_per_batch=args.max_records_per_batch,
        max_bytes_per_batch=args.max_bytes_per_batch,
        starting_position=position,
        metrics_json=args.metrics_json,
        master=args.master,
        dedup_horizon_hours=args.dedup_horizon_hours,
        max_quarantine_ratio=args.max_quarantine_ratio,
        fail_on_trimmed=args.fail_on_trimmed,
        allow_late=args.allow_late,
        state_partitions=args.state_partitions,
        output_format=args.output_format,
        compact_target_mb=args.compact_target_mb,
        lease_seconds=args.lease_seconds,
        split_ratios=args.split_ratios,
    )


def root_cause(error: Exception) -> str:
    """The innermost ``SomeError: message`` line of a (possibly Python-in-JVM) failure."""
    causes = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception): .+)$", str(error), flags=re.MULTILINE)
    return causes[-1].strip() if causes else str(error).splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Run the job with ``argv``'s settings; returns the exit code (``news_etl.__main__`` exits with it)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    settings = parse_settings(argv)
    lease = Lease(settings.checkpoint, settings.lease_seconds)  # the preflight takes it
    try:
        return run_job(settings, lease)
    finally:
        lease.release()  # Spark has stopped: the job writes nothing more


def run_job(settings: Settings, lease: Lease) -> int:
    """The job from its preflight to its exit code, holding the checkpoint's lease from the preflight on."""
    started = datetime.now(UTC)
    try:
        state = preflight(settings, lease)
        spark = start_session(settings, state)
    except ConfigurationError as error:
        print(f"etl: error: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"etl: error: cannot reach AWS: {error}", file=sys.stderr)
        return 1
    read_before, quarantined_before, late_before = state.records_read, state.quarantined, state.late_dropped
    try:
        run(spark, settings, state, lease)
    except Exception as error:  # the query's failure, reported in one line; details are in the log
        log.exception("query failed")
        print(f"etl: error: {root_cause(error)}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    show(totals_report(state))
    log.info("run took %.1f s", (datetime.now(UTC) - started).total_seconds())
    gate = quarantine_gate(
        state.records_read - read_before, state.quarantined - quarantined_before, settings.max_quarantine_ratio
    )
    if gate:  # everything is written: the gate only decides the exit code
        print(f"etl: error: {gate}", file=sys.stderr)
        return EXIT_QUARANTINE_GATE
    late = state.late_dropped - late_before
    if late and not settings.allow_late:
        print(f"etl: error: the dedup watermark dropped {late} records as late (the LATE lines say which batches): "
              "they are lost; --allow-late accepts that", file=sys.stderr)  # fmt: skip
        return EXIT_LATE
    return 0
