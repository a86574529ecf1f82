"""``python -m news_etl`` end to end against real moto and LocalStack: exactly once, quarantine,
metrics, errors.

The scenarios run on moto; the kill-and-restart one runs on LocalStack, which proves the job's
wiring to LocalStack's Kinesis and S3 (the compose and resharding tests run it there too). The
expected output is derived independently of the ETL, from the stream (tests/support/output.py).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid

import pytest

from news_etl.cli.job import main
from tests.support.jobs import (
    etl,
    kill_while_under_way,
    populate,
    start_etl,
    verify,
)
from tests.support.output import assert_exactly_once, assert_metrics_match_output, data_keys, object_etags
from tests.support.spark_checkpoint import recorded_conf

pytestmark = pytest.mark.integration

BATCH_WITH_RECORDS = re.compile(r"^batch \d+: read [1-9]", re.MULTILINE)


@pytest.fixture
def emulator(moto):
    """The scenarios here run on moto (a LocalStack run of the job: the kill-and-restart test)."""
    return moto


def test_runs_write_every_article_exactly_once_across_reruns_and_new_records(emulator, stream_name, bucket, tmp_path):
    """3 shards with invalid and duplicate records: exact output; a rerun adds nothing; new records once."""
    checkpoint, metrics_path = tmp_path / "checkpoint", tmp_path / "metrics.json"
    populate(emulator, stream_name, "--shards", "3", "--count", "1200", "--seed", "11",
             "--bad-ratio", "0.1", "--dup-ratio", "0.05")  # fmt: skip
    first = etl(emulator, stream_name, bucket, checkpoint, "--once", "--max-records-per-batch", "500",
                "--metrics-json", str(metrics_path), "--max-quarantine-ratio", "0.05")  # fmt: skip
    assert first.returncode == 3, first.stderr  # 10% quarantined: the gate fails the run after writing it all
    assert "etl: error: quarantined 120 of the 1200 records this run read (10.0%)" in first.stderr
    assert len(re.findall(r"^batch \d+: read", first.stdout, re.MULTILINE)) >= 3
    assert "daily average word_count (all windows)" in first.stdout
    assert_exactly_once(emulator, stream_name, bucket)
    metrics = assert_metrics_match_output(emulator, bucket, metrics_path)
    assert (metrics["records_read"], metrics["quarantined"], metrics["duplicates_dropped"]) == (1200, 120, 60)
    assert verify(emulator, checkpoint).returncode == 0
    # A new checkpoint, no --state-partitions: a state partition per core of local[2] (each task of the
    # dedup stage also writes the batch's Delta files), as Spark recorded it and as the totals keep it.
    assert recorded_conf(checkpoint)["spark.sql.shuffle.partitions"] == "2"
    assert json.loads((checkpoint / "etl-state.json").read_text())["state_partitions"] == 2

    before = object_etags(emulator, bucket)
    rerun = etl(emulator, stream_name, bucket, checkpoint, "--once", "--metrics-json", str(metrics_path))
    assert rerun.returncode == 0, rerun.stderr
    assert "batch" not in rerun.stdout.split("totals on this checkpoint")[0]
    assert object_etags(emulator, bucket) == before
    assert json.loads(metrics_path.read_text()) == metrics

    # Continuous mode: mini-batches every second while populate writes, then exit 0 when idle (long
    # enough for the second populate to start; the job's idle clock starts at its last batch with records).
    polling = start_etl(emulator, stream_name, bucket, checkpoint, "--trigger-interval", "1",
                        "--idle-timeout", "12", "--metrics-json", str(metrics_path))  # fmt: skip
    populate(emulator, stream_name, "--count", "150", "--seed", "12", "--bad-ratio", "0.1")
    assert any(BATCH_WITH_RECORDS.match(line) for line in polling.stdout), "the first lot was never read"
    populate(emulator, stream_name, "--count", "150", "--seed", "13", "--bad-ratio", "0.1")
    stdout, _ = polling.communicate(timeout=300)
    assert polling.returncode == 0
    assert BATCH_WITH_RECORDS.search(stdout), "records put while the job was polling were not read"
    assert_exactly_once(emulator, stream_name, bucket)
    metrics = assert_metrics_match_output(emulator, bucket, metrics_path)
    assert (metrics["records_read"], metrics["quarantined"]) == (1500, 150)
    assert verify(emulator, checkpoint).returncode == 0

    # make verify notices output that does not match the metrics: one file of the table gone.
    lost = data_keys(emulator, bucket, "enriched")[0]
    emulator.client("s3").delete_object(Bucket=bucket, Key=lost)
    result = verify(emulator, checkpoint)
    assert result.returncode == 1
    assert f"DISAGREE a file of the output is missing: s3://{bucket}/{lost}" in result.stdout
    assert "DISAGREE enriched: metrics say" in result.stdout


def test_plain_parquet_output_is_exact_and_a_rerun_rewrites_nothing(moto, stream_name, tmp_path):
    """--output-format parquet: plain dt= folders, no Delta log, every article once; a rerun adds nothing;
    without Spark's checkpoint, refused."""
    bucket = f"news-{uuid.uuid4().hex[:10]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    populate(moto, stream_name, "--shards", "2", "--count", "400", "--seed", "41", "--bad-ratio", "0.1",
             "--dup-ratio", "0.05")  # fmt: skip
    checkpoint = tmp_path / "checkpoint"
    first = etl(moto, stream_name, bucket, checkpoint, "--once", "--output-format", "parquet")
    assert first.returncode == 0, first.stderr
    assert "compacted" not in first.stdout
    assert not any("_delta_log" in key for key in object_etags(moto, bucket))
    assert_exactly_once(moto, stream_name, bucket)
    before = object_etags(moto, bucket)
    rerun = etl(moto, stream_name, bucket, checkpoint, "--once")  # the checkpoint keeps its format
    assert rerun.returncode == 0, rerun.stderr
    assert object_etags(moto, bucket) == before
    assert verify(moto, checkpoint).returncode == 0
    # Plain folders record nothing a query could start from: without Spark's checkpoint, refused.
    shutil.rmtree(checkpoint / "spark")
    lost = etl(moto, stream_name, bucket, checkpoint, "--once")
    assert lost.returncode == 1
    assert lost.stderr == (f"etl: error: s3://{bucket}/enriched/ holds plain Parquet output, which records nothing a "
                           f"query without Spark's checkpoint could start from: restore {checkpoint}/spark, or write "
                           "to another bucket\n")  # fmt: skip
    assert object_etags(moto, bucket) == before


