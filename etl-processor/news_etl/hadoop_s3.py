"""Spark's checkpoint on S3: the Hadoop S3A jars and the settings that put it there.

    python -m news_etl.tools jars           prints the spark-submit flags that bring the jars
    python -m news_etl.tools jars --fetch   downloads the jars into the cache (an image build does)

A checkpoint given as ``s3://bucket/prefix`` keeps Spark's part (offsets, commits, the RocksDB
dedup state) at ``s3a://bucket/prefix/spark``, so a cluster's nodes need to share nothing but
S3. The jars come from Maven Central through Spark's own resolver (``spark.jars.packages``,
cached in ``IVY_CACHE``), pinned to what PySpark 4.3.0 bundles: Hadoop 3.5.0's ``hadoop-aws``, and
the AWS SDK v2 modules it needs at the version its pom declares, instead of the 500 MB SDK
bundle (Hadoop allows this since HADOOP-19282). What was measured to choose them is in
docs/design.md ("Design decisions").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from news_etl.aws import region
from news_etl.settings import ConfigurationError

if TYPE_CHECKING:  # pyspark is imported only where a session is started: printing the flags needs none
    from pyspark.sql import SparkSession

HADOOP = "3.5.0"  # PySpark 4.3.0's hadoop-client-api and -runtime
AWS_SDK = "2.35.4"  # what hadoop-aws 3.5.0's pom declares (aws-java-sdk-v2.version)
PACKAGES = (
    f"org.apache.hadoop:hadoop-aws:{HADOOP}",
    f"software.amazon.awssdk:s3:{AWS_SDK}",
    f"software.amazon.awssdk:s3-transfer-manager:{AWS_SDK}",
    f"software.amazon.awssdk:sts:{AWS_SDK}",
    # The S3-safe checkpoint file manager. No 4.3.0 (nor 4.2.x) of it is on Maven Central; the
    # class is unchanged since Spark 3.1 and 4.1.2's works with 4.3 (tests/integration/test_s3_checkpoint.py).
    "org.apache.spark:spark-hadoop-cloud_2.13:4.1.2",
)
EXCLUDES = (
    "software.amazon.awssdk:bundle",  # hadoop-aws still declares it: the modules above replace it
    "org.wildfly.openssl:wildfly-openssl",
    # S3A's async client (Netty) serves only the optimized upload of local files, turned off below.
    "software.amazon.awssdk:netty-nio-client",
    "io.netty:*",
    # Older copies of what PySpark already bundles.
    "org.slf4j:slf4j-api",
    "commons-codec:commons-codec",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.dataformat:jackson-dataformat-cbor",
    "org.apache.httpcomponents:httpclient",
    "org.apache.httpcomponents:httpcore",
    "org.eclipse.jetty:jetty-util",
    "org.eclipse.jetty:jetty-util-ajax",
    "joda-time:joda-time",
    # The other clouds spark-hadoop-cloud brings along, and Hadoop's unshaded client.
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.hadoop:hadoop-azure",
    "org.apache.hadoop:hadoop-huaweicloud",
    "org.apache.hadoop:hadoop-cloud-storage",
    "com.google.cloud.bigdataoss:gcs-connector",
    "com.squareup.okhttp3:okhttp",
    "com.squareup.okio:okio",
)
CHECKPOINT_FILE_MANAGER = "org.apache.spark.internal.io.cloud.AbortableStreamBasedCheckpointFileManager"
SDK_CREDENTIALS = "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
# What the job needs loaded for an S3 checkpoint: S3A, the checkpoint manager, the SDK's client.
REQUIRED_CLASSES = ("org.apache.hadoop.fs.s3a.S3AFileSystem", CHECKPOINT_FILE_MANAGER,
                    "software.amazon.awssdk.services.s3.S3Client")  # fmt: skip
IVY_CACHE = Path(os.environ.get("NEWS_ETL_IVY") or Path.home() / ".cache" / "news-etl" / "ivy")


def jar_settings() -> dict[str, str]:
    """The Spark settings that fetch the jars (once: later runs find them in ``IVY_CACHE``)."""
    return {
        "spark.jars.packages": ",".join(PACKAGES),
        "spark.jars.excludes": ",".join(EXCLUDES),
        "spark.jars.ivy": str(IVY_CACHE),
    }


def spark_settings() -> dict[str, str]:
    """The Spark settings for an ``s3a://`` checkpoint; the endpoint and region from the AWS settings.

    Credentials come from the AWS SDK's default chain (environment, profile files, web identity,
    container and instance roles) on each node, as for boto3, pyarrow and delta-rs; S3A's own
    default chain lacks profiles and web identity (IRSA on EKS). No key or token is put in Spark's
    configuration (``fs.s3a.access.key`` and the like): it crosses Spark's RPC (docs/cluster.md).
    """
    conf = {
        **jar_settings(),
        # Spark's docs rate a rename-based checkpoint unsafe on S3: this one writes each file
        # with a stream that is aborted, not published, when the write fails.
        "spark.sql.streaming.checkpointFileManagerClass": CHECKPOINT_FILE_MANAGER,
        "spark.hadoop.fs.s3a.optimized.copy.from.local.enabled": "false",  # needs the async client
        "spark.hadoop.fs.s3a.aws.credentials.provider": SDK_CREDENTIALS,
    }
    if region():
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region()
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:  # an emulator: its full URL, path-style bucket addressing
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    return conf


def submit_args() -> list[str]:
    """spark-submit's flags for the jars: under spark-submit the JVM starts before the job can ask."""
    return ["--packages", ",".join(PACKAGES), "--exclude-packages", ",".join(EXCLUDES),
            "--conf", f"spark.jars.ivy={IVY_CACHE}"]  # fmt: skip


def check_s3a_jars(spark: SparkSession) -> None:
    """A checkpoint on S3 needs the S3A jars in the driver's JVM. Started by the job, the session
    fetches them (``spark.jars.packages``); spark-submit starts the JVM before the job runs, so it
    must be given them (docs/cluster.md).

    Raises ``ConfigurationError`` naming the first class missing.
    """
    jvm = spark.sparkContext._jvm
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()  # where Spark adds the jars
    for name in REQUIRED_CLASSES:
        try:
            jvm.java.lang.Class.forName(name, False, loader)
        except Exception as error:  # py4j's error for a missing class
            if "ClassNotFoundException" not in str(error):
                raise
            raise ConfigurationError(
                f"--checkpoint on S3 needs the S3A jars ({name} is missing): give spark-submit the flags "
                "`python -m news_etl.tools jars` prints (docs/cluster.md)"
            ) from None


def fetch() -> Path:
    """Download the jars into ``IVY_CACHE`` by starting a local session that asks for them, so that
    a container built with them starts its runs without reaching Maven Central. Returns the cache."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
    for name, value in jar_settings().items():
        builder = builder.config(name, value)
    spark = builder.getOrCreate()
    try:
        check_s3a_jars(spark)
    finally:
        spark.stop()
    return IVY_CACHE


if __name__ == "__main__":  # its command moved: say where, rather than print no flags into $(...)
    raise SystemExit("python -m news_etl.hadoop_s3 is now python -m news_etl.tools jars [--fetch]")
