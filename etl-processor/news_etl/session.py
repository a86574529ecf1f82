"""The job's SparkSession: master, state store, the settings every batch relies on, and its Python files.

Built once per run from the settings and the checkpoint's running totals (which fix the dedup
state's store and partitions); ``news_etl.job`` starts the query on it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pyspark import SparkFiles
from pyspark.sql import SparkSession

from news_etl import hadoop_s3
from news_etl.kinesis import KinesisDataSource
from news_etl.settings import LOCAL_MASTER, Settings
from news_etl.state import HDFS, ROCKSDB, RunState

# The JIT's quick tier only: C2 spends more CPU compiling Spark's code than it saves in runs of
# this job's size (bench: a third less CPU per record, half the start-up CPU; BENCHMARKS.md).
JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
ARROW_BATCH_BYTES = 64 * 2**20
STREAMING_ARTIFACTS = "streaming_job"  # Spark's artifact folder for streaming queries' Python planners
# The driver's AWS settings that executors on other hosts get (``spark.executorEnv``): where AWS
# is and how hard to retry, so that an emulator's endpoint or a region given to the driver holds
# on every executor. No credential is among them: Spark's configuration crosses its RPC
# (unauthenticated on a standalone cluster) and shows in its UI, and a copy of short-lived
# credentials would expire mid-run. Executors take credentials from the default AWS chain of
# their own environment (instance profile, web identity, or the variables the cluster manager sets).
EXECUTOR_AWS_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_MAX_ATTEMPTS")


def spark_master(settings: Settings) -> str | None:
    """``--master``; else None under spark-submit, whose ``--master`` counts (spark-submit starts the
    driver's JVM first and tells PySpark its gateway port, as PySpark's own launcher checks); else local."""
    if settings.master:
        return settings.master
    return None if "PYSPARK_GATEWAY_PORT" in os.environ else LOCAL_MASTER


STATE_STORE_PROVIDERS = {
    ROCKSDB: "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    HDFS: "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
}


def state_store_settings(store: str) -> dict[str, str]:
    """The state store's settings, as the job and the benchmarks of its state set them."""
    return {
        # The checkpoint's own store (Spark would also restore it from the checkpoint's offsets).
        "spark.sql.streaming.stateStore.providerClass": STATE_STORE_PROVIDERS[store],
        # RocksDB: each batch uploads the changes it made, not a whole snapshot of the state; and
        # its memory (memtables, block cache) is capped per executor (Spark's default, 500 MB),
        # not left to grow with the instances and the keys they hold.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
        # Every Spark batch must be one of the source's batches (they share their number).
        "spark.sql.streaming.noDataMicroBatches.enabled": "false",
    }


def build_session(settings: Settings, state: RunState) -> SparkSession:
    """A session for the job. Python workers import ``news_etl``: installed where the driver runs,
    and on a cluster installed on the workers or shipped to them as one zip (``--py-files``).
    Executors get the driver's ``EXECUTOR_AWS_SETTINGS``, never its credentials."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = spark_master(settings)
    one_machine = bool(master and master.startswith("local"))
    if one_machine:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # stay on loopback
    builder = SparkSession.builder if master is None else SparkSession.builder.master(master)
    builder = (
        builder.appName(f"news-etl-{settings.stream}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.speculation", "false")
        # Arrow batches handed to the writer's Python worker: bounded in bytes too, not only in rows
        # (10,000 rows of 1 MiB records would be 10 GB in one batch).
        .config("spark.sql.execution.arrow.maxBytesPerBatch", str(ARROW_BATCH_BYTES))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", JVM_OPTIONS)  # local mode: its executor too
        .config("spark.executor.extraJavaOptions", JVM_OPTIONS)
    )
    if one_machine:
        # Shuffle blocks go to this machine's disk and page cache, never over a network, so
        # compressing them costs CPU and saves nothing (BENCHMARKS.md, step 7). A cluster, and a
        # master given to spark-submit rather than to the job, keep Spark's default, compressed.
        builder = builder.config("spark.shuffle.compress", "false").config("spark.shuffle.spill.compress", "false")
    for name, value in state_store_settings(state.state_store).items():
        builder = builder.config(name, value)
    for name in EXECUTOR_AWS_SETTINGS:
        if os.environ.get(name):
            builder = builder.config(f"spark.executorEnv.{name}", os.environ[name])
    if settings.checkpoint_on_s3:
        for name, value in hadoop_s3.spark_settings().items():
            builder = builder.config(name, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if settings.checkpoint_on_s3:
        hadoop_s3.check_s3a_jars(spark)
    share_py_files_with_the_source_planner(spark)
    spark.dataSource.register(KinesisDataSource)
    return spark


def fix_state_partitions(spark: SparkSession, state: RunState) -> int:
    """Set the dedup state's partitions, and return them: the checkpoint's, or for a new one the
    cores Spark has, which the job then records with the checkpoint (``state.record_state_partitions``).

    Structured Streaming keeps a checkpoint's state in as many partitions as its first batch
    used (``spark.sql.shuffle.partitions``), whatever is set later; so the number is chosen once,
    recorded with the running totals, and a different ``--state-partitions`` on that checkpoint
    is refused (``state.load_state``). A task per core: the keys are hashed article ids, evenly
    spread, and each partition's task also writes a Delta batch's files (``sink.write_batch``), so
    more partitions than cores would only make more files and RocksDB instances. A checkpoint
    meant to outgrow its first cluster sets it.
    """
    partitions = state.state_partitions or spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    return partitions


def share_py_files_with_the_source_planner(spark: SparkSession) -> None:
    """Make ``spark-submit --py-files`` importable where Spark plans a Python streaming source.

    spark-submit puts the py-files in SparkFiles' root folder, but Spark 4.3 starts the driver's
    Python process that plans a streaming Python data source with ``streaming_job`` as its
    artifact folder, a subfolder of that root, and adds the py-files from there: without this,
    ``news_etl`` shipped as one zip fails to load on the driver (ModuleNotFoundError, measured
    in tests/integration/test_cluster.py), although the executors import it.
    """
    root = Path(SparkFiles.getRootDirectory())
    for name in spark.sparkContext._python_includes or []:
        shipped, planner_copy = root / name, root / STREAMING_ARTIFACTS / name
        if shipped.is_file() and not planner_copy.exists():
            planner_copy.parent.mkdir(exist_ok=True)
            shutil.copyfile(shipped, planner_copy)
