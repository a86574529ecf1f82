"""Near-duplicate index designs side by side: what one batch's band-key lookup costs in each.

    nice -n 5 python -m bench.near_dup_designs [--out bench/results]       (about 8 minutes on 2 cores)

The index maps band key -> cluster for the articles within the horizon. Each design gets batches of B
articles (25 band keys each, random int64; a tenth of a batch's articles copy 13 of their bands from an
article already indexed, so lookups hit):

(A) the job's: ``news_etl.clusters.ClusterIndex`` on the driver (numpy). ``assign`` then
    ``add_assigned`` on a batch built as tests/unit/test_clusters.py's ``batch()`` builds one, against
    an index of 100k or 1M articles built as ``load_index`` builds it (one ``add``). Wall and CPU of
    this process (``time.process_time``). Memory per article: the segments' numpy ``nbytes``, and the
    ``names`` dict by ``sys.getsizeof`` (the dict, its int keys and str ids; checked once against
    tracemalloc); then entries and names while several horizons' worth of articles arrive (PLATEAUS).
(B) the index as a Spark table (band_key, cluster_hash, seen), cached and as local Parquet: the batch's
    keys broadcast, the index scanned (a broadcast hash join), the lowest cluster per article collected
    to the driver. Lookup only: appending the batch's keys to the index is not timed. Broadcast and
    shuffle bytes from the SQL execution's node metrics (Spark UI REST API).
(C) Spark's state: a streaming ``transformWithState`` (PySpark 4's Row API) keyed by band key on RocksDB,
    whose processor only looks its key up and inserts it (a ValueState holding the cluster hash), fed
    one Parquet file of band rows per micro-batch, state growing from empty; and, with no Python in the
    loop, ``dropDuplicatesWithinWatermark`` on the band key (a RocksDB lookup-and-insert per key).

(B) and (C) run in processes of their own (``--one``) started in a fresh cpuacct cgroup
(bench/measure.py), so a batch's CPU is the whole tree's: JVM, Python workers and driver. Sessions are
``local[2]`` with the job's JVM options and state-store settings (``news_etl.session``). Figures are
medians of REPEATS batches after a warm-up batch, except (C)'s Python processor at 10k articles: one
batch (each takes minutes). Prints a markdown table; writes ``near_dup_designs.json``.
One module, longer than most here, because the three designs share their batches and their table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.bench_etl import machine
from bench.measure import CPUACCT
from bench.measure import run as measured_run
from news_etl.clusters import ClusterIndex, cluster_hash
from news_etl.near_dup import BANDS
from news_etl.session import JVM_OPTIONS, state_store_settings
from news_etl.state import ROCKSDB
from tests.support.process_tree import session_processes

INDEX_SIZES = (100_000, 1_000_000)  # articles indexed, BANDS keys each
BATCH_SIZES = (1_000, 10_000)  # articles a batch
REPEATS = 3
HIT_SHARE, SHARED_BANDS = 0.1, 13  # a tenth of a batch's articles copy 13 bands of an indexed one
HORIZON_US = 168 * 3600 * 10**6  # the job's default --dedup-horizon-hours
SECOND_US = 10**6
RATIOS = (0.98, 0.01, 0.01)
# (horizon, batch in articles arriving one a second; horizons fed): the second, with many batches a horizon
# as the job has (168 hours of batches of seconds to minutes), for long enough to see whether it levels off.
PLATEAUS = ((100_000, 10_000, 4), (10_000, 100, 30))
NAMES_CHECK = 20_000  # articles whose names dict tracemalloc measures, to check the getsizeof estimate
SPARK_MEMORY = {"b": "6g", "c": "2g"}  # the driver's heap (local mode: the executor's too)
C_PLAN = [(1_000, False)] + [(1_000, True)] * REPEATS + [(10_000, True)]  # (articles, timed) per file
C_FLOOR_PLAN = [(1_000, False)] + [(1_000, True)] * REPEATS + [(10_000, True)] * REPEATS
IDLE_S = 5  # seconds a streaming query waits idle, to see its CPU with no data
BAND_ROWS = "band_key long, article long, cluster_hash long, arrival_time timestamp"
INT64 = np.iinfo(np.int64)
UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def random_keys(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(INT64.min, INT64.max, size=shape, dtype=np.int64)


def batch_keys(rng: np.random.Generator, articles: int, indexed: np.ndarray) -> np.ndarray:
    """A batch's band keys (articles x BANDS): random, except that HIT_SHARE of the articles copy
    SHARED_BANDS bands (the same band numbers) from random rows of ``indexed``."""
    keys = random_keys(rng, (articles, BANDS))
    if len(indexed):
        copies = rng.choice(articles, int(articles * HIT_SHARE), replace=False)
        bands = rng.choice(BANDS, SHARED_BANDS, replace=False)
        keys[np.ix_(copies, bands)] = indexed[np.ix_(rng.integers(0, len(indexed), len(copies)), bands)]
    return keys


def article_batch(keys: np.ndarray, first: int, arrivals_us: np.ndarray) -> pa.Table:
    """Articles as ``ClusterIndex.assign`` reads them, as tests/unit/test_clusters.py's ``batch()``
    makes them: UUID ids, one shard, sequence numbers from ``first``, a row of ``keys`` each."""
    count = len(keys)
    return pa.table({
        "article_id": [str(uuid.uuid4()) for _ in range(count)],
        "arrival_time": pa.array(arrivals_us, pa.timestamp("us", "UTC")),
        "shard_id": ["shardId-000000000000"] * count,
        "sequence_number": [str(10**20 + first + k) for k in range(count)],
        "sub_sequence_number": pa.nulls(count, pa.int64()),
        "near_dup_bands": pa.ListArray.from_arrays(np.arange(0, count * BANDS + 1, BANDS, np.int32), keys.ravel()),
    })  # fmt: skip


# --- (A) the driver's numpy index -------------------------------------------------------------------


def names_bytes(names: dict[int, str]) -> int:
    """The ``names`` dict's size by ``sys.getsizeof``: the dict, and each int key and str value."""
    return sys.getsizeof(names) + sum(sys.getsizeof(key) + sys.getsizeof(name) for key, name in names.items())


