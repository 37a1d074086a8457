"""pydantic's ValidationError as FieldError triples: one wording for settings, calls and events."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic_core import PydanticCustomError

from cmvoice.errors import NOTHING, FieldError
from cmvoice.privacy import quote_value

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

#: pydantic's error type of a rule between fields (see ``cross_field_error``).
CROSS_FIELD = "cross_field"


def dotted_location(error: ErrorDetails) -> str:
    """``voice.language``: the error's location, joined with dots (empty for the whole input)."""
    return ".".join(str(part) for part in error["loc"])


def quoted_input(error: ErrorDetails) -> str:
    """The value that broke the rule, quoted and shortened (for values that are not secret)."""
    return quote_value(error.get("input"))


def cross_field_error(field: str, rule: str, value: str) -> PydanticCustomError:
    """A rule between fields, reported under ``field`` with ``value`` (already masked)."""
    return PydanticCustomError(
        CROSS_FIELD, "{field}: {rule}", {"field": field, "rule": rule, "value": value}
    )


def describe_validation_error(
    exc: ValidationError,
    *,
    name_field: Callable[[ErrorDetails], str] = dotted_location,
    show_value: Callable[[ErrorDetails], str] = quoted_input,
) -> list[FieldError]:
    """One FieldError per error of ``exc``: the field, the rule, and what was given instead.

    ``name_field`` names the field the way its reader knows it (a JSON name, a variable);
    ``show_value`` renders the value, masking what is personal or secret. A missing field got
    ``nothing``; a cross-field rule names its own field and value.
    """
    errors = []
    for error in exc.errors(include_url=False):
        ctx = error.get("ctx") or {}
        if error["type"] == CROSS_FIELD:
            errors.append(FieldError(str(ctx["field"]), str(ctx["rule"]), str(ctx["value"])))
            continue
        rule = error["msg"].removeprefix("Value error, ")
        value = NOTHING if error["type"] == "missing" else show_value(error)
        errors.append(FieldError(name_field(error), rule, value))
    return errors
