"""Pacing end to end: campaign backlogs released by the pacer as the account's rate allows.

Real Redis, real workers (a thread in this process, or ``cmvoice worker`` processes), the
simulator and the receiver over HTTP. Assertions are on order and counts: the simulator's
acceptance order, its per-instruction counts, the ledger and the broker's lists; never on how
fast something went (that is bench/pacing.py's job).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cmvoice.campaigns.pacer import Pacer
from tests.support.campaigns import (
    campaign_of,
    counts,
    many_callees,
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


def test_two_campaigns_get_equal_shares_whatever_the_sizes_of_the_pacers_steps(
    stack: Stack, tmp_path: Path
) -> None:
    # Given two campaigns of 50 rows, no worker, and an account rate that never binds
    runtime = stack.make_runtime(
        rate_limit="100000/s", max_concurrent_calls=1_000_000, calling_window=ALL_DAY
    )
    first = campaign_of(tmp_path, many_callees(50, block=1), name="first").campaign_id
    second = campaign_of(tmp_path, many_callees(50, block=2), name="second").campaign_id
    pacer = Pacer(runtime)
    assert pacer.lease.hold()

    # When the pacer's steps alternate between one call and four (as when a step right after a
    # batch finds one more turn free)
    released: Counter[str] = Counter()
    for _ in range(10):
        for batch in (1, 4):
            pacer.max_batch = batch
            released.update(pacer.step().by_campaign)

    # Then each campaign had as many calls released as the other
    assert released == {first: 25, second: 25}


def test_a_pacer_given_a_new_runtime_keeps_its_lease(stack: Stack) -> None:
    # Given a pacer holding the lease
    pacer = Pacer(stack.make_runtime(calling_window=ALL_DAY))
    assert pacer.lease.hold()

    # When the process's runtime is replaced (new settings), and the pacer takes it up
    pacer.bind(stack.make_runtime(calling_window=ALL_DAY, rate_limit="50/s"))

    # Then it still holds the lease: it does not wait for its own old lease to run out
    assert pacer.lease.hold()


def test_a_campaign_whose_own_rate_binds_is_looked_at_again_before_a_second_passes(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a campaign of its own rate 5/s, an account rate that never binds, and no worker
    runtime = stack.make_runtime(rate_limit="100000/s", calling_window=ALL_DAY)
    cid = campaign_of(tmp_path, many_callees(20), rate="5/s").campaign_id
    pacer = Pacer(runtime)
    assert pacer.lease.hold()

    # When the pacer has released what the campaign's rate allows within the lead
    first = pacer.step()
    second = pacer.step()

    # Then it looks again when the campaign has room, well before its idle second
    assert first.by_campaign == {cid: 3}
    assert second.released_campaign == 0
    assert 0 < second.next_step_s < 0.5
