"""De-aggregation of records that a KPL producer packed together (the KPL aggregation format).

The Kinesis Producer Library (and the producers that copy its format) packs many user records
into one Kinesis record, to save PUT payload units and to pass the per-shard records-per-second
limit. Such a record is:

- the magic bytes ``f3 89 9a c2``;
- a protobuf ``AggregatedRecord`` (KPL's ``aggregation.proto``, of which ``AGGREGATION_PROTO``
  below declares what the job reads): a table of partition keys, a table of explicit hash keys,
  and the user records, each with the index of its partition key, its data and optional tags;
- the MD5 of the protobuf bytes (16 bytes).

``user_records`` returns the user records in order; their index in the aggregate is their
``sub_sequence_number``. A record that starts with the magic bytes but is not a whole, valid
aggregate raises ``AggregateError`` with the reason, so that the caller quarantines it: it is
never read as a plain record, and never dropped.

Parsing is Google's ``protobuf`` package (its C parser, upb: linear in the bytes), from a
descriptor built at import, so no generated code or ``protoc`` is needed (why not
``aws_kinesis_agg``: docs/design.md). The descriptor declares only what the job reads: explicit
hash keys and tags are unknown fields to it, skipped as protobuf skips any. Partition keys are
declared as bytes (the same wire format as proto2 strings) and decoded here, because protobuf's
C and pure-Python parsers treat invalid UTF-8 in a string differently; proto2's ``required`` is
checked here too (upb does not enforce it).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_BYTES = 16  # MD5
# What the job reads of KPL's aggregation.proto (field numbers and labels are the KPL's), as a
# FileDescriptorProto in protobuf's text format; explicit_hash_key_table (2), and a record's
# explicit_hash_key_index (2) and tags (4), are left out.
AGGREGATION_PROTO = """
name: "kpl_aggregation.proto"
package: "kpl"
syntax: "proto2"
message_type {
  name: "AggregatedRecord"
  field { name: "partition_key_table" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
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


class AggregateError(ValueError):
    """A record starts with the KPL magic bytes but is not a valid aggregate; the message is why."""


class UserRecord(NamedTuple):
    partition_key: str
    data: bytes


def is_aggregate(data: bytes) -> bool:
    """Whether a Kinesis record claims to be a KPL aggregate (starts with the magic bytes)."""
    return data[:4] == MAGIC


def user_records(data: bytes) -> list[UserRecord]:
    """The user records of a KPL aggregate, in order; raises ``AggregateError`` with the reason."""
    if len(data) < len(MAGIC) + DIGEST_BYTES:
        raise AggregateError("KPL aggregate too short for its checksum")
    body, digest = data[len(MAGIC) : -DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.md5(body, usedforsecurity=False).digest() != digest:
        raise AggregateError("KPL aggregate checksum mismatch")
    aggregate = AggregatedRecord()
    try:
        aggregate.ParseFromString(body)
    except DecodeError:
        raise AggregateError("KPL aggregate is not a valid protobuf AggregatedRecord") from None
    if not aggregate.IsInitialized():
        raise AggregateError("KPL aggregate has a user record without its partition key index or data")
    try:
        keys = [key.decode("utf-8") for key in aggregate.partition_key_table]
    except UnicodeDecodeError:
        raise AggregateError("KPL aggregate has a partition key that is not UTF-8") from None
    if not aggregate.records:
        raise AggregateError("KPL aggregate holds no user records")
    records = []
    for record in aggregate.records:
        if record.partition_key_index >= len(keys):
            raise AggregateError(
                f"KPL aggregate user record has partition key index {record.partition_key_index} "
                f"out of range (the table has {len(keys)})"
            )
        records.append(UserRecord(keys[record.partition_key_index], record.data))
    return records
