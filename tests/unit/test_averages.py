"""Cumulative counts and hourly/daily averages: additive, once per batch, computed by hand here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from news_etl.report import averages_table
from news_etl.sink import windows
from news_etl.state import EARLIER, LATER, BatchResult, RunState, daily, merge_windows, quarantine_gate

H10, H11 = "2026-11-14T10:00:00Z", "2026-11-14T11:00:00Z"
NEXT_DAY = "2026-11-15T00:00:00Z"


def state() -> RunState:
    return RunState(stream="news", bucket="news-bucket")


def test_merging_windows_adds_counts_per_window():
    """Counts of a window already present are added; a new window is taken as is."""
    into = {H10: [1, 100]}
    merge_windows(into, {H10: [2, 300], H11: [1, 30]})
    assert into == {H10: [3, 400], H11: [1, 30]}


def test_merging_never_changes_the_merged_in_windows():
    """Later merges into the total do not reach back into a batch's own figures."""
    batch_hours = {H11: [1, 30]}
    total: dict[str, list[int]] = {}
    merge_windows(total, batch_hours)
    merge_windows(total, {H11: [5, 50]})
    assert batch_hours == {H11: [1, 30]}
    assert total == {H11: [6, 80]}


def test_applying_the_same_batch_id_twice_counts_once():
    """A replayed batch id is refused and leaves every figure as after its first application."""
    run = state()
    batch = BatchResult(records_read=5, enriched=3, quarantined=1, hourly={H10: [3, 90]})
    assert run.apply(0, batch) is True
    assert run.apply(0, batch) is False
    assert (run.records_read, run.enriched, run.quarantined, run.duplicates_dropped) == (5, 3, 1, 1)
    assert run.hourly == {H10: [3, 90]}
    assert run.last_batch_id == 0


def test_an_older_batch_id_is_not_applied_after_a_newer_one():
    """Once batch 3 is counted, batch 2 arriving late is refused."""
    run = state()
    assert run.apply(3, BatchResult(1, 1, 0, {H10: [1, 10]})) is True
    assert run.apply(2, BatchResult(7, 7, 0, {H11: [7, 70]})) is False
    assert (run.records_read, run.hourly) == (1, {H10: [1, 10]})


def test_duplicates_dropped_is_read_minus_enriched_minus_quarantined():
    """Per batch and cumulatively, what was read but neither written nor quarantined was a duplicate."""
    first = BatchResult(records_read=10, enriched=6, quarantined=2, hourly={H10: [6, 60]})
    second = BatchResult(records_read=5, enriched=4, quarantined=0, hourly={H11: [4, 40]})
    assert (first.duplicates_dropped, second.duplicates_dropped) == (2, 1)
    run = state()
    run.apply(0, first)
    run.apply(1, second)
    assert (run.records_read, run.enriched, run.quarantined, run.duplicates_dropped) == (15, 10, 2, 3)


def test_daily_figures_are_sums_of_their_hours():
    """A day's articles and words are the totals of its hours, not an average of hourly averages."""
    assert daily({H10: [2, 300], H11: [1, 30], NEXT_DAY: [4, 40]}) == {"2026-11-14": [3, 330], "2026-11-15": [4, 40]}


def test_metrics_lists_windows_oldest_first_with_exact_word_sums_and_rounded_averages():
    """metrics(): totals, then hourly and daily rows sorted by UTC start, each with its exact word sum and
    its average to 2 decimals."""
    run = state()
    run.apply(0, BatchResult(records_read=9, enriched=6, quarantined=1, hourly={NEXT_DAY: [3, 100], H11: [1, 30]}))
    run.apply(1, BatchResult(records_read=2, enriched=2, quarantined=0, hourly={H10: [2, 300]}, trimmed_gaps=1))
    assert run.metrics() == {
        "records_read": 11,
        "enriched": 8,
        "quarantined": 1,
        "duplicates_dropped": 2,
        "trimmed_gaps": 1,
        "late_dropped": 0,
        "hourly": [
            {"window_start": H10, "records": 2, "word_sum": 300, "avg_word_count": 150.0},
            {"window_start": H11, "records": 1, "word_sum": 30, "avg_word_count": 30.0},
            {"window_start": NEXT_DAY, "records": 3, "word_sum": 100, "avg_word_count": 33.33},
        ],
        "daily": [
            {"window_start": "2026-11-14T00:00:00Z", "records": 3, "word_sum": 330, "avg_word_count": 110.0},
            {"window_start": "2026-11-15T00:00:00Z", "records": 3, "word_sum": 100, "avg_word_count": 33.33},
        ],
        "outside": [],
    }


def test_metrics_window_starts_are_utc_iso_8601_and_json_serialisable():
    """Every window_start parses as an ISO-8601 UTC instant, and the document survives json."""
    run = state()
    run.apply(0, BatchResult(3, 3, 0, {H10: [2, 300], NEXT_DAY: [1, 1]}))
    document = json.loads(json.dumps(run.metrics()))
    starts = [row["window_start"] for key in ("hourly", "daily") for row in document[key]]
    assert [datetime.fromisoformat(s) for s in starts] == [
        datetime(2026, 11, 14, 10, tzinfo=UTC),
        datetime(2026, 11, 15, 0, tzinfo=UTC),
        datetime(2026, 11, 14, 0, tzinfo=UTC),
        datetime(2026, 11, 15, 0, tzinfo=UTC),
    ]


