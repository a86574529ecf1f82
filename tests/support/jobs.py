"""The services' entry points run as subprocesses on the host, pointed at an emulator.

Each service is an installed package run with ``python -m``: the ETL (``news_etl``), its
operator tools (``news_etl.tools inspect|verify``) and populate (``news_populate``), so a test
starts them exactly as a user does, in a process of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.emulators import Emulator
from tests.support.spark_cluster import SPARK_HOME

ETL_MODULE = "news_etl"
TOOLS_MODULE = "news_etl.tools"
POPULATE_MODULE = "news_populate"
REPO = Path(__file__).resolve().parents[2]
PACKAGE_MAIN = REPO / "etl-processor" / "news_etl" / "__main__.py"  # the script spark-submit runs
UNTIL = "2026-11-20T12:00:00Z"  # --until for populate: fixed publication dates, so seeded runs repeat


def job_env(emulator: Emulator, env: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment, pointed at ``emulator``, plus ``env``."""
    return {**os.environ, **emulator.env(), **(env or {})}


def run_module(
    module: str,
    args: list[str],
    emulator: Emulator,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` to completion (in ``cwd``), pointed at ``emulator`` (plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=job_env(emulator, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def populate(emulator: Emulator, stream: str, *args: str) -> None:
    """populate into ``stream`` with publication dates up to UNTIL; it must exit 0."""
    result = run_module(POPULATE_MODULE, ["--stream", stream, "--until", UNTIL, *args], emulator)
    assert result.returncode == 0, result.stderr


def verify(emulator: Emulator, checkpoint) -> subprocess.CompletedProcess:
    """``make verify``: the checkpoint's metrics against what is in S3."""
    return run_module(TOOLS_MODULE, ["verify", "--checkpoint", str(checkpoint)], emulator, timeout=120)


def etl_args(stream: str, bucket: str, checkpoint, *args: str) -> list[str]:
    """The ETL's flags for ``stream`` into ``bucket`` on ``local[2]``, then ``args``."""
    return ["--stream", stream, "--bucket", bucket, "--checkpoint", str(checkpoint), "--master", "local[2]", *args]


def etl(
    emulator: Emulator,
    stream: str,
    bucket: str,
    checkpoint,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """One run of the ETL to its exit (ten minutes at most)."""
    argv = etl_args(stream, bucket, checkpoint, *args)
    return run_module(ETL_MODULE, argv, emulator, timeout=600, env=env, cwd=cwd)


def submit_etl(
    emulator: Emulator,
    submit: list[str],
    stream: str,
    bucket: str,
    checkpoint,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """The job as docs/cluster.md submits it: ``spark-submit SUBMIT... news_etl/__main__.py FLAGS...``,
    with no ``--master`` flag of the job's own (spark-submit's counts)."""
    flags = ["--stream", stream, "--bucket", bucket, "--checkpoint", str(checkpoint), *args]
    argv = [str(SPARK_HOME / "bin" / "spark-submit"), *submit, str(PACKAGE_MAIN), *flags]
    return subprocess.run(argv, env=job_env(emulator, env), capture_output=True, text=True, timeout=600)


def start_etl(
    emulator: Emulator,
    stream: str,
    bucket: str,
    checkpoint,
    *args: str,
    stdout=subprocess.PIPE,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """The job as a background process group (so a test can SIGKILL all of it, JVM included).

    Its log (stderr) goes to ``log`` (default ``<checkpoint>.log``); its stdout to a pipe, unless
    ``stdout`` says.
    """
    argv = [sys.executable, "-m", ETL_MODULE, *etl_args(stream, bucket, checkpoint, *args)]
    with open(log or f"{checkpoint}.log", "a") as log:
        return subprocess.Popen(
            argv, env=job_env(emulator, env), stdout=stdout, stderr=log, text=True, start_new_session=True, cwd=cwd
        )


def kill_while_under_way(job: subprocess.Popen, batch_line: str = "batch 1:", timeout: float = 300) -> None:
    """SIGKILL the job's whole process group while the batch after ``batch_line``'s is under way."""
    deadline = time.monotonic() + timeout
    for line in job.stdout:
        if line.startswith(batch_line) or time.monotonic() > deadline:
            break
    time.sleep(1.5)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def kill_once_read(job: subprocess.Popen, checkpoint: Path, batch: int, shards: int, timeout: float = 300) -> None:
    """SIGKILL the job's whole process group as soon as every shard's read for ``batch`` has recorded
    its end (in the checkpoint's ``kinesis-shard-ends``): before the batch can commit, so a rerun
    must replay exactly those reads."""
    deadline = time.monotonic() + timeout
    for line in job.stdout:  # the batch before it is done
        if line.startswith(f"batch {batch - 1}:") or time.monotonic() > deadline:
            break
    ends = checkpoint / "kinesis-shard-ends" / f"{batch:012d}"
    while len(list(ends.glob("shardId-*.json"))) < shards:
        assert time.monotonic() < deadline and job.poll() is None, f"batch {batch} recorded no end for each shard"
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def wait_for_line(path: Path, prefix: str, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until a line of ``path`` starts with ``prefix``; fails if ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while not any(line.startswith(prefix) for line in path.read_text().splitlines()):
        assert process.poll() is None, f"the job ended before {prefix!r}: exit {process.returncode}"
        assert time.monotonic() < deadline, f"no {prefix!r} line in {timeout} s"
        time.sleep(0.2)
