"""The session's choices that need no stream: which master, task retries, no credentials in Spark's
configuration, and a refused S3 checkpoint without the jars."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from news_etl import hadoop_s3
from news_etl.session import spark_master
from news_etl.settings import LOCAL_MASTER, ConfigurationError
from tests.support.jobs import REPO

SECRET_KEY = "secret-key-f00dfeed"  # values that must appear nowhere in Spark's configuration
SESSION_TOKEN = "session-token-c0ffee42"
JOB_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIATESTSESSION",
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_REGION": "eu-west-3",
    "AWS_MAX_ATTEMPTS": "7",
}
CREDENTIAL_NAME = re.compile(r"secret|token", re.IGNORECASE)


@pytest.fixture(scope="module")
def job_session(tmp_path_factory) -> dict:
    """What ``tests.support.job_session`` reports of the job's own session, started once with
    ``JOB_AWS_ENV`` and no master given (neither ``--master``, ``SPARK_MASTER`` nor spark-submit)."""
    env = {name: value for name, value in os.environ.items() if name not in ("SPARK_MASTER", "PYSPARK_GATEWAY_PORT")}
    env |= JOB_AWS_ENV | {"PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    checkpoint = tmp_path_factory.mktemp("session") / "checkpoint"
    result = subprocess.run([sys.executable, "-m", "tests.support.job_session", str(checkpoint)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_the_default_master_retries_a_task_that_failed_once(job_session):
    """Run with no master given, the job's session retries a task whose first attempt failed, and
    the job succeeds (with ``local[*]`` the first failure ended it)."""
    assert job_session["master"] == LOCAL_MASTER
    assert job_session["attempts"] == [1]


def test_the_sessions_configuration_holds_no_secret_or_token(job_session):
    """With a secret key and a session token in the driver's environment, no setting of the job's
    SparkContext is named like one or holds either value; executors get the endpoint, region and
    retry bound, and no credential."""
    conf = job_session["conf"]
    assert not [name for name in conf if CREDENTIAL_NAME.search(name)]
    assert not [name for name, value in conf.items() if SECRET_KEY in value or SESSION_TOKEN in value]
    executor_aws = {name.removeprefix("spark.executorEnv."): value for name, value in conf.items()
                    if name.startswith("spark.executorEnv.AWS_")}  # fmt: skip
    assert executor_aws == {name: JOB_AWS_ENV[name] for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_MAX_ATTEMPTS")}


def test_the_s3a_settings_hold_no_credential(monkeypatch):
    """An S3 checkpoint's Spark settings name the SDK's default chain, never a key or token."""
    for name, value in JOB_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    settings = hadoop_s3.spark_settings()
    assert settings["spark.hadoop.fs.s3a.aws.credentials.provider"] == hadoop_s3.SDK_CREDENTIALS
    assert settings["spark.hadoop.fs.s3a.endpoint"] == JOB_AWS_ENV["AWS_ENDPOINT_URL"]
    assert not [name for name in settings if CREDENTIAL_NAME.search(name) or "access.key" in name]
    assert not [name for name, value in settings.items() if SECRET_KEY in value or SESSION_TOKEN in value]


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
    counts (None); run on its own, the job takes every local core (LOCAL_MASTER)."""
    if under_spark_submit:
        monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "40000")
    else:
        monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert spark_master(SimpleNamespace(master=flag)) == master
