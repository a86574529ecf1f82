"""The Delta table's files before and after compaction, and what they cost a reader.

    python -m bench.compaction [--records 20000] [--batch 1000] [--out bench/results]   (part of make bench)

A stream of RECORDS articles (populate's generator, 4 shards, moto) is read by
``python -m news_etl --once`` in batches of BATCH records with compaction off, which leaves the
files a continuously polling job would (about one per ``dt`` per batch). Then, side by side in
one run: the live files' count and median size, and the time a trainer takes to read the whole
enriched table (pyarrow over the version's file list, median of READS), before and after
``python -m news_etl.tools compact``. Prints a table and writes ``compaction.md``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.dataset as ds

from bench.bench_populate import BAD_RATIO, DUP_RATIO, UNTIL, bare_loop, new_stream
from bench.report import publish
from news_populate.articles import generate_records
from tests.support import delta_log
from tests.support.emulators import start_moto
from tests.support.jobs import TOOLS_MODULE, etl, run_module
from tests.support.output import s3_filesystem

READS = 5


def table_figures(emulator, bucket: str) -> dict:
    """The enriched table's live files, their sizes, and the median time to read all its rows."""
    filesystem = s3_filesystem(emulator)
    files = delta_log.live_files(filesystem, f"{bucket}/enriched")
    sizes = [info.size for info in filesystem.get_file_info([file.path for file in files])]
    timings, rows = [], 0
    for _ in range(READS):
        started = time.perf_counter()
        rows = ds.dataset([file.path for file in files], filesystem=filesystem, format="parquet").to_table().num_rows
        timings.append(time.perf_counter() - started)
    return {"files": len(files), "median_kib": statistics.median(sizes) / 1024, "total_mib": sum(sizes) / 2**20,
            "read_s": statistics.median(timings), "rows": rows}  # fmt: skip


def to_markdown(records: int, batch: int, before: dict, after: dict, compact_s: float) -> str:
    lines = [
        f"{records:,} records (4 shards, moto), read in batches of {batch:,} without compaction, then "
        f"`tools compact` ({compact_s:.1f} s). Read: the whole enriched table with pyarrow, median of {READS}.",
        "",
        "| enriched table | live files | median file | total | rows | read all rows |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in (("before compaction", before), ("after compaction", after)):
        size, total = f"{row['median_kib']:,.0f} KiB", f"{row['total_mib']:.1f} MiB"
        lines.append(f"| {name} | {row['files']} | {size} | {total} | {row['rows']:,} | {row['read_s']:.3f} s |")
    files, size, read = (after[k] / before[k] for k in ("files", "median_kib", "read_s"))
    lines.append(f"| after / before | {files:.2f}x | {size:.1f}x | | | {read:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-compaction-"))
    emulator = start_moto(work)
    try:
        kinesis = emulator.client("kinesis")
        stream = new_stream(kinesis, 4)
        bare_loop(kinesis, stream, list(generate_records(args.records, seed=7, until=UNTIL, bad_ratio=BAD_RATIO,
                                                         dup_ratio=DUP_RATIO)))  # fmt: skip
        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        emulator.client("s3").create_bucket(Bucket=bucket)
        run = etl(emulator, stream, bucket, work / "checkpoint", "--once", "--max-records-per-batch", str(args.batch),
                  "--compact-target-mb", "0")  # fmt: skip
        if run.returncode != 0:
            raise subprocess.SubprocessError(f"the ETL failed: {run.stderr[-2000:]}")
        before = table_figures(emulator, bucket)
        started = time.perf_counter()
        compacted = run_module(TOOLS_MODULE, ["compact", "--bucket", bucket], emulator, timeout=600)
        compact_s = time.perf_counter() - started
        if compacted.returncode != 0:
            raise subprocess.SubprocessError(f"compact failed: {compacted.stderr[-2000:]}")
        after = table_figures(emulator, bucket)
    finally:
        emulator.stop()
    if after["rows"] != before["rows"]:
        raise AssertionError(f"compaction changed the row count: {before['rows']} -> {after['rows']}")
    table = to_markdown(args.records, args.batch, before, after, compact_s)
    publish(table, args.out, "compaction.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
