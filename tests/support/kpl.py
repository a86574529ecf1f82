"""An independent KPL aggregate encoder for the tests: the protobuf wire format written by hand.

The job decodes aggregates with Google's ``protobuf`` (``news_etl.kinesis.aggregation``) and
``populate --aggregate`` encodes them with it too; this module shares no code with either, so a
test that round-trips through it checks both against the format itself: the magic bytes
``f3 89 9a c2``, the ``AggregatedRecord`` message (KPL's aggregation.proto) and its MD5.
"""

from __future__ import annotations

import hashlib

MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])
VARINT, LENGTH_DELIMITED = 0, 2


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes."""
    if isinstance(payload, int):
        return varint(number << 3 | VARINT) + varint(payload)
    return varint(number << 3 | LENGTH_DELIMITED) + varint(len(payload)) + payload


def user_record(key_index: int, data: bytes, *, tags: dict[str, str] | None = None,
                hash_key_index: int | None = None) -> bytes:  # fmt: skip
    """A ``Record`` message: fields 1 (partition key index), 2 (explicit hash key index), 3 (data), 4 (tags)."""
    message = field(1, key_index)
    if hash_key_index is not None:
        message += field(2, hash_key_index)
    message += field(3, data)
    for key, value in (tags or {}).items():
        message += field(4, field(1, key.encode()) + field(2, value.encode()))
    return message


def aggregated_record(keys: list[str], records: list[bytes], hash_keys: list[str] = ()) -> bytes:
    """An ``AggregatedRecord`` message from its key tables and ``user_record`` messages."""
    return (
        b"".join(field(1, key.encode()) for key in keys)
        + b"".join(field(2, key.encode()) for key in hash_keys)
        + b"".join(field(3, record) for record in records)
    )


def frame(message: bytes, *, digest: bytes | None = None) -> bytes:
    """A Kinesis record holding ``message``: magic, message, MD5 (or the ``digest`` given)."""
    return MAGIC + message + (hashlib.md5(message).digest() if digest is None else digest)


def aggregate(user_records: list[tuple[str, bytes]]) -> bytes:
    """A valid aggregate of (partition key, data) pairs, keys shared through the key table."""
    keys = list(dict.fromkeys(key for key, _ in user_records))
    records = [user_record(keys.index(key), data) for key, data in user_records]
    return frame(aggregated_record(keys, records))


# Corrupt aggregates, each with the reason the job must quarantine it with.
def bad_checksum(user_records: list[tuple[str, bytes]]) -> bytes:
    good = aggregate(user_records)
    return good[:-16] + bytes(16)


def key_index_out_of_range(data: bytes) -> bytes:
    return frame(aggregated_record(["key"], [user_record(1, data)]))


def not_protobuf() -> bytes:
    return frame(b"\xff\xff\xff")  # a field of wire type 7: no such type


def truncated_message(data: bytes) -> bytes:
    return frame(aggregated_record(["key"], [user_record(0, data)])[:-1])


def without_data() -> bytes:
    return frame(aggregated_record(["key"], [field(1, 0)]))


def empty() -> bytes:
    return frame(aggregated_record(["key"], []))
