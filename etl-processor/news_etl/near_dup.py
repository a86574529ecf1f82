"""Near-duplicate text: the MinHash LSH band keys of each article's content, computed in the read task.

The definition (docs/design.md, "Near-duplicate clusters", says why these numbers):

- an article's words are the maximal runs of Unicode word characters (``\\w``) of
  ``content.lower()``; its shingles are the runs of ``SHINGLE_WORDS`` consecutive words (an
  article with fewer words has one shingle, all of them; one with none has no key at all);
- its signature is the MinHash of its shingles' 64-bit hashes, ``BANDS * ROWS`` values, by
  ``rensa`` (Rust; its ``ALGORITHM_VERSION`` and the seed are part of the keys, so both are pinned);
- its band keys are one 64-bit hash of each band of ``ROWS`` values and the band's number. Two
  articles whose shingle sets have Jaccard index J share a band key with probability
  1 - (1 - J^ROWS)^BANDS: 0.956 at J = 0.7, 0.9995 at 0.8, 0.0016 at 0.2.

Why not shingles as Python strings: building 5-word strings cost about 300 µs an article with
rensa's ``update``, 1.5x what the whole job spends on a record. Here the batch's words are hashed
together with numpy (the bytes of each word weighted by position and mixed), shingles are
combined from word hashes without making a string, and rensa digests the whole batch from one flat
array (what each costs: docs/design.md, "Near-duplicate clusters").
"""

from __future__ import annotations

import re

import numpy as np
import rensa

SHINGLE_WORDS = 5
BANDS, ROWS = 25, 6
MINHASH_SEED = 20261208
# What the keys depend on: a table's keys are comparable only with keys made the same way
# (``table`` records it in each table's properties and refuses to mix).
SCHEME = (f"minhash: rensa algorithm {rensa.RMinHash.ALGORITHM_VERSION}, seed {MINHASH_SEED}, "
          f"{SHINGLE_WORDS}-word shingles, {BANDS} bands x {ROWS} rows")  # fmt: skip

WORD = re.compile(r"\w+")
ASCII = bytes(range(128))  # deleted from UTF-8, these leave the non-ASCII characters whole
SPACE = 32
# UTF-8 bytes as the normalised text has them: ASCII letters lowercased, ASCII digits and "_" kept,
# other ASCII characters a space, and the bytes of non-ASCII characters kept.
WORD_BYTES = bytes(c + 32 if 65 <= c <= 90 else c if c >= 128 or chr(c).isalnum() or c == 95 else SPACE
                   for c in range(256))  # fmt: skip
