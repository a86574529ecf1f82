"""Validation and enrichment of raw records (each verdict agrees with the reference contract), and the rows
the writer receives from them (``news_etl.sink``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from news_etl.clusters import ASSIGN_INPUT, ClusterIndex
from news_etl.job import with_clusters
from news_etl.resume import invalid_keys
from news_etl.schemas import OUTPUT_COLUMNS, PREPARED_SCHEMA
from news_etl.settings import DELTA, PARQUET
from news_etl.sink import output_rows, rows_to_write
from news_etl.transform import classify, prepare_records
from tests.support.contract import REQUIRED_FIELDS, contract_violation

RAW_SCHEMA = (
    "shard_id string, sequence_number string, sub_sequence_number bigint, partition_key string, "
    "arrival_time timestamp, data binary, aggregate_error string"
)
ARRIVAL = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MISSING = object()  # an override that removes the field


def article(**overrides) -> bytes:
    """A minimal valid article (required fields only), with fields replaced or removed."""
    fields = {
        "article_id": "7ed63dac-fa44-4f04-99dc-8eb4e371cf85",
        "title": "Late writer kid black order",
        "content": "Serve popular site girl prove summer.",
        "published_at": "2026-11-14T12:18:23Z",
    }
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not MISSING}).encode()


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, the absolute instant a Spark timestamp holds."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def raw(shard_id: str, sequence_number: str, arrival: datetime, data: bytes, *, sub: int | None = None,
        aggregate_error: str | None = None) -> tuple:  # fmt: skip
    """A raw record as the source yields it (``RAW_SCHEMA``); ``sub`` for a user record of an aggregate."""
    return (shard_id, sequence_number, sub, "k", arrival, data, aggregate_error)


def raw_frame(spark, payloads: list[bytes], shard_id: str = "shardId-000000000000"):
    rows = [raw(shard_id, str(1000 + i), ARRIVAL, payload) for i, payload in enumerate(payloads)]
    return spark.createDataFrame(rows, RAW_SCHEMA)


def nested(depth: int) -> bytes:
    """A valid article with an extra field nested ``depth`` levels inside the article object."""
    return article()[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"


DUPLICATE_ID_LAST_VALID = (
    b'{"article_id": 7, "title": "t", "content": "c", "published_at": "2026-11-14T12:18:23Z", "article_id": "b"}'
)


def _wrong_types():
    for name in REQUIRED_FIELDS:
        for label, value in (("number", 42), ("object", {"text": "x"}), ("list", ["x"])):
            yield pytest.param(article(**{name: value}), f"{name} is not a string", id=f"{name}-{label}")


VALIDATION_CASES = [
    pytest.param(article(), None, id="valid-minimal"),
    pytest.param(article(content="  Serve\u3000popular\x1csite \n girl "), None, id="valid-unicode-whitespace"),
    pytest.param(
        article(author="A. Writer", language="en", views=12, tags=["a", "b"], extra={"nested": [1, None]}),
        None,
        id="valid-extra-fields-ignored",
    ),
    pytest.param(article(published_at="2026-11-14T12:18:23+02:00"), None, id="valid-published-at-offset"),
    pytest.param(article(published_at="2026-11-14T12:18:23"), None, id="valid-published-at-no-offset"),
    pytest.param(article().replace(b"Late writer", b"Late \xc3\x28writer"), "invalid UTF-8", id="invalid-utf8"),
    pytest.param(b"\xff\xfe\xfd", "invalid UTF-8", id="invalid-utf8-only"),
    pytest.param(b"hello, world", "not JSON", id="not-json"),
    pytest.param(b"", "not JSON", id="empty-payload"),
    pytest.param(b"  \n ", "not JSON", id="whitespace-payload"),
    pytest.param(article()[:-12], "not JSON", id="truncated-json"),
    pytest.param(article() + article(), "not JSON", id="two-objects-back-to-back"),
    pytest.param(b'[{"article_id": "a"}]', "not a JSON object", id="top-level-array"),
    pytest.param(b'"an article"', "not a JSON object", id="top-level-string"),
    pytest.param(b"42", "not a JSON object", id="top-level-number"),
    pytest.param(b"null", "not a JSON object", id="top-level-null"),
    *[pytest.param(article(**{name: MISSING}), f"missing {name}", id=f"{name}-missing") for name in REQUIRED_FIELDS],
    *[pytest.param(article(**{name: None}), f"missing {name}", id=f"{name}-null") for name in REQUIRED_FIELDS],
    *_wrong_types(),
    pytest.param(article(title=True), "title is not a string", id="title-boolean"),
    pytest.param(article(article_id=""), "article_id is empty", id="article-id-empty"),
    pytest.param(article(article_id="a" * 256), None, id="article-id-256-bytes"),
    pytest.param(article(article_id="a" * 257), "article_id longer than 256 bytes", id="article-id-257-bytes"),
    pytest.param(article(article_id="\u00e9" * 128), None, id="article-id-128-two-byte-characters"),
    pytest.param(
        article(article_id="\u00e9" * 129), "article_id longer than 256 bytes", id="article-id-129-two-byte-characters"
    ),
    pytest.param(article(article_id="\U0001f600" * 65), "article_id longer than 256 bytes", id="article-id-65-emoji"),
    pytest.param(article(article_id="x" * 65536), "article_id longer than 256 bytes", id="article-id-64-kib"),
    pytest.param(article(published_at="yesterday"), "published_at is not ISO-8601", id="published-at-word"),
    pytest.param(article(published_at=""), "published_at is not ISO-8601", id="published-at-empty"),
    pytest.param(
        article(published_at="2026-13-45T25:61:00Z"), "published_at is not ISO-8601", id="published-at-out-of-range"
    ),
    pytest.param(article(published_at="12:18:23"), "published_at is not ISO-8601", id="published-at-time-only"),
    pytest.param(article(published_at="2026-11-14T12:18Z"), None, id="valid-published-at-minutes-utc"),
    pytest.param(article(published_at="2026-11-14"), None, id="valid-published-at-date-only"),
    pytest.param(article(published_at="2026-11-14 12:18:23.5"), None, id="valid-published-at-space-fraction"),
    pytest.param(article(published_at="2026"), "published_at is not ISO-8601", id="published-at-year-only"),
    pytest.param(article(published_at="2026-02-30T00:00Z"), "published_at is not ISO-8601", id="published-at-feb-30"),
    pytest.param(
        article(published_at="9999-12-31T23:59:59-05:00"), "published_at is not ISO-8601", id="published-at-past-9999"
    ),
    pytest.param(article() + b" x", "not JSON", id="text-after-the-object"),
    pytest.param(article() + b"]", "not JSON", id="bracket-after-the-object"),
    pytest.param(article() + b",", "not JSON", id="comma-after-the-object"),
    pytest.param(article() + b"  \n", None, id="whitespace-after-the-object"),
    pytest.param(article()[:-1] + b', "views": NaN}', "not JSON", id="nan-value"),
    pytest.param(DUPLICATE_ID_LAST_VALID, None, id="duplicate-key-last-valid"),
    pytest.param(article(title="a\ud800b"), "not JSON", id="unpaired-surrogate-escape"),
    pytest.param(article(title="a\U0001f600b"), None, id="valid-surrogate-pair-escape"),
    pytest.param(
        article(title="a\udc00b").replace(b"\\udc00", b"\\uDC00"), "not JSON", id="unpaired-low-surrogate-upper"
    ),
    pytest.param(article(extra="\ud83d"), "not JSON", id="unpaired-surrogate-in-an-extra-field"),
    pytest.param(article(**{"k\udfff": 1}), "not JSON", id="unpaired-surrogate-in-a-key"),
    pytest.param(nested(511), None, id="nested-512-levels"),
    pytest.param(nested(512), "not JSON", id="nested-513-levels"),
    pytest.param(nested(5000), "not JSON", id="nested-far-too-deep"),
    pytest.param(article(extra="[" * 600), None, id="brackets-inside-a-string-do-not-nest"),
    pytest.param(
        b'{"article_id": "a", "title": "t", "content": "c", "published_at": "2026-11-14T12:18:23Z", "title": 7}',
        "title is not a string",
        id="duplicate-key-last-invalid",
    ),
]
PAYLOADS = [case.values[0] for case in VALIDATION_CASES]


@pytest.fixture(scope="module")
def prepared(spark) -> dict[bytes, Row]:
    """Every payload of the matrix through prepare_records in one Spark job, keyed by payload."""
    assert len(set(PAYLOADS)) == len(PAYLOADS), "each matrix payload must be distinct"
    frame = prepare_records(raw_frame(spark, PAYLOADS)).withColumn("published_us", F.unix_micros("published_at"))
    rows = frame.drop("published_at").collect()
    return {PAYLOADS[int(row.sequence_number) - 1000]: row for row in rows}


@pytest.mark.parametrize(("payload", "expected"), VALIDATION_CASES)
def test_validation_reason_matches_the_reference_contract(prepared, payload, expected):
    """The verdict through Spark is the expected reason, and the reference validator gives the same one."""
    assert (prepared[payload].error, contract_violation(payload)) == (expected, expected)


def test_the_read_tasks_decoder_gives_the_same_verdicts():
    """classify, as the source's read task calls it (no Spark), gives each matrix payload its reason."""
    batch = pa.RecordBatch.from_pydict(
        {
            "shard_id": ["shardId-000000000000"] * len(PAYLOADS),
            "sequence_number": [str(1000 + i) for i in range(len(PAYLOADS))],
            "sub_sequence_number": pa.nulls(len(PAYLOADS), pa.int64()),
            "arrival_time": pa.array([ARRIVAL] * len(PAYLOADS), pa.timestamp("us", tz="UTC")),
            "data": pa.array(PAYLOADS, pa.binary()),
            "aggregate_error": pa.nulls(len(PAYLOADS), pa.string()),
        }
    )
    rows = classify(batch)
    assert rows.schema == PREPARED_SCHEMA
    assert rows.column("error").to_pylist() == [case.values[1] for case in VALIDATION_CASES]
    assert rows.column("sequence_number").to_pylist() == batch.column("sequence_number").to_pylist()


