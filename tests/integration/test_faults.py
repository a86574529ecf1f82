"""Faults on the ETL's read and write paths, injected by a proxy between the job and moto.

The records go into moto directly; the job talks to moto through tests/support/fault_proxy.py, which
answers a share of its requests with the errors AWS sends (Kinesis throttling, S3 503). Either
the job rides them out and the output is exact, or it stops with one line and a rerun is exact.
`make test` runs one test of each fault kind; the ones marked ``slow`` run in `make faults`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid

import pytest

from tests.support.emulators import Emulator
from tests.support.fault_proxy import (
    FaultProxy,
    Hold,
    TrimmedShard,
    kinesis_iterator_expired,
    kinesis_throttling,
    s3_unavailable,
)
from tests.support.jobs import etl, populate, start_etl
from tests.support.kinesis_reader import read_stream
from tests.support.output import assert_exactly_once, object_etags, output, tally

pytestmark = [pytest.mark.integration, pytest.mark.faults]
# `make faults` runs ten crash cycles (FAULT_CYCLES); one without it.
CYCLES = int(os.environ.get("FAULT_CYCLES", "1"))


@pytest.fixture
def bucket(moto) -> str:
    name = f"news-{uuid.uuid4().hex[:10]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


def through(proxy: FaultProxy, emulator: Emulator) -> Emulator:
    """``emulator`` as the job sees it: behind the proxy."""
    return Emulator(f"{emulator.name} behind a fault proxy", proxy.endpoint, emulator.process, emulator.log_path)


def committed_batch(state_file) -> int:
    """The last batch the job committed, from its checkpoint's state (-1: none yet)."""
    return json.loads(state_file.read_text())["last_batch_id"] if state_file.exists() else -1


