"""The text fields of a campaign upload, checked: every problem a FieldError naming its field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cmvoice.campaigns.rows import load_template
from cmvoice.config import parse_duration, parse_rate
from cmvoice.errors import NOTHING, CampaignError, FieldError
from cmvoice.instructions import MODELS
from cmvoice.privacy import quote_value
from cmvoice.rules.windows import format_days, parse_days, parse_window

#: The form's text fields and what each holds (``file`` is the upload itself).
FIELD_DESCRIPTIONS = {
    "kind": f"the instructions' kind: {', '.join(MODELS)}",
    "template": "a JSON object of the fields every row shares; a row's own cells win",
    "name": "a name to know the campaign by (default: the file's name)",
    "rate": "this campaign's own limit under the account's: 5/s, 300/m, 1/2s",
    "window": "calling window in each callee's local time: 09:00-20:00",
    "days": "calling days: mon-sat, or mon,wed,fri",
    "until": "deadline, ISO 8601 with its zone: 2026-12-24T18:00Z",
    "valid_for": "deadline counted from now: 8h, 30m (not with until)",
    "allow_duplicates": "true: dial every row, also a number called already",
}
TEXT_FIELDS = tuple(FIELD_DESCRIPTIONS)
#: Longest campaign name kept.
MAX_NAME_CHARS = 200
#: How ``allow_duplicates`` may be spelt.
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


@dataclass(frozen=True)
class CampaignOptions:
    """What ``CampaignStore.create`` needs besides the file; ``until_ms`` is set by the caller
    from ``until`` or ``valid_for_s`` and Redis's clock."""

    kind: str
    template: dict[str, Any] | None = None
    name: str | None = None
    rate: str | None = None
    window: str | None = None
    days: str | None = None
    until: datetime | None = None
    valid_for_s: float | None = None
    allow_duplicates: bool = False

    def until_ms(self, now_ms: int) -> int | None:
        """The deadline in Redis time, from ``until`` or from ``valid_for`` counted from now."""
        if self.until is not None:
            return int(self.until.timestamp() * 1000)
        if self.valid_for_s is not None:
            return now_ms + int(self.valid_for_s * 1000)
        return None


def campaign_options(fields: Mapping[str, str]) -> tuple[CampaignOptions | None, list[FieldError]]:
    """The options of a campaign upload's text fields, or the errors of every broken rule."""
    errors: list[FieldError] = [
        FieldError(name, f"is not a field of a campaign upload ({', '.join(TEXT_FIELDS)})", "")
        for name in fields
        if name not in TEXT_FIELDS
    ]
    values: dict[str, Any] = {}

    def check(name: str, parse: Any) -> None:
        text = fields.get(name, "").strip()
        if not text:
            return
        try:
            values[name] = parse(text)
        except (ValueError, CampaignError) as exc:
            errors.append(FieldError(name, str(exc), quote_value(text)))

    kind = fields.get("kind", "").strip()
    if kind not in MODELS:
        shown = quote_value(kind) if kind else NOTHING
        errors.append(FieldError("kind", f"must be one of {', '.join(MODELS)}", shown))
    else:
        _check_template(fields.get("template", ""), kind, values, errors)
    check("name", _name)
    check("rate", lambda text: str(parse_rate(text)))
    check("window", lambda text: str(parse_window(text)))
    check("days", lambda text: format_days(parse_days(text)))
    check("until", _deadline)
    check("valid_for", _positive_duration)
    if "until" in values and "valid_for" in values:
        errors.append(FieldError("valid_for", "give until or valid_for, not both", ""))
    flag = fields.get("allow_duplicates", "").strip().lower()
    if flag not in _TRUE + _FALSE:
        errors.append(FieldError("allow_duplicates", "must be true or false", quote_value(flag)))
    if errors:
        return None, errors
    return (
        CampaignOptions(
            kind=kind,
            template=values.get("template"),
            name=values.get("name"),
            rate=values.get("rate"),
            window=values.get("window"),
            days=values.get("days"),
            until=values.get("until"),
            valid_for_s=values.get("valid_for"),
            allow_duplicates=flag in _TRUE,
        ),
        [],
    )


def _check_template(text: str, kind: str, values: dict[str, Any], errors: list[FieldError]) -> None:
    # The template may hold the caller's number and prompts: never echoed in an error.
    if not text.strip():
        return
    try:
        data = json.loads(text)
    except ValueError as exc:
        errors.append(FieldError("template", f"is not JSON: {exc}", ""))
        return
    if not isinstance(data, dict):
        errors.append(FieldError("template", "must be a JSON object of shared fields", ""))
        return
    try:
        values["template"] = load_template(kind, data)
    except CampaignError as exc:
        errors.append(FieldError("template", " ".join(str(exc).split()), ""))


def _name(text: str) -> str:
    if len(text) > MAX_NAME_CHARS:
        raise ValueError(f"must be at most {MAX_NAME_CHARS} characters")
    return text


def _deadline(text: str) -> datetime:
    """``2026-12-24T18:00Z`` (any ISO 8601 time with its offset) -> an aware datetime."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 time such as 2026-12-24T18:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("must name its time zone: end it with Z (UTC) or an offset like +01:00")
    return moment


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be a positive duration such as 8h or 30m")
    return seconds
