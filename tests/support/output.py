"""What the ETL wrote to S3, checked against an independent reading of the stream.

The expected output is derived without the ETL: the stream is read back with boto3, KPL
aggregates split into their user records by the tests' own decoder (tests/support/kinesis_reader.py),
and each record judged by the reference contract (tests/support/contract.py); the first record of
each article id is the one that must be written. A record is named by its place: shard, sequence
number, and its index in a KPL aggregate (None for a plain record). A Delta table is read by its
log (tests/support/delta_log.py), a plain folder by listing it; files written before a column
existed read null there.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.support import delta_log
from tests.support.contract import contract_violation, parse_published_at
from tests.support.emulators import Emulator
from tests.support.kinesis_reader import StreamRecord, deaggregated, read_stream

PARQUET_KEY = re.compile(r"^(enriched|quarantine)/dt=\d{4}-\d{2}-\d{2}/part-[0-9a-f]{8}-\d{8}\.parquet$")
# A Delta table's keys: its log, and data files named by the job (run, batch, attempt) or by compaction.
DELTA_KEY = re.compile(
    r"^(enriched|quarantine)/(_delta_log/.+|dt=\d{4}-\d{2}-\d{2}/part-([0-9a-f]{8}-\d{8}-[0-9a-f]{32}|\d{5}-[-0-9a-f]{36}-c000\.zstd)\.parquet)$"
)


def s3_filesystem(emulator: Emulator) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        endpoint_override=emulator.endpoint, region="us-east-1", access_key="test", secret_key="test"
    )


def output(emulator: Emulator, bucket: str, kind: str, version: int | None = None) -> pa.Table:
    """All rows of ``kind`` (``enriched`` or ``quarantine``), with ``dt``; none when nothing of the
    kind was written. A Delta table is read at ``version`` (default: the latest)."""
    filesystem = s3_filesystem(emulator)
    root = f"{bucket}/{kind}"
    if delta_log.is_table(filesystem, root):
        files = delta_log.live_files(filesystem, root, version)
        tables = [pq.read_table(file.path, filesystem=filesystem).append_column("dt", pa.array([file.dt] * file.rows))
                  for file in files]  # fmt: skip
        return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    if filesystem.get_file_info(root).type == pafs.FileType.NotFound:
        return pa.table({})
    folder = ds.dataset(root, filesystem=filesystem, format="parquet", partitioning="hive")
    schema = pa.unify_schemas([folder.schema, *(fragment.physical_schema for fragment in folder.get_fragments())])
    return ds.dataset(root, schema=schema, filesystem=filesystem, format="parquet", partitioning="hive").to_table()


def is_delta(emulator: Emulator, bucket: str) -> bool:
    return delta_log.is_table(s3_filesystem(emulator), f"{bucket}/enriched")


def data_keys(emulator: Emulator, bucket: str, kind: str) -> list[str]:
    """The keys of the files that hold ``kind``'s rows: a Delta table's live files, or a folder's."""
    filesystem, root = s3_filesystem(emulator), f"{bucket}/{kind}"
    if delta_log.is_table(filesystem, root):
        return [file.path.removeprefix(f"{bucket}/") for file in delta_log.live_files(filesystem, root)]
    return sorted(
        key for key in object_etags(emulator, bucket) if key.startswith(f"{kind}/") and key.endswith(".parquet")
    )


def object_etags(emulator: Emulator, bucket: str) -> dict[str, str]:
    pages = emulator.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


Place = tuple[str, str, int | None]  # shard, sequence number, index in a KPL aggregate (None: a plain record)


def place(row: dict) -> Place:
    """Where an output row's record was in the stream (``sub_sequence_number`` None where a row has none)."""
    return row["shard_id"], row["sequence_number"], row.get("sub_sequence_number")


def stream_rows(emulator: Emulator, stream: str, records: list[StreamRecord] | None = None) -> list[StreamRecord]:
    """What the job must account for one by one: the stream's Kinesis records (or ``records``, those
    of them the job could read), a KPL aggregate as its user records, a corrupt one as one record."""
    return deaggregated(read_stream(emulator.client("kinesis"), stream) if records is None else records)


def judge(rows: list[StreamRecord]) -> tuple[dict[str, dict], dict[Place, str]]:
    """The first article of each id among ``rows``, and the reason for every invalid one, by place."""
    articles: dict[str, dict] = {}
    invalid: dict[Place, str] = {}
    for row in rows:
        reason = row.aggregate_error or contract_violation(row.data)
        if reason:
            invalid[row.place] = reason
        else:
            article = json.loads(row.data)
            articles.setdefault(article["article_id"], article)
    return articles, invalid


def expected_output(
    emulator: Emulator, stream: str, records: list[StreamRecord] | None = None
) -> tuple[dict[str, dict], dict[Place, str]]:
    """From the stream itself (or those of its Kinesis ``records`` the job could read): the first
    article of each id, and the reason for every invalid record, by place."""
    return judge(stream_rows(emulator, stream, records))


@dataclass(frozen=True)
class Tally:
    """How the output compares with the stream: what ``make faults`` reports."""

    records: int  # in the stream, a KPL aggregate's user records one by one (a corrupt aggregate as one)
    lost: int  # valid articles or invalid records with no row
    duplicated: int  # rows beyond the first for an article id or an invalid record
    unexpected: int  # rows that should not be there at all (an unknown id, a valid record quarantined)


