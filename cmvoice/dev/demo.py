"""The calls of ``cmvoice dev --demo``: one per app plus an unanswered one, and their outcomes."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from rich.markup import escape
from rich.table import Table

from cmvoice.calls import CallState
from cmvoice.delivery import result_task
from cmvoice.outcomes import CallOutcome
from cmvoice.privacy import mask_number
from cmvoice.producer import enqueue
from cmvoice.records import attempt_chain
from cmvoice.runtime import Runtime, get_runtime

#: The result task the demo adds to CMVOICE_RESULT_TASKS; the worker imports this module for it.
RECORD_OUTCOME_TASK = "cmvoice.dev.demo.record_outcome"
#: Seconds the recorded outcomes are kept: long enough for any demo, then Redis forgets them.
OUTCOMES_TTL_S = 3600
#: Seconds between two looks at the outcomes.
POLL_INTERVAL_S = 0.25

# Numbers of the right shape (phonenumbers accepts them). The simulator decides each call's end
# by the callee's last two digits: ..09 never answers; the others are answered.
CALLER = "+31761234567"
NOTIFICATION_CALLEE = "+31612345601"
OTP_CALLEE = "+31612345602"
DTMF_CALLEE = "+31612345603"
NO_ANSWER_CALLEE = "+31612345609"


@result_task(RECORD_OUTCOME_TASK, ignore_result=True)
def record_outcome(outcome: CallOutcome) -> None:
    """A result task, as an application writes one: keep every outcome in a Redis list."""
    runtime = get_runtime()
    key = runtime.keys.demo_outcomes()
    pipeline = runtime.redis.pipeline()
    pipeline.rpush(key, json.dumps(outcome.to_dict()))
    pipeline.expire(key, OUTCOMES_TTL_S)
    pipeline.execute()


@dataclass(frozen=True)
class DemoCall:
    """One call of the demo: what is enqueued, and what the simulated callee does."""

    label: str
    kind: str
    instruction: dict[str, Any]
    #: Outcomes queued at the simulator for this callee (``POST /_sim/scenarios``).
    scenario: list[dict[str, Any]] | None = None


def demo_calls() -> list[DemoCall]:
    """A notification, an OTP, a DTMF whose callee types a wrong then a right PIN, and a
    notification to a number that never answers (redialed by the policy)."""
    return [
        DemoCall(
            "Notification",
            "notification",
            {
                "callee": NOTIFICATION_CALLEE,
                "caller": CALLER,
                "prompt": "Your parcel will be delivered today between 2 and 4 PM.",
                "prompt-type": "TTS",
            },
        ),
        DemoCall(
            "OTP",
            "otp",
            {
                "callee": OTP_CALLEE,
                "caller": CALLER,
                "intro-prompt": "Your verification code is",
                "intro-prompt-type": "TTS",
                # A fresh code each run; it leaves the ledger once the simulator accepts it.
                "code": f"{secrets.randbelow(10**6):06d}",
                "code-type": "TTS",
            },
        ),
        DemoCall(
            "DTMF",
            "dtmf",
            {
                "callee": DTMF_CALLEE,
                "caller": CALLER,
                "prompt": "Please enter your four digit PIN, then press hash.",
                "prompt-type": "TTS",
                "invalid-prompt": "That is not four digits.",
                "invalid-prompt-type": "TTS",
                "min-digits": 4,
                "max-digits": 4,
                "max-attempts": 3,
            },
            # The callee first types two digits (invalid), then four: digits "2024".
            scenario=[{"code": 10, "keys": ["42#", "2024#"]}],
        ),
        DemoCall(
            "No answer",
            "notification",
            {
                "callee": NO_ANSWER_CALLEE,
                "caller": CALLER,
                "prompt": "Your appointment is tomorrow at 9 AM.",
                "prompt-type": "TTS",
            },
        ),
    ]


@dataclass
class DemoResult:
    """A demo call once enqueued: its final outcome, or why it has none."""

    call: DemoCall
    instruction_id: str
    outcome: CallOutcome | None = None
    #: Set when an attempt ended without a callback (FAILED or CANCELLED in the ledger).
    failure: str | None = None
    #: The ledger state of the latest attempt, for a call still waiting.
    state: str = CallState.QUEUED.value

    @property
    def done(self) -> bool:
        return self.outcome is not None or self.failure is not None


@dataclass
class DemoReport:
    """What the demo did: one result per call, how long it took, and what went wrong."""

    results: list[DemoResult]
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def table(self) -> Table:
        """The outcomes as a table: numbers masked, never an OTP code."""
        table = Table(title=f"cmvoice demo: outcomes after {self.elapsed_s:.1f} s")
        # In a narrow terminal the words of app and result wrap; ids and numbers stay whole.
        table.add_column("app")
        table.add_column("instruction id", no_wrap=True)
        table.add_column("callee", no_wrap=True)
        table.add_column("attempts", justify="right", no_wrap=True)
        table.add_column("result")
        table.add_column("digits", no_wrap=True)
        for result in self.results:
            outcome = result.outcome
            if outcome is not None:
                attempts = str(outcome.attempt)
                shown = f"{outcome.result_code} {outcome.description}"
                digits = outcome.digits or ""
            else:
                attempts, digits = "", ""
                shown = result.failure or f"no outcome yet ({result.state})"
            table.add_row(
                result.call.label,
                result.instruction_id,
                mask_number(result.call.instruction["callee"]),
                attempts,
                escape(shown),
                digits,
            )
        return table


def send_demo_calls(runtime: Runtime, simulator_url: str) -> list[DemoResult]:
    """Queue the simulator's scenarios, then enqueue every demo call as an application would."""
    results = []
    for call in demo_calls():
        if call.scenario:
            response = requests.post(
                f"{simulator_url}/_sim/scenarios",
                json={"callee": call.instruction["callee"], "outcomes": call.scenario},
                timeout=10,
            )
            response.raise_for_status()
        ticket = enqueue(call.instruction, kind=call.kind, runtime=runtime)
        results.append(DemoResult(call, ticket.instruction_id))
    return results


