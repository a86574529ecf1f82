"""The article parse by orjson gives Python's ``json`` verdict and article fields, whatever the payload."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from news_etl.schemas import ARTICLE_FIELDS
from news_etl.transform import _json_loads, load_json

KEYS = st.sampled_from([*ARTICLE_FIELDS, "published_at", "extra", "a"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**66),  # around the 64-bit limits, where orjson reads floats
    st.integers(min_value=-(2**66), max_value=-(2**62)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)  # fmt: skip
ARTICLES = st.dictionaries(KEYS, st.one_of(st.text(), VALUES), min_size=1)
# Text that json and orjson may read differently: spliced into otherwise valid JSON.
FRAGMENTS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.7976931348623159e308",
                             "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616",
                             '"\\ud800"', '"\\udc00\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', "0.1e-400", "-0",
                             "1E+2", "[]", "{}", '{"a":1,"a":2}', " \t\n\r", "\x0b", "\ufeff", "01"])  # fmt: skip


def outcome(parse, text: str):
    """What the parse gives that the job uses: refused, or the article fields (typed) or the value."""
    try:
        value = parse(text)
    except (ValueError, UnicodeEncodeError, RecursionError):
        return "refused"
    if isinstance(value, dict):
        return [(name, type(value.get(name)), repr(value.get(name))) for name in (*ARTICLE_FIELDS, "published_at")]
    return repr(value)


@given(st.one_of(VALUES, ARTICLES), st.booleans())
def test_generated_json_gets_the_json_verdict_and_values(value, ascii_only):
    """Valid JSON of any shape (big integers, floats, surrogates in strings): the same outcome as json."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert outcome(load_json, text) == outcome(_json_loads, text)


@given(ARTICLES, FRAGMENTS, st.sampled_from([*ARTICLE_FIELDS, "extra"]), st.booleans())
def test_json_with_edge_case_fragments_gets_the_json_verdict_and_values(article, fragment, key, inside):
    """NaN, Infinity, 1e400, big integers, unpaired surrogates, duplicate keys, stray whitespace and
    byte-order marks, as a field's value or raw in the text: the same outcome as json."""
    text = json.dumps(article)
    if inside:
        text = text[:-1] + (", " if len(article) else "") + f'"{key}": {fragment}' + "}"
    else:
        text = fragment + text if fragment.isspace() or fragment == "\ufeff" else text[:-1] + fragment
    assert outcome(load_json, text) == outcome(_json_loads, text)
