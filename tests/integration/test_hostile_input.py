"""Hostile records through the whole job: every one ends up enriched, quarantined or dropped as a repeat.

hypothesis draws a stream's worth of records: random bytes, deeply nested JSON, articles with
numbers, lists or nulls where strings belong, duplicated keys, Unicode edge cases (lone
surrogate escapes, NUL, bidi and zero-width characters, astral planes), articles close to
Kinesis's 1 MiB record limit, and the record-limit shapes that once made validation quadratic
(tests/support/hostile.py: escaped quotes after deep brackets, unterminated strings, whitespace,
deep nesting padded out). They are put into moto as they are; one ``--once`` run must exit
0 and its output must equal what the reference contract (tests/support/contract.py) says of each record.
Each example is one ETL run (about half a minute), so `make test` runs one hand-built example
with every kind at its hostile end, and `make faults` adds drawn ones (HOSTILE_EXAMPLES).

Memory stays bounded: the job's whole process tree (driver, JVM, Python workers) peaks at most
1.5x what a run over as many plain articles peaks at.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.support import delta_log
from tests.support.hostile import RECORD_LIMIT, record_limit_shapes
from tests.support.hostile import article as minimal_article
from tests.support.jobs import start_etl
from tests.support.output import assert_exactly_once, output, s3_filesystem, tally
from tests.support.process_tree import PeakRss

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MEMORY_BOUND = 1.5  # a hostile run's peak RSS, relative to a plain run's
# About 400 MB of records at the 1 MiB limit, read in 32 MiB batches, peak at most 2.2x a plain run
# (measured: 1.8x and 1.9x; the same stream with no byte budget, in one batch: 2.6x).
RECORDS_AT_THE_LIMIT, BYTE_BUDGET, BYTES_MEMORY_BOUND = 400, 32 * 2**20, 2.2
PLAIN_RECORDS = 100  # at least as many as an example has
EDGE_TEXT = st.text(
    st.characters(codec="utf-8") | st.sampled_from(["\x00", "\u200b", "\u202e", "\ufeff", "\U0001f600", "\u00e9"]),
    max_size=40,
)
NOT_A_STRING = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.lists(st.integers())
IDS = st.sampled_from([str(uuid.UUID(int=n)) for n in range(8)]) | st.uuids().map(str)


def article(content: st.SearchStrategy[str] = EDGE_TEXT) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "article_id": IDS,
            "title": EDGE_TEXT,
            "content": content,
            "published_at": st.sampled_from(["2026-11-20T09:14:03Z", "2026-11-20", "2026-11-20 09:14:03.123456+02:00"]),
        },
        optional={"author": EDGE_TEXT, "extra": st.recursive(NOT_A_STRING, st.lists, max_leaves=5)},
    )


@st.composite
def mistyped_article(draw) -> bytes:
    """A valid-looking article with one required field replaced by a non-string (or removed)."""
    value = draw(article())
    field = draw(st.sampled_from(["article_id", "title", "content", "published_at"]))
    if draw(st.booleans()):
        value[field] = draw(NOT_A_STRING)
    else:
        del value[field]
    return json.dumps(value).encode()


@st.composite
def duplicated_keys(draw) -> bytes:
    """The same key twice: JSON allows it, and the last one wins (as in Python's json)."""
    first, last = draw(IDS), draw(IDS)
    body = json.dumps(draw(article()))[1:-1]
    return f'{{"article_id": "{first}", {body}, "article_id": "{last}"}}'.encode()


@st.composite
def nested(draw) -> bytes:
    depth = draw(st.integers(1, 600))  # past the contract's limit of 512 levels
    inner = "[" * depth + "1" + "]" * depth
    return draw(st.sampled_from([inner, f'{{"article_id": "x", "title": "t", "content": {inner}}}'])).encode()


@st.composite
def surrogate_escape(draw) -> bytes:
    """An escaped lone surrogate: valid JSON syntax, but not text."""
    value = draw(article())
    return json.dumps(value).replace('"title": "', '"title": "\\ud800', 1).encode()


def huge_article() -> st.SearchStrategy[bytes]:
    words = st.integers(100_000, 150_000).map(lambda n: " ".join(["word"] * n))  # 500-750 KB
    return article(content=words).map(lambda value: json.dumps(value).encode())


# Every kind in every example (hypothesis's first example is its simplest: even that one has
# each kind), in an order hypothesis picks.
STREAM_OF_RECORDS = st.tuples(
    st.lists(st.binary(max_size=300), min_size=8, max_size=20),
    st.lists(article().map(lambda value: json.dumps(value, ensure_ascii=False).encode()), min_size=8, max_size=30),
    st.lists(mistyped_article(), min_size=8, max_size=20),
    st.lists(duplicated_keys(), min_size=4, max_size=10),
    st.lists(nested(), min_size=4, max_size=10),
    st.lists(surrogate_escape(), min_size=2, max_size=5),
    st.lists(huge_article(), min_size=1, max_size=2),
).flatmap(lambda kinds: st.permutations([record for kind in kinds for record in kind]))


def partition_key(data: bytes) -> str:
    """The article id, as the contract says, so that copies of one article share a shard and
    their order (first one wins) is the stream's; a random key for anything without one."""
    try:
        article_id = json.loads(data).get("article_id")
    except (ValueError, AttributeError, RecursionError):
        article_id = None
    return article_id if isinstance(article_id, str) and 0 < len(article_id) <= 256 else uuid.uuid4().hex


def put_all(kinesis, stream: str, records: list[bytes]) -> None:
    """PutRecords in chunks of at most 50 records and 4 MB (a call takes 5 MB); every entry must be
    accepted (moto takes them all, one writer)."""
    chunks: list[list[bytes]] = [[]]
    for data in records:
        if len(chunks[-1]) == 50 or sum(map(len, chunks[-1])) + len(data) > 4_000_000:
            chunks.append([])
        chunks[-1].append(data)
    for chunk in chunks:
        entries = [{"Data": data, "PartitionKey": partition_key(data)} for data in chunk]
        response = kinesis.put_records(StreamName=stream, Records=entries)
        assert response["FailedRecordCount"] == 0


# The example `make test` runs: every kind, at its hostile end (hypothesis's own first example
# would be each kind at its simplest).
EXPLICIT = [
    b"",
    b"\xff\xfe\x00 not utf-8",
    b"[" * 400 + b"1" + b"]" * 400,
    json.dumps(minimal_article(article_id=str(uuid.UUID(int=2)), content=[[[[1]]]] * 3)).encode(),
    json.dumps(minimal_article(article_id=str(uuid.UUID(int=3)), title=12345)).encode(),
    json.dumps(
        {k: v for k, v in minimal_article(article_id=str(uuid.UUID(int=4))).items() if k != "published_at"}
    ).encode(),
    json.dumps(
        minimal_article(article_id=str(uuid.UUID(int=5)), content="\x00\u200b\u202e\ufeff \U0001f600 \u00e9 ok"),
        ensure_ascii=False,
    ).encode(),
    json.dumps(minimal_article(article_id=str(uuid.UUID(int=6))))
    .replace('"title": "', '"title": "\\ud800', 1)
    .encode(),
    f'{{"article_id": "{uuid.UUID(int=7)}", "title": "x", "content": "y z", "published_at": "2026-11-20", '
    f'"article_id": "{uuid.UUID(int=8)}"}}'.encode(),
    json.dumps(minimal_article(article_id=str(uuid.UUID(int=9)), content=" ".join(["word"] * 140_000))).encode(),
    *record_limit_shapes().values(),
    json.dumps(minimal_article()).encode(),
    json.dumps(minimal_article(content="a later copy of the same id: dropped")).encode(),
]
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "0"))  # drawn ones, besides EXPLICIT


