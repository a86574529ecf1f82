"""The band keys (news_etl.near_dup) against the oracle's definition of similarity
(tests/support/near_dup_oracle.py, which computes it exactly and shares no code with the job)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from news_etl.near_dup import BANDS, CHUNK_BYTES, band_keys, normalized
from tests.support.near_dup_oracle import jaccard, shingles, syndicated_stream, words


def shared(a: list[int] | None, b: list[int] | None) -> bool:
    return a is not None and b is not None and any(x == y for x, y in zip(a, b, strict=True))


def test_texts_with_the_same_shingles_have_the_same_keys_and_a_text_without_words_none():
    same = ["Hello, WORLD! Été à Paris.", "hello world été à paris", "  HELLO -- world; ÉTÉ À PARIS!!"]
    assert len({tuple(keys) for keys in band_keys(same)}) == 1
    assert {frozenset(shingles(text)) for text in same} == {frozenset(shingles(same[0]))}
    assert band_keys(["", "  ... !!", "a"])[:2] == [None, None]
    assert len(band_keys(["a"])[0]) == BANDS
    assert band_keys(["one two three four five six"]) != band_keys(["two three four five six one"])


def test_a_batch_gives_each_text_the_keys_it_has_alone_across_chunks():
    rng = random.Random(5)
    words = [f"w{n}" for n in range(3000)]
    texts = [" ".join(rng.choices(words, k=rng.randint(0, 600))) for _ in range(700)]
    texts.append("x" * (CHUNK_BYTES + 10))  # one text longer than a chunk
    assert sum(map(len, texts)) > 2 * CHUNK_BYTES
    assert band_keys(texts) == [band_keys([text])[0] for text in texts]


def test_copies_share_a_key_as_the_s_curve_says_and_distinct_stories_do_not():
    items = syndicated_stream(seed=11, stories=300)
    content = {item.article["article_id"]: item.article["content"] for item in items}
    keys = dict(zip(content, band_keys(list(content.values())), strict=True))
    original = {item.story: item.article["article_id"] for item in items if item.parent is None}
    found = {"high": [], "between": []}
    for item in items:
        if item.parent is not None:
            similarity = jaccard(item.article["content"], content[original[item.story]])
            band = "high" if similarity >= 0.8 else "between" if similarity >= 0.7 else None
            if band:
                found[band].append(shared(keys[item.article["article_id"]], keys[original[item.story]]))
    # One pair's chance to share a key: 0.9995 at J = 0.8, 0.956 at 0.7 (docs/design.md).
    assert sum(found["high"]) / len(found["high"]) >= 0.97 and len(found["high"]) > 50
    assert sum(found["between"]) / len(found["between"]) >= 0.85 and len(found["between"]) > 50
    originals = list(original.values())
    pairs = list(itertools.combinations(originals, 2))
    assert not any(shared(keys[a], keys[b]) for a, b in pairs), "two distinct stories share a key"


# ASCII, and non-ASCII letters, digits and punctuation: some that lower() changes, some by context.
ALPHABET = [*"aZ_9 .,-'\n", *"\u00e9\u00c9\u00df\u201c\u201d\u2014\u2019\u2026\u03a3\u03c2\u00a9\u0661\u0663\u4e2d",
            *"\u00a0\u2028\u0130\u01c5"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET)))
def test_the_words_are_the_oracles_words_whatever_the_characters(text):
    assert normalized(text).split() == [word.encode() for word in words(text)]
