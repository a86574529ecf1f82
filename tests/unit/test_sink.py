"""The writer's Delta file statistics, on tiny in-memory tables (no Spark, no S3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa

from news_etl.schemas import ENRICHED_SCHEMA, QUARANTINE_SCHEMA
from news_etl.sink import _Stats


def enriched(published: list[datetime | None], words: list[int]) -> pa.Table:
    columns = {field.name: pa.nulls(len(words), field.type) for field in ENRICHED_SCHEMA}
    columns["published_at"] = pa.array(published, ENRICHED_SCHEMA.field("published_at").type)
    columns["word_count"] = pa.array(words, pa.int32())
    return pa.table(columns, schema=ENRICHED_SCHEMA)


def test_statistics_span_every_row_group_written():
    """min, max and null counts cover all the row groups of a file, not only the last one."""
    stats = _Stats(ENRICHED_SCHEMA)
    stats.add(enriched([datetime(2026, 11, 20, 9, tzinfo=UTC)], [7]))
    stats.add(enriched([datetime(2026, 11, 19, 8, tzinfo=UTC), None], [3, 12]))
    document = json.loads(stats.to_json())
    assert document["numRecords"] == 3
    assert document["minValues"] == {"published_at": "2026-11-19T08:00:00.000Z", "word_count": 3}
    assert document["maxValues"] == {"published_at": "2026-11-20T09:00:00.000Z", "word_count": 12}
    assert document["nullCount"]["published_at"] == 1
    assert document["nullCount"]["title"] == 3


def test_timestamps_bound_the_rows_to_the_millisecond_minimum_down_maximum_up():
    """Delta's statistics hold timestamps to the millisecond: the minimum is cut down and the
    maximum rounded up, so both still bound every row (a pruning reader skips none)."""
    stats = _Stats(ENRICHED_SCHEMA)
    stats.add(enriched([datetime(2026, 11, 20, 9, 0, 0, 123987, tzinfo=UTC)], [1]))
    stats.add(enriched([datetime(2026, 11, 20, 9, 0, 0, 999500, tzinfo=UTC)], [1]))
    document = json.loads(stats.to_json())
    assert document["minValues"]["published_at"] == "2026-11-20T09:00:00.123Z"
    assert document["maxValues"]["published_at"] == "2026-11-20T09:00:01.000Z"


def test_a_maximum_on_a_whole_millisecond_is_kept():
    """Rounding up leaves a maximum that is already a whole millisecond as it is."""
    stats = _Stats(ENRICHED_SCHEMA)
    stats.add(enriched([datetime(2026, 11, 20, 9, 0, 0, 123000, tzinfo=UTC)], [1]))
    assert json.loads(stats.to_json())["maxValues"]["published_at"] == "2026-11-20T09:00:00.123Z"


def test_a_file_of_nulls_only_has_no_bounds_for_that_column():
    """A column with no value in the file gets a null count and no min or max."""
    stats = _Stats(QUARANTINE_SCHEMA)
    nulls = {field.name: pa.nulls(2, field.type) for field in QUARANTINE_SCHEMA}
    stats.add(pa.table(nulls, schema=QUARANTINE_SCHEMA))
    document = json.loads(stats.to_json())
    assert document["minValues"] == document["maxValues"] == {}
    assert document["nullCount"]["arrival_time"] == 2
