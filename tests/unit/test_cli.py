"""The command-line entry points: one home for argument parsing, and the ``jars`` tool."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from news_etl import hadoop_s3
from news_etl.cli import tools

PACKAGE = Path(__file__).resolve().parents[2] / "etl-processor" / "news_etl"


def test_only_the_cli_package_parses_arguments():
    """No module of news_etl outside news_etl/cli imports argparse or reads sys.argv."""
    parsing = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        reads_argv = any(isinstance(node, ast.Attribute) and node.attr == "argv" for node in ast.walk(tree))
        if "argparse" in imported or reads_argv:
            parsing.append(path.relative_to(PACKAGE).as_posix())
    assert parsing == []
    assert "argparse" in (PACKAGE / "cli" / "job.py").read_text()  # the check looks where parsing is


def test_jars_prints_the_spark_submit_flags_and_exits_0():
    """``python -m news_etl.tools jars`` prints hadoop_s3's flags on one line, for ``$(...)``."""
    result = subprocess.run([sys.executable, "-m", "news_etl.tools", "jars"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == " ".join(hadoop_s3.submit_args()) + "\n"
    assert result.stdout.startswith("--packages org.apache.hadoop:hadoop-aws:")


def test_jars_fetch_downloads_into_the_cache_and_says_where(monkeypatch, capsys, tmp_path):
    """``jars --fetch`` runs hadoop_s3.fetch and prints the cache it filled."""
    fetched = []
    monkeypatch.setattr(hadoop_s3, "fetch", lambda: fetched.append(True) or tmp_path)
    assert tools.main(["jars", "--fetch"]) == 0
    assert fetched == [True]
    assert capsys.readouterr().out == f"S3A jars cached in {tmp_path}\n"


def test_the_old_jars_command_says_where_it_moved():
    """``python -m news_etl.hadoop_s3`` fails naming its replacement, rather than printing no flags."""
    result = subprocess.run([sys.executable, "-m", "news_etl.hadoop_s3"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert "python -m news_etl.tools jars" in result.stderr
