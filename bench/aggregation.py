"""KPL aggregates against plain records: the ETL on the same articles, aggregated and not.

    python -m bench.aggregation [--scale 1.0] [--repeats 3] [--per-aggregate 20] [--batch 10000]
                                [--out bench/results]                               (part of make bench)

On moto, 4 shards, two streams hold the SAME articles at each size (bench_etl's mix: populate's
generator, ~3.2 KB articles, 5% invalid, 5% repeats, the same seed): one plain, one with
PER_AGGREGATE articles packed into each Kinesis record in the KPL format
(``news_populate.aggregation.aggregate_records``, none of the aggregates corrupt, so the job sees
the same user records in both). Both are filled with bench_etl's bare PutRecords loop.

Why 20 to an aggregate: the KPL packs user records until the next would pass its
``AggregationMaxSize`` (51,200 bytes by default; ``AggregationMaxCount`` defaults to 2^32 - 1,
so size decides), which for ~3.2 KB articles is about 15. 20 (aggregates of about 66 KB, far
below the 1 MiB record limit) is the KPL's order of magnitude and splits a batch of BATCH
articles evenly: 125 aggregates a shard.

Then, alternately at each size (the order swaps every repeat), for each stream: the raw drain
(bench/drain.py, which counts Kinesis records and does not decode them) and
``python -m news_etl --once --master local[2]``. Batches hold BATCH articles in both:
``--max-records-per-batch`` counts Kinesis records, so the aggregated stream gets
BATCH / PER_AGGREGATE. The job's batch lines (``batch N: read R, ...``) count user records (rows).

Derived, per stream, from the medians over the repeats: the marginal CPU-s per 10k articles
(the extra CPU of the big size over the small, so start-up is left out), the marginal rate,
the ETL's batch rate at the big size, and the drain's rates; then aggregated / plain. Last, with
no emulator, the read task's decode of one page alone (``decode_figures``): what de-aggregation
itself costs an article. Prints a table and writes ``aggregation.json`` and ``aggregation.md``.
About 11 minutes at the defaults on 2 cores (8 at ``--scale 0.5``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import timeit
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_etl import UNTIL, Bench, machine, marginal
from bench.bench_populate import BAD_RATIO, DUP_RATIO
from bench.report import publish
from news_etl.kinesis.aggregation import user_records
from news_etl.kinesis.reader import records_to_batches
from news_populate.aggregation import aggregate_records
from news_populate.articles import generate_records
from tests.support.emulators import start_moto

EMULATOR, SHARDS = "moto", 4
SIZES = (20_000, 60_000)  # articles
PER_AGGREGATE = 20
BATCH = 10_000  # articles a batch in both streams: 2,500 a shard, 125 aggregates of 20
STREAMS = {"plain": 1, "aggregated": None}  # None: --per-aggregate
MEMORY = ("total", "jvm", "python workers")  # peak RSS by process kind (bench/measure.py)
PAGE, ROUNDS = 2_500, 21  # the decode micro-benchmark: a shard's share of a batch as one GetRecords page


def decode_figures(per_aggregate: int) -> dict:
    """The read task's own work on one GetRecords page, in µs per article (median of ROUNDS):
    ``records_to_batches`` on plain records and on the same articles aggregated, and ``user_records``
    (MD5 and protobuf) alone. No emulator: this is the part of the difference that is decoding."""
    articles = list(generate_records(PAGE, seed=PAGE, until=UNTIL, bad_ratio=BAD_RATIO, dup_ratio=DUP_RATIO))
    aggregates = list(aggregate_records(articles, PAGE, per_aggregate, seed=PAGE))
    arrival = datetime.now(UTC)
    plain_page, aggregated_page = (
        [{"SequenceNumber": str(number), "PartitionKey": record.partition_key, "ApproximateArrivalTimestamp": arrival,
          "Data": record.data} for number, record in enumerate(records)]
        for records in (articles, aggregates)
    )  # fmt: skip

    def per_article(work) -> float:
        return statistics.median(timeit.repeat(work, number=1, repeat=ROUNDS)) / PAGE * 1e6

    return {
        "page": PAGE,
        "plain_us": per_article(lambda: list(records_to_batches("shard", plain_page))),
        "aggregated_us": per_article(lambda: list(records_to_batches("shard", aggregated_page))),
        "user_records_us": per_article(lambda: [user_records(aggregate.data) for aggregate in aggregates]),
    }


def measure(bench: Bench, sizes: tuple[int, int], per_aggregate: int, batch: int, repeats: int) -> None:
    """The drain and the ETL on each stream at each size, alternately; the order swaps every repeat."""
    for repeat in range(repeats):
        order = (1, per_aggregate) if repeat % 2 == 0 else (per_aggregate, 1)
        for records in sizes:
            for stream_per_aggregate in order:
                bench.drain(EMULATOR, SHARDS, records, repeat, per_aggregate=stream_per_aggregate)
                bench.etl(EMULATOR, SHARDS, records, repeat, per_aggregate=stream_per_aggregate, batch=batch)


def stream_figures(bench: Bench, sizes: tuple[int, int], per_aggregate: int) -> dict:
    """One stream's derived figures: marginal ETL and drain, the ETL's batch rate, the drain's Kinesis rate."""
    small, big = sizes
    big_etl, big_drain = (bench.find(tool, EMULATOR, SHARDS, big, per_aggregate) for tool in ("etl", "drain"))
    kinesis = {n: bench.kinesis_records[bench.streams[(EMULATOR, SHARDS, n, per_aggregate)]] for n in sizes}
    drain_rate = statistics.median(run.rate for run in big_drain)
    return {
        "per_aggregate": per_aggregate,
        "kinesis_records": [kinesis[n] for n in sizes],
        "etl": marginal(bench, "etl", EMULATOR, SHARDS, small, big, per_aggregate),
        "etl_batch_rate": statistics.median(run.rate for run in big_etl if run.rate),
        "drain": marginal(bench, "drain", EMULATOR, SHARDS, small, big, per_aggregate),
        "drain_rate": drain_rate,
        "drain_kinesis_rate": drain_rate * kinesis[big] / big,
    }


