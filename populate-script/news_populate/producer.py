"""Puts records into a Kinesis stream with PutRecords: batching, partial-failure retry, pacing.

Whole-call failures (throttling, connection errors, 5xx) are retried by botocore's ``standard``
retry mode. PutRecords can also succeed as a call while rejecting some of its entries
(``FailedRecordCount > 0``); botocore does not retry those, so ``put_batch`` re-sends only the
rejected entries, with capped exponential backoff and full jitter. A record counts as sent only
once Kinesis has accepted it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from queue import Empty

from news_populate.articles import Record

log = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500  # PutRecords API limits
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_BYTES_PER_RECORD = 1024 * 1024  # data plus partition key
PUT_ATTEMPTS = 8  # for the entries of one batch that Kinesis rejected
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.05, 2.0
STREAM_WAIT_DELAY_S, STREAM_WAIT_ATTEMPTS = 1, 120
READ_AHEAD_BATCHES = 4


class PutRecordsError(RuntimeError):
    """Kinesis kept rejecting records after every retry."""


@dataclass
class PutStats:
    """What a run has sent so far."""

    accepted: int = 0
    bytes: int = 0
    retried: int = 0  # rejected entries that were re-sent
    calls: int = 0
    kinds: Counter = field(default_factory=Counter)


def record_size(record: Record) -> int:
    return len(record.data) + len(record.partition_key.encode())


def batches(records: Iterable[Record], max_records: int = MAX_RECORDS_PER_CALL) -> Iterator[list[Record]]:
    """Group records into PutRecords requests within the API's count and size limits.

    Raises:
        ValueError: for a record larger than Kinesis accepts.
    """
    batch: list[Record] = []
    size = 0
    for record in records:
        record_bytes = record_size(record)
        if record_bytes > MAX_BYTES_PER_RECORD:
            raise ValueError(f"record of {record_bytes} bytes exceeds the {MAX_BYTES_PER_RECORD}-byte limit")
        if batch and (len(batch) == max_records or size + record_bytes > MAX_BYTES_PER_CALL):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record_bytes
    if batch:
        yield batch


def _generate_into(queue, make_batches: Callable[[], Iterable[list[Record]]]) -> None:
    try:
        for batch in make_batches():
            queue.put(batch)
        queue.put(None)
    except Exception as error:  # handed to the parent, which raises it
        queue.put(error)


def generate_in_background(make_batches: Callable[[], Iterable[list[Record]]]) -> Iterator[list[Record]]:
    """Start making the batches of ``make_batches()`` in a child process; iterate to get them.

    Making articles costs about as much CPU per record as sending them (about 60 us each,
    measured on moto), and both need the GIL, so a thread could not overlap them: the sender
    went at 0.75x of a bare PutRecords loop. A process runs them on separate cores.
    The child starts at once, so its warm-up overlaps whatever the caller does next.

    Raises (while iterating):
        Whatever ``make_batches`` raised in the child; RuntimeError if the child died.
    """
    # fork: the child starts in milliseconds with Faker already imported (spawn re-imports
    # everything, about 0.5 s). Safe here: the child runs pure Python, no sockets or threads.
    context = multiprocessing.get_context("fork")
    queue = context.Queue(maxsize=READ_AHEAD_BATCHES)
    child = context.Process(target=_generate_into, args=(queue, make_batches), name="generator", daemon=True)
    child.start()
    return _receive(queue, child)


def _receive(queue, child) -> Iterator[list[Record]]:
    try:
        while True:
            try:
                item = queue.get(timeout=1)
            except Empty:
                if not child.is_alive():
                    raise RuntimeError(f"the record generator exited with code {child.exitcode}") from None
                continue
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        child.kill()
        child.join()


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def put_batch(
    client,
    stream: str,
    batch: list[Record],
    stats: PutStats,
    *,
    attempts: int = PUT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> None:
    """Put one batch, re-sending only rejected entries until all are accepted.

    Raises:
        PutRecordsError: if entries are still rejected after ``attempts`` calls.
    """
    rng = rng or random.Random()
    pending = batch
    for attempt in range(attempts):
        response = client.put_records(
            StreamName=stream,
            Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
        )
        stats.calls += 1
        results = response["Records"]
        rejected = [(r, res["ErrorCode"]) for r, res in zip(pending, results, strict=True) if "ErrorCode" in res]
        for record, result in zip(pending, results, strict=True):
            if "ErrorCode" not in result:
                stats.accepted += 1
                stats.bytes += len(record.data)
                stats.kinds[record.kind] += 1
        if not rejected:
            return
        stats.retried += len(rejected)
        pending = [r for r, _ in rejected]
        log.debug("%d of %d entries rejected (%s); retrying", len(rejected), len(results), rejected[0][1])
        if attempt + 1 < attempts:
            sleep(backoff_seconds(attempt, rng))
    codes = Counter(code for _, code in rejected)
    raise PutRecordsError(
        f"{len(pending)} records still rejected by stream {stream!r} after {attempts} attempts: {dict(codes)}"
    )


def paced_batch_size(rate: float) -> int:
    """Records per PutRecords call: a quarter second's worth at ``rate`` keeps a paced stream smooth."""
    if not rate:
        return MAX_RECORDS_PER_CALL
    return max(1, min(MAX_RECORDS_PER_CALL, int(rate / 4)))


class Pacer:
    """Holds a sender to ``rate`` records per second on average (0 means no limit)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, sleep=time.sleep) -> None:
        self._rate = rate
        self._clock, self._sleep = clock, sleep
        self._start = clock()

    def wait(self, sent: int) -> None:
        if self._rate:
            ahead = self._start + sent / self._rate - self._clock()
            if ahead > 0:
                self._sleep(ahead)


def ensure_stream(client, stream: str, shards: int) -> int:
    """Create ``stream`` with ``shards`` shards unless it exists; wait until it is ACTIVE.

    Returns:
        The number of open shards of the stream as it is.
    """
    try:
        client.describe_stream_summary(StreamName=stream)
    except client.exceptions.ResourceNotFoundException:
        log.info("creating stream %s with %d shards", stream, shards)
        with contextlib.suppress(client.exceptions.ResourceInUseException):  # created concurrently: use it
            client.create_stream(StreamName=stream, ShardCount=shards)
    client.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": STREAM_WAIT_DELAY_S, "MaxAttempts": STREAM_WAIT_ATTEMPTS}
    )
    summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    return summary["OpenShardCount"]
