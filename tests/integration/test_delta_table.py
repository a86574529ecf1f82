"""The Delta tables on real moto: commits exactly once, compaction, pinned versions, readers agree.

What was committed is judged by reading the ``_delta_log`` (tests/support/delta_log.py), not by
asking delta-rs; the readers a trainer would use run in processes of their own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from deltalake import DeltaTable, write_deltalake

from news_etl.aws import delta_storage_options
from news_etl.schemas import ENRICHED_SCHEMA, OUTPUT_COLUMNS, QUARANTINE_SCHEMA
from news_etl.settings import ConfigurationError
from news_etl.sink import WrittenFile, batch_writer
from news_etl.table import (
    KINDS,
    RETENTION_PROPERTY,
    commit_batch,
    compact,
    create_tables,
    open_table,
    table_schema,
    table_uri,
    vacuum,
)
from tests.support import delta_log
from tests.support.jobs import TOOLS_MODULE, etl, job_env, populate, run_module, start_etl
from tests.support.output import assert_exactly_once, expected_output, output, s3_filesystem, tally

pytestmark = pytest.mark.integration

FIELDS = {field.name: field for field in [*ENRICHED_SCHEMA, *QUARANTINE_SCHEMA]}
WRITER_SCHEMA = pa.schema([pa.field("kind", pa.string()), pa.field("dt", pa.string()),
                           *[FIELDS[name] for name in OUTPUT_COLUMNS[2:]]])  # fmt: skip


@pytest.fixture
def bucket(moto) -> str:
    name = f"news-{uuid.uuid4().hex[:10]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


def articles(ids: list[str]) -> pa.RecordBatch:
    """Enriched rows as the writer receives them, published 2026-11-20."""
    published = datetime(2026, 11, 20, 9, tzinfo=UTC)
    columns = {name: pa.nulls(len(ids), field.type) for name, field in zip(WRITER_SCHEMA.names, WRITER_SCHEMA,
                                                                          strict=True)}  # fmt: skip
    columns |= {"kind": pa.array(["enriched"] * len(ids)), "dt": pa.array(["2026-11-20"] * len(ids)),
                "article_id": pa.array(ids), "word_count": pa.array([5] * len(ids), pa.int32()),
                "published_at": pa.array([published] * len(ids), FIELDS["published_at"].type)}  # fmt: skip
    return pa.RecordBatch.from_pydict(columns, schema=WRITER_SCHEMA)


def write(bucket: str, run_id: str, batch_id: int, ids: list[str]) -> list[WrittenFile]:
    """One attempt of a batch's write task, with the job's own writer."""
    return WrittenFile.from_batches(batch_writer(bucket, run_id, batch_id)(iter([articles(ids)])))


def live_ids(moto, bucket: str) -> list[str]:
    return sorted(output(moto, bucket, "enriched").column("article_id").to_pylist())


def test_a_replayed_batch_commits_nothing_and_another_checkpoint_commits_its_own(moto, bucket, monkeypatch):
    """A batch written again and committed again (a replay) adds no row; the next batch and another
    checkpoint's batch 0 commit as usual, each as one version."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    create_tables(bucket, "98/1/1")
    [first] = commit_batch(bucket, "aaaa0001", 0, write(bucket, "aaaa0001", 0, ["a", "b"]), records_read=2)
    assert (first.kind, first.rows, first.version) == ("enriched", 2, 1)
    [replay] = commit_batch(bucket, "aaaa0001", 0, write(bucket, "aaaa0001", 0, ["a", "b"]), records_read=2)
    assert replay.version is None
    assert live_ids(moto, bucket) == ["a", "b"]
    [nxt] = commit_batch(bucket, "aaaa0001", 1, write(bucket, "aaaa0001", 1, ["c"]), records_read=1)
    [other] = commit_batch(bucket, "bbbb0002", 0, write(bucket, "bbbb0002", 0, ["d"]), records_read=1)
    assert (nxt.version, other.version) == (2, 3)
    assert live_ids(moto, bucket) == ["a", "b", "c", "d"]
    log = delta_log.commits(s3_filesystem(moto), f"{bucket}/enriched")
    info = next(action["commitInfo"] for action in log[2] if "commitInfo" in action)
    assert (info["news_etl.batch_id"], info["news_etl.run_id"], info["news_etl.rows"]) == (1, "aaaa0001", 1)
    assert next(action["txn"] for action in log[2] if "txn" in action)["version"] == 1


