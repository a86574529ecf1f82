"""Dedup state memory against the number of distinct keys it holds: RocksDB against the heap store.

    python -m bench.state_memory [--keys 100000 2000000] [--out bench/results]     (part of make bench)

The job's dedup stage alone (``withWatermark`` + ``dropDuplicatesWithinWatermark`` on a
36-character article id, as ``news_etl.job.article_stream`` runs it, with the job's state-store
settings), fed the same BATCHES micro-batches of BATCH_ROWS UUIDs in every run, drawn from as many
distinct ids as asked for: only the number of keys the state holds differs between runs.
Each run is its own process (``--one``) with its heap capped as an executor's would be, measured
whole from here: the JVM's own peak RSS (the kernel's VmHWM: the JVM holds the state), the peak
RSS of the process tree sampled from /proc, and the state operator's ``memoryUsedBytes`` after
the last batch. Prints a table and writes ``state_memory.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.measure import run as measured_run
from bench.report import publish
from news_etl.session import STATE_STORE_PROVIDERS as PROVIDERS
from news_etl.session import state_store_settings

BATCHES, BATCH_ROWS = 20, 100_000  # every run: the same batches, whatever the number of distinct keys among them
HEAP = "1g"  # the JVM's heap in each run (local mode: the driver is the executor)
FLAT = 1.25  # RocksDB's peak with the most keys, relative to its peak with the fewest: the stated bound


def write_keys(folder: Path, keys: int) -> None:
    """BATCHES Parquet files of BATCH_ROWS ids each, cycling through ``keys`` distinct UUIDs: with as
    many keys as rows every id is new; with fewer, later batches repeat earlier ids (the state
    holds ``keys`` ids, and each batch does the same lookups)."""
    folder.mkdir(parents=True)
    ids = [str(uuid.uuid4()) for _ in range(keys)]
    arrival = pa.array([datetime.now(UTC)] * BATCH_ROWS, pa.timestamp("us", "UTC"))
    for number in range(BATCHES):
        start = number * BATCH_ROWS
        batch = [ids[(start + offset) % keys] for offset in range(BATCH_ROWS)]
        pq.write_table(pa.table({"dedup_key": batch, "arrival_time": arrival}), folder / f"part-{number:03d}.parquet")


def peak_rss_kib(pid: int) -> int:
    """The kernel's own high-water mark of a process's resident memory (VmHWM), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def one_run(provider: str, source: Path, checkpoint: Path) -> None:
    """The dedup stage over ``source``; prints the state operator's figures after the last batch as JSON."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "4")
        .config(map=state_store_settings(provider))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    schema = "dedup_key string, arrival_time timestamp"
    keys = (
        spark.readStream.schema(schema)
        .option("maxFilesPerTrigger", 1)
        .parquet(str(source))
        .withWatermark("arrival_time", "168 hours")
        .dropDuplicatesWithinWatermark(["dedup_key"])
    )
    query = (
        keys.writeStream.foreachBatch(lambda batch, _: batch.count())
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    state = query.lastProgress["stateOperators"][0]
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    print(json.dumps({"rows": state["numRowsTotal"], "memory_used": state["memoryUsedBytes"],
                      "jvm_peak_rss": peak_rss_kib(jvm) * 1024}))  # fmt: skip
    spark.stop()


def measure(provider: str, keys: int, work: Path) -> dict:
    source = work / f"keys-{keys}"
    if not source.exists():
        write_keys(source, keys)
    argv = [
        sys.executable,
        "-m",
        "bench.state_memory",
        "--one",
        provider,
        str(source),
        str(work / f"cp-{provider}-{keys}"),
    ]
    # The heap capped as an executor's would be: the JVM must collect, so its RSS shows what the state needs.
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": f"--driver-memory {HEAP} pyspark-shell"}
    measured = measured_run(argv, env=env, timeout=3600)
    if measured.returncode != 0:  # the heap store may not fit: a finding, not a crash of the benchmark
        errors = [line for line in measured.stderr.splitlines() if "Error" in line or "Exception" in line]
        return {"provider": provider, "keys": keys, "failed": (errors or ["exit " + str(measured.returncode)])[0][:160],
                "peak_rss_mib": measured.peak_rss["total"] / 2**20, "cpu_s": measured.cpu_s}  # fmt: skip
    state = json.loads(measured.stdout.strip().splitlines()[-1])
    return {"provider": provider, "keys": keys, "state_rows": state["rows"],
            "state_memory_mib": state["memory_used"] / 2**20, "jvm_peak_mib": state["jvm_peak_rss"] / 2**20,
            "peak_rss_mib": measured.peak_rss["total"] / 2**20, "cpu_s": measured.cpu_s}  # fmt: skip


def to_markdown(rows: list[dict]) -> str:
    lines = [f"Heap {HEAP}; {BATCHES} micro-batches of {BATCH_ROWS:,} ids each run; state memory: the state "
             "operator's memoryUsedBytes after the last batch.\n",
             "| state store | keys held | state rows | state memory (MiB) | JVM peak RSS (MiB) | tree peak RSS (MiB) "
             "| CPU (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for row in rows:
        cpu = f"{row['cpu_s']:.0f}" if row["cpu_s"] is not None else "n/a"
        if "failed" in row:
            lines.append(f"| {row['provider']} | {row['keys']:,} | FAILED: {row['failed']} | | | "
                         f"{row['peak_rss_mib']:,.0f} | {cpu} |")  # fmt: skip
            continue
        lines.append(f"| {row['provider']} | {row['keys']:,} | {row['state_rows']:,} | {row['state_memory_mib']:,.1f} "
                     f"| {row['jvm_peak_mib']:,.0f} | {row['peak_rss_mib']:,.0f} | {cpu} |")  # fmt: skip
    rocksdb = [row for row in rows if row["provider"] == "rocksdb" and "failed" not in row]
    growth = rocksdb[-1]["jvm_peak_mib"] / rocksdb[0]["jvm_peak_mib"]
    verdict = "within" if growth <= FLAT else "ABOVE"
    lines.append(f"\nRocksDB JVM peak RSS, most keys / fewest: {growth:.2f}x ({verdict} the stated bound of {FLAT}x)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000, 2_000_000])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--one", nargs=3, metavar=("PROVIDER", "SOURCE", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        one_run(args.one[0], Path(args.one[1]), Path(args.one[2]))
        return 0
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(provider, keys, Path(work)) for keys in sorted(args.keys) for provider in PROVIDERS]
    table = to_markdown(rows)
    publish(table, args.out, "state_memory.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
