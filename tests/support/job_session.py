"""The job's own SparkSession, in a process of its own: ``python -m tests.support.job_session CHECKPOINT``.

A JVM holds one SparkContext, and the test process already has the tests' (``local[2]``), which
``getOrCreate`` would hand back with the job's settings unapplied. So this builds the session as
the job does (``news_etl.session.build_session``, its settings parsed from the job's flags with no
``--master``), runs one job whose task fails on its first attempt, and prints a JSON document:
``master`` (the session's), ``conf`` (every ``spark.*`` setting of its SparkContext) and
``attempts`` (the attempt number of each task that succeeded, or the error that ended the job).
"""

from __future__ import annotations

import json
import sys

from pyspark import TaskContext

from news_etl.cli.job import parse_settings
from news_etl.session import build_session
from news_etl.state import ROCKSDB, RunState


def fail_on_first_attempt(value: int) -> int:
    """A task's work that fails on the task's first attempt only; returns the attempt number."""
    attempt = TaskContext.get().attemptNumber()
    if attempt == 0:
        raise RuntimeError(f"first attempt of the task for {value} fails")
    return attempt


def main(checkpoint: str) -> dict:
    settings = parse_settings(["--stream", "session-test", "--bucket", "unused", "--checkpoint", checkpoint])
    spark = build_session(settings, RunState(settings.stream, settings.bucket, state_store=ROCKSDB))
    try:
        context = spark.sparkContext
        report = {"master": context.master, "conf": dict(context.getConf().getAll())}
        try:
            report["attempts"] = context.parallelize([7], 1).map(fail_on_first_attempt).collect()
        except Exception as error:  # the job ended: the report says how, the test judges it
            report["attempts"] = str(error).splitlines()[0]
        return report
    finally:
        spark.stop()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
