"""populate's throughput against a bare PutRecords loop, side by side on one endpoint.

The bare loop sends records generated beforehand (the same seed, so the same sizes) in batches
of 500 with no retry or pacing: the most the endpoint takes from one writer. populate is timed
as it runs, generation included. Runs alternate (bare, populate, bare, ...) on fresh streams so
that drift on a noisy machine hits both alike; the ratio is of the medians.

    python -m bench.bench_populate [--records 20000] [--repeats 5] [--shards 4] [--emulator moto]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from news_populate.articles import generate_records
from news_populate.cli import Settings, populate
from news_populate.producer import batches
from tests.support.emulators import start_localstack, start_moto

UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
BAD_RATIO = DUP_RATIO = 0.05


def new_stream(client, shards: int) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    return name


def bare_loop(client, stream: str, records) -> float:
    started = time.perf_counter()
    for batch in batches(records):
        response = client.put_records(
            StreamName=stream, Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in batch]
        )
        if response["FailedRecordCount"]:
            raise RuntimeError("the endpoint rejected records; the bare loop does not retry")
    return len(records) / (time.perf_counter() - started)


def populate_run(client, stream: str, count: int, seed: int) -> float:
    settings = Settings(stream, 1, count, 0.0, seed, BAD_RATIO, DUP_RATIO, UNTIL)
    started = time.perf_counter()
    stats = populate(settings, client)
    assert stats.accepted == count
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--emulator", choices=("moto", "localstack"), default="moto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    records = list(generate_records(args.records, seed=1, until=UNTIL, bad_ratio=BAD_RATIO, dup_ratio=DUP_RATIO))
    mean_bytes = statistics.mean(len(r.data) for r in records)
    start = start_moto if args.emulator == "moto" else start_localstack
    emulator = start(Path(tempfile.mkdtemp(prefix="bench-")))
    try:
        client = emulator.client("kinesis")
        bare, pop = [], []
        for repeat in range(args.repeats):
            bare.append(bare_loop(client, new_stream(client, args.shards), records))
            pop.append(populate_run(client, new_stream(client, args.shards), args.records, seed=1))
            print(f"  run {repeat + 1}: bare {bare[-1]:7.0f} rec/s   populate {pop[-1]:7.0f} rec/s", flush=True)
    finally:
        emulator.stop()

    ratio = statistics.median(pop) / statistics.median(bare)
    pairwise = statistics.median(p / b for p, b in zip(pop, bare, strict=True))
    print(
        f"\npopulate vs bare PutRecords loop ({args.emulator}, {args.shards} shards, {args.records} records "
        f"of {mean_bytes:.0f} B mean, {args.repeats} alternating runs)\n"
        f"  bare PutRecords loop  median {statistics.median(bare):7.0f} rec/s\n"
        f"  populate              median {statistics.median(pop):7.0f} rec/s\n"
        f"  ratio of medians      {ratio:.2f}x   (median of pairwise ratios {pairwise:.2f}x; goal >= 0.90x)"
    )


if __name__ == "__main__":
    main()
