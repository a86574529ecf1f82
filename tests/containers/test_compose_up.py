"""``docker compose up`` in real containers: the repository's docker-compose.yml, unchanged, run by
Docker Compose v2 on podman, with locally built stand-ins for the base images (prepare.sh).

What a user of ``docker compose up`` gets is checked: the images build; LocalStack turns healthy
once its ready hooks have created the stream and the bucket; populate and the ETL start then and
both exit 0; the ETL prints the averages; S3, read through the port the file publishes, holds
every valid article exactly once and every invalid record in quarantine. The README's inspect
commands run in the containers as written there. The ``cluster`` profile runs the same pipeline
with the ETL submitted to a Spark master and two workers, each in its own container, and the
``moto`` profile runs it on moto server, whose stream and bucket the ``moto-init`` service makes.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.containers.engine import Engine
from tests.support.compose import TOTALS  # the ETL's totals line, as the host harness reads it
from tests.support.emulators import Emulator, free_port, stop_group
from tests.support.output import CHECKPOINT_PARTS, assert_exactly_once, checkpoint_objects, object_etags, output

pytestmark = pytest.mark.containers

PROJECT = "news-etl-test"  # not the file's own name (news-etl), so a user's stack is left alone
PROFILES = ["--profile", "moto", "--profile", "cluster"]  # `down` removes only the profiles it is given
# What a user's .env could hold: a short run (populate puts for 3 s while the ETL polls); everything
# else is the file's default.
KNOBS = {
    "RECORD_COUNT": "1500",
    "PUT_RATE": "500",
    "SEED": "41",
    "PUBLISHED_UNTIL": "2026-11-20T12:00:00Z",
    "IDLE_TIMEOUT": "12",
}
STREAM, BUCKET, CHECKPOINT_BUCKET = "news", "news-data", "news-checkpoints"  # the file's defaults
RUN_TIMEOUT_S = 900  # builds from a cold layer cache included
POPULATED = re.compile(r"^populate: accepted 1500/1500 records into news \((\d+) valid, (\d+) invalid", re.MULTILINE)
SHARD_EXECUTOR = re.compile(r"(shardId-\d+) -?\d+ ms \(executor ([^)]+)\)")


class Stack:
    """One ``docker compose up`` of the project with the test's settings."""

    def __init__(self, engine: Engine, log: Path):
        self.engine, self.log = engine, log
        ports = {name: str(free_port()) for name in ("LOCALSTACK_PORT", "MOTO_PORT", "SPARK_UI_PORT")}
        self.env = {**KNOBS, **ports}
        self.up = None

    def emulator(self, name: str) -> Emulator:
        """The ``localstack`` or ``moto`` service, through the port the file publishes."""
        return Emulator(name, f"http://127.0.0.1:{self.env[f'{name.upper()}_PORT']}", process=None, log_path=self.log)

    def compose(self, *args: str):
        return self.engine.compose("--project-name", PROJECT, *args, env=self.env)

    def start(self, *up_args: str) -> None:
        self.compose(*PROFILES, "down", "--volumes", "--remove-orphans")  # what an interrupted run left
        self.up = self.engine.start_compose("--project-name", PROJECT, *up_args, env=self.env, log=self.log)

    def wait_for_exit(self, *services: str) -> dict[str, dict]:
        """The containers once ``services`` have exited; fails if ``up`` ends or time runs out."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            up_ended = self.up.poll() is not None  # read before the containers: up ends when they do
            containers = self.engine.containers(PROJECT, self.env)
            if all(containers.get(f"{PROJECT}-{name}-1", {}).get("State") == "exited" for name in services):
                return containers
            if up_ended or time.monotonic() > deadline:
                why = f"up exited with {self.up.returncode}" if up_ended else f"not exited after {RUN_TIMEOUT_S} s"
                states = {name: row.get("State") for name, row in containers.items()}
                pytest.fail(f"{services}: {why}, {states}:\n{self.log.read_text()[-5000:]}")
            time.sleep(2)

    def stop(self) -> None:
        """`make down`: containers, network and checkpoint volumes go."""
        down = self.compose(*PROFILES, "down", "--volumes")
        if self.up:
            try:
                self.up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop_group(self.up)
        assert down.returncode == 0, down.stderr
        assert self.engine.containers(PROJECT, self.env) == {}
        project = f"label=com.docker.compose.project={PROJECT}"
        assert self.engine.podman("volume", "ls", "--quiet", "--filter", project).stdout.split() == []


@pytest.fixture
def stack(engine, tmp_path):
    stack = Stack(engine, tmp_path / "compose-up.log")
    yield stack
    stack.stop()


def check_localstack(stack: Stack, containers: dict[str, dict]) -> None:
    """LocalStack is up and healthy, and says both ready hooks ran."""
    localstack = containers[f"{PROJECT}-localstack-1"]
    assert (localstack["State"], localstack["Health"]) == ("running", "healthy")
    with urllib.request.urlopen(f"{stack.emulator('localstack').endpoint}/_localstack/init/ready") as response:
        hooks = {script["name"]: script["state"] for script in json.load(response)["scripts"]}
    assert hooks == {"01-create-stream.sh": "SUCCESSFUL", "02-create-bucket.sh": "SUCCESSFUL"}


def check_pipeline(stack: Stack, containers: dict, emulator: str, populate: str, etl: str) -> tuple[int, str]:
    """``populate`` and ``etl`` exited 0, the ETL printed the averages, and the output in the
    ``emulator`` is exact. Returns the number of valid articles populate put, and the ETL's output."""
    populate_log = stack.engine.logs(f"{PROJECT}-{populate}-1")
    assert containers[f"{PROJECT}-{populate}-1"]["ExitCode"] == 0, populate_log[-3000:]
    populated = POPULATED.search(populate_log)
    assert populated, populate_log[-3000:]
    valid, invalid = map(int, populated.groups())

    etl_log = stack.engine.logs(f"{PROJECT}-{etl}-1")
    assert containers[f"{PROJECT}-{etl}-1"]["ExitCode"] == 0, etl_log[-3000:]
    assert re.search(r"^batch \d+: read [1-9]", etl_log, re.MULTILINE), "the ETL read no batch"
    assert "hourly average word_count (all windows):" in etl_log
    assert "daily average word_count (all windows):" in etl_log
    assert TOTALS.search(etl_log).groups() == ("1500", str(valid), str(invalid))

    # Compose reported each exit once (podman's events log replayed would repeat them: see
    # containers.conf), and the log was never rotated.
    assert '"Status":"log-rotation"' not in stack.engine.events_log.read_text()
    exits = re.findall(r"^(\S+) exited with code", stack.log.read_text(), re.MULTILINE)
    assert len(exits) == len(set(exits)), exits

    assert output(stack.emulator(emulator), BUCKET, "enriched").num_rows == valid
    assert_exactly_once(stack.emulator(emulator), STREAM, BUCKET)
    return valid, etl_log


