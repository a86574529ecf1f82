"""The checkpoint's running totals: counts, and per window the articles and words behind the averages.

Each batch's writer tasks report, per window of ``published_at`` (``sink.windows``), how many
articles they wrote and how many words those had; ``RunState.apply`` adds them once per batch id
(a replayed batch is not counted twice). Daily figures are sums of hourly ones, so nothing ever
re-reads the output, and an update costs the same however long the history.

The windows are bounded whatever producers send (``published_at`` may name any hour of 10,000
years): an article counts in its UTC hour published when that is at most ``PUBLISHED_WITHIN_DAYS``
before it arrived and less than a day after, and otherwise in one window, ``EARLIER`` or
``LATER``; and hours more than ``HOURLY_DAYS`` older than the newest hour are folded into their
day. So the totals hold at most a week of hours, a day per day of that year and of the job's
life, and two windows more. The state is one JSON file
in the checkpoint, ``etl-state.json``, read and written only here (``load_state``, ``save_state``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from news_etl import checkpoint_files
from news_etl.settings import DEFAULT_OUTPUT_FORMAT, PARQUET, ConfigurationError, Settings

HOUR_FORMAT = "%Y-%m-%dT%H:00:00Z"
PUBLISHED_WITHIN_DAYS = 366  # an article published longer before it arrived counts in EARLIER
EARLIER, LATER = "earlier", "later"  # published too long before arrival, or more than a day after
HOURLY_DAYS = 7  # hours older than this, before the newest hour in the totals, count in their day
# The dedup state's store: RocksDB for new checkpoints, whose memory does not grow with the keys
# held (BENCHMARKS.md, "Dedup state"); checkpoints made before keep the heap-backed one they have.
ROCKSDB, HDFS = "rocksdb", "hdfs"
ARRIVAL_DATE = "arrival date"
LEGACY_STATE_PARTITIONS = 4  # what checkpoints made before the setting used (it was fixed in the code)


@dataclass
class BatchResult:
    """What one micro-batch did."""

    records_read: int
    enriched: int
    quarantined: int
    hourly: dict[str, list[int]]  # window (``sink.windows``) -> [articles, words]
    trimmed_gaps: int = 0

    @property
    def duplicates_dropped(self) -> int:
        return self.records_read - self.enriched - self.quarantined


def merge_windows(into: dict[str, list[int]], more: dict[str, list[int]]) -> None:
    for window, (records, words) in more.items():
        current = into.setdefault(window, [0, 0])
        current[0] += records
        current[1] += words


def is_hour(window: str) -> bool:
    return len(window) == len("2026-11-20T09:00:00Z")


def daily(windows: dict[str, list[int]]) -> dict[str, list[int]]:
    """Days (``YYYY-MM-DD``), their hours summed; ``EARLIER`` and ``LATER`` as they are."""
    days: dict[str, list[int]] = {}
    for window, counts in windows.items():
        merge_windows(days, {window[:10]: counts})
    return days


def fold_old_hours(windows: dict[str, list[int]]) -> None:
    """Fold hours more than ``HOURLY_DAYS`` older than the newest hour into their day."""
    hours = [window for window in windows if is_hour(window)]
    if hours:
        oldest_kept = (datetime.strptime(max(hours), HOUR_FORMAT) - timedelta(days=HOURLY_DAYS)).strftime(HOUR_FORMAT)
        for hour in [hour for hour in hours if hour < oldest_kept]:
            merge_windows(windows, {hour[:10]: windows.pop(hour)})


@dataclass
class RunState:
    """Everything processed on one checkpoint, earlier runs included."""

    stream: str
    bucket: str
    run_id: str = ""  # names this checkpoint's output files
    stream_created: str = ""  # the stream's creation time: a re-created stream is another stream
    last_batch_id: int = -1
    records_read: int = 0
    enriched: int = 0
    quarantined: int = 0
    duplicates_dropped: int = 0
    trimmed_gaps: int = 0  # places where records were trimmed by retention before they were read
    late_dropped: int = 0  # records the dedup watermark dropped as late (``drop_late``)
    late_checked_batch_id: int = -1  # the last batch whose late records were counted
    hourly: dict[str, list[int]] = field(default_factory=dict)  # windows: hours, days, EARLIER, LATER
    state_store: str = ""  # the dedup state's store, fixed when the checkpoint is made ("": made before RocksDB)
    state_partitions: int = 0  # the dedup state's partitions, fixed when its first batch runs (0: not yet)
    output_format: str = ""  # delta or parquet, fixed when the checkpoint is made ("": made before Delta)
    split_ratios: str = ""  # the splits' percentages (``settings.DEFAULT_SPLIT_RATIOS``), fixed with the table
    dt: str = ""  # what the output's dt is: ARRIVAL_DATE ("": made when enriched's dt was the date published)
    # Where Spark's checkpoint last started without a batch (``news_etl.resume``): the tables'
    # record it started from (run_id, batch_id, positions), and the dedup keys standing in for the
    # lost state (``resume.load_seed``); empty when it started at --starting-position.
    resumed_from: dict = field(default_factory=dict)
    seed: dict = field(default_factory=dict)

    def apply(self, batch_id: int, batch: BatchResult) -> bool:
        """Add a batch's figures unless this batch id was applied already. Returns whether it was new."""
        if batch_id <= self.last_batch_id:
            return False
        self.last_batch_id = batch_id
        self.records_read += batch.records_read
        self.enriched += batch.enriched
        self.quarantined += batch.quarantined
        self.duplicates_dropped += batch.duplicates_dropped
        self.trimmed_gaps += batch.trimmed_gaps
        merge_windows(self.hourly, batch.hourly)
        fold_old_hours(self.hourly)
        return True

    def drop_late(self, batch_id: int, late: int) -> bool:
        """Count a batch's late records (Spark's ``numRowsDroppedByWatermark``) as lost, not as
        the duplicates ``apply`` counted them as; once per batch id. Returns whether it was new."""
        if batch_id <= self.late_checked_batch_id:
            return False
        self.late_checked_batch_id = batch_id
        self.duplicates_dropped -= late
        self.late_dropped += late
        return True

    def metrics(self) -> dict:
        """The ``--metrics-json`` document."""
        outside = (EARLIER, LATER)
        return {
            "records_read": self.records_read,
            "enriched": self.enriched,
            "quarantined": self.quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "trimmed_gaps": self.trimmed_gaps,
            "late_dropped": self.late_dropped,
            "hourly": _window_rows({w: c for w, c in self.hourly.items() if is_hour(w)}, suffix=""),
            "daily": _window_rows({w: c for w, c in daily(self.hourly).items() if w not in outside}, "T00:00:00Z"),
            # published more than PUBLISHED_WITHIN_DAYS before arrival, or more than a day after
            "outside": _window_rows({w: c for w, c in self.hourly.items() if w in outside}, suffix=""),
        }


