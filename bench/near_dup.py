"""Near-duplicate clusters in `make bench`: their quality against the oracle, their cost against the
ETL without them, and what the index keeps per article.

    python -m bench.near_dup [--stories 20000] [--records 20000 60000] [--repeats 3] [--out bench/results]

- **Quality**: the oracle's stream (tests/support/near_dup_oracle.py: its own text and edit model)
  of ``--stories`` stories and their copies, through the job's own functions in batches of
  BATCH articles (``near_dup.band_keys``, as the read task runs it; ``ClusterIndex.assign`` and
  ``add_assigned``, as the batch handler does), measured by ``cluster_quality``: recall by true
  Jaccard band, false joins per 10,000 stories, split leaks.
- **Cost**: the ETL (``python -m news_etl --once``, moto, 4 shards, 3 KB articles, local[2]) at
  HEAD against the ETL at BASE, the last commit without clusters (the same venv, its package
  from a worktree of that commit), alternating, at two sizes; marginal CPU per record, medians.
- **State**: bytes per article of the index on the driver (its numpy arrays) and of the band
  keys on disk (the ``near_dup_bands`` column, zstd Parquet, as the table stores it).

Writes near_dup.json and near_dup.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.bench_etl import REPO, Bench, marginal
from bench.report import publish
from news_etl.clusters import ClusterIndex
from news_etl.near_dup import band_keys
from tests.support.emulators import start_moto
from tests.support.near_dup_oracle import cluster_quality, syndicated_stream

BASE = "14f250f"  # main before issue 25: the ETL without clusters
BATCH = 5_000  # articles a batch in the quality run
HORIZON_HOURS = 168
# The targets.
GOALS = {"recall_high": 0.95, "recall_between": 0.9, "false_joins_per_10k": 1.0, "cpu_ratio": 1.5}


def article_rows(items: list, start: int) -> pa.Table:
    """A batch of the oracle's articles as the handler gives them to ``assign``, arriving as published."""
    articles = [item.article for item in items]
    arrivals = [datetime.fromisoformat(article["published_at"].replace("Z", "+00:00")) for article in articles]
    return pa.table({
        "article_id": [article["article_id"] for article in articles],
        "arrival_time": pa.array(arrivals, pa.timestamp("us", "UTC")),
        "shard_id": ["shardId-000000000000"] * len(articles),
        "sequence_number": [str(10**20 + start + k) for k in range(len(articles))],
        "sub_sequence_number": pa.nulls(len(articles), pa.int64()),
        "near_dup_bands": pa.array(band_keys([article["content"] for article in articles]), pa.list_(pa.int64())),
    })  # fmt: skip


def quality(stories: int) -> dict:
    items = syndicated_stream(seed=2026, stories=stories)
    index = ClusterIndex(HORIZON_HOURS * 3600 * 10**6)
    rows, keys_s, assign_s, bands = {}, 0.0, 0.0, []
    for start in range(0, len(items), BATCH):
        began = time.process_time()
        batch = article_rows(items[start : start + BATCH], start)
        keyed = time.process_time()
        assigned = index.assign(batch, (0.98, 0.01, 0.01))
        index.add_assigned(batch, assigned)
        keys_s, assign_s = keys_s + keyed - began, assign_s + time.process_time() - keyed
        bands.append(batch.select(["near_dup_bands"]))
        rows.update((row["article_id"], (row["cluster_id"], row["first_in_cluster"], row["split"]))
                    for row in assigned.to_pylist())  # fmt: skip
    measured = cluster_quality(items, rows)
    print(measured, flush=True)
    on_disk = io.BytesIO()
    pq.write_table(pa.concat_tables(bands), on_disk, compression="zstd")
    index_bytes = sum(array.nbytes for segment in index.segments
                      for array in (segment.keys, segment.clusters, segment.seen))  # fmt: skip
    return {
        "stories": measured.stories, "articles": measured.articles, "clusters": measured.clusters,
        "recall_high": measured.from_high.recall, "copies_high": measured.from_high.copies,
        "recall_between": measured.between.recall, "copies_between": measured.between.copies,
        "recall_below": measured.below_low.recall, "copies_below": measured.below_low.copies,
        "false_joins": measured.false_joins, "false_joins_per_10k": measured.false_join_rate * 10_000,
        "clusters_across_splits": measured.clusters_across_splits,
        "band_keys_us": keys_s / len(items) * 1e6, "assign_us": assign_s / len(items) * 1e6,
        "index_bytes_per_article": index_bytes / len(items), "names": len(index.names),
        "disk_bytes_per_article": on_disk.tell() / len(items),
    }  # fmt: skip


