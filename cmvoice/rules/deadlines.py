"""Deadlines: ``--until 2026-12-24T18:00Z`` or ``--valid-for 8h``, as Redis time in ms."""

from __future__ import annotations

from datetime import UTC, datetime

from cmvoice.config import parse_duration
from cmvoice.privacy import quote_value


def deadline_ms(until: str | None, valid_for: str | None, now_ms: int) -> int | None:
    """The deadline of a campaign: an instant (ISO 8601, UTC or with an offset), or a
    duration from now; None when neither is given.

    Raises:
        ValueError: both are given, the instant has no time zone or is not later than now, or
            the duration cannot be read (the message names the option and quotes the value).
    """
    if until and valid_for:
        raise ValueError("--until and --valid-for: give one of them, not both")
    if valid_for:
        try:
            seconds = parse_duration(valid_for)
        except ValueError as exc:
            raise ValueError(f"--valid-for {quote_value(valid_for)}: {exc}") from None
        if seconds <= 0:
            raise ValueError(f"--valid-for {quote_value(valid_for)}: must be longer than 0")
        return now_ms + int(seconds * 1000)
    if not until:
        return None
    try:
        moment = datetime.fromisoformat(until.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"--until {quote_value(until)}: must be an ISO 8601 instant such as 2026-12-24T18:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"--until {quote_value(until)}: give the time zone (2026-12-24T18:00Z for UTC): "
            "a deadline in the server's local time is how campaigns end up hours off"
        )
    deadline = int(moment.astimezone(UTC).timestamp() * 1000)
    if deadline <= now_ms:
        raise ValueError(f"--until {quote_value(until)}: is not in the future")
    return deadline
