"""The console report: one line per micro-batch, the hourly and daily averages, the run's totals.

This is the job's output for a person (the averages the brief asks for), printed here and only
here; everything else the job says goes through ``logging``.
"""

from __future__ import annotations

from collections.abc import Iterable

from news_etl.kinesis import ShardEnd
from news_etl.state import EARLIER, LATER, BatchResult, RunState, daily, is_hour

# The most windows a table prints: the newest ones (``--metrics-json`` has them all), so that what
# producers send cannot make the console's output grow (published_at may name any hour of 10,000 years).
NEWEST_HOURS, NEWEST_DAYS = 24, 14


def averages_table(title: str, windows: dict[str, list[int]], only: Iterable[str] | None = None,
                   newest: int | None = None) -> str:  # fmt: skip
    """A fixed-width table of windows (all, or ``only`` those), oldest first, ``EARLIER`` and
    ``LATER`` last; the ``newest`` dated ones at most, and a line saying how many more there are."""
    keys = sorted(set(only) & set(windows) if only is not None else windows, key=lambda k: (k in (EARLIER, LATER), k))
    dated = [key for key in keys if key not in (EARLIER, LATER)]
    hidden = len(dated) - newest if newest is not None and len(dated) > newest else 0
    keys = keys[hidden:]
    width = max([len(k) for k in keys] + [len("window (UTC)")])
    lines = [title, f"  {'window (UTC)':<{width}}  {'articles':>9}  {'avg word_count':>14}"]
    if hidden:
        lines.append(f"  ({hidden:,} older windows: the metrics file has them all)")
    for key in keys:
        records, words = windows[key]
        lines.append(f"  {key:<{width}}  {records:>9,}  {words / records:>14.1f}")
    if not keys:
        lines.append("  (none)")
    return "\n".join(lines)


def hours(windows: dict[str, list[int]]) -> dict[str, list[int]]:
    return {window: counts for window, counts in windows.items() if is_hour(window)}


def batch_report(stream: str, batch_id: int, result: BatchResult, ends: dict[str, ShardEnd], state: RunState,
                 elapsed: float) -> str:  # fmt: skip
    """What one batch did, its shards' lag and trimmed gaps, and the averages of the windows it touched."""
    lag = ", ".join(f"{shard} {end.millis_behind_latest} ms (executor {end.executor or '?'})"
                    for shard, end in sorted(ends.items()))  # fmt: skip
    lines = [
        f"batch {batch_id}: read {result.records_read}, enriched {result.enriched}, "
        f"quarantined {result.quarantined}, duplicates {result.duplicates_dropped}, "
        f"{result.records_read / max(elapsed, 1e-9):.0f} rec/s, lag: {lag or 'n/a'}"
    ]
    lines += [f"  TRIMMED: {end.trimmed.describe(stream, shard_id)}" for shard_id, end in sorted(ends.items())
              if end.trimmed]  # fmt: skip
    touched = set(result.hourly)
    days = {window[:10] for window in touched}
    lines.append(averages_table("  hourly average word_count (cumulative), windows in this batch:",
                                hours(state.hourly), touched, NEWEST_HOURS))  # fmt: skip
    lines.append(averages_table("  daily average word_count (cumulative), windows in this batch:",
                                daily(state.hourly), days, NEWEST_DAYS))  # fmt: skip
    return "\n".join(lines)


def totals_report(state: RunState) -> str:
    """Everything processed on the checkpoint, and the averages of its newest windows."""
    trimmed = (
        f", TRIMMED before read at {state.trimmed_gaps} place(s): see the batch lines" if state.trimmed_gaps else ""
    )
    return "\n".join(
        [
            f"\ntotals on this checkpoint: read {state.records_read}, enriched {state.enriched}, "
            f"quarantined {state.quarantined}, duplicates dropped {state.duplicates_dropped}{trimmed}",
            averages_table("hourly average word_count (all windows):", hours(state.hourly), newest=NEWEST_HOURS),
            averages_table("daily average word_count (all windows):", daily(state.hourly), newest=NEWEST_DAYS),
        ]
    )


def show(text: str) -> None:
    """Print a report to standard output at once (compose shows it interleaved with the logs)."""
    print(text, flush=True)
