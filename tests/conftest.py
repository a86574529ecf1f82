"""Session-wide fixtures: real moto and LocalStack processes, clients, unique names."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.support.emulators import EMULATORS, TEST_CREDENTIALS, Emulator, start_localstack, start_moto


def pytest_configure(config):
    # Nothing in a test process may reach real AWS: credentials are fake, endpoints are local.
    for key, value in TEST_CREDENTIALS.items():
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)


def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (setup, call and teardown, session fixtures with the test that started
    them), longest first, so that CI's log shows where the suite's time goes as it grows."""
    seconds: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                seconds[report.nodeid.split("::")[0]] += report.duration
    if seconds:
        terminalreporter.write_sep("=", f"seconds per test file ({sum(seconds.values()):.0f} s in all)")
        for path, total in seconds.most_common():
            terminalreporter.write_line(f"{total:8.1f}  {path}")


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for every test that needs one (starting one takes about 7 s)."""
    # Workers run this interpreter, so they import the ETL's functions (the mapInArrow one) from
    # the package installed in its virtualenv.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def emulator_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emulator-logs")


@pytest.fixture(scope="session")
def moto(emulator_logs):
    emulator = start_moto(emulator_logs)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def localstack(emulator_logs):
    emulator = start_localstack(emulator_logs)
    yield emulator
    emulator.stop()


@pytest.fixture(params=EMULATORS)
def emulator(request) -> Emulator:
    """Each test that asks for this runs once against moto and once against LocalStack."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def bucket(emulator) -> str:
    """A new S3 bucket on the test's emulator."""
    name = f"news-{uuid.uuid4().hex[:10]}"
    emulator.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def stream_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fault_report():
    """Record a fault test's outcome for `make faults`: a JSON line in FAULTS_REPORT, when set."""
    started = [time.monotonic()]  # reset per record: hypothesis runs several examples in one test

    def record(fault: str, outcome) -> None:
        path = os.environ.get("FAULTS_REPORT")
        seconds, started[0] = time.monotonic() - started[0], time.monotonic()
        if not path:
            return
        row = {"fault": fault, "records": outcome.records, "lost": outcome.lost, "duplicated": outcome.duplicated,
               "unexpected": outcome.unexpected, "seconds": round(seconds, 1)}  # fmt: skip
        with open(path, "a") as report:
            report.write(json.dumps(row) + "\n")

    return record
