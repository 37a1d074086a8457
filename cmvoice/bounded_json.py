"""JSON parsing for bodies from outside: bounded nesting depth and number size, never a crash."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from itertools import accumulate
from typing import Any, Literal, TypeAlias

from cmvoice.errors import CmVoiceError

#: Deepest nesting of arrays and objects accepted. A CM callback is 2 levels deep (the event
#: and its ``result``); json.loads itself recurses once per level and dies near 1,000.
DEFAULT_MAX_DEPTH = 32
#: Longest number token accepted (sign, digits, point, exponent). Encoders write an int64 in
#: at most 20 characters and a double in at most 24; Python refuses ints over 4,300 digits.
DEFAULT_MAX_NUMBER_CHARS = 100

#: The rules a text can break; few and fixed, so the receiver uses them as a metric label.
LimitRule: TypeAlias = Literal["too_deep", "number_too_long"]

# A JSON string, or an unterminated one up to the end (json.loads refuses it later); possessive,
# so no backtracking. Removed before counting brackets: brackets inside strings do not nest.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JsonLimitExceeded(CmVoiceError, ValueError):
    """A JSON text breaks a bound of ``loads_bounded``; ``rule`` says which one."""

    def __init__(self, rule: LimitRule, message: str) -> None:
        super().__init__(message)
        self.rule: LimitRule = rule


def loads_bounded(
    data: bytes | bytearray | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_chars: int = DEFAULT_MAX_NUMBER_CHARS,
) -> Any:
    """``json.loads(data)``, refusing nesting deeper than ``max_depth`` and numbers longer
    than ``max_number_chars`` characters before they cost anything.

    Raises:
        JsonLimitExceeded: a bound is broken; the message names the rule and the limit, never
            the body.
        json.JSONDecodeError, UnicodeDecodeError: as json.loads, for text that is not JSON.
    """
    # Decode as json.loads does, so that the depth check reads characters, not UTF-16 bytes.
    if isinstance(data, bytes | bytearray):
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        text = data
    _check_depth(text, max_depth)
    return _decoder(max_number_chars).decode(text)


def _check_depth(text: str, max_depth: int) -> None:
    # Fast path, all C: text with no more openers than the bound cannot nest deeper than it.
    if text.count("[") + text.count("{") <= max_depth:
        return
    # On the prefix json.loads accepts before any error, this sees the same strings and
    # brackets, so it finds every depth json.loads would reach, before json.loads recurses.
    brackets = _BRACKET.findall(_STRING.sub("", text))
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > max_depth:
        raise JsonLimitExceeded(
            "too_deep", f"JSON nesting: deeper than the limit of {max_depth} levels"
        )


@lru_cache(maxsize=8)
def _decoder(max_number_chars: int) -> json.JSONDecoder:
    # One decoder per bound: json.loads with hooks would build a new one (and its scanner) per
    # call, which costs more than the parse of a callback.
    def check(token: str) -> str:
        if len(token) > max_number_chars:
            raise JsonLimitExceeded(
                "number_too_long",
                f"JSON number: {len(token)} characters, over the limit of {max_number_chars}",
            )
        return token

    return json.JSONDecoder(
        parse_int=lambda token: int(check(token)),
        parse_float=lambda token: float(check(token)),
    )
