"""The tests' own KPL decoder (tests/support/kpl.py): round trips, strictness, the reasons the job
gives, agreement with the job's decoder on malformed input, and the stream rows it makes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from news_etl.kinesis.aggregation import AggregateError, user_records
from tests.support import kpl
from tests.support.kinesis_reader import StreamRecord, deaggregated

NOT_PROTOBUF = "KPL aggregate is not a valid protobuf AggregatedRecord"
GOOD = kpl.aggregated_record(["k"], [kpl.user_record(0, b"{}")])


def tagged(number: int, wire_type: int) -> bytes:
    return kpl.varint(number << 3 | wire_type)


def job_decode(data: bytes) -> tuple[list[tuple[str, bytes]], str | None]:
    """The job's decoder, in ``kpl.decode``'s terms."""
    try:
        return [(record.partition_key, record.data) for record in user_records(data)], None
    except AggregateError as error:
        return [], str(error)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=200)), min_size=1, max_size=30))
def test_any_aggregate_decodes_to_its_user_records_in_order(pairs):
    assert kpl.decode(kpl.aggregate(pairs)) == (pairs, None)


def test_explicit_hash_keys_tags_unknown_fields_and_mistyped_fields_are_read_past():
    """Fields a reader does not use are skipped, whatever their wire type; a field given twice keeps its last value."""
    records = [
        kpl.user_record(1, b"one", tags={"t": "v"}, hash_key_index=0) + tagged(9, kpl.FIXED32) + b"abcd",
        kpl.user_record(0, b"first") + kpl.field(3, b"two") + kpl.field(1, b"not a varint"),
    ]
    message = (kpl.aggregated_record(["k0", "k1"], records, hash_keys=["\u00e9"]) + kpl.field(15, 7)
               + tagged(16, kpl.FIXED64) + bytes(8) + kpl.field(1, 5) + kpl.field(3, 2))  # fmt: skip
    assert kpl.decode(kpl.frame(message)) == ([("k1", b"one"), ("k0", b"two")], None)


@pytest.mark.parametrize("tag", [b"\xff\xff", kpl.field(2, b"v")], ids=["not-a-message", "without-its-key"])
def test_a_tag_is_read_past_unparsed(tag):
    """The job reads neither tags nor explicit hash keys, so a malformed one does not make the aggregate invalid."""
    data = kpl.frame(kpl.aggregated_record(["k"], [kpl.user_record(0, b"{}") + kpl.field(4, tag)]))
    assert kpl.decode(data) == job_decode(data) == ([("k", b"{}")], None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "KPL aggregate holds no user records"),
        (GOOD + tagged(9, 6), NOT_PROTOBUF),
        (GOOD + tagged(9, 7), NOT_PROTOBUF),
        (GOOD + tagged(0, kpl.VARINT) + b"\x00", NOT_PROTOBUF),  # field number 0
        (GOOD + kpl.varint(2**29 << 3) + b"\x00", NOT_PROTOBUF),  # field number 2**29
        (GOOD + tagged(9, kpl.VARINT) + b"\x80" * 10 + b"\x00", NOT_PROTOBUF),  # an 11-byte varint
        (GOOD + b"\xc8\x80\x80\x80\x80\x00" + b"\x00", NOT_PROTOBUF),  # a 6-byte tag
        (GOOD + tagged(9, kpl.LENGTH_DELIMITED) + b"\x81\x80\x80\x80\x80\x00" + b"x", NOT_PROTOBUF),  # 6-byte length
        (GOOD + tagged(9, kpl.VARINT) + b"\x80", NOT_PROTOBUF),  # the varint cut short
        (GOOD + tagged(9, kpl.LENGTH_DELIMITED) + b"\x05abc", NOT_PROTOBUF),  # 5 bytes announced, 3 there
        (GOOD + tagged(9, kpl.FIXED64) + bytes(7), NOT_PROTOBUF),
        (GOOD + tagged(9, kpl.FIXED32) + bytes(3), NOT_PROTOBUF),
        (GOOD + b"\x08", NOT_PROTOBUF),  # a tag and nothing after it
        (kpl.aggregated_record(["k"], [kpl.field(3, b"{}")]),
         "KPL aggregate has a user record without its partition key index or data"),
        (kpl.aggregated_record(["k"], [kpl.user_record(2**64 - 1, b"{}")]),
         "KPL aggregate user record has partition key index 18446744073709551615 out of range (the table has 1)"),
        (kpl.field(1, b"\xed\xa0\x80") + kpl.field(3, kpl.user_record(0, b"{}")),  # a UTF-16 surrogate
         "KPL aggregate has a partition key that is not UTF-8"),
    ],
)  # fmt: skip
def test_a_malformed_aggregate_gets_the_reason_the_job_gives(body, reason):
    """Strict where the wire format is; each reason word for word the job's, checked in the job's order."""
    data = kpl.frame(body)
    assert kpl.decode(data) == ([], reason)
    assert job_decode(data) == ([], reason)


def test_a_group_is_malformed_here_though_protobuf_reads_past_it():
    """The one place the two decoders part: wire types 3 and 4 (groups), which KPL never writes."""
    data = kpl.frame(GOOD + tagged(9, 3) + kpl.field(1, 5) + tagged(9, 4))
    assert kpl.decode(data) == ([], NOT_PROTOBUF)
    assert job_decode(data) == ([("k", b"{}")], None)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (kpl.MAGIC + bytes(15), "KPL aggregate too short for its checksum"),
        (kpl.bad_checksum([("k", b"{}")]), "KPL aggregate checksum mismatch"),
        (kpl.not_protobuf(), NOT_PROTOBUF),
        (kpl.truncated_message(b"{}"), NOT_PROTOBUF),
        (kpl.without_data(), "KPL aggregate has a user record without its partition key index or data"),
        (kpl.key_index_out_of_range(b"{}"),
         "KPL aggregate user record has partition key index 1 out of range (the table has 1)"),
        (kpl.empty(), "KPL aggregate holds no user records"),
    ],
    ids=["short", "checksum", "not-protobuf", "truncated", "no-data", "key-index", "empty"],
)  # fmt: skip
def test_each_corrupt_aggregate_the_tests_make_decodes_to_its_reason(data, reason):
    assert kpl.decode(data) == ([], reason)


# Protobuf-shaped bytes: fields of every wire type but groups (where the decoders part), some of
# them nested messages, some cut short, with key tables and user records among them. Raw bytes
# hold no byte whose low three bits are 3 or 4, so no group tag hides in them either.
GROUPLESS = st.lists(st.sampled_from([b for b in range(256) if b & 7 not in (3, 4)]), max_size=8).map(bytes)
FIELD_NUMBERS = st.sampled_from([1, 1, 2, 3, 3, 4, 15, 0, 2**29 - 1, 2**29])
VARINTS = st.one_of(st.integers(0, 4), st.sampled_from([127, 128, 2**32, 2**63, 2**64 - 1]), st.integers(0, 2**70))
FIXED = st.sampled_from([kpl.FIXED64, kpl.FIXED32]).flatmap(
    lambda wire_type: st.builds(lambda number, value: tagged(number, wire_type) + value, FIELD_NUMBERS,
                                st.binary(min_size=kpl.FIXED_WIDTH[wire_type], max_size=kpl.FIXED_WIDTH[wire_type]))
)  # fmt: skip


def protobuf_fields(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    varint_field = st.builds(kpl.field, FIELD_NUMBERS, VARINTS)
    delimited = st.builds(kpl.field, FIELD_NUMBERS, payloads)
    no_such_wire_type = st.builds(tagged, FIELD_NUMBERS, st.sampled_from([6, 7]))
    return st.one_of(varint_field, delimited, delimited, FIXED, no_such_wire_type)


def messages(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    whole = st.lists(protobuf_fields(payloads), max_size=5).map(b"".join)
    return st.one_of(whole, whole, st.tuples(whole, st.integers(0, 40)).map(lambda cut: cut[0][: cut[1]]))


def maybe(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """``strategy`` three times in four, else nothing."""
    return st.one_of(strategy, strategy, strategy, st.just(b""))


KEYS = st.one_of(st.sampled_from([b"k", b"j", b"\xc3\xa9", b""]), st.sampled_from([b"\xff", b"\xc0\x80"]))  # UTF-8, not
TAGS = st.builds(lambda key, value: kpl.field(4, key + value), maybe(KEYS.map(lambda k: kpl.field(1, k))),
                 maybe(st.just(kpl.field(2, b"v"))))  # fmt: skip
UNUSED_FIELDS = st.builds(kpl.field, st.sampled_from([2, 15]), st.one_of(st.integers(0, 2**64 - 1), GROUPLESS))
USER_RECORDS = st.builds(
    lambda index, data, extras: index + data + b"".join(extras),
    maybe(st.integers(0, 2).map(lambda index: kpl.field(1, index))),
    maybe(st.binary(max_size=8).map(lambda data: kpl.field(3, data))),  # data is never parsed
    st.lists(st.one_of(TAGS, UNUSED_FIELDS, protobuf_fields(GROUPLESS)), max_size=1),
)
AGGREGATE_BODIES = st.builds(
    lambda keys, records, extra: b"".join(kpl.field(1, key) for key in keys)
    + b"".join(kpl.field(3, record) for record in records) + extra,
    st.lists(KEYS, min_size=1, max_size=3), st.lists(USER_RECORDS, max_size=3),
    st.one_of(st.just(b""), st.just(b""), UNUSED_FIELDS, messages(GROUPLESS)),
)  # fmt: skip
BODIES = st.one_of(AGGREGATE_BODIES, AGGREGATE_BODIES, messages(st.recursive(GROUPLESS, messages, max_leaves=8)))


@settings(max_examples=500)
@given(BODIES)
def test_the_tests_decoder_agrees_with_the_jobs_on_protobuf_shaped_bytes(body):
    """Two decoders written apart, one by hand and one on Google's protobuf, give the same records or reason."""
    data = kpl.MAGIC + body + hashlib.md5(body).digest()
    assert kpl.decode(data) == job_decode(data)


def test_a_stream_read_back_is_its_plain_records_user_records_and_corrupt_aggregates():
    """Each user record keeps its Kinesis record's place and gets its index and key; a corrupt
    aggregate stays one record, with the reason."""
    arrival = datetime(2026, 11, 20, tzinfo=UTC)
    corrupt = kpl.bad_checksum([("k", b"{}")])
    stream = [
        StreamRecord("shard-0", "1", "p", b"plain", arrival),
        StreamRecord("shard-0", "2", "outer", kpl.aggregate([("a", b"one"), ("b", b"two")]), arrival),
        StreamRecord("shard-1", "3", "outer", corrupt, arrival),
    ]
    rows = deaggregated(stream)
    assert [(row.place, row.partition_key, row.data, row.aggregate_error) for row in rows] == [
        (("shard-0", "1", None), "p", b"plain", None),
        (("shard-0", "2", 0), "a", b"one", None),
        (("shard-0", "2", 1), "b", b"two", None),
        (("shard-1", "3", None), "outer", corrupt, "KPL aggregate checksum mismatch"),
    ]
    assert {row.arrival_time for row in rows} == {arrival}
