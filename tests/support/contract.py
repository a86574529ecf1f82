"""The article JSON contract (docs/contract.md), as the tests check it on both sides.

An independent reference: plain ``json`` and ``datetime``, no code shared with the producer or
the ETL, so a mistake in either shows up as a disagreement with this file.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

ARTICLE_FIELDS = (
    "article_id",
    "title",
    "content",
    "author",
    "source",
    "url",
    "category",
    "language",
    "published_at",
)
REQUIRED_FIELDS = ("article_id", "title", "content", "published_at")
MAX_DEPTH = 512  # arrays and objects nested deeper are not JSON for the contract
MAX_ARTICLE_ID_BYTES = 256  # the longest article_id, UTF-8 encoded


# A date, or date and time ("T" or space), optional seconds and fraction, optional Z or +hh:mm.
ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?")


def parse_published_at(text: str) -> datetime:
    """The contract's ISO-8601 forms; a time without an offset is UTC.

    Raises:
        ValueError: for anything else, or a time that does not exist in UTC's calendar.
    """
    if not ISO_8601.fullmatch(text):
        raise ValueError(f"not one of the contract's ISO-8601 forms: {text!r}")
    value = datetime.fromisoformat(text)
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range in UTC: {text!r}") from None


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, walking the text one character at a time."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def contract_violation(data: bytes) -> str | None:
    """Why ``data`` is not a valid article for a consumer, or None when it is one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    if nesting_depth(text) > MAX_DEPTH:
        return "not JSON"
    try:
        article = json.loads(text, parse_constant=_reject_constant)  # NaN and Infinity are not JSON
        json.dumps(article, ensure_ascii=False).encode()  # an escaped lone surrogate is not text
    except (ValueError, UnicodeEncodeError, RecursionError):
        return "not JSON"
    if not isinstance(article, dict):
        return "not a JSON object"
    return field_violation(article)


def field_violation(article: dict) -> str | None:
    """Why a JSON object is not a valid article (its required fields), or None when it is one."""
    for name in REQUIRED_FIELDS:
        if name not in article or article[name] is None:
            return f"missing {name}"
        if not isinstance(article[name], str):
            return f"{name} is not a string"
    if not article["article_id"]:
        return "article_id is empty"
    if len(article["article_id"].encode("utf-8")) > MAX_ARTICLE_ID_BYTES:
        return f"article_id longer than {MAX_ARTICLE_ID_BYTES} bytes"
    try:
        parse_published_at(article["published_at"])
    except ValueError:
        return "published_at is not ISO-8601"
    return None


def is_full_article(article: dict) -> bool:
    """What the producer promises beyond validity: every field, a UUID id, a UTC timestamp."""
    return (
        tuple(article) == ARTICLE_FIELDS
        and all(isinstance(article[name], str) and article[name] for name in ARTICLE_FIELDS)
        and str(uuid.UUID(article["article_id"])) == article["article_id"]
        and article["published_at"].endswith("Z")
    )