@pytest.mark.parametrize(
    ("published_at", "utc"),
    [
        ("2026-11-14T12:18:23Z", datetime(2026, 11, 14, 12, 18, 23, tzinfo=UTC)),
        ("2026-11-14T12:18:23+02:00", datetime(2026, 11, 14, 10, 18, 23, tzinfo=UTC)),
        ("2026-11-14T12:18:23", datetime(2026, 11, 14, 12, 18, 23, tzinfo=UTC)),
    ],
)
def test_valid_article_is_enriched_with_its_utc_publication_time(prepared, published_at, utc):
    """A valid article is enriched, keyed by its id, with published_at converted to the UTC instant."""
    row = prepared[article(published_at=published_at)]
    assert row.kind == "enriched"
    assert row.published_us == micros(utc)
    assert row.dedup_key == row.article_id == "7ed63dac-fa44-4f04-99dc-8eb4e371cf85"
    assert (row.title, row.content) == ("Late writer kid black order", "Serve popular site girl prove summer.")
    assert (row.raw_data, row.error) == (None, None)


def test_optional_fields_are_typed_and_null_when_absent(prepared):
    """Optional fields that are present come through as strings; absent ones are null."""
    row = prepared[article(author="A. Writer", language="en", views=12, tags=["a", "b"], extra={"nested": [1, None]})]
    assert (row.author, row.language) == ("A. Writer", "en")
    assert (row.source, row.url, row.category) == (None, None, None)