def test_averages_table_lists_only_the_requested_windows():
    """With ``only``, other windows are left out; averages are words per article to one decimal."""
    windows = {"2026-11-14": [3, 330], "2026-11-15": [1_234, 12_340], "2026-11-16": [4, 2]}
    table = averages_table("Daily", windows, only=["2026-11-15", "2026-11-14", "2026-12-01"])
    lines = table.splitlines()
    assert lines[0] == "Daily"
    assert "window (UTC)" in lines[1]
    assert [line.split() for line in lines[2:]] == [["2026-11-14", "3", "110.0"], ["2026-11-15", "1,234", "10.0"]]


def test_averages_table_lists_every_window_without_only():
    """Without ``only``, every window appears, oldest first."""
    table = averages_table("Hourly", {H11: [1, 30], H10: [2, 300]})
    assert [line.split() for line in table.splitlines()[2:]] == [[H10, "2", "150.0"], [H11, "1", "30.0"]]


def test_the_totals_keep_a_week_of_hours_and_fold_older_ones_into_their_day():
    """1,000 articles, each on its own day of 1,000 (all within the published window, as windows
    reports them): the totals keep the 7 days of hours before the newest hour, and days for the rest;
    daily figures are unchanged by the fold."""
    run = state()
    first = datetime(2024, 1, 1, 9, tzinfo=UTC)
    for batch_id in range(10):
        hours = {(first + timedelta(days=day)).strftime("%Y-%m-%dT%H:00:00Z"): [1, day]
                 for day in range(batch_id * 100, batch_id * 100 + 100)}  # fmt: skip
        run.apply(batch_id, BatchResult(records_read=100, enriched=100, quarantined=0, hourly=hours))
    kept = [window for window in run.hourly if len(window) == 20]
    assert len(kept) == 8  # the newest hour, and the same hour on each of the 7 days before it
    assert len(run.hourly) == 1_000
    assert sum(row["records"] for row in run.metrics()["daily"]) == 1_000
    assert sum(row["word_sum"] for row in run.metrics()["daily"]) == sum(range(1_000))


def test_late_records_are_counted_as_lost_not_duplicates_once_per_batch():
    """A batch read 10, wrote 6: 4 "duplicates" until Spark's progress says 3 of them were late."""
    run = state()
    run.apply(0, BatchResult(records_read=10, enriched=5, quarantined=1, hourly={H10: [5, 50]}))
    assert run.drop_late(0, 3) and not run.drop_late(0, 3)
    assert (run.duplicates_dropped, run.late_dropped) == (1, 3)
    assert run.records_read == run.enriched + run.quarantined + run.duplicates_dropped + run.late_dropped


def test_the_metrics_report_articles_published_outside_the_windows_apart():
    run = state()
    run.apply(0, BatchResult(records_read=3, enriched=3, quarantined=0,
                             hourly={EARLIER: [1, 10], LATER: [1, 20], H10: [1, 30]}))  # fmt: skip
    assert [(row["window_start"], row["word_sum"]) for row in run.metrics()["outside"]] == [(EARLIER, 10), (LATER, 20)]
    assert [row["window_start"] for row in run.metrics()["daily"]] == ["2026-11-14T00:00:00Z"]


def test_averages_table_shows_the_newest_windows_and_counts_the_others():
    windows = {f"2026-11-{day:02d}": [1, day] for day in range(1, 31)} | {EARLIER: [2, 4]}
    lines = averages_table("Daily", windows, newest=14).splitlines()
    assert lines[2] == "  (16 older windows: the metrics file has them all)"
    assert [line.split()[0] for line in lines[3:]] == [f"2026-11-{day}" for day in range(17, 31)] + [EARLIER]


def test_articles_count_in_their_hour_published_unless_long_before_or_after_they_arrived():
    arrived = datetime(2026, 11, 20, 12, tzinfo=UTC)
    published = [
        arrived - timedelta(days=367),
        arrived - timedelta(days=365),
        arrived + timedelta(hours=23),
        arrived + timedelta(days=1),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
    ]
    rows = pa.table({"published_at": pa.array(published, pa.timestamp("us", tz="UTC")),
                     "arrival_time": pa.array([arrived] * 6, pa.timestamp("us", tz="UTC")),
                     "word_count": pa.array([1, 2, 3, 4, 5, 6], pa.int32())})  # fmt: skip
    assert windows(rows) == {EARLIER: [2, 6], "2025-11-20T12:00:00Z": [1, 2], "2026-11-21T11:00:00Z": [1, 3],
                             LATER: [2, 10]}  # fmt: skip


def test_averages_table_says_none_when_no_window_is_listed():
    """An empty selection or no windows at all gives a "(none)" row instead of an empty table."""
    windows = {"2026-11-14": [3, 330]}
    for table in (averages_table("Daily", windows, only=[]), averages_table("Daily", {})):
        assert table.splitlines()[2:] == ["  (none)"]
        assert "2026-11-14" not in table


@pytest.mark.parametrize(
    ("read", "quarantined", "max_ratio", "fails"),
    [(1000, 50, 0.05, False), (1000, 51, 0.05, True), (0, 0, 0.0, False), (10, 1, None, False), (10, 1, 0.0, True)],
)
def test_quarantine_gate_fails_a_run_only_above_the_ratio(read, quarantined, max_ratio, fails):
    """The gate trips strictly above the ratio, never on a run that read nothing or without a limit."""
    reason = quarantine_gate(read, quarantined, max_ratio)
    assert (reason is not None) == fails
    if fails:
        assert f"quarantined {quarantined} of the {read} records" in reason
