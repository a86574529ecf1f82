"""The running totals' file, etl-state.json, as news_etl.state writes it (local paths, no Spark)."""

from __future__ import annotations

import json

from news_etl.state import RunState, read_state, record_state_partitions, save_metrics, save_state


def test_saved_totals_read_back_the_same(tmp_path):
    """What save_state writes, read_state returns whole, the hourly windows included."""
    path = str(tmp_path / "etl-state.json")
    state = RunState("news", "news-data", run_id="aaaa0001", last_batch_id=3, records_read=7, enriched=5,
                     hourly={"2026-11-20T09:00:00Z": [5, 40]}, state_partitions=2)  # fmt: skip
    save_state(path, state)
    assert read_state(path) == state


def test_a_new_checkpoint_records_its_state_partitions_once(tmp_path):
    """The first session's partition count is recorded in the file; a checkpoint that has one keeps it."""
    path = str(tmp_path / "etl-state.json")
    state = RunState("news", "news-data", run_id="aaaa0001")
    record_state_partitions(path, state, 2)
    assert (state.state_partitions, read_state(path).state_partitions) == (2, 2)
    record_state_partitions(path, state, 8)
    assert (state.state_partitions, read_state(path).state_partitions) == (2, 2)


def test_a_checkpoint_with_partitions_is_not_rewritten(tmp_path):
    """Recording partitions on a checkpoint that has them writes nothing."""
    path = tmp_path / "etl-state.json"
    record_state_partitions(str(path), RunState("news", "news-data", state_partitions=4), 2)
    assert not path.exists()


def test_the_metrics_file_holds_the_metrics_document(tmp_path):
    """save_metrics writes RunState.metrics() as JSON."""
    path = tmp_path / "metrics.json"
    state = RunState("news", "news-data", records_read=3, enriched=2, quarantined=1)
    save_metrics(str(path), state)
    assert json.loads(path.read_text()) == state.metrics()