@dataclass(frozen=True)
class Run:
    stream: str
    bucket: str
    peak: int  # the job's process tree's peak RSS, bytes
    checkpoint: Path
    stdout: str


def run_once(emulator, records: list[bytes], tmp_path_factory, *args: str) -> Run:
    """Put ``records`` into a new stream and run the job once over it."""
    stream, bucket = f"hostile-{uuid.uuid4().hex[:10]}", f"hostile-{uuid.uuid4().hex[:10]}"
    kinesis = emulator.client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    emulator.client("s3").create_bucket(Bucket=bucket)
    put_all(kinesis, stream, records)
    checkpoint = tmp_path_factory.mktemp("hostile") / "checkpoint"
    with open(f"{checkpoint}.out", "w") as stdout:
        job = start_etl(emulator, stream, bucket, checkpoint, "--once", *args, stdout=stdout)
        with PeakRss(job.pid) as peak:
            job.wait(timeout=600)
    assert job.returncode == 0, Path(f"{checkpoint}.log").read_text()[-3000:]
    return Run(stream, bucket, peak.bytes, checkpoint, Path(f"{checkpoint}.out").read_text())


@pytest.fixture(scope="module")
def plain_peak(moto, tmp_path_factory) -> int:
    """Peak RSS of the job's process tree over PLAIN_RECORDS ordinary articles."""
    plain = [json.dumps(minimal_article(article_id=str(uuid.uuid4()), content="a b c " * 300)).encode()
             for _ in range(PLAIN_RECORDS)]  # fmt: skip
    return run_once(moto, plain, tmp_path_factory).peak


