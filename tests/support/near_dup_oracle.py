"""The near-duplicate oracle: what the tests hold the job's clusters to.

The job groups articles whose content is nearly the same (MinHash LSH over shingles). This module
computes, without the job's or the producer's code (it imports neither ``news_etl`` nor
``news_populate``), the similarity the job estimates, a stream of articles whose true groups are
known, and how well a job's output recovers them. A mistake on either side shows up as a
disagreement with this file.

The definition (the job estimates it; ``shingles`` and ``jaccard`` compute it exactly):

- An article's words are the maximal runs of Unicode word characters (Python's ``\\w+``: letters,
  digits and ``_``) in ``content.lower()``. Its shingles are the tuples of 5 consecutive words; an
  article of 1 to 4 words has one shingle, all its words; an article with no words has none.
- The similarity of two articles is the Jaccard index of their shingle sets, |A & B| / |A | B|.
  Two articles without shingles have similarity 0: there is nothing to compare.
- For each valid article the job writes ``article_id``, ``cluster_id`` (the article_id of the
  cluster's first article, which carries its own id), ``first_in_cluster`` (a bool) and ``split``
  (``train``, ``validation`` or ``test``); all of a cluster's articles go to one split.

The stream (``syndicated_stream``) is written in a language of its own, coined from syllables with
Zipf frequencies, so that distinct stories share almost no 5-word run by chance; what they do share
is what real news shares: an outlet's footer on all its stories, a quoted sentence that several
stories carry, a handful of stock phrases. A story's copies come from an edit model of this
module's own: a new headline, dateline and byline, the copying outlet's footer (or the parent's,
kept as a wire's credit line is), now and then a sentence dropped, paragraphs swapped or the last
one cut, and words substituted, inserted and deleted at a rate chosen so that the copy's similarity
to its parent spreads over about 0.45 to 1; some copies are copied from an earlier copy rather than
the original.

The measure (``cluster_quality``) reports recall by similarity band, false joins (see
``Quality``), split leaks and the job's own invariants on its output.

One module although it is past 300 lines: the definition, the stream with its truth and the measure
are the oracle together, and one file keeps its independence visible in one list of imports.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

WORD = re.compile(r"\w+")
SHINGLE_WORDS = 5
SPLITS = ("train", "validation", "test")

# The language every stream is written in: one for all seeds, so two streams can be mixed and still
# be distinct stories of one language rather than two languages.
LANGUAGE_SEED = "near-dup-oracle language"
VOCABULARY_SIZE = 6000
PROPER_NAMES = 1500
STOCK_PHRASES = 40
ZIPF_SHIFT = 2.7  # Mandelbrot's fit to English: the commonest word is about 4% of a text
ONSETS = ("", "b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "kl", "l", "m", "n", "p", "pl",
          "pr", "r", "s", "sh", "sk", "st", "t", "th", "tr", "v", "w", "z")  # fmt: skip
NUCLEI = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "ee")
CODAS = ("", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "rn")
OUTLET_KINDS = ("Courier", "Herald", "Gazette", "Post", "Wire", "Tribune", "Ledger", "Chronicle", "Observer", "Times")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CATEGORIES = ("world", "politics", "business", "technology", "science", "health", "sports", "culture")

# A story's text.
BODY_WORDS = (150, 900)  # a body's length is drawn between these, median MEDIAN_BODY_WORDS (its last
# paragraph may run past it)
MEDIAN_BODY_WORDS = 380
SENTENCE_WORDS = (8, 28)
SENTENCES_PER_PARAGRAPH = (1, 4)
TOPIC_WORDS, TOPIC_NAMES = 6, 3  # what a story keeps coming back to
TOPIC_SHARE, NUMBER_SHARE = 0.06, 0.02  # of a sentence's words
STOCK_PHRASE_SHARE = 0.15  # of sentences
COMMA_SHARE = 0.4  # of sentences longer than 10 words
OUTLETS = 30
FOOTER_SHARE = 0.75  # of outlets; a footer is 20 to 40 words, the same under each of its stories
QUOTE_SHARE = 0.15  # of stories carry a quoted sentence from a pool...
STORIES_PER_QUOTE = 3  # ...sized so that a quote is shared by about this many stories
STORY_SPACING = timedelta(seconds=45)

# The copies.
COPY_TARGET_LOW = 0.45  # a copy of the original aims at a similarity to it drawn from [this, 1]
CHAIN_TARGET_LOW = 0.8  # a copy of a copy, at a similarity to its parent from [this, 1]
MAX_COPIES = 25
SUBSTITUTE, INSERT = 0.5, 0.25  # shares of word edits; the rest are deletions
DROP_SENTENCE_SHARE, SWAP_PARAGRAPHS_SHARE, CUT_LAST_PARAGRAPH_SHARE = 0.15, 0.15, 0.1
KEEP_FOOTER_SHARE = 0.5  # of copies keep the parent's footer (a wire's credit line), the rest take their outlet's
NEW_HEADLINE_SHARE, DATELINE_SHARE, BYLINE_SHARE, NEW_AUTHOR_SHARE = 0.6, 0.4, 0.2, 0.5
MIN_DELAY, MEAN_DELAY, MAX_DELAY = timedelta(minutes=1), timedelta(hours=3), timedelta(hours=24)
DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)

# Figures of the measure.
HIGH_BAND, LOW_BAND = 0.8, 0.7  # recall is reported for J >= HIGH, LOW <= J < HIGH, J >= LOW and J < LOW
STORIES_PER_RATE = 10_000  # false joins are quoted per this many stories


def words(text: str) -> list[str]:
    """The words of ``text`` by the definition: ``\\w+`` runs of its lower-cased form."""
    return WORD.findall(text.lower())


def shingles(text: str) -> set[tuple[str, ...]]:
    """The set of 5-word shingles of ``text``; one shingle of all its words when it has 1 to 4."""
    found = words(text)
    if len(found) < SHINGLE_WORDS:
        return {tuple(found)} if found else set()
    # The 5 offset views end together at the shortest, so each tuple is one window of 5 words.
    return set(zip(*(found[start:] for start in range(SHINGLE_WORDS)), strict=False))


def jaccard(a_text: str, b_text: str) -> float:
    """The similarity of two contents: the Jaccard index of their shingle sets (0 when both have none)."""
    return _set_jaccard(shingles(a_text), shingles(b_text))


def _set_jaccard(a: set, b: set) -> float:
    shared = len(a & b)
    union = len(a) + len(b) - shared
    return shared / union if union else 0.0


# --- The stream -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One article of a stream and its truth."""

    article: dict  # the contract's JSON object (docs/contract.md), fields in the contract's order
    story: str  # the story it tells: the ground truth's group
    parent: str | None  # the article_id it was copied from; None for the story's original


