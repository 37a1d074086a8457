"""Outcomes per callee: queued scenarios from the control API, else the last-two-digits rule."""

from __future__ import annotations

from collections import deque
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cmvoice.events import ResultCode
from cmvoice.instructions import DTMF_KEYS, normalize_number

#: The default rule: a callee ending in these two digits gets this result code; others get 10.
DEFAULT_RULE: dict[str, ResultCode] = {
    "09": ResultCode.CANCELLED,
    "11": ResultCode.FAILED,
    "12": ResultCode.REJECTED,
}


def _check_keys(value: str) -> str:
    if set(value) - DTMF_KEYS:
        raise ValueError("may hold only DTMF keys 0-9, * and #")
    return value


KeySequence = Annotated[str, Field(max_length=128), AfterValidator(_check_keys)]


class ControlModel(BaseModel):
    """Control API bodies: hyphenated or snake_case names, unknown names refused."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=lambda name: name.replace("_", "-"),
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


class Outcome(ControlModel):
    """How one simulated call ends, and what the callee does during it.

    ``keys``: the key sequences the callee presses, one per DTMF attempt (``"1234#"``; ``""``
    presses nothing). Attempts past the end of the list time out. None: a valid input.
    ``replays``: how often the callee presses 1 to hear the prompt or code again.
    """

    code: Annotated[int, Field(ge=0, le=99)]
    keys: list[KeySequence] | None = Field(default=None, max_length=99)
    replays: Annotated[int, Field(ge=0, le=3)] | None = None
    description: Annotated[str, Field(max_length=128)] | None = None
    sip_disconnect_code: Annotated[str, Field(max_length=16)] | None = None


class Scenario(ControlModel):
    """``POST /_sim/scenarios``: outcomes for the next calls to one number, in order."""

    callee: Annotated[str, Field(max_length=24), AfterValidator(normalize_number)]
    outcomes: list[Outcome] = Field(min_length=1, max_length=1000)


def default_outcome(callee: str) -> Outcome:
    """The outcome when no scenario is queued: by the callee's last two digits."""
    return Outcome(code=DEFAULT_RULE.get(callee[-2:], ResultCode.FINISHED))


class ScenarioBook:
    """Queues of outcomes per E.164 number; each call to the number takes the next one."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Outcome]] = {}

    def add(self, scenario: Scenario) -> int:
        """Append the scenario's outcomes; returns how many are now queued for its callee."""
        queue = self._queues.setdefault(scenario.callee, deque())
        queue.extend(scenario.outcomes)
        return len(queue)

    def next_outcome(self, callee: str) -> Outcome:
        """The queued outcome for this call, or the default rule when none is left."""
        queue = self._queues.get(callee)
        if not queue:
            return default_outcome(callee)
        outcome = queue.popleft()
        if not queue:
            del self._queues[callee]
        return outcome

    def clear(self, callee: str | None = None) -> None:
        if callee is None:
            self._queues.clear()
        else:
            self._queues.pop(callee, None)

    def pending(self) -> dict[str, list[dict[str, Any]]]:
        """Outcomes still queued, by callee (for ``GET /_sim/scenarios``)."""
        return {
            callee: [outcome.model_dump(mode="json", exclude_none=True) for outcome in queue]
            for callee, queue in self._queues.items()
        }