def quarantine_gate(read: int, quarantined: int, max_ratio: float | None) -> str | None:
    """Why a run fails the data-quality gate (its quarantined share is above ``max_ratio``), or None."""
    if max_ratio is None or not read or quarantined / read <= max_ratio:
        return None
    return (
        f"quarantined {quarantined} of the {read} records this run read ({quarantined / read:.1%}), "
        f"above --max-quarantine-ratio {max_ratio}"
    )


def _window_rows(windows: dict[str, list[int]], suffix: str) -> list[dict]:
    """``word_sum`` is exact; ``avg_word_count`` is rounded to 2 decimals for display
    (``word_sum / records`` reconciles exactly)."""
    return [
        {"window_start": start + suffix, "records": records, "word_sum": words,
         "avg_word_count": round(words / records, 2)}
        for start, (records, words) in sorted(windows.items())
    ]  # fmt: skip


def _json(document: dict) -> bytes:
    return json.dumps(document, indent=1).encode()


def save_state(path: str, state: RunState) -> None:
    """Replace the running totals at ``path`` (``Settings.state_file``, local or ``s3://``) whole:
    readers see the old or the new file, never half of one."""
    checkpoint_files.replace(path, _json(asdict(state)))


def save_metrics(path: str, state: RunState) -> None:
    """Replace the ``--metrics-json`` file at ``path`` whole, as ``save_state`` does."""
    checkpoint_files.replace(path, _json(state.metrics()))


