"""``python -m news_etl.tools``: the operator tools, one subcommand each.

    python -m news_etl.tools inspect --bucket news-data           (make inspect)
    python -m news_etl.tools verify --checkpoint checkpoints/news  (make verify)
    python -m news_etl.tools versions --bucket news-data          (make versions)
    python -m news_etl.tools compact --bucket news-data           (make compact)
    python -m news_etl.tools jars [--fetch]                       (spark-submit's S3A flags; docs/cluster.md)

``inspect`` lists the bucket's objects, counts rows, shows the quarantine reasons and a few
rows, reading the Parquet back with pyarrow as a training job would (``news_etl.reconcile``);
exit 0, or 1 when the bucket cannot be listed. ``verify`` recounts the checkpoint's output and
compares it with ``CHECKPOINT/etl-state.json`` (``news_etl.reconcile``); exit 0 when they agree,
1 when not, 2 when there is no checkpoint state at that path. ``versions`` lists a Delta table's
versions with the batch and rows each added. ``compact`` vacuums and merges small files (safe
while the job runs). ``jars`` prints the spark-submit flags that bring the S3A jars a checkpoint
on S3 needs, or with ``--fetch`` downloads them into the cache (an image build does;
``news_etl.hadoop_s3``). The endpoint, region and credentials come from the standard AWS
settings (AWS_ENDPOINT_URL for an emulator).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from datetime import UTC, datetime

import pyarrow.fs as pafs

from news_etl import hadoop_s3, table
from news_etl.aws import s3_filesystem
from news_etl.reconcile import (
    compare,
    dataset,
    list_objects,
    live_file_sizes,
    quarantine_reasons,
    recount,
    training_set,
)
from news_etl.schemas import ENRICHED, QUARANTINED
from news_etl.settings import DEFAULT_COMPACT_TARGET_MB, PARQUET, ConfigurationError, Settings
from news_etl.state import read_state

DESCRIPTION = "Operator tools: look at what the job wrote, check it against the checkpoint, keep the tables lean."
SAMPLE_COLUMNS = ["article_id", "published_at", "word_count", "cluster_id", "split", "title"]
EXIT_DISAGREE, EXIT_NO_STATE, EXIT_USAGE = 1, 2, 2


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
    live = {kind: table.live_files(args.bucket, kind) for kind in (ENRICHED, QUARANTINED)
            if table.is_table(args.bucket, kind)}  # fmt: skip
    for kind, files in live.items():
        print_live_files(args.bucket, kind, files, objects)
    for info in objects:  # everything outside the Delta tables (plain Parquet output)
        if info.path.removeprefix(f"{args.bucket}/").split("/")[0] not in live:
            print(f"  {info.size:>10,}  {info.path.removeprefix(args.bucket + '/')}")
    enriched, quarantine = (dataset(filesystem, args.bucket, kind, objects, live.get(kind))
                            for kind in (ENRICHED, QUARANTINED))  # fmt: skip
    print(f"enriched rows: {enriched.count_rows() if enriched else 0}")
    print(f"quarantined rows: {quarantine.count_rows() if quarantine else 0}")
    if quarantine:
        for reason, count in quarantine_reasons(quarantine).most_common():
            print(f"  {count:>8,}  {reason}")
    if enriched:
        print("training set: split, articles, near-duplicate clusters, articles in clusters of two or more")
        for split, (articles, clusters, copied) in training_set(enriched).items():
            print(f"  {split:<10}  {articles:>8,}  {clusters:>8,}  {copied:>8,}")
        print(f"first {args.rows} enriched rows:")
        print(enriched.head(args.rows, columns=[*SAMPLE_COLUMNS, "dt"]).to_pandas().to_string(index=False))
    return 0


def print_live_files(bucket: str, kind: str, live: list[tuple[str, str]], objects: list[pafs.FileInfo]) -> None:
    """A Delta table's version and live files; the rest of its folder (its log, and files a
    compaction replaced or a failed attempt wrote, until vacuum) is counted, not listed."""
    sizes = {info.path: info.size for info in objects}
    others = sum(1 for info in objects if info.path.startswith(f"{bucket}/{kind}/")) - len(live)
    print(f"{kind}/: Delta table at version {table.open_table(bucket, kind).version()}, {len(live)} live files "
          f"in {len({dt for _, dt in live})} dt partitions; {others} other objects (its log, and files no "
          "longer or never in the table, until vacuum)")  # fmt: skip
    for path, _ in live:
        print(f"  {sizes.get(path, 0):>10,}  {path.removeprefix(bucket + '/')}")


def verify(args: argparse.Namespace) -> int:
    state_file = Settings.state_file_in(args.checkpoint)
    state = read_state(state_file)
    if state is None:
        print(f"verify: error: no checkpoint state at {state_file}", file=sys.stderr)
        return EXIT_NO_STATE
    counts, hourly, missing = recount(state)
    problems = [f"a file of the output is missing: s3://{path}" for path in missing]
    problems += compare(state, counts, hourly)
    layout = state.output_format or PARQUET
    print(f"checkpoint {args.checkpoint}, run {state.run_id}, s3://{state.bucket} ({layout}): "
          f"read {state.records_read}, enriched {counts[ENRICHED]}, quarantined {counts[QUARANTINED]}, "
          f"duplicates dropped {state.duplicates_dropped}, {len(hourly)} hours")  # fmt: skip
    for problem in problems:
        print(f"  DISAGREE {problem}")
    print("verify: output and metrics agree" if not problems else f"verify: {len(problems)} disagreements")
    return EXIT_DISAGREE if problems else 0


def versions(args: argparse.Namespace) -> int:
    """Print a Delta table's versions: when, what operation, and for the job's writes the batch and rows."""
    if not table.is_table(args.bucket, args.kind):
        print(f"versions: error: s3://{args.bucket}/{args.kind} is not a Delta table", file=sys.stderr)
        return 1
    print(f"{'version':>7}  {'committed (UTC)':<19}  {'operation':<9}  {'batch':>6}  {'rows':>8}  run")
    for entry in sorted(table.open_table(args.bucket, args.kind).history(), key=lambda e: e["version"]):
        when = datetime.fromtimestamp(entry["timestamp"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        batch, rows = entry.get("news_etl.batch_id", ""), entry.get("news_etl.rows", "")
        print(f"{entry['version']:>7}  {when:<19}  {entry['operation']:<9}  {batch:>6}  {rows:>8}  "
              f"{entry.get('news_etl.run_id', '')}")  # fmt: skip
    return 0


def compact(args: argparse.Namespace) -> int:
    """Vacuum both tables, then compact them; print files and median size before and after.

    Vacuum first, so that a retention the tables refuse stops the command before it changes
    anything; the files this compaction replaces are within the retention anyway.
    """
    if args.target_mb < 1:
        print(f"compact: error: --target-mb must be at least 1, got {args.target_mb}", file=sys.stderr)
        return EXIT_USAGE
    kinds = [kind for kind in (ENRICHED, QUARANTINED) if table.is_table(args.bucket, kind)]
    if not kinds:
        print(f"compact: error: s3://{args.bucket} holds no Delta table", file=sys.stderr)
        return 1
    before = {kind: live_file_sizes(args.bucket, kind) for kind in kinds}
    try:
        deleted = table.vacuum(args.bucket, args.retention_hours)
    except ConfigurationError as error:
        print(f"compact: error: --retention-hours: {error}", file=sys.stderr)
        return EXIT_USAGE
    table.compact(args.bucket, args.target_mb)
    for kind in kinds:
        after = live_file_sizes(args.bucket, kind)
        print(f"{kind}: {len(before[kind])} files (median {median_kb(before[kind])} KB) -> {len(after)} files "
              f"(median {median_kb(after)} KB); vacuum deleted {deleted.get(kind, 0)} files")  # fmt: skip
    return 0


def median_kb(sizes: list[int]) -> str:
    return f"{statistics.median(sizes) / 1024:,.1f}" if sizes else "-"


def jars(args: argparse.Namespace) -> int:
    """Print spark-submit's flags for the S3A jars, or download the jars into the cache."""
    if args.fetch:
        print(f"S3A jars cached in {hadoop_s3.fetch()}")
    else:
        print(" ".join(hadoop_s3.submit_args()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m news_etl.tools", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    bucket = os.environ.get("S3_BUCKET") or None
    show = commands.add_parser("inspect", help="list the bucket's objects, count rows, show a few")
    show.add_argument("--bucket", default=bucket, help="the bucket (env S3_BUCKET)")
    show.add_argument("--rows", type=int, default=5, help="enriched rows to print (default 5)")
    show.set_defaults(run=inspect)
    check = commands.add_parser("verify", help="recount the output against the checkpoint's totals")
    default = os.environ.get("CHECKPOINT_DIR") or os.path.join("checkpoints", os.environ.get("STREAM_NAME", ""))
    check.add_argument("--checkpoint", default=default, help="the ETL's checkpoint (env CHECKPOINT_DIR)")
    check.set_defaults(run=verify)
    history = commands.add_parser("versions", help="a Delta table's versions, with the batch and rows of each")
    history.add_argument("--bucket", default=bucket, required=bucket is None, help="the bucket (env S3_BUCKET)")
    history.add_argument("--kind", choices=(ENRICHED, QUARANTINED), default=ENRICHED, help="the table (enriched)")
    history.set_defaults(run=versions)
    lean = commands.add_parser("compact", help="vacuum, then merge small files (safe while the job runs)")
    lean.add_argument("--bucket", default=bucket, required=bucket is None, help="the bucket (env S3_BUCKET)")
    lean.add_argument("--target-mb", type=int, default=DEFAULT_COMPACT_TARGET_MB,
                      help=f"target file size (default {DEFAULT_COMPACT_TARGET_MB})")  # fmt: skip
    lean.add_argument("--retention-hours", type=int,
                      help="vacuum keeps files a version younger than this uses, and files never committed "
                           f"until they are this old (default and least: each table's {table.RETENTION_PROPERTY}, "
                           f"{table.DEFAULT_RETENTION_HOURS} hours on the job's tables)")  # fmt: skip
    lean.set_defaults(run=compact)
    s3a = commands.add_parser("jars", help="print the spark-submit flags that bring the S3A jars (a checkpoint on S3)")
    s3a.add_argument("--fetch", action="store_true",
                     help="download the jars into the Ivy cache instead (an image build does)")  # fmt: skip
    s3a.set_defaults(run=jars)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one tool; returns its exit code (``news_etl.tools`` exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # piped into head: the reader has what it wanted (Python's docs, "SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
