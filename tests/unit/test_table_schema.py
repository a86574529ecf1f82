"""create_tables on tables an earlier version made, or that are not the job's: on local Delta tables."""

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


def test_a_table_made_before_gains_the_added_columns_once(tables):
    made_with(tables, without_added)
    table.create_tables("bucket")
    table.create_tables("bucket")
    for kind, uri in tables.items():
        assert DeltaTable(uri).version() == 1  # one schema change, then nothing
        assert set(DeltaTable(uri).schema().to_arrow().names) == set(table.table_schema(kind).names)


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
