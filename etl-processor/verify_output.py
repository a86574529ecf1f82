"""Recount what a checkpoint's runs wrote to S3 and compare it with the checkpoint's metrics.

    python etl-processor/verify_output.py --checkpoint checkpoints/news        (make verify)

The ETL keeps running totals (enriched, quarantined, per-hour articles and words) in
``CHECKPOINT/etl-state.json``, updated from each batch's own figures and never by reading the
output back. This reads the output back: every Parquet file named with the checkpoint's run id,
and says whether the two agree. Exit 0 when they do, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from averages import HOUR_FORMAT, RunState
from inspect_output import list_objects
from sink import s3_filesystem


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="verify", description=__doc__.split("\n\n")[0])
    default = os.environ.get("CHECKPOINT_DIR") or os.path.join("checkpoints", os.environ.get("STREAM_NAME", ""))
    parser.add_argument("--checkpoint", default=default, help="the ETL's checkpoint (env CHECKPOINT_DIR)")
    return parser.parse_args(argv)


def recount(state: RunState) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Rows per kind, and [articles, words] per hour of the enriched rows, in this run's files."""
    filesystem = s3_filesystem()
    counts = {"enriched": 0, "quarantine": 0}
    hourly: dict[str, list[int]] = {}
    for info in list_objects(filesystem, state.bucket):
        kind, _, name = info.path.removeprefix(f"{state.bucket}/").partition("/")
        if kind not in counts or not Path(name).name.startswith(f"part-{state.run_id}-"):
            continue
        columns = ["published_at", "word_count"] if kind == "enriched" else ["error"]
        table = pq.read_table(info.path, filesystem=filesystem, columns=columns)
        counts[kind] += table.num_rows
        if kind == "enriched" and table.num_rows:
            hours = pc.strftime(table["published_at"], format=HOUR_FORMAT, locale="C")
            for hour, words in zip(hours.to_pylist(), table["word_count"].to_pylist(), strict=True):
                window = hourly.setdefault(hour, [0, 0])
                window[0] += 1
                window[1] += words
    return counts, hourly


def compare(state: RunState, counts: dict[str, int], hourly: dict[str, list[int]]) -> list[str]:
    """What disagrees, one line each; empty when the output matches the metrics."""
    problems = []
    if state.records_read != state.enriched + state.quarantined + state.duplicates_dropped:
        problems.append(f"metrics do not add up: read {state.records_read} != enriched + quarantined + duplicates")
    for kind, expected in (("enriched", state.enriched), ("quarantine", state.quarantined)):
        if counts[kind] != expected:
            problems.append(f"{kind}: metrics say {expected} rows, S3 holds {counts[kind]}")
    for hour in sorted(set(hourly) | set(state.hourly)):
        if hourly.get(hour) != state.hourly.get(hour):
            problems.append(f"hour {hour}: metrics say {state.hourly.get(hour)}, S3 holds {hourly.get(hour)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_file = Path(args.checkpoint) / "etl-state.json"
    if not state_file.is_file():
        print(f"verify: error: no checkpoint state at {state_file}", file=sys.stderr)
        return 2
    state = RunState(**json.loads(state_file.read_text()))
    counts, hourly = recount(state)
    problems = compare(state, counts, hourly)
    print(f"checkpoint {args.checkpoint}, run {state.run_id}, s3://{state.bucket}: read {state.records_read}, "
          f"enriched {counts['enriched']}, quarantined {counts['quarantine']}, "
          f"duplicates dropped {state.duplicates_dropped}, {len(hourly)} hours")  # fmt: skip
    for problem in problems:
        print(f"  DISAGREE {problem}")
    print("verify: output and metrics agree" if not problems else f"verify: {len(problems)} disagreements")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
