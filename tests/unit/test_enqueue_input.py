"""enqueue() refuses what is neither a mapping nor an instruction model (defect 7 of the
hardening probe: None, a list, a string or an int raised AttributeError), before Redis.

The runtime's Redis is a port nobody listens on: any read or write of the ledger would raise a
connection error instead of InvalidInstruction, so nothing can have been written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cmvoice.config import Settings
from cmvoice.embedded_redis import free_port
from cmvoice.errors import BrokerUnavailable, InvalidInstruction
from cmvoice.producer import enqueue
from cmvoice.runtime import Runtime

#: An API URL other than CM's: the runtime then needs no product token.
SIMULATOR_API_URL = "http://127.0.0.1:9/voiceapi/v2"


@pytest.fixture
def unreachable_runtime() -> Iterator[Runtime]:
    settings = Settings(
        _env_file=None,
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        api_url=SIMULATOR_API_URL,
        callback_secret="a-secret",
    )
    runtime = Runtime.from_settings(settings)
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("instruction", "type_name"),
    [(None, "NoneType"), ([], "list"), ("x", "str"), (5, "int")],
    ids=["None", "list", "str", "int"],
)
def test_enqueue_of_something_not_an_instruction_is_invalid_and_touches_no_redis(
    unreachable_runtime: Runtime, instruction: Any, type_name: str
) -> None:
    # When enqueue() is given something that is neither a mapping nor an instruction model
    with pytest.raises(InvalidInstruction) as refused:
        enqueue(instruction, kind="notification", runtime=unreachable_runtime)

    # Then it names what was wrong, and what it got, before any Redis was asked
    [error] = refused.value.errors
    assert error.field == "instruction"
    assert "must be a mapping" in error.rule
    assert error.value == f"a {type_name}"


def test_a_valid_instruction_does_reach_for_that_redis(unreachable_runtime: Runtime) -> None:
    # Given the same runtime, when a valid instruction is enqueued, then the unreachable Redis
    # shows (so the refusals above came before any Redis call)
    valid = {"callee": "+31612345678", "caller": "+31761234567", "prompt": "Hi."}
    with pytest.raises(BrokerUnavailable):
        enqueue(valid, kind="notification", runtime=unreachable_runtime)