def names_check() -> dict:
    """The getsizeof estimate against tracemalloc, on a names dict of NAMES_CHECK articles."""
    tracemalloc.start()
    ids = [str(uuid.uuid4()) for _ in range(NAMES_CHECK)]
    names = {cluster_hash(name) - 2**63: name for name in ids}  # int64-range keys, as the index has
    del ids
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"articles": NAMES_CHECK, "getsizeof_per_article": names_bytes(names) / NAMES_CHECK,
            "tracemalloc_per_article": traced / NAMES_CHECK}  # fmt: skip


def built_index(articles: int, rng: np.random.Generator) -> tuple[ClusterIndex, np.ndarray, dict]:
    """An index of ``articles`` (each its own cluster, arriving within half a horizon) built in one
    ``add`` as ``load_index`` does; its keys (articles x BANDS) and the build's time and memory."""
    ids = [str(uuid.uuid4()) for _ in range(articles)]
    keys = random_keys(rng, (articles, BANDS))
    arrivals = np.arange(articles, dtype=np.int64) * (HORIZON_US // (2 * articles))
    wall, cpu = time.perf_counter(), time.process_time()
    hashes = np.array([cluster_hash(name) for name in ids], np.uint64).view(np.int64)
    index = ClusterIndex(HORIZON_US)
    names = dict(zip(hashes.tolist(), ids, strict=True))
    index.add(keys.ravel(), np.repeat(hashes, BANDS), np.repeat(arrivals, BANDS), names)
    built = {"build_wall_s": time.perf_counter() - wall, "build_cpu_s": time.process_time() - cpu}
    numpy_bytes = sum(s.keys.nbytes + s.clusters.nbytes + s.seen.nbytes for s in index.segments)
    memory = {"numpy_bytes_per_article": numpy_bytes / articles,
              "names_bytes_per_article": names_bytes(index.names) / articles}  # fmt: skip
    return index, keys, {**built, **memory}


def timed_assign(index: ClusterIndex, articles: pa.Table) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    assigned = index.assign(articles, RATIOS)
    index.add_assigned(articles, assigned)
    joined = articles.num_rows - sum(assigned["first_in_cluster"].to_pylist())
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "joined": joined}


