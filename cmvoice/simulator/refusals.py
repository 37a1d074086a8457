"""Numbers the simulated CM refuses to call: every POST to one is answered with a 4xx, for good."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from cmvoice.instructions import normalize_number
from cmvoice.privacy import mask_number
from cmvoice.simulator.scenarios import ControlModel

#: What the refusal says when the control API gave no rule.
DEFAULT_RULE = "CM does not call this number (simulated)"


class Refusal(ControlModel):
    """``POST /_sim/refusals``: CM answers every instruction to ``callee`` with ``status``.

    Unlike a 429 or a 503, this is CM saying the request itself will never work (a number it
    will not call), so a client must not send it again: what a permanent failure looks like.
    """

    callee: Annotated[str, Field(max_length=24), AfterValidator(normalize_number)]
    status: Annotated[int, Field(ge=400, le=499)] = 400
    rule: Annotated[str, Field(min_length=1, max_length=200)] = DEFAULT_RULE

    def answer(self) -> dict[str, Any]:
        """CM's error body: the number masked, as in every other answer of the simulator."""
        value = mask_number(self.callee)
        return {
            "message": f"callee: {self.rule} (got {value})",
            "errors": [{"field": "callee", "rule": self.rule, "value": value}],
        }


class RefusedNumbers:
    """The refusals in force, by E.164 number; they last until deleted or reset."""

    def __init__(self) -> None:
        self._by_callee: dict[str, Refusal] = {}

    def add(self, refusal: Refusal) -> None:
        self._by_callee[refusal.callee] = refusal

    def get(self, callee: str) -> Refusal | None:
        return self._by_callee.get(callee)

    def clear(self, callee: str | None = None) -> None:
        if callee is None:
            self._by_callee.clear()
        else:
            self._by_callee.pop(callee, None)

    def listed(self) -> dict[str, dict[str, Any]]:
        """The refusals, by callee (for ``GET /_sim/refusals``)."""
        return {
            callee: refusal.model_dump(mode="json", exclude={"callee"})
            for callee, refusal in self._by_callee.items()
        }
