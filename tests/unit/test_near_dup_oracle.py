"""The near-duplicate oracle itself: its similarity on hand-made texts, its stream's truth, its measure."""

from __future__ import annotations

import json
import math
import random
import re
from collections import defaultdict
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.contract import contract_violation, is_full_article
from tests.support.near_dup_oracle import (
    Item,
    cluster_quality,
    copy_similarities,
    jaccard,
    shingles,
    syndicated_stream,
)

QUOTED = re.compile(r"“[^”]*”")


@pytest.fixture(scope="module")
def stream():
    return syndicated_stream(seed=11, stories=150)


def originals(items):
    return [item for item in items if item.parent is None]


def test_shingles_are_runs_of_five_lowercased_words():
    """Six words give the two windows of five, lower-cased, punctuation and spacing gone."""
    assert shingles("The quick, brown FOX\n\njumps -- over.") == {
        ("the", "quick", "brown", "fox", "jumps"),
        ("quick", "brown", "fox", "jumps", "over"),
    }


def test_letters_digits_and_underscore_are_word_characters():
    """``\\w`` is Unicode: accented letters, digits and ``_`` belong to a word; an apostrophe splits one."""
    assert shingles("Café_au lait, 42 NAÏVE l'été") == {
        ("café_au", "lait", "42", "naïve", "l"),
        ("lait", "42", "naïve", "l", "été"),
    }


def test_text_of_one_to_four_words_is_one_shingle_of_all_of_them():
    """A brief of fewer than five words still has a shingle: its words."""
    assert shingles("Breaking: News!") == {("breaking", "news")}
    assert shingles("one two three four") == {("one", "two", "three", "four")}


@pytest.mark.parametrize("text", ["", "   \n\n ", "-- ?! … ©"])
def test_text_without_words_has_no_shingles(text):
    """Whitespace and punctuation alone make no shingle."""
    assert shingles(text) == set()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a b c d e f", "a b c d e g", 1 / 3),  # {abcde, bcdef} against {abcde, bcdeg}
        ("A, b. C d E f!", "a b c d e f", 1.0),  # case and punctuation do not count
        ("a b c d e a b c d e", "a b c d e", 1 / 5),  # sets: the repeated window counts once
        ("one two", "one two three", 0.0),  # short texts: one whole shingle each, and they differ
        ("one two", "One, two.", 1.0),
        ("", "", 0.0),  # nothing to compare
        ("", "a b c", 0.0),
    ],
)
def test_jaccard_of_hand_made_pairs(a, b, expected):
    """The Jaccard index of the two shingle sets, worked out by hand."""
    assert jaccard(a, b) == pytest.approx(expected)


@given(st.text(alphabet="ab .,", max_size=40), st.text(alphabet="ab .,", max_size=40))
def test_jaccard_is_symmetric_and_bounded(a, b):
    """Over texts of few distinct words (so that shingles do coincide): symmetric, in [0, 1], 1 on itself."""
    assert jaccard(a, b) == jaccard(b, a)
    assert 0 <= jaccard(a, b) <= 1
    assert jaccard(a, a) == (1.0 if shingles(a) else 0.0)


def test_same_seed_gives_the_same_stream():
    """The stream is a function of its arguments: the same seed, the same articles and truth."""
    assert syndicated_stream(seed=5, stories=30) == syndicated_stream(seed=5, stories=30)


def test_different_seeds_give_different_articles():
    """The seed drives the text: two seeds share no content and no id."""
    first, second = syndicated_stream(seed=5, stories=30), syndicated_stream(seed=6, stories=30)
    assert {i.article["content"] for i in first}.isdisjoint({i.article["content"] for i in second})
    assert {i.article["article_id"] for i in first}.isdisjoint({i.article["article_id"] for i in second})


def test_articles_are_full_articles_of_the_contract(stream):
    """Every article is valid by the reference contract and has every field, a UUID and a UTC time."""
    for item in stream:
        assert contract_violation(json.dumps(item.article).encode()) is None
        assert is_full_article(item.article), item.article


def test_copies_come_after_their_parent_in_the_stream(stream):
    """One original a story, each copy after its parent (same story) in order and time, some copied from copies."""
    position = {item.article["article_id"]: at for at, item in enumerate(stream)}
    assert len(originals(stream)) == len({item.story for item in stream}) == 150
    chained = 0
    for at, item in enumerate(stream):
        if item.parent is None:
            continue
        parent = stream[position[item.parent]]
        assert position[item.parent] < at
        assert parent.article["published_at"] < item.article["published_at"]
        assert parent.story == item.story
        chained += parent.parent is not None
    assert chained >= 10


