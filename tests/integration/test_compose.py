"""docker-compose.yml's wiring, run on the host against real LocalStack 4.14.0 and moto.

There is no Docker engine on the CI machines, so tests/support/compose.py starts what the file declares
as host processes, in ``depends_on`` order: the emulator with its own environment, ready hooks
and healthcheck command, then each service's Dockerfile entry point with that service's
environment. What is checked is what a user of ``docker compose up`` gets: both services exit 0,
the ETL prints the averages, the output is exact, and a second ``up`` resumes.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid

import pytest

from tests.support.compose import TOTALS, ComposeFile, HostRun
from tests.support.output import assert_exactly_once

pytestmark = pytest.mark.integration

# What a user's .env could hold: a small, fast run, the rest as the file's defaults.
KNOBS = {
    "RECORD_COUNT": "600",
    "PUT_RATE": "0",
    "BAD_RATIO": "0.05",
    "DUP_RATIO": "0.05",
    "TRIGGER_INTERVAL": "2",
    "IDLE_TIMEOUT": "10",
    "PUBLISHED_UNTIL": "2026-11-20T12:00:00Z",
}
BATCH_READ = re.compile(r"^batch \d+: read (\d+),", re.MULTILINE)


def init_scripts(run: HostRun) -> dict:
    """LocalStack's own account of its ready hooks."""
    with urllib.request.urlopen(f"{run.emulators['localstack'].endpoint}/_localstack/init/ready") as response:
        return json.load(response)


def run_pipeline(run: HostRun, targets: list[str], populate: str, etl: str) -> str:
    """``docker compose up TARGETS`` until populate and the ETL have exited; the ETL's stdout."""
    run.up(targets)
    code, out, err = run.wait(populate)
    assert code == 0, err[-3000:]
    assert re.search(r"^populate: accepted 600/600 records", out, re.MULTILINE), out
    code, out, err = run.wait(etl)
    assert code == 0, err[-3000:]
    assert "hourly average word_count (all windows):" in out
    assert "daily average word_count (all windows):" in out
    return out


@pytest.mark.localstack
@pytest.mark.parametrize(
    ("targets", "emulator", "populate", "etl"),
    [
        pytest.param(None, "localstack", "populate", "etl", id="localstack"),
        # Not in make test: CI runs the moto profile in real containers (tests/containers/), and
        # `.venv/bin/pytest tests/integration/test_compose.py -k profile-moto` runs it here.
        pytest.param(
            ["moto-populate", "moto-etl"],
            "moto",
            "moto-populate",
            "moto-etl",
            id="profile-moto",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_compose_up_runs_the_pipeline_and_a_second_up_resumes(targets, emulator, populate, etl, localstack, tmp_path):
    """`docker compose up`: the ETL polls while populate writes, exits 0 with the averages; `up` again adds only new."""
    # (`localstack`: the session's LocalStack has installed the Kinesis backend these runs share.)
    names = {"STREAM_NAME": f"news-{uuid.uuid4().hex[:8]}", "S3_BUCKET": f"news-{uuid.uuid4().hex[:8]}"}
    compose = ComposeFile({**KNOBS, **names, "SEED": "41"})
    targets = targets or compose.default_services()
    run = HostRun(compose, tmp_path)
    try:
        first = run_pipeline(run, targets, populate, etl)
        assert re.search(r"^batch \d+: read [1-9]", first, re.MULTILINE)
        assert TOTALS.search(first).group(1) == "600"
        assert_exactly_once(run.emulators[emulator], names["STREAM_NAME"], names["S3_BUCKET"])

        run.compose = ComposeFile({**KNOBS, **names, "SEED": "42"})  # new articles, same names
        second = run_pipeline(run, targets, populate, etl)
        assert sum(int(n) for n in BATCH_READ.findall(second)) == 600, "the second up re-read old records"
        assert TOTALS.search(second).group(1) == "1200"
        assert_exactly_once(run.emulators[emulator], names["STREAM_NAME"], names["S3_BUCKET"])

        if emulator == "localstack":  # LocalStack ran the hooks; running them again changes nothing
            scripts = {script["name"]: script["state"] for script in init_scripts(run)["scripts"]}
            assert scripts == {"01-create-stream.sh": "SUCCESSFUL", "02-create-bucket.sh": "SUCCESSFUL"}
            for hook in ("01-create-stream.sh", "02-create-bucket.sh"):
                result = run.exec("localstack", [f"/etc/localstack/init/ready.d/{hook}"])
                assert result.returncode == 0, result.stderr
                assert "exists: left as it is" in result.stdout

        inspect = run.run(etl, ["python", "-m", "news_etl.tools", "inspect"])  # as the README's `docker compose run`
        assert inspect.returncode == 0, inspect.stderr
        enriched = int(re.search(r"^enriched rows: (\d+)", inspect.stdout, re.MULTILINE).group(1))
        assert enriched == int(TOTALS.search(second).group(2))
        verify = run.run(etl, ["python", "-m", "news_etl.tools", "verify"])  # the checkpoint on the volume vs S3
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "verify: output and metrics agree" in verify.stdout
    finally:
        run.stop()


@pytest.mark.localstack
def test_a_failing_ready_hook_keeps_localstack_unhealthy(localstack, tmp_path):
    """LocalStack marks its hooks complete even when one fails; the healthcheck still says unhealthy."""
    hooks = tmp_path / "ready.d"
    hooks.mkdir()
    (hooks / "01-fail.sh").write_text("#!/usr/bin/env bash\necho 'cannot create the stream' >&2\nexit 1\n")
    (hooks / "01-fail.sh").chmod(0o755)
    compose = ComposeFile()
    compose.services["localstack"]["volumes"] = [f"{hooks}:/etc/localstack/init/ready.d:ro"]
    run = HostRun(compose, tmp_path)
    try:
        run.up(["localstack"], wait_healthy=False)
        deadline = time.monotonic() + 120
        while not init_scripts(run)["completed"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert init_scripts(run) == {
            "completed": True,
            "scripts": [{"stage": "READY", "name": "01-fail.sh", "state": "ERROR"}],
        }
        assert not run.healthy("localstack")
    finally:
        run.stop()
