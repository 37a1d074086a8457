"""The reconciler's decisions about one lost record: a lost lease, an unknown outcome, silence."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from cmvoice.config import Settings
from cmvoice.delivery import MAX_DELIVERIES, stored_message
from cmvoice.ledger import CallRecord, CallState
from cmvoice.publishing import Lane
from cmvoice.tasks.maintenance import (
    Move,
    after_lost_lease,
    after_silent_placed,
    after_unknown_timeout,
    next_delivery,
    released_again,
)

INSTRUCTION_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
CAMPAIGN_ID = "20261126-1f2e3d4c"


def record(state: CallState, *, sent: bool = False, campaign: bool = False) -> CallRecord:
    fields = {"state": state.value, "kind": "notification", "attempts": "1"}
    if sent:
        fields["sent"] = "1"
    if campaign:
        fields["campaign_id"] = CAMPAIGN_ID
    return CallRecord(
        instruction_id=INSTRUCTION_ID,
        kind="notification",
        state=state,
        payload={"callee": "+31612345678", "caller": "+31761234567", "prompt": "Hello."},
        fields=fields,
    )


def settings(unknown_policy: Literal["fail", "redial"]) -> Settings:
    return Settings(broker_url="redis://127.0.0.1:1/0", unknown_policy=unknown_policy)


def effects(move: Move) -> tuple[CallState, bool, bool, Lane | None]:
    """What a move does, as the reconciler applies it."""
    return move.to, move.free_slot, move.park, move.publish


# --- a dispatch whose worker died (its lease ran out) -----------------------------------------


@pytest.mark.parametrize("campaign", [False, True], ids=["interactive", "campaign"])
def test_a_lost_lease_after_the_post_went_out_makes_the_outcome_unknown(campaign: bool) -> None:
    # Given a DISPATCHING record marked sent: CM may have placed the call
    lost = record(CallState.DISPATCHING, sent=True, campaign=campaign)

    # When its lease runs out
    move = after_lost_lease(lost)

    # Then it waits for a callback as UNKNOWN, keeping its slot (the call may ring), not re-sent
    assert effects(move) == (CallState.UNKNOWN, False, False, None)
    assert "in flight" in move.reason


def test_a_lost_lease_before_sending_queues_an_interactive_call_again_on_its_lane() -> None:
    # Given an interactive DISPATCHING record never sent
    lost = record(CallState.DISPATCHING)

    # When its lease runs out
    move = after_lost_lease(lost)

    # Then it is QUEUED, its slot freed, and published again on the interactive lane
    assert effects(move) == (CallState.QUEUED, True, False, Lane.INTERACTIVE)
    assert "before sending" in move.reason


def test_a_lost_lease_before_sending_parks_a_campaign_call_back_in_its_backlog() -> None:
    # Given a campaign's DISPATCHING record never sent
    lost = record(CallState.DISPATCHING, campaign=True)

    # When its lease runs out
    move = after_lost_lease(lost)

    # Then it is QUEUED in the campaign's backlog for the pacer, its slot freed, not published
    assert effects(move) == (CallState.QUEUED, True, True, None)


@pytest.mark.parametrize("sent", ["", "0"])
def test_only_a_sent_mark_of_1_counts_as_sent(sent: str) -> None:
    # Given a record whose sent field is present but not "1"
    lost = CallRecord(
        INSTRUCTION_ID,
        "otp",
        CallState.DISPATCHING,
        {},
        {"state": "DISPATCHING", "sent": sent},
    )

    # When / Then it is safe to send again
    assert after_lost_lease(lost).to is CallState.QUEUED


# --- no callback for a call of unknown outcome ------------------------------------------------


@pytest.mark.parametrize("campaign", [False, True], ids=["interactive", "campaign"])
def test_an_unknown_outcome_past_its_timeout_fails_and_frees_the_slot_by_default(
    campaign: bool,
) -> None:
    # Given an UNKNOWN record and the policy "fail"
    unknown = record(CallState.UNKNOWN, sent=True, campaign=campaign)

    # When no callback came within the unknown timeout
    move = after_unknown_timeout(unknown, settings("fail"))

    # Then it ends FAILED, saying why, and gives its slot back
    assert effects(move) == (CallState.FAILED, True, False, None)
    assert move.reason == "outcome unknown: no callback within the unknown timeout"


def test_an_unknown_interactive_call_is_queued_on_its_lane_by_the_redial_policy() -> None:
    # Given an interactive UNKNOWN record and the policy "redial"
    unknown = record(CallState.UNKNOWN, sent=True)

    # When no callback came within the unknown timeout
    move = after_unknown_timeout(unknown, settings("redial"))

    # Then it is QUEUED and published on the interactive lane; it keeps the slot it holds,
    # which its next claim takes over
    assert effects(move) == (CallState.QUEUED, False, False, Lane.INTERACTIVE)
    assert "by policy" in move.reason


def test_an_unknown_campaign_call_is_parked_in_its_backlog_by_the_redial_policy() -> None:
    # Given a campaign's UNKNOWN record and the policy "redial"
    unknown = record(CallState.UNKNOWN, sent=True, campaign=True)

    # When no callback came within the unknown timeout
    move = after_unknown_timeout(unknown, settings("redial"))

    # Then it waits in the backlog for the pacer, its slot freed, nothing published
    assert effects(move) == (CallState.QUEUED, True, True, None)


# --- placed, and CM never called back ---------------------------------------------------------


def test_a_placed_call_without_a_callback_fails_and_frees_its_slot() -> None:
    # Given / When a PLACED call heard nothing from CM within the callback timeout
    move = after_silent_placed()

    # Then it ends FAILED, saying why, and its slot is given back; nothing is sent again
    assert effects(move) == (CallState.FAILED, True, False, None)
    assert move.reason == "placed, but no callback from CM within the callback timeout"


@pytest.mark.parametrize(
    "move",
    [
        after_lost_lease(record(CallState.DISPATCHING, sent=True)),
        after_lost_lease(record(CallState.DISPATCHING)),
        after_lost_lease(record(CallState.DISPATCHING, campaign=True)),
        after_unknown_timeout(record(CallState.UNKNOWN), settings("fail")),
        after_unknown_timeout(record(CallState.UNKNOWN), settings("redial")),
        after_unknown_timeout(record(CallState.UNKNOWN, campaign=True), settings("redial")),
        after_silent_placed(),
    ],
)
def test_no_move_both_parks_and_publishes_and_none_names_the_number(move: Move) -> None:
    # Given any move of the reconciler
    # Then a call never both waits in a backlog and gets a dispatch message (a double release)
    assert not (move.park and move.publish is not None)
    # And its reason, written to the record's last_error, holds no phone number
    assert "612345678" not in move.reason


def test_a_released_call_still_queued_is_published_again() -> None:
    assert released_again(record(CallState.QUEUED, campaign=True))


@pytest.mark.parametrize(
    "state", [CallState.DISPATCHING, CallState.PLACED, CallState.FINISHED, CallState.CANCELLED]
)
def test_a_released_call_that_moved_on_is_forgotten(state: CallState) -> None:
    assert not released_again(record(state, campaign=True))


def test_a_released_call_back_in_its_backlog_or_gone_is_forgotten() -> None:
    waiting = record(CallState.QUEUED, campaign=True)
    waiting.fields["waiting"] = "calling window"
    assert not released_again(waiting)
    assert not released_again(None)


def test_an_unconfirmed_delivery_is_published_again_counted_until_given_up() -> None:
    message = json.loads(stored_message("myapp.done", "cmvoice.results", [{"delivery_id": "d"}]))
    for expected in range(2, MAX_DELIVERIES + 1):
        again = next_delivery(message)
        assert again is not None
        assert again["published"] == expected
        assert (again["task"], again["queue"], again["args"]) == (
            "myapp.done",
            "cmvoice.results",
            [{"delivery_id": "d"}],
        )
        message = again
    assert next_delivery(message) is None
