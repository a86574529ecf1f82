"""The word count: the contract's ``len(content.split())``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_word_count_of_ascii_text_is_str_split(text):
    """The count ASCII text takes (no words made) agrees with len(str.split()) on any ASCII text."""
    assert word_count(text) == len(text.split())


@given(st.text(alphabet=st.sampled_from([*PYTHON_WHITESPACE, "a", "é", "\x00", "\x7f", "\x80"])))
def test_word_count_of_any_text_is_str_split(text):
    """Any whitespace and word characters, ASCII or not, in any order: len(str.split())."""
    assert word_count(text) == len(text.split())
