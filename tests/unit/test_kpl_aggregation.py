"""KPL aggregates: the job's decoder against an independent encoder, and what the read task makes of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from news_etl.kinesis.aggregation import AggregateError, UserRecord, is_aggregate, user_records
from news_etl.kinesis.reader import records_to_batches
from news_etl.transform import classify
from tests.support import kpl

ARRIVAL = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
SHARD = "shardId-000000000000"


def article(article_id: str) -> bytes:
    return json.dumps({"article_id": article_id, "title": "t", "content": "three small words",
                       "published_at": "2026-11-14T12:18:23Z"}).encode()  # fmt: skip


def kinesis_record(sequence_number: str, data: bytes, key: str = "outer") -> dict:
    return {"SequenceNumber": sequence_number, "PartitionKey": key, "ApproximateArrivalTimestamp": ARRIVAL,
            "Data": data}  # fmt: skip


@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=200)), min_size=1, max_size=30))
def test_the_user_records_of_any_aggregate_come_back_in_order(pairs):
    assert user_records(kpl.aggregate(pairs)) == [UserRecord(key, data) for key, data in pairs]


def test_explicit_hash_keys_tags_and_unknown_fields_are_ignored():
    """Fields the job does not use are read past, as the KPL's own decoders do."""
    records = [kpl.user_record(1, b"one", tags={"t": "v"}, hash_key_index=0), kpl.user_record(0, b"two")]
    message = kpl.aggregated_record(["k0", "k1"], records, hash_keys=["12345"]) + kpl.field(15, 7)
    assert user_records(kpl.frame(message)) == [UserRecord("k1", b"one"), UserRecord("k0", b"two")]


def test_only_records_that_start_with_the_magic_bytes_are_aggregates():
    assert is_aggregate(kpl.aggregate([("k", b"x")]))
    assert not is_aggregate(article("a"))
    assert not is_aggregate(kpl.MAGIC[:3])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (kpl.bad_checksum([("k", b"{}")]), "KPL aggregate checksum mismatch"),
        (kpl.MAGIC + bytes(15), "KPL aggregate too short for its checksum"),
        (kpl.not_protobuf(), "KPL aggregate is not a valid protobuf AggregatedRecord"),
        (kpl.truncated_message(b"{}"), "KPL aggregate is not a valid protobuf AggregatedRecord"),
        (kpl.without_data(), "KPL aggregate has a user record without its partition key index or data"),
        (kpl.key_index_out_of_range(b"{}"),
         "KPL aggregate user record has partition key index 1 out of range (the table has 1)"),
        (kpl.frame(kpl.field(1, b"\xff") + kpl.field(3, kpl.user_record(0, b"{}"))),
         "KPL aggregate has a partition key that is not UTF-8"),
        (kpl.empty(), "KPL aggregate holds no user records"),
    ],
    ids=["checksum", "short", "not-protobuf", "truncated", "no-data", "key-index", "key-not-utf8", "empty"],
)  # fmt: skip
def test_a_corrupt_aggregate_raises_with_its_reason(data, reason):
    with pytest.raises(AggregateError) as raised:
        user_records(data)
    assert str(raised.value) == reason


def test_the_read_task_enriches_user_records_and_quarantines_bad_ones_with_their_own_keys():
    """Valid user records become articles; a bad user record and a corrupt aggregate go to quarantine,
    whole, with the reason; every quarantined row has a dedup key of its own."""
    corrupt = kpl.bad_checksum([("k", article("lost"))])
    page = [
        kinesis_record("100", article("plain")),
        kinesis_record("101", kpl.aggregate([("a", article("one")), ("b", b"not json"), ("c", b"not json")])),
        kinesis_record("102", corrupt),
    ]
    rows = classify(*records_to_batches(SHARD, page)).to_pylist()
    assert [(r["kind"], r["sequence_number"], r["sub_sequence_number"], r["article_id"], r["error"]) for r in rows] == [
        ("enriched", "100", None, "plain", None),
        ("enriched", "101", 0, "one", None),
        ("quarantine", "101", 1, None, "not JSON"),
        ("quarantine", "101", 2, None, "not JSON"),
        ("quarantine", "102", None, None, "KPL aggregate checksum mismatch"),
    ]
    assert rows[-1]["raw_data"] == corrupt
    assert rows[2]["raw_data"] == b"not json"
    quarantined = [r["dedup_key"] for r in rows if r["kind"] == "quarantine"]
    assert quarantined == [f"invalid/{SHARD}/101/1", f"invalid/{SHARD}/101/2", f"invalid/{SHARD}/102"]


def test_an_article_sent_plain_and_in_an_aggregate_has_one_dedup_key():
    """Dedup is by article id, so an article re-sent through a KPL producer is a duplicate."""
    page = [kinesis_record("100", article("same")), kinesis_record("101", kpl.aggregate([("k", article("same"))]))]
    rows = classify(*records_to_batches(SHARD, page))
    assert rows.column("dedup_key").to_pylist() == ["same", "same"]


def test_a_page_without_aggregates_has_null_sub_sequence_numbers():
    [batch] = records_to_batches(SHARD, [kinesis_record("100", article("a")), kinesis_record("101", b"{}")])
    assert batch.column("sub_sequence_number").to_pylist() == [None, None]
    assert batch.column("sub_sequence_number").type == pa.int64()
    assert batch.column("aggregate_error").null_count == 2
