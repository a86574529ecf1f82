"""PutRecords batching, partial-failure retry, pacing and CLI validation, without a network."""

from __future__ import annotations

import random

import pytest

from news_populate.articles import Record, RecordKind
from news_populate.cli import RunStats, parse_settings, record_batches, summary_line
from news_populate.producer import (
    BACKOFF_CAP_S,
    MAX_BYTES_PER_CALL,
    MAX_RECORDS_PER_CALL,
    Pacer,
    PutRecordsError,
    PutStats,
    backoff_seconds,
    batches,
    generate_in_background,
    paced_batch_size,
    put_batch,
)


def make_records(count: int, size: int = 100) -> list[Record]:
    return [Record(RecordKind.VALID, f"key-{i}", bytes([i % 256]) * size) for i in range(count)]


class RejectingKinesis:
    """Stands in for Kinesis's partial-failure answers: rejects entries whose keys it is told to."""

    def __init__(self, reject_rounds: dict[str, int]):
        self.reject_rounds = dict(reject_rounds)  # partition key -> how many more times to reject it
        self.calls: list[list[str]] = []

    def put_records(self, StreamName, Records):  # noqa: N803 (boto3's parameter names)
        keys = [r["PartitionKey"] for r in Records]
        self.calls.append(keys)
        results = []
        for key in keys:
            if self.reject_rounds.get(key, 0) > 0:
                self.reject_rounds[key] -= 1
                results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                results.append({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
        failed = sum("ErrorCode" in r for r in results)
        return {"FailedRecordCount": failed, "Records": results}


def test_batches_respect_the_record_count_limit():
    """No PutRecords call carries more than 500 entries."""
    sizes = [len(b) for b in batches(make_records(1234))]
    assert sizes == [MAX_RECORDS_PER_CALL, MAX_RECORDS_PER_CALL, 234]


def test_batches_respect_the_request_size_limit():
    """Large records are split so that no call exceeds 5 MiB."""
    big = make_records(30, size=400_000)
    grouped = list(batches(big))
    assert len(grouped) > 1
    assert all(sum(len(r.data) + len(r.partition_key) for r in b) <= MAX_BYTES_PER_CALL for b in grouped)
    assert [r for b in grouped for r in b] == big


def test_oversized_record_is_refused_with_its_size():
    """A record above Kinesis's 1 MiB limit stops the run instead of failing every retry."""
    with pytest.raises(ValueError, match="exceeds"):
        list(batches(make_records(1, size=1024 * 1024 + 1)))


def test_only_rejected_entries_are_resent():
    """After a partial failure the retry carries exactly the rejected entries, and all end up accepted."""
    kinesis = RejectingKinesis({"key-3": 1, "key-7": 2})
    stats = PutStats()
    put_batch(kinesis, "s", make_records(10), stats, sleep=lambda s: None)
    assert kinesis.calls[1] == ["key-3", "key-7"]
    assert kinesis.calls[2] == ["key-7"]
    assert stats.accepted == 10 and stats.retried == 3 and stats.calls == 3


def test_persistent_rejection_fails_with_the_error_codes():
    """Entries still rejected after every attempt raise an error naming the stream and the codes."""
    kinesis = RejectingKinesis({"key-1": 100})
    stats = PutStats()
    with pytest.raises(PutRecordsError, match=r"1 records still rejected by stream 's'.*ProvisionedThroughput"):
        put_batch(kinesis, "s", make_records(3), stats, attempts=4, sleep=lambda s: None)
    assert len(kinesis.calls) == 4 and stats.accepted == 2


def test_backoff_is_jittered_and_capped():
    """Waits grow with the attempt, never exceed the cap, and vary between retries."""
    rng = random.Random(1)
    waits = [backoff_seconds(attempt, rng) for attempt in range(20)]
    assert max(waits) <= BACKOFF_CAP_S
    assert len(set(waits)) == len(waits)
    assert max(backoff_seconds(0, rng) for _ in range(100)) < max(backoff_seconds(10, rng) for _ in range(100))


def test_pacer_holds_the_rate():
    """At 100 records/s the pacer sleeps until each batch is due, in quarter-second batches."""
    now = [0.0]
    slept: list[float] = []
    pacer = Pacer(100, clock=lambda: now[0], sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    assert paced_batch_size(100) == 25
    for sent in (0, 25, 50, 75):
        pacer.wait(sent)
    assert now[0] == pytest.approx(0.75)
    assert paced_batch_size(0) == MAX_RECORDS_PER_CALL


def test_background_generation_yields_every_batch_in_order():
    """Batches made in the child process arrive complete and in order."""
    made = list(generate_in_background(lambda: batches(make_records(1234))))
    assert made == list(batches(make_records(1234)))


def test_background_generation_raises_the_child_error():
    """An exception in the child reaches the caller instead of ending the stream early."""

    def failing():
        yield make_records(2)
        raise ValueError("ratios are impossible")

    with pytest.raises(ValueError, match="impossible"):
        list(generate_in_background(failing))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--stream"),
        (["--stream", "s", "--count", "0"], "--count"),
        (["--stream", "s", "--shards", "0"], "--shards"),
        (["--stream", "s", "--bad-ratio", "2"], "--bad-ratio"),
        (["--stream", "s", "--bad-ratio", "0.6", "--dup-ratio", "0.5"], "--dup-ratio"),
        (["--stream", "s", "--near-dup-ratio", "1.5"], "--near-dup-ratio"),
        (["--stream", "s", "--near-dup-ratio", "-0.1"], "--near-dup-ratio"),
        (["--stream", "s", "--bad-ratio", "0.5", "--near-dup-ratio", "0.5"], "--near-dup-ratio"),
        (["--stream", "s", "--rate", "-1"], "--rate"),
        (["--stream", "s", "--count", "ten"], "--count"),
        (["--stream", "s", "--until", "soon"], "--until"),
    ],
)
def test_misconfiguration_stops_with_one_line_naming_the_setting(argv, message, capsys, monkeypatch):
    """Each invalid flag exits 2 with a single line that names it."""
    monkeypatch.delenv("STREAM_NAME", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_flags_fall_back_to_environment(monkeypatch):
    """STREAM_NAME, RECORD_COUNT, BAD_RATIO, NEAR_DUP_RATIO and SEED configure a run without flags."""
    monkeypatch.setenv("STREAM_NAME", "from-env")
    monkeypatch.setenv("RECORD_COUNT", "42")
    monkeypatch.setenv("BAD_RATIO", "0.2")
    monkeypatch.setenv("NEAR_DUP_RATIO", "0.1")
    monkeypatch.setenv("SEED", "9")
    settings = parse_settings([])
    assert (settings.stream, settings.count, settings.bad_ratio, settings.near_dup_ratio, settings.seed) == (
        "from-env", 42, 0.2, 0.1, 9,
    )  # fmt: skip


def test_near_duplicates_are_off_by_default(monkeypatch):
    """Without --near-dup-ratio or NEAR_DUP_RATIO a run sends no near-duplicates."""
    monkeypatch.delenv("NEAR_DUP_RATIO", raising=False)
    assert parse_settings(["--stream", "s"]).near_dup_ratio == 0


def test_the_summary_counts_near_duplicates_among_the_valid_articles():
    """--count 1000 --bad-ratio 0.1 --dup-ratio 0.05 --near-dup-ratio 0.05: 850 distinct valid articles
    (the enriched rows to expect), 50 of them near-duplicates, said in a clause of their own."""
    settings = parse_settings(["--stream", "s", "--count", "1000", "--bad-ratio", "0.1", "--dup-ratio", "0.05",
                               "--near-dup-ratio", "0.05", "--seed", "3"])  # fmt: skip
    stats = RunStats()
    for batch in record_batches(settings, 500):
        stats.count_user_records(batch)
    line = summary_line(settings, stats, 1.0)
    assert line.startswith("populate: accepted 1000/1000 records into s (850 valid, 100 invalid, 50 duplicates), ")
    assert line.endswith(", seed 3, 50 of the valid are near-duplicates")
