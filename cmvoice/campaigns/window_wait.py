"""Why a campaign call waits for its calling window, for `call status` and ``GET /v1/calls``.

The pacer holds back a whole time-zone group of a campaign's backlog while its window is closed
(campaigns/plan.py, ``open_groups``) and writes nothing to the calls themselves: with thousands
of calls in a group that would cost a write each, every time a window opens or closes. So the
reason is worked out when someone asks, from what the pacer reads: the call's zone group and
the campaign's window and days (or the deployment's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cmvoice.calls import CallRecord, CallState
from cmvoice.campaigns.model import ANY_ZONE
from cmvoice.campaigns.plan import campaign_policy
from cmvoice.campaigns.store import CampaignStore
from cmvoice.records import describe_record
from cmvoice.rules.windows import describe_wait
from cmvoice.rules.zones import group_zones
from cmvoice.runtime import Runtime


def window_wait(runtime: Runtime, record: CallRecord) -> str:
    """Why a queued campaign call waits for its calling window to open (as ``held_by`` says
    it of an interactive call: ``window 09:00-20:00 mon-fri closed in Europe/Amsterdam until
    ...``), or ``""`` when it is not a queued campaign call or its window is open now."""
    group = record.get("zone_group")
    if record.state is not CallState.QUEUED or not record.campaign_id or group in ("", ANY_ZONE):
        return ""
    campaign = CampaignStore(runtime).find(record.campaign_id)
    if campaign is None:
        return ""
    policy = campaign_policy(runtime.settings, campaign)
    zones = group_zones(group)
    now = datetime.fromtimestamp(runtime.ledger.server_time_ms() / 1000, tz=UTC)
    if policy.always_open or policy.is_open(zones, now):
        return ""
    return describe_wait(policy, zones, now)


def describe_attempt(runtime: Runtime, record: CallRecord) -> dict[str, Any]:
    """``describe_record``, with ``held_by`` also for a campaign call its window holds back."""
    view = describe_record(record)
    if "held_by" not in view and (why := window_wait(runtime, record)):
        view["held_by"] = why
    return view
