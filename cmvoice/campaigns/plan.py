"""The pacer's decisions, pure (no Redis): how many calls may go, how to share them between
campaigns, which backlog groups' calling windows are open."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cmvoice.campaigns.model import ANY_ZONE, Campaign
from cmvoice.config import Settings
from cmvoice.rules.windows import CallingPolicy
from cmvoice.rules.zones import group_zones


@dataclass(frozen=True)
class Budget:
    """How many calls a step may release: what both the rate and the slots leave free."""

    rate_room: int
    slot_room: int
    #: Seconds until the rate leaves room for more, when the rate is what binds.
    rate_refill_s: float
    #: What the campaigns' share of the slots leaves free (None: they have no share of their
    #: own): the rest are kept for interactive calls.
    campaign_slot_room: int | None = None

    @property
    def calls(self) -> int:
        return max(0, min(self.rate_room, self.slot_room))

    def slot_bound(
        self, *, interactive: int, campaign: int, interactive_left: bool, campaigns: bool
    ) -> bool:
        """Whether the slots, not the rate, hold back what waits once a step released
        ``interactive`` and ``campaign`` calls (``interactive_left``: calls still in the waiting
        room; ``campaigns``: campaigns running): the pacer then waits for a slot to be freed."""
        if self.slot_room - interactive - campaign <= 0 and (interactive_left or campaigns):
            return True
        share = self.campaign_slot_room
        return share is not None and share - campaign <= 0 and campaigns and not interactive_left

    def campaign_calls(self, interactive: int) -> int:
        """The campaign calls that may go now, after ``interactive`` calls of the same step."""
        calls = self.calls - interactive
        if self.campaign_slot_room is not None:
            calls = min(calls, self.campaign_slot_room)
        return max(0, calls)


def plan_budget(
    *,
    now_us: int,
    tat_us: int,
    interval_us: int,
    lead_us: int,
    slot_limit: int,
    slots_in_use: int,
    released: int,
    campaign_slot_limit: int | None = None,
    campaign_slots_in_use: int = 0,
) -> Budget:
    """The budget of one step. ``tat_us`` is when the account's next rate turn is free; calls
    released and not yet claimed will each take a turn and a slot when a worker claims them,
    so they count as taken already (of the campaigns' share too: most released calls are
    campaign calls, and one counted too many only waits for the next step). No call is
    released whose turn starts ``lead_us`` or more ahead of now."""
    ahead = max(tat_us - now_us, 0)
    rate_room = _turns_within(lead_us, ahead, interval_us) - released
    refill_s = rate_refill_s(
        now_us=now_us, tat_us=tat_us, interval_us=interval_us, lead_us=lead_us, released=released
    )
    slot_room = slot_limit - slots_in_use - released
    campaign_slot_room = None
    if campaign_slot_limit is not None:
        campaign_slot_room = campaign_slot_limit - campaign_slots_in_use - released
    return Budget(int(rate_room), int(slot_room), refill_s, campaign_slot_room)


def campaign_room(*, now_us: int, tat_us: int, interval_us: int, lead_us: int) -> int:
    """How many calls a campaign's own rate lets go within the lead (its ``--rate``)."""
    ahead = max(tat_us - now_us, 0)
    return max(0, _turns_within(lead_us, ahead, interval_us))


def rate_refill_s(
    *, now_us: int, tat_us: int, interval_us: int, lead_us: int, released: int
) -> float:
    """Seconds until a rate timeline (the account's, or a campaign's own) has room again, once
    ``released`` more calls took turns after ``tat_us``: when half the lead is free again, as
    releases come in batches, not one per step."""
    taken_until = max(tat_us, now_us) + released * interval_us
    return max(taken_until - now_us - lead_us // 2, 0) / 1_000_000


def _turns_within(lead_us: int, ahead_us: int, interval_us: int) -> int:
    """The rate turns that start within the lead: at ``ahead_us``, then one every interval.

    Counted up, not down: a rate slower than one call per lead (1/s with a 0.5 s lead) has one
    turn in it when its next turn comes near, where a floor would give it none for ever.
    Negative when the rate is taken beyond the lead.
    """
    return -((ahead_us - lead_us) // interval_us)


def share_fairly(budget: int, capacities: Sequence[int], start: int = 0) -> list[int]:
    """Split ``budget`` calls between campaigns one by one, round robin from ``start``, none
    given more than its capacity (what its backlog holds due now, within its own rate)."""
    shares = [0] * len(capacities)
    remaining = budget
    while remaining > 0:
        given = 0
        for offset in range(len(capacities)):
            index = (start + offset) % len(capacities)
            if remaining > 0 and shares[index] < capacities[index]:
                shares[index] += 1
                remaining -= 1
                given += 1
        if not given:
            break
    return shares


def campaign_policy(settings: Settings, campaign: Campaign) -> CallingPolicy:
    """The campaign's calling window and days, or the deployment's where it sets none."""
    return CallingPolicy.parse(
        campaign.window or settings.calling_window, campaign.days or settings.calling_days
    )


def open_groups(
    policy: CallingPolicy, groups: Sequence[str], now: datetime
) -> tuple[list[str], datetime | None]:
    """The backlog groups whose calling window is open now in all their time zones, and the
    earliest moment a closed one opens (None when none opens within the horizon)."""
    opened: list[str] = []
    next_opening: datetime | None = None
    for group in groups:
        if group == ANY_ZONE or policy.always_open:
            opened.append(group)
            continue
        zones = group_zones(group)
        if policy.is_open(zones, now):
            opened.append(group)
            continue
        opens = policy.next_open(zones, now)
        if opens is not None and (next_opening is None or opens < next_opening):
            next_opening = opens
    return opened, next_opening
