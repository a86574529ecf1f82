"""The checkpoint's lease (news_etl.lease) on a local folder, with a clock the tests move.

The same code on S3 (conditional puts on real moto) is in tests/integration/test_lease.py, with
the two-jobs and paused-job runs of the whole job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from news_etl import checkpoint_files
from news_etl.lease import Lease, LeaseLostError, LeaseRecord, process_identity
from news_etl.settings import ConfigurationError
from tests.support.lease_race import race

SECONDS = 60.0
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def leases():
    """Make leases; release each at the end, so that no renewing thread outlives its test."""
    made: list[Lease] = []

    def make(checkpoint, clock=None, seconds: float = SECONDS) -> Lease:
        lease = Lease(str(checkpoint), seconds, clock or Clock())
        made.append(lease)
        return lease

    yield make
    for lease in made:
        lease.release()


def lease_file(checkpoint, epoch: int) -> dict:
    return json.loads((checkpoint / "lease" / f"{epoch:012d}.json").read_text())


def epochs(checkpoint) -> list[str]:
    return checkpoint_files.names(str(checkpoint / "lease"))


def test_the_first_job_takes_epoch_1_and_names_itself_in_its_file(tmp_path, leases):
    """A new checkpoint's lease is epoch 1; its file says which job, host and pid hold it until when."""
    lease = leases(tmp_path)
    lease.take()
    held = lease_file(tmp_path, 1)
    assert (lease.epoch, held["job"], held["pid"], held["released"]) == (1, lease.job, os.getpid(), False)
    assert held["expires"] == "2027-01-15T08:01:00.000+00:00"  # START + 60 s, readable
    assert epochs(tmp_path) == ["000000000001.json"]


def test_a_second_job_refuses_in_one_line_while_the_lease_is_held(tmp_path, leases):
    """The refusal names the checkpoint, the holder and when its lease runs out; nothing is written."""
    holder, clock = leases(tmp_path), Clock()
    holder.take()
    clock.now += SECONDS - 1
    with pytest.raises(ConfigurationError) as refused:
        leases(tmp_path, clock).take()
    message = str(refused.value)
    assert message.startswith(f"checkpoint {tmp_path} is in use by job {holder.job} (pid ")
    assert "lease runs until 2027-01-15T08:01:00.000+00:00: run one job per checkpoint" in message
    assert "\n" not in message
    assert epochs(tmp_path) == ["000000000001.json"]


def test_an_expired_lease_is_taken_over_and_its_old_holder_can_no_longer_commit(tmp_path, leases):
    """Past its expiry the next job takes epoch 2; the old holder's fence and renewal then fail."""
    old_clock, new_clock = Clock(), Clock(START + SECONDS)
    old = leases(tmp_path, old_clock)
    old.take()
    new = leases(tmp_path, new_clock)
    new.take()
    assert new.epoch == 2
    old_clock.now = new_clock.now  # the old holder wakes up
    with pytest.raises(LeaseLostError, match=f"lost the lease on checkpoint {tmp_path} to job {new.job} "):
        old.check()
    with pytest.raises(LeaseLostError):
        old.renew()
    assert old.lost is not None
    new.check()  # the new holder's fence passes


def test_a_fence_fails_when_the_next_epoch_exists_though_the_holders_clock_says_it_holds(tmp_path, leases):
    """A taker whose clock runs a lease ahead takes over early; the holder's next fence sees the
    taker's epoch and fails, whatever its own clock says."""
    holder = leases(tmp_path)
    holder.take()
    leases(tmp_path, Clock(START + SECONDS + 1)).take()
    with pytest.raises(LeaseLostError, match="which took epoch 2"):
        holder.check()


def test_a_released_lease_is_taken_at_once(tmp_path, leases):
    """release() marks the file released; the next job takes the lease without waiting."""
    first = leases(tmp_path)
    first.take()
    first.release()
    assert lease_file(tmp_path, 1)["released"] is True
    second = leases(tmp_path)
    second.take()
    assert second.epoch == 2