def wait_until(condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def assert_stopped_in_one_line_then_rerun_is_exact(down, cause: str, emulator, stream, bucket, checkpoint) -> None:
    """The failed run exited 1 with one `etl: error:` line naming ``cause``; a rerun without the fault is exact."""
    assert down.returncode == 1
    errors = [line for line in down.stderr.splitlines() if line.startswith("etl: error:")]
    assert len(errors) == 1 and cause in errors[0], down.stderr[-3000:]
    rerun = etl(emulator, stream, bucket, checkpoint, "--once")
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_once(emulator, stream, bucket)


def test_throttled_reads_and_flaky_s3_writes_are_retried_to_an_exact_output(
    moto, stream_name, bucket, tmp_path, fault_report
):
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
    fault_report("30% of Kinesis reads throttled, 30% of S3 PUTs 503", tally(moto, stream_name, bucket))
    assert_exactly_once(moto, stream_name, bucket)


def test_an_s3_outage_stops_the_job_in_one_line_and_a_rerun_is_exact(moto, stream_name, bucket, tmp_path, fault_report):
    """Every S3 PUT failing: the job exits 1 in one line naming the 503 (creating the Delta tables is
    the first PUT); once S3 is back, a rerun writes all exactly once."""
    populate(moto, stream_name, "--shards", "2", "--count", "400", "--seed", "62", "--bad-ratio", "0.05")
    checkpoint = tmp_path / "checkpoint"
    with FaultProxy(moto.endpoint) as proxy:
        proxy.faults = [s3_unavailable("PUT")]
        # Two attempts per request, not ten: the same give-up path, minutes sooner.
        down = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", env={"AWS_MAX_ATTEMPTS": "2"})
    assert proxy.injected["S3 PUT 503"] > 0
    assert_stopped_in_one_line_then_rerun_is_exact(down, "503 Service Unavailable", moto, stream_name, bucket,
                                                   checkpoint)  # fmt: skip
    fault_report("S3 down (every PUT 503), job stops, rerun", tally(moto, stream_name, bucket))


@pytest.mark.slow  # make faults
def test_a_replay_that_meets_records_trimmed_since_reports_the_gap_and_writes_the_rest(
    moto, stream_name, bucket, tmp_path, fault_report
):
    """A batch read its records (its shard ends recorded), then its Delta commit failed (the job
    stopped); before the rerun, retention trimmed the first 50 of them. The rerun replays the batch:
    it exits 0, reports the gap once, and writes what is left exactly once."""
    populate(moto, stream_name, "--shards", "1", "--count", "100", "--seed", "73", "--bad-ratio", "0.05")
    checkpoint = tmp_path / "checkpoint"
    assert etl(moto, stream_name, bucket, checkpoint, "--once").returncode == 0
    populate(moto, stream_name, "--count", "200", "--seed", "74", "--bad-ratio", "0.05")
    records = read_stream(moto.client("kinesis"), stream_name)
    with FaultProxy(moto.endpoint) as proxy:
        proxy.faults = [s3_unavailable("PUT", path="/_delta_log/")]
        down = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", env={"AWS_MAX_ATTEMPTS": "2"})
        assert down.returncode == 1, down.stderr[-3000:]
        assert (checkpoint / "kinesis-shard-ends" / f"{1:012d}").is_dir()  # batch 1 was read, not committed
        proxy.faults = []
        proxy.trimmed = [TrimmedShard(records[150].shard_id, records[150].sequence_number)]
        run = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once")
    assert run.returncode == 0, run.stderr[-3000:]
    [line] = [line for line in run.stdout.splitlines() if "TRIMMED:" in line]
    assert f"records after sequence number {records[99].sequence_number} were trimmed" in line
    assert f"reading resumed at {records[150].sequence_number}" in line
    readable = records[:100] + records[150:]
    outcome = tally(moto, stream_name, bucket, readable)
    fault_report("a replay after 50 of its records were trimmed: report", outcome)
    assert_exactly_once(moto, stream_name, bucket, readable)


@pytest.mark.slow  # make faults
def test_records_the_watermark_drops_as_late_are_reported_as_lost_and_fail_the_run(
    moto, stream_name, bucket, tmp_path, fault_report
):
    """The second lot's arrival times moved 8 days back (the proxy rewrites them): behind the
    watermark the first run left (its newest arrival less the 168 h horizon; Spark filters late rows
    by the watermark of the batch before, so the first run has two), so Spark drops them as
    late. The run writes nothing of them, prints a LATE line, counts them as late, not duplicates,
    and exits 4 in one line; with --allow-late, the same exits 0."""
    populate(moto, stream_name, "--shards", "1", "--count", "100", "--seed", "75")
    checkpoint, metrics = tmp_path / "checkpoint", tmp_path / "metrics.json"
    assert etl(moto, stream_name, bucket, checkpoint, "--once", "--max-records-per-batch", "50").returncode == 0
    before = object_etags(moto, bucket)
    populate(moto, stream_name, "--count", "60", "--seed", "76", "--bad-ratio", "0.1")
    with FaultProxy(moto.endpoint) as proxy:
        proxy.arrival_shift_s = -8 * 24 * 3600.0
        run = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", "--metrics-json", str(metrics))
    assert run.returncode == 4, run.stderr[-3000:]
    [error] = [line for line in run.stderr.splitlines() if line.startswith("etl: error:")]
    assert error.startswith("etl: error: the dedup watermark dropped 60 records as late")
    assert len([line for line in run.stdout.splitlines() if "LATE:" in line]) >= 1
    counts = json.loads(metrics.read_text())
    assert (counts["records_read"], counts["late_dropped"], counts["duplicates_dropped"]) == (160, 60, 0)
    assert object_etags(moto, bucket).keys() - before.keys() <= {key for key in object_etags(moto, bucket)
                                                                 if "/_delta_log/" in key}  # fmt: skip
    populate(moto, stream_name, "--count", "10", "--seed", "77")
    with FaultProxy(moto.endpoint) as proxy:
        proxy.arrival_shift_s = -8 * 24 * 3600.0
        allowed = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", "--allow-late")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    fault_report(
        "records behind the watermark: reported late, run fails",
        tally(moto, stream_name, bucket, read_stream(moto.client("kinesis"), stream_name)[:100]),
    )


@pytest.mark.slow  # make faults
def test_kinesis_throttling_that_does_not_end_stops_the_job_in_one_line(
    moto, stream_name, bucket, tmp_path, fault_report
):
    """Every GetRecords throttled: bounded retries, then one line naming the throttling; a rerun is exact."""
    populate(moto, stream_name, "--shards", "2", "--count", "300", "--seed", "66")
    checkpoint = tmp_path / "checkpoint"
    with FaultProxy(moto.endpoint) as proxy:
        proxy.faults = [kinesis_throttling("GetRecords", 1.0)]
        down = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", env={"AWS_MAX_ATTEMPTS": "3"})
    # Retried within the bound, then given up: 3 attempts per read, two shards read at once (a
    # few more may be in flight as the job stops); spinning would show hundreds here.
    assert 3 <= proxy.injected["GetRecords throttled"] <= 4 * 3, proxy.injected
    assert_stopped_in_one_line_then_rerun_is_exact(
        down, "ProvisionedThroughputExceededException", moto, stream_name, bucket, checkpoint
    )
    fault_report("Kinesis reads throttled without end, job stops, rerun", tally(moto, stream_name, bucket))


