"""CallOutcome: what an application receives when a call attempt ends, and @on_result hooks."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Namespace of delivery ids: uuid5 of the call attempt, so every delivery of one outcome (a
#: re-publish after a crash too) carries the same id.
DELIVERY_NAMESPACE = uuid.UUID("3d3c9a51-7f0e-4f7b-9b55-2b1c0e6a8d11")


def delivery_id_for(instruction_id: str, call_id: str) -> str:
    """The stable id of the outcome of call ``call_id`` of ``instruction_id``."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{instruction_id}/{call_id}"))


@dataclass(frozen=True)
class CallOutcome:
    """The end of one call attempt, as delivered to result tasks and hooks.

    No phone number and no OTP code: outcomes travel through the broker and show in Flower.

    Attributes:
        instruction_id: the id of this attempt.
        root_instruction_id: the id the application enqueued (the first attempt).
        attempt: 1 for the first call, 2 for the first redial, ...
        final: no redial follows; this is the call's last outcome.
        result_code: CM's result code (9 not answered, 10 finished, 11 failed, 12 rejected).
        digits: what the callee keyed in (DTMF calls), else None.
        delivery_id: the same on every delivery of this outcome: a result task that sees it
            twice (a re-publish after a crash) knows it is the same outcome.
    """

    instruction_id: str
    root_instruction_id: str
    kind: str
    attempt: int
    final: bool
    result_code: int
    description: str
    call_id: str
    digits: str | None = None
    started_on: str | None = None
    answered_on: str | None = None
    finished_on: str | None = None
    campaign_id: str | None = None
    redial_instruction_id: str | None = None
    delivery_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallOutcome:
        known: dict[str, Any] = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


ResultHook = Callable[[CallOutcome], object]
_hooks: list[ResultHook] = []


def on_result(hook: ResultHook) -> ResultHook:
    """Decorator: call ``hook(outcome)`` in the worker for every call outcome.

    ::

        @cmvoice.on_result
        def remember(outcome: cmvoice.CallOutcome) -> None:
            ...

    A hook runs inside ``cmvoice.handle_result``: keep it short, and hand long work to a task.
    The module defining it must be imported by the worker (e.g. ``cmvoice worker -I myapp.hooks``).
    """
    _hooks.append(hook)
    return hook


def registered_hooks() -> list[ResultHook]:
    return list(_hooks)


def remove_hook(hook: ResultHook) -> None:
    """Unregister a hook (tests, or an application shutting a feature down)."""
    if hook in _hooks:
        _hooks.remove(hook)


def run_hooks(outcome: CallOutcome) -> int:
    """Call every hook; a failing hook is logged and does not stop the others. Returns failures."""
    failures = 0
    for hook in registered_hooks():
        try:
            hook(outcome)
        except Exception:
            failures += 1
            logger.exception("result hook %s failed for %s", hook, outcome.instruction_id)
    return failures
