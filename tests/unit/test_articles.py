"""The article generator: contract, determinism, and the invalid/duplicate/near-duplicate mix."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from news_populate.articles import BAD_KINDS, NEAR_DUP_MAX_DELAY, RecordKind, generate_records
from news_populate.near_duplicates import AGENCIES, FOOTERS
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


def near_duplicate_pairs(generated) -> list[tuple[dict, dict]]:
    """(original, copy) articles of each near-duplicate, the original looked up among the VALID records."""
    originals = {r.partition_key: json.loads(r.data) for r in generated if r.kind is RecordKind.VALID}
    return [(originals[r.copy_of], json.loads(r.data)) for r in generated if r.kind is RecordKind.NEAR_DUPLICATE]


def shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def test_same_seed_gives_byte_identical_records():
    """Two runs with one seed and one window end produce the same bytes and keys, near-duplicates included."""
    mix = {"bad_ratio": 0.1, "dup_ratio": 0.1, "near_dup_ratio": 0.1}
    first = records(500, **mix)
    assert first == records(500, **mix)  # kinds, keys, bytes and the originals copied
    assert Counter(r.kind for r in first)[RecordKind.NEAR_DUPLICATE] == 50


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
    """A duplicate repeats the payload and partition key of a valid original that came before it
    (never of a near-duplicate)."""
    generated = records(2000, bad_ratio=0.1, dup_ratio=0.2, near_dup_ratio=0.2)
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


@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.3])
def test_near_dup_ratio_gives_that_exact_share_of_near_duplicates(ratio):
    """floor(count * ratio) records are near-duplicates, beside exact shares of invalid records and duplicates."""
    kinds = Counter(r.kind for r in records(1000, bad_ratio=0.1, dup_ratio=0.1, near_dup_ratio=ratio))
    assert kinds[RecordKind.NEAR_DUPLICATE] == int(1000 * ratio)
    assert (kinds[RecordKind.DUPLICATE], sum(kinds[kind] for kind in BAD_KINDS)) == (100, 100)


def test_near_duplicates_are_valid_articles_of_an_earlier_story_under_another_outlet():
    """A copy is a full article with a new id (its partition key), headline, outlet and url, the
    original's author and category, published at most NEAR_DUP_MAX_DELAY after an original sent before it."""
    generated = records(2000, bad_ratio=0.1, dup_ratio=0.1, near_dup_ratio=0.2)
    sent: set[str] = set()
    for record in generated:
        if record.kind is RecordKind.NEAR_DUPLICATE:
            assert contract_violation(record.data) is None
            assert record.partition_key == json.loads(record.data)["article_id"]
            assert record.copy_of in sent and record.partition_key not in sent
        if record.kind in (RecordKind.VALID, RecordKind.NEAR_DUPLICATE):
            sent.add(record.partition_key)
    pairs = near_duplicate_pairs(generated)
    assert len(pairs) == 400
    for original, copy in pairs:
        assert is_full_article(copy), copy
        for field in ("article_id", "title", "source", "url", "content"):
            assert copy[field] != original[field], field
        assert (copy["author"], copy["category"]) == (original["author"], original["category"])
        delay = parse_published_at(copy["published_at"]) - parse_published_at(original["published_at"])
        assert timedelta(0) <= delay < NEAR_DUP_MAX_DELAY
        assert parse_published_at(copy["published_at"]) <= UNTIL


def test_a_near_duplicate_body_is_its_original_with_a_byline_or_footer_and_a_few_words_replaced():
    """Strip the copy's byline (crediting the original) or footer, and what is left has the original's
    whitespace and words but for 1 to 4 replaced ones (0 if a draw gave a word back), each keeping its full stop."""
    replaced, additions = Counter(), Counter()
    for original, copy in near_duplicate_pairs(records(2000, near_dup_ratio=0.2)):
        bylines = [f"By {original['author']}, {original['source']}\n\n", *(f"({a}) — " for a in AGENCIES)]
        byline = next((b for b in bylines if copy["content"].startswith(b)), None)
        footer = next((f for f in FOOTERS if copy["content"].endswith(f"\n\n{f}")), None)
        assert (byline is None) != (footer is None), copy["content"]
        body = copy["content"].removeprefix(byline) if byline else copy["content"].removesuffix(f"\n\n{footer}")
        assert re.findall(r"\s+", body) == re.findall(r"\s+", original["content"])
        changed = [(a, b) for a, b in zip(original["content"].split(), body.split(), strict=True) if a != b]
        assert len(changed) <= 4
        assert all(a.endswith(".") == b.endswith(".") for a, b in changed)
        replaced[len(changed)] += 1
        additions["byline" if byline else "footer"] += 1
    assert {1, 2, 3, 4} <= set(replaced) <= {0, 1, 2, 3, 4} and min(additions.values()) >= 100, (replaced, additions)


def test_near_duplicates_of_long_articles_stay_very_similar():
    """As near_duplicates documents: copies of originals of 400 words or more have a 5-shingle
    Jaccard similarity above 0.85 to them."""
    pairs = near_duplicate_pairs(records(3000, near_dup_ratio=0.2))
    long_pairs = [(original, copy) for original, copy in pairs if len(original["content"].split()) >= 400]
    assert len(long_pairs) >= 100
    for original, copy in long_pairs:
        before, after = shingles(original["content"]), shingles(copy["content"])
        assert len(before & after) / len(before | after) > 0.85


@pytest.mark.parametrize(
    ("bad_ratio", "dup_ratio", "near_dup_ratio"),
    [(-0.1, 0, 0), (1.1, 0, 0), (0, 0, -0.1), (0, 0, 1.1), (0, 1.0, 0), (0, 0, 1.0), (0.5, 0.5, 0), (0.5, 0.2, 0.3)],
    ids=["negative", "over-1", "near-negative", "near-over-1", "all-dups", "all-near-dups", "sum", "sum-with-near"],
)
def test_impossible_ratios_are_rejected(bad_ratio, dup_ratio, near_dup_ratio):
    """Ratios outside [0, 1], or that leave no valid original for copies to repeat, raise ValueError."""
    with pytest.raises(ValueError, match="ratio"):
        records(10, bad_ratio=bad_ratio, dup_ratio=dup_ratio, near_dup_ratio=near_dup_ratio)
