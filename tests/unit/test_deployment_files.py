"""Static checks of docker-compose.yml, .env.example, the Dockerfiles, the ready hooks and the Makefile.

The compose wiring itself runs in tests/integration/test_compose.py; these catch what a run on
the host cannot: unpinned images, ports open to the network, a Dockerfile that runs as root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.compose import REPO, ComposeFile, dockerfile_command, interpolate

BIN = Path(sys.executable).parent
SERVICE_PACKAGES = {"populate-script": "news_populate", "etl-processor": "news_etl"}
SERVICE_FOLDERS = list(SERVICE_PACKAGES)
HOOKS = sorted((REPO / "localstack" / "ready.d").iterdir())
PINNED_TAG = re.compile(r":\d+\.\d+\.\d+(-[\w.-]+)?$")


def env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


@pytest.fixture(scope="module")
def compose() -> ComposeFile:
    return ComposeFile()


def test_every_image_is_pinned_to_a_release(compose):
    """No `latest` and no floating tags: each pulled image names an x.y.z release."""
    images = [service["image"] for service in compose.services.values() if "image" in service]
    assert images, "no pulled images: the check would be empty"
    assert all(PINNED_TAG.search(image) for image in images), images
    assert "localstack/localstack:4.14.0" in images  # the last release that needs no account token


def test_published_ports_are_bound_to_loopback(compose):
    """Emulators accept any credentials: they must not be reachable from the network."""
    ports = [port for service in compose.services.values() for port in service.get("ports", [])]
    assert ports and all(port.startswith("127.0.0.1:") for port in ports), ports


def test_dependencies_wait_on_health_or_completion(compose):
    """Every depends_on has a condition; a service_healthy dependency has a healthcheck."""
    for name, service in compose.services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dependency)
            if condition == "service_healthy":
                assert compose.services[dependency]["healthcheck"]["test"], dependency
    assert compose.default_services() == ["localstack", "populate", "etl"]


def test_healthcheck_arguments_have_no_spaces_for_podman(compose):
    """podman's Docker-compatible API splits CMD healthcheck arguments at spaces (podman#26519),
    so a check with spaces in an argument is one CMD-SHELL string. (make test-compose runs them.)"""
    for name, service in compose.services.items():
        kind, *args = service.get("healthcheck", {}).get("test", ["NONE"])
        assert kind in ("CMD", "CMD-SHELL", "NONE"), name
        if kind == "CMD":
            assert not any(" " in arg for arg in args), name


def test_the_localstack_healthcheck_asks_whether_the_ready_hooks_completed(compose):
    """Healthy means the ready.d hooks ran (not merely that the server answers)."""
    check = " ".join(compose.services["localstack"]["healthcheck"]["test"])
    assert "/_localstack/init/ready" in check and '"completed"' in check
    assert "SUCCESSFUL" in check and "ERROR" in check


def test_env_example_documents_exactly_the_settings_the_compose_file_reads():
    """Every ${VAR} in docker-compose.yml is in .env.example, and nothing else is."""
    text = (REPO / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{(\w+)", text))
    assert read == set(env_example())


def test_env_example_values_reach_the_services():
    """A .env copied from .env.example sets what the services get (here: every knob changed)."""
    changed = {name: f"{value or 'x'}9" for name, value in env_example().items()}
    services = ComposeFile(changed).services
    environment = {**services["populate"]["environment"], **services["etl"]["environment"]}
    for name in ("STREAM_NAME", "S3_BUCKET", "RECORD_COUNT", "PUT_RATE", "IDLE_TIMEOUT", "TRIGGER_INTERVAL"):
        assert str(environment[name]) == changed[name]
    assert services["localstack"]["ports"] == [f"127.0.0.1:{changed['LOCALSTACK_PORT']}:4566"]


def test_interpolation_follows_compose_rules():
    """The test harness's interpolation: defaults, empty values, required values and $$."""
    assert interpolate("${A:-x} ${A-x} ${B:-x} ${B-x} $$HOME $A$B.", {"A": "", "B": "b"}) == "x  b b $HOME b."
    assert interpolate("${A?needed}", {"A": ""}) == ""
    with pytest.raises(RuntimeError, match="C: needed"):
        interpolate("${C:?needed}", {"C": ""})
    with pytest.raises(RuntimeError, match="C: needed"):
        interpolate("${C?needed}", {})