def summarise(bench: Bench, sizes: tuple[int, int], per_aggregate: int, batch: int, repeats: int) -> dict:
    streams = {name: stream_figures(bench, sizes, n or per_aggregate) for name, n in STREAMS.items()}
    plain, aggregated = streams["plain"], streams["aggregated"]
    ratios = {
        "etl_cpu_s_per_10k": aggregated["etl"]["cpu_s_per_10k"] / plain["etl"]["cpu_s_per_10k"],
        "etl_marginal_rate": aggregated["etl"]["rate"] / plain["etl"]["rate"],
        "etl_batch_rate": aggregated["etl_batch_rate"] / plain["etl_batch_rate"],
        "drain_cpu_s_per_10k": aggregated["drain"]["cpu_s_per_10k"] / plain["drain"]["cpu_s_per_10k"],
        "drain_rate": aggregated["drain_rate"] / plain["drain_rate"],
    }
    runs = [{**asdict(run), "kinesis_records": bench.kinesis_records[bench.streams[(EMULATOR, SHARDS, run.records,
                                                                                    run.per_aggregate)]]}
            for run in bench.runs]  # fmt: skip
    return {"emulator": EMULATOR, "shards": SHARDS, "sizes": list(sizes), "per_aggregate": per_aggregate,
            "batch": batch, "repeats": repeats, "streams": streams, "ratios": ratios,
            "decode": decode_figures(per_aggregate), "runs": runs}  # fmt: skip


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _run_row(run: dict) -> str:
    stream = "plain" if run["per_aggregate"] == 1 else f"aggregated ({run['per_aggregate']})"
    rate = f"{run['rate']:,.0f}" if run["rate"] else "-"
    return _row([stream, run["tool"], f"{run['records']:,}", f"{run['kinesis_records']:,}", str(run["repeat"]),
                 f"{run['wall_s']:.1f}", f"{run['cpu_s']:.1f}", rate,
                 " / ".join(f"{run['peak_rss'].get(kind, 0) / 2**20:,.0f}" for kind in MEMORY)])  # fmt: skip


