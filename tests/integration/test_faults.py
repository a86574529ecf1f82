"""Faults on the ETL's read and write paths, injected by a proxy between the job and moto.

The records go into moto directly; the job talks to moto through tests/fault_proxy.py, which
answers a share of its requests with the errors AWS sends (Kinesis throttling, S3 503). Either
the job rides them out and the output is exact, or it stops with one line and a rerun is exact.
"""

from __future__ import annotations

import uuid

import pytest

from tests.emulators import Emulator
from tests.fault_proxy import FaultProxy, kinesis_throttling, s3_unavailable
from tests.integration.test_etl import etl, populate
from tests.output import assert_exactly_once

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(moto) -> str:
    name = f"news-{uuid.uuid4().hex[:10]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


def through(proxy: FaultProxy, emulator: Emulator) -> Emulator:
    """``emulator`` as the job sees it: behind the proxy."""
    return Emulator(f"{emulator.name} behind a fault proxy", proxy.endpoint, emulator.process, emulator.log_path)


def test_throttled_reads_and_flaky_s3_writes_are_retried_to_an_exact_output(moto, stream_name, bucket, tmp_path):
    """30% of GetRecords/GetShardIterator throttled and 30% of S3 PUTs failing: the run completes, exact."""
    populate(moto, stream_name, "--shards", "2", "--count", "800", "--seed", "61", "--bad-ratio", "0.05",
             "--dup-ratio", "0.05")  # fmt: skip
    with FaultProxy(moto.endpoint, seed=1) as proxy:
        proxy.faults = [
            kinesis_throttling("GetRecords", 0.3),
            kinesis_throttling("GetShardIterator", 0.3),
            s3_unavailable("PUT", 0.3),
        ]
        run = etl(through(proxy, moto), stream_name, bucket, tmp_path / "checkpoint", "--once",
                  "--max-records-per-batch", "200")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert {"GetRecords throttled", "S3 PUT 503"} <= set(proxy.injected), proxy.injected
    assert_exactly_once(moto, stream_name, bucket)


def test_an_s3_outage_stops_the_job_in_one_line_and_a_rerun_is_exact(moto, stream_name, bucket, tmp_path):
    """Every S3 PUT failing: the job exits 1 naming S3; once S3 is back, a rerun writes all exactly once."""
    populate(moto, stream_name, "--shards", "2", "--count", "400", "--seed", "62", "--bad-ratio", "0.05")
    checkpoint = tmp_path / "checkpoint"
    with FaultProxy(moto.endpoint) as proxy:
        proxy.faults = [s3_unavailable("PUT")]
        # Two attempts per request, not ten: the same give-up path, minutes sooner.
        down = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", env={"AWS_MAX_ATTEMPTS": "2"})
    assert down.returncode == 1
    errors = [line for line in down.stderr.splitlines() if line.startswith("etl: error:")]
    assert len(errors) == 1 and "SERVICE_UNAVAILABLE" in errors[0], down.stderr[-3000:]
    assert proxy.injected["S3 PUT 503"] > 0
    rerun = etl(moto, stream_name, bucket, checkpoint, "--once")
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_once(moto, stream_name, bucket)