@pytest.mark.parametrize("folder", SERVICE_FOLDERS)
def test_dockerfile_passes_hadolint(folder):
    """hadolint (from .venv) finds nothing, info level included."""
    result = subprocess.run([BIN / "hadolint", "--failure-threshold", "info", "Dockerfile"],
                            cwd=REPO / folder, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("folder", SERVICE_FOLDERS)
def test_dockerfile_builds_a_slim_non_root_image_with_the_host_entry_point(folder):
    """Pinned slim base, dependencies before code, a numeric non-root USER, the host's package as entry point."""
    context = REPO / folder
    package = SERVICE_PACKAGES[folder]
    lines = [line for line in (context / "Dockerfile").read_text().splitlines() if line and line[0].isupper()]
    assert re.fullmatch(r"FROM python:\d+\.\d+\.\d+-slim-\w+", lines[0])
    copies = [line for line in lines if line.startswith("COPY")]
    assert copies == ["COPY requirements.txt .", "COPY pyproject.toml ./", f"COPY {package}/ {package}/"]
    assert [line for line in lines if line.startswith("USER")] == ["USER 10001"]
    command, workdir = dockerfile_command(context)
    assert command == ["python", "-m", package] and (context / package / "__main__.py").is_file()
    assert workdir == "/app"
    assert not re.search(r"SECRET|PASSWORD|TOKEN", (context / "Dockerfile").read_text())
    assert "__pycache__" in (context / ".dockerignore").read_text()


def test_ready_hooks_are_numbered_executable_strict_and_pass_shellcheck():
    """LocalStack runs ready.d scripts in name order; each must stop at its first failure."""
    assert [hook.name for hook in HOOKS] == ["01-create-stream.sh", "02-create-bucket.sh"]
    for hook in HOOKS:
        assert os.access(hook, os.X_OK), hook
        assert "\nset -euo pipefail\n" in hook.read_text(), hook
    result = subprocess.run([BIN / "shellcheck", *HOOKS], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_container_test_files_pass_shellcheck_and_hadolint():
    """make test-compose's set-up script, CI's entry point and the stand-ins' Containerfiles."""
    scripts = [REPO / "tests/containers/prepare.sh", REPO / ".ci/run"]
    result = subprocess.run([BIN / "shellcheck", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    for containerfile in sorted((REPO / "tests/containers").glob("*.Containerfile")):
        result = subprocess.run([BIN / "hadolint", "--failure-threshold", "info", containerfile],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_make_help_lists_every_target_the_docs_name():
    """`make help` lists every `make` target that README.md, docs/ or BENCHMARKS.md tells a user about."""
    result = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True)
    listed = set(re.findall(r"^  ([a-z-]+) ", result.stdout, re.MULTILINE))
    documents = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
    named = {target for path in documents for target in re.findall(r"`make ([a-z-]+)", path.read_text())}
    expected = {"install", "up", "down", "logs", "populate", "etl", "test", "bench", "lint", "fmt", "inspect"}
    expected |= {"dist", "verify", "faults", "test-compose"}
    assert expected | {"clean"} <= listed, (expected | {"clean"}) - listed
    assert named <= listed, named - listed


def test_the_cluster_profile_submits_to_two_workers_of_the_etls_own_image(compose):
    """Profile cluster: master and workers are built like the ETL (same Python, Java, PySpark and
    modules), the ETL submits to the master, and the nodes share no volume: the checkpoint is in
    a bucket that LocalStack's ready hook creates."""
    services = compose.services
    for name in ("spark-master", "spark-worker", "cluster-etl"):
        assert (services[name]["build"], services[name]["profiles"]) == ("./etl-processor", ["cluster"]), name
    assert services["spark-worker"]["deploy"]["replicas"] == 2
    assert services["spark-worker"]["command"][-1] == services["cluster-etl"]["environment"]["SPARK_MASTER"]
    assert services["cluster-etl"]["environment"]["SPARK_MASTER"] == "spark://spark-master:7077"
    environment = services["cluster-etl"]["environment"]
    assert environment["CHECKPOINT_DIR"] == f"s3://{environment['CHECKPOINT_BUCKET']}/{environment['STREAM_NAME']}"
    assert services["localstack"]["environment"]["CHECKPOINT_BUCKET"] == environment["CHECKPOINT_BUCKET"]
    for name in ("spark-master", "spark-worker", "cluster-etl"):
        assert not services[name].get("volumes"), name


def test_the_cluster_workers_have_credentials_of_their_own(compose):
    """The driver passes executors no credentials (news_etl.session): the workers, whose environment
    their executors inherit, get the emulator's credentials and the region the driver has."""
    worker, driver = (compose.services[name]["environment"] for name in ("spark-worker", "cluster-etl"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        assert worker.get(name) == driver[name], name