# Odd 64-bit constants: position weights of a word's bytes, and of a shingle's words and a band's values.
_RANDOM = np.random.default_rng(MINHASH_SEED)
BYTE_WEIGHTS = _RANDOM.integers(1, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
WORD_WEIGHTS = _RANDOM.integers(1, 2**63, size=SHINGLE_WORDS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
ROW_WEIGHTS = _RANDOM.integers(1, 2**63, size=ROWS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
BAND_SALTS = _RANDOM.integers(1, 2**63, size=BANDS, dtype=np.uint64)


def normalized(content: str) -> bytes:
    """The content's words (``\\w+`` runs of ``content.lower()``) as UTF-8, separated by spaces.

    Without making a string a word: the UTF-8 bytes are translated at once (``WORD_BYTES``), after
    each distinct non-ASCII character that is not a word character (a curly quote, a dash) is
    replaced by a space. Text with a non-ASCII character that ``lower`` changes goes the slow way
    (a regex), as ``lower`` may depend on the context (a Greek final sigma). 6 µs a 3 KB article
    in ASCII, 30-45 with typographic quotes, where the regex took about 180 (one process, on a
    loaded machine).
    """
    data = content.encode()
    if len(data) > len(content):  # not ASCII
        characters = set(data.translate(None, ASCII).decode())
        if any(character.lower() != character for character in characters):
            return " ".join(WORD.findall(content.lower())).encode()
        for character in characters:
            if not character.isalnum():  # Python's \w is isalnum() or "_"
                data = data.replace(character.encode(), b" ")
    return data.translate(WORD_BYTES)


def mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, element-wise: every input bit reaches every output bit."""
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


# Words are hashed as polynomials in FORWARD (odd, so it has an inverse BACKWARD modulo 2^64) from one
# running sum over the text: a word's sum of byte * BACKWARD^index, times FORWARD^start, is the
# same wherever the word is. Texts are hashed in chunks of about CHUNK_BYTES, so the running sum
# and the powers (8 bytes a text byte each) stay a few MB whatever the batch.
FORWARD = np.uint64(0x9E3779B97F4A7C15)
BACKWARD = np.uint64(pow(int(FORWARD), -1, 2**64))
CHUNK_BYTES = 2**20
_powers: dict[np.uint64, np.ndarray] = {FORWARD: np.ones(1, np.uint64), BACKWARD: np.ones(1, np.uint64)}


def powers(base: np.uint64, count: int) -> np.ndarray:
    """``base`` to the powers 0 .. count - 1 (modulo 2^64), cached and grown as texts need."""
    if len(_powers[base]) < count:
        size = max(count, 2 * len(_powers[base]))
        with np.errstate(over="ignore"):
            _powers[base] = np.concatenate((np.ones(1, np.uint64), np.cumprod(np.full(size - 1, base, np.uint64))))
    return _powers[base][:count]


def word_hashes(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of each word in ``text`` (normalised bytes, words separated by one space) and
    where each word starts."""
    in_word = text != SPACE
    starts = np.flatnonzero(in_word & ~np.concatenate(([False], in_word[:-1])))
    ends = np.flatnonzero(in_word & ~np.concatenate((in_word[1:], [False]))) + 1
    with np.errstate(over="ignore"):
        running = np.concatenate((np.zeros(1, np.uint64), np.cumsum(text * powers(BACKWARD, len(text)))))
        sums = (running[ends] - running[starts]) * powers(FORWARD, len(text))[starts]
    return mix(sums ^ (ends - starts).astype(np.uint64)), starts


def shingle_hashes(words: np.ndarray, doc_words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hash of each shingle of each document, flat, and each document's offsets into it.

    ``words``: every document's word hashes, one after the other; ``doc_words``: each document's
    word count. A document with fewer than ``SHINGLE_WORDS`` words has one shingle of all of them.
    """
    doc_end = np.cumsum(doc_words)
    padded = np.concatenate((words, np.zeros(SHINGLE_WORDS - 1, np.uint64)))
    combined = np.zeros(len(words), np.uint64)
    with np.errstate(over="ignore"):
        for k in range(SHINGLE_WORDS):  # shingles crossing into the next document are dropped below
            combined += padded[k : k + len(words)] * WORD_WEIGHTS[k]
        for end, count in zip(doc_end[doc_words < SHINGLE_WORDS], doc_words[doc_words < SHINGLE_WORDS], strict=True):
            if count:  # a short document: its one shingle is its words alone
                combined[end - count] = (words[end - count : end] * WORD_WEIGHTS[:count]).sum(dtype=np.uint64)
    starts = doc_end - doc_words
    shingles = np.maximum(doc_words - SHINGLE_WORDS + 1, np.minimum(doc_words, 1))
    index = np.arange(len(words))
    keep = index - np.repeat(starts, doc_words) < np.repeat(shingles, doc_words)
    return mix(combined[keep]), np.concatenate(([0], np.cumsum(shingles))).astype(np.uint64)


def band_keys(contents: list[str]) -> list[list[int] | None]:
    """Each content's ``BANDS`` band keys (signed 64-bit, as Arrow and Spark store them), or None
    when it has no word."""
    texts = [normalized(content) for content in contents]
    keys: list[list[int] | None] = []
    first = 0
    while first < len(texts):
        last, size = first + 1, len(texts[first])
        while last < len(texts) and size + len(texts[last]) < CHUNK_BYTES:
            size += len(texts[last]) + 1
            last += 1
        keys += _chunk_band_keys(texts[first:last])
        first = last
    return keys


def _chunk_band_keys(texts: list[bytes]) -> list[list[int] | None]:
    words, starts = word_hashes(np.frombuffer(b" ".join(texts), np.uint8))
    text_ends = np.cumsum([len(text) + 1 for text in texts])  # each text and the space after it
    doc_words = np.diff(np.searchsorted(starts, text_ends), prepend=0)
    shingles, offsets = shingle_hashes(words, doc_words)
    digests = rensa.RMinHash.digest_matrix_from_flat_token_hashes(shingles, offsets, BANDS * ROWS, MINHASH_SEED)
    signatures = np.array(digests.to_rows(), np.uint64).reshape(len(texts), BANDS, ROWS)
    with np.errstate(over="ignore"):
        keys = mix((signatures * ROW_WEIGHTS).sum(axis=2, dtype=np.uint64) + BAND_SALTS).view(np.int64)
    return [row.tolist() if count else None for row, count in zip(keys, doc_words, strict=True)]
