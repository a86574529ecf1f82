"""One writer per checkpoint (news_etl.lease): the lease on real moto S3, and jobs sharing a checkpoint.

The lease's rules are unit-tested on a local folder (tests/unit/test_lease.py); here its
conditional puts, listing and deletes run against moto, and whole jobs race for a checkpoint,
locally and on S3, one of them paused past its lease with SIGSTOP.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from news_etl.lease import Lease, LeaseLostError
from tests.support.emulators import Emulator
from tests.support.jobs import populate, start_etl, verify, wait_for_line
from tests.support.lease_race import race
from tests.support.output import assert_exactly_once, assert_metrics_match_output

pytestmark = pytest.mark.integration

LEASE_SECONDS = 8  # short, so that a test waits out a paused job's lease in seconds
# The refusal, whether the job found the lease held or lost the race to create its epoch.
REFUSED = re.compile(r"^etl: error: checkpoint (?P<checkpoint>\S+) (is in use by|was taken at this moment by) "
                     r"job (?P<job>[0-9a-f]{8}) \(pid \d+ on .+\)(, whose lease runs until \S+)?: "
                     r"run one job per checkpoint( \(a crashed job's lease expires by then\))?$")  # fmt: skip


@pytest.fixture
def on_moto(moto, monkeypatch) -> Emulator:
    """This process's AWS clients (news_etl's, as the job builds them) pointed at moto."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    return moto


def new_bucket(emulator: Emulator, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    emulator.client("s3").create_bucket(Bucket=name)
    return name


def lease_keys(emulator: Emulator, bucket: str, prefix: str) -> list[str]:
    listing = emulator.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/lease/")
    return sorted(item["Key"].removeprefix(f"{prefix}/lease/") for item in listing.get("Contents", []))


def lease_document(emulator: Emulator, bucket: str, prefix: str, epoch: int) -> dict:
    body = emulator.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/lease/{epoch:012d}.json")["Body"]
    return json.loads(body.read())


def test_on_s3_of_jobs_racing_for_a_new_checkpoint_exactly_one_takes_the_lease(on_moto):
    """Eight takers at once (threads) on an S3 checkpoint: If-None-Match lets one create epoch 1;
    seven refuse, naming it."""
    bucket = new_bucket(on_moto, "state")
    racers = [Lease(f"s3://{bucket}/cp", 60) for _ in range(8)]
    outcomes = race(racers)
    try:
        [winner] = [lease for lease in racers if outcomes[lease.job] == "took"]
        assert lease_document(on_moto, bucket, "cp", 1)["job"] == winner.job
        refusals = [outcome for outcome in outcomes.values() if outcome != "took"]
        assert len(refusals) == 7 and all(f"job {winner.job}" in refusal for refusal in refusals), refusals
    finally:
        for lease in racers:
            lease.release()


def test_on_s3_a_lease_is_taken_over_after_expiry_the_old_holder_loses_and_old_epochs_go(on_moto):
    """Takeovers on S3: each new holder's epoch fences the one before, and the folder keeps two files
    (deleted with no "folder" objects left behind)."""
    bucket, checkpoint = new_bucket(on_moto, "state"), "s3://{}/cp"
    now = [1_800_000_000.0]
    holders = []
    for _ in range(4):
        holder = Lease(checkpoint.format(bucket), 60, clock=lambda: now[0])
        holder.take()
        holders.append(holder)
        now[0] += 60
    try:
        assert [holder.epoch for holder in holders] == [1, 2, 3, 4]
        with pytest.raises(LeaseLostError, match=f"to job {holders[3].job} "):
            holders[2].check()
        now[0] -= 60  # the holder's own clock, within its lease
        holders[3].check()
        assert lease_keys(on_moto, bucket, "cp") == ["000000000003.json", "000000000004.json"]
    finally:
        for holder in holders:
            holder.release()
    assert lease_document(on_moto, bucket, "cp", 4)["released"] is True


def etl_errors(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("etl: error:")]


def run_two_at_once(emulator: Emulator, stream: str, bucket: str, checkpoint, tmp_path: Path, name: str, *args: str):
    """Start two jobs at once on ``checkpoint``; returns (winner, loser) as (exit code, stdout, log) each."""
    jobs = []
    for index in (1, 2):
        stdout, log = tmp_path / f"{name}-{index}.out", tmp_path / f"{name}-{index}.log"
        with open(stdout, "w") as out:
            process = start_etl(emulator, stream, bucket, checkpoint, "--once", "--lease-seconds", str(LEASE_SECONDS),
                                *args, stdout=out, log=log)  # fmt: skip
        jobs.append((process, stdout, log))
    results = [(process.wait(timeout=600), stdout, log) for process, stdout, log in jobs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], [(code, log.read_text()[-2000:]) for code, _, log in results]
    return tuple(sorted(results, key=lambda result: result[0]))


def test_two_jobs_started_at_once_on_a_local_checkpoint_one_runs_and_the_other_refuses(moto, stream_name, tmp_path):
    """Both start together: one takes the lease and writes every article exactly once; the other
    stops in one line naming the checkpoint and the winner, before it writes anything."""
    bucket, checkpoint, metrics = new_bucket(moto, "news"), tmp_path / "checkpoint", tmp_path / "metrics.json"
    populate(moto, stream_name, "--shards", "2", "--count", "400", "--seed", "91", "--bad-ratio", "0.05",
             "--dup-ratio", "0.05")  # fmt: skip
    (_, won_out, won_log), (_, lost_out, lost_log) = run_two_at_once(
        moto, stream_name, bucket, checkpoint, tmp_path, "job", "--metrics-json", str(metrics)
    )
    [refusal] = etl_errors(lost_log)
    refused = REFUSED.match(refusal)
    assert refused, refusal
    assert refused["checkpoint"] == str(checkpoint)
    assert refused["job"] == json.loads((checkpoint / "lease" / "000000000001.json").read_text())["job"]
    assert lost_out.read_text() == "", "the refused job printed batches"
    assert etl_errors(won_log) == []
    assert re.search(r"^batch 0: read \d+", won_out.read_text(), re.MULTILINE)
    assert_exactly_once(moto, stream_name, bucket)
    assert assert_metrics_match_output(moto, bucket, metrics)["records_read"] == 400
    assert sorted(path.name for path in (checkpoint / "lease").iterdir()) == ["000000000001.json"]
    assert json.loads((checkpoint / "lease" / "000000000001.json").read_text())["released"] is True


def wait_for_shard_ends(emulator: Emulator, bucket: str, prefix: str, batch: int, shards: int, timeout=300) -> None:
    """Until every shard's read for ``batch`` has recorded its end: the batch is read, not yet committed."""
    deadline, key = time.monotonic() + timeout, f"{prefix}/kinesis-shard-ends/{batch:012d}/shardId-"
    while emulator.client("s3").list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) < shards:
        assert time.monotonic() < deadline, f"batch {batch} recorded no end for each shard"
        time.sleep(0.05)