def test_an_optional_field_that_is_not_a_string_keeps_its_json_text(spark):
    """A number or object where an optional string belongs is kept as its JSON, not dropped."""
    frame = raw_frame(spark, [article(author=42, source={"name": "Wire"}, url=None)])
    row = prepare_records(frame).collect()[0]
    assert (row.kind, row.author, row.source, row.url) == ("enriched", "42", '{"name": "Wire"}', None)


def test_articles_get_their_word_count_and_quarantined_records_none(prepared):
    """word_count is the content's len(str.split()); a quarantined record has none."""
    valid = prepared[article(content="  Serve\u3000popular\x1csite \n girl ")]
    assert (valid.kind, valid.word_count) == ("enriched", 4)
    assert prepared[b"hello, world"].word_count is None


@pytest.mark.parametrize(
    "payload",
    [
        article().replace(b"Late writer", b"Late \xc3\x28writer"),
        b"\xff\xfe\xfd",
        article()[:-12],
        article(published_at="yesterday"),
        b"",
    ],
    ids=["invalid-utf8", "invalid-utf8-only", "truncated", "bad-timestamp", "empty"],
)
def test_invalid_record_is_quarantined_with_its_exact_bytes(prepared, payload):
    """A quarantined record keeps its raw bytes unchanged and exposes no article fields."""
    row = prepared[payload]
    assert row.kind == "quarantine"
    assert bytes(row.raw_data) == payload
    assert (row.article_id, row.title, row.content, row.published_us) == (None,) * 4


def test_quarantined_records_never_share_a_dedup_key(spark):
    """Identical invalid payloads on other shards or sequence numbers keep distinct keys, unlike any article id."""
    bad = article(published_at="yesterday")  # its article_id is a valid-looking id
    rows = [
        raw("shardId-000000000000", "1001", ARRIVAL, bad),
        raw("shardId-000000000000", "1002", ARRIVAL, bad),
        raw("shardId-000000000001", "1001", ARRIVAL, bad),
        raw("shardId-000000000001", "1002", ARRIVAL, b"not json"),
    ]
    keys = [row.dedup_key for row in prepare_records(spark.createDataFrame(rows, RAW_SCHEMA)).collect()]
    assert len(set(keys)) == 4
    assert None not in keys
    assert "7ed63dac-fa44-4f04-99dc-8eb4e371cf85" not in keys


