"""docs/design.md's map of the code ("The code") names every module of news_etl."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "etl-processor" / "news_etl"


def code_map() -> str:
    text = (REPO / "docs" / "design.md").read_text()
    return text.split("## The code", 1)[1].split("\n## ", 1)[0]


def named_modules(table: str) -> set[str]:
    """Each module the table names, as a path in the package: a link's target, or a file named in
    the row of a folder (``kinesis/``: `source.py`, ...)."""
    names = set()
    for row in table.splitlines():
        for target in re.findall(r"\]\(\.\./etl-processor/news_etl/([\w/.]+)\)", row):
            names.add(target)
            folder = target if target.endswith("/") else ""
            names |= {folder + name for name in re.findall(r"`(\w+\.py)`", row)} if folder else set()
    return names


def test_the_finder_reads_links_and_the_files_of_a_folder_row():
    """The check can fail: a folder's files count only when its row names them."""
    rows = ("| [`cli/`](../etl-processor/news_etl/cli/) | `job.py` (flags) |\n"
            "| [`a.py`](../etl-processor/news_etl/a.py) | `b.py` |")  # fmt: skip
    assert named_modules(rows) == {"cli/", "cli/job.py", "a.py"}


def test_every_module_is_in_the_design_docs_map_of_the_code():
    """A module added without a line in docs/design.md fails here."""
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    assert "cli/tools.py" in modules and "kinesis/reader.py" in modules
    missing = modules - named_modules(code_map())
    assert not missing, f"docs/design.md, 'The code', does not name: {sorted(missing)}"