def tally(emulator: Emulator, stream: str, bucket: str, records: list[StreamRecord] | None = None) -> Tally:
    rows = stream_rows(emulator, stream, records)
    articles, invalid = judge(rows)
    written = Counter(row["article_id"] for row in output(emulator, bucket, "enriched").to_pylist())
    quarantined = Counter(place(row) for row in output(emulator, bucket, "quarantine").to_pylist())
    lost = len(set(articles) - set(written)) + len(set(invalid) - set(quarantined))
    duplicated = sum(n - 1 for n in written.values()) + sum(n - 1 for n in quarantined.values())
    unexpected = len(set(written) - set(articles)) + len(set(quarantined) - set(invalid))
    return Tally(len(rows), lost, duplicated, unexpected)


def assert_exactly_once(
    emulator: Emulator, stream: str, bucket: str, records: list[StreamRecord] | None = None
) -> None:
    """Every valid article once, from a record that holds it; every invalid record quarantined with
    its reason; nothing else."""
    rows = stream_rows(emulator, stream, records)
    articles, invalid = judge(rows)
    sent_at = {row.place: json.loads(row.data)["article_id"] for row in rows if row.place not in invalid}
    enriched = output(emulator, bucket, "enriched").to_pylist()
    ids = Counter(row["article_id"] for row in enriched)
    assert all(count == 1 for count in ids.values()), "an article was written twice"
    assert set(ids) == set(articles)
    for row in enriched:
        assert sent_at.get(place(row)) == row["article_id"], f"{row['article_id']} is not the record at {place(row)}"
        article = articles[row["article_id"]]
        assert row["word_count"] == len(article["content"].split())
        assert row["published_at"] == parse_published_at(article["published_at"])
        assert str(row["dt"]) == row["arrival_time"].astimezone(UTC).date().isoformat()
        assert (row["title"], row["content"]) == (article["title"], article["content"])
    quarantined = output(emulator, bucket, "quarantine").to_pylist()
    assert {place(row): row["error"] for row in quarantined} == invalid
    assert len(quarantined) == len(invalid)
    keys = object_etags(emulator, bucket)
    layout = DELTA_KEY if is_delta(emulator, bucket) else PARQUET_KEY
    assert all(layout.match(key) for key in keys if not key.startswith("_staging/")), sorted(keys)
    # pyarrow leaves empty "directory" markers where it deleted staged files; no data stays there.
    assert all(key.endswith("/") for key in keys if key.startswith("_staging/"))


def assert_metrics_match_output(emulator: Emulator, bucket: str, metrics_path) -> dict:
    """The metrics file equals a recomputation from the Parquet that was written."""
    metrics = json.loads(metrics_path.read_text())
    enriched = output(emulator, bucket, "enriched").to_pylist()
    assert metrics["enriched"] == len(enriched)
    assert metrics["quarantined"] == output(emulator, bucket, "quarantine").num_rows
    assert metrics["records_read"] == metrics["enriched"] + metrics["quarantined"] + metrics["duplicates_dropped"]
    # Each article's window: its UTC hour published, unless published more than 366 days before it
    # arrived ("earlier") or a day or more after ("later"); the hourly windows are the 7 days before
    # the newest hour, and the daily ones add up every article of their day.
    windows: dict[str, list[int]] = {}
    for row in enriched:
        published, arrived = row["published_at"], row["arrival_time"]
        if published < arrived - timedelta(days=366):
            window = "earlier"
        elif published >= arrived + timedelta(days=1):
            window = "later"
        else:
            window = published.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")
        windows.setdefault(window, []).append(row["word_count"])
    hours = sorted(window for window in windows if window not in ("earlier", "later"))
    week_before_newest = (datetime.fromisoformat(hours[-1]) - timedelta(days=7)).strftime("%Y-%m-%dT%H:00:00Z")
    days: dict[str, list[int]] = {}
    for hour in hours:
        days.setdefault(hour[:10], []).extend(windows[hour])
    expected = {
        "hourly": {hour: windows[hour] for hour in hours if hour >= week_before_newest},
        "daily": {f"{day}T00:00:00Z": counts for day, counts in days.items()},
        "outside": {window: windows[window] for window in ("earlier", "later") if window in windows},
    }
    for table, expected_windows in expected.items():
        assert [w["window_start"] for w in metrics[table]] == sorted(expected_windows), table
        for window in metrics[table]:
            counts = expected_windows[window["window_start"]]
            assert (window["records"], window["word_sum"]) == (len(counts), sum(counts))
            assert window["avg_word_count"] == pytest.approx(sum(counts) / len(counts), abs=0.005)
    return metrics


# The parts of a checkpoint on S3: Spark's offsets, commits and dedup state, the job's running
# totals and the shard ends its executors record.
CHECKPOINT_PARTS = {"spark/offsets", "spark/commits", "spark/state", "etl-state.json", "kinesis-shard-ends"}


def checkpoint_objects(emulator: Emulator, bucket: str, prefix: str) -> Counter:
    """How many objects each part of the checkpoint at ``s3://bucket/prefix`` holds."""
    pages = emulator.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    keys = [item["Key"].removeprefix(f"{prefix}/") for page in pages for item in page.get("Contents", [])]
    return Counter("/".join(key.split("/")[:2]) if key.startswith("spark/") else key.split("/")[0] for key in keys)
