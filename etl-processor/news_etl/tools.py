"""Operator tools: look at what the job wrote, and check it against the checkpoint's totals.

    python -m news_etl.tools inspect --bucket news-data          (make inspect)
    python -m news_etl.tools verify --checkpoint checkpoints/news (make verify)

``inspect`` lists the bucket's objects, counts rows, shows the quarantine reasons and a few
rows, reading the Parquet back with pyarrow exactly as a training job would; exit 0, or 1 when
the bucket cannot be listed. ``verify`` recounts every Parquet file named with the checkpoint's
run id and compares the counts and per-hour word sums with ``CHECKPOINT/etl-state.json``, which
the job updates from each batch's own figures and never by reading the output back; exit 0 when
they agree, 1 when not, 2 when there is no checkpoint state at that path. The endpoint, region
and credentials come from the standard AWS settings (AWS_ENDPOINT_URL for an emulator).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from news_etl.aws import exit_process, s3_filesystem
from news_etl.schemas import ENRICHED, QUARANTINED
from news_etl.settings import Settings
from news_etl.state import HOUR_FORMAT, RunState, read_state

SAMPLE_COLUMNS = ["article_id", "published_at", "word_count", "title"]
EXIT_DISAGREE, EXIT_NO_STATE, EXIT_USAGE = 1, 2, 2


def list_objects(filesystem: pafs.FileSystem, bucket: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(bucket, recursive=True, allow_not_found=True)
    return [info for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File]


def dataset(filesystem: pafs.FileSystem, bucket: str, kind: str, objects: list[pafs.FileInfo]) -> ds.Dataset | None:
    """The ``enriched`` or ``quarantine`` table among the bucket's ``objects``, if any file exists."""
    base = f"{bucket}/{kind}"
    files = [info.path for info in objects if info.path.startswith(f"{base}/") and info.path.endswith(".parquet")]
    if not files:
        return None
    return ds.dataset(files, filesystem=filesystem, format="parquet", partitioning="hive",
                      partition_base_dir=base)  # fmt: skip


def inspect(args: argparse.Namespace) -> int:
    if not args.bucket:
        print("inspect: error: --bucket is required (or set S3_BUCKET)", file=sys.stderr)
        return EXIT_USAGE
    filesystem = s3_filesystem()
    try:
        objects = list_objects(filesystem, args.bucket)
    except OSError as error:
        print(f"inspect: error: cannot list s3://{args.bucket}: {error}", file=sys.stderr)
        return 1
    print(f"s3://{args.bucket}: {len(objects)} objects")
    for info in objects:
        print(f"  {info.size:>10,}  {info.path.removeprefix(args.bucket + '/')}")
    enriched, quarantine = (dataset(filesystem, args.bucket, kind, objects) for kind in (ENRICHED, QUARANTINED))
    print(f"enriched rows: {enriched.count_rows() if enriched else 0}")
    print(f"quarantined rows: {quarantine.count_rows() if quarantine else 0}")
    if quarantine:
        reasons = Counter(quarantine.to_table(columns=["error"]).column("error").to_pylist())
        for reason, count in reasons.most_common():
            print(f"  {count:>8,}  {reason}")
    if enriched:
        print(f"first {args.rows} enriched rows:")
        print(enriched.head(args.rows, columns=[*SAMPLE_COLUMNS, "dt"]).to_pandas().to_string(index=False))
    return 0


def recount(state: RunState) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Rows per kind, and [articles, words] per hour of the enriched rows, in this run's files."""
    filesystem = s3_filesystem()
    counts = {ENRICHED: 0, QUARANTINED: 0}
    hourly: dict[str, list[int]] = {}
    for info in list_objects(filesystem, state.bucket):
        kind, _, name = info.path.removeprefix(f"{state.bucket}/").partition("/")
        if kind not in counts or not Path(name).name.startswith(f"part-{state.run_id}-"):
            continue
        columns = ["published_at", "word_count"] if kind == ENRICHED else ["error"]
        table = pq.read_table(info.path, filesystem=filesystem, columns=columns)
        counts[kind] += table.num_rows
        if kind == ENRICHED and table.num_rows:
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
    for kind, expected in ((ENRICHED, state.enriched), (QUARANTINED, state.quarantined)):
        if counts[kind] != expected:
            problems.append(f"{kind}: metrics say {expected} rows, S3 holds {counts[kind]}")
    for hour in sorted(set(hourly) | set(state.hourly)):
        if hourly.get(hour) != state.hourly.get(hour):
            problems.append(f"hour {hour}: metrics say {state.hourly.get(hour)}, S3 holds {hourly.get(hour)}")
    return problems


def verify(args: argparse.Namespace) -> int:
    state_file = Settings.state_file_in(args.checkpoint)
    if not Path(state_file).is_file():
        print(f"verify: error: no checkpoint state at {state_file}", file=sys.stderr)
        return EXIT_NO_STATE
    state = read_state(state_file)
    counts, hourly = recount(state)
    problems = compare(state, counts, hourly)
    print(f"checkpoint {args.checkpoint}, run {state.run_id}, s3://{state.bucket}: read {state.records_read}, "
          f"enriched {counts[ENRICHED]}, quarantined {counts[QUARANTINED]}, "
          f"duplicates dropped {state.duplicates_dropped}, {len(hourly)} hours")  # fmt: skip
    for problem in problems:
        print(f"  DISAGREE {problem}")
    print("verify: output and metrics agree" if not problems else f"verify: {len(problems)} disagreements")
    return EXIT_DISAGREE if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m news_etl.tools", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("inspect", help="list the bucket's objects, count rows, show a few")
    show.add_argument("--bucket", default=os.environ.get("S3_BUCKET") or None, help="the bucket (env S3_BUCKET)")
    show.add_argument("--rows", type=int, default=5, help="enriched rows to print (default 5)")
    show.set_defaults(run=inspect)
    check = commands.add_parser("verify", help="recount the output against the checkpoint's totals")
    default = os.environ.get("CHECKPOINT_DIR") or os.path.join("checkpoints", os.environ.get("STREAM_NAME", ""))
    check.add_argument("--checkpoint", default=default, help="the ETL's checkpoint (env CHECKPOINT_DIR)")
    check.set_defaults(run=verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    exit_process(main())
