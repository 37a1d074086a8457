"""Pacing end to end: campaign backlogs released by the pacer as the account's rate allows.

Real Redis, real workers (a thread in this process, or ``cmvoice worker`` processes), the
simulator and the receiver over HTTP. Assertions are on order and counts: the simulator's
acceptance order, its per-instruction counts, the ledger and the broker's lists; never on how
fast something went (that is bench/pacing.py's job).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from celery.signals import task_prerun

from cmvoice.calls import CallState
from cmvoice.campaigns import control
from cmvoice.campaigns.enqueue import CampaignEnqueuer
from cmvoice.campaigns.pacer import DEFAULT_LEASE_TTL_S, Pacer
from cmvoice.lease import Lease
from cmvoice.messages import DISPATCH_QUEUE, DISPATCH_TASK
from cmvoice.producer import enqueue
from cmvoice.runtime import get_runtime
from tests.support.broker import queue_length, take_messages
from tests.support.campaigns import (
    accepted,
    campaign_ids,
    campaign_of,
    counts,
    many_callees,
    sent_at_of_placed_calls,
    store,
    write_csv,
)
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import WorkerProcess

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


def test_interactive_calls_enqueued_mid_campaign_are_placed_while_its_backlog_still_waits(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given an account limit of 25 calls a second, and a 200-row campaign running at it
    stack.make_runtime(rate_limit="25/s", calling_window=ALL_DAY)
    cid = campaign_of(tmp_path, many_callees(200)).campaign_id
    wait_for(lambda: len(stack.calls()) >= 20)

    # When three interactive calls are enqueued mid-campaign, and placed
    tickets = [enqueue(notification(callee)) for callee in INTERACTIVE_CALLEES]
    ledger = get_runtime().ledger

    def interactive_done() -> bool:
        records = [ledger.get(t.instruction_id) for t in tickets]
        return all(r is not None and r.state is CallState.FINISHED for r in records)

    wait_for(interactive_done)
    backlog_then = store().backlog(cid, ledger.server_time_ms()).total

    # Then they were done while most of the campaign still waited in its backlog
    assert backlog_then >= 100, f"only {backlog_then} of 200 calls still waited"

    # And in CM's acceptance order at least 100 campaign calls came after each of them
    wait_for(lambda: finished(cid, 200), timeout_s=30)
    order = [iid for iid, _ in accepted(stack)]
    interactive = {t.instruction_id for t in tickets}
    for ticket in tickets:
        after = order[order.index(ticket.instruction_id) + 1 :]
        assert sum(1 for iid in after if iid not in interactive) >= 100

    # And every call, campaign or interactive, was placed exactly once
    per_id = stack.sim("GET", "/calls")["per-instruction-id"]
    assert per_id == dict.fromkeys([*campaign_ids(cid), *interactive], 1)


def test_campaigns_leave_the_interactive_slots_free_so_an_otp_call_need_not_wait_for_one(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given 4 concurrency slots, one of them kept for interactive calls, and a CM that sends no
    # callbacks: a placed call keeps its slot
    runtime = stack.make_runtime(
        max_concurrent_calls=4, interactive_slots=1, calling_window=ALL_DAY
    )
    stack.faults(drop_callbacks=1.0)
    redis, keys = runtime.redis, runtime.keys

    # When a 10-row campaign runs until the pacer waits for a slot, none of its calls released
    # and unclaimed or being dispatched
    cid = campaign_of(tmp_path, many_callees(10)).campaign_id

    def waits_for_a_slot() -> bool:
        settled = "DISPATCHING" not in counts(cid) and not redis.zcard(keys.released())
        return settled and bool(redis.get(keys.pacer_slot_bound()))

    wait_for(waits_for_a_slot)

    # Then the campaign holds 3 slots, not 4: the rest of it waits in its backlog
    assert counts(cid) == {"PLACED": 3, "QUEUED": 7}
    assert redis.zcard(keys.campaign_slots(runtime.account)) == 3

    # When an OTP call is enqueued
    otp = {"callee": INTERACTIVE_CALLEES[0], "caller": CALLER, "code": "1234"}
    ticket = enqueue(otp, kind="otp")

    # Then it is placed in the slot kept free, not parked to wait for a campaign call's end
    def state() -> CallState | None:
        record = runtime.ledger.get(ticket.instruction_id)
        return record.state if record else None

    assert wait_for(lambda: state() is CallState.PLACED)
    assert redis.zcard(keys.slots(runtime.account)) == 4
    assert redis.llen(keys.interactive_waiting()) == 0
    assert counts(cid) == {"PLACED": 3, "QUEUED": 7}
    per_id = stack.sim("GET", "/calls")["per-instruction-id"]
    assert per_id[ticket.instruction_id] == 1
    assert list(per_id.values()) == [1, 1, 1, 1]


def test_slots_whose_lease_ran_out_do_not_stop_the_pacer(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given every slot taken by calls whose lease ran out (CM never sent their callbacks)
    runtime = stack.make_runtime(
        max_concurrent_calls=4, interactive_slots=0, calling_window=ALL_DAY
    )
    redis, keys = runtime.redis, runtime.keys
    ran_out = {f"lost-{n}": int(time.time() * 1000) - 1000 for n in range(4)}
    redis.zadd(keys.slots(runtime.account), ran_out)
    redis.zadd(keys.campaign_slots(runtime.account), ran_out)

    # When a campaign starts
    cid = campaign_of(tmp_path, many_callees(2)).campaign_id

    # Then the pacer counts those slots as free: both calls are placed and finish, and the
    # claims cleared the slots that ran out
    assert wait_for(lambda: finished(cid, 2))
    assert not any(redis.zscore(keys.slots(runtime.account), member) for member in ran_out)


def test_two_campaigns_started_together_share_the_account_rate_fairly(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given an account limit of 20 calls a second, which binds two campaigns of 50 rows
    stack.make_runtime(rate_limit="20/s", calling_window=ALL_DAY)

    # When both are started together and run to the end
    first = campaign_of(tmp_path, many_callees(50, block=1), name="first").campaign_id
    second = campaign_of(tmp_path, many_callees(50, block=2), name="second").campaign_id
    wait_for(lambda: finished(first, 50) and finished(second, 50), timeout_s=30)

    # Then, while both had calls waiting, each had as many of them placed as the other
    calls = accepted(stack)
    ids = {cid: set(campaign_ids(cid)) for cid in (first, second)}
    times = {cid: [at for iid, at in calls if iid in ids[cid]] for cid in (first, second)}
    start = max(min(moments) for moments in times.values())
    end = min(max(moments) for moments in times.values())
    shares = [in_window(moments, start, end) for moments in times.values()]
    print(f"calls of each campaign while both ran: {shares}")
    # (The first one started a moment earlier: up to a lead's worth of its calls, 10, went
    # before the second one had any.)
    assert min(shares) >= 30, "the common window covers most of both campaigns"
    # Each edge of the window may cut through one step's share (at 20/s a step releases half
    # the lead's 10 turns, split 3:2): up to 3 calls either way at each edge. Unfair shares
    # grow with the window instead (3:2 a step gave 20 calls apart over 50).
    assert abs(shares[0] - shares[1]) <= 6
    assert Counter(iid for iid, _ in calls) == dict.fromkeys(ids[first] | ids[second], 1)


def test_a_campaign_with_a_lower_rate_keeps_to_it_and_leaves_the_rest_to_the_other(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given an account limit of 30 calls a second, a campaign limited to 5 a second, and a
    # campaign with no limit of its own and more calls than can go meanwhile
    stack.make_runtime(rate_limit="30/s", calling_window=ALL_DAY)
    slow = campaign_of(tmp_path, many_callees(15, block=1), rate="5/s", name="slow").campaign_id
    fast = campaign_of(tmp_path, many_callees(200, block=2), name="fast").campaign_id

    # When the slow one has run to its end (the fast one is then cancelled)
    wait_for(lambda: finished(slow, 15), timeout_s=30)
    control.cancel(store(), fast)
    wait_for(lambda: store().progress(fast).active == 0)

    # Then the slow one never went faster than its rate: over the span of its calls at CM,
    # no more than 5 a second, plus the turns its lead (CMVOICE_PACER_LEAD) lets go at once,
    # plus 2 for the window's edges
    calls = accepted(stack)
    slow_ids = set(campaign_ids(slow))
    slow_times = sorted(at for iid, at in calls if iid in slow_ids)
    span_s = (slow_times[-1] - slow_times[0]).total_seconds()
    lead_s = get_runtime().settings.pacer_lead
    print(f"15 calls of the slow campaign over {span_s:.2f}s")
    assert len(slow_times) == 15
    assert len(slow_times) <= 5 * (span_s + lead_s) + 2

    # And the other campaign took the account's turns the slow one left: far more calls of it
    # were placed in the same span (with equal shares they would have been as many)
    fast_times = [at for iid, at in calls if iid not in slow_ids]
    fast_share = in_window(fast_times, slow_times[0], slow_times[-1])
    print(f"calls of the fast campaign meanwhile: {fast_share}")
    assert fast_share >= 2 * len(slow_times)
    assert Counter(iid for iid, _ in calls).most_common(1)[0][1] == 1


def test_rates_slower_than_one_call_per_lead_still_place_every_call(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given an account limit of one call a second, and a campaign of its own rate 1/s: with the
    # default lead of 0.5 s, not one whole interval of either fits in the lead
    stack.make_runtime(rate_limit="1/s", calling_window=ALL_DAY)

    # When the campaign runs
    cid = campaign_of(tmp_path, many_callees(3), rate="1/s").campaign_id

    # Then each of its calls is placed, once
    wait_for(lambda: finished(cid, 3), timeout_s=20)
    assert Counter(iid for iid, _ in accepted(stack)) == dict.fromkeys(campaign_ids(cid), 1)


def test_pause_stops_releases_at_once_and_cancel_ends_what_waits(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a 100-row campaign at 20 calls a second, a few calls in
    stack.make_runtime(rate_limit="20/s", calling_window=ALL_DAY)
    cid = campaign_of(tmp_path, many_callees(100)).campaign_id
    wait_for(lambda: len(stack.calls()) >= 10)

    # When it is paused, and a second passes
    paused_at_ms = control.pause(store(), cid)
    time.sleep(1.0)

    # Then no call was POSTed after the pause, none waits in the broker, and every call not
    # placed is back in the backlog
    placed = len(stack.calls())
    assert all(sent_at <= paused_at_ms for sent_at in sent_at_of_placed_calls(stack))
    wait_for(lambda: store().progress(cid).in_flight == 0)  # calls placed before it end
    assert store().backlog(cid, get_runtime().ledger.server_time_ms()).total == 100 - placed
    assert queue_length(DISPATCH_QUEUE) == 0

    # When it is cancelled
    cancelled, cancelled_at_ms = control.cancel(store(), cid)

    # Then every call left ends CANCELLED at once, and none is POSTed any more
    assert cancelled == 100 - placed
    assert counts(cid) == {"FINISHED": placed, "CANCELLED": 100 - placed}
    time.sleep(0.3)  # a call still on its way would show up now
    assert len(stack.calls()) == placed
    assert all(sent_at <= cancelled_at_ms for sent_at in sent_at_of_placed_calls(stack))


def test_a_campaign_cancelled_before_any_release_ends_with_no_post_and_no_dispatch_task(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a running worker (pacer included) that counts the dispatch tasks it runs
    stack.make_runtime(rate_limit="100/s", calling_window=ALL_DAY)
    dispatched: list[str] = []

    def count_dispatch(task: Any = None, args: Any = None, **_: Any) -> None:
        if task is not None and task.name == DISPATCH_TASK:
            dispatched.append(args[0])

    task_prerun.connect(count_dispatch, weak=False)
    try:
        # And a 30-row campaign paused before its rows were enqueued
        path = write_csv(tmp_path / "held.csv", ["callee"], [[c] for c in many_callees(30)])
        campaigns = store()
        template = {"caller": CALLER, "prompt": "Your parcel arrives today."}
        held = campaigns.create("notification", path, template=template)
        control.pause(campaigns, held.campaign_id)
        CampaignEnqueuer(campaigns, held).run()

        # When it is cancelled, and another campaign then runs to its end
        cancelled, _ = control.cancel(campaigns, held.campaign_id)
        other = campaign_of(tmp_path, many_callees(3, block=2), name="other").campaign_id
        wait_for(lambda: finished(other, 3))
    finally:
        task_prerun.disconnect(count_dispatch)

    # Then every call of the cancelled one ended CANCELLED without a POST or a dispatch task,
    # while the other's calls went through the same worker
    held_ids = set(campaign_ids(held.campaign_id))
    assert cancelled == 30
    assert counts(held.campaign_id) == {"CANCELLED": 30}
    assert not held_ids & {call["instruction-id"] for call in stack.calls()}
    assert sorted(dispatched) == sorted(campaign_ids(other))
    assert queue_length(DISPATCH_QUEUE) == 0
    assert not get_runtime().redis.zcard(get_runtime().keys.released())


@pytest.mark.slow
def test_a_pacer_killed_mid_release_and_replaced_places_every_row_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a worker process that dispatches (its pacer off), one whose only work is the pacer
    # (it consumes a queue of its own) and holds the lease, and a second one of those
    settings = {
        **stack.broker,
        "api_url": stack.simulator_url + "/voiceapi/v2",
        "callback_base_url": stack.receiver_url,
        "rate_limit": "100/s",
        "calling_window": ALL_DAY,
    }
    runtime = stack.make_runtime(**settings)
    lease_key = runtime.keys.pacer_lease()
    pacer_only = ["-Q", "cmvoice.pacer-test"]

    def pacer_process(name: str) -> WorkerProcess:
        log = tmp_path / f"{name}.log"
        return WorkerProcess(settings, log, concurrency=1, name=name, extra_args=pacer_only)

    dispatcher_settings = {**settings, "pacer": "false"}
    workers = [pacer_process("pacer1")]
    workers.append(WorkerProcess(dispatcher_settings, tmp_path / "d.log", name="dispatcher"))
    try:
        held_by_first = wait_for(lambda: runtime.redis.get(lease_key), timeout_s=30)
        # (Started once the first holds the lease, which it renews every step: it stands by.)
        workers.append(pacer_process("pacer2"))

        # When a 200-row campaign runs, and the first pacer is SIGKILLed while it releases
        cid = campaign_of(tmp_path, many_callees(200)).campaign_id
        wait_for(lambda: len(stack.calls()) >= 40, timeout_s=30)
        assert runtime.redis.get(lease_key) == held_by_first, "the first pacer was releasing"
        workers[0].kill()
        left = store().backlog(cid, runtime.ledger.server_time_ms()).total
        assert left > 0, "killed while calls still waited"

        # Then the second pacer takes over, and every row is placed, exactly once
        wait_for(lambda: finished(cid, 200), timeout_s=60, interval_s=0.2)
        held_at_end = runtime.redis.get(lease_key)
    finally:
        for process in workers:
            process.stop()
    print(f"killed with {left} of 200 rows in the backlog")
    assert held_at_end not in (None, held_by_first), "the second pacer released the rest"
    per_id = stack.sim("GET", "/calls")["per-instruction-id"]
    assert per_id == dict.fromkeys(campaign_ids(cid), 1)


def test_two_pacers_stepping_at_once_release_each_call_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a 3,000-row campaign, no worker, an account rate that never binds, and two pacers
    # holding the same lease (as if one had lost it in a long pause and not noticed yet)
    runtime = stack.make_runtime(
        rate_limit="100000/s", max_concurrent_calls=1_000_000, calling_window=ALL_DAY
    )
    cid = campaign_of(tmp_path, many_callees(3000)).campaign_id
    lease = Lease(runtime.redis, runtime.keys.pacer_lease(), DEFAULT_LEASE_TTL_S)
    assert lease.hold()
    pacers = [Pacer(runtime, lease=lease) for _ in range(2)]

    # When both step at once from two threads until the backlog is empty
    released = [0, 0]
    start = threading.Barrier(2)
    campaigns = store()

    def run(index: int) -> None:
        start.wait()
        for _ in range(1000):
            released[index] += pacers[index].step().released_campaign
            if not campaigns.backlog(cid, runtime.ledger.server_time_ms()).total:
                return

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # Then the broker holds one dispatch message per call, each call's exactly once
    bodies = [message["body"] for message in take_messages(DISPATCH_QUEUE, limit=5000)]
    messages = [args[0] for args, _kwargs, _embed in bodies]
    print(f"released by each pacer: {released}")
    assert sum(released) == 3000
    assert min(released) > 0, "both pacers released calls"
    assert Counter(messages) == dict.fromkeys(campaign_ids(cid), 1)


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
