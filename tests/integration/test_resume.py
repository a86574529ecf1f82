"""The tables as the record, on real moto: a checkpoint without Spark's part, or a new checkpoint on
tables another one wrote, starts where the tables' records end; nothing is read twice or skipped.

Repeats are sent across runs (a lot sent again with the same seed: every article a repeat), so
the dedup keys the tables hold must stand in for the Spark state that was lost. The expected
output is the tests' own reading of the whole stream (tests/support/output.py).
"""

from __future__ import annotations

import shutil

import pytest

from tests.support.jobs import etl, populate, verify
from tests.support.output import assert_exactly_once

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator(moto):
    """On moto: the job's wiring on LocalStack is proven by test_etl.py's kill-and-restart test."""
    return moto


LOT = ("--shards", "2", "--count", "200", "--bad-ratio", "0.1", "--dup-ratio", "0.05")


def test_without_spark_or_on_a_new_checkpoint_the_job_starts_where_the_tables_end(moto, stream_name, bucket, tmp_path):
    """spark/ deleted, then a new checkpoint, each with new articles and a lot sent again: exact
    output; the first checkpoint started again after the second ran is refused in one line."""
    checkpoint, other = tmp_path / "checkpoint", tmp_path / "other"
    populate(moto, stream_name, *LOT, "--seed", "61")
    assert etl(moto, stream_name, bucket, checkpoint, "--once").returncode == 0

    # spark/ deleted (what people do when a query will not restart); new articles, and the first lot again.
    populate(moto, stream_name, *LOT, "--seed", "62")
    populate(moto, stream_name, *LOT, "--seed", "61")
    shutil.rmtree(checkpoint / "spark")
    rerun = etl(moto, stream_name, bucket, checkpoint, "--once")
    assert rerun.returncode == 0, rerun.stderr
    assert "starting where the tables' records end" in rerun.stderr
    assert_exactly_once(moto, stream_name, bucket)
    assert verify(moto, checkpoint).returncode == 0

    # A new checkpoint on the same tables (a redeploy): the same, with the second lot sent again.
    populate(moto, stream_name, *LOT, "--seed", "63")
    populate(moto, stream_name, *LOT, "--seed", "62")
    second = etl(moto, stream_name, bucket, other, "--once")
    assert second.returncode == 0, second.stderr
    assert_exactly_once(moto, stream_name, bucket)

    # The first checkpoint again: the tables went on without it, so it would read their records again.
    stale = etl(moto, stream_name, bucket, checkpoint, "--once")
    refusal = f"etl: error: the tables in s3://{bucket} were written by another checkpoint after this one"
    assert stale.returncode == 1
    assert stale.stderr.startswith(refusal) and stale.stderr.count("\n") == 1
    assert_exactly_once(moto, stream_name, bucket)
