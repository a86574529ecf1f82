"""Fake news articles for the Kinesis stream, the invalid records the ETL must survive, and
exact and near-duplicate copies of earlier articles.

Pure: no I/O, no clock, no environment. Every byte derives from ``seed`` and ``until``, so the
same inputs give byte-identical records (for a given Faker version, which is pinned).

Faker supplies the vocabulary: author names, outlet names and the English word list that titles and the
article bodies are drawn from. Faker's per-field providers cost about 0.5 ms an article and drawing
a body word by word about 0.15 ms, either of which would make generation slower than the
stream; so names, outlets, sentences and paragraphs (from Faker's word list) are drawn into
pools once, and each article is assembled from them with one ``random.Random``.

The article JSON contract is described in docs/contract.md.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from faker import Faker
from faker.providers.lorem.en_US import Provider as LoremProvider

from news_populate.near_duplicates import syndicated_content

REQUIRED_FIELDS = ("article_id", "title", "content", "published_at")
CATEGORIES = (
    "world",
    "politics",
    "business",
    "technology",
    "science",
    "health",
    "sports",
    "culture",
)
OUTLET_SUFFIXES = ("Times", "Herald", "Post", "Tribune", "Gazette", "Chronicle", "Observer")
LANGUAGE = "en"

PUBLISHED_WINDOW = timedelta(days=7)
MIN_WORDS, MAX_WORDS = 3, 3000
MEDIAN_WORDS = 330  # log-normal lengths: mean about 450 words, about 3 KB of JSON
WORDS_SIGMA = 0.8
BRIEF_SHARE, BRIEF_MAX_WORDS = 0.03, 40  # news flashes: a headline's worth of body
SENTENCE_WORDS = (6, 24)
TITLE_WORDS = (5, 12)
PARAGRAPH_SENTENCES = range(2, 7)
MEAN_PARAGRAPH_WORDS = 60
AUTHOR_POOL, OUTLET_POOL = 300, 40
SENTENCE_POOL, PARAGRAPH_POOL = 5_000, 5_000  # bodies are drawn from these, not word by word
DUPLICATE_SOURCES = 1000  # duplicates and near-duplicates copy one of the last this many valid originals
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
NEAR_DUP_MAX_DELAY = timedelta(hours=6)  # a near-duplicate is published up to this long after its original

_WORDS = LoremProvider.word_list


class RecordKind(StrEnum):
    """What a record is meant to be; the ETL must classify it the same way."""

    VALID = "valid"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"  # a valid article: another outlet's copy of an earlier story
    NOT_JSON = "not_json"
    INVALID_UTF8 = "invalid_utf8"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"


BAD_KINDS = (
    RecordKind.NOT_JSON,
    RecordKind.INVALID_UTF8,
    RecordKind.NOT_OBJECT,
    RecordKind.MISSING_FIELD,
    RecordKind.WRONG_TYPE,
    RecordKind.BAD_TIMESTAMP,
)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kinesis record: what it is, its partition key and its payload; for a near-duplicate, the
    ``article_id`` of the original it copies (the ground truth of near-duplicate detection)."""

    kind: RecordKind
    partition_key: str
    data: bytes
    copy_of: str | None = None


def encode_article(article: dict) -> bytes:
    """Serialise an article the way the stream carries it: UTF-8 JSON."""
    return json.dumps(article, ensure_ascii=False).encode()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _url(domain: str, category: str, published: datetime, title: str, article_id: str) -> str:
    return f"https://{domain}/{category}/{published:%Y/%m/%d}/{_slug(title)[:60]}-{article_id[:8]}"