Sentence = tuple[str, ...]  # words, and the punctuation tokens of PUNCTUATION
PUNCTUATION = frozenset({",", "“", "”"})
Paragraph = tuple[Sentence, ...]


@dataclass(frozen=True)
class _Language:
    words: tuple[str, ...]  # most frequent first
    cum_weights: tuple[float, ...]  # Zipf-Mandelbrot: the word of rank r weighs 1 / (r + ZIPF_SHIFT)
    names: tuple[str, ...]  # capitalised: people, places, outlets
    stock_phrases: tuple[Sentence, ...]  # turns of phrase any story may use

    def draw(self, rng: random.Random, count: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum_weights, k=count)


@functools.cache
def _language() -> _Language:
    rng = random.Random(LANGUAGE_SEED)
    coined = _coin_words(rng, VOCABULARY_SIZE + PROPER_NAMES)
    rng.shuffle(coined)
    common = sorted(coined[:VOCABULARY_SIZE], key=len)  # short words are the frequent ones, as in any language
    cum_weights = tuple(itertools.accumulate(1 / (rank + ZIPF_SHIFT) for rank in range(1, VOCABULARY_SIZE + 1)))
    names = tuple(name.capitalize() for name in coined[VOCABULARY_SIZE:])
    phrases = tuple(
        tuple(rng.choices(common, cum_weights=cum_weights, k=rng.randint(4, 6))) for _ in range(STOCK_PHRASES)
    )
    return _Language(tuple(common), cum_weights, names, phrases)