def test_stream_validates_its_arguments():
    """Negative counts and shares outside [0, 1] are refused where they enter."""
    with pytest.raises(ValueError, match="must not be negative"):
        syndicated_stream(seed=1, stories=-1)
    with pytest.raises(ValueError, match="copy_of_copy_share"):
        syndicated_stream(seed=1, stories=3, copy_of_copy_share=1.5)


def test_distinct_stories_share_almost_no_shingles(stream):
    """Two distinct stories, drawn at random: the most similar of 200 pairs is far below any threshold."""
    rng = random.Random(0)
    pairs = [rng.sample(originals(stream), 2) for _ in range(200)]
    assert max(jaccard(a.article["content"], b.article["content"]) for a, b in pairs) < 0.2


def test_distinct_stories_share_boilerplate(stream):
    """Distinct stories of one outlet share its footer and some share a quote: similar, but not copies."""
    by_outlet = defaultdict(list)
    for item in originals(stream):
        by_outlet[item.article["source"]].append(item.article["content"])
    same_outlet = [jaccard(a, b) for contents in by_outlet.values() for a, b in combinations(contents, 2)]
    assert sum(similarity > 0.01 for similarity in same_outlet) >= 100
    assert max(same_outlet) < 0.2
    stories_of_quote = defaultdict(set)
    for item in originals(stream):
        for quote in QUOTED.findall(item.article["content"]):
            stories_of_quote[quote].add(item.story)
    assert max(len(stories) for stories in stories_of_quote.values()) >= 2


def test_copies_span_the_jaccard_bands(stream):
    """Copies' similarity to their original spreads over 0.5 to 1, enough in each band to report recall by."""
    similarities = list(copy_similarities(stream).values())
    share = {
        "0.5-0.7": sum(0.5 <= j < 0.7 for j in similarities) / len(similarities),
        "0.7-0.8": sum(0.7 <= j < 0.8 for j in similarities) / len(similarities),
        "0.8-1": sum(j >= 0.8 for j in similarities) / len(similarities),
    }
    assert len(similarities) >= 200
    assert all(value >= 0.15 for value in share.values()), share
    assert sum(share.values()) >= 0.85, share
    assert max(similarities) >= 0.9


def test_truthful_rows_score_full_recall_and_no_false_join(stream):
    """Rows that put each story in one cluster, headed by its original, in one split: a perfect score."""
    original_of = {item.story: item.article["article_id"] for item in originals(stream)}
    split_of = {story: ("train", "validation", "test")[at % 3] for at, story in enumerate(sorted(original_of))}
    rows = {
        item.article["article_id"]: (original_of[item.story], item.parent is None, split_of[item.story])
        for item in stream
    }
    quality = cluster_quality(stream, rows)
    assert (quality.from_high.recall, quality.between.recall, quality.below_low.recall) == (1.0, 1.0, 1.0)
    assert quality.from_low.copies == quality.from_high.copies + quality.between.copies > 0
    assert (quality.stories, quality.clusters, quality.articles, quality.unwritten) == (150, 150, len(stream), 0)
    assert (quality.false_joins, quality.clusters_across_splits, quality.stories_across_splits) == (0, 0, 0)
    assert quality.problems == ()


# Three stories by hand: a1 is a1 verbatim but for case and punctuation (J 1), a2 a copy of a1 with its
# last word changed (J 5/7 to a0: 5 shared shingles of 7), b1 is b0 verbatim, c0 is never copied.
A0 = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
HAND_MADE = [
    Item({"article_id": "a0", "content": A0}, "A", None),
    Item(
        {"article_id": "a1", "content": "Alpha, BRAVO charlie - delta echo foxtrot golf hotel india juliet!"}, "A", "a0"
    ),
    Item({"article_id": "a2", "content": A0.replace("juliet", "kilo")}, "A", "a1"),
    Item({"article_id": "b0", "content": "lima mike november oscar papa quebec romeo sierra"}, "B", None),
    Item({"article_id": "b1", "content": "lima mike november oscar papa quebec romeo sierra"}, "B", "b0"),
    Item({"article_id": "c0", "content": "tango uniform victor whiskey xray yankee zulu"}, "C", None),
]
PERFECT = {
    "a0": ("a0", True, "train"),
    "a1": ("a0", False, "train"),
    "a2": ("a0", False, "train"),
    "b0": ("b0", True, "test"),
    "b1": ("b0", False, "test"),
    "c0": ("c0", True, "validation"),
}


def figures(quality):
    bands = (quality.from_high, quality.between, quality.from_low, quality.below_low)
    return {
        "bands": [(band.recalled, band.copies) for band in bands],
        "false_joins": quality.false_joins,
        "clusters_across_splits": quality.clusters_across_splits,
        "stories_across_splits": quality.stories_across_splits,
        "problems": len(quality.problems),
    }


