"""Validation and enrichment of raw Kinesis records: DataFrame in, DataFrame out.

No I/O, no configuration, no Python UDFs: everything is a Spark built-in, so it runs in the
JVM. ``word_count`` is the one exception: the writer counts words (sink.py), because Python's
``str.split()`` is the contract's definition and beats any JVM regex that matches it. The
article contract is in README.md ("Article contract"); the tests hold an independent reference
of it in ``tests/contract.py``.

Strict JSON types need VARIANT: ``from_json`` with a string field silently turns a number or
an object into its JSON text, so a mistyped field would pass. ``try_parse_json`` keeps each
value's type, which ``schema_of_variant`` reports.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

REQUIRED_FIELDS = ("article_id", "title", "content", "published_at")
OPTIONAL_FIELDS = ("author", "source", "url", "category", "language")
ENRICHED, QUARANTINED = "enriched", "quarantine"
# The ISO-8601 forms the contract accepts: a date, or a date and time with "T" or a space,
# optional seconds and fraction, optional "Z" or +hh:mm offset.
ISO_8601 = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?\z"
TIMESTAMP_PATTERNS = ("yyyy-MM-dd'T'HH:mm[:ss][.SSSSSS][XXX]", "yyyy-MM-dd HH:mm[:ss][.SSSSSS][XXX]", "yyyy-MM-dd")

ENRICHED_COLUMNS = (
    "article_id", "title", "content", "author", "source", "url", "category", "language",
    "published_at", "shard_id", "sequence_number", "arrival_time", "processed_at",
)  # fmt: skip
QUARANTINE_COLUMNS = ("raw_data", "error", "shard_id", "sequence_number", "arrival_time", "processed_at")
# What the writer receives: both outputs' columns, plus where each row goes.
OUTPUT_COLUMNS = ("kind", "dt", *ENRICHED_COLUMNS, "raw_data", "error")


def _json_type(document: Column, field: str) -> Column:
    """``STRING``, ``BIGINT``, ``OBJECT<...>``, ``VOID`` (JSON null), or null when absent."""
    return F.schema_of_variant(F.try_variant_get(document, f"$.{field}", "variant"))


def wrapped_json(text: Column) -> Column:
    """The payload parsed as the array ``[payload, 0]`` (see ``single_json_value``)."""
    return F.try_parse_json(F.concat(F.lit("["), text, F.lit(",0]")))


def single_json_value(wrapped: Column) -> Column:
    """The payload's one JSON value as a VARIANT; SQL null if it is not exactly one JSON value.

    Spark's JSON parsers stop after the first complete value and ignore what follows, so a record
    holding two articles back to back would pass as its first one. Parsed as the array
    ``[payload, 0]`` (``wrapped_json``), it has exactly the two elements ``[value, 0]`` only if
    the payload is one JSON value.
    """
    single = (F.try_variant_get(wrapped, "$[1]", "int") == 0) & F.try_variant_get(wrapped, "$[2]", "variant").isNull()
    return F.when(F.coalesce(single, F.lit(False)), F.try_variant_get(wrapped, "$[0]", "variant"))


def parse_published_at(text: Column) -> Column:
    """A UTC timestamp for the contract's ISO-8601 forms (no offset = UTC), else null."""
    parsed = F.coalesce(*[F.try_to_timestamp(text, F.lit(pattern)) for pattern in TIMESTAMP_PATTERNS])
    in_range = F.year(parsed).between(1, 9999)  # an offset can push 9999-12-31 past what readers hold
    return F.when(F.regexp_like(text, F.lit(ISO_8601)) & in_range, parsed)


def validation_error(text: Column, document: Column) -> tuple[Column, Column]:
    """The reason a payload is not a valid article (null when it is one), and its ``published_at``
    as a UTC timestamp (null when absent or not ISO-8601), given its text and its parsed JSON."""
    error = (
        F.when(~F.is_valid_utf8(text), F.lit("invalid UTF-8"))
        .when(document.isNull(), F.lit("not JSON"))
        .when(~F.schema_of_variant(document).startswith("OBJECT"), F.lit("not a JSON object"))
    )
    for field in REQUIRED_FIELDS:
        kind = _json_type(document, field)
        error = error.when(kind.isNull() | (kind == "VOID"), F.lit(f"missing {field}"))
        error = error.when(kind != "STRING", F.lit(f"{field} is not a string"))
    error = error.when(F.try_variant_get(document, "$.article_id", "string") == "", F.lit("article_id is empty"))
    published = parse_published_at(F.try_variant_get(document, "$.published_at", "string"))
    error = error.when(published.isNull(), F.lit("published_at is not ISO-8601"))
    return error, published


def prepare_records(raw: DataFrame) -> DataFrame:
    """Classify and enrich raw records (the data source's schema) into the writer's columns.

    Valid articles get typed fields, a UTC ``published_at`` timestamp, and
    ``dt`` = the UTC date they were published; everything else keeps its raw bytes and the
    reason, with ``dt`` = the UTC date it arrived. ``dedup_key`` is the article id, or for an
    invalid record its unique shard and sequence number (invalid records are never duplicates).
    """
    # One projection per step: Spark does not inline an expensive expression into a projection
    # that uses it many times (CollapseProject), so each payload is parsed once, not once per use.
    steps = raw.select("*", F.col("data").cast("string").alias("_text"))
    steps = steps.select("*", wrapped_json(F.col("_text")).alias("_wrapped"))
    steps = steps.select("*", single_json_value(F.col("_wrapped")).alias("_document"))
    document = F.col("_document")
    error, published = validation_error(F.col("_text"), document)
    fields = [F.try_variant_get(document, f"$.{name}", "string").alias(name) for name in REQUIRED_FIELDS]
    optional = [F.try_variant_get(document, f"$.{name}", "string").alias(name) for name in OPTIONAL_FIELDS]
    parsed = steps.select(*raw.columns, error.alias("error"), published.alias("published_ts"), *fields, *optional)
    valid = F.col("error").isNull()
    return parsed.select(
        F.when(valid, F.lit(ENRICHED)).otherwise(F.lit(QUARANTINED)).alias("kind"),
        F.when(valid, F.col("article_id"))
        .otherwise(F.concat(F.lit("invalid/"), "shard_id", F.lit("/"), "sequence_number"))
        .alias("dedup_key"),
        *[F.when(valid, F.col(name)).alias(name) for name in ("article_id", "title", "content", *OPTIONAL_FIELDS)],
        F.when(valid, F.col("published_ts")).alias("published_at"),
        "shard_id",
        "sequence_number",
        "arrival_time",
        F.when(~valid, F.col("data")).alias("raw_data"),
        "error",
    )


def output_rows(records: DataFrame) -> DataFrame:
    """Stamp ``processed_at`` and the ``dt`` partition, in the writer's column order."""
    dt = F.date_format(F.coalesce("published_at", "arrival_time"), "yyyy-MM-dd")
    return records.select(
        "kind",
        dt.alias("dt"),
        *[c for c in ENRICHED_COLUMNS if c != "processed_at"],
        F.current_timestamp().alias("processed_at"),
        "raw_data",
        "error",
    ).select(*OUTPUT_COLUMNS)
