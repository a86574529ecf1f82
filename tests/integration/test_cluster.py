"""The job on a real Spark standalone cluster: a master and two workers, separate JVMs on 127.0.0.1.

Submitted as docs/cluster.md says: ``spark-submit --py-files dist/news_etl.zip`` (``make dist``),
with a Python that has the job's dependencies but not the job, on the driver and the executors
alike, so the job runs only if the zip carries all of it. The shards are read by tasks in the
workers' executors (each batch line names the executor that read each shard), and the output is
the same as a ``local[2]`` run's over the same stream. With the checkpoint on S3 the nodes share
nothing else (each worker has a work folder of its own, the driver an empty one): a worker and
then the driver are killed mid-run, and the output is still exact.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from news_etl import hadoop_s3
from tests.support.emulators import stop_group
from tests.support.jobs import PACKAGE_MAIN, REPO, etl, job_env, populate, submit_etl, wait_for_line
from tests.support.output import assert_exactly_once, output
from tests.support.spark_cluster import SPARK_HOME, StandaloneCluster, runtime_python, start_cluster

pytestmark = pytest.mark.integration
READ_BY = re.compile(r"(shardId-\d+) -?\d+ ms \(executor ([^)]+)\)")
BATCH = re.compile(r"^batch (\d+):", re.MULTILINE)


@pytest.fixture
def cluster(tmp_path_factory) -> StandaloneCluster:
    """A cluster for one test: the next one starts its own, and must not share the cores with it."""
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
              # Both executors registered before the first batch is planned (the default waits for none;
              # standalone mode expects spark.cores.max cores, and none without it).
              "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0", "--conf", "spark.cores.max=2"]  # fmt: skip
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


def test_with_the_checkpoint_on_s3_a_killed_worker_and_a_killed_driver_lose_and_duplicate_nothing(
    package_zip, moto, stream_name, tmp_path
):
    """Checkpoint on S3, nothing else shared: worker 0 killed while shards are read, later the driver
    killed, then the job submitted again: every article exactly once, the driver's folder still empty."""
    cluster = start_cluster(tmp_path / "spark", workers=2, cores=1)
    try:
        populate(moto, stream_name, "--shards", "4", "--count", "1200", "--seed", "83", "--bad-ratio", "0.05",
                 "--dup-ratio", "0.05")  # fmt: skip
        output_bucket, state_bucket = f"news-{uuid.uuid4().hex[:10]}", f"state-{uuid.uuid4().hex[:10]}"
        for bucket in (output_bucket, state_bucket):
            moto.client("s3").create_bucket(Bucket=bucket)
        python, driver_dir = runtime_python(tmp_path / "node-python"), tmp_path / "driver"
        driver_dir.mkdir()
        submit = ["--master", cluster.master_url, "--py-files", str(package_zip), *hadoop_s3.submit_args(),
                  "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
                  "--conf", "spark.cores.max=2"]  # fmt: skip
        flags = ["--stream", stream_name, "--bucket", output_bucket, "--checkpoint", f"s3://{state_bucket}/cp",
                 "--once", "--max-records-per-batch", "200"]  # fmt: skip
        env = job_env(moto, {"PYSPARK_PYTHON": str(python), "SPARK_LOCAL_IP": "127.0.0.1"})
        argv, first = [str(SPARK_HOME / "bin" / "spark-submit"), *submit, str(PACKAGE_MAIN), *flags], tmp_path / "1.txt"
        with open(first, "w") as stdout, open(tmp_path / "first.log", "w") as log:
            driver = subprocess.Popen(argv, env=env, stdout=stdout, stderr=log, cwd=driver_dir, start_new_session=True)
        try:
            wait_for_line(first, "batch 1:", driver)
            stop_group(cluster.processes[1])  # worker 0, and the executor it runs
            wait_for_line(first, "batch 3:", driver)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()

        # New records, so that the rerun has batches the killed run cannot have started, whatever it reached.
        populate(moto, stream_name, "--count", "400", "--seed", "84", "--bad-ratio", "0.05")
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=driver_dir)
        (tmp_path / "2.txt").write_text(again.stdout)
        (tmp_path / "second.log").write_text(again.stderr)
        assert again.returncode == 0, again.stderr[-3000:]
        assert cluster.processes[1].poll() is not None, "worker 0 was not killed"
        first_app, second_app = ({app.name for app in folder.glob("app-*")} for folder in cluster.worker_dirs)
        [rerun_app] = second_app - first_app  # worker 0 ran only the first application
        rerun_executors = {executor.name for executor in (cluster.worker_dirs[1] / rerun_app).iterdir()}
        # A replayed batch reads to the shard ends the killed run recorded, which name that run's
        # executors: judge only the batches the killed run cannot have started. (Worker 0 is dead, so
        # this checks that the batch lines name the executors that really read.)
        started = max(int(batch) for batch in BATCH.findall(first.read_text())) + 1
        fresh = [line for line in again.stdout.splitlines() if (batch := BATCH.match(line)) and int(batch[1]) > started]
        read_by = {executor for line in fresh for _, executor in READ_BY.findall(line)}
        assert read_by and read_by <= rerun_executors, (read_by, rerun_executors)
        assert_exactly_once(moto, stream_name, output_bucket)
        assert list(driver_dir.iterdir()) == [], "the driver wrote to its working folder"
    finally:
        cluster.stop()
