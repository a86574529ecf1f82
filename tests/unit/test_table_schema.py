"""create_tables on tables an earlier version made, or that are not the job's, and vacuum's retention: on
local Delta tables."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from news_etl import table
from news_etl.near_dup import SCHEME
from news_etl.settings import ConfigurationError


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """Where create_tables("bucket") puts each table: a local folder."""
    monkeypatch.setattr(table, "table_uri", lambda bucket, kind: str(tmp_path / kind))
    monkeypatch.setattr(table, "delta_storage_options", lambda: {})
    return {kind: str(tmp_path / kind) for kind in table.KINDS}


WEEK = {"delta.deletedFileRetentionDuration": "interval 168 hours"}  # what the docs promise a pinned version
ENRICHED_PROPERTIES = {"news_etl.near_dup": SCHEME, "news_etl.split_ratios": "98/1/1"}


def test_the_tables_are_made_once_and_say_their_layout(tables):
    table.create_tables("bucket", "98/1/1")
    table.create_tables("bucket", "98/1/1")
    for kind, uri in tables.items():
        made = DeltaTable(uri)
        assert made.version() == 0
        assert (
            made.metadata().description
            == f"news-etl {kind}: partitioned by dt, the UTC date each record arrived in Kinesis"
        )
        assert made.metadata().partition_columns == ["dt"]
        assert made.metadata().configuration == WEEK | (ENRICHED_PROPERTIES if kind == table.ENRICHED else {})


def test_tables_an_earlier_version_made_are_refused_unchanged(tables):
    """Its columns, but no layout: enriched's dt was the date published."""
    for kind, uri in tables.items():
        DeltaTable.create(uri, table.table_schema(kind), partition_by=["dt"])
    with pytest.raises(ConfigurationError, match="was made by an earlier version of the job, whose enriched dt was"):
        table.create_tables("bucket", "98/1/1")
    assert {DeltaTable(uri).version() for uri in tables.values()} == {0}


def test_a_retention_already_set_on_a_table_is_kept(tables):
    """An operator raised the retention: the job's start changes nothing."""
    month = {"delta.deletedFileRetentionDuration": "interval 30 days"}
    for kind, uri in tables.items():
        DeltaTable.create(
            uri,
            table.table_schema(kind),
            partition_by=["dt"],
            configuration=month | (ENRICHED_PROPERTIES if kind == table.ENRICHED else {}),
            raise_if_key_not_exists=False,
            description=table.LAYOUT.format(kind=kind),
        )
    assert table.create_tables("bucket", "90/5/5") == "98/1/1"  # the table's ratios, not the setting's
    for kind, uri in tables.items():
        expected = month | (ENRICHED_PROPERTIES if kind == table.ENRICHED else {})
        assert (DeltaTable(uri).version(), DeltaTable(uri).metadata().configuration) == (0, expected)


def test_a_table_with_near_duplicate_keys_made_another_way_is_refused(tables):
    """Band keys are comparable only with keys made by the same scheme: another is refused in one line."""
    for kind, uri in tables.items():
        other = {"news_etl.near_dup": "minhash: 3-word shingles", "news_etl.split_ratios": "98/1/1"}
        DeltaTable.create(uri, table.table_schema(kind), partition_by=["dt"],
                          description=table.LAYOUT.format(kind=kind),
                          configuration=WEEK | (other if kind == table.ENRICHED else {}),
                          raise_if_key_not_exists=False)  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"holds near-duplicate keys made another way \(minhash: 3-word"):
        table.create_tables("bucket", "98/1/1")


def test_vacuum_refuses_a_retention_shorter_than_the_tables_in_one_line_naming_it(tables):
    """A shorter retention stops vacuum before it deletes or commits anything; a longer one runs."""
    table.create_tables("bucket", "98/1/1")
    with pytest.raises(ConfigurationError) as refused:
        table.vacuum("bucket", retention_hours=24)
    assert str(refused.value) == (
        f"a retention of 24 hours is shorter than file://{tables[table.ENRICHED]}'s "
        "delta.deletedFileRetentionDuration (interval 168 hours), which pinned versions rely on"
    )
    assert {DeltaTable(uri).version() for uri in tables.values()} == {0}
    assert table.vacuum("bucket", retention_hours=169) == {table.ENRICHED: 0, table.QUARANTINED: 0}


@pytest.mark.parametrize(
    "schema",
    [
        lambda kind: table.table_schema(kind).append(pa.field("note", pa.string())),
        lambda kind: pa.schema([pa.field("shard_id", pa.string()), pa.field("dt", pa.string())]),
        lambda kind: table.table_schema(kind).remove(0),
    ],
    ids=["an-extra-column", "a-few-of-the-columns", "lacks-a-column"],
)
def test_a_table_that_is_not_the_jobs_is_refused_and_the_other_not_made(tables, schema):
    DeltaTable.create(tables[table.QUARANTINED], schema(table.QUARANTINED), partition_by=["dt"])
    with pytest.raises(ConfigurationError, match="has other columns or partitions than this job writes"):
        table.create_tables("bucket", "98/1/1")
    assert DeltaTable(tables[table.QUARANTINED]).version() == 0
    assert not DeltaTable.is_deltatable(tables[table.ENRICHED])
