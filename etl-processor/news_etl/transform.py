"""Validation and enrichment of raw Kinesis records, one Arrow batch at a time.

Each payload is decoded and parsed once, by ``orjson`` where it gives what Python's ``json``
gives and by ``json`` otherwise (``load_json``), in the task that read it from Kinesis
(``classify`` is the source's decoder; ``prepare_records`` applies it to a DataFrame of raw
records): the verdict, the typed fields and ``word_count`` come out of that one parse as Arrow
columns. The article contract is in docs/contract.md; the tests hold an independent
reference of it in ``tests/support/contract.py``.

Why not Spark built-ins: the strict contract needs VARIANT (``from_json`` silently turns a
number into its text), and parsing 3 KB payloads as VARIANT, then validating them with a dozen
expressions, cost the JVM about 3 CPU-s per 10k records, four times what reading them from
Kinesis costs. This costs about a fifth of that (BENCHMARKS.md, "What the profile showed").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from types import NoneType

import orjson
import pyarrow as pa
from pyspark.sql import DataFrame

from news_etl.near_dup import band_keys
from news_etl.schemas import (
    ARTICLE_FIELDS,
    ENRICHED,
    NEAR_DUP_BANDS,
    PREPARED_SCHEMA,
    PREPARED_SPARK_SCHEMA,
    QUARANTINED,
    RECORD_FIELDS,
)

REQUIRED_FIELDS = ("article_id", "title", "content", "published_at")
# The longest article_id accepted, in UTF-8 bytes: every id is kept in the dedup state for the
# whole horizon, so a producer must not make that state grow with its ids (a UUID is 36 bytes;
# Kinesis bounds a partition key, the same id, to 256 characters).
MAX_ARTICLE_ID_BYTES = 256
# The ISO-8601 forms the contract accepts: a date, or a date and time with "T" or a space,
# optional seconds and fraction, optional "Z" or +hh:mm offset. ASCII digits only.
ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?", re.ASCII)
# An escaped UTF-16 surrogate; only a payload holding one needs the unpaired-surrogate check.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
# The contract's nesting limit: arrays and objects nested deeper are "not JSON". Checked before
# parsing, so the verdict does not depend on how much stack the parser has left.
MAX_DEPTH = 512
# What nesting depends on, matched left to right, each character once (so linear in the payload
# whatever its shape): an escape (a backslash and the character after it, so that an escaped quote
# does not end a string), a quote, a bracket. A regex matching whole strings instead backtracked
# quadratically on an unterminated string of escaped quotes: 1.4 s at 16.5 KB, over an hour at the
# 1 MiB record limit. Outside a string a backslash is not JSON whatever follows it.
NESTING_TOKEN = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


class InvalidArticleError(ValueError):
    """A payload is not a valid article; the message is the quarantine reason."""


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text; brackets inside strings do not count."""
    depth = deepest = 0
    in_string = False
    for token in NESTING_TOKEN.findall(text):
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:  # inside a string, or an escape
            continue
        elif token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_published_at(text: str) -> datetime:
    """The UTC instant of one of the contract's ISO-8601 forms (no offset = UTC)."""
    if not ISO_8601.fullmatch(text):
        raise InvalidArticleError("published_at is not ISO-8601")
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a calendar time, or outside years 1-9999 in UTC
        raise InvalidArticleError("published_at is not ISO-8601") from None


USED_FIELDS = (*ARTICLE_FIELDS, "published_at")  # what the job reads of an article


def _json_loads(text: str):
    """The contract's JSON: Python's ``json``, NaN and Infinity and unpaired surrogates refused."""
    value = json.loads(text, parse_constant=_reject_constant)  # NaN and Infinity are not JSON
    if SURROGATE_ESCAPE.search(text):  # an unpaired one is not text
        json.dumps(value, ensure_ascii=False).encode()
    return value


def load_json(text: str):
    """``_json_loads(text)``, by ``orjson`` where that is the same and at less than half the cost.

    orjson refuses NaN, Infinity, unpaired surrogate escapes and numbers beyond a double, where
    ``json`` refuses the first three and reads the last as infinity: any refusal goes to ``json``.
    orjson reads integers beyond 64 bits as floats, where ``json`` keeps them exact: the job uses
    only the article's fields, so an article whose fields are not all strings (or absent) goes to
    ``json`` too. Otherwise both give the same verdict and the same article fields
    (property-tested against ``json``); other keys' values may differ and are not used.
    json.loads costs 5.3 µs per 3 KB article, orjson 2.0 (one process, best of 9).
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _json_loads(text)
    if type(value) is not dict or not all(type(value.get(name)) in (str, NoneType) for name in USED_FIELDS):
        return _json_loads(text)
    return value


def parse_article(data: bytes) -> dict:
    """The article a payload holds, its required fields checked; raises ``InvalidArticleError`` with the reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArticleError("invalid UTF-8") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and nesting_depth(text) > MAX_DEPTH:
        raise InvalidArticleError("not JSON")
    try:
        article = load_json(text)
    except (ValueError, UnicodeEncodeError, RecursionError):
        raise InvalidArticleError("not JSON") from None
    if not isinstance(article, dict):
        raise InvalidArticleError("not a JSON object")
    for name in REQUIRED_FIELDS:
        value = article.get(name)
        if value is None:
            raise InvalidArticleError(f"missing {name}")
        if not isinstance(value, str):
            raise InvalidArticleError(f"{name} is not a string")
    if not article["article_id"]:
        raise InvalidArticleError("article_id is empty")
    if len(article["article_id"].encode()) > MAX_ARTICLE_ID_BYTES:
        raise InvalidArticleError(f"article_id longer than {MAX_ARTICLE_ID_BYTES} bytes")
    article["published_at"] = parse_published_at(article["published_at"])
    return article