def record_state_partitions(path: str, state: RunState, partitions: int) -> None:
    """Record the dedup state's partitions with a new checkpoint's totals, which its first session
    fixes (``session.fix_state_partitions``); a checkpoint that has them keeps them."""
    if not state.state_partitions:
        state.state_partitions = partitions
        save_state(path, state)


def read_state(path: str) -> RunState | None:
    """The running totals at ``path``, or None when there are none."""
    document = checkpoint_files.read(path)
    return RunState(**json.loads(document)) if document is not None else None


def create_state(settings: Settings, stream_created: str) -> RunState:
    """A new checkpoint's running totals, created only if absent: when two jobs start on the same
    new checkpoint, the one whose file was created first wins and the other takes its state."""
    state = RunState(settings.stream, settings.bucket, run_id=uuid.uuid4().hex[:8], stream_created=stream_created,
                     state_store=ROCKSDB, state_partitions=settings.state_partitions or 0,
                     output_format=settings.output_format or DEFAULT_OUTPUT_FORMAT, dt=ARRIVAL_DATE)  # fmt: skip
    if checkpoint_files.create(settings.state_file, _json(asdict(state))):
        return state
    theirs = read_state(settings.state_file)
    if theirs is None:
        raise ConfigurationError(f"checkpoint {settings.checkpoint} is being created by another job at this moment")
    return theirs


def load_state(settings: Settings, stream_created: str) -> RunState:
    """The checkpoint's running totals; a new checkpoint gets a run id that names its files.

    Raises ``ConfigurationError`` when the checkpoint belongs to another stream, or to an earlier
    stream of the same name (its offsets name records that are gone).
    """
    state = read_state(settings.state_file) or create_state(settings, stream_created)
    if not state.state_store:  # made before these were recorded: the store and partitions it was made with
        state.state_store, state.state_partitions = HDFS, state.state_partitions or LEGACY_STATE_PARTITIONS
        save_state(settings.state_file, state)
    if not state.output_format:  # made before Delta: its output is plain Parquet
        state.output_format = PARQUET
        save_state(settings.state_file, state)
    if settings.output_format and settings.output_format != state.output_format:
        raise ConfigurationError(
            f"--output-format {settings.output_format}: checkpoint {settings.checkpoint} writes "
            f"{state.output_format}: drop the setting, or start a new --checkpoint"
        )
    wanted, fixed = settings.state_partitions, state.state_partitions
    if wanted and fixed and wanted != fixed:
        raise ConfigurationError(
            f"--state-partitions {wanted}: checkpoint {settings.checkpoint} keeps its dedup state in {fixed} "
            "partitions, which Spark cannot change: drop the setting, or start a new --checkpoint"
        )
    if state.stream != settings.stream:
        raise ConfigurationError(
            f"checkpoint {settings.checkpoint} belongs to stream {state.stream!r}, not {settings.stream!r}"
        )
    if not state.stream_created:  # a checkpoint from before the creation time was recorded
        state.stream_created = stream_created
        save_state(settings.state_file, state)
    # Compared as instants: the same one is written with another offset where the host's zone differs.
    if datetime.fromisoformat(state.stream_created) != datetime.fromisoformat(stream_created):  # a new stream
        raise ConfigurationError(
            f"checkpoint {settings.checkpoint} belongs to stream {state.stream!r} created {state.stream_created}, "
            f"but that stream was re-created {stream_created} (an emulator restart does this): "
            "start from a new --checkpoint (docker compose: make down)"
        )
    if state.output_format == PARQUET and state.dt != ARRIVAL_DATE:
        raise ConfigurationError(
            f"checkpoint {settings.checkpoint} writes plain Parquet partitioned by the date published (an earlier "
            "version of the job), which producers control: start a new --checkpoint, into another bucket"
        )
    return state
