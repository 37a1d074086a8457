"""Bounded JSON parsing: json.loads's answers within the bounds, one clear refusal beyond them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmvoice.bounded_json import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_NUMBER_CHARS,
    JsonLimitExceeded,
    loads_bounded,
)
from tests.support.docs_examples import DTMF_FINISHED


def refusal(data: bytes | str, **bounds: int) -> JsonLimitExceeded:
    with pytest.raises(JsonLimitExceeded) as caught:
        loads_bounded(data, **bounds)
    return caught.value


def test_a_body_nested_3000_deep_is_refused_before_json_loads_recurses() -> None:
    # Given a body json.loads dies on with RecursionError
    body = b"[" * 3000 + b"]" * 3000

    # When / Then it is refused by rule, naming the limit and not echoing the body
    error = refusal(body)
    assert error.rule == "too_deep"
    assert f"limit of {DEFAULT_MAX_DEPTH} levels" in str(error)
    assert "[[" not in str(error)


@pytest.mark.parametrize(
    "number",
    ["9" * 5000, "-" + "9" * 5000, "1." + "0" * 5000, "1e" + "9" * 5000],
    ids=["integer", "negative", "long fraction", "long exponent"],
)
def test_a_number_of_5000_digits_is_refused_not_a_value_error(number: str) -> None:
    # Given a callback whose result code is a number json.loads cannot convert (ints) or should
    # not spend time on (the others)
    body = '{"type": "dtmf-finished", "result": {"code": ' + number + "}}"

    # When / Then
    error = refusal(body)
    assert error.rule == "number_too_long"
    assert f"over the limit of {DEFAULT_MAX_NUMBER_CHARS}" in str(error)
    assert "99999" not in str(error)
    assert "00000" not in str(error)


@pytest.mark.parametrize(
    ("opener", "closer"), [("[", "]"), ('{"a": ', "}")], ids=["arrays", "objects"]
)
def test_nesting_to_the_limit_parses_and_one_level_more_is_refused(
    opener: str, closer: str
) -> None:
    at_limit = opener * DEFAULT_MAX_DEPTH + "1" + closer * DEFAULT_MAX_DEPTH
    beyond = opener + at_limit + closer

    assert loads_bounded(at_limit) == json.loads(at_limit)
    assert refusal(beyond).rule == "too_deep"


def test_the_bounds_can_be_chosen_per_call() -> None:
    callback = json.dumps(DTMF_FINISHED)  # an object holding an object: 2 levels

    assert loads_bounded(callback, max_depth=2) == DTMF_FINISHED
    assert refusal(callback, max_depth=1).rule == "too_deep"
    assert loads_bounded("[1000]", max_number_chars=4) == [1000]
    assert refusal("[10000]", max_number_chars=4).rule == "number_too_long"


@pytest.mark.parametrize(
    "text",
    [
        '["' + "[" * 100 + '"]',
        '{"' + "{" * 100 + '": "' + "]" * 100 + '"}',
        '["\\"' + "[" * 100 + '\\\\", "\\\\\\"' + "{" * 100 + '"]',
    ],
    ids=["in a value", "in a key", "after escaped quotes and backslashes"],
)
def test_brackets_inside_strings_are_not_nesting(text: str) -> None:
    assert loads_bounded(text) == json.loads(text)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"type": "otp-finished",', json.JSONDecodeError),
        (b'["unterminated ' + b"[" * 100, json.JSONDecodeError),
        (b"\xff\xfe\xfd", UnicodeDecodeError),
        (b"", json.JSONDecodeError),
    ],
    ids=["truncated", "unterminated string", "not UTF-8", "empty"],
)
def test_text_that_is_not_json_raises_what_json_loads_raises(
    data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        json.loads(data)
    with pytest.raises(error):
        loads_bounded(data)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
def test_bytes_in_any_encoding_json_loads_detects_parse_alike(encoding: str) -> None:
    data = json.dumps(DTMF_FINISHED).encode(encoding)

    assert loads_bounded(data) == json.loads(data) == DTMF_FINISHED


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text(st.sampled_from('[]{}"\\ ax\x00é') | st.characters()),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.sampled_from('[]{}"\\a')), children, max_size=4)
    ),
    max_leaves=30,
)


@given(value=json_values, ascii_only=st.booleans())
def test_any_json_within_the_bounds_parses_as_json_loads_parses_it(
    value: Any, ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)

    assert loads_bounded(text) == json.loads(text)


@given(
    levels=st.lists(st.sampled_from(["[", '{"[": ', '["{", ', '{"\\"{": [']), max_size=60),
)
def test_nesting_is_refused_exactly_when_deeper_than_the_limit(levels: list[str]) -> None:
    # Given text nested len(levels) deep, with brackets inside its strings too
    closers = {"[": "]", '{"[": ': "}", '["{", ': "]", '{"\\"{": [': "]}"}
    depth = sum(2 if level == '{"\\"{": [' else 1 for level in levels)
    text = "".join(levels) + "0" + "".join(closers[level] for level in reversed(levels))

    # When / Then
    if depth > DEFAULT_MAX_DEPTH:
        assert refusal(text).rule == "too_deep"
    else:
        assert loads_bounded(text) == json.loads(text)
