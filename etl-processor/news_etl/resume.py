"""The tables as the record of what the job has read: where a query without Spark's checkpoint starts.

Each batch's commit to the enriched table records where the batch left each shard (``batch_record``:
the source's offset after the batch, the stream's name and creation time; the commit also has the
run id and the batch id). A batch commits to quarantine first, then to enriched, and to enriched
even when it has no valid article (``table.commit_batch``), so the enriched table's latest such
commit says where the records both tables hold end.

When the job starts, ``check_start`` compares the checkpoint with the tables:

- Spark's part of the checkpoint has no batch (a new checkpoint, or ``spark/`` deleted): the query
  starts where the tables' latest record for this stream says, under a new run id, so that
  nothing a commit holds is read again and nothing after it is skipped; with no record, at
  ``--starting-position``. The dedup state, which lived in Spark's checkpoint, is stood in for by
  the keys the tables held at that moment (``load_seed``) for one dedup horizon.
- Spark's part has batches, and the tables' latest record is this checkpoint's (or the one it
  started from): Spark's own recovery, whose replays commit nothing twice (``news_etl.table``).
- Otherwise another checkpoint wrote to the tables after this one did: going on would read its
  records again, so the job refuses in one line.

Plain Parquet output records nothing to start from: a query without Spark's checkpoint is refused
when the folders hold output.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from news_etl import checkpoint_files
from news_etl.aws import folder_has_objects
from news_etl.kinesis import ShardEndStore
from news_etl.schemas import ENRICHED, QUARANTINED
from news_etl.settings import PARQUET, ConfigurationError, Settings
from news_etl.state import RunState, save_state
from news_etl.table import open_table

log = logging.getLogger("etl.resume")

STREAM, STREAM_CREATED, POSITIONS = "news_etl.stream", "news_etl.stream_created", "news_etl.positions"
# How far back the enriched table's history is searched for this stream's latest record: each
# batch of the job makes a version with one, so only compactions or other streams' jobs writing
# to the same bucket come between.
HISTORY_DEPTHS = (50, 1000)


def batch_record(settings: Settings, stream_created: str, positions: dict) -> dict[str, str]:
    """What a batch's commit to enriched records besides its run and batch ids (``table.commit_batch``)."""
    return {STREAM: settings.stream, STREAM_CREATED: stream_created, POSITIONS: json.dumps(positions)}


@dataclass(frozen=True)
class TableRecord:
    """The latest batch the enriched table holds for a stream, and where it left each shard."""

    run_id: str
    batch_id: int
    positions: dict  # as an offset's "shards" hold them (``kinesis.offsets``)
    version: int  # the enriched table's version that committed it


def _history(bucket: str):
    """The enriched table's commits, newest first, as far back as ``HISTORY_DEPTHS`` go."""
    table = open_table(bucket, ENRICHED)
    seen = 0
    for depth in HISTORY_DEPTHS:
        history = table.history(depth)
        yield from history[seen:]
        if len(history) < depth:
            return
        seen = len(history)


def _is_record_of(commit: dict, stream: str, stream_created: str) -> bool:
    created = commit.get(STREAM_CREATED)
    return commit.get(STREAM) == stream and created is not None and \
        datetime.fromisoformat(created) == datetime.fromisoformat(stream_created)  # fmt: skip


def _record(commit: dict) -> TableRecord:
    return TableRecord(run_id=commit["news_etl.run_id"], batch_id=int(commit["news_etl.batch_id"]),
                       positions=json.loads(commit[POSITIONS]), version=commit["version"])  # fmt: skip


def latest_record(bucket: str, stream: str, stream_created: str) -> TableRecord | None:
    """The enriched table's latest record for this stream (by name and creation time), if any."""
    return next((_record(c) for c in _history(bucket) if _is_record_of(c, stream, stream_created)), None)


def spark_has_batches(settings: Settings) -> bool:
    """Whether Spark's part of the checkpoint has logged a batch (its ``offsets/`` folder)."""
    filesystem, root = checkpoint_files.filesystem(settings.checkpoint)
    logged = filesystem.get_file_info(pafs.FileSelector(f"{root}/spark/offsets", allow_not_found=True))
    return any(info.base_name.isdigit() for info in logged)