@pytest.mark.localstack
def test_sigkill_mid_run_then_restart_gives_exactly_once_output(localstack, stream_name, tmp_path):
    """On LocalStack: the job's whole process tree killed with SIGKILL after a committed batch, then
    rerun: exact output."""
    emulator, bucket = localstack, f"news-{uuid.uuid4().hex[:10]}"
    emulator.client("s3").create_bucket(Bucket=bucket)
    checkpoint, metrics_path = tmp_path / "checkpoint", tmp_path / "metrics.json"
    populate(emulator, stream_name, "--shards", "2", "--count", "1200", "--seed", "21",
             "--bad-ratio", "0.05", "--dup-ratio", "0.05")  # fmt: skip
    job = start_etl(emulator, stream_name, bucket, checkpoint, "--once", "--max-records-per-batch", "200",
                    "--metrics-json", str(metrics_path))  # fmt: skip
    kill_while_under_way(job)
    state = json.loads((checkpoint / "etl-state.json").read_text())
    assert 1 <= state["last_batch_id"] < 5, "the kill did not land mid-run (6 batches)"

    restart = etl(emulator, stream_name, bucket, checkpoint, "--once", "--max-records-per-batch", "200",
                  "--metrics-json", str(metrics_path))  # fmt: skip
    assert restart.returncode == 0, restart.stderr
    assert_exactly_once(emulator, stream_name, bucket)
    metrics = assert_metrics_match_output(emulator, bucket, metrics_path)
    assert metrics["records_read"] == 1200