def _stream_row(name: str, s: dict) -> str:
    return _row([name, f"{s['etl']['cpu_s_per_10k']:.2f}", f"{s['etl']['rate']:,.0f}", f"{s['etl_batch_rate']:,.0f}",
                 f"{s['drain']['cpu_s_per_10k']:.2f}", f"{s['drain_rate']:,.0f}",
                 f"{s['drain_kinesis_rate']:,.0f}"])  # fmt: skip


def to_markdown(results: dict) -> str:
    small, big = results["sizes"]
    ratios, decode = results["ratios"], results["decode"]
    ratio_keys = ("etl_cpu_s_per_10k", "etl_marginal_rate", "etl_batch_rate", "drain_cpu_s_per_10k", "drain_rate")
    return "\n".join([
        f"{EMULATOR}, {SHARDS} shards: the same {small:,} and {big:,} articles, plain and "
        f"{results['per_aggregate']} to a KPL aggregate; ETL batches of {results['batch']:,} articles; "
        f"{results['repeats']} alternating repeats, medians. Rates count articles (user records) a second: "
        "the drain's, the articles its Kinesis records carry; the ETL's rows, its batch rate.",
        "",
        "| stream | tool | articles | Kinesis records | repeat | wall (s) | CPU (s) | rate (articles/s) "
        "| peak RSS MiB: total / JVM / Python workers |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(_run_row(run) for run in results["runs"]),
        "",
        f"| {small:,} -> {big:,} articles | ETL CPU-s / 10k articles | ETL marginal rate | ETL batch rate "
        "| drain CPU-s / 10k articles | drain (articles/s) | drain (Kinesis records/s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(_stream_row(name, s) for name, s in results["streams"].items()),
        _row(["aggregated / plain", *(f"{ratios[key]:.2f}x" for key in ratio_keys), ""]),
        "",
        f"The read task's decode alone, one page of {decode['page']:,} articles (`records_to_batches`, median of "
        f"{ROUNDS}): plain {decode['plain_us']:.1f} µs an article, aggregated {decode['aggregated_us']:.1f} µs, of "
        f"which `user_records` (MD5 and protobuf) {decode['user_records_us']:.1f} µs.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply both sizes (0.5 for a shorter run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-aggregate", type=int, default=PER_AGGREGATE, help="articles to a KPL aggregate")
    parser.add_argument("--batch", type=int, default=BATCH, help="articles an ETL batch, in both streams")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    if args.per_aggregate < 2 or args.batch % args.per_aggregate:
        raise ValueError("--per-aggregate must be at least 2 and divide --batch")
    logging.basicConfig(level=logging.WARNING)
    small, big = sizes = tuple(int(n * args.scale) for n in SIZES)
    if not 0 < small < big or big < 2 * args.batch:
        raise ValueError(f"sizes {sizes}: two to compare, the bigger of at least two batches (for a batch rate)")
    work = Path(tempfile.mkdtemp(prefix="bench-aggregation-"))
    started = time.monotonic()
    emulator = start_moto(work)
    try:
        bench = Bench({EMULATOR: emulator}, work)
        measure(bench, sizes, args.per_aggregate, args.batch, args.repeats)
    finally:
        emulator.stop()
    results = summarise(bench, sizes, args.per_aggregate, args.batch, args.repeats)
    results["machine"] = machine()
    results["seconds"] = round(time.monotonic() - started)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "aggregation.json").write_text(json.dumps(results, indent=1))
    publish(to_markdown(results), args.out, "aggregation.md")
    print(f"took {results['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