def test_duplicate_json_keys_keep_the_last_value(prepared):
    """With a key repeated, the last occurrence is the one validated and kept, as in Python's json."""
    row = prepared[DUPLICATE_ID_LAST_VALID]
    assert (row.kind, row.article_id, row.dedup_key) == ("enriched", "b", "b")


# --- the writer's rows (news_etl.sink) ------------------------------------------------------

WRITER_COLUMNS = [
    "kind", "dt",
    "article_id", "title", "content", "author", "source", "url", "category", "language",
    "published_at", "word_count", "cluster_id", "first_in_cluster", "split", "near_dup_bands",
    "shard_id", "sequence_number", "sub_sequence_number", "arrival_time",
    "processed_at",
    "raw_data", "error",
]  # fmt: skip


def clustered(batch: DataFrame) -> DataFrame:
    """The batch with its articles' clusters, as the job's batch handler gives them (an empty index)."""
    articles = batch.where(F.col("kind") == "enriched").select(*ASSIGN_INPUT).toArrow()
    return with_clusters(batch, ClusterIndex(horizon_us=3600 * 10**6).assign(articles, (0.98, 0.01, 0.01)))


def test_output_rows_partition_by_utc_arrival_date(spark):
    """dt is the UTC date of arrival_time for every row, whatever the article says it was published."""
    # 2026-11-21 01:30 at +02:00 is still 2026-11-20 in UTC.
    just_after_midnight_east = datetime(2026, 11, 21, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    rows = [
        raw("shardId-000000000000", "1", ARRIVAL, article(published_at="2026-11-14T23:30:00-02:00")),
        raw("shardId-000000000000", "2", just_after_midnight_east, b"not json"),
        raw(
            "shardId-000000000000",
            "3",
            just_after_midnight_east,
            article(article_id="other", published_at="2100-01-01T00:00:00"),
        ),
    ]
    out = output_rows(clustered(prepare_records(spark.createDataFrame(rows, RAW_SCHEMA))))
    assertDataFrameEqual(
        out.select("sequence_number", "kind", "dt"),
        [Row(sequence_number="1", kind="enriched", dt="2026-11-20"),
         Row(sequence_number="2", kind="quarantine", dt="2026-11-20"),
         Row(sequence_number="3", kind="enriched", dt="2026-11-20")],
    )  # fmt: skip
    assert out.filter(F.col("processed_at").isNull()).count() == 0


def test_output_rows_have_the_writer_columns_in_order(spark):
    """The writer receives exactly the documented columns, in the documented order."""
    out = output_rows(clustered(prepare_records(raw_frame(spark, [article()]))))
    assert out.columns == WRITER_COLUMNS
    assert list(OUTPUT_COLUMNS) == WRITER_COLUMNS
    assert out.schema["published_at"].dataType.simpleString() == "timestamp"
    assert out.schema["word_count"].dataType.simpleString() == "int"


def test_a_delta_batch_is_written_without_a_shuffle_of_its_own_and_plain_parquet_after_one(spark):
    """The dedup's shuffle is the only one a Delta batch crosses (its tasks write what they hold);
    plain Parquet is shuffled by kind and dt, so that one task writes each file."""
    batch = clustered(prepare_records(raw_frame(spark, [article(), b"not json"])))

    def exchanges(output_format: str) -> int:  # shuffles; the clusters' broadcast is not one
        plan = rows_to_write(batch, output_format)._jdf.queryExecution().executedPlan().toString()
        return len(re.findall(r"(?<!Broadcast)Exchange ", plan))

    assert {DELTA: exchanges(DELTA), PARQUET: exchanges(PARQUET)} == {DELTA: 0, PARQUET: 1}


def test_the_tables_give_each_quarantined_row_the_dedup_key_it_was_read_with():
    """``resume.invalid_keys`` rebuilds, from a quarantined row's place, the key ``classify`` gave it
    (a plain record, and a user record of a KPL aggregate)."""
    batch = pa.RecordBatch.from_pydict(
        {
            "shard_id": ["shardId-000000000000", "shardId-000000000001"],
            "sequence_number": ["4960", "4961"],
            "sub_sequence_number": pa.array([None, 3], pa.int64()),
            "arrival_time": pa.array([ARRIVAL] * 2, pa.timestamp("us", tz="UTC")),
            "data": pa.array([b"not json", b"[]"], pa.binary()),
            "aggregate_error": pa.nulls(2, pa.string()),
        }
    )
    rows = pa.Table.from_batches([classify(batch)])
    expected = ["invalid/shardId-000000000000/4960", "invalid/shardId-000000000001/4961/3"]
    assert invalid_keys(rows).to_pylist() == rows.column("dedup_key").to_pylist() == expected