def test_docker_compose_up_runs_the_pipeline_in_containers(stack):
    stack.start("up", "--build")
    containers = stack.wait_for_exit("populate", "etl")
    check_localstack(stack, containers)
    valid, _ = check_pipeline(stack, containers, "localstack", "populate", "etl")

    # README, "Inspecting the output": with nothing on the host but Docker.
    listed = stack.compose("exec", "-T", "localstack", "aws", "s3", "ls", f"s3://{BUCKET}/enriched/", "--recursive")
    assert listed.returncode == 0, listed.stderr
    enriched_keys = {key for key in object_etags(stack.emulator("localstack"), BUCKET) if key.startswith("enriched/")}
    assert {line.split()[-1] for line in listed.stdout.splitlines()} == enriched_keys
    inspected = stack.compose(
        "run", "--rm", "--no-deps", "--entrypoint", "python", "etl", "-m", "news_etl.tools", "inspect"
    )
    assert inspected.returncode == 0, inspected.stderr
    assert re.search(rf"^enriched rows: {valid}$", inspected.stdout, re.MULTILINE), inspected.stdout


def test_the_cluster_profile_reads_the_shards_in_the_workers_containers(stack):
    """`docker compose --profile cluster up populate cluster-etl`: a master, two workers, the driver,
    sharing no volume: the checkpoint is on LocalStack's S3, and the workers' disks hold none of it."""
    stack.start("--profile", "cluster", "up", "--build", "populate", "cluster-etl")
    containers = stack.wait_for_exit("populate", "cluster-etl")
    check_localstack(stack, containers)
    _, etl_log = check_pipeline(stack, containers, "localstack", "populate", "cluster-etl")

    # Each executor named in the batch lines ran in a worker container: its folder is in that
    # worker's work directory (app-<id>/<executor id>).
    readers = {executor for _, executor in SHARD_EXECUTOR.findall(etl_log)}
    assert readers and "driver" not in readers, etl_log[-3000:]
    in_workers = set()
    for worker in (f"{PROJECT}-spark-worker-1", f"{PROJECT}-spark-worker-2"):
        assert containers[worker]["Health"] == "healthy"
        listing = stack.engine.podman("exec", worker, "sh", "-c", "ls -d /tmp/spark-work/app-*/*")
        in_workers |= {path.rsplit("/", 1)[1] for path in listing.stdout.split()}
    assert readers <= in_workers, (readers, in_workers)

    # The checkpoint, every part of it, is in CHECKPOINT_BUCKET. No two containers share a volume
    # (each has only the anonymous one of the image's VOLUME), and the workers wrote nothing there.
    parts = checkpoint_objects(stack.emulator("localstack"), CHECKPOINT_BUCKET, STREAM)
    assert set(parts) >= CHECKPOINT_PARTS, parts
    mounts = Counter()
    for name in ("spark-worker-1", "spark-worker-2", "cluster-etl-1"):
        names = stack.engine.podman("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", f"{PROJECT}-{name}")
        mounts.update(names.stdout.split())
    assert mounts and set(mounts.values()) == {1}, mounts
    for worker in (f"{PROJECT}-spark-worker-1", f"{PROJECT}-spark-worker-2"):
        assert stack.engine.podman("exec", worker, "ls", "-A", "/checkpoints").stdout == "", worker


def test_the_moto_profile_runs_the_pipeline_on_moto_server(stack):
    """`make up EMULATOR=moto`: moto server, moto-init running the ready hooks, then populate and the ETL."""
    stack.start("--profile", "moto", "up", "--build", "--attach-dependencies", "moto-populate", "moto-etl")
    containers = stack.wait_for_exit("moto-populate", "moto-etl")
    assert containers[f"{PROJECT}-moto-1"]["Health"] == "healthy"
    init_log = stack.engine.logs(f"{PROJECT}-moto-init-1")
    assert containers[f"{PROJECT}-moto-init-1"]["ExitCode"] == 0, init_log
    assert "stream news created with 2 shards" in init_log and "bucket news-data created" in init_log
    check_pipeline(stack, containers, "moto", "moto-populate", "moto-etl")
