"""The job on a real Spark standalone cluster: a master and two workers, separate JVMs on 127.0.0.1.

Submitted as docs/cluster.md says: ``spark-submit --py-files dist/news_etl.zip`` (``make dist``),
with a Python that has the job's dependencies but not the job, on the driver and the executors
alike, so the job runs only if the zip carries all of it. The shards are read by tasks in the
workers' executors (each batch line names the executor that read each shard), and the output is
the same as a ``local[*]`` run's over the same stream.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.jobs import REPO, etl, populate, submit_etl
from tests.support.output import assert_exactly_once, output
from tests.support.spark_cluster import StandaloneCluster, runtime_python, start_cluster

pytestmark = pytest.mark.integration
READ_BY = re.compile(r"(shardId-\d+) -?\d+ ms \(executor ([^)]+)\)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> StandaloneCluster:
    cluster = start_cluster(tmp_path_factory.mktemp("spark"), workers=2, cores=1)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def package_zip() -> Path:
    """dist/news_etl.zip as ``make dist`` builds it from this checkout (make rebuilds it when stale)."""
    subprocess.run(["make", "--no-print-directory", "dist"], cwd=REPO, check=True, capture_output=True)
    return REPO / "dist" / "news_etl.zip"


def enriched_rows(emulator, bucket: str) -> list[tuple]:
    """The enriched rows, comparable across runs: all but the processing time, in one order."""
    table = output(emulator, bucket, "enriched").drop_columns(["processed_at"])
    return sorted(tuple(row[c] for c in sorted(row)) for row in table.to_pylist())


def quarantined_rows(emulator, bucket: str) -> list[tuple]:
    table = output(emulator, bucket, "quarantine")
    return sorted((r["shard_id"], r["sequence_number"], r["error"], r["raw_data"]) for r in table.to_pylist())


def test_submitted_as_one_zip_both_workers_read_shards_and_the_output_equals_a_local_run(
    cluster, package_zip, moto, stream_name, tmp_path
):
    """4 shards, batches of 300, the job only in the zip: tasks on both workers' executors read them;
    output equals local[2]'s."""
    populate(moto, stream_name, "--shards", "4", "--count", "1200", "--seed", "81", "--bad-ratio", "0.05",
             "--dup-ratio", "0.05")  # fmt: skip
    on_cluster, on_local = (f"news-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for bucket in (on_cluster, on_local):
        moto.client("s3").create_bucket(Bucket=bucket)
    python = runtime_python(tmp_path / "node-python")
    assert subprocess.run([python, "-c", "import news_etl"], capture_output=True).returncode != 0
    submit = ["--master", cluster.master_url, "--py-files", str(package_zip),
              # Both executors registered before the first batch is planned (the default waits for none).
              "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0"]  # fmt: skip
    env = {"PYSPARK_PYTHON": str(python), "SPARK_LOCAL_IP": "127.0.0.1"}
    run = submit_etl(moto, submit, stream_name, on_cluster, tmp_path / "cluster", "--once",
                     "--max-records-per-batch", "300", env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    read_by = READ_BY.findall(run.stdout)
    assert {shard for shard, _ in read_by} == {f"shardId-{n:012d}" for n in range(4)}
    executors = cluster.executors()
    assert {executor for _, executor in read_by} <= set(executors), (read_by, executors)
    assert {executors[executor] for _, executor in read_by} == {0, 1}, "not both workers read shards"
    assert_exactly_once(moto, stream_name, on_cluster)

    local = etl(moto, stream_name, on_local, tmp_path / "local", "--once", "--max-records-per-batch", "300")
    assert local.returncode == 0, local.stderr[-3000:]
    assert {executor for _, executor in READ_BY.findall(local.stdout)} == {"driver"}
    assert enriched_rows(moto, on_cluster) == enriched_rows(moto, on_local)
    assert quarantined_rows(moto, on_cluster) == quarantined_rows(moto, on_local)
