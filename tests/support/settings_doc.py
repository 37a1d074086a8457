"""What the documentation must say about Settings: each variable's name and default, rendered."""

from __future__ import annotations

from typing import Any

from cmvoice.config import Settings, parse_duration

#: Units a duration default is shown in, largest first: 604800 s reads "7d".
_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def variable(field_name: str) -> str:
    return f"CMVOICE_{field_name.upper()}"


def variables() -> dict[str, str]:
    """Every CMVOICE_ variable, by the Settings field it sets."""
    return {variable(name): name for name in Settings.model_fields}


def is_duration(field_name: str) -> bool:
    metadata = Settings.model_fields[field_name].metadata
    return any(getattr(item, "func", None) is parse_duration for item in metadata)


def format_duration(seconds: float) -> str:
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def documented_default(field_name: str) -> str:
    """The default as the README's table shows it: ``none``, ``10s``, ``9,12``, ``10/s``..."""
    value: Any = Settings.model_fields[field_name].get_default(call_default_factory=True)
    if value is None or value == []:
        return "none"
    if is_duration(field_name):
        return format_duration(float(value))
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return str(value).lower()  # as the environment spells it
    return str(value)