def base_worktree(work: Path) -> Path:
    """A checkout of BASE, whose etl-processor/ the "without clusters" runs import news_etl from."""
    path = work / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), BASE], check=True,
                   capture_output=True)  # fmt: skip
    return path


def cost(records: tuple[int, int], repeats: int, work: Path) -> dict:
    base = base_worktree(work)
    moto = start_moto(work)
    try:
        bench = Bench({"moto": moto}, work)
        without = {"PYTHONPATH": f"{base / 'etl-processor'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        for repeat in range(repeats):
            for size in records:
                bench.etl("moto", 4, size, repeat)
                bench.etl("moto", 4, size, repeat, tool="etl without clusters", env=without)
    finally:
        moto.stop()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    small, big = records
    with_clusters = marginal(bench, "etl", "moto", 4, small, big)
    without_clusters = marginal(bench, "etl without clusters", "moto", 4, small, big)
    return {
        "records": records, "repeats": repeats,
        "cpu_s_per_10k": with_clusters["cpu_s_per_10k"], "base_cpu_s_per_10k": without_clusters["cpu_s_per_10k"],
        "cpu_ratio": with_clusters["cpu_s_per_10k"] / without_clusters["cpu_s_per_10k"],
        "rate": with_clusters["rate"], "base_rate": without_clusters["rate"],
    }  # fmt: skip


def to_markdown(results: dict) -> str:
    q, c = results["quality"], results["cost"]
    met = lambda ok: "yes" if ok else "NO"  # noqa: E731
    return "\n".join([
        f"Near-duplicate clusters: the oracle's stream of {q['stories']:,} stories ({q['articles']:,} articles, "
        f"{q['clusters']:,} clusters found), and the ETL at HEAD against {BASE} (moto, 4 shards, "
        f"{c['records'][0]:,} and {c['records'][1]:,} records, {c['repeats']} repeats, marginal medians).",
        "",
        "| measure | value | goal | met |",
        "|---|---|---|---|",
        f"| recall, true Jaccard >= 0.8 | {q['recall_high']:.4f} of {q['copies_high']:,} copies | >= 0.95 "
        f"| {met(q['recall_high'] >= GOALS['recall_high'])} |",
        f"| recall, 0.7 <= J < 0.8 | {q['recall_between']:.4f} of {q['copies_between']:,} | >= 0.9 "
        f"| {met(q['recall_between'] >= GOALS['recall_between'])} |",
        f"| recall, J < 0.7 (no target) | {q['recall_below']:.4f} of {q['copies_below']:,} | - | - |",
        f"| stories joined to another's cluster | {q['false_joins']} ({q['false_joins_per_10k']:.2f} per 10,000) "
        f"| < 1 per 10,000 | {met(q['false_joins_per_10k'] < GOALS['false_joins_per_10k'])} |",
        f"| clusters in more than one split | {q['clusters_across_splits']} | 0 "
        f"| {met(q['clusters_across_splits'] == 0)} |",
        f"| ETL CPU per record, with / without clusters | {c['cpu_ratio']:.2f}x ({c['cpu_s_per_10k']:.2f} / "
        f"{c['base_cpu_s_per_10k']:.2f} CPU-s per 10k) | <= 1.5x | {met(c['cpu_ratio'] <= GOALS['cpu_ratio'])} |",
        f"| ETL marginal rate, with / without | {c['rate']:,.0f} / {c['base_rate']:,.0f} rec/s | - | - |",
        f"| band keys in the read task; assignment on the driver | {q['band_keys_us']:.0f} µs; "
        f"{q['assign_us']:.0f} µs an article (one process) | - | - |",
        f"| index on the driver; band keys on disk | {q['index_bytes_per_article']:.0f} B; "
        f"{q['disk_bytes_per_article']:.0f} B an article | - | - |",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=20_000)
    parser.add_argument("--records", type=int, nargs=2, default=(20_000, 60_000))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-near-dup-"))
    results = {"quality": quality(args.stories), "cost": cost(tuple(args.records), args.repeats, work)}
    (Path(args.out) / "near_dup.json").write_text(json.dumps(results, indent=1))
    publish(to_markdown(results), args.out, "near_dup.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