def check_start(settings: Settings, state: RunState) -> None:
    """Compare the checkpoint with the tables. Where Spark's checkpoint has no batch, start again
    where the tables' records end (``state.resumed_from``, whose positions the query is given).

    Raises ``ConfigurationError`` where going on would read again what the tables hold.
    """
    if spark_has_batches(settings):
        _check_still_the_writer(settings, state)
    elif state.output_format == PARQUET:
        _refuse_parquet_without_spark(settings)
    else:
        record = latest_record(settings.bucket, settings.stream, state.stream_created)
        _start_again(settings, state, record)
        if record is not None:
            log.info("Spark's checkpoint has no batch: starting where the tables' records end (run %s, batch %d, "
                     "version %d)", record.run_id, record.batch_id, record.version)  # fmt: skip


def _check_still_the_writer(settings: Settings, state: RunState) -> None:
    if state.output_format == PARQUET:
        return
    record = latest_record(settings.bucket, settings.stream, state.stream_created)
    started_from = state.resumed_from.get("run_id"), state.resumed_from.get("batch_id")
    if record is None or record.run_id == state.run_id or (record.run_id, record.batch_id) == started_from:
        return
    raise ConfigurationError(
        f"the tables in s3://{settings.bucket} were written by another checkpoint after this one (run "
        f"{record.run_id}, batch {record.batch_id}, enriched version {record.version}): going on would read its "
        f"records again; delete {settings.checkpoint}/spark to start where the tables' records end"
    )


def _refuse_parquet_without_spark(settings: Settings) -> None:
    for kind in (ENRICHED, QUARANTINED):
        if folder_has_objects(settings.bucket, kind):
            raise ConfigurationError(
                f"s3://{settings.bucket}/{kind}/ holds plain Parquet output, which records nothing a query without "
                f"Spark's checkpoint could start from: restore {settings.checkpoint}/spark, or write to another bucket"
            )


def _start_again(settings: Settings, state: RunState, record: TableRecord | None) -> None:
    """A query with new batch numbers: a new run id (its commits' app transaction), no shard ends of
    the old one, and the tables' record and keys to start from."""
    state.run_id, state.last_batch_id = uuid.uuid4().hex[:8], -1
    ShardEndStore(settings.shard_ends).clear()
    state.resumed_from, state.seed = {}, {}
    if record is not None:
        state.resumed_from = {"run_id": record.run_id, "batch_id": record.batch_id, "positions": record.positions}
        now, horizon = datetime.now(UTC), timedelta(hours=settings.dedup_horizon_hours)
        state.seed = {
            ENRICHED: record.version,
            QUARANTINED: open_table(settings.bucket, QUARANTINED).version(),
            "since": (now - horizon).isoformat(),  # older keys cannot match a record that arrives from now on
            "until": (now + horizon).isoformat(),  # no key can match a record that arrives later
        }
    save_state(settings.state_file, state)


SEED_SCHEMA = pa.schema([("seed_key", pa.string()), ("seed_arrival", pa.timestamp("us", tz="UTC"))])


def load_seed(bucket: str, seed: dict) -> pa.Table | None:
    """The dedup keys the tables held when the query started again (``dedup_key`` as
    ``transform.classify`` makes it), with their arrival times; None once none can match."""
    if not seed or datetime.now(UTC) > datetime.fromisoformat(seed["until"]):
        return None
    since = pc.field("arrival_time") >= pa.scalar(datetime.fromisoformat(seed["since"]), pa.timestamp("us", "UTC"))
    enriched = _read(bucket, ENRICHED, seed[ENRICHED], ["article_id", "arrival_time"], since)
    quarantined = _read(bucket, QUARANTINED, seed[QUARANTINED],
                        ["shard_id", "sequence_number", "sub_sequence_number", "arrival_time"], since)  # fmt: skip
    return pa.table(
        [pa.concat_arrays([enriched["article_id"].combine_chunks(), invalid_keys(quarantined).combine_chunks()]),
         pa.concat_arrays([enriched["arrival_time"].combine_chunks(), quarantined["arrival_time"].combine_chunks()])],
        schema=SEED_SCHEMA,
    )  # fmt: skip


def invalid_keys(quarantined: pa.Table) -> pa.ChunkedArray:
    """The ``dedup_key`` of each quarantined row: ``invalid/`` and its place (shard, sequence number,
    and index in a KPL aggregate when it was in one), as ``transform.classify`` makes it."""
    sub = pc.cast(quarantined["sub_sequence_number"], pa.string())
    place = [quarantined["shard_id"], quarantined["sequence_number"], sub]
    return pc.binary_join_element_wise(pa.scalar("invalid"), *place, "/", null_handling="skip")


def _read(bucket: str, kind: str, version: int, columns: list[str], where: pc.Expression) -> pa.Table:
    return open_table(bucket, kind, version).to_pyarrow_dataset().to_table(columns=columns, filter=where)
