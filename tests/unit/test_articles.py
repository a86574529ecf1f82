"""The article generator: contract, determinism, and the invalid/duplicate mix."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from news_populate.articles import BAD_KINDS, RecordKind, generate_records
from tests.support.contract import contract_violation, is_full_article, parse_published_at

UNTIL = datetime(2026, 11, 20, 12, tzinfo=UTC)

# What the reference validator must answer for each invalid kind.
EXPECTED_VIOLATION = {
    RecordKind.NOT_JSON: ("not JSON",),
    RecordKind.INVALID_UTF8: ("invalid UTF-8",),
    RecordKind.NOT_OBJECT: ("not a JSON object",),
    RecordKind.MISSING_FIELD: ("missing article_id", "missing title", "missing content", "missing published_at"),
    RecordKind.WRONG_TYPE: tuple(f"{f} is not a string" for f in ("article_id", "title", "content", "published_at")),
    RecordKind.BAD_TIMESTAMP: ("published_at is not ISO-8601",),
}


def records(count=1000, seed=3, **ratios):
    return list(generate_records(count, seed=seed, until=UNTIL, **ratios))


def test_same_seed_gives_byte_identical_records():
    """Two runs with one seed and one window end produce the same bytes and keys."""
    first, second = records(500, bad_ratio=0.1, dup_ratio=0.1), records(500, bad_ratio=0.1, dup_ratio=0.1)
    assert [(r.partition_key, r.data) for r in first] == [(r.partition_key, r.data) for r in second]


def test_different_seeds_give_different_articles():
    """The seed actually drives the content."""
    assert {r.data for r in records(50, seed=1)}.isdisjoint({r.data for r in records(50, seed=2)})


def test_valid_articles_follow_the_contract():
    """Every valid record is a full article, published in the 7 days before the window end."""
    for record in records(2000):
        assert record.kind is RecordKind.VALID
        assert contract_violation(record.data) is None
        article = json.loads(record.data)
        assert is_full_article(article), article
        assert record.partition_key == article["article_id"]
        assert UNTIL - timedelta(days=7) <= parse_published_at(article["published_at"]) < UNTIL
        assert article["url"].startswith("https://")


def test_article_lengths_range_from_briefs_to_long_reads():
    """Bodies run from a few words to about 3,000, averaging about 3 KB of JSON a record."""
    generated = records(5000)
    lengths = [len(json.loads(r.data)["content"].split()) for r in generated]
    assert min(lengths) <= 10
    assert 2000 <= max(lengths) <= 3000
    mean_bytes = sum(len(r.data) for r in generated) / len(generated)
    assert 2500 <= mean_bytes <= 4000


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 1.0])
def test_bad_ratio_gives_that_exact_share_of_invalid_records(ratio):
    """floor(count * ratio) records are invalid, and the reference validator rejects exactly those."""
    generated = records(1000, bad_ratio=ratio)
    invalid = [r for r in generated if r.kind in BAD_KINDS]
    assert len(invalid) == int(1000 * ratio)
    assert sum(contract_violation(r.data) is not None for r in generated) == len(invalid)


def test_each_invalid_kind_fails_validation_for_its_own_reason():
    """Every kind of bad record occurs and breaks the contract the way its name says."""
    generated = records(1200, bad_ratio=0.5)
    kinds = Counter(r.kind for r in generated if r.kind in BAD_KINDS)
    assert set(kinds) == set(BAD_KINDS)
    for record in generated:
        if record.kind in BAD_KINDS:
            assert contract_violation(record.data) in EXPECTED_VIOLATION[record.kind], record


def test_duplicates_resend_an_earlier_valid_article_byte_for_byte():
    """A duplicate repeats the payload and partition key of a valid record that came before it."""
    generated = records(2000, bad_ratio=0.1, dup_ratio=0.2)
    seen: set[tuple[str, bytes]] = set()
    duplicates = 0
    for record in generated:
        key = (record.partition_key, record.data)
        if record.kind is RecordKind.DUPLICATE:
            duplicates += 1
            assert key in seen
        elif record.kind is RecordKind.VALID:
            assert key not in seen
            seen.add(key)
    assert duplicates == 400


@pytest.mark.parametrize(
    ("bad_ratio", "dup_ratio"),
    [(-0.1, 0), (1.1, 0), (0, 1.0), (0.5, 0.5)],
    ids=["negative", "over-1", "all-dups", "sum"],
)
def test_impossible_ratios_are_rejected(bad_ratio, dup_ratio):
    """Ratios outside [0, 1], or that leave no valid article for duplicates to repeat, raise ValueError."""
    with pytest.raises(ValueError, match="ratio"):
        records(10, bad_ratio=bad_ratio, dup_ratio=dup_ratio)
