"""Keys: every Redis key cmvoice writes, under one prefix (docs/architecture.md, "Redis key map").

No other module spells a key: they all ask a ``Keys``, so two deployments can share one Redis
with different prefixes (``CMVOICE_KEY_PREFIX``), and the key map has one owner.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Prefix of every key cmvoice writes, unless ``CMVOICE_KEY_PREFIX`` says otherwise.
DEFAULT_KEY_PREFIX = "cmvoice"


@dataclass(frozen=True)
class Keys:
    """The key namespace of one deployment. Lua scripts get ``prefix`` and build the same names."""

    prefix: str = DEFAULT_KEY_PREFIX

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- calls (the ledger)
    def call(self, instruction_id: str) -> str:
        """Hash: one call's record (state, payload, attempts, times...)."""
        return self._key("call", instruction_id)

    def state_index(self, state: str) -> str:
        """Sorted set: the ids in an indexed state, scored by due time or lease expiry (ms)."""
        return self._key("state", state)

    # -- limits of one account (``account`` is a hash of the product token, never the token)
    def account(self, account: str) -> str:
        """Hash: the account's rate timeline (``tat``, µs) and token breaker (``refused_until``)."""
        return self._key("account", account)

    def slots(self, account: str) -> str:
        """Sorted set: calls holding a concurrency slot, scored by the slot's lease expiry (ms)."""
        return self._key("slots", account)

    def campaign_slots(self, account: str) -> str:
        """Sorted set: the campaign calls among them, held to the campaigns' share (lease ms).

        Lua scripts name it ``<slots key>:campaign``.
        """
        return self._key("slots", account, "campaign")

    # -- lanes and the pacer
    def interactive_waiting(self) -> str:
        """List: interactive calls waiting in Redis for a slot or a rate turn, oldest first."""
        return self._key("interactive", "waiting")

    def released(self) -> str:
        """Sorted set: calls the pacer released to the broker and no worker claimed yet (ms)."""
        return self._key("pacer", "released")

    def pacer_lease(self) -> str:
        """String: the token of the process whose pacer runs now."""
        return self._key("pacer", "lease")

    def pacer_wake(self) -> str:
        """List: a token pushed when the pacer should look again (a slot freed, work arrived)."""
        return self._key("pacer", "wake")

    def pacer_slot_bound(self) -> str:
        """String: set while the pacer waits for a free slot, so that freeing one wakes it."""
        return self._key("pacer", "slot_bound")

    def schedule(self) -> str:
        """Sorted set: dispatches due later than a countdown may wait (retries, redials)."""
        return self._key("schedule")

    # -- campaigns
    def campaigns(self) -> str:
        """Sorted set: every campaign id, scored by creation time."""
        return self._key("campaigns")

    def active_campaigns(self) -> str:
        """Set: campaigns that may have calls in their backlog (the pacer's round)."""
        return self._key("campaigns", "active")

    def campaign(self, campaign_id: str, part: str = "") -> str:
        """The campaign's hash, or one of its parts (``counts``, ``calls``, ``groups``...)."""
        return (
            self._key("campaign", campaign_id, part) if part else self._key("campaign", campaign_id)
        )

    def backlog(self, campaign_id: str, group: str) -> str:
        """Sorted set: the campaign's calls of one time-zone group waiting to go, by due ms."""
        return self._key("campaign", campaign_id, "backlog", group)

    # -- calling rules (numbers only as keyed hashes)
    def suppressed(self) -> str:
        """Hash: keyed hash of each suppressed number -> its masked form and when it was added."""
        return self._key("suppressed")

    def refusals(self) -> str:
        """Hash: calls refused by each calling rule, across every process (the metrics)."""
        return self._key("refusals")

    def number(self, number_hash: str, part: str = "") -> str:
        """Sorted set: a number's recent calls (per-number limit); ``:campaign`` its cooldown."""
        if part:
            return self._key("number", number_hash, part)
        return self._key("number", number_hash)

    # -- callbacks and outcomes
    def callback_guard(self, instruction_id: str, call_id: str, event_type: str) -> str:
        """String: set once a callback for this call was published (duplicates are dropped)."""
        return self._key("callback", instruction_id, call_id, event_type)

    def inbox(self) -> str:
        """Sorted set: calls whose callback was taken and not yet recorded by a worker (ms)."""
        return self._key("inbox")

    def outbox(self) -> str:
        """Sorted set: outcome deliveries not yet confirmed, scored by when to re-publish (ms)."""
        return self._key("outbox")

    def outbox_messages(self) -> str:
        """Hash: each unconfirmed delivery's message, to re-publish it from."""
        return self._key("outbox", "messages")

    def processed(self, task_name: str, delivery_id: str) -> str:
        """String: set once a result task processed a delivery (``@cmvoice.result_task``)."""
        return self._key("processed", task_name, delivery_id)

    def processing(self, task_name: str, delivery_id: str) -> str:
        """String: a lease held while one copy of a delivery runs (``@cmvoice.result_task``)."""
        return self._key("processing", task_name, delivery_id)

    def callback_secret(self) -> str:
        """String: the generated callback secret, when ``CMVOICE_CALLBACK_SECRET`` is not set."""
        return self._key("callback_secret")

    def demo_outcomes(self) -> str:
        """List: the outcomes ``cmvoice dev --demo`` received."""
        return self._key("demo", "outcomes")
