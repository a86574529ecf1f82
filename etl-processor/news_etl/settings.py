"""The ETL's settings: one frozen object, from flags with environment fallbacks, validated here."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

from news_etl.kinesis.options import LATEST, TRIM_HORIZON, parse_timestamp

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3, S3A = "s3://", "s3a://"
S3_CHECKPOINT = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/]+)+/?$")  # s3://bucket/prefix, no //
STREAM_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_BYTES = 256 * 2**20  # about 85,000 articles of 3 KB; 256 records at the 1 MiB limit
LOCAL_MASTER = "local[*]"
DELTA, PARQUET = "delta", "parquet"  # the output layouts (news_etl.sink)
OUTPUT_FORMATS = (DELTA, PARQUET)
DEFAULT_OUTPUT_FORMAT = DELTA
# Compaction's target file size: large enough that a trainer opens few files (Spark and Delta aim
# at 100 MB-1 GB), small enough that one file fits a reader's memory whole.
DEFAULT_COMPACT_TARGET_MB = 256


class ConfigurationError(RuntimeError):
    """The job cannot start with these settings (one line for the user)."""


@dataclass(frozen=True)
class Settings:
    stream: str
    bucket: str
    checkpoint: str
    once: bool
    trigger_interval: float
    idle_timeout: float
    max_records_per_batch: int
    max_bytes_per_batch: int
    starting_position: str
    metrics_json: str | None
    master: str | None  # None: spark-submit's --master, or LOCAL_MASTER when not run by spark-submit
    dedup_horizon_hours: int
    max_quarantine_ratio: float | None = None
    fail_on_trimmed: bool = False
    state_partitions: int | None = None  # None: the checkpoint's, or for a new one the cores at its start
    output_format: str | None = None  # None: the checkpoint's, or for a new one DEFAULT_OUTPUT_FORMAT
    compact_target_mb: int = DEFAULT_COMPACT_TARGET_MB  # 0: no compaction at the end of a run

    @property
    def spark_checkpoint(self) -> str:
        """Spark's part of the checkpoint; on S3 through Hadoop's ``s3a://`` (``session`` sets it up)."""
        spark = os.path.join(self.checkpoint, "spark")
        return S3A + spark.removeprefix(S3) if self.checkpoint_on_s3 else spark

    @property
    def checkpoint_on_s3(self) -> bool:
        return self.checkpoint.startswith(S3)

    @property
    def shard_ends(self) -> str:
        return os.path.join(self.checkpoint, "kinesis-shard-ends")

    @property
    def state_file(self) -> str:
        return self.state_file_in(self.checkpoint)

    @staticmethod
    def state_file_in(checkpoint: str) -> str:
        """The running totals' file (``state.RunState``) of a checkpoint."""
        return os.path.join(checkpoint, "etl-state.json")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def environment_value(name: str, default: str | None = None) -> str | None:
    """``name``'s value; an empty one counts as unset, as compose's ``${NAME:-}`` passes it."""
    return os.environ.get(name) or default


def build_parser() -> argparse.ArgumentParser:
    env = environment_value
    parser = _OneLineParser(prog="etl", description="Kinesis -> Spark -> enriched Parquet on S3.")
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
    add("--state-partitions", type=int, default=env("STATE_PARTITIONS"),
        help="partitions of the dedup state, for a new checkpoint (fixed for its life; env STATE_PARTITIONS; "
             "default: the cores Spark has when the checkpoint starts)")  # fmt: skip
    add("--output-format", choices=OUTPUT_FORMATS, default=env("OUTPUT_FORMAT"),
        help="for a new checkpoint: delta (a Delta Lake table per output) or parquet (plain folders); fixed for "
             f"its life (env OUTPUT_FORMAT, {DEFAULT_OUTPUT_FORMAT})")  # fmt: skip
    add("--compact-target-mb", type=int, default=env("COMPACT_TARGET_MB", str(DEFAULT_COMPACT_TARGET_MB)),
        help="delta: at the end of a run, compact each partition's files to about this size; 0 = do not "
             f"(env COMPACT_TARGET_MB, {DEFAULT_COMPACT_TARGET_MB})")  # fmt: skip
    return parser


# The numeric settings: the least each may be, and whether that least is allowed itself.
LOWEST = {
    "trigger_interval": (0, False),
    "idle_timeout": (0, True),
    "max_records_per_batch": (0, True),
    "max_bytes_per_batch": (0, True),
    "dedup_horizon_hours": (1, True),
    "state_partitions": (1, True),
    "compact_target_mb": (0, True),
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
    return None


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
        state_partitions=args.state_partitions,
        output_format=args.output_format,
        compact_target_mb=args.compact_target_mb,
    )
