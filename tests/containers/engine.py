"""Docker Compose driving podman, for ``make test-compose`` (tests/containers/prepare.sh sets it up).

``Engine`` starts podman's Docker-compatible API service on a private socket and points Docker
Compose v2 at it, with the classic builder (podman's API has no BuildKit). podman schedules a
container's healthchecks with systemd timers, and these machines have no systemd: so ``Engine``
also runs ``podman healthcheck run`` for each running container that has a healthcheck, at that
healthcheck's interval, which is what the timer would do. podman itself records each result,
counts the retries (a check that outlives its timeout fails once it ends), honours the start
period, and keeps the status that Compose's ``depends_on`` waits on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

from tests.support.emulators import launch, stop_group

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
# Where prepare.sh put Debian's Docker Compose and the stand-ins' podman storage (the Makefile
# passes the same CACHE to both).
CACHE = Path(os.environ.get("CACHE", Path.home() / ".cache" / "news-etl" / "containers"))
COMPOSE = CACHE / "docker-compose"
SOCKET_TIMEOUT_S = 30
DEFAULT_INTERVAL_NS = DEFAULT_TIMEOUT_NS = 30_000_000_000  # when a healthcheck declares none (as Docker)


class Engine:
    """A podman API service, the healthchecks it cannot schedule, and Compose pointed at it."""

    def __init__(self, root: Path):
        if not COMPOSE.exists():
            raise RuntimeError(f"no Docker Compose at {COMPOSE}: run `make test-compose`, which runs prepare.sh")
        self.socket = root / "podman.sock"
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "CONTAINERS_STORAGE_CONF": str(CACHE / "storage.conf"),
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_BUILDKIT": "0",
        }
        # The events log never rotates (see containers.conf): it starts empty for each session.
        self.events_log = Path(tomllib.loads(CONTAINERS_CONF.read_text())["engine"]["events_logfile_path"])
        self.events_log.unlink(missing_ok=True)
        self.events_log.parent.mkdir(parents=True, exist_ok=True)  # podman makes only the file
        command = ["podman", "system", "service", "--time=0", f"unix://{self.socket}"]
        self.service, self.log_path = launch("podman-service", command, self.env, root)
        try:
            self._wait_for_socket()
        except RuntimeError:
            stop_group(self.service)
            raise
        self._stopping = threading.Event()
        self._healthchecks = threading.Thread(target=self._run_healthchecks, name="healthchecks", daemon=True)
        self._healthchecks.start()

    def compose(self, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
        """``docker compose ARGS`` in the repository, with ``env`` as the shell's (.env-style) settings."""
        return subprocess.run(
            [str(COMPOSE), *args], cwd=REPO, env={**self.env, **env}, capture_output=True, text=True, timeout=timeout
        )

    def start_compose(self, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
        """``docker compose ARGS`` left running (``up`` stays attached), its output in ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                [str(COMPOSE), *args], cwd=REPO, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def containers(self, project: str, env: dict[str, str]) -> dict[str, dict]:
        """The project's containers by name, as ``docker compose ps --all`` reports them."""
        result = self.compose("--project-name", project, "ps", "--all", "--format", "json", env=env)
        result.check_returncode()
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return {row["Name"]: row for row in rows}

    def logs(self, container: str) -> str:
        """A container's output, stdout then stderr. (Compose 2.26's `logs` prefixes each line with
        an erase-line escape even when told --no-color: podman's is the plain text.)"""
        result = self.podman("logs", container)
        result.check_returncode()
        return result.stdout + result.stderr

    def podman(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        self._stopping.set()
        self._healthchecks.join(timeout=30)
        stop_group(self.service)

    def _wait_for_socket(self) -> None:
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise RuntimeError(f"podman system service exited with {self.service.returncode}; log: {self.log_path}")
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(str(self.socket))
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"podman system service did not listen on {self.socket}; log: {self.log_path}")

    def _run_healthchecks(self) -> None:
        checks: dict[str, tuple[float, float] | None] = {}  # container id -> (interval, timeout) in s
        due: dict[str, float] = {}
        while not self._stopping.wait(0.5):
            try:
                for container in self.podman("ps", "--quiet", "--no-trunc", timeout=60).stdout.split():
                    if container not in checks:
                        checks[container] = self._healthcheck(container)
                    if checks[container] and time.monotonic() >= due.get(container, 0):
                        interval, timeout = checks[container]
                        # podman 4.3 waits for a check past its timeout (then records a failure); a
                        # check that never ends is left behind here, so the others keep their pace.
                        self.podman("healthcheck", "run", container, timeout=timeout + 5)  # exit 1: unhealthy
                        due[container] = time.monotonic() + interval
            except (subprocess.TimeoutExpired, json.JSONDecodeError, KeyError):
                continue  # a check that hung, or a container gone mid-inspection: next round

    def _healthcheck(self, container: str) -> tuple[float, float] | None:
        inspected = self.podman("inspect", "--format", "{{json .Config.Healthcheck}}", container, timeout=60).stdout
        healthcheck = json.loads(inspected or "null")
        if not healthcheck:
            return None
        interval = healthcheck.get("Interval") or DEFAULT_INTERVAL_NS
        timeout = healthcheck.get("Timeout") or DEFAULT_TIMEOUT_NS
        return interval / 1e9, timeout / 1e9
