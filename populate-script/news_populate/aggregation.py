"""Packs user records into KPL aggregates (``--aggregate N``), some deliberately corrupt.

A KPL aggregate is one Kinesis record that holds many user records, as the Kinesis Producer
Library writes it: the magic bytes ``f3 89 9a c2``, a protobuf ``AggregatedRecord`` (KPL's
aggregation.proto: a table of partition keys and the user records, each with the index of its
key and its data), then the MD5 of the protobuf bytes. As the KPL does, the Kinesis partition
key of an aggregate is its first user record's key.

Pure: no I/O. The user records are ``generate_records``' own, unchanged; which aggregates are
corrupt, and how, derives from the seed too (a random stream of its own, so the articles are the
same with and without ``--aggregate``). The job quarantines a corrupt aggregate whole, as one
record, so the user records inside it never reach the enriched table.

The message types are built from a descriptor, as the job's decoder builds them
(``news_etl.kinesis.aggregation``, which this separate image cannot import), so no generated
code or ``protoc`` is needed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from news_populate.articles import Record, generate_records
from news_populate.producer import MAX_BYTES_PER_RECORD

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_BYTES = 16  # MD5
# The part of KPL's aggregation.proto that populate writes (no explicit hash keys, no tags),
# as a FileDescriptorProto in protobuf's text format. Field numbers are the KPL's.
AGGREGATION_PROTO = """
name: "kpl_aggregation.proto"
package: "kpl"
syntax: "proto2"
message_type {
  name: "AggregatedRecord"
  field { name: "partition_key_table" number: 1 label: LABEL_REPEATED type: TYPE_STRING }
  field { name: "records" number: 3 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".kpl.Record" }
}
message_type {
  name: "Record"
  field { name: "partition_key_index" number: 1 label: LABEL_REQUIRED type: TYPE_UINT64 }
  field { name: "data" number: 3 label: LABEL_REQUIRED type: TYPE_BYTES }
}
"""
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(text_format.Parse(AGGREGATION_PROTO, descriptor_pb2.FileDescriptorProto()))
AggregatedRecord = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("kpl.AggregatedRecord"))


class Corruption(StrEnum):
    """How a corrupt aggregate is broken; the comment is the reason the job quarantines it with."""

    BAD_CHECKSUM = "bad_checksum"  # "KPL aggregate checksum mismatch"
    NOT_PROTOBUF = "not_protobuf"  # "KPL aggregate is not a valid protobuf AggregatedRecord"
    KEY_INDEX_OUT_OF_RANGE = "key_index_out_of_range"  # "KPL aggregate user record has partition key index ..."


CORRUPTIONS = tuple(Corruption)
AGGREGATE, CORRUPT_AGGREGATE = "aggregate", "corrupt_aggregate"  # Aggregate.kind, for PutStats.kinds


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One Kinesis record holding ``records``; ``corruption`` is None for a valid aggregate."""

    partition_key: str
    data: bytes
    records: tuple[Record, ...]
    corruption: Corruption | None = None

    @property
    def kind(self) -> str:
        return CORRUPT_AGGREGATE if self.corruption else AGGREGATE


def encode_aggregate(records: Sequence[Record], corruption: Corruption | None = None) -> Aggregate:
    """The aggregate of ``records``, in order, their keys shared through the key table.

    Corruptions: ``BAD_CHECKSUM`` inverts every bit of the MD5; ``NOT_PROTOBUF`` drops the
    message's last byte (a truncated write) under a valid MD5 of what is left;
    ``KEY_INDEX_OUT_OF_RANGE`` drops the last key from the table, so the user records that point
    at it point past its end. None makes the aggregate larger.
    """
    keys = list(dict.fromkeys(record.partition_key for record in records))
    index = {key: position for position, key in enumerate(keys)}
    if corruption is Corruption.KEY_INDEX_OUT_OF_RANGE:
        keys.pop()
    message = AggregatedRecord(partition_key_table=keys)
    for record in records:
        message.records.add(partition_key_index=index[record.partition_key], data=record.data)
    body = message.SerializeToString()
    if corruption is Corruption.NOT_PROTOBUF:
        body = body[:-1]  # inside the last user record, whose length prefix now overruns the message
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    if corruption is Corruption.BAD_CHECKSUM:
        digest = bytes(byte ^ 0xFF for byte in digest)
    return Aggregate(records[0].partition_key, MAGIC + body + digest, tuple(records), corruption)


