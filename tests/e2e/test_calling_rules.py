"""Calling rules end to end: windows in the callee's time zones, deadlines, the suppression
list, the cooldown, allowed countries and the per-number limit, through the pacer, a real
worker and the simulator. For each rule: a call that passes, and one it holds or refuses."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cmvoice.calls import CallState
from cmvoice.campaigns import control
from cmvoice.campaigns.enqueue import CampaignEnqueuer, start_campaign
from cmvoice.errors import CallNotAllowed
from cmvoice.producer import enqueue
from cmvoice.rules.suppression import SuppressionList
from cmvoice.runtime import get_runtime
from tests.support.campaigns import campaign_ids, counts, report_of, store, write_csv
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import CMVOICE, worker_env

TEMPLATE = {"caller": CALLER, "prompt": "Your parcel arrives today."}
#: Numbers whose time zones phonenumbers knows: Amsterdam; New York (212); Idaho's 208 320...
#: which may be in America/Boise or America/Los_Angeles (two zones, an hour apart).
AMSTERDAM = "+31612345620"
NEW_YORK = "+12125550120"
IDAHO_TWO_ZONES = "+12083205520"


@pytest.fixture(autouse=True)
def _errors_files_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def window_around(zone: str, *, opens_in_min: int, lasts_min: int) -> str:
    """A window in ``zone``'s wall clock that opens ``opens_in_min`` from now (negative: it
    opened already) and lasts ``lasts_min``."""
    now = datetime.now(ZoneInfo(zone))
    start = now + timedelta(minutes=opens_in_min)
    end = start + timedelta(minutes=lasts_min)
    return f"{start:%H:%M}-{end:%H:%M}"


def campaign(tmp_path: Path, callees: list[str], **options: Any) -> str:
    path = write_csv(tmp_path / "calls.csv", ["callee"], [[c] for c in callees])
    report = start_campaign(get_runtime(), path, "notification", template=TEMPLATE, **options)
    return report.campaign_id


def call_status_json(stack: Stack, instruction_id: str) -> Any:
    """``cmvoice call status --json``, run as an operator runs it."""
    result = subprocess.run(
        [CMVOICE, "call", "status", instruction_id, "--json"],
        env=worker_env(stack.broker),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def placed_callees(stack: Stack) -> Counter[str]:
    return Counter(call["callee"] for call in stack.calls())


def test_a_closed_window_holds_campaign_calls_in_the_backlog_and_an_open_one_lets_them_go(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given one campaign whose window is open now in Amsterdam, one whose window opens in hours
    open_now = campaign(
        tmp_path,
        [AMSTERDAM],
        window=window_around("Europe/Amsterdam", opens_in_min=-5, lasts_min=60),
    )
    closed_now = campaign(
        tmp_path,
        ["+31612345621"],
        window=window_around("Europe/Amsterdam", opens_in_min=120, lasts_min=60),
    )

    # When the pacer runs
    wait_for(lambda: counts(open_now) == {"FINISHED": 1})
    time.sleep(0.5)

    # Then the open one was placed, the closed one waits in its backlog, placed nowhere
    assert placed_callees(stack) == {AMSTERDAM: 1}
    progress = store().progress(closed_now)
    assert progress.counts == {CallState.QUEUED: 1}
    assert progress.backlog.total == 1
    assert progress.in_flight == 0
    # and `call status` says what it waits for, and until when; the placed one waits for nothing
    [held] = campaign_ids(closed_now)
    assert "closed in Europe/Amsterdam until" in call_status_json(stack, held)["held_by"]
    [went] = campaign_ids(open_now)
    assert "held_by" not in call_status_json(stack, went)


def test_a_number_in_two_zones_waits_until_the_window_is_open_in_both(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a window open now on Boise's clock but not yet on Los Angeles's (an hour behind),
    # and the same window for a New York number measured on New York's clock
    boise_window = window_around("America/Boise", opens_in_min=-5, lasts_min=40)
    two_zones = campaign(tmp_path, [IDAHO_TWO_ZONES], window=boise_window)
    new_york = campaign(
        tmp_path,
        [NEW_YORK],
        window=window_around("America/New_York", opens_in_min=-5, lasts_min=40),
    )

    # When the pacer runs
    wait_for(lambda: counts(new_york) == {"FINISHED": 1})
    time.sleep(0.5)

    # Then the single-zone number was called, the two-zone one was not: not open in LA yet
    assert placed_callees(stack) == {NEW_YORK: 1}
    assert counts(two_zones) == {"QUEUED": 1}


def test_a_deadline_passing_while_a_call_waits_ends_it_expired_and_reported(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a campaign valid for 2 seconds whose calls a closed window holds
    now_ms = get_runtime().ledger.server_time_ms()
    closed = window_around("Europe/Amsterdam", opens_in_min=120, lasts_min=60)
    cid = campaign(tmp_path, [AMSTERDAM, "+31612345621"], window=closed, until_ms=now_ms + 2000)
    assert counts(cid) == {"QUEUED": 2}

    # When the deadline passes
    wait_for(lambda: counts(cid) == {"EXPIRED": 2}, timeout_s=10)

    # Then they are EXPIRED, counted, reported with the reason, and never placed
    status = store().progress(cid).to_dict()
    assert status["expired"] == 2
    assert status["refused_by_rule"] == {"deadline": 2}
    assert status["phase"] == "finished"
    rows = report_of(cid)
    assert {row["state"] for row in rows} == {"EXPIRED"}
    assert all("deadline" in row["last_error"] for row in rows)
    assert stack.calls() == []


def test_an_interactive_call_past_its_expiry_is_never_placed(stack: Stack, worker: Any) -> None:
    # Given an OTP call that may wait at most a second, held by a window closed for hours
    stack.make_runtime(
        calling_window=window_around("Europe/Amsterdam", opens_in_min=120, lasts_min=60)
    )
    ticket = enqueue(
        {"callee": AMSTERDAM, "caller": CALLER, "code": "1234"},
        kind="otp",
        respect_window=True,
        expires_in=1,
    )
    # and one that may go now
    fresh = enqueue({"callee": "+31612345621", "caller": CALLER, "code": "5678"}, kind="otp")

    # When the reconciler finds the first due (at its expiry)
    ledger = get_runtime().ledger
    wait_for(lambda: ledger.get(fresh.instruction_id).state is CallState.FINISHED)
    wait_for(lambda: ledger.get(ticket.instruction_id).state is CallState.EXPIRED, timeout_s=10)

    # Then it expired unplaced, and says why
    assert placed_callees(stack) == {"+31612345621": 1}
    assert "deadline" in ledger.get(ticket.instruction_id).last_error


def test_a_suppressed_number_is_refused_at_enqueue_in_a_file_and_at_dispatch(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a suppressed number
    suppressions = SuppressionList(get_runtime())
    assert suppressions.add([AMSTERDAM]) == 1

    # When it is enqueued, then it is refused with the rule, and nothing is queued
    with pytest.raises(CallNotAllowed) as refused:
        enqueue({"callee": AMSTERDAM, "caller": CALLER, "prompt": "Hi."}, kind="notification")
    assert refused.value.rule == "suppressed"
    assert refused.value.value == "+31******620"
    assert AMSTERDAM not in str(refused.value)

    # When a campaign file holds it, then that row is refused and the others are called
    errors_path = tmp_path / "errors.csv"
    path = write_csv(tmp_path / "calls.csv", ["callee"], [[AMSTERDAM], ["+31612345621"]])
    report = start_campaign(
        get_runtime(), path, "notification", template=TEMPLATE, errors_path=errors_path
    )
    wait_for(lambda: counts(report.campaign_id) == {"FINISHED": 1})
    assert "suppressed" in errors_path.read_text()
    assert AMSTERDAM not in errors_path.read_text()
    assert [(r["line"], r["state"]) for r in report_of(report.campaign_id)] == [
        ("2", "REFUSED"),
        ("3", "FINISHED"),
    ]
    assert store().progress(report.campaign_id).to_dict()["refused_by_rule"] == {"suppressed": 1}

    # When a number is suppressed after its call was queued (its campaign paused meanwhile),
    # then dispatch refuses it once the campaign runs again
    campaigns = store()
    path = write_csv(tmp_path / "later.csv", ["callee"], [["+31612345622"]])
    paused = campaigns.create("notification", path, template=TEMPLATE)
    later = paused.campaign_id
    control.pause(campaigns, later)
    CampaignEnqueuer(campaigns, paused).run()
    suppressions.add(["+31612345622"])
    control.resume(campaigns, later)
    wait_for(lambda: counts(later) == {"FAILED": 1})
    assert placed_callees(stack)["+31612345622"] == 0
    [row] = report_of(later)
    assert "refused by rule suppressed" in row["last_error"]


def test_the_cooldown_keeps_a_second_campaign_from_calling_a_number_again(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a cooldown of a day, and a campaign that called a number
    stack.make_runtime(number_cooldown="24h")
    first = campaign(tmp_path, [AMSTERDAM, "+31612345621"])
    wait_for(lambda: counts(first) == {"FINISHED": 2})

    # When a second campaign has that number and a new one
    second = campaign(tmp_path, [AMSTERDAM, "+31612345622"])
    wait_for(lambda: store().progress(second).active == 0)

    # Then the new one is called, the cooled-down one is refused with its rule and reported
    assert placed_callees(stack) == {AMSTERDAM: 1, "+31612345621": 1, "+31612345622": 1}
    assert counts(second) == {"FINISHED": 1, "FAILED": 1}
    assert store().progress(second).to_dict()["refused_by_rule"] == {"cooldown": 1}
    refused = [row for row in report_of(second) if row["state"] == "FAILED"]
    assert "cooldown" in refused[0]["last_error"]


def test_a_country_that_is_not_allowed_is_refused(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given only Dutch numbers allowed
    stack.make_runtime(allowed_countries="NL")

    # When a Belgian number is enqueued, then it is refused; a Dutch one goes
    with pytest.raises(CallNotAllowed) as refused:
        enqueue({"callee": "+32470123456", "caller": CALLER, "prompt": "Hi."}, kind="notification")
    assert refused.value.rule == "country"
    ticket = enqueue({"callee": AMSTERDAM, "caller": CALLER, "prompt": "Hi."}, kind="notification")
    wait_for(lambda: get_runtime().ledger.get(ticket.instruction_id).state is CallState.FINISHED)

    # And a campaign row with the Belgian number goes to the errors file
    cid = campaign(tmp_path, ["+32470123456", "+31612345621"])
    wait_for(lambda: counts(cid) == {"FINISHED": 1})
    assert [r["state"] for r in report_of(cid)] == ["REFUSED", "FINISHED"]
    assert placed_callees(stack) == {AMSTERDAM: 1, "+31612345621": 1}


def test_the_per_number_limit_refuses_one_call_too_many(stack: Stack, worker: Any) -> None:
    # Given at most 2 calls to a number in 10 minutes
    stack.make_runtime(per_number_limit="2/10m")
    call = {"callee": AMSTERDAM, "caller": CALLER, "prompt": "Hi."}

    # When three are enqueued, then the third is refused; another number is not affected
    tickets = [enqueue(call, kind="notification") for _ in range(2)]
    with pytest.raises(CallNotAllowed) as refused:
        enqueue(call, kind="notification")
    assert refused.value.rule == "per_number_limit"
    other = enqueue({**call, "callee": "+31612345621"}, kind="notification")

    ledger = get_runtime().ledger
    for ticket in [*tickets, other]:
        wait_for(lambda t=ticket: ledger.get(t.instruction_id).state is CallState.FINISHED)
    assert placed_callees(stack) == {AMSTERDAM: 2, "+31612345621": 1}
    # And an enqueue retried with the same id is not a new call, not refused, not counted
    again = enqueue({**call, "instruction-id": tickets[0].instruction_id}, kind="notification")
    assert not again.created


def test_the_per_number_limit_counts_interactive_calls_against_a_campaigns_call(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given one call allowed per number in 10 minutes, and an interactive call that used it
    stack.make_runtime(per_number_limit="1/10m")
    ticket = enqueue({"callee": AMSTERDAM, "caller": CALLER, "prompt": "Hi."}, kind="notification")
    ledger = get_runtime().ledger
    wait_for(lambda: ledger.get(ticket.instruction_id).state is CallState.FINISHED)

    # When a campaign has that number and another one
    cid = campaign(tmp_path, [AMSTERDAM, "+31612345621"])
    wait_for(lambda: store().progress(cid).active == 0)

    # Then the other one is called; the limited one is refused at dispatch, counted and reported
    assert placed_callees(stack) == {AMSTERDAM: 1, "+31612345621": 1}
    assert counts(cid) == {"FINISHED": 1, "FAILED": 1}
    assert store().progress(cid).to_dict()["refused_by_rule"] == {"per_number_limit": 1}
    rows = {row["line"]: row for row in report_of(cid)}
    assert rows["2"]["state"] == "FAILED"
    assert "refused by rule per_number_limit" in rows["2"]["last_error"]
    assert rows["3"]["state"] == "FINISHED"


def test_an_interactive_call_ignores_the_window_unless_it_asks_to_respect_it(
    stack: Stack, worker: Any
) -> None:
    # Given a window closed now
    stack.make_runtime(
        calling_window=window_around("Europe/Amsterdam", opens_in_min=120, lasts_min=60)
    )

    # When an OTP is sent now, and a reminder that respects the window
    otp = enqueue({"callee": AMSTERDAM, "caller": CALLER, "code": "1234"}, kind="otp")
    reminder = enqueue(
        {"callee": "+31612345621", "caller": CALLER, "prompt": "Reminder."},
        kind="notification",
        respect_window=True,
    )

    # Then the OTP is placed now, the reminder waits in Redis and says until when
    ledger = get_runtime().ledger
    wait_for(lambda: ledger.get(otp.instruction_id).state is CallState.FINISHED)
    held = ledger.get(reminder.instruction_id)
    assert held.state is CallState.QUEUED
    assert "closed in Europe/Amsterdam until" in held.get("held_by")
    assert placed_callees(stack) == {AMSTERDAM: 1}
    assert datetime.now(UTC) < datetime.fromtimestamp(held.get_int("due_at") / 1000, tz=UTC)
