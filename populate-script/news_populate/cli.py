"""Writes fake news articles (plus chosen shares of invalid, duplicate and near-duplicate records) to Kinesis.

The command line (``python -m news_populate``) for the ``populate`` container and for the host:

    python -m news_populate --stream news --shards 2 --count 1000 --seed 3
    python -m news_populate --stream news --count 5000 --aggregate 100 --bad-ratio 0.02   # KPL aggregates

Every flag falls back to an environment variable (see ``--help``). AWS credentials, endpoint and
region come from the standard chain, ``AWS_ENDPOINT_URL`` and ``AWS_REGION``: nothing is
configured in code, so the same command runs against LocalStack, moto or AWS.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from news_populate.aggregation import CORRUPT_AGGREGATE, Aggregate, generate_aggregates
from news_populate.articles import BAD_KINDS, Record, RecordKind, generate_records
from news_populate.producer import (
    Pacer,
    PutRecordsError,
    PutStats,
    batches,
    ensure_stream,
    generate_in_background,
    paced_batch_size,
    put_batch,
)

log = logging.getLogger("populate")

PROGRESS_INTERVAL_S = 5.0
MAX_SHARDS = 500


@dataclass(frozen=True)
class Settings:
    """What one run writes, validated."""

    stream: str
    shards: int
    count: int
    rate: float
    seed: int
    bad_ratio: float
    dup_ratio: float
    until: datetime
    aggregate: int = 0  # user records per KPL aggregate at most; 0: one Kinesis record each
    near_dup_ratio: float = 0.0  # share of near-duplicates (syndicated copies) of earlier articles


@dataclass
class RunStats(PutStats):
    """``PutStats`` counts Kinesis records; this adds the user records they held (with --aggregate,
    the aggregates' records; without, the Kinesis records themselves)."""

    records: Counter = field(default_factory=Counter)  # user records put, by kind
    in_corrupt: int = 0  # user records inside corrupt aggregates

    def count_user_records(self, batch: list[Record] | list[Aggregate]) -> None:
        """Count the user records of a batch ``put_batch`` has put (it puts all of them or raises)."""
        for item in batch:
            if isinstance(item, Aggregate):
                self.records.update(record.kind for record in item.records)
                self.in_corrupt += len(item.records) if item.corruption else 0
            else:
                self.records[item.kind] += 1

    @property
    def user_records(self) -> int:
        return self.records.total()


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _iso_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def environment_value(name: str, default: str | None = None) -> str | None:
    """``name``'s value; an empty one counts as unset, as compose's ``${NAME:-}`` passes it."""
    return os.environ.get(name) or default


def build_parser() -> argparse.ArgumentParser:
    env = environment_value
    parser = _OneLineParser(prog="populate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", default=env("STREAM_NAME"), help="Kinesis stream name (env STREAM_NAME)")
    parser.add_argument(
        "--shards", type=int, default=env("SHARD_COUNT", "2"),
        help="shards for a stream that does not exist yet; an existing one is used as it is (env SHARD_COUNT, 2)",
    )  # fmt: skip
    parser.add_argument(
        "--count", type=int, default=env("RECORD_COUNT", "1000"),
        help="user records to put, invalid and duplicate ones included (env RECORD_COUNT, 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=env("PUT_RATE", "0"),
        help="user records per second, 0 = as fast as the stream accepts (env PUT_RATE, 0)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=env("SEED"),
        help="the same seed gives byte-identical records (env SEED; random when unset, and logged)",
    )  # fmt: skip
    parser.add_argument(
        "--bad-ratio", type=float, default=env("BAD_RATIO", "0"),
        help="share of deliberately invalid records, and with --aggregate of corrupt aggregates (env BAD_RATIO, 0)",
    )  # fmt: skip
    parser.add_argument(
        "--dup-ratio", type=float, default=env("DUP_RATIO", "0"),
        help="share of exact re-sends of earlier articles (env DUP_RATIO, 0)",
    )  # fmt: skip
    parser.add_argument(
        "--near-dup-ratio", type=float, default=env("NEAR_DUP_RATIO", "0"),
        help="share of near-duplicates: an earlier article's story under a new id, outlet and headline, "
        "lightly edited (env NEAR_DUP_RATIO, 0)",
    )  # fmt: skip
    parser.add_argument(
        "--until", type=_iso_utc, default=env("PUBLISHED_UNTIL"),
        help="articles are published in the 7 days before this ISO-8601 time "
        "(env PUBLISHED_UNTIL; default: the start of the current UTC hour)",
    )  # fmt: skip
    parser.add_argument(
        "--aggregate", type=int, default=env("AGGREGATE", "0"),
        help="pack up to N user records into each Kinesis record, in the KPL aggregation format "
        "(within 1 MiB); 0 = one Kinesis record each (env AGGREGATE, 0)",
    )  # fmt: skip
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from flags and environment; exits with a one-line message on a bad value."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.stream:
        parser.error("--stream (or STREAM_NAME) is required")
    if not 1 <= args.shards <= MAX_SHARDS:
        parser.error(f"--shards must be between 1 and {MAX_SHARDS}, got {args.shards}")
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.rate < 0:
        parser.error(f"--rate must be 0 or more, got {args.rate}")
    ratios = {"--bad-ratio": args.bad_ratio, "--dup-ratio": args.dup_ratio, "--near-dup-ratio": args.near_dup_ratio}
    for flag, value in ratios.items():
        if not 0 <= value <= 1:
            parser.error(f"{flag} must be between 0 and 1, got {value}")
    if (args.dup_ratio or args.near_dup_ratio) and sum(ratios.values()) >= 1:
        parser.error(
            "--bad-ratio plus --dup-ratio plus --near-dup-ratio must be below 1: "
            "duplicates and near-duplicates repeat valid articles"
        )
    if args.aggregate < 0:
        parser.error(f"--aggregate must be 0 (off) or at least 1, got {args.aggregate}")
    until = args.until or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    return Settings(
        args.stream, args.shards, args.count, args.rate, seed, args.bad_ratio, args.dup_ratio, until,
        aggregate=args.aggregate, near_dup_ratio=args.near_dup_ratio,
    )  # fmt: skip


def kinesis_client():
    """A Kinesis client from the standard AWS chain; botocore retries throttled calls."""
    config = Config(retries={"mode": "standard", "max_attempts": 10}, connect_timeout=5, read_timeout=30)
    return boto3.client("kinesis", region_name=os.environ.get("AWS_REGION"), config=config)


def record_batches(settings: Settings, batch_size: int) -> Iterator[list[Record]] | Iterator[list[Aggregate]]:
    """The run's Kinesis records (user records, or with --aggregate their aggregates), grouped into
    PutRecords requests."""
    mix = {
        "seed": settings.seed,
        "until": settings.until,
        "bad_ratio": settings.bad_ratio,
        "dup_ratio": settings.dup_ratio,
        "near_dup_ratio": settings.near_dup_ratio,
    }
    if settings.aggregate:
        return batches(generate_aggregates(settings.count, settings.aggregate, **mix), batch_size)
    return batches(generate_records(settings.count, **mix), batch_size)


def kinesis_batch_size(settings: Settings) -> int:
    """Kinesis records per PutRecords call; ``--rate`` counts user records, an aggregate holds many."""
    return paced_batch_size(settings.rate / max(1, settings.aggregate))


def populate(settings: Settings, client) -> RunStats:
    """Put ``settings.count`` user records into the stream, creating it if needed."""
    generated = generate_in_background(partial(record_batches, settings, kinesis_batch_size(settings)))
    shards = ensure_stream(client, settings.stream, settings.shards)
    log.info(
        "putting %d records into %s (%d shards), seed %d, articles published before %s",
        settings.count, settings.stream, shards, settings.seed, settings.until.isoformat(),
    )  # fmt: skip
    stats = RunStats()
    pacer = Pacer(settings.rate)
    started = last_report = time.monotonic()
    for batch in generated:
        pacer.wait(stats.user_records)
        put_batch(client, settings.stream, batch, stats)
        stats.count_user_records(batch)
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL_S:
            last_report = now
            log.info(
                "put %d/%d records (%.0f%%), %.0f rec/s",
                stats.user_records, settings.count, 100 * stats.user_records / settings.count,
                stats.user_records / (now - started),
            )  # fmt: skip
    return stats


def summary_line(settings: Settings, stats: RunStats, elapsed: float) -> str:
    """The run in one line; counts are of user records (those in corrupt aggregates included).
    ``valid`` counts distinct articles, near-duplicates included (each has an id of its own, so each
    is an enriched row); with --near-dup-ratio a clause counts them. With --aggregate a last clause
    counts the aggregates (``retried`` and MB are about them)."""
    kinds = stats.records
    near_duplicates, invalid = kinds[RecordKind.NEAR_DUPLICATE], sum(kinds[kind] for kind in BAD_KINDS)
    line = (
        f"populate: accepted {stats.user_records}/{settings.count} records into {settings.stream} "
        f"({kinds[RecordKind.VALID] + near_duplicates} valid, {invalid} invalid, "
        f"{kinds[RecordKind.DUPLICATE]} duplicates), "
        f"failed {settings.count - stats.user_records}, retried {stats.retried}, "
        f"{stats.bytes / 1e6:.2f} MB, {elapsed:.2f} s, {stats.user_records / max(elapsed, 1e-9):.0f} rec/s, "
        f"seed {settings.seed}"
    )
    if settings.near_dup_ratio:
        line += f", {near_duplicates} of the valid are near-duplicates"
    if settings.aggregate:
        line += (
            f", in {stats.accepted} KPL aggregates of up to {settings.aggregate} "
            f"({stats.kinds[CORRUPT_AGGREGATE]} corrupt, holding {stats.in_corrupt} records)"
        )
    return line


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    settings = parse_settings(argv)
    started = time.monotonic()
    try:
        stats = populate(settings, kinesis_client())
    except (PutRecordsError, ClientError, BotoCoreError, ValueError) as error:
        print(f"populate: error: {error}", file=sys.stderr)
        return 1
    print(summary_line(settings, stats, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
