"""Validation of hostile payloads: the reference contract's verdict, whatever the payload's shape."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from news_etl.transform import InvalidArticleError, parse_article
from tests.support.contract import contract_violation
from tests.support.hostile import DEEP, record_limit_shapes

SHAPES = record_limit_shapes()


def verdict(payload: bytes) -> str | None:
    """The job's quarantine reason for ``payload``, or None for a valid article."""
    try:
        parse_article(payload)
    except InvalidArticleError as reason:
        return str(reason)
    return None


@pytest.mark.parametrize("name", SHAPES)
def test_payloads_at_the_record_limit_get_the_reference_verdict(name):
    """Each record-limit shape (escaped quotes after deep brackets, unterminated strings, whitespace,
    deep nesting padded out, a valid article) gets the contract's verdict."""
    payload = SHAPES[name]
    assert verdict(payload) == contract_violation(payload)


def test_the_record_limit_shapes_cover_both_verdicts():
    """The shapes include a valid article and payloads quarantined for nesting and for syntax."""
    verdicts = {name: verdict(payload) for name, payload in SHAPES.items()}
    assert verdicts["a valid article at the limit"] is None
    assert verdicts["deep nesting padded to the limit"] == "not JSON"
    assert verdicts["escaped quotes after deep brackets"] == "not JSON"


@given(st.integers(DEEP - 100, DEEP + 100), st.text(alphabet='[]{}"\\a :,1', max_size=400))
def test_deeply_bracketed_text_gets_the_reference_verdict(depth, tail):
    """Past 512 brackets the nesting check runs: strings, escapes and brackets in any order get the
    contract's verdict (its reference walks the text a character at a time)."""
    payload = ("[" * depth + tail).encode()
    assert verdict(payload) == contract_violation(payload)


@given(st.integers(500, 600), st.text(alphabet='[]{}"\\a', max_size=200))
def test_a_deep_article_field_gets_the_reference_verdict(depth, inner):
    """Inside an otherwise valid article, deep brackets with strings and escapes among them."""
    payload = (
        '{"article_id": "a", "title": "t", "content": "c", "published_at": "2026-11-20", "deep": '
        + "[" * depth
        + inner
        + "]" * depth
        + "}"
    ).encode()
    assert verdict(payload) == contract_violation(payload)