def test_a_job_started_on_an_empty_stream_reads_what_arrives_later(emulator, stream_name, bucket, tmp_path):
    """--once before any record exists, then records arrive: the next run writes each exactly once."""
    checkpoint, metrics_path = tmp_path / "checkpoint", tmp_path / "metrics.json"
    kinesis = emulator.client("kinesis")
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    empty = etl(emulator, stream_name, bucket, checkpoint, "--once")
    assert empty.returncode == 0, empty.stderr
    assert "batch 0: read 0," in empty.stdout
    populate(emulator, stream_name, "--count", "400", "--seed", "31", "--bad-ratio", "0.1", "--dup-ratio", "0.05")
    later = etl(emulator, stream_name, bucket, checkpoint, "--once", "--metrics-json", str(metrics_path))
    assert later.returncode == 0, later.stderr
    assert_exactly_once(emulator, stream_name, bucket)
    assert assert_metrics_match_output(emulator, bucket, metrics_path)["records_read"] == 400


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-stream", "stream 'no-such-stream' not found"),
        ("missing-bucket", "bucket 'no-such-bucket' not found"),
        ("foreign-checkpoint", "belongs to stream 'another-stream'"),
        ("recreated-stream", "but that stream was re-created"),
        ("bad-flag", "--max-records-per-batch"),
        ("short-dedup-horizon", "must be at least the stream's retention period (24 h)"),
        ("changed-output-format", "writes parquet: drop the setting, or start a new --checkpoint"),
        ("delta-over-plain-parquet", "holds plain Parquet output, where a Delta table cannot go"),
    ],
)
def test_misconfiguration_stops_with_one_line(case, message, moto, stream_name, tmp_path, monkeypatch, capsys):
    """Each setup error exits non-zero with a single line on stderr that names the problem.

    The job's ``main`` runs in this process (as ``python -m news_etl`` calls it): each case stops in
    the flags or the preflight, before Spark starts, so a process of its own would prove nothing more."""
    kinesis = moto.client("kinesis")
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    moto.client("s3").create_bucket(Bucket="a-bucket")
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "etl-state.json").write_text(json.dumps({"stream": "another-stream", "bucket": "a-bucket"}))
    stream, bucket, extra = stream_name, "a-bucket", ["--checkpoint", str(tmp_path / "fresh")]
    if case == "missing-stream":
        stream = "no-such-stream"
    elif case == "missing-bucket":
        bucket = "no-such-bucket"
    elif case == "foreign-checkpoint":
        extra = ["--checkpoint", str(checkpoint)]
    elif case == "recreated-stream":  # the checkpoint of an earlier stream of the same name
        state = {"stream": stream_name, "bucket": "a-bucket", "stream_created": "2026-01-01T00:00:00+00:00"}
        (checkpoint / "etl-state.json").write_text(json.dumps(state))
        extra = ["--checkpoint", str(checkpoint)]
    elif case == "changed-output-format":  # a checkpoint made with plain Parquet output
        state = {"stream": stream_name, "bucket": "a-bucket", "output_format": "parquet"}
        (checkpoint / "etl-state.json").write_text(json.dumps(state))
        extra = ["--checkpoint", str(checkpoint), "--output-format", "delta"]
    elif case == "delta-over-plain-parquet":  # a bucket a checkpoint made before Delta writes to
        bucket = f"news-{uuid.uuid4().hex[:10]}"
        moto.client("s3").create_bucket(Bucket=bucket)
        moto.client("s3").put_object(
            Bucket=bucket, Key="enriched/dt=2026-11-20/part-0a0a0a0a-00000000.parquet", Body=b""
        )
    elif case == "bad-flag":
        extra += ["--max-records-per-batch", "-5"]
    else:
        extra += ["--dedup-horizon-hours", "1"]
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    try:
        code = main(["--stream", stream, "--bucket", bucket, "--once", *extra])
    except SystemExit as exit:  # a bad flag: argparse exits
        code = exit.code
    stderr = capsys.readouterr().err
    assert code != 0
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], stderr
