"""Hostile payloads at Kinesis's record limit: the shapes that once made validation quadratic.

Each is as large as a record may be, so a check that is not linear in the payload would take
minutes to hours on one of them (the nesting pre-check took 1.4 s at 16.5 KB on the first shape).
The unit tests give each the reference verdict; the integration test puts them through the job.
"""

from __future__ import annotations

import json
import uuid

RECORD_LIMIT = 1_000_000  # bytes of data per Kinesis record (1 MiB with the partition key)
DEEP = 600  # brackets, past the contract's nesting limit (512), so the nesting check runs


def article(**fields) -> dict:
    """A minimal valid article (id 1), with ``fields`` replacing or adding fields."""
    base = {"article_id": str(uuid.UUID(int=1)), "title": "t", "content": "a b", "published_at": "2026-11-20"}
    return {**base, **fields}


def record_limit_shapes(limit: int = RECORD_LIMIT) -> dict[str, bytes]:
    """Name -> payload of about ``limit`` bytes, each of a shape validation must get through in linear time."""
    prefix = b'{"article_id": "' + str(uuid.UUID(int=30)).encode() + b'", "deep": '
    valid = json.dumps(article(article_id=str(uuid.UUID(int=31)), content=""))
    words = (limit - len(valid)) // 5
    deep_padded = article(article_id=str(uuid.UUID(int=32)), padding="")
    deep_padded["deep"] = "DEEP"
    deep_text = json.dumps(deep_padded).replace('"DEEP"', "[" * 513 + "]" * 513)
    shapes = {
        "escaped quotes after deep brackets": prefix + b"[" * DEEP + b'"' + b'\\"' * ((limit - DEEP) // 2 - 40),
        "unterminated string": prefix + b'"' + b"a" * (limit - len(prefix) - 1),
        "unterminated string after deep brackets": prefix
        + b"[" * DEEP
        + b'"'
        + b"a" * (limit - len(prefix) - DEEP - 1),
        "whitespace": b" " * limit,
        "deep nesting padded to the limit": deep_text.replace(
            '"padding": ""', '"padding": "' + "p" * (limit - len(deep_text) - 10) + '"'
        ).encode(),
        "a valid article at the limit": json.dumps(
            article(article_id=str(uuid.UUID(int=31)), content=" ".join(["word"] * words))
        ).encode(),
    }
    assert all(len(payload) <= limit for payload in shapes.values()), {k: len(v) for k, v in shapes.items()}
    return shapes
