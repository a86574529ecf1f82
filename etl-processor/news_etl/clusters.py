"""Near-duplicate clusters and splits, assigned on the driver one batch at a time.

Each valid article carries the LSH band keys of its content (``near_dup``, computed in the read
task). ``ClusterIndex`` maps band keys to the cluster that holds them; ``assign`` gives each
article of a batch its cluster:

- an article sharing a band key with an article within the horizon joins that article's cluster;
  one sharing keys with several clusters joins the one whose id hashes lowest (so the choice does
  not depend on the order clusters were met, and an index rebuilt from the table makes the same);
- articles of one batch sharing keys are one cluster (union-find), so a copy of a copy joins the
  first article's cluster in one batch as across batches;
- otherwise the article starts a cluster: its ``cluster_id`` is its own ``article_id``, and
  ``first_in_cluster`` is true. The first is the first the job processed (in a batch, the
  earliest by arrival, shard and sequence number).

``split`` is a function of the cluster id alone (``split_of``), so every article of a cluster
lands in the same split, however often it is replayed, compacted or read again.

Exactly once: the index holds only committed rows. It is built at start from the enriched table
(``load_index``: the rows that arrived within the horizon before the newest), and the handler adds
a batch's rows to it only after the batch's commit; a replayed batch therefore meets the index
its first attempt met, and is assigned the same clusters. Why the index lives on the driver and in
the table, not in Spark's state: docs/design.md, "Near-duplicate clusters".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

log = logging.getLogger("etl.clusters")

SPLITS = ("train", "validation", "test")
# The columns ``assign`` reads of a batch's valid articles, and the ones it returns.
ASSIGN_INPUT = ("article_id", "arrival_time", "shard_id", "sequence_number", "sub_sequence_number", "near_dup_bands")
SWEEPS_PER_HORIZON = 4  # how often expired entries are dropped: at most a quarter horizon's stay
ASSIGNED = pa.schema([pa.field("article_id", pa.string()), pa.field("cluster_id", pa.string()),
                      pa.field("first_in_cluster", pa.bool_()), pa.field("split", pa.string())])  # fmt: skip


def cluster_hash(cluster_id: str) -> int:
    """The cluster's 64-bit hash (unsigned): what the index stores, and what its split derives from."""
    return int.from_bytes(hashlib.blake2b(cluster_id.encode(), digest_size=8).digest())


def split_of(cluster_id: str, ratios: tuple[float, float, float]) -> str:
    """The split of every article of the cluster: train, validation or test, by where the cluster's
    hash falls in [0, 1) against the cumulative ``ratios``."""
    point = cluster_hash(cluster_id) / 2**64
    if point < ratios[0]:
        return SPLITS[0]
    return SPLITS[1] if point < ratios[0] + ratios[1] else SPLITS[2]