def design_a(rng: np.random.Generator) -> list[dict]:
    rows = []
    for indexed in INDEX_SIZES:
        index, keys, build = built_index(indexed, rng)
        step, newest = HORIZON_US // (2 * indexed), int(index.newest)
        for articles in BATCH_SIZES:
            runs = []
            for _ in range(1 + REPEATS):
                arrivals = newest + step * np.arange(1, articles + 1)
                runs.append(timed_assign(index, article_batch(batch_keys(rng, articles, keys), newest, arrivals)))
                newest = int(arrivals[-1])
            rows.append({"design": "A", "variant": "ClusterIndex (driver, numpy)", "index_articles": indexed,
                         "batch_articles": articles, **medians(runs[1:]), "runs": runs[1:], **build,
                         "segments_after": len(index.segments)})  # fmt: skip
        del index, keys
    return rows


def plateau(horizon: int, batch: int, horizons: int, rng: np.random.Generator) -> dict:
    """The index while ``horizons`` horizons' worth of articles arrive, one a second, in batches of
    ``batch`` (a tenth of each sharing bands with an article of the last horizon): per horizon, its
    entries and names at their peak and at its end, relative to what one horizon holds."""
    index = ClusterIndex(horizon * SECOND_US)
    fed = np.empty((horizons * horizon, BANDS), np.int64)
    points = []
    for first in range(0, len(fed), batch):
        keys = batch_keys(rng, batch, fed[max(0, first - horizon) : first])
        articles = article_batch(keys, first, (first + np.arange(batch)) * SECOND_US)
        index.add_assigned(articles, index.assign(articles, RATIOS))
        fed[first : first + batch] = keys
        points.append((index.entries / (horizon * BANDS), len(index.names) / horizon, len(index.segments)))
    per_horizon = horizon // batch
    spans = [points[n : n + per_horizon] for n in range(0, len(points), per_horizon)]
    return {"horizon_articles": horizon, "batch_articles": batch, "horizons": horizons,
            "per_horizon": [{"peak_entries": max(p[0] for p in span), "end_entries": span[-1][0],
                             "peak_names": max(p[1] for p in span), "end_names": span[-1][1],
                             "max_segments": max(p[2] for p in span)} for span in spans]}  # fmt: skip


def medians(runs: list[dict]) -> dict:
    return {f"median_{name}": statistics.median(run[name] for run in runs) for name in ("wall_s", "cpu_s")}


# --- (B) and (C): Spark, in a process of their own ----------------------------------------------------


def tree_cpu_seconds() -> float:
    """CPU used so far by this process and all it started: its cpuacct cgroup's counter when
    bench/measure.py started it in one of its own, else the sum over its session's processes (/proc)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, group = line.split(":", 2)
        if "cpuacct" in controllers.split(",") and group != "/":
            return int((CPUACCT / group.lstrip("/") / "cpuacct.usage").read_text()) / 1e9
    return sum(cpu for *_, cpu in session_processes(os.getsid(0)))


def spark_session(memory: str, ui: bool):
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("near-dup-designs")
        .config("spark.driver.memory", memory)
        .config("spark.driver.extraJavaOptions", JVM_OPTIONS)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", str(ui).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config(map=state_store_settings(ROCKSDB))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def to_bytes(text: str) -> int:
    """A Spark UI size ("27.8 KiB", or "total (min, med, max ...)\\n27.8 KiB (...)") in bytes."""
    number, unit = text.splitlines()[-1].split()[:2]
    return round(float(number.replace(",", "")) * UNITS[unit])


def rest(spark, path: str):
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app}/{path}") as answer:
        return json.load(answer)


def exchange_bytes(spark, tag: str) -> dict:
    """The broadcast's and the shuffle's bytes of the SQL execution described as ``tag``, from its
    nodes' metrics (the UI's listener is asynchronous: polled until it has the execution)."""
    for _ in range(100):
        done = [e for e in rest(spark, "sql?details=true&length=100000") if e["description"] == tag]
        if done and done[0]["status"] == "COMPLETED":
            break
        time.sleep(0.1)
    else:
        return {"broadcast_bytes": None, "shuffle_bytes": None}
    metrics = [(node["nodeName"], m["name"], m["value"]) for node in done[0]["nodes"] for m in node["metrics"]]
    return {"broadcast_bytes": sum(to_bytes(v) for n, m, v in metrics if n == "BroadcastExchange" and m == "data size"),
            "shuffle_bytes": sum(to_bytes(v) for n, m, v in metrics if m == "shuffle bytes written")}  # fmt: skip


def lowest_clusters(index, batch):
    """Per article of ``batch`` (band_key, article), the lowest cluster its keys hit among the live rows
    of ``index``: the batch's keys broadcast, the index scanned."""
    from pyspark.sql import functions as F

    live = index.where(F.col("seen") >= 0).select("band_key", "cluster_hash")
    hits = live.join(F.broadcast(batch), on="band_key", how="inner")
    return hits.groupBy("article").agg(F.min("cluster_hash").alias("cluster_hash"))


