"""The driver side of the Kinesis source: the data source, and the planner of micro-batches.

``latestOffset`` plans each batch (its shards, where each starts, its cut-off time and record
limit) without reading payloads: it lists the shards and asks each, with GetRecords(Limit=1),
whether anything is new. ``partitions`` turns the plan into one ``ShardPartition`` per readable
shard; the read tasks (``reader``) run on the executors. The planner holds only plain options,
because Spark pickles it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxBytes,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

from news_etl.aws import kinesis_client
from news_etl.kinesis.offsets import ShardPartition, positions_after, readable_shards
from news_etl.kinesis.options import LATEST, TRIM_HORIZON, ReaderOptions, load_decoder, parse_timestamp
from news_etl.kinesis.reader import SCHEMA, ShardReader, arrived_after, read_shard
from news_etl.kinesis.shard_ends import ShardEnd, ShardEndStore, TrimmedGap, TrimmedRecordsError

PROBE_PAGES = 20  # empty GetRecords pages a probe follows before deciding a shard has nothing new


class KinesisDataSource(DataSource):
    """``spark.readStream.format("kinesis")``: see ``news_etl.kinesis``."""

    @classmethod
    def name(cls) -> str:
        return "kinesis"

    def schema(self) -> str:
        """The raw records' schema; with a decoder, the caller gives the decoded one (``.schema``)."""
        if self.options.get("decoder"):
            raise ValueError("option decoder needs the schema of the rows it returns: .schema(...)")
        return SCHEMA

    def streamReader(self, schema) -> KinesisStreamReader:  # noqa: N802 (Spark's API name)
        return KinesisStreamReader(ReaderOptions.parse(self.options))


class KinesisStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Plans micro-batches on the driver; holds only plain configuration (it is pickled)."""

    def __init__(self, options: ReaderOptions) -> None:
        self.options = options
        self.until: str | None = None

    def initialOffset(self) -> dict:  # noqa: N802
        """Before batch 0: nothing read, or where an earlier query's records end (``initialPositions``)."""
        shards = self.options.initial_positions
        return {"stream": self.options.stream, "batch": -1, "until": None, "max_records": 0, "shards": shards}

    def getDefaultReadLimit(self) -> ReadLimit:  # noqa: N802
        """Spark takes one limit; the read tasks enforce the byte budget either way (``max_bytes``)."""
        if self.options.max_records_per_batch:
            return ReadMaxRows(self.options.max_records_per_batch)
        if self.options.max_bytes_per_batch:
            return ReadMaxBytes(self.options.max_bytes_per_batch)
        return ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:  # noqa: N802
        self.until = datetime.now(UTC).isoformat()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:  # noqa: N802
        if start.get("stream") != self.options.stream:
            raise ValueError(
                f"the checkpoint belongs to stream {start.get('stream')!r}, not {self.options.stream!r}: "
                "use another checkpoint directory"
            )
        client = kinesis_client()
        # The batch's cut-off: records that arrive while it is read are left for the next one,
        # so a batch ends even while writers keep up with the reader. availableNow: one cut-off
        # for every batch of the run.
        until = self.until or datetime.now(UTC).isoformat()
        first = start["batch"] < 0
        previous = {} if first else ShardEndStore(self.options.metadata_path).load(start["batch"])
        shards = positions_after(start["shards"], previous)
        expired = self._add_new_shards(client, shards, first=first)
        # Spark runs batch 0 of a new query whatever this returns, so batch 0 is always planned
        # (which also pins a `latest` start). After that, nothing new means `start` unchanged, so
        # that Spark plans no batch: each Spark batch is one of ours, with the same number.
        # What changed here (new or finished shards) is found again next time.
        if not first and not self._anything_to_read(client, previous, shards, parse_timestamp(until)):
            return start
        self._report_expired(start["batch"] + 1, expired)
        readable = readable_shards(shards)
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else 0
        max_bytes = limit.max_bytes if isinstance(limit, ReadMaxBytes) else self.options.max_bytes_per_batch
        return {
            "stream": self.options.stream,
            "batch": start["batch"] + 1,
            "until": until,
            "max_records": per_shard(max_rows, readable),
            "max_bytes": per_shard(max_bytes, readable),
            "shards": shards,
        }

    def _add_new_shards(self, client, shards: dict[str, dict], *, first: bool) -> dict[str, dict]:
        """Add shards the stream has now but the offsets do not know (a new query, or resharding).

        Returns the unfinished shards that are gone from the stream (closed, and past retention),
        now marked done, with their positions.
        """
        initial: dict = {}  # a shard found later (or after resumed positions) starts at its trim horizon
        if first and not shards:  # a new query that does not resume: its starting position
            if self.options.starting_position == LATEST:
                initial = {"at_timestamp": datetime.now(UTC).isoformat()}  # pinned, so a replay is exact
            elif self.options.starting_position != TRIM_HORIZON:
                initial = {"at_timestamp": self.options.starting_position}
        listed = list_shards(client, self.options.stream)
        for shard in listed:
            if shard["ShardId"] in shards:
                continue
            parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]
            shards[shard["ShardId"]] = {**initial, "parents": parents}
        expired = {}
        for shard_id in set(shards) - {shard["ShardId"] for shard in listed}:
            if not shards[shard_id].get("done"):  # a closed shard past retention: nothing left to read
                expired[shard_id] = dict(shards[shard_id])
                shards[shard_id]["done"] = True
        return expired

    def _report_expired(self, batch: int, expired: dict[str, dict]) -> None:
        """Record expired shards' lost records with the batch, as its tasks record trimmed ones."""
        store = ShardEndStore(self.options.metadata_path)
        for shard_id, position in expired.items():
            gap = TrimmedGap(after=position.get("after"), shard_expired=True)
            if self.options.fail_on_trimmed:
                raise TrimmedRecordsError.of(self.options.stream, shard_id, gap)
            end = ShardEnd(last_sequence_number=None, records=0, finished=True, caught_up=True,
                           millis_behind_latest=0, trimmed=gap)  # fmt: skip
            store.put(batch, shard_id, end)

    def _anything_to_read(
        self, client, previous: dict[str, ShardEnd], shards: dict[str, dict], until: datetime
    ) -> bool:
        """Whether a batch would read something before ``until``; marks closed shards read to the end."""
        probed: set[str] = set()
        while True:
            pending = [s for s in readable_shards(shards) if s not in probed]
            if not pending:
                return False
            for shard_id in pending:
                end = previous.get(shard_id)
                if end is not None and not end.caught_up and not end.finished:
                    return True  # the last batch stopped at its limit: there is more
                probed.add(shard_id)
                reader = ShardReader(client, self.options.stream, shard_id, shards[shard_id])
                records = reader.next_records(1)
                for _ in range(PROBE_PAGES):  # GetRecords may answer empty pages short of the records
                    if records or reader.finished or reader.millis_behind_latest == 0:
                        break
                    records = reader.next_records(1)
                if records and not arrived_after(records[0], until):
                    return True
                if reader.finished and not records:
                    shards[shard_id]["done"] = True  # its children may be readable now

    def partitions(self, start: dict, end: dict) -> list[ShardPartition]:
        if end["batch"] == start["batch"]:
            return []
        ShardEndStore(self.options.metadata_path).put_offset(end["batch"], end)
        return [
            ShardPartition(
                stream=end["stream"],
                shard_id=shard_id,
                batch=end["batch"],
                position={k: v for k, v in end["shards"][shard_id].items() if k in ("after", "at_timestamp")},
                max_records=end["max_records"],
                max_bytes=end.get("max_bytes", 0),  # offsets written before the byte budget have none
                until=end["until"],
                metadata_path=self.options.metadata_path,
                fail_on_trimmed=self.options.fail_on_trimmed,
                decoder=self.options.decoder,
            )
            for shard_id in readable_shards(end["shards"])
        ]

    def read(self, partition: ShardPartition) -> Iterator[pa.RecordBatch]:
        batches = read_shard(kinesis_client(), partition, ShardEndStore(partition.metadata_path))
        if partition.decoder:
            batches = map(load_decoder(partition.decoder), batches)
        yield from batches

    def commit(self, end: dict) -> None:
        if end["batch"] > 0:
            ShardEndStore(self.options.metadata_path).forget_before(end["batch"])


def per_shard(limit: int, readable: list[str]) -> int:
    """A batch's limit shared out among its shards (0: none)."""
    return math.ceil(limit / len(readable)) if limit and readable else 0


def list_shards(client, stream: str) -> list[dict]:
    shards, token = [], None
    while True:
        response = client.list_shards(NextToken=token) if token else client.list_shards(StreamName=stream)
        shards.extend(response["Shards"])
        token = response.get("NextToken")
        if not token:
            return shards
