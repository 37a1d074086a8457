"""Signed callback URLs: an unguessable HMAC of the instruction id, checked in constant time.

CM does not sign its callbacks, so the URL it posts to carries the proof: only someone who knows
``CMVOICE_CALLBACK_SECRET`` can make a valid ``/callbacks/cm/<instruction-id>/<sig>`` path.
Pure functions, no web framework inside.
"""

from __future__ import annotations

import hashlib
import hmac

#: Path under CMVOICE_CALLBACK_BASE_URL where the receiver takes CM's callbacks.
CALLBACK_PATH = "/callbacks/cm"
#: Hex characters of the HMAC kept in the URL: 128 bits, and the URL stays under CM's 256.
SIGNATURE_CHARS = 32


def sign(instruction_id: str, secret: str) -> str:
    """The signature of ``instruction_id`` under ``secret`` (hex, SIGNATURE_CHARS long)."""
    digest = hmac.new(secret.encode(), instruction_id.encode(), hashlib.sha256).hexdigest()
    return digest[:SIGNATURE_CHARS]


def verify(instruction_id: str, signature: str, secret: str) -> bool:
    """True when ``signature`` is the signature of ``instruction_id``; constant time."""
    # Compare bytes: compare_digest refuses non-ASCII str, and a URL may carry anything.
    given = signature.encode("utf-8", errors="replace")
    return hmac.compare_digest(sign(instruction_id, secret).encode(), given)


def callback_url(base_url: str, instruction_id: str, secret: str) -> str:
    """The callback URL CM is given for one instruction."""
    path = f"{CALLBACK_PATH}/{instruction_id}/{sign(instruction_id, secret)}"
    return base_url.rstrip("/") + path
