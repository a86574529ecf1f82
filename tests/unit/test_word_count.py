"""The word count: the contract's ``len(content.split())``."""

from __future__ import annotations

from news_etl.transform import word_count

PYTHON_WHITESPACE = [chr(c) for c in range(0x110000) if chr(c).isspace()]
WORD_COUNT_CASES = {
    "": 0,
    " ": 0,
    "".join(PYTHON_WHITESPACE) * 2: 0,
    "word": 1,
    "  two   words \n": 2,
    "a\u200bb\ufeffc\u180ed": 1,  # zero-width space, BOM, Mongolian vowel separator: not whitespace
    "héllo, 世界 😀!": 3,
    "one\x1ctwo\u3000three\xa0four": 4,
}


def test_word_count_of_explicit_cases():
    """Empty and whitespace-only text count 0 words; lookalike characters do not split words."""
    assert [word_count(text) for text in WORD_COUNT_CASES] == list(WORD_COUNT_CASES.values())


def test_every_python_whitespace_character_separates_words():
    """Each of the 29 characters str.split() splits on separates two words."""
    texts = [f"one{ws}two{ws}" for ws in PYTHON_WHITESPACE]
    assert len(PYTHON_WHITESPACE) == 29
    assert [word_count(text) for text in texts] == [2] * 29
