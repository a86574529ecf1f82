"""create_tables on tables an earlier version made, or that are not the job's, and vacuum's retention: on
local Delta tables."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from news_etl import table
from news_etl.settings import ConfigurationError


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """Where create_tables("bucket") puts each table: a local folder."""
    monkeypatch.setattr(table, "table_uri", lambda bucket, kind: str(tmp_path / kind))
    monkeypatch.setattr(table, "delta_storage_options", lambda: {})
    return {kind: str(tmp_path / kind) for kind in table.KINDS}


def made_with(tables: dict[str, str], schema) -> None:
    for kind, uri in tables.items():
        DeltaTable.create(uri, schema(kind), partition_by=["dt"])


def without_added(kind: str) -> pa.Schema:
    """A table as the version before ``ADDED_COLUMNS`` made it."""
    return pa.schema([field for field in table.table_schema(kind) if field.name not in table.ADDED_COLUMNS])


WEEK = {"delta.deletedFileRetentionDuration": "interval 168 hours"}  # what the docs promise a pinned version


def test_a_table_made_before_gains_the_added_columns_and_the_retention_once(tables):
    made_with(tables, without_added)
    table.create_tables("bucket")
    table.create_tables("bucket")
    for kind, uri in tables.items():
        assert DeltaTable(uri).version() == 2  # one schema change, one property set, then nothing
        assert set(DeltaTable(uri).schema().to_arrow().names) == set(table.table_schema(kind).names)
        assert DeltaTable(uri).metadata().configuration == WEEK


def test_new_tables_keep_replaced_files_a_week(tables):
    """The tables the job creates carry the retention in their first version."""
    table.create_tables("bucket")
    for uri in tables.values():
        assert (DeltaTable(uri).version(), DeltaTable(uri).metadata().configuration) == (0, WEEK)


def test_a_retention_already_set_on_a_table_is_kept(tables):
    """An operator raised the retention: the job's start changes nothing."""
    month = {"delta.deletedFileRetentionDuration": "interval 30 days"}
    for kind, uri in tables.items():
        DeltaTable.create(uri, table.table_schema(kind), partition_by=["dt"], configuration=month)
    table.create_tables("bucket")
    for uri in tables.values():
        assert (DeltaTable(uri).version(), DeltaTable(uri).metadata().configuration) == (0, month)


def test_vacuum_refuses_a_retention_shorter_than_the_tables_in_one_line_naming_it(tables):
    """A shorter retention stops vacuum before it deletes or commits anything; a longer one runs."""
    table.create_tables("bucket")
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
        lambda kind: without_added(kind).append(pa.field("note", pa.string())),
        lambda kind: pa.schema([pa.field("shard_id", pa.string()), pa.field("dt", pa.string())]),
        lambda kind: table.table_schema(kind).remove(0),
    ],
    ids=["an-extra-column", "a-few-of-the-columns", "lacks-a-column-that-is-not-new"],
)
def test_a_table_that_is_not_the_jobs_is_refused_unchanged(tables, schema):
    made_with(tables, schema)
    with pytest.raises(ConfigurationError, match="has other columns or partitions than this job writes"):
        table.create_tables("bucket")
    assert {DeltaTable(uri).version() for uri in tables.values()} == {0}


def test_when_one_table_is_not_the_jobs_neither_is_changed(tables):
    """The other table, made before, is not migrated: nothing changes until both are the job's."""
    DeltaTable.create(tables[table.ENRICHED], without_added(table.ENRICHED), partition_by=["dt"])
    foreign = without_added(table.QUARANTINED).append(pa.field("note", pa.string()))
    DeltaTable.create(tables[table.QUARANTINED], foreign, partition_by=["dt"])
    with pytest.raises(ConfigurationError):
        table.create_tables("bucket")
    assert {DeltaTable(uri).version() for uri in tables.values()} == {0}