def test_on_s3_a_job_paused_past_its_lease_commits_nothing_after_another_took_over(moto, stream_name, tmp_path):
    """Checkpoint on S3. Job A is SIGSTOPped in batch 2, after reading it, before committing it;
    once its lease has expired, jobs B and C start at once: one takes the checkpoint over and runs
    to the end, the other refuses in one line. Then A is woken: it exits 1 in one line saying it
    lost the lease, having committed nothing (no Delta version, the running totals untouched), and
    the output is exact."""
    output_bucket, state_bucket = new_bucket(moto, "news"), new_bucket(moto, "state")
    checkpoint = f"s3://{state_bucket}/cp"
    populate(moto, stream_name, "--shards", "2", "--count", "450", "--seed", "92", "--bad-ratio", "0.05",
             "--dup-ratio", "0.05")  # fmt: skip
    flags = ["--max-records-per-batch", "150"]  # batches 0 and 1 by A, then the takeover replays 2 and reads the rest
    a_out, a_log = tmp_path / "a.out", tmp_path / "a.log"
    with open(a_out, "w") as stdout:
        paused = start_etl(moto, stream_name, output_bucket, checkpoint, "--once", "--lease-seconds",
                           str(LEASE_SECONDS), *flags, stdout=stdout, log=a_log)  # fmt: skip
    try:
        wait_for_line(a_out, "batch 1:", paused)
        wait_for_shard_ends(moto, state_bucket, "cp", batch=2, shards=2)
        os.killpg(paused.pid, signal.SIGSTOP)
        state = moto.client("s3").get_object(Bucket=state_bucket, Key="cp/etl-state.json")["Body"].read()
        assert json.loads(state)["last_batch_id"] == 1, "the pause did not land in batch 2, before its commit"
        expires = datetime.fromisoformat(lease_document(moto, state_bucket, "cp", 1)["expires"]).timestamp()
        while time.time() <= expires:  # bounded: a stopped job renews nothing
            time.sleep(0.2)

        (_, _, won_log), (_, _, lost_log) = run_two_at_once(moto, stream_name, output_bucket, checkpoint,
                                                           tmp_path, "takeover", *flags)  # fmt: skip
        taker = lease_document(moto, state_bucket, "cp", 2)["job"]
        [refusal] = etl_errors(lost_log)
        refused = REFUSED.match(refusal)
        assert refused and (refused["checkpoint"], refused["job"]) == (checkpoint, taker), refusal
        assert etl_errors(won_log) == []
        committed = {
            key: moto.client("s3").list_objects_v2(Bucket=output_bucket, Prefix=f"{key}/_delta_log/")["KeyCount"]
            for key in ("enriched", "quarantine")
        }
        state = moto.client("s3").get_object(Bucket=state_bucket, Key="cp/etl-state.json")["Body"].read()

        os.killpg(paused.pid, signal.SIGCONT)
        assert paused.wait(timeout=300) == 1, a_log.read_text()[-3000:]
    finally:
        if paused.poll() is None:
            os.killpg(paused.pid, signal.SIGKILL)
            paused.wait()
    [lost] = etl_errors(a_log)
    assert re.fullmatch(rf"etl: error: this job lost the lease on checkpoint {checkpoint} to job {taker} \(pid \d+ on "
                        r".+\), which took epoch 2: it stops and commits nothing more", lost), lost  # fmt: skip
    after = {
        key: moto.client("s3").list_objects_v2(Bucket=output_bucket, Prefix=f"{key}/_delta_log/")["KeyCount"]
        for key in ("enriched", "quarantine")
    }
    assert after == committed, "the woken job committed to the tables"
    assert moto.client("s3").get_object(Bucket=state_bucket, Key="cp/etl-state.json")["Body"].read() == state
    assert lease_keys(moto, state_bucket, "cp") == ["000000000001.json", "000000000002.json"]
    assert_exactly_once(moto, stream_name, output_bucket)
    assert verify(moto, checkpoint).returncode == 0