@settings(
    max_examples=max(EXAMPLES, 1),
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, *([Phase.generate] if EXAMPLES else [])],  # no shrinking: an ETL run each
    suppress_health_check=list(HealthCheck),
)
@example(drawn=EXPLICIT)
@given(drawn=STREAM_OF_RECORDS)
def test_hostile_records_are_each_enriched_quarantined_or_dropped_as_repeats(
    moto, tmp_path_factory, fault_report, plain_peak, drawn
):
    """One --once run over hostile records exits 0 within the memory bound, and the output is
    exactly what the contract says."""
    records = [data for data in drawn if len(data) <= RECORD_LIMIT]
    assert len(records) <= PLAIN_RECORDS
    run = run_once(moto, records, tmp_path_factory)
    stream, bucket, peak = run.stream, run.bucket, run.peak
    print(f"peak RSS of the job: {peak / 2**20:.0f} MiB; plain articles: {plain_peak / 2**20:.0f} MiB")
    assert peak <= MEMORY_BOUND * plain_peak, (peak, plain_peak)
    outcome = tally(moto, stream, bucket)
    fault_report("hostile records (a hypothesis example), one run", outcome)
    assert (outcome.records, outcome.lost, outcome.duplicated, outcome.unexpected) == (len(records), 0, 0, 0)
    assert_exactly_once(moto, stream, bucket)


@pytest.mark.slow  # make faults: 400 MB through moto
def test_records_at_the_limit_are_read_in_batches_bounded_in_bytes(moto, tmp_path_factory, fault_report, plain_peak):
    """400 valid articles of about 1 MB with --max-bytes-per-batch 32 MiB: each written once, and the
    job's peak RSS stays within 2.2x a plain run's."""
    words = " ".join(["word"] * 199_000)
    records = [json.dumps(minimal_article(article_id=str(uuid.uuid4()), content=words)).encode()
               for _ in range(RECORDS_AT_THE_LIMIT)]  # fmt: skip
    assert all(len(data) <= RECORD_LIMIT for data in records)
    run = run_once(moto, records, tmp_path_factory, "--max-bytes-per-batch", str(BYTE_BUDGET))
    stream, bucket, peak = run.stream, run.bucket, run.peak
    print(f"peak RSS of the job: {peak / 2**20:.0f} MiB; plain articles: {plain_peak / 2**20:.0f} MiB")
    outcome = tally(moto, stream, bucket)
    fault_report(f"{RECORDS_AT_THE_LIMIT} records of 1 MB, 32 MiB batches: peak {peak / plain_peak:.1f}x a plain run's",
                 outcome)  # fmt: skip
    assert (outcome.records, outcome.lost, outcome.duplicated, outcome.unexpected) == (len(records), 0, 0, 0)
    assert peak <= BYTES_MEMORY_BOUND * plain_peak, (peak, plain_peak)


def test_producer_values_cannot_multiply_files_state_or_console_lines(moto, tmp_path_factory):
    """1,000 valid articles published on 1,000 days between 1900 and 2100, and 20 with 64 KiB ids:
    every record accounted for (the long ids quarantined), each table in a file per arrival date
    after the run's compaction, and the checkpoint's windows and the console bounded."""
    first = datetime(1900, 1, 1, 9, tzinfo=UTC)
    days = [first + timedelta(days=round(day * 73_049 / 999)) for day in range(1_000)]  # 1900-01-01 .. 2100-01-01
    records = [json.dumps(minimal_article(article_id=str(uuid.uuid4()), published_at=day.isoformat())).encode()
               for day in days]  # fmt: skip
    records += [json.dumps(minimal_article(article_id=f"{n}-" + "x" * 65_536)).encode() for n in range(20)]
    run = run_once(moto, records, tmp_path_factory)
    outcome = tally(moto, run.stream, run.bucket)
    assert (outcome.records, outcome.lost, outcome.duplicated, outcome.unexpected) == (1_020, 0, 0, 0)
    assert_exactly_once(moto, run.stream, run.bucket)
    quarantined = output(moto, run.bucket, "quarantine").column("error").to_pylist()
    assert quarantined == ["article_id longer than 256 bytes"] * 20
    for kind in ("enriched", "quarantine"):
        files = delta_log.live_files(s3_filesystem(moto), f"{run.bucket}/{kind}")
        assert len(files) == len({file.dt for file in files}) <= 2, kind  # one arrival date (two across midnight)
    windows = json.loads((run.checkpoint / "etl-state.json").read_text())["hourly"]
    assert len(windows) <= 8 * 24 + 367 + 2, len(windows)  # a week of hours, a year of days, earlier and later
    assert {"earlier", "later"} <= set(windows)
    assert len(run.stdout.splitlines()) < 200, run.stdout[-3000:]
