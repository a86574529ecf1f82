r"""The near-duplicate edit model: how a syndicated copy's body differs from its original's.

A near-duplicate re-sends an earlier article's story as another outlet's
(``ArticleFactory.near_duplicate`` gives it its new id, headline, outlet, url and publication
time). Its body is the original's with:

- with probability ``BYLINE_SHARE``, a byline crediting the original prepended: one of the
  ``BYLINES``, ``By AUTHOR, OUTLET`` as a paragraph of its own or ``(AGENCY) — `` before the
  first word; otherwise one of the ``FOOTERS`` (16 to 26 words) appended as a last paragraph;
- ``SUBSTITUTIONS`` words (1 to 4), at random positions, replaced by words of Faker's word list,
  keeping their capital and full stop (a draw may give the same word back).

The copy's word count is the original's plus its byline's or footer's. Its Jaccard similarity
to the original, on sets of 5-word shingles of the lowercased words (runs of ``\w``), measured
on 1,000 copies per length of original (seed 1):

    original's words   min    5th pct  median
    400-500            0.86   0.87     0.92    (all above 0.85)
    501-3,000          0.88   0.91     0.96
    200-399            0.73   0.79     0.88
    41-199             0.31   0.55     0.77
    3-40 (briefs)      0      0        0.26    (a byline or footer can outweigh the brief)

Over the generator's own mix of lengths (1,000 copies, seeds 1 to 3): median 0.89 to 0.90, and
74 to 82% of copies above 0.8.

Pure: every choice comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import re

from faker.providers.lorem.en_US import Provider as LoremProvider

BYLINE_SHARE = 0.5
BYLINES = ("By {author}, {outlet}\n\n", "({agency}) — ")
AGENCIES = ("Continental Press", "Wire Associates", "Global Newswire")
FOOTERS = (
    "This story was distributed through a syndication partner. All rights are reserved by the original "
    "publisher, and republication without permission is prohibited.",
    "Follow our live coverage for updates on this story, and sign up for the morning newsletter to get the "
    "most important headlines delivered to your inbox.",
    "Staff writers and wire services contributed reporting. Corrections can be sent to the standards desk, "
    "which reviews every request.",
    "Have a news tip? Contact our newsroom in confidence. Our journalists verify every submission before publication.",
)
SUBSTITUTIONS = (1, 4)  # inclusive range of words replaced

_WORDS = LoremProvider.word_list


def syndicated_content(rng: random.Random, original: dict) -> str:
    """``original``'s content, edited as the module docstring says."""
    content = substitute_words(rng, original["content"])
    if rng.random() < BYLINE_SHARE:
        byline = rng.choice(BYLINES).format(
            author=original["author"], outlet=original["source"], agency=rng.choice(AGENCIES)
        )
        return byline + content
    return f"{content}\n\n{rng.choice(FOOTERS)}"


def substitute_words(rng: random.Random, content: str) -> str:
    """``content`` with ``SUBSTITUTIONS`` words replaced, the whitespace between words kept."""
    tokens = re.split(r"(\s+)", content)  # words at even indices
    words = len(tokens) // 2 + 1
    for position in rng.sample(range(words), min(words, rng.randint(*SUBSTITUTIONS))):
        old = tokens[2 * position]
        stem, word = old.rstrip("."), rng.choice(_WORDS)
        tokens[2 * position] = (word.capitalize() if stem[:1].isupper() else word) + old[len(stem) :]
    return "".join(tokens)