def test_hand_made_perfect_rows():
    """a1 and b1 in the J >= 0.8 band, a2 (copied from a copy) in 0.7-0.8, all recalled, nothing else."""
    quality = cluster_quality(HAND_MADE, PERFECT)
    assert figures(quality) == {
        "bands": [(2, 2), (1, 1), (3, 3), (0, 0)],
        "false_joins": 0,
        "clusters_across_splits": 0,
        "stories_across_splits": 0,
        "problems": 0,
    }
    assert (quality.stories, quality.articles, quality.clusters, quality.unwritten) == (3, 6, 3, 0)
    assert math.isnan(quality.below_low.recall)
    assert "J<0.7 n/a (0/0)" in str(quality)


def test_copy_left_in_a_cluster_of_its_own_is_missed():
    """a2 heads a cluster of its own: the 0.7-0.8 band recalls 0 of 1; in another split, its story leaks."""
    same_split = cluster_quality(HAND_MADE, {**PERFECT, "a2": ("a2", True, "train")})
    assert figures(same_split)["bands"] == [(2, 2), (0, 1), (2, 3), (0, 0)]
    assert same_split.between.recall == 0.0
    assert (same_split.false_joins, same_split.stories_across_splits, same_split.problems) == (0, 0, ())
    other_split = cluster_quality(HAND_MADE, {**PERFECT, "a2": ("a2", True, "test")})
    assert (other_split.clusters_across_splits, other_split.stories_across_splits) == (0, 1)


def test_two_stories_merged_are_one_false_join():
    """B's articles in A's cluster: one story joined to a cluster it is not in; recall is untouched."""
    quality = cluster_quality(HAND_MADE, {**PERFECT, "b0": ("a0", False, "train"), "b1": ("a0", False, "train")})
    assert figures(quality) == {
        "bands": [(2, 2), (1, 1), (3, 3), (0, 0)],
        "false_joins": 1,
        "clusters_across_splits": 0,
        "stories_across_splits": 0,
        "problems": 0,
    }
    assert quality.false_join_rate == pytest.approx(1 / 3)
    assert "false joins 1 (3,333.33 per 10,000 stories)" in str(quality)


def test_all_stories_in_one_cluster_are_two_false_joins():
    """Three stories in one cluster: two of them are in a cluster that is not theirs."""
    rows = {article_id: ("a0", article_id == "a0", "train") for article_id in PERFECT}
    assert cluster_quality(HAND_MADE, rows).false_joins == 2


def test_cluster_across_two_splits_is_a_leak():
    """a2 in A's cluster but in the test split: one cluster and one story across splits."""
    quality = cluster_quality(HAND_MADE, {**PERFECT, "a2": ("a0", False, "test")})
    assert (quality.clusters_across_splits, quality.stories_across_splits) == (1, 1)
    assert quality.from_low.recall == 1.0


def test_unwritten_copy_counts_as_missed():
    """A copy absent from the output is not recalled, and counted as not written."""
    rows = {article_id: row for article_id, row in PERFECT.items() if article_id != "a1"}
    quality = cluster_quality(HAND_MADE, rows)
    assert (quality.unwritten, quality.from_high.recalled, quality.from_high.copies) == (1, 1, 2)


def test_unwritten_original_leaves_its_copies_unrecalled():
    """Without the original in the output, its copies are not in its cluster, even together."""
    rows = {article_id: row for article_id, row in PERFECT.items() if article_id != "a0"}
    quality = cluster_quality(HAND_MADE, rows)
    assert figures(quality)["bands"] == [(1, 2), (0, 1), (1, 3), (0, 0)]


def test_story_without_its_original_is_refused():
    """Similarity is to the original: a story whose original is not among the items cannot be measured."""
    with pytest.raises(ValueError, match="story A: 0 originals"):
        cluster_quality(HAND_MADE[1:], PERFECT)


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"a1": ("a0", True, "train")}, "cluster a0: 2 articles flagged first"),
        ({"a1": ("a0", True, "train")}, "article a1: flagged first in cluster a0, whose id is not its own"),
        ({"a0": ("a0", False, "train")}, "cluster a0: 0 articles flagged first"),
        ({"c0": ("zz", True, "validation")}, "cluster zz: no article of it carries its id"),
        ({"c0": ("c0", True, "holdout")}, "article c0: split 'holdout' is not one of train, validation, test"),
    ],
)
def test_rows_breaking_the_outputs_rules_are_problems(broken, problem):
    """Each rule of the output (id of its first article, one first, a known split) is checked on its own."""
    quality = cluster_quality(HAND_MADE, {**PERFECT, **broken})
    assert problem in quality.problems
    assert f"consistency problems {len(quality.problems)}" in str(quality)
