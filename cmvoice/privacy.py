"""Masking of personal data and secrets before anything is logged, shown or raised."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: Characters kept visible at each end of a masked phone number (``+31******678``).
VISIBLE_PREFIX = 3
VISIBLE_SUFFIX = 3
#: Longest excerpt of a free-text value quoted in an error message.
MAX_QUOTED_CHARS = 40


def mask_number(number: str | None) -> str:
    """Return ``+31******678`` for ``+31612345678``: enough to recognise, too little to dial."""
    if not number:
        return ""
    if number == "anonymous":
        return number
    hidden = len(number) - VISIBLE_PREFIX - VISIBLE_SUFFIX
    if hidden < 3:
        # Too short to keep both ends: show only the last characters.
        return "*" * max(len(number) - 2, 1) + number[-2:]
    return number[:VISIBLE_PREFIX] + "*" * hidden + number[-VISIBLE_SUFFIX:]


def quote_value(value: object) -> str:
    """A short, printable rendering of a (non-secret) value for an error message."""
    text = repr(value)
    if len(text) <= MAX_QUOTED_CHARS:
        return text
    if isinstance(value, str):
        # Close the quote repr opened (' or "), so the excerpt still reads as a string.
        return f"{text[: MAX_QUOTED_CHARS - 5]}...{text[0]} ({len(value)} characters)"
    size = f"{len(value)} items" if isinstance(value, list | dict) else "long"
    return f"{text[: MAX_QUOTED_CHARS - 5]}... ({size})"


def hidden_value(value: object) -> str:
    """What an error message says instead of a secret such as an OTP code."""
    if isinstance(value, str):
        return f"<hidden, {len(value)} characters>"
    return f"<hidden {type(value).__name__}>"


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``****``, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))