@pytest.mark.slow  # make faults
def test_repeated_sigkill_at_random_moments_then_a_finishing_run_is_exact(
    moto, stream_name, bucket, tmp_path, fault_report
):
    """The job's whole process group SIGKILLed CYCLES times at random moments, then run to the end: exact."""
    populate(moto, stream_name, "--shards", "3", "--count", "1500", "--seed", "63", "--bad-ratio", "0.05",
             "--dup-ratio", "0.05")  # fmt: skip
    checkpoint, pace = tmp_path / "checkpoint", random.Random(63)
    state = checkpoint / "etl-state.json"
    landed = []  # the last committed batch when each kill landed: kills spread over the run
    for _ in range(CYCLES):
        with open(tmp_path / "stdout.txt", "a") as stdout:
            job = start_etl(moto, stream_name, bucket, checkpoint, "--once", "--max-records-per-batch", "50",
                            stdout=stdout)  # fmt: skip
        # Once this run has committed a batch, a batch commits every second or two: a kill a
        # random moment later lands while shards are read, while Parquet is written, or between
        # a batch's commit steps.
        committed = committed_batch(state)
        wait_until(lambda job=job, before=committed: job.poll() is not None or committed_batch(state) > before)
        time.sleep(pace.uniform(0, 6))
        if job.poll() is not None:
            assert job.returncode == 0, (tmp_path / "checkpoint.log").read_text()[-3000:]
            break  # it finished first: the final run below has nothing left to do
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        landed.append(committed_batch(state))
    assert landed and all(batch >= 0 for batch in landed), landed
    final = etl(moto, stream_name, bucket, checkpoint, "--once", "--max-records-per-batch", "50")
    assert final.returncode == 0, final.stderr
    outcome = tally(moto, stream_name, bucket)
    fault_report(f"SIGKILL of the whole job x{len(landed)} at random moments, then a rerun", outcome)
    assert (outcome.lost, outcome.duplicated, outcome.unexpected) == (0, 0, 0), f"kills after batches {landed}"
    assert_exactly_once(moto, stream_name, bucket)


