"""The ETL's settings: one frozen object, passed down explicitly, and the defaults it starts from.

``news_etl.cli.job`` builds it once from the flags and their environment fallbacks, and
validates it there; the job's modules only read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

S3, S3A = "s3://", "s3a://"
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_BYTES = 256 * 2**20  # about 85,000 articles of 3 KB; 256 records at the 1 MiB limit
# Every local core, and up to 4 attempts per task (Spark's local[N,F]; spark.task.maxFailures does
# this on a cluster): one failed task, such as a read that outlasted its AWS retries, is retried
# instead of ending the query.
LOCAL_MASTER = "local[*,4]"
DELTA, PARQUET = "delta", "parquet"  # the output layouts (news_etl.sink)
OUTPUT_FORMATS = (DELTA, PARQUET)
DEFAULT_OUTPUT_FORMAT = DELTA
# Compaction's target file size: large enough that a trainer opens few files (Spark and Delta aim
# at 100 MB-1 GB), small enough that one file fits a reader's memory whole.
DEFAULT_COMPACT_TARGET_MB = 256
# The checkpoint's lease (news_etl.lease), renewed every third of it: long enough to ride out slow
# S3 answers, short enough that a job restarted on another machine after a crash waits a minute at most.
DEFAULT_LEASE_SECONDS = 60
# Percent of near-duplicate clusters in train / validation / test (``clusters.split_of``), fixed for
# a table's life: a cluster's split is a function of its id and these.
DEFAULT_SPLIT_RATIOS = "98/1/1"


def split_fractions(ratios: str) -> tuple[float, float, float]:
    """``"98/1/1"`` as (0.98, 0.01, 0.01)."""
    train, validation, test = (float(part) / 100 for part in ratios.split("/"))
    return train, validation, test


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
    allow_late: bool = False  # exit 0 when the dedup watermark dropped late records
    state_partitions: int | None = None  # None: the checkpoint's, or for a new one the cores at its start
    output_format: str | None = None  # None: the checkpoint's, or for a new one DEFAULT_OUTPUT_FORMAT
    compact_target_mb: int = DEFAULT_COMPACT_TARGET_MB  # 0: no compaction at the end of a run
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    split_ratios: str | None = None  # None: the table's (the checkpoint's, for Parquet), or for a new one the default

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