def _text(value) -> str | None:
    """An optional field as text: strings as they are, other values as Python's ``json`` writes them."""
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# ASCII text as bytes: 1 for a character of a word, 0 for whitespace as ``str.split()`` has it
# (which includes the separators \x1c-\x1f).
WORD_BYTES = bytes(0 if chr(code).isspace() else 1 for code in range(128)) + bytes(128)


def word_count(content: str) -> int:
    """The contract's ``word_count``: words separated by any Unicode whitespace, as ``str.split()``.

    ASCII text (``isascii`` is free) is counted without making the words: its bytes become 1 in a
    word and 0 between words, and the words are the 1s whose previous byte is 0, counted in one
    big integer. That costs 5.7 µs per 3 KB article where ``str.split`` costs 12.9 (one process,
    best of 9); property-tested against ``str.split``.
    """
    if not content.isascii():
        return len(content.split())
    in_word = int.from_bytes(content.encode("ascii").translate(WORD_BYTES))
    return (in_word & ~(in_word >> 8)).bit_count()


PASSED_THROUGH = [field.name for field in RECORD_FIELDS]  # the source's columns, unchanged
# What ``classify`` reads of each raw record.
RAW_COLUMNS = ("shard_id", "sequence_number", "sub_sequence_number", "data", "aggregate_error")


# The columns ``classify`` builds row by row (the others are ``PASSED_THROUGH`` or the band keys,
# made for the whole batch at once), in the order of its row tuples.
BUILT = tuple(name for name in PREPARED_SCHEMA.names if name not in (*PASSED_THROUGH, NEAR_DUP_BANDS.name))
# Their values for a quarantined record, but for dedup_key, raw_data and error.
QUARANTINED_ROW = dict.fromkeys(BUILT, None) | {"kind": QUARANTINED}


def _enriched_row(article: dict) -> tuple:
    """The ``BUILT`` columns of a valid article."""
    texts = [_text(article.get(name)) for name in ARTICLE_FIELDS]
    words = word_count(article["content"])
    return (ENRICHED, article["article_id"], *texts, article["published_at"], words, None, None)


def _quarantined_row(data: bytes, reason: str, place: tuple) -> tuple:
    """The ``BUILT`` columns of an invalid record; ``place``: shard, sequence number and, in a KPL
    aggregate, its index (``dedup_key`` is unique: invalid records are never duplicates)."""
    origin = "/".join(str(part) for part in place if part is not None)
    row = QUARANTINED_ROW | {"dedup_key": f"invalid/{origin}", "raw_data": data, "error": reason}
    return tuple(row.values())


def classify(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One batch of raw records (the data source's schema) as ``PREPARED_SCHEMA`` rows."""
    rows, contents = [], {}  # contents: row -> a valid article's content
    records = zip(*[batch.column(name).to_pylist() for name in RAW_COLUMNS], strict=True)
    for shard_id, sequence_number, sub_sequence_number, data, aggregate_error in records:
        try:
            if aggregate_error is not None:
                raise InvalidArticleError(aggregate_error)
            article = parse_article(data)
            contents[len(rows)] = article["content"]
            rows.append(_enriched_row(article))
        except InvalidArticleError as reason:
            rows.append(_quarantined_row(data, str(reason), (shard_id, sequence_number, sub_sequence_number)))
    columns = zip(*rows, strict=True) if rows else [()] * len(BUILT)
    arrays = {name: pa.array(values, PREPARED_SCHEMA.field(name).type)
              for name, values in zip(BUILT, columns, strict=True)}  # fmt: skip
    bands = dict(zip(contents, band_keys(list(contents.values())), strict=True))
    arrays[NEAR_DUP_BANDS.name] = pa.array([bands.get(row) for row in range(len(rows))], NEAR_DUP_BANDS.type)
    arrays.update({name: batch.column(name) for name in PASSED_THROUGH})
    return pa.RecordBatch.from_arrays([arrays[name] for name in PREPARED_SCHEMA.names], schema=PREPARED_SCHEMA)


def classify_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield classify(batch)


def prepare_records(raw: DataFrame) -> DataFrame:
    """Classify and enrich a DataFrame of raw records (the data source's schema), as the stream's
    read tasks do with ``classify`` (the job passes it to the source as its decoder).

    Valid articles get typed fields, a UTC ``published_at`` timestamp and ``word_count``
    (``len(content.split())``, Python's definition of whitespace); everything else keeps its raw
    bytes and the reason. ``dedup_key`` is the article id, or for an invalid record its unique
    shard, sequence number and index in a KPL aggregate (invalid records are never duplicates).
    """
    raw = raw.select(*PASSED_THROUGH, "data", "aggregate_error")
    return raw.mapInArrow(classify_batches, PREPARED_SPARK_SCHEMA)