def reshard(kinesis, stream: str, step: str) -> None:
    """One resharding step, waited on until the stream is ACTIVE again."""
    shards = [s for s in kinesis.list_shards(StreamName=stream)["Shards"] if "EndingSequenceNumber" not in
              s["SequenceNumberRange"]]  # fmt: skip
    if step == "split":
        low, high = (int(shards[0]["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        kinesis.split_shard(StreamName=stream, ShardToSplit=shards[0]["ShardId"],
                            NewStartingHashKey=str((low + high) // 2))  # fmt: skip
    elif step == "merge":
        ordered = sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
        kinesis.merge_shards(StreamName=stream, ShardToMerge=ordered[0]["ShardId"],
                             AdjacentShardToMerge=ordered[1]["ShardId"])  # fmt: skip
    else:
        kinesis.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def assert_first_of_each_key_kept(emulator: Emulator, stream: str, bucket: str) -> None:
    """Where an article was sent twice, the copy written is the one that arrived first (parents before children)."""
    first: dict[str, tuple] = {}
    for record in read_stream(emulator.client("kinesis"), stream):
        key = (record.arrival_time, int(record.sequence_number))
        if record.partition_key not in first or key < first[record.partition_key][0]:
            first[record.partition_key] = (key, record.shard_id, record.sequence_number)
    for row in output(emulator, bucket, "enriched").to_pylist():
        assert (row["shard_id"], row["sequence_number"]) == first[row["article_id"]][1:], row["article_id"]


@pytest.mark.localstack
def test_resharding_while_the_job_runs_loses_and_duplicates_nothing(localstack, stream_name, tmp_path, fault_report):
    """Split, merge and UpdateShardCount while the job polls: exact output, each article's first copy kept."""
    kinesis = localstack.client("kinesis")
    bucket = f"news-{uuid.uuid4().hex[:10]}"
    localstack.client("s3").create_bucket(Bucket=bucket)
    populate(localstack, stream_name, "--shards", "2", "--count", "400", "--seed", "64", "--dup-ratio", "0.1")
    with open(tmp_path / "stdout.txt", "w") as stdout:
        job = start_etl(localstack, stream_name, bucket, tmp_path / "checkpoint", "--trigger-interval", "2",
                        "--idle-timeout", "30", stdout=stdout)  # fmt: skip
    state, committed = tmp_path / "checkpoint" / "etl-state.json", -1
    for seed, step in enumerate(("split", "merge", "update_shard_count"), start=65):
        # The job has read what was put before this step: it is polling while the shards change.
        wait_until(lambda before=committed: committed_batch(state) > before)
        assert job.poll() is None, "the job stopped before the resharding was over"
        reshard(kinesis, stream_name, step)
        committed = committed_batch(state)
        populate(localstack, stream_name, "--count", "400", "--seed", str(seed), "--dup-ratio", "0.1",
                 "--bad-ratio", "0.05")  # fmt: skip
    assert job.wait(timeout=600) == 0, (tmp_path / "checkpoint.log").read_text()[-3000:]
    closed = {s["ShardId"] for s in kinesis.list_shards(StreamName=stream_name)["Shards"]
              if "EndingSequenceNumber" in s["SequenceNumberRange"]}  # fmt: skip
    read_from = {row["shard_id"] for row in output(localstack, bucket, "enriched").to_pylist()}
    assert len(closed) >= 3 and read_from & closed and read_from - closed, "parents and children were not both read"
    outcome = tally(localstack, stream_name, bucket)
    fault_report("split, merge and UpdateShardCount while the job polls", outcome)
    assert (outcome.records, outcome.lost, outcome.duplicated, outcome.unexpected) == (1600, 0, 0, 0)
    assert_exactly_once(localstack, stream_name, bucket)
    assert_first_of_each_key_kept(localstack, stream_name, bucket)


IDLE_S = 3  # the first-poll test's idle timeout; its ListShards is held for three of them


def test_a_first_poll_slower_than_the_idle_timeout_is_not_idleness(moto, stream_name, bucket, tmp_path):
    """The source's first ListShards held for three idle timeouts (a driver slow to plan, as on a
    busy cluster starting up): the job waits for that poll, reads every record, then stops idle."""
    populate(moto, stream_name, "--shards", "2", "--count", "200", "--seed", "69", "--bad-ratio", "0.05")
    with FaultProxy(moto.endpoint) as proxy:
        proxy.hold = Hold("ListShards", nth=1)
        with open(tmp_path / "stdout.txt", "w") as stdout:
            job = start_etl(moto, stream_name, bucket, tmp_path / "checkpoint", "--trigger-interval", "1",
                            "--idle-timeout", str(IDLE_S), stdout=stdout,
                            env={"AWS_ENDPOINT_URL_KINESIS": proxy.endpoint})  # fmt: skip
        assert proxy.hold.reached.wait(timeout=300), "the job never listed the shards"
        time.sleep(3 * IDLE_S)
        stopped_early = job.poll() is not None
        proxy.hold.release.set()
        assert job.wait(timeout=300) == 0, (tmp_path / "checkpoint.log").read_text()[-3000:]
    assert not stopped_early, "the job stopped while its first poll was under way"
    assert_exactly_once(moto, stream_name, bucket)


@pytest.mark.slow  # make faults
def test_iterators_that_expire_between_pages_are_renewed_after_the_last_record_read(
    moto, stream_name, bucket, tmp_path, fault_report
):
    """Half the GetRecords calls on a continuation iterator answered ExpiredIteratorException, as after a
    pause past the iterator's 5 minutes, with 25-record pages: every read resumes, output exact."""
    populate(moto, stream_name, "--shards", "2", "--count", "600", "--seed", "67", "--bad-ratio", "0.05",
             "--dup-ratio", "0.05")  # fmt: skip
    with FaultProxy(moto.endpoint, seed=2) as proxy:
        proxy.faults, proxy.max_page = [kinesis_iterator_expired(0.5)], 25
        run = etl(through(proxy, moto), stream_name, bucket, tmp_path / "checkpoint", "--once",
                  "--max-records-per-batch", "300")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert proxy.injected["GetRecords iterator expired"] >= 3, proxy.injected
    outcome = tally(moto, stream_name, bucket)
    fault_report("half the continuation iterators expired, 25-record pages", outcome)
    assert_exactly_once(moto, stream_name, bucket)


@pytest.mark.localstack
@pytest.mark.slow
def test_a_job_paused_mid_read_past_the_iterators_five_minutes_resumes_exactly(
    localstack, stream_name, tmp_path, fault_report
):
    """The whole job SIGSTOPped for 305 s between getting a shard iterator and using it:
    LocalStack's own clock expires the iterator (300 s); after SIGCONT the job gets a new one
    where it was and reads on. (The proxy only holds that call until the job is stopped.)"""
    bucket = f"news-{uuid.uuid4().hex[:10]}"
    localstack.client("s3").create_bucket(Bucket=bucket)
    populate(localstack, stream_name, "--shards", "2", "--count", "400", "--seed", "68", "--bad-ratio", "0.05")
    with FaultProxy(localstack.endpoint) as proxy:
        proxy.hold = Hold("GetShardIterator", nth=3)
        with open(tmp_path / "stdout.txt", "w") as stdout:
            job = start_etl(localstack, stream_name, bucket, tmp_path / "checkpoint", "--once", stdout=stdout,
                            env={"AWS_ENDPOINT_URL_KINESIS": proxy.endpoint})  # fmt: skip
        assert proxy.hold.reached.wait(timeout=300), "the job never asked for a shard iterator"
        os.killpg(job.pid, signal.SIGSTOP)
        proxy.hold.release.set()  # its answer waits in the stopped job's socket
        assert proxy.hold.answered.wait(timeout=60)
        time.sleep(305)
        os.killpg(job.pid, signal.SIGCONT)
        assert job.wait(timeout=600) == 0, (tmp_path / "checkpoint.log").read_text()[-3000:]
    assert proxy.answered["ExpiredIteratorException"] >= 1, proxy.answered
    outcome = tally(localstack, stream_name, bucket)
    fault_report("whole job paused 305 s mid-read (LocalStack expires the iterator)", outcome)
    assert_exactly_once(localstack, stream_name, bucket)


@pytest.mark.slow  # make faults; both answers' reading paths have unit tests (test_kinesis_source.py)
@pytest.mark.parametrize("refuse", [pytest.param(True, id="invalid-argument"),
                                    pytest.param(False, id="oldest-record-instead")])  # fmt: skip
def test_records_trimmed_before_they_were_read_fail_the_run_or_are_reported(
    refuse, moto, stream_name, bucket, tmp_path, fault_report
):
    """Retention trims the 50 records after the last one read (the proxy plays retention; AWS
    answers either InvalidArgumentException or the oldest record left). --fail-on-trimmed stops
    in one line writing nothing; by default the run reports the gap once and writes the rest."""
    populate(moto, stream_name, "--shards", "1", "--count", "100", "--seed", "71", "--bad-ratio", "0.05")
    checkpoint, metrics = tmp_path / "checkpoint", tmp_path / "metrics.json"
    assert etl(moto, stream_name, bucket, checkpoint, "--once").returncode == 0
    populate(moto, stream_name, "--count", "200", "--seed", "72", "--bad-ratio", "0.05")
    records = read_stream(moto.client("kinesis"), stream_name)
    last_read, first_kept = records[99], records[150]
    with FaultProxy(moto.endpoint) as proxy:
        proxy.trimmed = [TrimmedShard(first_kept.shard_id, first_kept.sequence_number, refuse=refuse)]
        if refuse:
            before = object_etags(moto, bucket)
            down = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", "--fail-on-trimmed")
            errors = [line for line in down.stderr.splitlines() if line.startswith("etl: error:")]
            assert down.returncode == 1 and len(errors) == 1, down.stderr[-3000:]
            assert f"records after sequence number {last_read.sequence_number} were trimmed" in errors[0]
            assert errors[0].endswith("(--fail-on-trimmed)")
            assert object_etags(moto, bucket) == before
        run = etl(through(proxy, moto), stream_name, bucket, checkpoint, "--once", "--metrics-json", str(metrics))
    assert run.returncode == 0, run.stderr
    [line] = [line for line in run.stdout.splitlines() if "TRIMMED:" in line]
    assert f"records after sequence number {last_read.sequence_number} were trimmed" in line
    assert f"reading resumed at {first_kept.sequence_number}" in line
    assert "TRIMMED before read at 1 place(s)" in run.stdout
    assert json.loads(metrics.read_text())["trimmed_gaps"] == 1
    readable = records[:100] + records[150:]  # what the job could read: the first run's and those left
    outcome = tally(moto, stream_name, bucket, readable)
    how = "InvalidArgumentException" if refuse else "oldest record instead"
    fault_report(f"50 records trimmed before read ({how}): {'fail, then ' if refuse else ''}report", outcome)
    assert_exactly_once(moto, stream_name, bucket, readable)
