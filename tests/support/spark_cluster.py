"""A Spark standalone cluster on this machine: one master and its workers, each its own JVM.

Started from the installed PySpark (``spark-class``), bound to 127.0.0.1, with a work folder per
worker; the executors a worker starts for an application run in ``<work>/<app id>/<executor id>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from tests.support.emulators import TEST_CREDENTIALS, free_port, launch, stop_group, wait_until_ready

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
        """Stop the workers (and the executors they started), then the master."""
        for process in reversed(self.processes):
            stop_group(process)


def _spark_class(name: str, main_class: str, args: list[str], work: Path, env: dict[str, str]):
    return launch(name, [str(SPARK_HOME / "bin" / "spark-class"), main_class, *args], env, work)


def start_cluster(work: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> StandaloneCluster:
    """A master and ``workers`` workers of ``cores`` cores each; returns once all workers are registered."""
    # The emulators' credentials, as a cluster manager gives its workers theirs: the job passes
    # its executors an endpoint and a region, never credentials (news_etl.session).
    env = {**os.environ, **TEST_CREDENTIALS, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
    port, ui = free_port(), free_port()
    master, master_log = _spark_class("spark-master", "org.apache.spark.deploy.master.Master",
                                      ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
                                      work, env)  # fmt: skip
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", [], [master])
    try:
        for number in range(workers):
            folder = work / f"worker-{number}"
            folder.mkdir(parents=True)
            cluster.worker_dirs.append(folder)
            worker, _ = _spark_class(
                f"spark-worker-{number}", "org.apache.spark.deploy.worker.Worker",
                ["--host", "127.0.0.1", "--cores", str(cores), "--memory", memory, "--work-dir", str(folder),
                 "--webui-port", str(free_port()), cluster.master_url],
                work, env,
            )  # fmt: skip
            cluster.processes.append(worker)
        wait_until_ready(master, f"http://127.0.0.1:{ui}/json/", master_log,
                         lambda body: json.loads(body).get("aliveworkers", 0) >= workers, START_TIMEOUT_S)  # fmt: skip
    except BaseException:
        cluster.stop()
        raise
    return cluster


def runtime_python(folder: Path) -> Path:
    """A Python with the job's runtime dependencies but not the job: what a cluster node has.

    A virtualenv whose one ``.pth`` line adds this virtualenv's site-packages. Python runs no
    ``.pth`` file of a folder added that way, so the editable installs of ``news_etl`` and
    ``news_populate`` stay out: such a Python imports the job only from the zip it is given.
    """
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (Path(purelib) / "runtime-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python
