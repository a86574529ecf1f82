"""A Spark standalone cluster on this machine: one master and its workers, each its own JVM.

Started from the installed PySpark (``spark-class``), bound to 127.0.0.1, with a work folder per
worker; the executors a worker starts for an application run in ``<work>/<app id>/<executor id>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from tests.emulators import free_port

SPARK_HOME = Path(pyspark.__file__).parent
START_TIMEOUT_S = 120


@dataclass
class StandaloneCluster:
    master_url: str
    worker_dirs: list[Path]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def executors(self) -> dict[str, int]:
        """Executor id -> the number (0-based) of the worker that ran it, over all applications."""
        return {
            executor.name: number
            for number, work in enumerate(self.worker_dirs)
            for app in work.glob("app-*")
            for executor in app.iterdir()
            if executor.is_dir()
        }

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _spark_class(name: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), name, *args], stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip


def _wait_for(url: str, predicate, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if predicate(response.read().decode()):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {START_TIMEOUT_S} s")


def start_cluster(work: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> StandaloneCluster:
    """A master and ``workers`` workers of ``cores`` cores each; returns once all workers are registered."""
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
    port, ui = free_port(), free_port()
    master = _spark_class("org.apache.spark.deploy.master.Master",
                          ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
                          work / "master.log", env)  # fmt: skip
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", [], [master])
    try:
        for number in range(workers):
            folder = work / f"worker-{number}"
            folder.mkdir(parents=True)
            cluster.worker_dirs.append(folder)
            cluster.processes.append(_spark_class(
                "org.apache.spark.deploy.worker.Worker",
                ["--host", "127.0.0.1", "--cores", str(cores), "--memory", memory, "--work-dir", str(folder),
                 "--webui-port", str(free_port()), cluster.master_url],
                work / f"worker-{number}.log", env,
            ))  # fmt: skip
        _wait_for(f"http://127.0.0.1:{ui}/json/", lambda body: json.loads(body).get("aliveworkers", 0) >= workers,
                  "the Spark master and its workers")  # fmt: skip
    except BaseException:
        cluster.stop()
        raise
    return cluster