@dataclass
class Segment:
    """Index entries sorted by band key: the cluster (hash, as int64) and when a row last had the key."""

    keys: np.ndarray
    clusters: np.ndarray
    seen: np.ndarray  # arrival time, µs since the epoch

    @classmethod
    def of(cls, keys: np.ndarray, clusters: np.ndarray, seen: np.ndarray) -> Segment:
        """Entries from (key, cluster, arrival) rows, a key repeated taking the lowest cluster and the
        latest time. A stable sort: two sorted segments concatenated are sorted in linear time."""
        order = np.argsort(keys, kind="stable")
        keys, clusters, seen = keys[order], clusters[order], seen[order]
        first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        return cls(keys[first], np.minimum.reduceat(clusters, first), np.maximum.reduceat(seen, first))

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of the (sorted) ``keys``, whether this segment holds it, and where."""
        where = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[where] == keys, where


class ClusterIndex:
    """Band key -> cluster, for the rows that arrived within ``horizon_us`` of the newest.

    Entries live in sorted numpy segments (the logarithmic method: a batch's new keys make a segment,
    and two segments merge when the newer is as large as the older), so a batch costs a binary
    search per key and memory is about 24 bytes a band key (docs/design.md has the measured figure).
    """

    def __init__(self, horizon_us: int) -> None:
        self.horizon_us = horizon_us
        self.segments: list[Segment] = []
        self.names: dict[int, str] = {}  # cluster hash (as int64) -> cluster id
        self.newest: int | None = None  # the latest arrival among the rows added
        self.swept_at: int | None = None  # ``newest`` when expired entries and names were last dropped

    @property
    def entries(self) -> int:
        return sum(len(segment.keys) for segment in self.segments)

    def _oldest_kept(self) -> int:
        return self.newest - self.horizon_us if self.newest is not None else np.iinfo(np.int64).min

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The cluster (hash) holding each key, or 0 where none within the horizon does."""
        distinct, inverse = np.unique(keys, return_inverse=True)  # sorted: binary searches that stay in cache
        found = np.zeros(len(distinct), np.int64)
        held = np.zeros(len(distinct), bool)
        oldest = self._oldest_kept()
        for segment in self.segments:
            hit, where = segment.find(distinct)
            hit &= segment.seen[where] >= oldest
            found[hit], held[hit] = segment.clusters[where[hit]], True
        return np.where(held, found, 0)[inverse]

    def add(self, keys: np.ndarray, clusters: np.ndarray, seen: np.ndarray, names: dict[int, str]) -> None:
        """Add committed rows' band keys: a key already held (and not expired) takes the lower cluster
        and the later time; a new key goes into a new segment."""
        oldest = self._oldest_kept()
        order = np.argsort(keys, kind="stable")  # sorted: binary searches that stay in cache
        keys, clusters, seen = keys[order], clusters[order], seen[order]
        new = np.ones(len(keys), bool)
        for segment in self.segments:
            hit, where = segment.find(keys)
            if not hit.any():
                continue
            new &= ~hit
            at, live = where[hit], segment.seen[where[hit]] >= oldest
            segment.clusters[at[~live]], segment.seen[at[~live]] = clusters[hit][~live], seen[hit][~live]
            np.minimum.at(segment.clusters, at, clusters[hit])
            np.maximum.at(segment.seen, at, seen[hit])
        self.names.update(names)
        if len(seen):
            self.newest = max(self.newest or int(seen.max()), int(seen.max()))
        if new.any():
            self.segments.append(Segment.of(keys[new], clusters[new], seen[new]))
        while len(self.segments) > 1 and len(self.segments[-1].keys) >= len(self.segments[-2].keys):
            self._merge(2)
        if self.swept_at is None or self.newest - self.swept_at > self.horizon_us // SWEEPS_PER_HORIZON:
            self._sweep()

    def _merge(self, count: int) -> None:
        """Merge the newest ``count`` segments into one, without the entries that expired."""
        merged, self.segments = self.segments[-count:], self.segments[:-count]
        keys, clusters, seen = (np.concatenate([getattr(segment, name) for segment in merged])
                                for name in ("keys", "clusters", "seen"))  # fmt: skip
        live = seen >= self._oldest_kept()
        if live.any():
            self.segments.append(Segment.of(keys[live], clusters[live], seen[live]))

    def _sweep(self) -> None:
        """Merge every segment without the expired entries, and forget the names no entry holds: a
        few times a horizon, so that memory stays within a horizon's keys and a fraction more."""
        if self.segments:
            self._merge(len(self.segments))
        held = set(self.segments[0].clusters.tolist()) if self.segments else set()
        self.names = {cluster: name for cluster, name in self.names.items() if cluster in held}
        self.swept_at = self.newest

    def assign(self, articles: pa.Table, ratios: tuple[float, float, float]) -> pa.Table:
        """Each article's cluster, whether it is the first, and its split (``ASSIGNED``); ``articles``:
        a batch's valid articles (``ASSIGN_INPUT``), with no article id twice."""
        articles = in_processing_order(articles)
        ids = articles["article_id"].to_pylist()
        bands = articles["near_dup_bands"]
        owners = np.repeat(np.arange(len(ids)), pc.fill_null(pc.list_value_length(bands), 0).to_numpy())
        keys = pc.list_flatten(bands).to_numpy(zero_copy_only=False).astype(np.int64)
        components = _components(len(ids), owners, keys)
        known = self.lookup(keys)
        best: dict[int, int] = {}  # component -> the lowest cluster its keys are held by
        for owner, cluster in zip(owners[known != 0].tolist(), known[known != 0].tolist(), strict=True):
            root = components[owner]
            best[root] = min(best.get(root, cluster), cluster)
        # A component's root is its first row in processing order: it starts the cluster, unless
        # the component joins one the index holds.
        cluster_ids = [self.names[best[root]] if root in best else ids[root] for root in components]
        firsts = [root == row and root not in best for row, root in enumerate(components)]
        splits = [split_of(cluster_id, ratios) for cluster_id in cluster_ids]
        return pa.Table.from_arrays([pa.array(ids), pa.array(cluster_ids), pa.array(firsts), pa.array(splits)],
                                    schema=ASSIGNED)  # fmt: skip

    def add_assigned(self, articles: pa.Table, assigned: pa.Table) -> None:
        """Add a committed batch's articles (``ASSIGN_INPUT``) with their clusters (``ASSIGNED``)."""
        clusters = dict(zip(assigned["article_id"].to_pylist(), assigned["cluster_id"].to_pylist(), strict=True))
        self.add_rows(articles["near_dup_bands"], [clusters[a] for a in articles["article_id"].to_pylist()],
                      articles["arrival_time"])  # fmt: skip

    def add_rows(self, bands: pa.ChunkedArray, cluster_ids: list[str], arrivals: pa.ChunkedArray) -> None:
        """Add rows' band keys under their cluster ids (``arrivals``: timestamps)."""
        lengths = pc.fill_null(pc.list_value_length(bands), 0).to_numpy()
        hashes = np.array([cluster_hash(name) for name in cluster_ids], np.uint64).view(np.int64)
        micros = pc.cast(arrivals, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        keys = pc.list_flatten(bands).to_numpy(zero_copy_only=False).astype(np.int64)
        names = dict(zip(hashes.tolist(), cluster_ids, strict=True))
        self.add(keys, np.repeat(hashes, lengths), np.repeat(micros, lengths), names)


def in_processing_order(articles: pa.Table) -> pa.Table:
    """The articles by arrival, shard, sequence number and index in a KPL aggregate."""
    sequence = pc.utf8_lpad(articles["sequence_number"], 64, "0")  # decimal strings of up to 128 bits
    order = pa.table({"arrival": articles["arrival_time"], "shard": articles["shard_id"], "sequence": sequence,
                      "sub": pc.fill_null(articles["sub_sequence_number"], -1)})  # fmt: skip
    return articles.take(pc.sort_indices(order, [(name, "ascending") for name in order.column_names]))


def _components(rows: int, owners: np.ndarray, keys: np.ndarray) -> list[int]:
    """Each row's component (its lowest row) when rows sharing a key are joined."""
    parent = list(range(rows))

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    if len(keys):
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        firsts = owners[first][inverse]
        for row, other in zip(owners[firsts != owners].tolist(), firsts[firsts != owners].tolist(), strict=True):
            low, high = sorted((root(row), root(other)))
            parent[high] = low
    return [root(row) for row in range(rows)]


INDEX_COLUMNS = ["cluster_id", "arrival_time", "near_dup_bands"]


def load_index(rows: ds.Dataset, horizon_hours: int) -> ClusterIndex:
    """The index of the valid articles in ``rows`` (the enriched output's committed files) that
    arrived within the horizon before the newest of them."""
    index = ClusterIndex(horizon_hours * 3600 * 10**6)
    dts = {ds.get_partition_keys(fragment.partition_expression).get("dt") for fragment in rows.get_fragments()}
    if not dts - {None}:
        return index
    newest_dt = max(dts - {None})
    newest = pc.max(rows.to_table(columns=["arrival_time"], filter=pc.field("dt") == newest_dt)["arrival_time"])
    oldest = newest.as_py() - timedelta(hours=horizon_hours)
    since = (pc.field("dt") >= f"{oldest:%Y-%m-%d}") & (pc.field("arrival_time") >= pa.scalar(oldest, newest.type))
    kept = rows.to_table(columns=INDEX_COLUMNS, filter=since)
    index.add_rows(kept["near_dup_bands"], kept["cluster_id"].to_pylist(), kept["arrival_time"])
    log.info("near-duplicate index: %d band keys of %d articles since %s", index.entries, kept.num_rows, oldest)
    return index
