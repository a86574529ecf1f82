"""The job's output read back from S3 as a trainer would, and recounted against the checkpoint.

The library behind the operator tools (``news_etl.cli.tools``): ``inspect`` lists a bucket and
opens each output as a pyarrow dataset (a Delta table's live files at its latest version, or a
plain folder's files); ``verify`` recounts the files that hold a checkpoint's output
(``output_files``: a Delta table's live files; in a plain folder, the files named with the
checkpoint's run id) and compares the counts and per-hour word sums with the running totals
(``news_etl.state``), which the job keeps from each batch's own figures and never by reading the
output back. Nothing here parses arguments or prints.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from news_etl import table
from news_etl.aws import s3_filesystem
from news_etl.schemas import ENRICHED, QUARANTINED
from news_etl.settings import DELTA
from news_etl.sink import windows
from news_etl.state import RunState, daily, merge_windows


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


def quarantine_reasons(quarantine: ds.Dataset) -> Counter[str]:
    """How many quarantined rows each reason has."""
    return Counter(quarantine.to_table(columns=["error"]).column("error").to_pylist())


def training_set(enriched: ds.Dataset) -> dict[str, tuple[int, int, int]]:
    """Per split: articles, near-duplicate clusters, and articles in clusters of more than one."""
    rows = enriched.to_table(columns=["split", "cluster_id"])
    sizes = rows.group_by(["split", "cluster_id"]).aggregate([("cluster_id", "count")])
    figures = {}
    for split in sorted(set(sizes["split"].to_pylist()), key=str):
        counts = pc.filter(sizes["cluster_id_count"], pc.equal(sizes["split"], split)).to_numpy()
        figures[split] = (int(counts.sum()), len(counts), int(counts[counts > 1].sum()))
    return figures


def live_file_sizes(bucket: str, kind: str) -> list[int]:
    """The sizes of the table's live files."""
    return [info.size for info in s3_filesystem().get_file_info([p for p, _ in table.live_files(bucket, kind)])]


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
            columns = ["published_at", "arrival_time", "word_count"] if kind == ENRICHED else ["error"]
            try:
                rows = pq.read_table(path, filesystem=filesystem, columns=columns)
            except FileNotFoundError:
                missing.append(path)
                continue
            counts[kind] += rows.num_rows
            if kind == ENRICHED and rows.num_rows:
                merge_windows(hourly, windows(rows))
    return counts, hourly, missing


def compare(state: RunState, counts: dict[str, int], hourly: dict[str, list[int]]) -> list[str]:
    """What disagrees, one line each; empty when the output matches the metrics."""
    problems = []
    if state.records_read != state.enriched + state.quarantined + state.duplicates_dropped + state.late_dropped:
        problems.append(f"metrics do not add up: read {state.records_read} != enriched + quarantined + duplicates "
                        "+ late")  # fmt: skip
    for kind, expected in ((ENRICHED, state.enriched), (QUARANTINED, state.quarantined)):
        if counts[kind] != expected:
            problems.append(f"{kind}: metrics say {expected} rows, S3 holds {counts[kind]}")
    # The windows as the totals hold them: hours they folded into their day, folded.
    recounted = {window: list(counts) for window, counts in hourly.items() if window in state.hourly}
    merge_windows(recounted, daily({window: counts for window, counts in hourly.items() if window not in state.hourly}))
    for window in sorted(set(recounted) | set(state.hourly)):
        held, said = recounted.get(window), state.hourly.get(window)
        if held != said:
            problems.append(f"window {window}: metrics say {said}, S3 holds {held}")
    return problems
