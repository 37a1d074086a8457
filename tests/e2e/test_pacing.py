"""Pacing end to end: campaign backlogs released by the pacer as the account's rate allows.

Real Redis, real workers (a thread in this process, or ``cmvoice worker`` processes), the
simulator and the receiver over HTTP. Assertions are on order and counts: the simulator's
acceptance order, its per-instruction counts, the ledger and the broker's lists; never on how
fast something went (that is bench/pacing.py's job).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cmvoice.campaigns.pacer import Pacer
from tests.support.campaigns import (
    counts,
)
from tests.support.stack import CALLER, Stack

#: Campaign calls go whatever the time of day where the callee lives (the default window,
#: 08:00-21:00 in the callee's zone, would hold them at night).
ALL_DAY = "00:00-24:00"
#: Numbers of the interactive calls: none of them is in a campaign.
INTERACTIVE_CALLEES = ["+31650000010", "+31650000020", "+31650000030"]


@pytest.fixture(autouse=True)
def _errors_files_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors files default to the working directory: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def notification(callee: str) -> dict[str, Any]:
    return {"callee": callee, "caller": CALLER, "prompt": "Your code is ready."}


def finished(campaign_id: str, rows: int) -> bool:
    return counts(campaign_id) == {"FINISHED": rows}


def in_window(times: list[datetime], start: datetime, end: datetime) -> int:
    return sum(1 for moment in times if start <= moment <= end)


def test_a_pacer_given_a_new_runtime_keeps_its_lease(stack: Stack) -> None:
    # Given a pacer holding the lease
    pacer = Pacer(stack.make_runtime(calling_window=ALL_DAY))
    assert pacer.lease.hold()

    # When the process's runtime is replaced (new settings), and the pacer takes it up
    pacer.bind(stack.make_runtime(calling_window=ALL_DAY, rate_limit="50/s"))

    # Then it still holds the lease: it does not wait for its own old lease to run out
    assert pacer.lease.hold()