def timed_lookup(spark, index, batch, tag: str) -> dict:
    spark.sparkContext.setJobDescription(tag)
    wall, cpu = time.perf_counter(), tree_cpu_seconds()
    joined = len(lowest_clusters(index, batch).collect())
    measured = {"wall_s": time.perf_counter() - wall, "cpu_s": tree_cpu_seconds() - cpu, "joined": joined}
    spark.sparkContext.setJobDescription(None)
    return {**measured, **exchange_bytes(spark, tag)}


def write_index(path: Path, articles: int, rng: np.random.Generator) -> np.ndarray:
    """The index as Parquet rows (band_key, cluster_hash, seen); returns its keys (articles x BANDS)."""
    keys = random_keys(rng, (articles, BANDS))
    seen = np.repeat(np.arange(articles, dtype=np.int64) * (HORIZON_US // (2 * articles)), BANDS)
    clusters = np.repeat(random_keys(rng, articles), BANDS)
    pq.write_table(pa.table({"band_key": keys.ravel(), "cluster_hash": clusters, "seen": seen}), path)
    return keys


def cached_index(spark, path: Path, indexed: int) -> tuple[object, dict]:
    """The Parquet index cached in Spark's memory, and what caching took: time, bytes an article."""
    cached, started = spark.read.parquet(str(path)).cache(), time.perf_counter()
    cached.count()
    memory = sum(rdd["memoryUsed"] for rdd in rest(spark, "storage/rdd"))
    return cached, {"index_articles": indexed, "cache_s": time.perf_counter() - started,
                    "cached_bytes_per_article": memory / indexed,
                    "parquet_bytes_per_article": path.stat().st_size / indexed}  # fmt: skip


def design_b(work: Path) -> dict:
    spark, rng, rows = spark_session(SPARK_MEMORY["b"], ui=True), np.random.default_rng(2), []
    for indexed in INDEX_SIZES:
        path = work / f"index-{indexed}.parquet"
        keys = write_index(path, indexed, rng)
        cached, common = cached_index(spark, path, indexed)
        for articles in BATCH_SIZES:
            bands = pa.table({"band_key": batch_keys(rng, articles, keys).ravel(),
                              "article": np.repeat(np.arange(articles), BANDS)})  # fmt: skip
            batch = spark.createDataFrame(bands).cache()
            batch.count()  # the job's foreachBatch has its batch as a DataFrame already: not timed
            for variant in ("cached index", "Parquet index"):
                runs = []
                for number in range(1 + REPEATS):  # Parquet: read afresh each batch, as a new file set would be
                    index = cached if variant == "cached index" else spark.read.parquet(str(path))
                    runs.append(timed_lookup(spark, index, batch, f"{variant} {indexed} {articles} {number}"))
                rows.append({"design": "B", "variant": f"Spark broadcast join, {variant}", "batch_articles": articles,
                             **common, **medians(runs[1:]), "runs": runs[1:]})  # fmt: skip
            batch.unpersist()
        cached.unpersist()
    spark.stop()
    return {"rows": rows}


def band_lookup_processor():
    from pyspark.sql import Row
    from pyspark.sql.streaming import StatefulProcessor

    class BandKeyLookup(StatefulProcessor):
        """Per band key: its cluster if the state holds it, else the lowest of its rows', inserted."""

        def init(self, handle) -> None:
            self.cluster = handle.getValueState("cluster", "cluster long")

        def handleInputRows(self, key, rows, timerValues):  # noqa: N802, N803 (PySpark names them)
            rows = list(rows)
            held = self.cluster.get()
            cluster = held[0] if held is not None else min(row.cluster_hash for row in rows)
            if held is None:
                self.cluster.update((cluster,))
            for row in rows:
                yield Row(article=row.article, cluster=cluster)

        def close(self) -> None:
            pass

    return BandKeyLookup()


def write_band_files(folder: Path, plan: list[tuple[int, bool]], rng: np.random.Generator) -> list[Path]:
    """One Parquet file of band rows per planned batch; a tenth of each batch's articles copy bands of
    articles in earlier files."""
    folder.mkdir(parents=True)
    fed, files, first = np.empty((0, BANDS), np.int64), [], 0
    for number, (articles, _) in enumerate(plan):
        keys = batch_keys(rng, articles, fed)
        table = pa.table({"band_key": keys.ravel(), "article": np.repeat(first + np.arange(articles), BANDS),
                          "cluster_hash": np.repeat(random_keys(rng, articles), BANDS),
                          "arrival_time": pa.array(np.full(articles * BANDS, time.time_ns() // 1000),
                                                   pa.timestamp("us", "UTC"))})  # fmt: skip
        files.append(folder / f"batch-{number:03d}.parquet")
        pq.write_table(table, files[-1])
        fed, first = np.concatenate((fed, keys)), first + articles
    return files


def await_batch(query, batch_id: int, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query.exception() is not None:
            raise query.exception()
        done = [p for p in query.recentProgress if p["batchId"] == batch_id and p["numInputRows"]]
        if done:
            return done[0]
        time.sleep(0.05)
    raise TimeoutError(f"batch {batch_id} of {query.name} not done in {timeout} s")


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def run_stream(spark, name: str, keyed, files: list[Path], plan: list[tuple[int, bool]], work: Path) -> dict:
    """``keyed(stream)`` over ``files``, one file per micro-batch, moved in one at a time; per batch,
    Spark's own trigger time and the tree's CPU from the file's arrival to the batch's progress."""
    source, checkpoint = work / name / "source", work / name / "checkpoint"
    source.mkdir(parents=True)
    stream = spark.readStream.schema(BAND_ROWS).option("maxFilesPerTrigger", 1).parquet(str(source))
    writer = keyed(stream).writeStream.format("noop").queryName(name)
    query = writer.option("checkpointLocation", str(checkpoint)).start()
    runs, idle_cpu_per_s = [], None
    for batch_id, (file, (articles, timed)) in enumerate(zip(files, plan, strict=True)):
        cpu = tree_cpu_seconds()
        shutil.copy(file, work / name / file.name)
        (work / name / file.name).rename(source / file.name)  # whole, at once: the source never lists half a file
        progress = await_batch(query, batch_id)
        if batch_id == 0:  # what the query costs with no data (polling the folder), once warm
            idle_cpu = tree_cpu_seconds()
            time.sleep(IDLE_S)
            idle_cpu_per_s = (tree_cpu_seconds() - idle_cpu) / IDLE_S
        if timed:
            runs.append({"batch_articles": articles, "wall_s": progress["durationMs"]["triggerExecution"] / 1000,
                         "cpu_s": tree_cpu_seconds() - cpu})  # fmt: skip
    state = query.lastProgress["stateOperators"][0]
    query.stop()
    return {"runs": runs, "idle_cpu_per_s": idle_cpu_per_s, "articles_fed": sum(a for a, _ in plan),
            "state_rows": state["numRowsTotal"], "state_memory_bytes": state["memoryUsedBytes"],
            "state_folder_bytes": folder_bytes(checkpoint / "state")}  # fmt: skip


def stream_rows(design: str, variant: str, measured: dict) -> list[dict]:
    rows = []
    for articles in BATCH_SIZES:
        runs = [run for run in measured["runs"] if run["batch_articles"] == articles]
        rows.append({"design": design, "variant": variant, "index_articles": None, "batch_articles": articles,
                     **medians(runs), "runs": runs, **{k: v for k, v in measured.items() if k != "runs"}})  # fmt: skip
    return rows


def design_c(work: Path) -> dict:
    spark, rng = spark_session(SPARK_MEMORY["c"], ui=False), np.random.default_rng(3)
    files = write_band_files(work / "files", C_FLOOR_PLAN, rng)  # the Python processor reads the first few
    rows, failed = [], None
    from pyspark.errors import PySparkException

    def lookup(stream):
        return stream.groupBy("band_key").transformWithState(
            band_lookup_processor(), "article long, cluster long", "Append", "None")  # fmt: skip

    try:
        measured = run_stream(spark, "transform_with_state", lookup, files[: len(C_PLAN)], C_PLAN, work)
        rows += stream_rows("C", "transformWithState (Python Row API), RocksDB", measured)
    except PySparkException as error:  # what failed is a finding: the floor below is measured anyway
        failed = f"{type(error).__name__}: {str(error)[:600]}"

    def floor(stream):
        return stream.withWatermark("arrival_time", "168 hours").dropDuplicatesWithinWatermark(["band_key"])

    measured = run_stream(spark, "drop_duplicates", floor, files, C_FLOOR_PLAN, work)
    rows += stream_rows("C", "dropDuplicatesWithinWatermark (JVM only), RocksDB", measured)
    spark.stop()
    return {"rows": rows, "transform_with_state_error": failed}


def spark_design(design: str, work: Path) -> dict:
    """(B) or (C) in a process of its own, in a fresh cpuacct cgroup; its whole run's figures too."""
    folder = work / design
    folder.mkdir()
    argv = [sys.executable, "-m", "bench.near_dup_designs", "--one", design, str(folder)]
    measured = measured_run(argv, timeout=1800)
    if measured.returncode != 0:
        raise RuntimeError(f"design {design} failed (exit {measured.returncode}): {measured.stderr[-3000:]}")
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    result["process"] = {"wall_s": measured.wall_s, "cpu_s": measured.cpu_s,
                         "peak_rss_mib": measured.peak_rss.get("total", 0) / 2**20}  # fmt: skip
    return result


# --- the table ---------------------------------------------------------------------------------------


def _bytes(value) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.1f} MiB" if value >= 2**20 else f"{value / 2**10:,.0f} KiB"


def _cost_row(row: dict) -> str:
    index = f"{row['index_articles']:,}" if row["index_articles"] else f"grows, {row['articles_fed']:,} at end"
    exchanges = "-"
    if row["design"] == "B":
        run = row["runs"][-1]
        exchanges = f"{_bytes(run['broadcast_bytes'])} / {_bytes(run['shuffle_bytes'])}"
    cells = [f"{row['design']}: {row['variant']}", index, f"{row['batch_articles']:,}",
             f"{row['median_wall_s']:.3f}", f"{row['median_cpu_s']:.3f}",
             f"{row['median_cpu_s'] / row['batch_articles'] * 1e6:,.0f}", exchanges]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def _memory_lines(a_rows: list[dict], b_rows: list[dict]) -> list[str]:
    lines = ["| memory per indexed article | " + " | ".join(f"{n:,}" for n in INDEX_SIZES) + " |",
             "| --- |" + " ---: |" * len(INDEX_SIZES)]  # fmt: skip
    figures = (("A: numpy segments (bytes)", a_rows, "numpy_bytes_per_article"),
               ("A: names dict, getsizeof (bytes)", a_rows, "names_bytes_per_article"),
               ("A: built in one add, as load_index does (s)", a_rows, "build_wall_s"),
               ("B: cached in Spark's memory (bytes)", b_rows, "cached_bytes_per_article"),
               ("B: Parquet file (bytes)", b_rows, "parquet_bytes_per_article"))  # fmt: skip
    for label, rows, key in figures:
        by_size = {row["index_articles"]: row[key] for row in rows}
        lines.append(f"| {label} | " + " | ".join(f"{by_size[n]:,.1f}" for n in INDEX_SIZES) + " |")
    return lines


def _plateau_line(plateau_: dict) -> str:
    spans = plateau_["per_horizon"]
    return (f"A over time: {plateau_['horizons']} horizons of {plateau_['horizon_articles']:,} articles in batches "
            f"of {plateau_['batch_articles']:,}; per horizon, entries at their peak (x a horizon's keys): "
            + ", ".join(f"{span['peak_entries']:.1f}" for span in spans)
            + "; names at the horizon's end (x a horizon's articles): "
            + ", ".join(f"{span['end_names']:.1f}" for span in spans) + ".")  # fmt: skip


def _state_line(row: dict) -> str:
    return (f"C {row['variant']}: after {row['articles_fed']:,} articles, {row['state_rows']:,} state rows; "
            f"checkpoint state folder {row['state_folder_bytes'] / row['articles_fed']:,.0f} bytes an article; "
            f"state memory {_bytes(row['state_memory_bytes'])}; the query idle (no data): "
            f"{row['idle_cpu_per_s']:.2f} CPU-s a second.")  # fmt: skip


def to_markdown(results: dict) -> str:
    a, b, c = results["a"], results["b"]["rows"], results["c"]["rows"]
    check = a["names_check"]
    lines = [
        f"Per batch: medians of {REPEATS} batches after a warm-up (C's Python processor at 10,000 articles: one "
        f"batch). {BANDS} band keys an article; {HIT_SHARE:.0%} of a batch's articles share {SHARED_BANDS} keys "
        "with an indexed one. A: this process's CPU; B, C: the whole process tree's (JVM, workers, driver).",
        "",
        "| design | index (articles) | batch (articles) | wall (s) | CPU (s) | CPU µs / article "
        "| broadcast (Spark's size of the relation) / shuffle bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(_cost_row(row) for row in [*a["rows"], *b, *c]),
        "",
        *_memory_lines(a["rows"], b),
        "",
        f"A names dict: getsizeof {check['getsizeof_per_article']:.0f} bytes an article, tracemalloc "
        f"{check['tracemalloc_per_article']:.0f} ({check['articles']:,} articles).",
        *(_plateau_line(plateau_) for plateau_ in a["plateaus"]),
        *(_state_line(row) for row in {row["variant"]: row for row in c}.values()),
        "B: lookup only (appending the batch's keys to the index is not timed).",
        "C: lookup-and-insert per band key only, a lower bound: the transitive assignment (an article's cluster "
        "depends on all its 25 keys, and its new keys must then be written with that cluster) needs one keyed "
        "step's result fed back into another in the same batch, which one pass of keyed state operators cannot "
        "express. No TTL either.",
    ]  # fmt: skip
    if results["c"]["transform_with_state_error"]:
        lines.append(f"C transformWithState FAILED: {results['c']['transform_with_state_error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--one", nargs=2, metavar=("DESIGN", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        design = {"b": design_b, "c": design_c}[args.one[0]]
        print(json.dumps(design(Path(args.one[1]))), flush=True)
        return 0
    started, rng = time.monotonic(), np.random.default_rng(1)
    a = {"rows": design_a(rng), "names_check": names_check(), "plateaus": [plateau(*p, rng) for p in PLATEAUS]}
    results = {"machine": machine(), "a": a}
    work = Path(tempfile.mkdtemp(prefix="bench-near-dup-designs-"))
    try:
        results |= {"b": spark_design("b", work), "c": spark_design("c", work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["wall_s"] = time.monotonic() - started
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "near_dup_designs.json").write_text(json.dumps(results, indent=1) + "\n")
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
