"""docker-compose.yml run on the host, as declared, for the tests (no Docker engine exists here).

``ComposeFile`` reads the file with compose's variable interpolation. ``HostRun`` then starts
a set of services and their dependencies the way ``docker compose up`` does, in ``depends_on``
order and waiting on each condition, but as host processes:

- an emulator service runs as the same release on the host (LocalStack 4.14.0, moto at the
  installed version), with its service environment and its ``ready.d`` mount as hooks, and
  is healthy when the service's own healthcheck command passes;
- a service built from a Dockerfile runs that Dockerfile's ENTRYPOINT/CMD from its build
  folder, with the service's environment and nothing from the test's;
- the ``amazon/aws-cli`` tool service runs its declared entrypoint with the aws CLI of .venv.

Service host names (``localstack:4566``), ``localhost`` inside a service, and container paths
(volumes, WORKDIR) are rewritten to 127.0.0.1 ports and host folders. Nothing else is changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from importlib.metadata import version
from pathlib import Path

import yaml

from tests.support.emulators import (
    LOCALSTACK_VERSION,
    STOCK_MOTO,
    Emulator,
    free_port,
    start_localstack,
    start_moto,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\$|\$(?P<bare>[A-Za-z_]\w*)|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
HOST_ENV = ("PATH", "HOME", "LANG", "JAVA_HOME", "TMPDIR")  # what a container's image provides
HEALTH_TIMEOUT_S = 300
# The ETL's closing totals line, as a service log shows it (the host and the container compose tests).
TOTALS = re.compile(r"^totals on this checkpoint: read (\d+), enriched (\d+), quarantined (\d+)", re.MULTILINE)


class ComposeError(RuntimeError):
    """The compose file declares something this host run cannot do or a service failed."""


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?error}``,
    ``${NAME?error}`` and ``$$`` (a literal ``$``, as a shell command in the file needs it)."""

    def substitute(match: re.Match) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"] or match["bare"], match["op"], match["arg"]
        value = variables.get(name)
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        if (op == ":?" and not value) or (op == "?" and value is None):
            raise ComposeError(f"{name}: {arg}")
        return value or ""

    return INTERPOLATION.sub(substitute, text)


