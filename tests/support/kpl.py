"""An independent KPL aggregate encoder and decoder for the tests: the protobuf wire format by hand.

The job decodes aggregates with Google's ``protobuf`` (``news_etl.kinesis.aggregation``) and
``populate --aggregate`` encodes them with it too; this module shares no code with either, so a
test that round-trips through it checks both against the format itself: the magic bytes
``f3 89 9a c2``, the ``AggregatedRecord`` message (KPL's aggregation.proto) and its MD5.

``decode`` is how the tests read a stream back (tests/support/kinesis_reader.py): a KPL
aggregate's (partition key, data) user records, or the reason the job must quarantine it with.
It is strict where the wire format is: a truncated field, a wire type other than varint (0),
64-bit (1), length-delimited (2) or 32-bit (5), a varint longer than 10 bytes (a tag or a length
longer than 5), field number 0 or above 2**29 - 1 make an invalid protobuf message. Unknown
fields, and known fields of another wire type, are read past, as protobuf does. (protobuf also
reads past unknown groups, wire types 3 and 4; KPL never writes one, and this decoder rejects them.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])
DIGEST_BYTES = 16  # MD5
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
FIXED_WIDTH = {FIXED64: 8, FIXED32: 4}
MAX_VARINT_BYTES, MAX_TAG_BYTES, MAX_LENGTH_BYTES = 10, 5, 5  # as protobuf's decoders read them
MAX_FIELD_NUMBER = 2**29 - 1
UINT64 = 2**64 - 1  # a longer varint keeps its low 64 bits

# The job's quarantine reasons (news_etl.kinesis.aggregation), written out again here.
TOO_SHORT = "KPL aggregate too short for its checksum"
CHECKSUM_MISMATCH = "KPL aggregate checksum mismatch"
NOT_PROTOBUF = "KPL aggregate is not a valid protobuf AggregatedRecord"
INCOMPLETE_RECORD = "KPL aggregate has a user record without its partition key index or data"
KEY_NOT_UTF8 = "KPL aggregate has a partition key that is not UTF-8"
NO_RECORDS = "KPL aggregate holds no user records"


def key_index_out_of_range_reason(index: int, keys: int) -> str:
    return f"KPL aggregate user record has partition key index {index} out of range (the table has {keys})"


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


# --- Decoding ---------------------------------------------------------------------------------


class MalformedMessageError(ValueError):
    """Bytes that are not a protobuf message."""


def is_aggregate(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def read_varint(buffer: bytes, position: int, max_bytes: int = MAX_VARINT_BYTES) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    value = 0
    for shift, index in enumerate(range(position, min(position + max_bytes, len(buffer)))):
        value |= (buffer[index] & 0x7F) << (7 * shift)
        if buffer[index] < 0x80:
            return value & UINT64, index + 1
    raise MalformedMessageError(f"a truncated or overlong varint at byte {position}")


def fields(message: bytes) -> Iterator[tuple[int, int, int | bytes | None]]:
    """Each field of ``message`` in order: (number, wire type, value), a fixed-width value as None."""
    position = 0
    while position < len(message):
        tag, position = read_varint(message, position, MAX_TAG_BYTES)
        number, wire_type = tag >> 3, tag & 7
        if not 0 < number <= MAX_FIELD_NUMBER:
            raise MalformedMessageError(f"field number {number}")
        value: int | bytes | None = None
        if wire_type == VARINT:
            value, position = read_varint(message, position)
        elif wire_type == LENGTH_DELIMITED:
            length, position = read_varint(message, position, MAX_LENGTH_BYTES)
            value, position = message[position : position + length], position + length
        elif wire_type in FIXED_WIDTH:
            position += FIXED_WIDTH[wire_type]
        else:
            raise MalformedMessageError(f"wire type {wire_type}")
        if position > len(message):
            raise MalformedMessageError(f"field {number} runs past the end")
        yield number, wire_type, value


def _record(message: bytes) -> tuple[int | None, bytes | None, bool]:
    """A ``Record``'s partition key index, data, and whether both are there. Its explicit hash key
    index (2) and tags (4) are skipped unparsed, as the job skips them. A field given twice keeps
    its last value, as protobuf does."""
    key_index = data = None
    for number, wire_type, value in fields(message):
        if (number, wire_type) == (1, VARINT):
            key_index = value
        elif (number, wire_type) == (3, LENGTH_DELIMITED):
            data = value
    return key_index, data, key_index is not None and data is not None


def _aggregated_record(body: bytes) -> tuple[list[bytes], list[tuple[int | None, bytes | None, bool]]]:
    """An ``AggregatedRecord``'s partition key table, and each ``_record`` of it."""
    keys, records = [], []
    for number, wire_type, value in fields(body):
        if (number, wire_type) == (1, LENGTH_DELIMITED):
            keys.append(value)
        elif (number, wire_type) == (3, LENGTH_DELIMITED):
            records.append(_record(value))
    return keys, records


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _invalid(keys: list[bytes], records: list[tuple[int | None, bytes | None, bool]]) -> str | None:
    """Why a well-formed ``AggregatedRecord`` is no valid aggregate, or None."""
    if not all(complete for _, _, complete in records):
        return INCOMPLETE_RECORD
    if not all(_is_utf8(key) for key in keys):
        return KEY_NOT_UTF8
    if not records:
        return NO_RECORDS
    past_the_table = [key_index for key_index, _, _ in records if key_index >= len(keys)]
    return key_index_out_of_range_reason(past_the_table[0], len(keys)) if past_the_table else None


def decode(data: bytes) -> tuple[list[tuple[str, bytes]], str | None]:
    """A KPL aggregate's (partition key, data) user records in order, and None; or no records and
    the reason it is not a valid aggregate, checked in the order the job checks."""
    if len(data) < len(MAGIC) + DIGEST_BYTES:
        return [], TOO_SHORT
    body, digest = data[len(MAGIC) : -DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.md5(body).digest() != digest:
        return [], CHECKSUM_MISMATCH
    try:
        keys, records = _aggregated_record(body)
    except MalformedMessageError:
        return [], NOT_PROTOBUF
    reason = _invalid(keys, records)
    if reason:
        return [], reason
    return [(keys[key_index].decode(), record_data) for key_index, record_data, _ in records], None
