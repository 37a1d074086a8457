"""The Request-DTMF rules: reading keys per attempt, checking them, retrying up to max-attempts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cmvoice.instructions import DtmfInstruction

#: CM's default terminator: input ends at ``#``.
DEFAULT_TERMINATORS = "#"
#: CM's default regex: digits only.
DEFAULT_REGEX = "[0-9]*"
#: Repeated to build a default valid input when the scenario gives no keys.
_CANDIDATE_PATTERNS = ("1234567890", *"0123456789")


@dataclass(frozen=True)
class DtmfAttempt:
    """One attempt: the keys pressed (None: none at all, a timeout), what was read, and why."""

    keys: str | None
    digits: str
    terminated: bool
    valid: bool


@dataclass(frozen=True)
class DtmfResult:
    """All attempts made; ``digits`` is the first valid attempt's input, or empty."""

    attempts: tuple[DtmfAttempt, ...]

    @property
    def digits(self) -> str:
        for attempt in self.attempts:
            if attempt.valid:
                return attempt.digits
        return ""


def read_input(keys: str, max_digits: int, terminators: str) -> tuple[str, bool]:
    """What CM reads from ``keys``: up to the first terminator (excluded) or max-digits keys.

    Returns the digits and whether a terminator ended the input.
    """
    digits: list[str] = []
    for key in keys:
        if key in terminators:
            return "".join(digits), True
        digits.append(key)
        if len(digits) >= max_digits:
            break
    return "".join(digits), False


def is_valid_input(digits: str, min_digits: int, max_digits: int, regex: str) -> bool:
    """CM's rule: between min-digits and max-digits keys, and the whole input matches regex."""
    return min_digits <= len(digits) <= max_digits and re.fullmatch(regex, digits) is not None


def run_attempts(instruction: DtmfInstruction, keys: Sequence[str]) -> DtmfResult:
    """Play the attempts: one key sequence each, stopping at the first valid one.

    An attempt with no sequence left in ``keys`` is a timeout (nothing pressed): invalid.
    """
    terminators = (
        instruction.terminators if instruction.terminators is not None else DEFAULT_TERMINATORS
    )
    regex = instruction.regex or DEFAULT_REGEX
    attempts: list[DtmfAttempt] = []
    for number in range(instruction.max_attempts):
        pressed = keys[number] if number < len(keys) else None
        digits, terminated = read_input(pressed or "", instruction.max_digits, terminators)
        valid = pressed is not None and is_valid_input(
            digits, instruction.min_digits, instruction.max_digits, regex
        )
        attempts.append(DtmfAttempt(pressed, digits, terminated, valid))
        if valid:
            break
    return DtmfResult(tuple(attempts))


def default_keys(instruction: DtmfInstruction) -> list[str]:
    """A valid input for the instruction, as a cooperative callee would type it.

    Tries ``123...``, then runs of one digit, from min-digits up; the first terminator is
    appended when there is one. When no candidate matches the regex, ``123...`` is sent anyway
    (and is refused, like a callee who cannot guess what is expected).
    """
    terminators = (
        instruction.terminators if instruction.terminators is not None else DEFAULT_TERMINATORS
    )
    regex = instruction.regex or DEFAULT_REGEX
    end = terminators[:1]
    for length in range(instruction.min_digits, instruction.max_digits + 1):
        for pattern in _CANDIDATE_PATTERNS:
            candidate = (pattern * length)[:length]
            if set(candidate) & set(terminators):
                continue
            if is_valid_input(candidate, instruction.min_digits, instruction.max_digits, regex):
                return [candidate + end]
    return [("1234567890" * instruction.max_digits)[: instruction.min_digits] + end]
