"""README.md's configuration table and .env.example agree with the flags and defaults the parsers have.

The parsers are the reference: each setting's environment variable and default are recorded as
``build_parser`` reads them (its ``environment_value`` replaced by a recorder), and each flag is
matched to its variable through the flag's help (``env NAME``). The compose file's own
defaults against .env.example are checked in test_deployment_files.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import news_populate.cli as populate_cli
from news_etl import settings
from news_etl.cli import job as job_cli
from tests.support.compose import ComposeFile

REPO = Path(__file__).resolve().parents[2]
PARSERS = {"job": job_cli, "populate": populate_cli}
# What a job setting without a parser default comes to: the README names these.
STREAM = "STREAM"  # a stream name that reads as the README's placeholder
# Read by the job, not offered in compose (so not in .env.example, which lists what compose reads):
# compose runs the job as a stream that stops on IDLE_TIMEOUT.
NOT_IN_COMPOSE = {"RUN_ONCE"}
NUMBER = re.compile(r"-?\d+(\.\d+)?")


def parser_settings(module, monkeypatch) -> tuple[dict[str, str | None], dict[str, str]]:
    """The variables ``module.build_parser`` reads, with their defaults, and each one's flag."""
    read: dict[str, str | None] = {}

    def record(name: str, default: str | None = None) -> str | None:
        read[name] = default
        return default

    monkeypatch.setattr(module, "environment_value", record)
    flags = {}
    for action in module.build_parser()._actions:
        named = re.search(r"\benv ([A-Z][A-Z0-9_]+)", action.help or "")
        if named:
            flags[named[1]] = action.option_strings[0]
    return read, flags


def readme_table() -> dict[str, dict[str, str]]:
    """The README's Configuration table: per variable, its flag, service and default cells."""
    section = (REPO / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            environment, flag, service, default, _meaning = (cell.strip() for cell in line.strip("|").split("|"))
            for name in re.findall(r"`(\w+)`", environment):
                rows[name] = {"flag": flag.strip("`"), "service": service, "default": default}
    return rows


def env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def words(cell: str) -> list[str]:
    """A default cell's values and words: ``0 = run forever (30)`` gives 0, =, run, forever, 30."""
    return [word.rstrip(":") for word in re.split(r"[\s`(),;]+", cell) if word]


def effective_job_defaults(monkeypatch, tmp_path) -> dict[str, str]:
    """What the job's settings without a parser default come to, from the code that decides them."""
    monkeypatch.chdir(tmp_path)
    for name in ("CHECKPOINT_DIR", "STREAM_NAME", "S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    checkpoint = job_cli.parse_settings(["--stream", STREAM, "--bucket", "news-data"]).checkpoint
    return {
        "CHECKPOINT_DIR": str(Path(checkpoint).relative_to(tmp_path)),
        "OUTPUT_FORMAT": settings.DEFAULT_OUTPUT_FORMAT,
        "SPARK_MASTER": settings.LOCAL_MASTER,
    }


@pytest.mark.parametrize("service", PARSERS)
def test_every_variable_a_parser_reads_is_in_the_readme_table_with_its_flag(service, monkeypatch):
    """Each environment variable the parser reads has a README row naming the flag it falls back for."""
    read, flags = parser_settings(PARSERS[service], monkeypatch)
    table = readme_table()
    assert read and set(read) == set(flags), "every variable read is named in its flag's help, and no other"
    missing = sorted(set(read) - set(table))
    assert not missing, f"README.md's Configuration table lacks {missing}"
    for name, flag in flags.items():
        assert table[name]["flag"] == flag, name


@pytest.mark.parametrize("service", PARSERS)
def test_the_readme_gives_each_parser_default(service, monkeypatch, tmp_path):
    """A README default cell starts with the parser's default; a setting without one is not given a
    number, and the job's are named as the code decides them (``checkpoints/STREAM``, ``delta``, ...)."""
    read, _ = parser_settings(PARSERS[service], monkeypatch)
    monkeypatch.undo()
    effective = effective_job_defaults(monkeypatch, tmp_path) if service == "job" else {}
    table = readme_table()
    for name, default in read.items():
        cell = table[name]["default"]
        if default:
            assert words(cell)[0] == default, (name, cell, default)
        elif name in effective:
            assert f"`{effective[name]}`" in cell, (name, cell, effective[name])
        else:
            assert not NUMBER.fullmatch(words(cell)[0]), (name, cell)


@pytest.mark.parametrize("service", PARSERS)
def test_env_example_gives_each_parser_default_or_the_compose_value_the_readme_names(service, monkeypatch):
    """Every variable a parser reads is in .env.example (or compose sets it itself), with the parser's
    default or the compose value the README names beside it, as ``0 = run forever (30)``."""
    read, _ = parser_settings(PARSERS[service], monkeypatch)
    example, table = env_example(), readme_table()
    set_by_compose = set(ComposeFile().services["etl"]["environment"]) - set(example)
    for name, default in read.items():
        if name not in example:
            assert name in set_by_compose | NOT_IN_COMPOSE, f".env.example lacks {name}"
            continue
        value = example[name]
        assert value == (default or "") or value in words(table[name]["default"]), (name, value, default)


def test_every_row_of_the_readme_table_names_a_variable_something_reads(monkeypatch):
    """No README row documents a variable that neither the parsers, compose (.env.example) nor the
    packages' own code (``os.environ``) read; a row's flag is the one that variable falls back for."""
    read, flags = {}, {}
    for module in PARSERS.values():
        more_read, more_flags = parser_settings(module, monkeypatch)
        read |= more_read
        flags |= more_flags
    sources = [*(REPO / "etl-processor" / "news_etl").rglob("*.py"), *(REPO / "populate-script").rglob("*.py")]
    in_code = {name for path in sources for name in re.findall(r"environ\.get\(\"(\w+)\"", path.read_text())}
    table = readme_table()
    assert {"AWS_MAX_ATTEMPTS", "AWS_ENDPOINT_URL"} <= in_code
    unknown = sorted(set(table) - set(read) - set(env_example()) - in_code)
    assert not unknown, f"README.md's Configuration table names variables nothing reads: {unknown}"
    for name, row in table.items():
        if row["flag"]:
            assert flags.get(name) == row["flag"], (name, row["flag"])