class ArticleFactory:
    """Makes realistic articles; deterministic for a given seed and publication window end."""

    def __init__(self, seed: int, until: datetime) -> None:
        self.rng = random.Random(seed)
        self._faker = Faker("en_US")
        self._faker.seed_instance(seed)
        self._until = until.astimezone(UTC).replace(microsecond=0)
        self._authors = [self._faker.name() for _ in range(AUTHOR_POOL)]
        self._outlets = [self._outlet() for _ in range(OUTLET_POOL)]
        self._sentences = [self._sentence() for _ in range(SENTENCE_POOL)]
        self._paragraphs = [self._paragraph() for _ in range(PARAGRAPH_POOL)]

    def _outlet(self) -> tuple[str, str]:
        city = self._faker.city()
        suffix = self.rng.choice(OUTLET_SUFFIXES)
        return f"The {city} {suffix}", f"{_slug(city + suffix).replace('-', '')}.com"

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _word_count(self) -> int:
        if self.rng.random() < BRIEF_SHARE:
            return self.rng.randint(MIN_WORDS, BRIEF_MAX_WORDS)
        words = round(self.rng.lognormvariate(0, WORDS_SIGMA) * MEDIAN_WORDS)
        return min(MAX_WORDS, max(MIN_WORDS, words))

    def _sentence(self) -> tuple[str, int]:
        words = self.rng.choices(_WORDS, k=self.rng.randint(*SENTENCE_WORDS))
        text = " ".join(words)
        return text[0].upper() + text[1:] + ".", len(words)

    def _title(self) -> str:
        text, _ = self._sentences[self.rng.randrange(SENTENCE_POOL)]
        return " ".join(text.rstrip(".").split()[: self.rng.randint(*TITLE_WORDS)])

    def _paragraph(self) -> tuple[str, int]:
        chosen = self.rng.choices(self._sentences, k=self.rng.choice(PARAGRAPH_SENTENCES))
        return " ".join(text for text, _ in chosen), sum(length for _, length in chosen)

    def _content(self, n_words: int) -> str:
        """Paragraphs with exactly ``n_words`` whitespace-separated words."""
        rng, pool = self.rng, self._paragraphs
        paragraphs: list[str] = []
        words = 0
        while words < n_words:  # draw in bulk: rng.choices is much cheaper per item than randrange
            for text, length in rng.choices(pool, k=(n_words - words) // MEAN_PARAGRAPH_WORDS + 1):
                if words + length >= n_words:  # cut the last paragraph to fit
                    paragraphs.append(" ".join(text.split()[: n_words - words]).rstrip(".") + ".")
                    words = n_words
                    break
                paragraphs.append(text)
                words += length
        return "\n\n".join(paragraphs)

    def article(self) -> dict:
        """A valid article following the contract, all fields present."""
        rng = self.rng
        article_id = self.uuid()
        title = self._title()
        category = rng.choice(CATEGORIES)
        outlet, domain = rng.choice(self._outlets)
        published = self._until - timedelta(seconds=rng.randrange(int(PUBLISHED_WINDOW.total_seconds())))
        return {
            "article_id": article_id,
            "title": title,
            "content": self._content(self._word_count()),
            "author": rng.choice(self._authors),
            "source": outlet,
            "url": _url(domain, category, published, title, article_id),
            "category": category,
            "language": LANGUAGE,
            "published_at": published.strftime(TIMESTAMP_FORMAT),
        }

    def near_duplicate(self, original: dict) -> dict:
        """A syndicated copy of ``original``: its story (edited as ``news_populate.near_duplicates``
        says) under a new ``article_id``, headline, outlet and url, published up to
        ``NEAR_DUP_MAX_DELAY`` after it (within the window); author and category stay."""
        rng = self.rng
        article_id, title = self.uuid(), self._title()
        outlet, domain = rng.choice([pair for pair in self._outlets if pair[0] != original["source"]])
        delay = timedelta(seconds=rng.randrange(int(NEAR_DUP_MAX_DELAY.total_seconds())))
        published = min(self._until, datetime.fromisoformat(original["published_at"]) + delay)
        return {
            **original,
            "article_id": article_id,
            "title": title,
            "content": syndicated_content(rng, original),
            "source": outlet,
            "url": _url(domain, original["category"], published, title, article_id),
            "published_at": published.strftime(TIMESTAMP_FORMAT),
        }

    def bad_record(self, kind: RecordKind) -> Record:
        """A record of one of the invalid kinds, derived from a realistic article."""
        rng = self.rng
        article = self.article()
        if kind is RecordKind.NOT_JSON:
            text = json.dumps(article, ensure_ascii=False)
            data = text[: rng.randrange(1, len(text) - 1)].encode()  # a truncated write
        elif kind is RecordKind.INVALID_UTF8:
            data = encode_article(article).replace(b'"content": "', b'"content": "\xff\xfe', 1)
        elif kind is RecordKind.NOT_OBJECT:
            data = encode_article(rng.choice([[article], article["title"], 42, None]))
        elif kind is RecordKind.MISSING_FIELD:
            del article[rng.choice(REQUIRED_FIELDS)]
            data = encode_article(article)
        elif kind is RecordKind.WRONG_TYPE:
            field = rng.choice(REQUIRED_FIELDS)
            article[field] = {"article_id": 12345, "title": ["a", "list"], "content": {"text": "x"}}.get(
                field, 1_700_000_000
            )
            data = encode_article(article)
        elif kind is RecordKind.BAD_TIMESTAMP:
            article["published_at"] = rng.choice(["yesterday", "2026-13-45T25:61:00Z", "", "Mon 3pm"])
            data = encode_article(article)
        else:
            raise ValueError(f"not an invalid record kind: {kind}")
        return Record(kind, self.uuid(), data)


def generate_records(
    count: int,
    *,
    seed: int,
    until: datetime,
    bad_ratio: float = 0.0,
    dup_ratio: float = 0.0,
    near_dup_ratio: float = 0.0,
) -> Iterator[Record]:
    """Yield ``count`` records: valid articles, invalid ones, exact re-sends and near-duplicates.

    Exactly ``int(count * bad_ratio)`` records are invalid (of a kind drawn from ``BAD_KINDS``),
    exactly ``int(count * dup_ratio)`` repeat, byte for byte and with the same partition key,
    one of the last ``DUPLICATE_SOURCES`` valid originals, and exactly
    ``int(count * near_dup_ratio)`` are near-duplicates of one of them
    (``ArticleFactory.near_duplicate``). Originals are ``VALID`` records only: neither kind
    copies a copy. Positions are drawn without replacement (each record takes a kind with
    probability remaining quota / remaining records), so the mix is spread through the stream
    and the totals are exact.

    Raises:
        ValueError: if a ratio is outside [0, 1], or copies are asked for with no valid original
            left for them to repeat.
    """
    if not all(0 <= ratio <= 1 for ratio in (bad_ratio, dup_ratio, near_dup_ratio)):
        raise ValueError("bad_ratio, dup_ratio and near_dup_ratio must be between 0 and 1")
    bad_left, dup_left, near_left = (int(count * ratio) for ratio in (bad_ratio, dup_ratio, near_dup_ratio))
    if (dup_left or near_left) and count - bad_left - dup_left - near_left < 1:
        raise ValueError("bad_ratio + dup_ratio + near_dup_ratio leave no valid article for copies to repeat")
    factory = ArticleFactory(seed, until)
    rng = factory.rng
    recent: deque[Record] = deque(maxlen=DUPLICATE_SOURCES)
    for index in range(count):
        draw = rng.random() * (count - index)
        if draw < bad_left:
            bad_left -= 1
            yield factory.bad_record(rng.choice(BAD_KINDS))
        elif draw < bad_left + dup_left and recent:
            dup_left -= 1
            original = rng.choice(recent)
            yield Record(RecordKind.DUPLICATE, original.partition_key, original.data)
        elif draw < bad_left + dup_left + near_left and recent:
            near_left -= 1
            original = rng.choice(recent)
            copy = factory.near_duplicate(json.loads(original.data))
            yield Record(RecordKind.NEAR_DUPLICATE, copy["article_id"], encode_article(copy), original.partition_key)
        else:
            article = factory.article()
            record = Record(RecordKind.VALID, article["article_id"], encode_article(article))
            recent.append(record)
            yield record