def quarantined(ids: list[str]) -> pa.RecordBatch:
    """Quarantined rows as the writer receives them, arrived 2026-11-20."""
    rows = articles(ids).to_pydict()
    rows |= {"kind": ["quarantine"] * len(ids), "article_id": [None] * len(ids), "word_count": [None] * len(ids),
             "published_at": [None] * len(ids), "raw_data": [i.encode() for i in ids], "error": ["not JSON"] * len(ids),
             "sequence_number": ids}  # fmt: skip
    return pa.RecordBatch.from_pydict(rows, schema=WRITER_SCHEMA)


def test_a_batch_that_died_between_its_two_commits_commits_only_the_missing_table_on_replay(moto, bucket, monkeypatch):
    """Quarantine committed, then the process dies before enriched's commit: the replay adds the
    enriched rows and no quarantined row twice."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    create_tables(bucket, "98/1/1")

    def both_kinds() -> list[WrittenFile]:
        writer = batch_writer(bucket, "cccc0003", 0)
        return WrittenFile.from_batches(writer(iter([articles(["a"]), quarantined(["q1"])])))

    commit = DeltaTable.create_write_transaction

    def dies_on_enriched(table, actions, *args, **kwargs):
        if "/enriched" in table.table_uri:
            raise OSError("the driver died here")
        return commit(table, actions, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", dies_on_enriched)
    with pytest.raises(OSError, match="died here"):
        commit_batch(bucket, "cccc0003", 0, both_kinds(), records_read=2)
    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit)
    replay = {c.kind: c.version for c in commit_batch(bucket, "cccc0003", 0, both_kinds(), records_read=2)}
    assert replay == {"quarantine": None, "enriched": 1}
    assert live_ids(moto, bucket) == ["a"]
    assert output(moto, bucket, "quarantine").column("sequence_number").to_pylist() == ["q1"]


def read_with(reader: str, moto, bucket: str, version: int | None) -> list[str]:
    """A trainer's reader in a process of its own: it must exit 0."""
    argv = [
        sys.executable,
        "-m",
        "tests.support.readers",
        reader,
        bucket,
        "latest" if version is None else str(version),
    ]
    result = subprocess.run(argv, env=job_env(moto), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{reader}: exit {result.returncode}\n{result.stderr[-2000:]}"
    return json.loads(result.stdout)


def live_sizes(moto, bucket: str, kind: str = "enriched") -> list[int]:
    filesystem = s3_filesystem(moto)
    files = delta_log.live_files(filesystem, f"{bucket}/{kind}")
    return [info.size for info in filesystem.get_file_info([file.path for file in files])]


def test_compaction_keeps_every_row_and_readers_agree_on_the_latest_and_a_pinned_version(moto, stream_name, bucket,
                                                                                          tmp_path):  # fmt: skip
    """Small batches make many small files; `compact` merges each dt's into one, rows unchanged;
    deltalake, Polars and DuckDB read each valid article once, at the latest version and at a
    version pinned before compaction (still readable: vacuum keeps a week)."""
    populate(moto, stream_name, "--shards", "2", "--count", "600", "--seed", "81", "--bad-ratio", "0.1",
             "--dup-ratio", "0.05")  # fmt: skip
    run = etl(moto, stream_name, bucket, tmp_path / "checkpoint", "--once", "--max-records-per-batch", "100",
              "--compact-target-mb", "0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert_exactly_once(moto, stream_name, bucket)
    before = live_sizes(moto, bucket)
    pinned = 2  # the table after the job's first two batches
    at_pinned = sorted(output(moto, bucket, "enriched", version=pinned).column("article_id").to_pylist())

    too_short = run_module(TOOLS_MODULE, ["compact", "--bucket", bucket, "--retention-hours", "1"], moto)
    assert too_short.returncode == 2, too_short.stderr
    assert too_short.stderr.strip() == (
        f"compact: error: --retention-hours: a retention of 1 hours is shorter than s3://{bucket}/enriched's "
        "delta.deletedFileRetentionDuration (interval 168 hours), which pinned versions rely on"
    )
    assert live_sizes(moto, bucket) == before  # refused before compacting
    compacted = run_module(TOOLS_MODULE, ["compact", "--bucket", bucket], moto, timeout=120)
    assert compacted.returncode == 0, compacted.stderr
    after = live_sizes(moto, bucket)
    days = {file.dt for file in delta_log.live_files(s3_filesystem(moto), f"{bucket}/enriched")}
    assert len(after) == len(days) < len(before)
    assert statistics.median(after) > statistics.median(before)
    assert f"enriched: {len(before)} files (median {statistics.median(before) / 1024:,.1f} KB) -> {len(after)} files" \
        in compacted.stdout  # fmt: skip
    assert_exactly_once(moto, stream_name, bucket)

    articles, _ = expected_output(moto, stream_name)
    assert 0 < len(at_pinned) < len(articles)
    for reader in ("deltalake", "polars", "duckdb"):
        assert read_with(reader, moto, bucket, None) == sorted(articles), reader
        assert read_with(reader, moto, bucket, pinned) == at_pinned, reader
    history = run_module(TOOLS_MODULE, ["versions", "--bucket", bucket], moto, timeout=60)
    assert history.returncode == 0, history.stderr
    committed = [line.split() for line in history.stdout.splitlines() if " WRITE " in line]
    assert [int(fields[4]) for fields in committed] == list(range(len(committed)))  # batch ids, in order
    assert sum(int(fields[5]) for fields in committed) == len(articles)
    assert "OPTIMIZE" in history.stdout


def test_tables_an_earlier_version_made_are_refused_in_one_line_and_left_unchanged(moto, stream_name, bucket, tmp_path,
                                                                                    monkeypatch):  # fmt: skip
    """Tables as the previous version made them (enriched's dt the date published, rows in them): the
    job stops in one line, before Spark, and neither table changes."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    earlier_rows = {"enriched": articles(["old-1", "old-2"]), "quarantine": quarantined(["q-old"])}
    for kind in KINDS:
        DeltaTable.create(table_uri(bucket, kind), table_schema(kind), partition_by=["dt"],
                          storage_options=delta_storage_options())  # fmt: skip
        rows = pa.Table.from_batches([earlier_rows[kind]]).select(table_schema(kind).names)
        write_deltalake(table_uri(bucket, kind), rows, mode="append", storage_options=delta_storage_options())
    populate(moto, stream_name, "--count", "20", "--seed", "71")

    run = etl(moto, stream_name, bucket, tmp_path / "checkpoint", "--once")
    assert run.returncode == 1
    assert run.stderr == (f"etl: error: the Delta table {table_uri(bucket, 'enriched')} was made by an earlier version "
                          "of the job, whose enriched dt was the date published, which producers control: write to "
                          "another bucket\n")  # fmt: skip
    assert {kind: open_table(bucket, kind).version() for kind in KINDS} == {"enriched": 1, "quarantine": 1}


RETENTION_S = 10  # a table's retention short enough to wait out, long enough to vacuum within


def removed_at(moto, bucket: str, version: int) -> float:
    """When (epoch seconds) ``version`` of the enriched table removed files, as its log records it."""
    log = delta_log.commits(s3_filesystem(moto), f"{bucket}/enriched")
    return max(action["remove"]["deletionTimestamp"] for action in log[version] if "remove" in action) / 1000


def test_vacuum_deletes_files_replaced_before_the_retention_and_a_version_within_it_reads(moto, bucket, monkeypatch):
    """The job's tables keep replaced files 168 hours, and vacuum refuses less in one line naming the
    property. On a table whose retention is 10 s: two files compacted into one, 10 s later that one
    compacted again; vacuum deletes the first two from S3, keeps the one replaced just now, and the
    version that uses it still reads."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    create_tables(bucket, "98/1/1")
    for kind in KINDS:
        assert open_table(bucket, kind).metadata().configuration[RETENTION_PROPERTY] == "interval 168 hours"
    with pytest.raises(ConfigurationError) as refused:
        vacuum(bucket, retention_hours=167)
    assert str(refused.value) == (
        f"a retention of 167 hours is shorter than s3://{bucket}/enriched's "
        "delta.deletedFileRetentionDuration (interval 168 hours), which pinned versions rely on"
    )

    open_table(bucket, "enriched").alter.set_table_properties({RETENTION_PROPERTY: f"interval {RETENTION_S} seconds"})
    for batch_id, ids in enumerate([["a"], ["b"]]):
        commit_batch(bucket, "eeee0005", batch_id, write(bucket, "eeee0005", batch_id, ids), records_read=1)
    batch_files = [file.path for file in delta_log.live_files(s3_filesystem(moto), f"{bucket}/enriched")]
    compact(bucket)
    pinned = open_table(bucket, "enriched").version()
    [merged] = [file.path for file in delta_log.live_files(s3_filesystem(moto), f"{bucket}/enriched")]
    assert len(batch_files) == 2 and merged not in batch_files
    time.sleep(max(0.0, removed_at(moto, bucket, pinned) + RETENTION_S + 1 - time.time()))  # the retention passes

    commit_batch(bucket, "eeee0005", 2, write(bucket, "eeee0005", 2, ["c"]), records_read=1)
    recent = [file.path for file in delta_log.live_files(s3_filesystem(moto), f"{bucket}/enriched")]
    compact(bucket)  # replaces the merged file and batch 2's: now, inside the retention
    assert time.time() < removed_at(moto, bucket, open_table(bucket, "enriched").version()) + RETENTION_S
    assert vacuum(bucket) == {"enriched": 2, "quarantine": 0}

    paths = [*batch_files, *recent]
    exists = {path: info.type != pafs.FileType.NotFound
              for path, info in zip(paths, s3_filesystem(moto).get_file_info(paths), strict=True)}  # fmt: skip
    assert merged in recent and exists == {path: path in recent for path in paths}
    assert read_with("deltalake", moto, bucket, pinned) == ["a", "b"]
    assert live_ids(moto, bucket) == ["a", "b", "c"]


@pytest.mark.faults
@pytest.mark.slow  # make faults
def test_compaction_while_the_job_writes_loses_and_duplicates_nothing(moto, stream_name, bucket, tmp_path,
                                                                     fault_report):  # fmt: skip
    """`compact` runs again and again while the job commits a batch every second: every article once."""
    populate(moto, stream_name, "--shards", "2", "--count", "300", "--seed", "91", "--bad-ratio", "0.1")
    checkpoint, report = tmp_path / "checkpoint", tmp_path / "stdout.txt"
    with open(report, "w") as stdout:  # a file, not a pipe: nothing reads it until the job ends
        job = start_etl(moto, stream_name, bucket, checkpoint, "--trigger-interval", "1", "--idle-timeout", "12",
                        "--max-records-per-batch", "40", "--compact-target-mb", "0", stdout=stdout)  # fmt: skip
    compactions, fed = 0, False
    deadline = time.monotonic() + 300
    s3 = moto.client("s3")
    while job.poll() is None and not s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/_delta_log/")["KeyCount"]:
        assert time.monotonic() < deadline, "the job created no tables"  # both exist once the second does
        time.sleep(0.2)
    while job.poll() is None and time.monotonic() < deadline:
        if compactions == 1 and not fed:  # more records while compactions go on
            populate(moto, stream_name, "--count", "300", "--seed", "92", "--bad-ratio", "0.1")
            fed = True
        result = run_module(TOOLS_MODULE, ["compact", "--bucket", bucket], moto, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        compactions += 1
    assert job.wait(timeout=300) == 0, (tmp_path / "checkpoint.log").read_text()[-3000:]
    assert compactions >= 3, f"only {compactions} compactions ran while the job wrote"
    batches = Counter(line.split(":")[0] for line in report.read_text().splitlines() if line.startswith("batch "))
    assert len(batches) >= 5, "the job wrote too few batches for the compactions to race them"
    log = delta_log.commits(s3_filesystem(moto), f"{bucket}/enriched")
    operations = [next(a["commitInfo"]["operation"] for a in log[v] if "commitInfo" in a) for v in sorted(log)]
    raced = [i for i, op in enumerate(operations) if op == "OPTIMIZE" and "WRITE" in operations[:i]
             and "WRITE" in operations[i:]]  # fmt: skip
    assert raced, f"no compaction landed between two of the job's commits: {operations}"
    outcome = tally(moto, stream_name, bucket)
    fault_report(f"compaction x{len(raced)} between the job's commits", outcome)
    assert (outcome.lost, outcome.duplicated, outcome.unexpected) == (0, 0, 0)
    assert_exactly_once(moto, stream_name, bucket)
