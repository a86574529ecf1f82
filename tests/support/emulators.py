"""Real AWS emulators as processes on 127.0.0.1, for the tests and the benchmarks.

moto runs from the project's own virtualenv. LocalStack 4.14.0 (the last release that runs
without an account token) needs Python 3.12+, so it lives in a virtualenv of its own that
``make localstack`` builds once into a cache outside the checkout (``LOCALSTACK_VENV``). Both
serve Kinesis and S3 over real HTTP on a free port; there is no Docker engine on the machines
that run these tests.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

EMULATORS = ("moto", "localstack")  # what the ``emulator`` fixture runs a test against, each in turn
LOCALSTACK_VERSION = "4.14.0"
LOCALSTACK_VENV = Path(
    os.environ.get("LOCALSTACK_VENV", Path.home() / ".cache" / "news-etl" / f"localstack-{LOCALSTACK_VERSION}")
)
REGION = "us-east-1"
# Emulators accept any credentials; these exist only so boto3 can sign requests.
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
START_TIMEOUT_S = 60
# LocalStack installs its Kinesis backend (kinesis-mock, from npm) on the first Kinesis call.
FIRST_KINESIS_CALL_TIMEOUT_S = 300


class EmulatorError(RuntimeError):
    """An emulator could not be started."""


@dataclass
class Emulator:
    """A running emulator process and how to reach it."""

    name: str
    endpoint: str
    process: subprocess.Popen
    log_path: Path

    def env(self) -> dict[str, str]:
        """Environment that points boto3 and pyarrow (and so our programs) at this emulator."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION, **TEST_CREDENTIALS}

    def client(self, service: str, **kwargs):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            **kwargs,
        )

    def stop(self) -> None:
        """Stop the process and everything it started (LocalStack runs a node child)."""
        stop_group(self.process)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM a process started by ``launch`` and everything in its session; SIGKILL after 15 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> tuple[subprocess.Popen, Path]:
    """Start ``command`` in a session of its own (stop_group stops all it starts), logging to ``<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return process, log_path


def wait_until_ready(
    process: subprocess.Popen, url: str, log_path: Path, ready, timeout: float = START_TIMEOUT_S
) -> None:
    """Poll ``url`` until ``ready(body)``; fail at once if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(f"{url} exited with {process.returncode}; log: {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if ready(response.read()):
                    return
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ValueError, KeyError):
            pass  # not listening yet, or half started: a truncated or not yet complete answer
        time.sleep(0.2)
    raise EmulatorError(f"{url} not ready after {timeout} s; log: {log_path}")


# moto 5.2.5's Shard.get_max_sequence_number copies the shard's keys on every record put
# (``list(self.records.keys())[-1]``): quadratic in the stream's length. Fed at 2,000 rec/s, moto
# itself fell to about 450 rec/s within ten minutes, a core busy copying keys. This moto server
# has that one method return the same value in O(1); everything else is moto's own.
O1_PUT_MOTO = ("-c", "import runpy, moto.kinesis.models as kinesis; "
               "kinesis.Shard.get_max_sequence_number = lambda self: next(reversed(self.records), 0); "
               "runpy.run_module('moto.server', run_name='__main__', alter_sys=True)")  # fmt: skip
STOCK_MOTO = ("-m", "moto.server")  # as the motoserver/moto image runs it


def start_moto(log_dir: Path, port: int | None = None, launcher: tuple[str, ...] = O1_PUT_MOTO) -> Emulator:
    """Start ``moto_server`` from this interpreter's environment (``launcher``: how Python runs it;
    by default with an O(1) put, ``O1_PUT_MOTO``)."""
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, *launcher, "-H", "127.0.0.1", "-p", str(port)]
    process, log_path = launch(f"moto-{port}", command, dict(os.environ), log_dir)
    emulator = Emulator("moto", endpoint, process, log_path)
    try:
        wait_until_ready(process, f"{endpoint}/moto-api/data.json", log_path, lambda body: True)
    except EmulatorError:
        emulator.stop()
        raise
    return emulator


def _warm_up_kinesis(emulator: Emulator) -> None:
    """The first Kinesis call installs and starts LocalStack's Kinesis backend; until that backend
    listens, LocalStack answers 500, so the call is repeated until it succeeds."""
    client = emulator.client(
        "kinesis", config=Config(read_timeout=FIRST_KINESIS_CALL_TIMEOUT_S, retries={"mode": "standard"})
    )
    deadline = time.monotonic() + FIRST_KINESIS_CALL_TIMEOUT_S
    while True:
        try:
            client.list_streams()
            return
        except ClientError as error:
            if error.response["ResponseMetadata"].get("HTTPStatusCode") != 500 or time.monotonic() > deadline:
                raise
        time.sleep(1)


def _private_filesystem(root: Path, ready_hooks: Path) -> dict[str, str]:
    """Environment giving one LocalStack its own init directory under ``root``.

    LocalStack looks for hooks in ``/etc/localstack/init`` when it believes it runs in a
    container (these machines look like one to it), else under ``FILESYSTEM_ROOT``: so it is
    told it is on a host, and ``root``'s library folder links to the shared one, where the
    Kinesis backend is already installed.
    """
    shared_libs = subprocess.run(
        [str(localstack_python()), "-c", "from localstack import config; print(config.dirs.var_libs)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (root / "etc/localstack/init").mkdir(parents=True)
    (root / "etc/localstack/init/ready.d").symlink_to(ready_hooks.resolve())
    (root / "var/lib/localstack").mkdir(parents=True)
    Path(shared_libs).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/localstack/lib").symlink_to(shared_libs)
    return {"OVERRIDE_IN_DOCKER": "0", "FILESYSTEM_ROOT": str(root)}


def localstack_python() -> Path:
    python = LOCALSTACK_VENV / "bin" / "python"
    if not python.exists():
        raise EmulatorError(f"no LocalStack virtualenv in {LOCALSTACK_VENV}: run `make localstack`")
    return python


def start_localstack(
    log_dir: Path, extra_env: dict[str, str] | None = None, port: int | None = None, ready_hooks: Path | None = None
) -> Emulator:
    """Start LocalStack's runtime on the host, serving Kinesis and S3, and warm up Kinesis.

    ``ready_hooks``: a directory of scripts to run as LocalStack's ``ready.d`` hooks, as the
    container's ``/etc/localstack/init/ready.d`` is run.
    """
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "SERVICES": "kinesis,s3",
        "KINESIS_PERSISTENCE": "0",  # with persistence on, Kinesis throughput collapses as data grows
        "DNS_ADDRESS": "0",  # no DNS server: nothing here resolves through it
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        **(extra_env or {}),
    }
    if ready_hooks:
        env.update(_private_filesystem(log_dir / f"localstack-{port}-root", ready_hooks))
    command = [str(localstack_python()), "-m", "localstack.runtime.main"]
    process, log_path = launch(f"localstack-{port}", command, env, log_dir)
    emulator = Emulator("localstack", endpoint, process, log_path)
    try:
        wait_until_ready(
            process,
            f"{endpoint}/_localstack/health",
            log_path,
            lambda body: json.loads(body)["services"].get("kinesis") in ("available", "running"),
        )
        _warm_up_kinesis(emulator)
    except Exception:
        emulator.stop()
        raise
    return emulator
