"""Calling rules applied to calls: at enqueue, for campaign rows, and what the ledger needs at
dispatch (docs/architecture.md, "Calling rules").

Numbers are kept as keyed hashes only (HMAC-SHA256 with a key derived from the callback
secret): Redis never holds a list of the numbers it refuses or counts.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from cmvoice import lua
from cmvoice.errors import CallNotAllowed, FieldError
from cmvoice.privacy import mask_number
from cmvoice.rules.countries import country_allowed, region_of
from cmvoice.rules.windows import describe_wait
from cmvoice.rules.zones import zone_group, zones_for_number
from cmvoice.runtime import Runtime

#: Rule names, as refusals, metrics and reports name them.
SUPPRESSED = "suppressed"
COUNTRY = "country"
PER_NUMBER_LIMIT = "per_number_limit"
COOLDOWN = "cooldown"
WINDOW = "window"
DEADLINE = "deadline"
RULES = (SUPPRESSED, COUNTRY, PER_NUMBER_LIMIT, COOLDOWN, WINDOW, DEADLINE)
#: Why a suppressed number is refused.
ON_SUPPRESSION_LIST = "the number is on the suppression (opt-out) list"
#: Why a number without a known time zone is refused when a calling window applies.
NO_ZONE = "no time zone is known for this number, so its calling window cannot be checked"

_KEY_LABEL = b"cmvoice number hash v1"


def number_hash(runtime: Runtime, e164: str) -> str:
    """The keyed hash a number is known by in Redis (suppression, limits, cooldown)."""
    key = hmac.new(runtime.callback_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class NumberFacts:
    """What the rules need to know about a callee, computed once at enqueue."""

    number_hash: str
    zone_group: str
    region: str | None


def facts(runtime: Runtime, e164: str) -> NumberFacts:
    return NumberFacts(
        number_hash=number_hash(runtime, e164),
        zone_group=zone_group(zones_for_number(e164)),
        region=region_of(e164),
    )


class CallingRules:
    """The rules of one deployment (Settings), applied with its Redis."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.keys = runtime.keys
        self._admit = lua.load(runtime.redis, "number_admit")

    @property
    def allowed_countries(self) -> frozenset[str]:
        return frozenset(self.settings.allowed_countries)

    def refuse(self, rule: str, reason: str, e164: str) -> CallNotAllowed:
        """The refusal to raise, counted by rule (in Redis: every process's refusals)."""
        self.runtime.redis.hincrby(self.keys.refusals(), rule, 1)
        return CallNotAllowed(rule, reason, value=mask_number(e164))

    def count_refused(self, refused: dict[str, int]) -> None:
        """Count refusals made elsewhere (a campaign's rows, expired backlogs)."""
        pipe = self.runtime.redis.pipeline(transaction=False)
        for rule, calls in refused.items():
            pipe.hincrby(self.keys.refusals(), rule, calls)
        pipe.execute()

    def country_error(self, e164: str) -> FieldError | None:
        """The refusal of a number outside CMVOICE_ALLOWED_COUNTRIES, or None."""
        if country_allowed(e164, self.allowed_countries):
            return None
        allowed = ",".join(sorted(self.allowed_countries))
        region = region_of(e164) or "no country"
        return FieldError(
            "callee",
            f"{COUNTRY}: {region} is not in CMVOICE_ALLOWED_COUNTRIES ({allowed})",
            mask_number(e164),
        )

    def admit_interactive(self, e164: str, instruction_id: str) -> NumberFacts:
        """Check an interactive call against the rules and count it against its number.

        Raises:
            CallNotAllowed: suppressed, country or per-number limit; the call is not counted
                against its number, the refusal is counted by rule.
        """
        known = facts(self.runtime, e164)
        problem = self.country_error(e164)
        if problem is not None:
            raise self.refuse(COUNTRY, problem.rule.split(": ", 1)[1], e164)
        limit = self.settings.per_number_limit
        verdict = self._admit(
            keys=[self.keys.suppressed(), self.keys.number(known.number_hash)],
            args=[
                known.number_hash,
                instruction_id,
                int(limit.count) if limit else 0,
                int(limit.period_s * 1000) if limit else 0,
            ],
        )
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        if verdict == SUPPRESSED:
            raise self.refuse(SUPPRESSED, ON_SUPPRESSION_LIST, e164)
        if verdict == PER_NUMBER_LIMIT:
            reason = f"the number was called {limit} already (CMVOICE_PER_NUMBER_LIMIT)"
            raise self.refuse(PER_NUMBER_LIMIT, reason, e164)
        return known

    def window_delay_s(self, e164: str, now_ms: int) -> tuple[float, str]:
        """Seconds until the calling window is open in all the number's zones (0 when open
        now), and why it waits.

        Raises:
            CallNotAllowed: no zone is known for the number, or the window never opens in all
                of its zones at once.
        """
        policy = self.settings.calling_policy
        zones = zones_for_number(e164)
        if not zones:
            raise self.refuse(WINDOW, NO_ZONE, e164)
        now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        opens = policy.next_open(zones, now)
        if opens is None:
            reason = f"the window {policy} is never open in all of the number's time zones at once"
            raise self.refuse(WINDOW, reason, e164)
        delay = max((opens - now).total_seconds(), 0.0)
        return delay, describe_wait(policy, zones, now) if delay else ""