def _coin_words(rng: random.Random, count: int) -> list[str]:
    coined: set[str] = set()
    while len(coined) < count:
        syllables = rng.choices((1, 2, 3, 4), weights=(3, 5, 3, 1))[0]
        coined.add("".join(rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS) for _ in range(syllables)))
    return sorted(coined)  # a set's order follows string hashing, which varies between processes


@dataclass(frozen=True)
class _Outlet:
    name: str
    short_name: str  # as in a dateline: "BRASKTON, Nov 14 (Courier)"
    domain: str
    city: str
    footer: str  # "" for an outlet that signs off with none


def _render(sentence: Sentence) -> str:
    """A sentence as text: "," and "”" hold on to the word before, "“" to the word after."""
    tokens = list(sentence)
    first = 1 if tokens[0] == "“" else 0
    tokens[first] = tokens[first].capitalize()
    return " ".join(tokens).replace(" ,", ",").replace(" ”", "”").replace("“ ", "“") + "."


@dataclass(frozen=True)
class _Draft:
    """An article's content before it is rendered: what a copy's edits work on."""

    body: tuple[Paragraph, ...]
    footer: str = ""
    dateline: str = ""
    byline: str = ""

    @functools.cached_property
    def content(self) -> str:
        paragraphs = [" ".join(_render(sentence) for sentence in paragraph) for paragraph in self.body]
        if self.dateline:
            paragraphs[0] = f"{self.dateline} - {paragraphs[0]}"
        byline = [self.byline] if self.byline else []
        footer = [self.footer] if self.footer else []
        return "\n\n".join([*byline, *paragraphs, *footer])

    @functools.cached_property
    def shingles(self) -> set[tuple[str, ...]]:
        return shingles(self.content)


@dataclass(frozen=True)
class _Written:
    item: Item
    draft: _Draft
    published: datetime


def _edit_rate(target: float) -> float:
    """The share of words to edit for a similarity of about ``target``: an edit changes the shingles
    over it, so with a share r of words edited a share q = (1 - r)^5 of shingles survives, and
    J = q / (2 - q)."""
    surviving = 2 * target / (1 + target)
    return 1 - surviving ** (1 / SHINGLE_WORDS)


