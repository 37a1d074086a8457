"""CM's callback bodies, as CM (and the simulator) posts them when a call ends."""

from __future__ import annotations

from typing import Any

from cmvoice.simulator.behaviour import RESULTS
from tests.support.stack import CALLEE, CALLER


def cm_callback(
    instruction_id: str, call_id: str, *, kind: str = "notification", code: int = 10, **extra: Any
) -> dict[str, Any]:
    """The body of a ``<kind>-finished`` callback with result ``code``; ``extra`` fields added
    or replaced (``digits`` for a DTMF call)."""
    return {
        "type": f"{kind}-finished",
        "call-id": call_id,
        "instruction-id": instruction_id,
        "caller": CALLER,
        "callee": CALLEE,
        "result": {"code": code, "description": RESULTS[code][0]},
        "started-on": "2026-02-09T11:00:31.752Z",
        "answered-on": "2026-02-09T11:00:37.972Z",
        "finished-on": "2026-02-09T11:00:48.112Z",
        **extra,
    }
