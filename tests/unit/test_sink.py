"""The writer's Delta file statistics and its description of each file, on tiny in-memory data (no S3)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pyspark.testing import assertSchemaEqual

from news_etl.schemas import ENRICHED_SCHEMA, QUARANTINE_SCHEMA
from news_etl.sink import WRITTEN_FILE_SCHEMA, WRITTEN_FILE_SPARK_SCHEMA, WrittenFile, _Stats
from news_etl.table import add_action

WRITTEN = WrittenFile(
    kind="enriched",
    dt="2026-11-20",
    path="news-data/enriched/dt=2026-11-20/part-aaaa0001-00000003-1f.parquet",
    rows=3,
    bytes=4096,
    hourly={"2026-11-20T10:00:00Z": [1, 3], "2026-11-20T09:00:00Z": [2, 11]},
    stats='{"numRecords": 3}',
)


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


def test_a_written_file_crosses_to_the_driver_as_typed_arrow_not_json_text():
    """The writer's rows have one column per field of WrittenFile; its hours are a list of structs."""
    assert WRITTEN_FILE_SCHEMA.names == ["kind", "dt", "path", "rows", "bytes", "hourly", "stats"]
    hour = pa.struct([("hour", pa.string()), ("articles", pa.int64()), ("words", pa.int64())])
    assert WRITTEN_FILE_SCHEMA.field("hourly").type == pa.list_(hour)
    assert WRITTEN.to_arrow().column("hourly").to_pylist() == [
        [{"hour": "2026-11-20T10:00:00Z", "articles": 1, "words": 3},
         {"hour": "2026-11-20T09:00:00Z", "articles": 2, "words": 11}]
    ]  # fmt: skip


def test_a_written_file_reads_back_the_same_from_arrow_and_from_spark(spark):
    """What a task yields reads back as the same file, hours in their order, from pyarrow's rows and
    from the Spark rows the driver collects."""
    assert WrittenFile.from_batches([WRITTEN.to_arrow(), WRITTEN.to_arrow()]) == [WRITTEN, WRITTEN]
    frame = spark.createDataFrame(pa.Table.from_batches([WRITTEN.to_arrow()]))
    assertSchemaEqual(frame.schema, WRITTEN_FILE_SPARK_SCHEMA)
    [row] = frame.collect()
    again = WrittenFile.from_row(row.asDict(recursive=True))
    assert again == WRITTEN
    assert list(again.hourly) == list(WRITTEN.hourly)


def test_a_files_log_entry_names_it_relative_to_its_table():
    """The Delta log entry has the path inside the table, the size, the dt partition and the statistics."""
    action = add_action("news-data", WRITTEN)
    assert action.path == "dt=2026-11-20/part-aaaa0001-00000003-1f.parquet"
    assert (action.size, action.partition_values, action.stats) == (4096, {"dt": "2026-11-20"}, '{"numRecords": 3}')
    assert action.data_change
    with pytest.raises(ValueError, match="not in the table news-data/quarantine/"):
        add_action("news-data", replace(WRITTEN, kind="quarantine"))
