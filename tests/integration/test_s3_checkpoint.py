"""The whole checkpoint on S3 (``--checkpoint s3://bucket/prefix``), on real moto.

Spark's offsets, commits and RocksDB dedup state go through Hadoop's S3A (jars fetched from
Maven Central into the Ivy cache); the running totals and the shard ends through
``news_etl.checkpoint_files``. The job runs in an empty folder that must stay empty: nothing of
the checkpoint is on local disk. (Spark's scratch space, under the system's temporary folder,
is not the checkpoint.)
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.jobs import TOOLS_MODULE, etl, kill_while_under_way, populate, run_module, start_etl
from tests.support.output import CHECKPOINT_PARTS, assert_exactly_once, assert_metrics_match_output, checkpoint_objects

pytestmark = pytest.mark.integration


def test_a_checkpoint_on_s3_survives_a_sigkill_and_keeps_nothing_on_local_disk(moto, stream_name, tmp_path):
    """Killed after a committed batch and rerun, with the checkpoint on S3: exact output, the
    metrics and `verify` agree, the checkpoint's parts are on S3 and the job's folder stays empty."""
    output_bucket, state_bucket = f"news-{uuid.uuid4().hex[:10]}", f"state-{uuid.uuid4().hex[:10]}"
    for bucket in (output_bucket, state_bucket):
        moto.client("s3").create_bucket(Bucket=bucket)
    checkpoint = f"s3://{state_bucket}/checkpoints/{stream_name}"
    populate(moto, stream_name, "--shards", "2", "--count", "750", "--seed", "23", "--bad-ratio", "0.05",
             "--dup-ratio", "0.05")  # fmt: skip
    workdir, metrics = tmp_path / "job", tmp_path / "metrics.json"
    workdir.mkdir()
    job = start_etl(moto, stream_name, output_bucket, checkpoint, "--once", "--max-records-per-batch", "150",
                    log=tmp_path / "job.log", cwd=workdir)  # fmt: skip
    kill_while_under_way(job)
    state = moto.client("s3").get_object(Bucket=state_bucket, Key=f"checkpoints/{stream_name}/etl-state.json")
    assert 1 <= json.loads(state["Body"].read())["last_batch_id"] < 4, "the kill did not land mid-run (5 batches)"

    rerun = etl(moto, stream_name, output_bucket, checkpoint, "--once", "--max-records-per-batch", "150",
                "--metrics-json", str(metrics), cwd=workdir)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_exactly_once(moto, stream_name, output_bucket)
    assert assert_metrics_match_output(moto, output_bucket, metrics)["records_read"] == 750
    assert run_module(TOOLS_MODULE, ["verify", "--checkpoint", checkpoint], moto).returncode == 0
    parts = checkpoint_objects(moto, state_bucket, f"checkpoints/{stream_name}")
    assert set(parts) >= CHECKPOINT_PARTS, parts
    assert list(workdir.iterdir()) == [], "the job wrote to its working folder"


def test_a_checkpoint_bucket_that_does_not_exist_stops_the_job_in_one_line(moto, stream_name, tmp_path):
    """--checkpoint s3://missing/... is refused before Spark starts, naming the setting."""
    moto.client("kinesis").create_stream(StreamName=stream_name, ShardCount=1)
    moto.client("s3").create_bucket(Bucket="out-bucket")
    result = etl(moto, stream_name, "out-bucket", "s3://no-such-state-bucket/cp", "--once", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1
    assert errors == ["etl: error: --checkpoint's bucket 'no-such-state-bucket' not found or not accessible"]