@dataclass
class ComposeFile:
    """The parsed file, interpolated with ``variables`` (what a user's .env would hold)."""

    variables: dict[str, str] = field(default_factory=dict)
    path: Path = COMPOSE_FILE

    def __post_init__(self) -> None:
        self.document = self._interpolated(yaml.safe_load(self.path.read_text()))
        self.services: dict[str, dict] = self.document["services"]

    def _interpolated(self, node):
        """As compose does it: the YAML is parsed first, then each string value interpolated."""
        if isinstance(node, dict):
            return {key: self._interpolated(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self._interpolated(value) for value in node]
        return interpolate(node, self.variables) if isinstance(node, str) else node

    def start_order(self, targets: list[str]) -> list[str]:
        """``targets`` and everything they depend on, dependencies first."""
        graph, pending = {}, list(targets)
        while pending:
            name = pending.pop()
            if name not in graph:
                graph[name] = set(self.services[name].get("depends_on", {}))
                pending.extend(graph[name])
        return list(TopologicalSorter(graph).static_order())

    def default_services(self) -> list[str]:
        """What ``docker compose up`` starts: the services without a profile."""
        return [name for name, service in self.services.items() if not service.get("profiles")]


def dockerfile_command(context: Path) -> tuple[list[str], str]:
    """The image's ENTRYPOINT + CMD (exec form) and its WORKDIR."""
    instructions = {}
    for line in (context / "Dockerfile").read_text().splitlines():
        keyword, _, argument = line.partition(" ")
        if keyword in ("ENTRYPOINT", "CMD", "WORKDIR"):
            instructions[keyword] = argument.strip()  # the last one counts, as in Docker
    command = [*json.loads(instructions.get("ENTRYPOINT", "[]")), *json.loads(instructions.get("CMD", "[]"))]
    return command, instructions.get("WORKDIR", "/")


@dataclass
class HostRun:
    """Services of a ``ComposeFile`` running on this host; ``stop()`` ends them all."""

    compose: ComposeFile
    workdir: Path  # named volumes, logs and emulator files go here
    emulators: dict[str, Emulator] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # "//localstack:4566" -> "//127.0.0.1:PORT"

    def up(self, targets: list[str], wait_healthy: bool = True) -> None:
        """Start ``targets`` and their dependencies, as ``docker compose up`` would."""
        for name in self.compose.start_order(targets):
            if name in self.emulators:  # already running from an earlier up, as compose leaves it
                continue
            self._wait_for_dependencies(name)
            service = self.compose.services[name]
            if "build" in service:
                self.processes[name] = self._run_built(name, service)
            elif service["image"].startswith("amazon/aws-cli:"):
                self.processes[name] = self._run_aws_cli(name, service)
            else:
                self.emulators[name] = self._start_emulator(name, service)
                if wait_healthy:
                    self._wait_healthy(name)

    def wait(self, name: str, timeout: float = 600) -> tuple[int, str, str]:
        """Wait for a one-off service to exit: its exit code, stdout and stderr."""
        process = self.processes[name]
        process.wait(timeout=timeout)
        return process.returncode, self.log(name, "stdout"), self.log(name, "stderr")

    def exec(self, name: str, argv: list[str]) -> subprocess.CompletedProcess:
        """``docker compose exec NAME ARGV`` in a running (emulator) service, on this host."""
        if name not in self.emulators:
            raise ComposeError(f"{name} is not running: `docker compose exec` needs a running service")
        return self._complete(name, argv, cwd=self.workdir)

    def run(self, name: str, argv: list[str]) -> subprocess.CompletedProcess:
        """``docker compose run --rm --no-deps --entrypoint ARGV[0] NAME ARGV[1:]`` for a built service."""
        return self._complete(name, argv, cwd=REPO / self.compose.services[name]["build"])

    def _complete(self, name: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        service = self.compose.services[name]
        env = self._environment(name, service, inside=name)
        command = self._host_argv(argv, service, inside=name)
        return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)

    def log(self, name: str, stream: str) -> str:
        return (self.workdir / f"{name}.{stream}").read_text()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for emulator in self.emulators.values():
            emulator.stop()

    # --- mapping container names and paths to this host -------------------------------------

    def _on_host(self, text: str, service: dict, inside: str | None = None) -> str:
        """``text`` with service host names, ``localhost`` in ``inside`` and container paths mapped."""
        for container, host in self.hosts.items():
            text = text.replace(container, host)
            name = container[2:].split(":")[0]
            if name == inside:
                text = text.replace(container.replace(f"//{name}:", "//localhost:"), host)
        for container_path, host_path in self._paths(service).items():
            text = re.sub(rf"(?<![\w/.]){re.escape(container_path)}(?=/|\b|$)", host_path, text)
        return text

    def _paths(self, service: dict) -> dict[str, str]:
        paths = {}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                paths[target] = str((REPO / source).resolve())
            else:  # a named volume: one folder per volume, kept between ups as docker keeps it
                paths[target] = str(self.workdir / "volumes" / source)
                Path(paths[target]).mkdir(parents=True, exist_ok=True)
        if "build" in service:
            _, workdir = dockerfile_command(REPO / service["build"])
            paths[workdir] = str((REPO / service["build"]).resolve())
        return paths

    def _host_argv(self, argv: list[str], service: dict, inside: str | None = None) -> list[str]:
        """A container command line for this host: ``python`` is this interpreter (.venv's)."""
        return [sys.executable if arg in ("python", "python3") else self._on_host(arg, service, inside) for arg in argv]

    def _environment(self, name: str, service: dict, inside: str | None = None) -> dict[str, str]:
        env = {key: os.environ[key] for key in HOST_ENV if key in os.environ}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        declared = {key: value for key, value in service.get("environment", {}).items() if value is not None}
        env.update({key: self._on_host(str(value), service, inside) for key, value in declared.items()})
        return env

    # --- kinds of service -------------------------------------------------------------------

    def _start_emulator(self, name: str, service: dict) -> Emulator:
        image, tag = service["image"].rsplit(":", 1)
        published = service["ports"][0].rsplit(":", 1)[1]  # "127.0.0.1:4566:4566" -> container port
        port = free_port()
        self.hosts[f"//{name}:{published}"] = f"//127.0.0.1:{port}"
        logs = self.workdir / "logs"
        if image == "localstack/localstack":
            if tag != LOCALSTACK_VERSION:
                raise ComposeError(f"{name}: the tests run LocalStack {LOCALSTACK_VERSION}, the file pins {tag}")
            hooks = self._paths(service).get("/etc/localstack/init/ready.d")
            env = self._environment(name, service, inside=name)
            return start_localstack(logs, env, port=port, ready_hooks=Path(hooks) if hooks else None)
        if image == "motoserver/moto":
            if tag != version("moto"):
                raise ComposeError(f"{name}: the tests run moto {version('moto')}, the file pins {tag}")
            return start_moto(logs, port=port, launcher=STOCK_MOTO)  # as the image runs it
        raise ComposeError(f"{name}: no host equivalent of image {image}")

    def healthy(self, name: str) -> bool:
        """Whether the service's healthcheck command passes now (no healthcheck: it is healthy)."""
        service = self.compose.services[name]
        test = service.get("healthcheck", {}).get("test")
        if not test:
            return True
        kind, *argv = test
        if kind == "CMD-SHELL":
            argv = ["sh", "-c", argv[0]]
        argv = self._host_argv(argv, service, inside=name)
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0

    def _wait_healthy(self, name: str) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not self.healthy(name):
            if time.monotonic() > deadline:
                raise ComposeError(f"{name}: its healthcheck did not pass in {HEALTH_TIMEOUT_S} s")
            time.sleep(1)

    def _run_built(self, name: str, service: dict) -> subprocess.Popen:
        context = REPO / service["build"]
        entrypoint, _ = dockerfile_command(context)
        command = self._host_argv([*entrypoint, *service.get("command", [])], service)
        return self._popen(name, command, self._environment(name, service), cwd=context)

    def _run_aws_cli(self, name: str, service: dict) -> subprocess.Popen:
        command = self._host_argv(service["entrypoint"], service)
        return self._popen(name, command, self._environment(name, service), cwd=self.workdir)

    def _popen(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        with (self.workdir / f"{name}.stdout").open("w") as out, (self.workdir / f"{name}.stderr").open("w") as err:
            return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def _wait_for_dependencies(self, name: str) -> None:
        for dependency, rule in self.compose.services[name].get("depends_on", {}).items():
            if rule.get("condition") == "service_completed_successfully":
                code, _, stderr = self.wait(dependency)
                if code != 0:
                    raise ComposeError(f"{dependency} exited {code}: {stderr[-2000:]}")
            # service_healthy: emulators are started healthy, before anything that needs them