class _Newsroom:
    """Writes one stream's stories and their copies, all drawn from one seeded ``random.Random``."""

    def __init__(self, seed: int, stories: int, start: datetime) -> None:
        self.rng = random.Random(seed)
        self.language = _language()
        self.start = start
        self.outlets = [self._outlet() for _ in range(OUTLETS)]
        self.quotes = [self._quote() for _ in range(max(1, round(stories * QUOTE_SHARE / STORIES_PER_QUOTE)))]

    def story(self, index: int, mean_copies: float, copy_of_copy_share: float) -> list[Item]:
        """The story's original, then its copies, each copied from the original or an earlier copy."""
        rng = self.rng
        published = self.start + index * STORY_SPACING + rng.random() * STORY_SPACING
        quote = rng.choice(self.quotes) if rng.random() < QUOTE_SHARE else None
        outlet = rng.choice(self.outlets)
        draft = self._original(outlet, quote)
        article = self._article(draft, outlet, published, self._headline(), rng.choice(CATEGORIES), self._name())
        written = [_Written(Item(article, f"story-{index:06d}", None), draft, published)]
        for _ in range(self._copy_count(mean_copies)):
            chained = len(written) > 1 and rng.random() < copy_of_copy_share
            written.append(self._syndicate(rng.choice(written[1:]) if chained else written[0], chained))
        return [each.item for each in written]

    def _syndicate(self, parent: _Written, chained: bool) -> _Written:
        """A copy of ``parent`` by an outlet drawn at random, published 1 minute to 24 hours after it."""
        rng = self.rng
        target = rng.uniform(CHAIN_TARGET_LOW if chained else COPY_TARGET_LOW, 1.0)
        outlet = rng.choice(self.outlets)
        delay = min(timedelta(seconds=rng.expovariate(1 / MEAN_DELAY.total_seconds())), MAX_DELAY)
        published = parent.published + MIN_DELAY + delay
        draft = self._copy(parent.draft, outlet, target, published)
        title = self._headline() if rng.random() < NEW_HEADLINE_SHARE else parent.item.article["title"]
        author = self._name() if rng.random() < NEW_AUTHOR_SHARE else parent.item.article["author"]
        article = self._article(draft, outlet, published, title, parent.item.article["category"], author)
        return _Written(Item(article, parent.item.story, parent.item.article["article_id"]), draft, published)

    def _copy_count(self, mean: float) -> int:
        """Geometric with the given mean: most stories are copied a little, a few a lot."""
        stop = 1 / (1 + mean)
        count = 0
        while count < MAX_COPIES and self.rng.random() >= stop:
            count += 1
        return count

    def _name(self) -> str:
        return " ".join(self.rng.sample(self.language.names, 2))

    def _headline(self) -> str:
        headline = [*self.language.draw(self.rng, self.rng.randint(4, 8)), self.rng.choice(self.language.names)]
        self.rng.shuffle(headline)
        return " ".join(headline).capitalize()

    def _outlet(self) -> _Outlet:
        city, kind = self.rng.choice(self.language.names), self.rng.choice(OUTLET_KINDS)
        name = f"The {city} {kind}"
        footer = ""
        if self.rng.random() < FOOTER_SHARE:
            sentences = [self._plain_sentence(self.rng.randint(8, 14)) for _ in range(self.rng.randint(2, 3))]
            footer = f"© {name}. " + " ".join(_render(sentence) for sentence in sentences)
        return _Outlet(name, kind, f"{city}{kind}.example".lower(), city, footer)

    def _quote(self) -> Sentence:
        spoken = self._plain_sentence(self.rng.randint(12, 30))
        return ("“", *spoken, ",", "”", "said", *self._name().split())

    def _plain_sentence(self, length: int) -> Sentence:
        return tuple(self.language.draw(self.rng, length))

    def _sentence(self, topic: Sequence[str]) -> Sentence:
        rng = self.rng
        tokens = self.language.draw(rng, rng.randint(*SENTENCE_WORDS))
        for at in range(len(tokens)):
            roll = rng.random()
            if roll < TOPIC_SHARE:
                tokens[at] = rng.choice(topic)
            elif roll < TOPIC_SHARE + NUMBER_SHARE:
                tokens[at] = str(rng.randint(2, 2030))
        if rng.random() < STOCK_PHRASE_SHARE:
            at = rng.randint(0, len(tokens))
            tokens[at:at] = rng.choice(self.language.stock_phrases)
        if len(tokens) > 10 and rng.random() < COMMA_SHARE:
            tokens.insert(rng.randint(3, len(tokens) - 3), ",")
        return tuple(tokens)

    def _original(self, outlet: _Outlet, quote: Sentence | None) -> _Draft:
        rng = self.rng
        topic = [*rng.sample(self.language.words[200:3000], TOPIC_WORDS), *rng.sample(self.language.names, TOPIC_NAMES)]
        length = min(max(round(rng.lognormvariate(math.log(MEDIAN_BODY_WORDS), 0.45)), BODY_WORDS[0]), BODY_WORDS[1])
        paragraphs: list[Paragraph] = []
        while sum(len(sentence) for paragraph in paragraphs for sentence in paragraph) < length:
            paragraphs.append(tuple(self._sentence(topic) for _ in range(rng.randint(*SENTENCES_PER_PARAGRAPH))))
        if quote:
            paragraphs.insert(rng.randint(1, len(paragraphs)), (quote,))
        return _Draft(tuple(paragraphs), outlet.footer)

    def _copy(self, parent: _Draft, outlet: _Outlet, target: float, published: datetime) -> _Draft:
        """The parent's body under the copying outlet's boilerplate, its sentences and paragraphs edited
        now and then, then its words edited at the rate that brings its similarity to about ``target``
        (what the boilerplate and the structure cost already counts towards it)."""
        body = self._edit_structure([list(paragraph) for paragraph in parent.body])
        dateline = ""
        if self.rng.random() < DATELINE_SHARE:
            month = MONTHS[published.month - 1]
            dateline = f"{outlet.city.upper()}, {month} {published.day} ({outlet.short_name})"
        byline = f"By {self._name()}" if self.rng.random() < BYLINE_SHARE else ""
        footer = parent.footer if self.rng.random() < KEEP_FOOTER_SHARE else outlet.footer
        draft = _Draft(tuple(tuple(paragraph) for paragraph in body), footer, dateline, byline)
        # What the boilerplate and the structure kept, the word edits need not take away again.
        rate = _edit_rate(target / max(_set_jaccard(parent.shingles, draft.shingles), target))
        edited = ([self._edit_words(sentence, rate) for sentence in paragraph] for paragraph in draft.body)
        kept = (tuple(sentence for sentence in paragraph if sentence) for paragraph in edited)
        return replace(draft, body=tuple(paragraph for paragraph in kept if paragraph))

    def _edit_words(self, sentence: Sentence, rate: float) -> Sentence:
        """Each word substituted, followed by an inserted word, or deleted with probability ``rate``."""
        edited: list[str] = []
        for token in sentence:
            if token in PUNCTUATION or self.rng.random() >= rate:
                edited.append(token)
                continue
            kind = self.rng.random()
            if kind < SUBSTITUTE:
                edited.append(str(self.rng.randint(2, 2030)) if token.isdigit() else self.language.draw(self.rng, 1)[0])
            elif kind < SUBSTITUTE + INSERT:
                edited.extend((token, *self.language.draw(self.rng, 1)))
        return tuple(edited) if set(edited) - PUNCTUATION else ()

    def _edit_structure(self, body: list[list[Sentence]]) -> list[list[Sentence]]:
        """Now and then a sentence dropped, two paragraphs swapped, the last paragraph cut (in place)."""
        rng = self.rng
        long_paragraphs = [paragraph for paragraph in body if len(paragraph) > 1]
        if long_paragraphs and rng.random() < DROP_SENTENCE_SHARE:
            paragraph = rng.choice(long_paragraphs)
            del paragraph[rng.randrange(len(paragraph))]
        if len(body) >= 3 and rng.random() < SWAP_PARAGRAPHS_SHARE:
            at = rng.randrange(len(body) - 1)
            body[at], body[at + 1] = body[at + 1], body[at]
        if len(body) >= 6 and rng.random() < CUT_LAST_PARAGRAPH_SHARE:
            body.pop()
        return body

    def _article(
        self, draft: _Draft, outlet: _Outlet, published: datetime, title: str, category: str, author: str
    ) -> dict:
        article_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        slug = "-".join(words(title))
        return {
            "article_id": article_id,
            "title": title,
            "content": draft.content,
            "author": author,
            "source": outlet.name,
            "url": f"https://{outlet.domain}/{category}/{published:%Y/%m/%d}/{slug}-{article_id[:8]}",
            "category": category,
            "language": "en",
            "published_at": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def syndicated_stream(
    seed: int,
    stories: int,
    copies_per_story: float = 2.0,
    copy_of_copy_share: float = 0.3,
    start: datetime = DEFAULT_START,
) -> list[Item]:
    """A stream of ``stories`` distinct stories and their syndicated copies, in order published.

    Args:
        seed: the same seed gives the same items, byte for byte.
        stories: how many distinct stories; an original is published every 45 s or so from ``start``.
        copies_per_story: the mean number of copies a story gets (geometric: many get none, a few many).
        copy_of_copy_share: the share of a story's later copies made from an earlier copy, not the original.
        start: when the first story is published (timezone-aware).

    Returns:
        The items sorted by ``published_at`` (a copy is published 1 minute to 24 hours after its parent,
        so it comes after it).

    Raises:
        ValueError: for a negative count or mean, or a share outside [0, 1].
    """
    if stories < 0 or copies_per_story < 0:
        raise ValueError(f"stories ({stories}) and copies_per_story ({copies_per_story}) must not be negative")
    if not 0 <= copy_of_copy_share <= 1:
        raise ValueError(f"copy_of_copy_share ({copy_of_copy_share}) must lie in [0, 1]")
    newsroom = _Newsroom(seed, stories, start.astimezone(UTC))
    items = [item for index in range(stories) for item in newsroom.story(index, copies_per_story, copy_of_copy_share)]
    return sorted(items, key=lambda item: (item.article["published_at"], item.article["article_id"]))


# --- The measure ----------------------------------------------------------------------------------


def copy_similarities(items: Sequence[Item]) -> dict[str, float]:
    """Each copy's article_id and its similarity to its story's original (not to its parent).

    Raises:
        ValueError: for a story without its original (an item whose parent is None) among ``items``.
    """
    members = defaultdict(list)
    for item in items:
        members[item.story].append(item)
    similarities = {}
    for story, story_items in members.items():  # a story at a time: one story's shingles in memory
        originals = [item for item in story_items if item.parent is None]
        if len(originals) != 1:
            raise ValueError(f"story {story}: {len(originals)} originals (items whose parent is None), not 1")
        original = shingles(originals[0].article["content"])
        for item in story_items:
            if item.parent is not None:
                similarities[item.article["article_id"]] = _set_jaccard(shingles(item.article["content"]), original)
    return similarities


@dataclass(frozen=True)
class Band:
    """Copies in one band of similarity to their story's original, and how many share its cluster."""

    label: str
    copies: int
    recalled: int  # in the same cluster as the story's original

    @property
    def recall(self) -> float:
        """The share recalled; NaN for an empty band (which no threshold passes)."""
        return self.recalled / self.copies if self.copies else math.nan

    def __str__(self) -> str:
        recall = f"{self.recall:.4f}" if self.copies else "n/a"
        return f"{self.label} {recall} ({self.recalled:,}/{self.copies:,})"


@dataclass(frozen=True)
class Quality:
    """How well a job's clusters recover a stream's stories.

    ``false_joins`` counts (story, cluster) pairs where the cluster holds an article of the story
    but belongs to another story: a cluster belongs to its first article's story, so it is the sum
    over clusters of the number of distinct stories among its articles minus one. Two stories merged
    into one cluster are one false join; the rate is per distinct story of the stream, and the job is
    held to fewer than 1 in 10,000.

    ``clusters_across_splits`` counts clusters whose articles lie in more than one split (the job's
    own rule: it must be 0). ``stories_across_splits`` counts stories whose articles lie in more than
    one split, the leak a trainer sees; with every cluster in one split it comes only from stories
    spread over several clusters (copies missed, or joined to another story's cluster).
    """

    stories: int
    articles: int
    unwritten: int  # articles of the stream absent from the job's output (counted as not recalled)
    clusters: int  # distinct clusters holding the stream's articles
    from_high: Band  # J >= 0.8
    between: Band  # 0.7 <= J < 0.8
    from_low: Band  # J >= 0.7
    below_low: Band  # J < 0.7: reported, not a target
    false_joins: int
    clusters_across_splits: int
    stories_across_splits: int
    problems: tuple[str, ...]  # the output's own invariants broken (``consistency_problems``)

    @property
    def false_join_rate(self) -> float:
        """False joins per distinct story."""
        return self.false_joins / self.stories if self.stories else 0.0

    def __str__(self) -> str:
        problems = f"consistency problems {len(self.problems)}" + "".join(f"; {p}" for p in self.problems[:3])
        per = self.false_join_rate * STORIES_PER_RATE
        return (
            f"{self.stories:,} stories, {self.articles:,} articles in {self.clusters:,} clusters"
            f" ({self.unwritten:,} not written)\n"
            f"  recall {self.from_high}; {self.between}; {self.from_low}; {self.below_low}\n"
            f"  false joins {self.false_joins:,} ({per:,.2f} per {STORIES_PER_RATE:,} stories);"
            f" clusters across splits {self.clusters_across_splits:,};"
            f" stories across splits {self.stories_across_splits:,}; {problems}"
        )


Row = tuple[str, bool, str]  # cluster_id, first_in_cluster, split


def cluster_quality(items: Sequence[Item], rows: Mapping[str, Row]) -> Quality:
    """Measure the job's clusters against the stream's truth.

    Args:
        items: the stream the job read (``syndicated_stream``).
        rows: the job's output, article_id -> (cluster_id, first_in_cluster, split), for the articles it
            wrote; rows of articles not in ``items`` take part in the consistency checks only.
    """
    similarities = copy_similarities(items)
    recalled = _recalled_copies(items, rows)

    def band(label: str, low: float, high: float) -> Band:
        inside = {article_id for article_id, similarity in similarities.items() if low <= similarity < high}
        return Band(label, len(inside), len(inside & recalled))

    stories_of_cluster = defaultdict(set)
    splits_of_story = defaultdict(set)
    written = [item for item in items if item.article["article_id"] in rows]
    for item in written:
        cluster_id, _, split = rows[item.article["article_id"]]
        stories_of_cluster[cluster_id].add(item.story)
        splits_of_story[item.story].add(split)
    return Quality(
        stories=len({item.story for item in items}),
        articles=len(items),
        unwritten=len(items) - len(written),
        clusters=len(stories_of_cluster),
        from_high=band(f"J>={HIGH_BAND}", HIGH_BAND, math.inf),
        between=band(f"{LOW_BAND}<=J<{HIGH_BAND}", LOW_BAND, HIGH_BAND),
        from_low=band(f"J>={LOW_BAND}", LOW_BAND, math.inf),
        below_low=band(f"J<{LOW_BAND}", -math.inf, LOW_BAND),
        false_joins=sum(len(stories) - 1 for stories in stories_of_cluster.values()),
        clusters_across_splits=_clusters_across_splits(rows),
        stories_across_splits=sum(len(splits) > 1 for splits in splits_of_story.values()),
        problems=tuple(consistency_problems(rows)),
    )


def _recalled_copies(items: Sequence[Item], rows: Mapping[str, Row]) -> set[str]:
    """The copies the job wrote in the same cluster as their story's original (which it wrote too)."""
    cluster_of = {article_id: row[0] for article_id, row in rows.items()}
    original_cluster = {item.story: cluster_of.get(item.article["article_id"]) for item in items if item.parent is None}
    return {
        item.article["article_id"]
        for item in items
        if item.parent is not None
        and original_cluster[item.story] is not None
        and cluster_of.get(item.article["article_id"]) == original_cluster[item.story]
    }


def _clusters_across_splits(rows: Mapping[str, Row]) -> int:
    splits_of_cluster = defaultdict(set)
    for cluster_id, _, split in rows.values():
        splits_of_cluster[cluster_id].add(split)
    return sum(len(splits) > 1 for splits in splits_of_cluster.values())


def consistency_problems(rows: Mapping[str, Row]) -> list[str]:
    """What breaks the output's own rules: a cluster's id is the article_id of one of its articles,
    that article and no other is flagged first, and every split is one of ``SPLITS``."""
    problems = []
    members = defaultdict(list)
    for article_id, (cluster_id, first, split) in rows.items():
        members[cluster_id].append(article_id)
        if split not in SPLITS:
            problems.append(f"article {article_id}: split {split!r} is not one of {', '.join(SPLITS)}")
        if first and cluster_id != article_id:
            problems.append(f"article {article_id}: flagged first in cluster {cluster_id}, whose id is not its own")
    for cluster_id, article_ids in members.items():
        if cluster_id not in article_ids:
            problems.append(f"cluster {cluster_id}: no article of it carries its id")
        firsts = sum(rows[article_id][1] for article_id in article_ids)
        if firsts != 1:
            problems.append(f"cluster {cluster_id}: {firsts} articles flagged first")
    return problems
