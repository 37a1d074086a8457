"""Redis replies as Python values: bytes to text, flat field/value lists to dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def as_text(value: Any) -> str:
    """A Redis reply (bytes, or already str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def as_int(value: Any, default: int = 0) -> int:
    """A Redis reply holding an integer (or nothing) as int."""
    return int(as_text(value)) if value not in (None, b"", "") else default


def flat_to_dict(flat: Sequence[Any]) -> dict[str, Any]:
    """``[k1, v1, k2, v2, ...]`` (HGETALL from a Lua script) as ``{k1: v1, ...}``, keys as text."""
    return {as_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
