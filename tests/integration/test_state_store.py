"""The dedup state's store and partitions: RocksDB for a new checkpoint, kept for an old one, fixed for life
(a new checkpoint's default, a partition per core, is checked in test_etl.py's first scenario).

What Spark recorded is read from the checkpoint's offset log (its first batch's SQL settings),
not from the job's own account of it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from news_etl.state import LEGACY_STATE_PARTITIONS
from tests.support.jobs import etl, populate
from tests.support.output import assert_exactly_once
from tests.support.spark_checkpoint import recorded_conf

pytestmark = pytest.mark.integration

PROVIDER = "spark.sql.streaming.stateStore.providerClass"


@pytest.fixture
def bucket(moto) -> str:
    name = f"state-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


def test_a_new_checkpoint_keeps_its_dedup_state_in_rocksdb_in_the_partitions_asked_for(
    moto, stream_name, bucket, tmp_path
):
    """--state-partitions 3 on a new checkpoint: RocksDB, 3 partitions; another number later stops in one line."""
    checkpoint = tmp_path / "checkpoint"
    populate(moto, stream_name, "--shards", "2", "--count", "300", "--seed", "5", "--dup-ratio", "0.1")
    run = etl(moto, stream_name, bucket, checkpoint, "--once", "--state-partitions", "3")
    assert run.returncode == 0, run.stderr[-3000:]
    conf = recorded_conf(checkpoint)
    assert conf[PROVIDER].endswith(".RocksDBStateStoreProvider")
    assert conf["spark.sql.shuffle.partitions"] == "3"
    assert_exactly_once(moto, stream_name, bucket)

    changed = etl(moto, stream_name, bucket, checkpoint, "--once", "--state-partitions", "5")
    assert changed.returncode == 1
    assert changed.stderr.strip().splitlines()[-1].startswith("etl: error: --state-partitions 5: checkpoint ")
    assert "keeps its dedup state in 3 partitions" in changed.stderr


def test_a_checkpoint_made_before_rocksdb_keeps_its_heap_store_and_goes_on_exactly(moto, stream_name, bucket, tmp_path):
    """A checkpoint whose running totals predate the state-store fields (as the job wrote them before)
    runs on the HDFS-backed store with the 4 partitions it had, and a second run after more records
    still writes each article once."""
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    # (Made after Delta output: the plain Parquet of checkpoints before that was partitioned by the
    # date published, which the job refuses.)
    legacy = {
        "stream": stream_name,
        "bucket": bucket,
        "run_id": "0123abcd",
        "stream_created": "",
        "output_format": "delta",
    }
    (checkpoint / "etl-state.json").write_text(json.dumps(legacy))
    populate(moto, stream_name, "--shards", "2", "--count", "200", "--seed", "6", "--dup-ratio", "0.1")
    first = etl(moto, stream_name, bucket, checkpoint, "--once")
    assert first.returncode == 0, first.stderr[-3000:]
    conf = recorded_conf(checkpoint)
    assert conf[PROVIDER].endswith(".HDFSBackedStateStoreProvider")
    assert conf["spark.sql.shuffle.partitions"] == str(LEGACY_STATE_PARTITIONS)
    populate(moto, stream_name, "--count", "200", "--seed", "7", "--dup-ratio", "0.1")
    second = etl(moto, stream_name, bucket, checkpoint, "--once")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_exactly_once(moto, stream_name, bucket)