def collect(runtime: Runtime, results: list[DemoResult]) -> None:
    """Update the results from the recorded final outcomes and, for the rest, the ledger."""
    finals: dict[str, CallOutcome] = {}
    for raw in runtime.redis.lrange(runtime.keys.demo_outcomes(), 0, -1):
        outcome = CallOutcome.from_dict(json.loads(raw))
        if outcome.final:
            finals[outcome.root_instruction_id] = outcome
    for result in results:
        if result.done:
            continue
        result.outcome = finals.get(result.instruction_id)
        if result.outcome is not None:
            continue
        # No outcome yet: a permanent error ends a call without any callback, so look at the
        # latest attempt in the ledger (redials are linked by next_id).
        chain = attempt_chain(runtime.ledger, result.instruction_id)
        if chain:
            latest = chain[-1]
            result.state = latest.state.value
            if latest.state in (CallState.FAILED, CallState.CANCELLED):
                result.failure = f"{latest.state.value}: {latest.last_error or 'no reason given'}"


def run_demo(
    runtime: Runtime,
    simulator_url: str,
    *,
    timeout_s: float,
    pause: Callable[[float], None],
) -> DemoReport:
    """Send the demo calls and wait, up to ``timeout_s``, for every final outcome.

    ``pause`` waits between two looks; it raises when the stack must stop (Ctrl-C, a dead part).
    """
    started = time.monotonic()
    results = send_demo_calls(runtime, simulator_url)
    deadline = started + timeout_s
    while True:
        collect(runtime, results)
        if all(result.done for result in results) or time.monotonic() > deadline:
            break
        pause(POLL_INTERVAL_S)
    report = DemoReport(results, elapsed_s=time.monotonic() - started)
    waiting = [result for result in results if not result.done]
    if waiting:
        names = ", ".join(f"{result.call.label} ({result.state})" for result in waiting)
        report.problems.append(f"timed out after {timeout_s:g} s waiting for: {names}")
    for result in results:
        if result.failure:
            report.problems.append(f"{result.call.label} failed: {result.failure}")
    return report