def _varint_bytes(value: int) -> int:
    return max(1, -(-value.bit_length() // 7))


def _field_bytes(length: int) -> int:
    """A length-delimited field: its tag (1 byte below field number 16), its length, the payload."""
    return 1 + _varint_bytes(length) + length


def _added_bytes(record: Record, keys: dict[str, int]) -> int:
    """What ``record`` adds to an aggregate whose key table is ``keys``: its entry, and its key if new."""
    key = record.partition_key
    entry = 1 + _varint_bytes(keys.get(key, len(keys))) + _field_bytes(len(record.data))
    return _field_bytes(entry) + (0 if key in keys else _field_bytes(len(key.encode())))


def group_records(
    records: Iterable[Record], per_aggregate: int, max_bytes: int = MAX_BYTES_PER_RECORD
) -> Iterator[list[Record]]:
    """Consecutive runs of at most ``per_aggregate`` records, cut early where the aggregate
    (its data plus its partition key, which is what Kinesis limits) would pass ``max_bytes``.

    Raises:
        ValueError: for a record that does not fit in ``max_bytes`` even alone.
    """
    group: list[Record] = []
    keys: dict[str, int] = {}
    size = 0
    for record in records:
        if group and (len(group) == per_aggregate or size + _added_bytes(record, keys) > max_bytes):
            yield group
            group, keys = [], {}
        if not group:
            size = len(MAGIC) + DIGEST_BYTES + len(record.partition_key.encode())
        size += _added_bytes(record, keys)
        if size > max_bytes:
            raise ValueError(f"a record of {len(record.data)} bytes does not fit in a {max_bytes}-byte aggregate")
        keys.setdefault(record.partition_key, len(keys))
        group.append(record)
    if group:
        yield group


def aggregate_records(
    records: Iterable[Record],
    count: int,
    per_aggregate: int,
    *,
    seed: int,
    bad_ratio: float = 0.0,
    max_bytes: int = MAX_BYTES_PER_RECORD,
) -> Iterator[Aggregate]:
    """Yield the aggregates of ``group_records``; exactly ``int(aggregates * bad_ratio)`` are corrupt.

    ``records`` must hold ``count`` records. How many aggregates they make is known only at the
    end (1 MiB cuts), so each aggregate is drawn corrupt with probability remaining quota /
    remaining aggregates, against the fewest aggregates the records not yet grouped can make.
    That bound only grows, by at most one an aggregate, and is exact at the last one, so the
    quota is met exactly. Each corrupt aggregate's ``Corruption`` is drawn from ``CORRUPTIONS``.

    Raises:
        ValueError: if ``per_aggregate`` is below 1, ``bad_ratio`` outside [0, 1], or ``records``
            does not hold ``count`` records.
    """
    if per_aggregate < 1 or not 0 <= bad_ratio <= 1:
        raise ValueError("per_aggregate must be at least 1 and bad_ratio between 0 and 1")
    rng = random.Random(f"{seed}:aggregates")
    grouped = corrupt = 0
    for index, group in enumerate(group_records(records, per_aggregate, max_bytes)):
        if grouped + len(group) > count:
            raise ValueError(f"more than the {count} records announced")
        fewest_left = -(-(count - grouped) // per_aggregate)  # this one included
        quota = int((index + fewest_left) * bad_ratio) - corrupt
        corruption = None
        if rng.random() * fewest_left < quota:
            corruption = rng.choice(CORRUPTIONS)
            corrupt += 1
        grouped += len(group)
        yield encode_aggregate(group, corruption)
    if grouped != count:
        raise ValueError(f"{grouped} records, not the {count} announced")


def generate_aggregates(
    count: int,
    per_aggregate: int,
    *,
    seed: int,
    until: datetime,
    bad_ratio: float = 0.0,
    dup_ratio: float = 0.0,
    near_dup_ratio: float = 0.0,
    max_bytes: int = MAX_BYTES_PER_RECORD,
) -> Iterator[Aggregate]:
    """``generate_records(count, ...)``'s records, ``per_aggregate`` to an aggregate at most.

    ``bad_ratio`` applies twice: to the user records (``generate_records``) and to the aggregates
    (``aggregate_records``).
    """
    records = generate_records(
        count, seed=seed, until=until, bad_ratio=bad_ratio, dup_ratio=dup_ratio, near_dup_ratio=near_dup_ratio
    )
    return aggregate_records(records, count, per_aggregate, seed=seed, bad_ratio=bad_ratio, max_bytes=max_bytes)
