"""The session's choices that need no stream: which master, and a refused S3 checkpoint without the jars."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from news_etl import hadoop_s3
from news_etl.session import spark_master
from news_etl.settings import LOCAL_MASTER, ConfigurationError


def test_without_the_s3a_jars_an_s3_checkpoint_is_refused_in_one_line_naming_the_flags(spark):
    """A running JVM without the S3A jars (as spark-submit starts one before the job runs, when it
    is given no --packages) is refused in one line that names what prints the flags."""
    with pytest.raises(ConfigurationError) as refused:
        hadoop_s3.check_s3a_jars(spark)
    assert str(refused.value) == (
        "--checkpoint on S3 needs the S3A jars (org.apache.hadoop.fs.s3a.S3AFileSystem is missing): "
        "give spark-submit the flags `python -m news_etl.tools jars` prints (docs/cluster.md)"
    )


@pytest.mark.parametrize(
    ("flag", "under_spark_submit", "master"),
    [("local[3]", False, "local[3]"), ("local[3]", True, "local[3]"), (None, True, None), (None, False, LOCAL_MASTER)],
)
def test_the_master_is_the_flag_else_spark_submits_else_local(flag, under_spark_submit, master, monkeypatch):
    """--master wins; under spark-submit (which tells PySpark its JVM's gateway port) its own --master
    counts (None); run on its own, the job takes every local core."""
    if under_spark_submit:
        monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "40000")
    else:
        monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert spark_master(SimpleNamespace(master=flag)) == master
