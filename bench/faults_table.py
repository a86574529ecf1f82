"""Print `make faults`' results table from the JSON lines the fault tests wrote.

A test that fails before it records leaves no row: `make faults` exits non-zero then anyway.

    python -m bench.faults_table bench/results/faults.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str) -> int:
    report = Path(path)
    rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    if not rows:
        print(f"no fault results in {path}")
        return 1
    width = max(len(row["fault"]) for row in rows)
    print(f"| {'fault':<{width}} | records | lost | duplicated | unexpected | time (s) |")
    print(f"| {'-' * width} | ------: | ---: | ---------: | ---------: | -------: |")
    for row in rows:
        print(f"| {row['fault']:<{width}} | {row['records']:>7,} | {row['lost']:>4} | {row['duplicated']:>10} "
              f"| {row['unexpected']:>10} | {row['seconds']:>8.1f} |")  # fmt: skip
    clean = all(row["lost"] == row["duplicated"] == row["unexpected"] == 0 for row in rows)
    print("\nnothing lost, nothing duplicated" if clean else "\nRECORDS LOST OR DUPLICATED")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
