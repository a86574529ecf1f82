"""The near-duplicate index and the batch's cluster assignment (news_etl.clusters), on hand-made band keys.

The clusters' quality on realistic copies is measured against the independent oracle
(tests/support/near_dup_oracle.py) in test_near_dup_quality.py and tests/integration/test_near_dup.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from news_etl.clusters import ClusterIndex, cluster_hash, load_index, split_of

HOUR_US = 3600 * 10**6
RATIOS = (0.98, 0.01, 0.01)
START = datetime(2026, 12, 1, tzinfo=UTC)
TIMESTAMP = pa.timestamp("us", "UTC")


def batch(*articles: tuple[str, list[int] | None], start: int = 0) -> pa.Table:
    """Articles (id, band keys) arriving a second apart from ``start`` seconds after START, in one shard."""
    count = len(articles)
    return pa.table({
        "article_id": [article_id for article_id, _ in articles],
        "arrival_time": pa.array([START + timedelta(seconds=start + k) for k in range(count)], TIMESTAMP),
        "shard_id": ["shardId-000000000000"] * count,
        "sequence_number": [str(10**20 + start + k) for k in range(count)],
        "sub_sequence_number": pa.nulls(count, pa.int64()),
        "near_dup_bands": pa.array([bands for _, bands in articles], pa.list_(pa.int64())),
    })  # fmt: skip


def clusters(index: ClusterIndex, articles: pa.Table, add: bool = True) -> dict[str, tuple[str, bool]]:
    assigned = index.assign(articles, RATIOS)
    if add:
        index.add_assigned(articles, assigned)
    return {row["article_id"]: (row["cluster_id"], row["first_in_cluster"]) for row in assigned.to_pylist()}


def test_a_copy_and_a_copy_of_the_copy_join_the_first_articles_cluster_in_one_batch_and_across_batches():
    one = ClusterIndex(HOUR_US)
    # b shares a key with a, c only with b, d with nobody.
    assert clusters(one, batch(("a", [1, 2]), ("b", [2, 3]), ("c", [3, 4]), ("d", [5, 6]))) == {
        "a": ("a", True), "b": ("a", False), "c": ("a", False), "d": ("d", True)}  # fmt: skip
    across = ClusterIndex(HOUR_US)
    clusters(across, batch(("a", [1, 2])))
    clusters(across, batch(("b", [2, 3]), start=10))
    assert clusters(across, batch(("c", [3, 4]), ("e", [7, 8]), start=20)) == {"c": ("a", False), "e": ("e", True)}


def test_the_first_of_a_batch_is_the_earliest_to_arrive_whatever_the_rows_order():
    rows = batch(("late", [9]), ("early", [9]))
    arrivals = pa.array([START + timedelta(seconds=5), START], pa.timestamp("us", "UTC"))
    rows = rows.set_column(1, "arrival_time", arrivals)
    assert clusters(ClusterIndex(HOUR_US), rows) == {"early": ("early", True), "late": ("early", False)}


def test_an_article_without_keys_is_a_cluster_of_its_own():
    assert clusters(ClusterIndex(HOUR_US), batch(("a", None), ("b", None))) == {"a": ("a", True), "b": ("b", True)}


def test_a_bridge_between_two_clusters_joins_the_one_whose_id_hashes_lowest():
    index = ClusterIndex(HOUR_US)
    clusters(index, batch(("x", [1]), ("y", [2])))
    lowest = min(("x", "y"), key=cluster_hash)
    assert clusters(index, batch(("bridge", [1, 2]), start=10)) == {"bridge": (lowest, False)}


def test_keys_older_than_the_horizon_before_the_newest_are_forgotten():
    index = ClusterIndex(HOUR_US)
    clusters(index, batch(("old", [1])))
    clusters(index, batch(("new", [2]), start=2 * 3600))  # the newest is now two hours on
    assert clusters(index, batch(("copy", [1]), start=2 * 3600 + 1)) == {"copy": ("copy", True)}
    assert index.entries <= 3


def test_a_batch_assigned_twice_before_it_is_added_gets_the_same_clusters():
    """A replay meets the index its first attempt met: the index changes only when a batch is added."""
    index = ClusterIndex(HOUR_US)
    clusters(index, batch(("a", [1, 2])))
    replayed = batch(("b", [2]), ("c", [3]), start=5)
    assert clusters(index, replayed, add=False) == clusters(index, replayed, add=False)


def test_an_index_rebuilt_from_the_written_rows_assigns_what_the_live_one_does(tmp_path):
    live = ClusterIndex(HOUR_US)
    written = []
    for n, articles in enumerate([[("a", [1, 2]), ("b", [2, 3])], [("c", [3, 4]), ("d", [5])], [("e", [6])]]):
        rows = batch(*articles, start=n * 1000)
        assigned = live.assign(rows, RATIOS)
        live.add_assigned(rows, assigned)
        cluster_of = dict(zip(assigned["article_id"].to_pylist(), assigned["cluster_id"].to_pylist(), strict=True))
        cluster_ids = [cluster_of[article_id] for article_id in rows["article_id"].to_pylist()]
        written.append(rows.append_column("cluster_id", pa.array(cluster_ids)).append_column(
            "dt", pa.array(["2026-12-01"] * rows.num_rows)))  # fmt: skip
    ds.write_dataset(pa.concat_tables(written), tmp_path, format="parquet", partitioning=["dt"],
                     partitioning_flavor="hive")  # fmt: skip
    rebuilt = load_index(ds.dataset(tmp_path, partitioning="hive"), horizon_hours=1)
    probe = batch(("p", [4]), ("q", [5]), ("r", [6]), ("s", [99]), start=3000)
    assert clusters(rebuilt, probe, add=False) == clusters(live, probe, add=False) == {
        "p": ("a", False), "q": ("d", False), "r": ("e", False), "s": ("s", True)}  # fmt: skip


def test_many_batches_keep_few_segments_and_find_every_key():
    index = ClusterIndex(1000 * HOUR_US)
    for n in range(200):
        clusters(index, batch(*[(f"{n}-{k}", [n * 100 + k]) for k in range(10)], start=n * 10))
    assert len(index.segments) <= 8
    assert clusters(index, batch(("probe", [150 * 100 + 3]), start=5000), add=False) == {"probe": ("150-3", False)}


@pytest.mark.parametrize("ratios", [(0.98, 0.01, 0.01), (0.8, 0.1, 0.1)])
def test_splits_follow_the_ratios_and_depend_on_the_cluster_id_alone(ratios):
    ids = [f"story-{n}" for n in range(20_000)]
    splits = [split_of(cluster_id, ratios) for cluster_id in ids]
    for name, ratio in zip(("train", "validation", "test"), ratios, strict=True):
        assert abs(splits.count(name) / len(ids) - ratio) < 0.006
    assert splits == [split_of(cluster_id, ratios) for cluster_id in ids]


def test_memory_stays_within_a_horizons_keys_and_a_fraction_more_as_articles_keep_coming():
    """30 horizons of 1,000 articles in batches of 10: the entries and the cluster names the index
    keeps never exceed a horizon's and a quarter (the sweeps drop what expired) and a batch."""
    index = ClusterIndex(10**6)  # a second; articles arrive a millisecond apart: 1,000 a horizon
    peak_entries = peak_names = 0
    for n in range(3000):
        rows = batch(*[(f"{n}-{k}", [n * 10 + k]) for k in range(10)])
        rows = rows.set_column(1, "arrival_time", pa.array([START + timedelta(milliseconds=n * 10 + k)
                                                            for k in range(10)], TIMESTAMP))  # fmt: skip
        clusters(index, rows)
        peak_entries, peak_names = max(peak_entries, index.entries), max(peak_names, len(index.names))
    assert peak_entries <= 1.25 * 1000 + 10 and peak_names <= 1.25 * 1000 + 10
