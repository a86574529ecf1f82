"""Operator tools: look at what the job wrote, check it against the checkpoint, keep the tables lean.

    python -m news_etl.tools inspect --bucket news-data           (make inspect)
    python -m news_etl.tools verify --checkpoint checkpoints/news  (make verify)
    python -m news_etl.tools versions --bucket news-data          (make versions)
    python -m news_etl.tools compact --bucket news-data           (make compact)

``inspect`` lists the bucket's objects, counts rows, shows the quarantine reasons and a few
rows, reading the Parquet back with pyarrow as a training job would (a Delta table's live files
at its latest version); exit 0, or 1 when the bucket cannot be listed. ``verify`` recounts the
checkpoint's output (a Delta table's live files; in a plain folder, the files named with the
checkpoint's run id) and compares the counts and per-hour word sums with
``CHECKPOINT/etl-state.json``, which the job updates from each batch's own figures and never by
reading the output back; exit 0 when they agree, 1 when not, 2 when there is no checkpoint state
at that path. ``versions`` lists a Delta table's versions with the batch and rows each added.
``compact`` merges small files and vacuums (safe while the job runs). The endpoint, region and
credentials come from the standard AWS settings (AWS_ENDPOINT_URL for an emulator).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from news_etl import table
from news_etl.aws import exit_process, s3_filesystem
from news_etl.schemas import ENRICHED, QUARANTINED
from news_etl.settings import DEFAULT_COMPACT_TARGET_MB, DELTA, PARQUET, Settings
from news_etl.state import HOUR_FORMAT, RunState, read_state

SAMPLE_COLUMNS = ["article_id", "published_at", "word_count", "title"]
EXIT_DISAGREE, EXIT_NO_STATE, EXIT_USAGE = 1, 2, 2


def list_objects(filesystem: pafs.FileSystem, bucket: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(bucket, recursive=True, allow_not_found=True)
    return [info for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File]


def dataset(filesystem: pafs.FileSystem, bucket: str, kind: str, objects: list[pafs.FileInfo],
            live: list[tuple[str, str]] | None) -> ds.Dataset | None:  # fmt: skip
    """The ``enriched`` or ``quarantine`` output, if any file exists: a Delta table's ``live`` files
    (at its latest version), or, when it is no table (``live`` None), a plain folder's files."""
    base = f"{bucket}/{kind}"
    if live is not None:
        files = [path for path, _ in live]
    else:
        files = [info.path for info in objects if info.path.startswith(f"{base}/") and info.path.endswith(".parquet")]
    if not files:
        return None
    # A Delta table keeps dt in its log, not in the files: the hive-style folder names carry it too.
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
        reasons = Counter(quarantine.to_table(columns=["error"]).column("error").to_pylist())
        for reason, count in reasons.most_common():
            print(f"  {count:>8,}  {reason}")
    if enriched:
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


def output_files(state: RunState) -> dict[str, list[str]]:
    """Per kind, the files that hold the checkpoint's output (paths without ``s3://``)."""
    if state.output_format == DELTA:
        return {kind: [path for path, _ in table.live_files(state.bucket, kind)] if table.is_table(state.bucket, kind)
                else [] for kind in (ENRICHED, QUARANTINED)}  # fmt: skip
    files: dict[str, list[str]] = {ENRICHED: [], QUARANTINED: []}
    for info in list_objects(s3_filesystem(), state.bucket):
        kind, _, name = info.path.removeprefix(f"{state.bucket}/").partition("/")
        if kind in files and Path(name).name.startswith(f"part-{state.run_id}-"):
            files[kind].append(info.path)
    return files


def recount(state: RunState) -> tuple[dict[str, int], dict[str, list[int]], list[str]]:
    """Rows per kind, [articles, words] per hour of the enriched rows, and the files that are missing."""
    filesystem = s3_filesystem()
    counts = {ENRICHED: 0, QUARANTINED: 0}
    hourly: dict[str, list[int]] = {}
    missing = []
    for kind, paths in output_files(state).items():
        for path in paths:
            columns = ["published_at", "word_count"] if kind == ENRICHED else ["error"]
            try:
                rows = pq.read_table(path, filesystem=filesystem, columns=columns)
            except FileNotFoundError:
                missing.append(path)
                continue
            counts[kind] += rows.num_rows
            if kind == ENRICHED and rows.num_rows:
                add_hours(hourly, rows)
    return counts, hourly, missing


def add_hours(hourly: dict[str, list[int]], rows: pa.Table) -> None:
    hours = pc.strftime(rows["published_at"], format=HOUR_FORMAT, locale="C")
    for hour, words in zip(hours.to_pylist(), rows["word_count"].to_pylist(), strict=True):
        window = hourly.setdefault(hour, [0, 0])
        window[0] += 1
        window[1] += words


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


def file_sizes(bucket: str, kind: str) -> list[int]:
    """The sizes of the table's live files."""
    return [info.size for info in s3_filesystem().get_file_info([p for p, _ in table.live_files(bucket, kind)])]


def compact(args: argparse.Namespace) -> int:
    """Compact both tables, then vacuum them; print files and median size before and after."""
    if args.target_mb < 1 or args.retention_hours < table.MIN_RETENTION_HOURS:
        print(f"compact: error: --target-mb must be at least 1 and --retention-hours at least "
              f"{table.MIN_RETENTION_HOURS} (a running batch's files are not committed yet), "
              f"got {args.target_mb} and {args.retention_hours}", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    kinds = [kind for kind in (ENRICHED, QUARANTINED) if table.is_table(args.bucket, kind)]
    if not kinds:
        print(f"compact: error: s3://{args.bucket} holds no Delta table", file=sys.stderr)
        return 1
    before = {kind: file_sizes(args.bucket, kind) for kind in kinds}
    table.compact(args.bucket, args.target_mb)
    deleted = table.vacuum(args.bucket, args.retention_hours)
    for kind in kinds:
        after = file_sizes(args.bucket, kind)
        print(f"{kind}: {len(before[kind])} files (median {median_kb(before[kind])} KB) -> {len(after)} files "
              f"(median {median_kb(after)} KB); vacuum deleted {deleted.get(kind, 0)} files")  # fmt: skip
    return 0


def median_kb(sizes: list[int]) -> str:
    return f"{statistics.median(sizes) / 1024:,.1f}" if sizes else "-"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m news_etl.tools", description=__doc__.split("\n\n")[0])
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
    lean = commands.add_parser("compact", help="merge small files, then vacuum (safe while the job runs)")
    lean.add_argument("--bucket", default=bucket, required=bucket is None, help="the bucket (env S3_BUCKET)")
    lean.add_argument("--target-mb", type=int, default=DEFAULT_COMPACT_TARGET_MB,
                      help=f"target file size (default {DEFAULT_COMPACT_TARGET_MB})")  # fmt: skip
    lean.add_argument("--retention-hours", type=int, default=table.DEFAULT_RETENTION_HOURS,
                      help="vacuum keeps files a version younger than this uses, and files never committed "
                           f"until they are this old (default {table.DEFAULT_RETENTION_HOURS}, at least "
                           f"{table.MIN_RETENTION_HOURS})")  # fmt: skip
    lean.set_defaults(run=compact)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # piped into head: the reader has what it wanted (Python's docs, "SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    exit_process(main())