def test_the_lease_of_a_process_of_this_machine_is_taken_at_once_only_when_it_has_ended(tmp_path, leases):
    """A crashed job's lease on this machine need not be waited out: its process is gone. While it
    runs (stopped or not) its lease holds; a record from another machine is never judged gone."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    identity = process_identity(process.pid)
    assert identity is not None
    record = LeaseRecord("deadbeef", "here", process.pid, identity, START + SECONDS)
    checkpoint_files.create(str(tmp_path / "lease" / "000000000001.json"), record.encode())
    other_machine = LeaseRecord("cafebabe", "there", process.pid, "another-boot/" + identity.split("/", 1)[1],
                                START + SECONDS)  # fmt: skip
    (tmp_path / "other" / "lease").mkdir(parents=True)
    checkpoint_files.create(str(tmp_path / "other" / "lease" / "000000000001.json"), other_machine.encode())
    try:
        with pytest.raises(ConfigurationError, match="in use by job deadbeef"):
            leases(tmp_path).take()
    finally:
        process.kill()
        process.wait()
    assert process_identity(process.pid) is None
    taker = leases(tmp_path)
    taker.take()
    assert taker.epoch == 2
    with pytest.raises(ConfigurationError, match="in use by job cafebabe"):
        leases(tmp_path / "other").take()


@pytest.mark.parametrize("expired_holder", [False, True], ids=["new-checkpoint", "after-an-expired-lease"])
def test_of_jobs_racing_for_one_epoch_exactly_one_takes_it(expired_holder, tmp_path, leases):
    """Eight jobs start at once (threads): one takes the epoch, seven refuse, naming the winner or the holder."""
    if expired_holder:
        leases(tmp_path).take()
    racers = [leases(tmp_path, Clock(START + SECONDS * expired_holder)) for _ in range(8)]
    outcomes = race(racers)
    [winner] = [lease for lease in racers if outcomes[lease.job] == "took"]
    assert winner.epoch == 1 + expired_holder
    assert lease_file(tmp_path, winner.epoch)["job"] == winner.job
    refusals = [outcome for outcome in outcomes.values() if outcome != "took"]
    assert len(refusals) == 7
    assert all(f"job {winner.job}" in refusal for refusal in refusals), refusals


def test_the_fence_renews_a_lease_near_its_expiry(tmp_path, leases):
    """With less than a quarter of the lease left, check() renews it before it lets a commit through."""
    clock = Clock()
    lease = leases(tmp_path, clock)
    lease.take()
    clock.now += SECONDS * 0.7  # more than a quarter left: nothing written
    lease.check()
    assert lease_file(tmp_path, 1)["expires"] == "2027-01-15T08:01:00.000+00:00"
    clock.now += SECONDS * 0.1
    lease.check()
    assert lease_file(tmp_path, 1)["expires"] == "2027-01-15T08:01:48.000+00:00"  # START + 48 s + 60 s
    assert lease.expires == pytest.approx(START + SECONDS * 1.8)


def test_a_job_paused_past_its_lease_that_nobody_took_goes_on_in_the_next_epoch(tmp_path, leases):
    """Woken after its expiry with no taker, the holder takes the next epoch as a taker would, and
    its fence passes; a job starting then finds the lease held."""
    clock = Clock()
    lease = leases(tmp_path, clock)
    lease.take()
    clock.now += 5 * SECONDS
    lease.check()
    assert (lease.epoch, lease_file(tmp_path, 2)["job"]) == (2, lease.job)
    with pytest.raises(ConfigurationError, match=f"in use by job {lease.job}"):
        leases(tmp_path, clock).take()


def test_a_renewal_that_lands_after_the_expiry_loses_to_the_job_that_took_over_meanwhile(tmp_path, leases, monkeypatch):
    """The race a rewrite alone cannot settle: the holder's renewal is slow, its lease expires, a
    taker reads it as expired and takes epoch 2, then the renewal lands. The holder must not trust
    it: it tries epoch 2, finds it taken and has lost."""
    clock = Clock()
    holder = leases(tmp_path, clock)
    holder.take()
    taker = leases(tmp_path, Clock(START + SECONDS + 1))
    replace = checkpoint_files.replace

    def slow_replace(path: str, document: bytes) -> None:
        clock.now = START + SECONDS + 2  # the write hangs past the expiry ...
        taker.take()  # ... while another job takes over
        replace(path, document)

    monkeypatch.setattr(checkpoint_files, "replace", slow_replace)
    clock.now += SECONDS / 2
    with pytest.raises(LeaseLostError, match=rf"to job {taker.job} \(pid \d+ on .+\), which took epoch 2: it stops"):
        holder.renew()
    assert taker.epoch == 2


def test_a_renewal_that_lands_after_the_expiry_moves_the_holder_to_the_next_epoch(tmp_path, leases, monkeypatch):
    """A renewal that lands late, with no taker yet, is not trusted: a taker may have read the old
    epoch as expired and be about to create the next one, so the holder creates it first."""
    clock = Clock()
    holder = leases(tmp_path, clock)
    holder.take()
    replace, seen_by_a_taker = checkpoint_files.replace, []

    def slow_replace(path: str, document: bytes) -> None:
        clock.now = START + SECONDS + 2
        seen_by_a_taker.append(LeaseRecord.decode((tmp_path / "lease" / "000000000001.json").read_bytes()))
        replace(path, document)

    monkeypatch.setattr(checkpoint_files, "replace", slow_replace)
    clock.now += SECONDS / 2
    holder.renew()
    assert seen_by_a_taker[0].free(START + SECONDS + 1), "a taker would have read epoch 1 as expired"
    assert holder.epoch == 2
    taker_took = checkpoint_files.create(str(tmp_path / "lease" / "000000000002.json"), b"{}")
    assert not taker_took


def test_a_new_holder_deletes_the_epochs_before_the_one_it_took_over_from(tmp_path, leases):
    """However many takeovers, the folder keeps two files: the holder's and the one before."""
    for takeover in range(5):
        leases(tmp_path, Clock(START + takeover * SECONDS)).take()
    assert epochs(tmp_path) == ["000000000004.json", "000000000005.json"]


def test_a_lost_lease_is_not_released(tmp_path, leases):
    """release() after the lease was lost writes nothing: the file is the new holder's business."""
    old_clock = Clock()
    old = leases(tmp_path, old_clock)
    old.take()
    leases(tmp_path, Clock(START + SECONDS)).take()
    before = (tmp_path / "lease" / "000000000001.json").read_bytes()
    with pytest.raises(LeaseLostError):
        old.check()
    old.release()
    assert (tmp_path / "lease" / "000000000001.json").read_bytes() == before


def test_the_renewing_thread_keeps_the_lease_until_release(tmp_path, leases):
    """On the real clock, a 6 s lease is renewed every 2 s by its thread; release stops the thread
    and marks the lease released."""
    lease = leases(tmp_path, time.time, seconds=6)
    lease.take()
    first = lease_file(tmp_path, 1)["expires"]
    deadline = time.monotonic() + 10
    while lease_file(tmp_path, 1)["expires"] == first:
        assert time.monotonic() < deadline, "the lease was not renewed"
        time.sleep(0.1)
    lease.release()
    assert not lease._renewer.is_alive()
    assert lease_file(tmp_path, 1)["released"] is True
